//! The cluster the lab builds from a config: nodes, clients, scheduled pods, services with
//! allocated ClusterIPs/NodePorts, EndpointSlices, the external load balancer and the plan.
//!
//! CONTRACT: these types are produced by `config` + `manifest` + `schedule` and consumed by
//! the scenario runner (embedded and real mode). Add fields freely; do not rename.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

/// A NoSchedule/NoExecute/PreferNoSchedule taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    /// "NoSchedule", "PreferNoSchedule" or "NoExecute".
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// eth0 address on the node network.
    pub ip: Ipv4Addr,
    /// eth0's IPv6 address (`nodes[].ipv6`) on nodeNetworkV6; `None` on an IPv4-only node.
    pub ipv6: Option<Ipv6Addr>,
    /// Prefix length of the node network (e.g. 24).
    pub prefix_len: u8,
    /// This node's pod CIDR (cni0 = first host address, e.g. 10.244.1.1/24).
    pub pod_cidr: Ipv4Net,
    /// This node's IPv6 pod CIDR (node.spec.podCIDRs' IPv6 entry, default the node's
    /// index-th /64 of the IPv6 clusterCIDR); `None` = no IPv6 pods on this node.
    pub pod_cidr_v6: Option<Ipv6Net>,
    pub taints: Vec<Taint>,
    /// Includes `kubernetes.io/hostname: <name>` (added automatically).
    pub labels: BTreeMap<String, String>,
    /// Lab what-if: masquerade disabled on this node (`no-masquerade` scenario).
    pub masquerade: bool,
}

impl Node {
    /// The cni0 bridge address: first host of the pod CIDR (10.244.N.1).
    pub fn cni0_ip(&self) -> Ipv4Addr {
        // The loader only accepts podCIDRs up to /30, which always have a first host.
        crate::net::first_host(&self.pod_cidr).unwrap_or(self.pod_cidr.network())
    }

    /// cni0's IPv6 address: the first host of the IPv6 pod CIDR (`None` on an IPv4-only
    /// node).
    pub fn cni0_ipv6(&self) -> Option<Ipv6Addr> {
        self.pod_cidr_v6.as_ref().and_then(crate::net::first_host6)
    }

    /// The IPv6 address of a pod whose IPv4 address is `ip`: the same offset in the node's
    /// IPv6 pod CIDR (10.244.1.5 → fd00:10:244:1::5); `None` on an IPv4-only node.
    pub fn ipv6_of_pod(&self, ip: Ipv4Addr) -> Option<Ipv6Addr> {
        self.pod_cidr_v6
            .and_then(|p6| crate::net::pod_ipv6(&self.pod_cidr, ip, &p6))
    }
}

/// Where a client sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAttach {
    /// Outside the cluster, behind the router (e.g. a browser at 203.0.113.11). It may only
    /// reach the listed nodes (and the load balancer, if any).
    External { can_reach: Vec<String> },
    /// A client pod on a node (gets an IP from that node's pod CIDR).
    Pod { node: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    pub ip: Ipv4Addr,
    /// External: `ipv6` as configured; a pod client: its IPv4 offset in the node's IPv6 pod
    /// CIDR. `None` = IPv4 only.
    pub ipv6: Option<Ipv6Addr>,
    pub attach: ClientAttach,
}

/// A scheduled pod of a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    /// `<deploy>-<template-hash>-<5 chars>`.
    pub name: String,
    pub deployment: String,
    pub node: String,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address (its IPv4 offset in the node's IPv6 pod CIDR); `None` on a
    /// node without one.
    pub ipv6: Option<Ipv6Addr>,
    pub labels: BTreeMap<String, String>,
    /// (name, port, protocol) of the container ports.
    pub container_ports: Vec<(String, u16, nodeport::Protocol)>,
    /// The app of each container (from its image and args), where it really listens.
    pub apps: Vec<crate::apps::AppSpec>,
    pub ready: bool,
    /// Container restarts so far (kubelet's restartCount; set by a run's result).
    pub restarts: u32,
    /// The first container's `readinessProbe` that declares one (kubelet gates Ready on it).
    pub readiness_probe: Option<ReadinessProbe>,
}

/// A container's `readinessProbe` (k8s.io/api core/v1 Probe), with the apiserver's defaults
/// filled in: `periodSeconds` 10, `timeoutSeconds` 1, `successThreshold` 1,
/// `failureThreshold` 3, `initialDelaySeconds` 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessProbe {
    pub check: ProbeCheck,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// What a probe checks (named ports already resolved to numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCheck {
    /// `httpGet`: a GET of `path` on the pod IP and `port`; 200-399 passes.
    HttpGet { path: String, port: u16 },
    /// `tcpSocket`: a TCP connect to the pod IP and `port`.
    TcpSocket { port: u16 },
}

impl ProbeCheck {
    pub fn port(&self) -> u16 {
        match self {
            ProbeCheck::HttpGet { port, .. } | ProbeCheck::TcpSocket { port } => *port,
        }
    }
}

impl Pod {
    /// The TCP ports the pod's apps listen on (nginx on :80 when it has none, as the world
    /// runs it).
    pub fn tcp_ports(&self) -> Vec<u16> {
        if self.apps.is_empty() {
            return vec![80];
        }
        self.apps
            .iter()
            .flat_map(|a| a.listens())
            .filter(|(_, proto)| *proto == nodeport::Protocol::Tcp)
            .map(|(port, _)| port)
            .collect()
    }
}

/// An external load balancer in front of the nodes (NLB-style: keeps the client IP and
/// forwards to `nodeIP:nodePort`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub name: String,
    /// Frontend address clients connect to.
    pub ip: Ipv4Addr,
    /// IPv6 frontend (`loadBalancer.ipv6`), also the IPv6 status address of type
    /// LoadBalancer Services that have the IPv6 family; `None` = IPv4 only.
    pub ipv6: Option<Ipv6Addr>,
    /// Nodes in the target group, split evenly per node.
    pub nodes: Vec<String>,
    /// Health checking of healthCheckNodePort (issue 5); `None` = no health checks.
    pub health_check: Option<HealthCheck>,
    /// Weight nodes by X-Load-Balancing-Endpoint-Weight.
    pub weighted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub interval: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node by name (`ydzs-master`), to the service's nodePort (or explicit port).
    Node(String),
    /// The external load balancer, to the service port (or explicit port).
    LoadBalancer,
    /// A raw address (either family).
    Address(IpAddr),
}

/// One line of the traffic plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStep {
    pub client: String,
    pub target: Target,
    /// `family:` which address of a node or the load balancer the request goes to (IPv4
    /// unless the entry says IPv6); an address target's own family.
    pub family: nodeport::IpFamily,
    /// `namespace/name` of the service whose (node)port is used; `None` with explicit `port`.
    pub service: Option<String>,
    /// Explicit destination port (overrides the service's). A `port:` that is one of the
    /// service's port numbers picks that service port instead (the loader then moves it to
    /// [`PlanStep::service_port`] and clears this).
    pub port: Option<u16>,
    /// `portName:`: the service port by name.
    pub port_name: Option<String>,
    /// The service port the step uses (index in the service's `ports`), from `portName:` or
    /// a `port:` that names one; `None` = the first.
    pub service_port: Option<usize>,
    pub count: u32,
    /// HTTP path.
    pub path: String,
    /// curl `--connect-timeout`; `None` = Linux's SYN retry span (~127 s).
    pub connect_timeout: Option<Duration>,
    /// curl `-m` overall limit; `None` = no limit.
    pub max_time: Option<Duration>,
    /// `protocol:` TCP (an HTTP GET, curl) or UDP (one datagram, then wait for the answer).
    pub protocol: nodeport::Protocol,
    /// UDP: the datagram's text (`payload:`, default `hostname`: an agnhost netexec command).
    pub payload: String,
    /// UDP: how long the client waits for the answer (`timeout:`, default 2 s).
    pub timeout: Duration,
    /// UDP: the client's source port (`sourcePort:`); `None` = a fresh ephemeral port per
    /// datagram, like an unbound socket.
    pub source_port: Option<u16>,
}

/// `timeout:` of a UDP plan entry when the config leaves it out.
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(2);
/// `payload:` of a UDP plan entry when the config leaves it out (agnhost netexec's
/// `hostname` command).
pub const DEFAULT_UDP_PAYLOAD: &str = "hostname";

/// A `scale:` or `wait:` entry of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanAction {
    /// Runs before the request step with this index in [`Cluster::plan`] (= the number of
    /// request steps before it; `plan.len()` = after the last request).
    pub before: usize,
    /// Index of the entry in the config's `plan:` list (for messages).
    pub entry: usize,
    pub kind: ActionKind,
    /// For `scale`: what it does, computed by the scheduler when the cluster is built.
    pub scaled: Option<Scaled>,
}

/// The effect of a `scale:` entry (scheduler's logic: scale-down deletes the newest pods,
/// scale-up places new replicas on the least loaded eligible nodes with fresh names and the
/// next free addresses).
#[derive(Debug, Clone, PartialEq)]
pub struct Scaled {
    /// Every deployment pod after the action.
    pub pods: Vec<Pod>,
    /// The EndpointSlices after the action (pushed to every node).
    pub slices: Vec<nodeport::EndpointSlice>,
    pub added: Vec<Pod>,
    pub removed: Vec<Pod>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// Scale a Deployment: pods beyond `replicas` are deleted (newest first) or new ones
    /// placed; the EndpointSlices are recomputed and pushed to every node's kube-proxy.
    Scale {
        namespace: String,
        deployment: String,
        replicas: u32,
    },
    /// Let virtual time pass (LB health checks keep probing).
    Wait(Duration),
    /// `crash:`: one pod's app exits; kubelet restarts it with back-off ([`crate::kubelet`]).
    Crash(Crash),
    /// `delete: {pod: NAME}` or `delete: {deployment: NAME}` (its first pod): the pod goes
    /// away and its ReplicaSet creates a replacement with a fresh name and IP (placed like a
    /// scale-up); the EndpointSlices are recomputed and pushed to every node's kube-proxy.
    Delete(PodRef),
}

/// A `crash:` entry: what the config names, and the pod it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    pub namespace: String,
    /// `crash: {pod: NAME}` or `crash: {deployment: NAME}`.
    pub target: CrashTarget,
    /// The pod whose app exits, resolved when the cluster is built (for a Deployment: its
    /// oldest pod at that point of the plan). `None` only before scheduling.
    pub pod: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashTarget {
    Pod(String),
    Deployment(String),
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodRef::Pod { namespace, name } => write!(f, "pod {namespace}/{name}"),
            PodRef::Deployment { namespace, name } => {
                write!(f, "a pod of deployment {namespace}/{name}")
            }
        }
    }
}

/// Which pod a `delete:` entry means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodRef {
    /// `pod: [namespace/]name`.
    Pod { namespace: String, name: String },
    /// `deployment: [namespace/]name`: its first (oldest) pod.
    Deployment { namespace: String, name: String },
}

/// An impaired link (`links:`): a client's uplink or a pod's veth (by pod, client or
/// Deployment name — the latter impairs each of its pods).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSpec {
    pub link: String,
    pub delay: Duration,
    pub jitter: Duration,
    /// Probability in 0..=1 per datagram and direction.
    pub loss: f64,
    /// Bits per second.
    pub rate: Option<u64>,
}

/// The whole built lab.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Scenario name (file stem) and the config file it came from.
    pub scenario: String,
    pub source: PathBuf,
    /// The header comment of the config (the lesson).
    pub description: String,
    pub nodes: Vec<Node>,
    /// Node network (e.g. 10.151.30.0/24) and its router address (e.g. 10.151.30.1).
    pub node_network: Ipv4Net,
    pub router_ip: Ipv4Addr,
    /// kube-proxy's `clusterCIDR` (e.g. 10.244.0.0/16), the local-traffic detector.
    pub cluster_cidr: Ipv4Net,
    /// The IPv6 node network and router (`None` when no node has IPv6) and kube-proxy's IPv6
    /// clusterCIDR (`None` in an IPv4-only lab).
    pub node_network_v6: Option<Ipv6Net>,
    pub router_ipv6: Option<Ipv6Addr>,
    pub cluster_cidr_v6: Option<Ipv6Net>,
    pub clients: Vec<Client>,
    pub pods: Vec<Pod>,
    /// Services after ClusterIP/NodePort allocation (includes `default/kubernetes`).
    pub services: Vec<nodeport::Service>,
    pub slices: Vec<nodeport::EndpointSlice>,
    pub load_balancer: Option<LoadBalancer>,
    pub plan: Vec<PlanStep>,
    pub seed: u64,
    /// `scale:` / `wait:` entries of the plan, in order.
    pub actions: Vec<PlanAction>,
    /// Per-link impairments.
    pub links: Vec<LinkSpec>,
    /// kube-proxy's configuration knobs (the same on every node).
    pub kube_proxy: KubeProxy,
}

/// kube-proxy's configuration knobs the lab models (`kubeProxy:` in a lab config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeProxy {
    /// MASQUERADE with `--random-fully` (kube-proxy adds it wherever the kernel supports it);
    /// `false` is a lab what-if: the client's source port is kept when free.
    pub masquerade_random_fully: bool,
    /// `iptables.localhostNodePorts`: NodePorts answer on 127.0.0.0/8 from the node itself.
    pub localhost_node_ports: bool,
    /// `conntrack.tcpBeLiberal`: kube-proxy then omits KUBE-FORWARD's
    /// `--ctstate INVALID -j DROP` rule.
    pub tcp_be_liberal: bool,
    /// How long after an EndpointSlice change every node's kube-proxy applies it
    /// (`syncDelay:`, default 1 s, like `iptables.minSyncPeriod`).
    pub sync_delay: Duration,
    /// Lab what-if `conntrackCleanup: false`: kube-proxy never deletes stale UDP conntrack
    /// entries after endpoint changes (Kubernetes' classic UDP bug, kubernetes#59033), so a
    /// client reusing its 5-tuple keeps hitting a deleted pod until the entry expires.
    pub conntrack_cleanup: bool,
}

impl Default for KubeProxy {
    fn default() -> Self {
        KubeProxy {
            masquerade_random_fully: true,
            localhost_node_ports: true,
            tcp_be_liberal: false,
            sync_delay: Duration::from_secs(1),
            conntrack_cleanup: true,
        }
    }
}

impl Node {
    /// `control-plane` when the node carries the control-plane/master taint or label,
    /// `<none>` otherwise (the ROLES column of `kubectl get nodes`).
    pub fn role(&self) -> &'static str {
        const KEYS: [&str; 2] = [
            "node-role.kubernetes.io/control-plane",
            "node-role.kubernetes.io/master",
        ];
        let tainted = self.taints.iter().any(|t| KEYS.contains(&t.key.as_str()));
        let labelled = self.labels.keys().any(|k| KEYS.contains(&k.as_str()));
        if tainted || labelled {
            "control-plane"
        } else {
            "<none>"
        }
    }
}

impl Cluster {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
    pub fn client(&self, name: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.name == name)
    }
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }
    /// The pod with this IP (deployment pods only, not client pods).
    pub fn pod_by_ip(&self, ip: Ipv4Addr) -> Option<&Pod> {
        self.pods.iter().find(|p| p.ip == ip)
    }
    /// The pod with this address of either family (an EndpointSlice endpoint's).
    pub fn pod_by_addr(&self, ip: IpAddr) -> Option<&Pod> {
        match ip {
            IpAddr::V4(a) => self.pod_by_ip(a),
            IpAddr::V6(a) => self.pods.iter().find(|p| p.ipv6 == Some(a)),
        }
    }
    /// A service by `namespace/name`.
    pub fn service(&self, ns_name: &str) -> Option<&nodeport::Service> {
        let (ns, name) = ns_name.split_once('/')?;
        self.services
            .iter()
            .find(|s| s.namespace == ns && s.name == name)
    }
    /// The EndpointSlices of a service.
    pub fn slices_of<'a>(
        &'a self,
        svc: &'a nodeport::Service,
    ) -> impl Iterator<Item = &'a nodeport::EndpointSlice> + 'a {
        self.slices
            .iter()
            .filter(move |s| s.service.namespace == svc.namespace && s.service.name == svc.name)
    }
}

/// Where a plan step connects to, resolved against the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Address the client dials (the step's family: a node's or the LB's IPv6 address for
    /// `family: IPv6`).
    pub ip: IpAddr,
    /// Port the client dials.
    pub port: u16,
    /// For a load balancer target: the node port the LB forwards to (`nodeIP:nodePort`).
    pub backend_node_port: Option<u16>,
    /// Human label, e.g. `ydzs-master 10.151.30.11:32761`, `nlb 198.51.100.10:80`.
    pub label: String,
}

impl Cluster {
    /// Resolve a plan step (validated by the loader) to the address and port the client dials:
    /// a node → node IP + the nodePort of the step's service port (the first unless
    /// `port:`/`portName:` picked one); the load balancer → LB IP + that service port (the LB forwards to `backend_node_port`); an address → that
    /// address + the nodePort if it is a node's IP, else the service port. An explicit
    /// `port` always wins for the dialled port. `None` only for steps the loader would reject.
    pub fn destination(&self, step: &PlanStep) -> Option<Destination> {
        let svc = step.service.as_deref().and_then(|s| self.service(s));
        // The step's service port, picked by the loader (`port:`/`portName:`, a UDP entry's
        // first UDP port), else the first.
        let sp = svc.and_then(|s| s.ports.get(step.service_port.unwrap_or(0)));
        let svc_port = sp.map(|p| p.port);
        let node_port = sp.and_then(|p| p.node_port);
        let v6 = step.family == nodeport::IpFamily::V6;
        let (name, ip, port, backend) = match &step.target {
            Target::Node(n) => {
                let node = self.node(n)?;
                let ip = match v6 {
                    true => IpAddr::V6(node.ipv6?),
                    false => IpAddr::V4(node.ip),
                };
                (Some(node.name.clone()), ip, step.port.or(node_port)?, None)
            }
            Target::LoadBalancer => {
                let lb = self.load_balancer.as_ref()?;
                let ip = match v6 {
                    true => IpAddr::V6(lb.ipv6?),
                    false => IpAddr::V4(lb.ip),
                };
                (
                    Some(lb.name.clone()),
                    ip,
                    step.port.or(svc_port)?,
                    node_port,
                )
            }
            Target::Address(ip) => {
                let node = self
                    .nodes
                    .iter()
                    .find(|n| IpAddr::V4(n.ip) == *ip || n.ipv6.map(IpAddr::V6) == Some(*ip));
                let port = match node {
                    Some(_) => step.port.or(node_port).or(svc_port)?,
                    None => step.port.or(svc_port)?,
                };
                (node.map(|n| n.name.clone()), *ip, port, None)
            }
        };
        let sock = std::net::SocketAddr::new(ip, port);
        let label = match name {
            Some(n) => format!("{n} {sock}"),
            None => format!("{sock}"),
        };
        Some(Destination {
            ip,
            port,
            backend_node_port: backend,
            label,
        })
    }
}
