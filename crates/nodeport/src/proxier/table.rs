//! The compiled service tables of one sync, shared by every node (a child of [`super`]).
//!
//! Owns the node-independent half of `syncProxyRules`: service ports with their chain names,
//! endpoints in kube-proxy's rule order, the cluster endpoint set, the frontend maps and the
//! per-node local endpoint sets, all computed once per sync from the Services and
//! EndpointSlices and then shared by every node's [`super::Proxier`] through an `Arc`. What a
//! node adds on top is only its name (which local set applies) and its addresses (NodePort
//! destinations, the KUBE-FW node-IP rule), read at decision time.
//!
//! EndpointSlices are indexed by service once, so a sync costs O(services + endpoints) and
//! not O(services × slices) per node.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::{affinity_key, FrontendKind};
use crate::chains::{endpoint_chain_name, port_proto_hash, service_port_name};
use crate::model::{
    addrs_of, nets_of, EndpointSlice, IpFamily, Protocol, Service, ServiceRef, ServiceType,
    SessionAffinity, TrafficPolicy,
};
use crate::topology;

/// One endpoint of a service port, as the rules see it.
#[derive(Debug, Clone)]
pub(super) struct EpInfo {
    pub(super) addr: SocketAddr,
    pub(super) ip: IpAddr,
    pub(super) serving: bool,
    /// `KUBE-SEP-<hash>`.
    pub(super) sep: String,
}

/// One service port with its chains and categorised endpoints (what `syncProxyRules`
/// writes for it), for every node at once.
#[derive(Debug, Clone)]
pub(super) struct SvcPort {
    pub(super) svc: ServiceRef,
    pub(super) port_name: String,
    /// `ns/svc:port`.
    pub(super) spn: String,
    pub(super) proto: Protocol,
    /// The family of this port's frontends and endpoints (kube-proxy runs one proxier per
    /// family; a dual-stack Service has one `SvcPort` per family and port).
    pub(super) family: IpFamily,
    pub(super) etp_local: bool,
    pub(super) itp_local: bool,
    pub(super) affinity: Option<Duration>,
    pub(super) svc_chain: String,
    pub(super) svl_chain: String,
    pub(super) ext_chain: String,
    /// `KUBE-FW-<hash>` (used only with [`SvcPort::firewall`]).
    pub(super) fw_chain: String,
    /// `loadBalancerSourceRanges` of a service with LB IPs (`usesFWChain`).
    pub(super) firewall: Option<Firewall>,
    /// Key of this port's ClientIP-affinity lists.
    pub(super) affinity_key: u64,
    pub(super) eps: Vec<EpInfo>,
    pub(super) cluster: Vec<usize>,
    /// The local set of each node that has one (`CategorizeEndpoints`: local Ready, else
    /// local Serving+Terminating); nodes not listed have none.
    local_by_node: HashMap<String, Vec<usize>>,
    pub(super) has_any: bool,
}

impl SvcPort {
    /// The local endpoints (indices into `eps`) on node `node`.
    pub(super) fn local(&self, node: &str) -> &[usize] {
        self.local_by_node.get(node).map_or(&[], Vec::as_slice)
    }
}

/// KUBE-FW-<hash>: who may use the LB IPs of a service with `loadBalancerSourceRanges`.
#[derive(Debug, Clone)]
pub(super) struct Firewall {
    ranges: Vec<IpNet>,
    /// The LB IPs, allowed as sources when a range contains the node IP (a node reaching its
    /// own VIP loops back with the VIP as source).
    lb_ips: Vec<IpAddr>,
}

impl Firewall {
    /// The firewall of `svc`'s `family` proxier: its LB IPs and source ranges of that family
    /// only (serviceport.go `newBaseServiceInfo`: `MapCIDRsByIPFamily(...)[ipFamily]`).
    fn of(svc: &Service, family: IpFamily) -> Option<Firewall> {
        let ranges = nets_of(&svc.load_balancer_source_ranges, family);
        let lb_ips = addrs_of(&svc.load_balancer_ips, family);
        if lb_ips.is_empty() || ranges.is_empty() {
            return None;
        }
        Some(Firewall { ranges, lb_ips })
    }

    /// The `-s` of the KUBE-FW rule `src` matches on the node whose first address is
    /// `node_ip` (a range, or an LB IP), `None`: dropped.
    pub(super) fn matching(&self, src: IpAddr, node_ip: Option<&IpAddr>) -> Option<String> {
        if let Some(r) = self.ranges.iter().find(|r| r.contains(&src)) {
            return Some(r.to_string());
        }
        let allow_from_node = self
            .ranges
            .iter()
            .any(|r| node_ip.is_some_and(|ip| r.contains(ip)));
        if !allow_from_node {
            return None;
        }
        self.lb_ips
            .iter()
            .find(|ip| **ip == src)
            .map(|ip| ip.to_string())
    }
}

/// The rule view of one sync, node-independent. Build it once with
/// [`ServiceTable::compile`] and hand the same `Arc` to every node's
/// [`super::Proxier::set_table`].
#[derive(Debug, Default)]
pub struct ServiceTable {
    pub(super) ports: Vec<SvcPort>,
    /// (proto, ip, port) of ClusterIP / externalIP / LB IP frontends.
    pub(super) frontends: HashMap<(u8, IpAddr, u16), (usize, FrontendKind)>,
    /// (proto, family, nodePort): each family's proxier has its own KUBE-NODEPORTS.
    pub(super) nodeports: HashMap<(u8, IpFamily, u16), usize>,
    pub(super) health_ports: HashMap<u16, ServiceRef>,
    /// Per service and family, per node: distinct IPs of local Ready endpoints
    /// (`LocalReadyEndpoints` of that family's proxier).
    local_ready: HashMap<(ServiceRef, IpFamily), HashMap<String, usize>>,
    /// Each service's primary family (`spec.ipFamilies[0]`, the family of `clusterIP`).
    primary: HashMap<ServiceRef, IpFamily>,
    /// Affinity keys of all ports (affinity state of other keys is forgotten on sync).
    pub(super) affinity_keys: HashSet<u64>,
}

impl ServiceTable {
    /// Compile `services` and `slices` (what `syncProxyRules` reads) into shared tables: one
    /// set of ports per family of each Service's ClusterIPs (primary first), each seeing
    /// only the EndpointSlices whose `addressType` is that family, as kube-proxy's
    /// dual-stack MetaProxier feeds one proxier per family.
    pub fn compile(services: &[Service], slices: &[EndpointSlice]) -> ServiceTable {
        let mut by_service: HashMap<(&ServiceRef, IpFamily), Vec<&EndpointSlice>> = HashMap::new();
        for s in slices {
            by_service
                .entry((&s.service, s.address_type))
                .or_default()
                .push(s);
        }
        let mut t = ServiceTable::default();
        for svc in services {
            // Headless services get no rules.
            let Some(primary) = svc.cluster_ip() else {
                continue;
            };
            let sref = svc.service_ref();
            if svc.needs_health_check() {
                if let Some(hc) = svc.health_check_node_port {
                    t.health_ports.insert(hc, sref.clone());
                }
            }
            t.primary.insert(sref.clone(), IpFamily::of(primary));
            for family in [IpFamily::V4, IpFamily::V6] {
                let Some(cluster_ip) = svc.cluster_ip_of(family) else {
                    continue;
                };
                let my_slices = by_service
                    .get(&(&sref, family))
                    .map_or(&[][..], Vec::as_slice);
                t.local_ready
                    .insert((sref.clone(), family), local_ready_counts(my_slices));
                for sp in &svc.ports {
                    let idx = t.ports.len();
                    t.ports
                        .push(compile_port(svc, &sref, sp, my_slices, family));
                    t.add_frontends(svc, cluster_ip, sp, idx);
                }
            }
        }
        t.affinity_keys = t.ports.iter().map(|p| p.affinity_key).collect();
        t
    }

    /// The frontends of port `idx` in its family: the ClusterIP, then the external and LB
    /// IPs of that family (kube-proxy filters them per family, `newBaseServiceInfo`), and
    /// the NodePort for that family's node addresses.
    fn add_frontends(
        &mut self,
        svc: &Service,
        cluster_ip: IpAddr,
        sp: &crate::model::ServicePort,
        idx: usize,
    ) {
        let pn = sp.protocol.number();
        let family = IpFamily::of(cluster_ip);
        self.frontends
            .insert((pn, cluster_ip, sp.port), (idx, FrontendKind::ClusterIp));
        for ip in addrs_of(&svc.external_ips, family) {
            self.frontends
                .insert((pn, ip, sp.port), (idx, FrontendKind::ExternalIp));
        }
        for ip in addrs_of(&svc.load_balancer_ips, family) {
            self.frontends
                .insert((pn, ip, sp.port), (idx, FrontendKind::LoadBalancer));
        }
        if matches!(svc.type_, ServiceType::NodePort | ServiceType::LoadBalancer) {
            if let Some(np) = sp.node_port {
                self.nodeports.insert((pn, family, np), idx);
            }
        }
    }

    /// Distinct local Ready endpoint IPs of `service` on node `node`, counted by the
    /// proxier of `family` (`None`: the Service's primary family).
    pub(super) fn local_ready(
        &self,
        service: &ServiceRef,
        node: &str,
        family: Option<IpFamily>,
    ) -> usize {
        let Some(family) = family.or_else(|| self.primary.get(service).copied()) else {
            return 0;
        };
        self.local_ready
            .get(&(service.clone(), family))
            .and_then(|m| m.get(node))
            .copied()
            .unwrap_or(0)
    }
}

/// Per node: the number of distinct local Ready IPs ([`topology::local_ready_ips`]).
fn local_ready_counts(slices: &[&EndpointSlice]) -> HashMap<String, usize> {
    let mut nodes: HashSet<&str> = HashSet::new();
    for e in slices.iter().flat_map(|s| s.endpoints.iter()) {
        if let Some(n) = e.node_name.as_deref() {
            nodes.insert(n);
        }
    }
    nodes
        .into_iter()
        .filter_map(|n| {
            let eps = slices.iter().flat_map(|s| s.endpoints.iter());
            let k = topology::local_ready_ips(eps, n).len();
            (k > 0).then(|| (n.to_string(), k))
        })
        .collect()
}

fn compile_port(
    svc: &Service,
    sref: &ServiceRef,
    sp: &crate::model::ServicePort,
    slices: &[&EndpointSlice],
    family: IpFamily,
) -> SvcPort {
    let spn = service_port_name(&svc.namespace, &svc.name, &sp.name);
    let proto = sp.protocol.as_lower();
    let hash = port_proto_hash(&spn, proto);
    // Endpoints of this port, in kube-proxy's "ip:port" order.
    let eps = topology::port_endpoints(slices.iter().copied(), sref, sp);
    let endpoints: Vec<crate::model::Endpoint> = eps.iter().map(|(e, _)| e.clone()).collect();
    // The cluster set and has_any do not depend on the node (an empty node name matches no
    // endpoint's node, so the local set of this call is unused).
    let cat = topology::categorize(&endpoints, "");
    let mut local_by_node: HashMap<String, Vec<usize>> = HashMap::new();
    for n in endpoints.iter().filter_map(|e| e.node_name.as_deref()) {
        if !local_by_node.contains_key(n) {
            let local = topology::categorize(&endpoints, n).local;
            if !local.is_empty() {
                local_by_node.insert(n.to_string(), local);
            }
        }
    }
    let infos = eps
        .iter()
        .map(|(e, a)| EpInfo {
            addr: *a,
            ip: e.ip,
            serving: e.serving,
            sep: endpoint_chain_name(&spn, proto, &a.to_string()),
        })
        .collect();
    SvcPort {
        svc: sref.clone(),
        port_name: sp.name.clone(),
        proto: sp.protocol,
        family,
        etp_local: svc.external_policy_local(),
        itp_local: svc.internal_traffic_policy == TrafficPolicy::Local,
        affinity: match svc.session_affinity {
            SessionAffinity::None => None,
            SessionAffinity::ClientIp { timeout } => Some(timeout),
        },
        svc_chain: format!("KUBE-SVC-{hash}"),
        svl_chain: format!("KUBE-SVL-{hash}"),
        ext_chain: format!("KUBE-EXT-{hash}"),
        fw_chain: format!("KUBE-FW-{hash}"),
        firewall: Firewall::of(svc, family),
        affinity_key: affinity_key(&hash),
        eps: infos,
        cluster: cat.cluster,
        local_by_node,
        has_any: cat.has_any,
        spn,
    }
}
