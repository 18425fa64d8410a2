//! The inputs kube-proxy works from: Services, EndpointSlices and its own per-node config.
//!
//! These are plain data (no Kubernetes client types): the `lab` crate converts real
//! `v1 Service` manifests into them. Semantics follow `kube-proxy-semantics.md` §1.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
pub use wire::IpFamily;

/// L4 protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    /// Decided like TCP/UDP; conntrack tracks it with a simplified association state
    /// (see [`crate::conntrack`]).
    Sctp,
}

impl Protocol {
    /// Lower-case name as used in kube-proxy's chain hash input ("tcp", "udp", "sctp").
    pub fn as_lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// `sessionAffinity` (+ `sessionAffinityConfig.clientIP.timeoutSeconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIp {
        timeout: Duration,
    },
}

impl SessionAffinity {
    /// The API default timeout for ClientIP affinity: 10800 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10800);
}

/// `namespace/name` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One entry of `spec.ports`. `target_port` is already resolved to a number by the caller
/// (named target ports are resolved against the pods' container ports when building
/// EndpointSlices; the DNAT port actually comes from the EndpointSlice port of the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// Port name ("" when the service has a single unnamed port).
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: u16,
    /// Set for NodePort/LoadBalancer services (after allocation).
    pub node_port: Option<u16>,
}

impl ServicePort {
    /// An unnamed TCP port (a Service with a single port needs no name).
    pub fn tcp(port: u16, target_port: u16, node_port: Option<u16>) -> Self {
        ServicePort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port,
            target_port,
            node_port,
        }
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum IpFamilyPolicy {
    #[default]
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

impl IpFamilyPolicy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamilyPolicy::SingleStack => "SingleStack",
            IpFamilyPolicy::PreferDualStack => "PreferDualStack",
            IpFamilyPolicy::RequireDualStack => "RequireDualStack",
        }
    }
}

/// A Service as kube-proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub type_: ServiceType,
    /// `spec.clusterIPs`, the primary family's first; empty for headless services
    /// (kube-proxy ignores those). One per family of `ip_families`.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ipFamilies` (primary first) and `spec.ipFamilyPolicy`, as the apiserver
    /// defaulted them.
    #[serde(default)]
    pub ip_families: Vec<IpFamily>,
    #[serde(default)]
    pub ip_family_policy: IpFamilyPolicy,
    pub ports: Vec<ServicePort>,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    pub session_affinity: SessionAffinity,
    /// Only for LoadBalancer + externalTrafficPolicy Local (after allocation).
    pub health_check_node_port: Option<u16>,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` in VIP mode.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges`: when set (and the service has LB IPs), traffic to an
    /// LB IP goes through `KUBE-FW-<hash>`: allowed from these CIDRs (plus the LB IPs
    /// themselves when a range contains the node IP), dropped by KUBE-PROXY-FIREWALL otherwise.
    #[serde(default)]
    pub load_balancer_source_ranges: Vec<IpNet>,
}

impl Service {
    /// A Service of `type_` with the apiserver's defaults for everything else: no ClusterIP
    /// yet, no ports, both traffic policies Cluster, no session affinity, no health-check
    /// NodePort, no external or load-balancer addresses, no source ranges. Fill the rest with
    /// struct update syntax: `Service { ports, ..Service::new("default", "nginx", t) }`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, type_: ServiceType) -> Self {
        Service {
            namespace: namespace.into(),
            name: name.into(),
            type_,
            cluster_ips: Vec::new(),
            ip_families: Vec::new(),
            ip_family_policy: IpFamilyPolicy::SingleStack,
            ports: Vec::new(),
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            session_affinity: SessionAffinity::None,
            health_check_node_port: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
        }
    }
    /// The primary ClusterIP (`spec.clusterIP`); `None` for a headless Service.
    pub fn cluster_ip(&self) -> Option<IpAddr> {
        self.cluster_ips.first().copied()
    }
    /// The ClusterIP of `family`, if the Service has that family.
    pub fn cluster_ip_of(&self, family: IpFamily) -> Option<IpAddr> {
        self.cluster_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(*ip) == family)
    }
    pub fn service_ref(&self) -> ServiceRef {
        ServiceRef::new(self.namespace.clone(), self.name.clone())
    }
    /// `ExternallyAccessible()`: NodePort/LoadBalancer, or any service with externalIPs.
    pub fn externally_accessible(&self) -> bool {
        matches!(
            self.type_,
            ServiceType::NodePort | ServiceType::LoadBalancer
        ) || !self.external_ips.is_empty()
    }
    /// `ExternalPolicyLocal()`.
    pub fn external_policy_local(&self) -> bool {
        self.externally_accessible() && self.external_traffic_policy == TrafficPolicy::Local
    }
    /// `NeedsHealthCheck()`: LoadBalancer + ETP Local.
    pub fn needs_health_check(&self) -> bool {
        self.type_ == ServiceType::LoadBalancer
            && self.external_traffic_policy == TrafficPolicy::Local
    }
}

/// One address of an EndpointSlice, with the conditions kube-proxy reads.
/// (Missing `ready`/`serving` in the API mean true, missing `terminating` means false; the
/// caller applies those defaults when converting.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub node_name: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// One port of an EndpointSlice; `name` matches a [`ServicePort::name`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// An EndpointSlice of a service (`kubernetes.io/service-name` label = `service.name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSlice {
    pub service: ServiceRef,
    /// `addressType`: every endpoint's address is of this family.
    #[serde(default)]
    pub address_type: IpFamily,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// kube-proxy's configuration on one node, plus lab "what-if" switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// kube-proxy's `--hostname-override` / node name; an endpoint is local iff its
    /// `node_name` equals this.
    pub node_name: String,
    /// Every address of the node (eth0, cni0, …): `--dst-type LOCAL` / `--src-type LOCAL`.
    pub node_addresses: Vec<IpAddr>,
    /// `clusterCIDR` (one per family) for the ClusterCIDR local-traffic detector; none for
    /// a family = no-op detector for that family.
    pub cluster_cidrs: Vec<IpNet>,
    /// `iptables.masqueradeAll`.
    pub masquerade_all: bool,
    /// `nodePortAddresses`: empty = every local address.
    pub node_port_addresses: Vec<IpNet>,
    /// nf_conntrack_max for this node.
    pub conntrack_max: usize,
    /// `MASQUERADE --random-fully` (default true: kube-proxy adds it whenever iptables
    /// supports it): the masqueraded source port is random. Lab what-if
    /// `masqueradeRandomFully: false` keeps the client's port when it is free.
    pub masquerade_random_fully: bool,
    /// Lab what-if: when false, KUBE-POSTROUTING never masquerades (breaks Cluster traffic
    /// to remote endpoints, which is the lesson of the `no-masquerade` scenario).
    pub masquerade_enabled: bool,
    /// `iptables.localhostNodePorts` (default true): NodePorts answer on 127.0.0.0/8 from the
    /// node itself (kube-proxy sets `route_localnet=1` and adds KUBE-FIREWALL's "block
    /// incoming localnet connections" rule). False: KUBE-SERVICES' nodeports jump gets
    /// `! -d 127.0.0.0/8`.
    #[serde(default = "yes")]
    pub localhost_node_ports: bool,
    /// `nf_conntrack_tcp_be_liberal` is set (default false). kube-proxy then omits
    /// KUBE-FORWARD's `-m conntrack --ctstate INVALID -j DROP`, and conntrack itself does not
    /// mark out-of-window TCP packets INVALID.
    #[serde(default)]
    pub conntrack_tcp_be_liberal: bool,
    /// kube-proxy deletes stale UDP conntrack entries after endpoint changes (default true;
    /// §6.4, upstream `pkg/proxy/conntrack/cleanup.go`). False is a lab what-if that brings
    /// back Kubernetes' classic UDP bug (kubernetes#59033 "conntrack table for UDP to vanished
    /// pod not flushed", #65228; the ≥ 1.32 reconciler is kubernetes#126130): a client that
    /// keeps its 5-tuple keeps being sent to a deleted endpoint until the entry expires.
    #[serde(default = "yes")]
    pub udp_conntrack_cleanup: bool,
}

impl ProxyConfig {
    /// The `clusterCIDR` of `family`, if configured.
    pub fn cluster_cidr(&self, family: IpFamily) -> Option<IpNet> {
        self.cluster_cidrs
            .iter()
            .copied()
            .find(|n| IpFamily::of(n.addr()) == family)
    }
    /// Whether NodePorts answer on 127.0.0.0/8: `localhostNodePorts`, which kube-proxy turns
    /// off when `nodePortAddresses` has IPv4 ranges without a loopback one (`NewProxier`:
    /// `!nodePortAddresses.ContainsIPv4Loopback()`; no IPv4 range = `0.0.0.0/0`, which holds
    /// it).
    pub fn localhost_node_ports_effective(&self) -> bool {
        let v4 = self.node_port_ranges(IpFamily::V4);
        self.localhost_node_ports
            && (v4.is_empty()
                || v4
                    .iter()
                    .any(|n| n.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST))))
    }
    /// The `nodePortAddresses` ranges of `family`; empty = every local address of that
    /// family (proxyutil `NewNodePortAddresses(family, …)` adds `0.0.0.0/0` / `::/0` when
    /// none of the family is given, even if the other family has some).
    pub fn node_port_ranges(&self, family: IpFamily) -> Vec<IpNet> {
        nets_of(&self.node_port_addresses, family)
    }
    /// The node's first address of `family` (its node IP for that family's proxier).
    pub fn node_address(&self, family: IpFamily) -> Option<IpAddr> {
        self.node_addresses
            .iter()
            .copied()
            .find(|a| IpFamily::of(*a) == family)
    }
}

/// The addresses of `family` in `ips` (kube-proxy's per-family `MapIPsByIPFamily`).
pub(crate) fn addrs_of(ips: &[IpAddr], family: IpFamily) -> Vec<IpAddr> {
    ips.iter()
        .copied()
        .filter(|ip| IpFamily::of(*ip) == family)
        .collect()
}

/// The networks of `family` in `nets` (`MapCIDRsByIPFamily`).
pub(crate) fn nets_of(nets: &[IpNet], family: IpFamily) -> Vec<IpNet> {
    nets.iter()
        .copied()
        .filter(|n| IpFamily::of(n.addr()) == family)
        .collect()
}

fn yes() -> bool {
    true
}

impl ProxyConfig {
    /// kube-proxy's defaults for a node with the given name and addresses.
    pub fn new(node_name: impl Into<String>, node_addresses: Vec<IpAddr>) -> Self {
        ProxyConfig {
            node_name: node_name.into(),
            node_addresses,
            cluster_cidrs: Vec::new(),
            masquerade_all: false,
            node_port_addresses: Vec::new(),
            conntrack_max: 131_072,
            masquerade_random_fully: true,
            masquerade_enabled: true,
            localhost_node_ports: true,
            conntrack_tcp_be_liberal: false,
            udp_conntrack_cleanup: true,
        }
    }
}
