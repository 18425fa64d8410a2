//! Building the world: the node network, one cni0 segment per node, client networks, pods,
//! clients and external ports, the load balancer, and kube-proxy syncs on every node. A
//! dual-stack world puts IPv6 prefixes on the same segments (the node network's, each node's
//! pod /64 on its cni0, a /64 per IPv6 client network) and IPv6 addresses on the same
//! attachments: links are L3, so there is no NDP (the segment resolves IPv6 next hops as it
//! does IPv4 ones).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use nodeport::{EndpointSlice, ProxyConfig, Service, ServiceType, TrafficPolicy};
use nodestack::{first_host_v6, Iface, Node, NodeSpec, NodeV6};
use vswitch::packet::PROTO_TCP;
use vswitch::router::IfaceKind;
use vswitch::{Impair, ImpairConfig, LoadBalancer, Port, Router, Segment, TraceSink, Tracer};

use super::{
    Attach, Attachment, ClientDesc, Edge, EdgeKind, LbDesc, NodeDesc, NodeSlot, PodDesc, SimError,
    World, WorldSpec, PROXY_HEALTH_PORT,
};
use crate::apps::AppDesc;
use crate::host::{AccessJournal, Host, HostConfig, HostV6, ServerInfo};

/// The first host address of a network (the gateway: the router's client-network address,
/// a node's cni0).
pub(super) fn first_host(net: Ipv4Net) -> Ipv4Addr {
    wire::first_host(net.network(), net.prefix_len()).unwrap_or(net.network())
}

/// The client network of an IPv6 client address: the /64 around it.
fn client_net6(ip: Ipv6Addr) -> Ipv6Net {
    Ipv6Net::new(ip, 64).expect("64 is a valid prefix").trunc()
}

/// A node's IPv6 side, when the description gives it an IPv6 address and pod CIDR.
fn node_v6(spec: &WorldSpec, d: &NodeDesc) -> Result<Option<NodeV6>, SimError> {
    let (Some(ip), Some(pod_cidr)) = (d.ipv6, d.pod_cidr_v6) else {
        return Ok(None);
    };
    let Some(net) = spec.node_network_v6.map(|n| n.trunc()) else {
        return Err(SimError::NoIpv6 {
            name: d.name.clone(),
            what: "node network",
        });
    };
    if !net.contains(&ip) {
        return Err(SimError::OutsideNetwork {
            name: d.name.clone(),
            addr: ip.into(),
            net: net.into(),
        });
    }
    Ok(Some(NodeV6 {
        ip,
        prefix_len: net.prefix_len(),
        pod_cidr,
        gateway: spec.router_ipv6,
    }))
}

/// One node of the description: its stack, kube-proxy config (the default one unless
/// given) and a route to every other node's pod CIDR via that node (per family).
fn build_node(spec: &WorldSpec, d: &NodeDesc, seed: u64) -> Result<Node, SimError> {
    let node_net = spec.node_network.trunc();
    if !node_net.contains(&d.ip) {
        return Err(SimError::OutsideNetwork {
            name: d.name.clone(),
            addr: d.ip.into(),
            net: node_net.into(),
        });
    }
    let v6 = node_v6(spec, d)?;
    let cni0 = first_host(d.pod_cidr.trunc());
    let proxy = d.proxy.clone().unwrap_or_else(|| {
        let mut addrs = vec![IpAddr::V4(d.ip), IpAddr::V4(cni0)];
        if let Some(v) = &v6 {
            addrs.extend([IpAddr::V6(v.ip), IpAddr::V6(first_host_v6(v.pod_cidr))]);
        }
        let mut p = ProxyConfig::new(d.name.clone(), addrs);
        p.cluster_cidrs = spec.cluster_cidr.into_iter().map(Into::into).collect();
        if v6.is_some() {
            p.cluster_cidrs
                .extend(spec.cluster_cidr_v6.into_iter().map(ipnet::IpNet::from));
        }
        p
    });
    let mut node = Node::new(
        NodeSpec {
            name: d.name.clone(),
            ip: d.ip,
            prefix_len: node_net.prefix_len(),
            pod_cidr: d.pod_cidr,
            gateway: Some(spec.router_ip),
            proxy,
            v6,
        },
        Duration::ZERO,
        seed,
    );
    node.tracing = spec.tracing;
    // Chain walks and rewrite lists exist only for hop events: skip them when not tracing.
    node.proxier_mut().set_trace(spec.tracing);
    for o in &spec.nodes {
        if o.name != d.name {
            node.add_route(o.pod_cidr, o.ip);
        }
    }
    if node.eth0_v6().is_some() {
        for o in &spec.nodes {
            if let (true, Some(ip6), Some(pc6)) = (o.name != d.name, o.ipv6, o.pod_cidr_v6) {
                node.add_route_v6(pc6, ip6);
            }
        }
    }
    Ok(node)
}

impl World {
    /// Build the world at virtual time zero.
    pub fn new(spec: WorldSpec) -> Result<World, SimError> {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let node_net = spec.node_network.trunc();
        let mut segments: Vec<Segment<Attach>> = vec![Segment::new("node-network", node_net)];
        let mut router = Router::new("router");
        router.tracing = spec.tracing;
        let r0 = router.add_iface("node-network", spec.router_ip, node_net, IfaceKind::Cluster);
        segments[0].attach(spec.router_ip, Attach::Router(r0));
        if let Some(net6) = spec.node_network_v6 {
            segments[0].add_net6(net6);
            if let Some(r6) = spec.router_ipv6 {
                router.add_iface_v6(r0, r6, net6);
                segments[0].attach(r6, Attach::Router(r0));
            }
        }

        let mut node_index = HashMap::new();
        let mut nodes: Vec<NodeSlot> = Vec::new();
        for (i, d) in spec.nodes.iter().enumerate() {
            if node_index.insert(d.name.clone(), i).is_some() {
                return Err(SimError::Duplicate(d.name.clone()));
            }
            let node = build_node(&spec, d, rng.next_u64())?;
            segments[0].attach(d.ip, Attach::Node(i, Iface::Eth0));
            let mut cni = Segment::new(format!("{}/cni0", d.name), d.pod_cidr.trunc());
            cni.attach(node.cni0(), Attach::Node(i, Iface::Cni0));
            if let (Some(ip6), Some(cni6), Some(pc6)) =
                (node.eth0_v6(), node.cni0_v6(), node.pod_cidr_v6())
            {
                segments[0].attach(ip6, Attach::Node(i, Iface::Eth0));
                cni.add_net6(pc6);
                cni.attach(cni6, Attach::Node(i, Iface::Cni0));
            }
            segments.push(cni);
            nodes.push(NodeSlot {
                node,
                eth0_seg: 0,
                cni_seg: segments.len() - 1,
            });
        }

        let cni_node = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.cni_seg, i))
            .collect();
        let mut world = World {
            now: Duration::ZERO,
            rng,
            host_rng: ChaCha8Rng::seed_from_u64(spec.seed ^ 0x6e70_6c61_625f_686f),
            clock: spec.wall_clock,
            segments,
            nodes,
            cni_node,
            node_index,
            router,
            router_segs: vec![0],
            edges: Vec::new(),
            edge_index: HashMap::new(),
            wake: Default::default(),
            external: Default::default(),
            journal: AccessJournal::default(),
            queue: VecDeque::new(),
            egress: Vec::new(),
            trace: Vec::new(),
            sink: TraceSink::new(),
            tracing: spec.tracing,
            requests: HashMap::new(),
            done: None,
            due: Vec::new(),
            next_request: 0,
            lb: spec.load_balancer.clone(),
            prober: None,
            health_port: (PROXY_HEALTH_PORT, "/healthz".into()),
            node_pcap: Vec::new(),
            router_pcap: Vec::new(),
            edge_pcap: Vec::new(),
            lost: 0,
        };
        for net in &spec.client_networks {
            world.client_network(*net);
        }
        // Pods (nginx), then clients (curl), then the load balancer.
        for p in &spec.pods {
            world.add_pod(p)?;
        }
        for c in &spec.clients {
            world.add_client(c)?;
        }
        if let Some(lbd) = &spec.load_balancer {
            world.add_load_balancer(lbd)?;
        }
        Ok(world)
    }

    /// An embedded curl-like client of the description.
    fn add_client(&mut self, c: &ClientDesc) -> Result<(), SimError> {
        match &c.attach {
            Attachment::Pod { node } => {
                let n = self.node_index(node)?;
                let mut host = self.embedded_host(&c.name, c.ip, c.ipv6, n);
                let seed = self.host_rng.next_u64();
                let h = host.with_client(seed);
                let e = self.attach_pod(&c.name, c.ip, c.ipv6, n, Box::new(host))?;
                self.edges[e].kind = EdgeKind::Client;
                self.edges[e].client = Some(h);
                self.mark_embedded(e);
            }
            Attachment::External { can_reach } => {
                let net = self.client_net_for(c.ip);
                let mut host = Host::new(
                    HostConfig {
                        link: c.name.clone(),
                        ip: c.ip,
                        prefix_len: net.prefix_len(),
                        gateway: first_host(net),
                        seed: self.host_rng.next_u64(),
                        v6: c.ipv6.map(|ip| HostV6 {
                            ip,
                            prefix_len: 64,
                            gateway: first_host_v6(client_net6(ip)),
                        }),
                    },
                    Duration::ZERO,
                );
                let seed = self.host_rng.next_u64();
                let h = host.with_client(seed);
                let ips = (c.ip, c.ipv6);
                let e = self.attach_external(&c.name, ips, can_reach, Box::new(host))?;
                self.edges[e].client = Some(h);
                self.mark_embedded(e);
            }
        }
        Ok(())
    }

    /// The load balancer: its targets, its listeners (if given) and its frontend address on
    /// the client networks that contain it.
    fn add_load_balancer(&mut self, lbd: &LbDesc) -> Result<(), SimError> {
        let mut lb = LoadBalancer::new(lbd.name.clone(), lbd.ip);
        lb.frontend6 = lbd.ipv6;
        for n in &lbd.nodes {
            let i = self.node_index(n)?;
            lb.add_target(n.clone(), self.nodes[i].node.eth0());
            if let Some(ip6) = self.nodes[i].node.eth0_v6() {
                lb.set_target_v6(n, ip6);
            }
        }
        for (port, np) in &lbd.ports {
            lb.listen(PROTO_TCP, *port, *np);
        }
        let (frontend, frontend6) = (lb.frontend, lb.frontend6);
        self.router.add_load_balancer(lb);
        for (i, iface) in self.router.ifaces().iter().enumerate() {
            if iface.kind != IfaceKind::Clients {
                continue;
            }
            let seg = &mut self.segments[self.router_segs[i]];
            if iface.net.contains(&frontend) {
                seg.attach(frontend, Attach::Router(i));
            }
            if let Some(f6) = frontend6.filter(|f| iface.v6.iter().any(|(_, n)| n.contains(f))) {
                seg.attach(f6, Attach::Router(i));
            }
        }
        Ok(())
    }

    /// Start an embedded pod and its apps (at construction, or later: a scale-up).
    pub fn add_pod(&mut self, p: &PodDesc) -> Result<(), SimError> {
        let n = self.node_index(&p.node)?;
        let mut host = self.embedded_host(&p.name, p.ip, p.ipv6, n);
        let info = ServerInfo {
            pod: p.name.clone(),
            node: p.node.clone(),
            ip: p.ip,
        };
        let default = [AppDesc::nginx(80)];
        let apps = if p.apps.is_empty() {
            &default[..]
        } else {
            &p.apps
        };
        let (log, handle) = host.with_apps(info, self.clock, apps);
        let e = self.attach_pod(&p.name, p.ip, p.ipv6, n, Box::new(host))?;
        log.set_journal(self.journal.clone(), e);
        self.edges[e].access_log = Some(log);
        self.edges[e].apps = Some(handle);
        self.mark_embedded(e);
        Ok(())
    }

    /// Stop (`false`: the app exited, its ports refuse) or start again (`true`) an embedded
    /// pod's apps, from the next poll on.
    pub fn set_apps_running(&mut self, pod: &str, running: bool) -> Result<(), SimError> {
        let e = self.live_pod(pod)?;
        let handle = self.edges[e]
            .apps
            .clone()
            .ok_or_else(|| SimError::NotEmbedded(pod.to_string()))?;
        handle.set_running(running);
        self.kick(e);
        Ok(())
    }

    /// Delete a pod: its address leaves the cni0 segment (datagrams to it are lost, as for
    /// a deleted pod's veth) and it is no longer polled. Its access log stays readable.
    pub fn remove_pod(&mut self, name: &str) -> Result<(), SimError> {
        let e = self.live_pod(name)?;
        let (seg, ip, ip6) = (self.edges[e].seg, self.edges[e].ip, self.edges[e].ip6);
        self.segments[seg].detach(ip);
        if let Some(ip6) = ip6 {
            self.segments[seg].detach(ip6);
        }
        self.edges[e].gone = true;
        self.rewake(e);
        Ok(())
    }

    /// The edge of a pod that was not deleted.
    fn live_pod(&self, name: &str) -> Result<usize, SimError> {
        self.edge_index
            .get(name)
            .copied()
            .filter(|&e| matches!(self.edges[e].kind, EdgeKind::Pod { .. }) && !self.edges[e].gone)
            .ok_or_else(|| SimError::UnknownPod(name.to_string()))
    }

    pub(super) fn node_index(&self, name: &str) -> Result<usize, SimError> {
        self.node_index
            .get(name)
            .copied()
            .ok_or_else(|| SimError::UnknownNode(name.to_string()))
    }

    pub(super) fn embedded_host(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        ip6: Option<Ipv6Addr>,
        node: usize,
    ) -> Host {
        let n = &self.nodes[node].node;
        let v6 = match (ip6, n.pod_cidr_v6(), n.cni0_v6()) {
            (Some(ip), Some(net), Some(gateway)) => Some(HostV6 {
                ip,
                prefix_len: net.prefix_len(),
                gateway,
            }),
            _ => None,
        };
        Host::new(
            HostConfig {
                link: format!("{}/cni0/{name}", n.name()),
                ip,
                prefix_len: n.pod_cidr().prefix_len(),
                gateway: n.cni0(),
                seed: self.host_rng.next_u64(),
                v6,
            },
            self.now,
        )
    }

    /// Put IPv6 client network `net` on router interface `iface` (and its segment), the
    /// router at its first host. No-op when it is there already.
    pub(super) fn client_network6(&mut self, iface: usize, net: Ipv6Net) {
        let net = net.trunc();
        let seg = self.router_segs[iface];
        if self.segments[seg].nets6().contains(&net) {
            return;
        }
        let gw = first_host_v6(net);
        self.router.add_iface_v6(iface, gw, net);
        self.segments[seg].add_net6(net);
        self.segments[seg].attach(gw, Attach::Router(iface));
        // An LB's IPv6 frontend inside this network is answered by the router here.
        for lb in self.router.load_balancers() {
            if let Some(f6) = lb.frontend6.filter(|f| net.contains(f)) {
                self.segments[seg].attach(f6, Attach::Router(iface));
            }
        }
    }

    /// The router interface/segment for a client network (created if new).
    pub(super) fn client_network(&mut self, net: Ipv4Net) -> usize {
        let net = net.trunc();
        if let Some(i) = self.router.ifaces().iter().position(|i| i.net == net) {
            return i;
        }
        let gw = first_host(net);
        let i = self
            .router
            .add_iface(format!("clients-{net}"), gw, net, IfaceKind::Clients);
        let mut seg = Segment::new(format!("clients {net}"), net);
        seg.attach(gw, Attach::Router(i));
        // An LB frontend inside this client network is answered by the router here.
        for lb in self.router.load_balancers() {
            if net.contains(&lb.frontend) {
                seg.attach(lb.frontend, Attach::Router(i));
            }
        }
        self.segments.push(seg);
        self.router_segs.push(self.segments.len() - 1);
        i
    }

    pub(super) fn client_net_for(&mut self, ip: Ipv4Addr) -> Ipv4Net {
        if let Some(i) = self
            .router
            .ifaces()
            .iter()
            .find(|i| i.kind == IfaceKind::Clients && i.net.contains(&ip))
        {
            return i.net;
        }
        let net = Ipv4Net::new(ip, 24).expect("24 is a valid prefix").trunc();
        self.client_network(net);
        net
    }

    /// The world's tracer around an edge device; a pass-through when tracing is off (link
    /// events would be dropped by `collect` anyway).
    pub(super) fn tracer(&self, port: Box<dyn Port + Send>) -> Tracer<Box<dyn Port + Send>> {
        let mut t = Tracer::new(port, self.sink.clone());
        t.set_enabled(self.tracing);
        t
    }

    /// A new edge (an external port until marked embedded) on segment `seg`.
    /// `ips`: the edge's IPv4 address and, dual-stack, its IPv6 one; `gateways` the same.
    fn push_edge(
        &mut self,
        name: &str,
        ips: (Ipv4Addr, Option<Ipv6Addr>),
        seg: usize,
        gateways: (Ipv4Addr, Option<Ipv6Addr>),
        kind: EdgeKind,
        port: Box<dyn Port + Send>,
    ) -> usize {
        let edge = Edge {
            name: name.to_string(),
            ip: ips.0,
            ip6: ips.1,
            seg,
            gateway: gateways.0,
            gateway6: gateways.1,
            kind,
            port: self.tracer(port),
            access_log: None,
            apps: None,
            client: None,
            gone: false,
            embedded: false,
            wake_at: None,
        };
        let e = self.edges.len();
        self.segments[edge.seg].attach(edge.ip, Attach::Edge(e));
        if let Some(ip6) = edge.ip6 {
            self.segments[edge.seg].attach(ip6, Attach::Edge(e));
        }
        self.edge_index.insert(edge.name.clone(), e);
        self.edges.push(edge);
        self.external.insert(e);
        self.rewake(e);
        e
    }

    pub(super) fn attach_pod(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        ip6: Option<Ipv6Addr>,
        node: usize,
        port: Box<dyn Port + Send>,
    ) -> Result<usize, SimError> {
        // A deleted pod's name may come back (a scale-down then up to the same replicas):
        // the name then stands for the new pod; the old edge stays gone.
        if self
            .edge_index
            .get(name)
            .is_some_and(|&e| !self.edges[e].gone)
        {
            return Err(SimError::Duplicate(name.to_string()));
        }
        let n = &self.nodes[node];
        if !n.node.pod_cidr().contains(&ip) {
            return Err(SimError::OutsideNetwork {
                name: name.to_string(),
                addr: ip.into(),
                net: n.node.pod_cidr().into(),
            });
        }
        if let Some(ip6) = ip6 {
            let Some(net6) = n.node.pod_cidr_v6() else {
                return Err(SimError::NoIpv6 {
                    name: name.to_string(),
                    what: "pod CIDR on its node",
                });
            };
            if !net6.contains(&ip6) {
                return Err(SimError::OutsideNetwork {
                    name: name.to_string(),
                    addr: ip6.into(),
                    net: net6.into(),
                });
            }
        }
        let (seg, gateways) = (n.cni_seg, (n.node.cni0(), n.node.cni0_v6()));
        let kind = EdgeKind::Pod { node };
        Ok(self.push_edge(name, (ip, ip6), seg, gateways, kind, port))
    }

    /// An external client at `ips` (IPv4, and IPv6 on a dual-stack client: its client
    /// network is then the /64 around that address, on the same router interface), allowed
    /// to reach the `can_reach` nodes' addresses of both families.
    pub(super) fn attach_external(
        &mut self,
        name: &str,
        ips: (Ipv4Addr, Option<Ipv6Addr>),
        can_reach: &[String],
        port: Box<dyn Port + Send>,
    ) -> Result<usize, SimError> {
        if self.edge_index.contains_key(name) {
            return Err(SimError::Duplicate(name.to_string()));
        }
        let (ip, ip6) = ips;
        let net = self.client_net_for(ip);
        let iface = self.client_network(net);
        let net6 = ip6.map(client_net6);
        if let Some(net6) = net6 {
            self.client_network6(iface, net6);
        }
        for n in can_reach {
            let i = self.node_index(n)?;
            let node = &self.nodes[i].node;
            self.router.allow(ip, node.eth0());
            if let (Some(a), Some(b)) = (ip6, node.eth0_v6()) {
                self.router.allow(a, b);
            }
        }
        let seg = self.router_segs[iface];
        let gateways = (first_host(net), net6.map(first_host_v6));
        Ok(self.push_edge(name, ips, seg, gateways, EdgeKind::Client, port))
    }

    /// Attach an external port (e.g. a TUN device) as pod `name` at `ip` on `node`'s cni0.
    pub fn add_pod_port(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        node: &str,
        port: Box<dyn Port + Send>,
    ) -> Result<(), SimError> {
        self.add_pod_port_ips(name, (ip, None), node, port)
    }

    /// [`World::add_pod_port`] for a pod with both families: `ips` = (IPv4, IPv6 on the
    /// node's IPv6 pod /64) — real mode's TUN ports of dual-stack pods.
    pub fn add_pod_port_ips(
        &mut self,
        name: &str,
        ips: (Ipv4Addr, Option<Ipv6Addr>),
        node: &str,
        port: Box<dyn Port + Send>,
    ) -> Result<(), SimError> {
        let n = self.node_index(node)?;
        self.attach_pod(name, ips.0, ips.1, n, port).map(|_| ())
    }

    /// Attach an external port as client `name`.
    pub fn add_client_port(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        attach: &Attachment,
        port: Box<dyn Port + Send>,
    ) -> Result<(), SimError> {
        self.add_client_port_ips(name, (ip, None), attach, port)
    }

    /// [`World::add_client_port`] for a client with both families: `ips` = (IPv4, IPv6).
    pub fn add_client_port_ips(
        &mut self,
        name: &str,
        ips: (Ipv4Addr, Option<Ipv6Addr>),
        attach: &Attachment,
        port: Box<dyn Port + Send>,
    ) -> Result<(), SimError> {
        match attach {
            Attachment::Pod { node } => {
                let n = self.node_index(node)?;
                let e = self.attach_pod(name, ips.0, ips.1, n, port)?;
                self.edges[e].kind = EdgeKind::Client;
            }
            Attachment::External { can_reach } => {
                self.attach_external(name, ips, can_reach, port)?;
            }
        }
        Ok(())
    }

    /// Replace the device behind edge `name` (pod or client) with `f(device)` — the hook for
    /// stacking port wrappers (impairment, capture). The world's tracer stays outermost, so
    /// traces show what the fabric hands to / takes from the link.
    pub fn wrap_port(
        &mut self,
        name: &str,
        f: impl FnOnce(Box<dyn Port + Send>) -> Box<dyn Port + Send>,
    ) -> Result<(), SimError> {
        let e = self
            .edge_index
            .get(name)
            .copied()
            .ok_or_else(|| SimError::UnknownPod(name.to_string()))?;
        let placeholder: Box<dyn Port + Send> = Box::new(vswitch::MemPort::new(name).0);
        let placeholder = self.tracer(placeholder);
        let old = std::mem::replace(&mut self.edges[e].port, placeholder);
        self.edges[e].port = self.tracer(f(old.into_inner()));
        self.rewake(e);
        Ok(())
    }

    /// Impair edge `name`'s link: delay, jitter, rate, random loss (seeded from the world
    /// RNG). With tracing on, every lost datagram is a trace event (`[lost on the link]`).
    pub fn impair(&mut self, name: &str, cfg: ImpairConfig) -> Result<(), SimError> {
        let rng = ChaCha8Rng::seed_from_u64(self.rng.next_u64());
        let sink = self.tracing.then(|| self.sink.clone());
        self.wrap_port(name, move |p| {
            let imp = Impair::new(p, cfg, rng);
            Box::new(match sink {
                Some(s) => imp.with_trace(s),
                None => imp,
            })
        })
    }

    /// A kube-proxy sync on every node (and the LB listeners, when derived from services).
    pub fn set_services(&mut self, services: &[Service], slices: &[EndpointSlice]) {
        // The node-independent rule view is compiled once and shared by every node.
        let table = std::sync::Arc::new(nodeport::ServiceTable::compile(services, slices));
        for n in &mut self.nodes {
            n.node.set_service_table(services, table.clone());
        }
        // What the LB health checks probe: the first Local LoadBalancer service's
        // healthCheckNodePort, else kube-proxy's :10256 (spec §4.3).
        self.health_port = services
            .iter()
            .filter(|s| {
                s.type_ == ServiceType::LoadBalancer
                    && s.external_traffic_policy == TrafficPolicy::Local
            })
            .find_map(|s| s.health_check_node_port)
            .map(|p| (p, "/healthz".to_string()))
            .unwrap_or((PROXY_HEALTH_PORT, "/healthz".into()));
        let Some(lbd) = &self.lb else { return };
        if !lbd.ports.is_empty() {
            return;
        }
        let mut ordered: Vec<&Service> = services
            .iter()
            .filter(|s| s.type_ == ServiceType::LoadBalancer)
            .collect();
        ordered.extend(services.iter().filter(|s| s.type_ == ServiceType::NodePort));
        let mut seen = BTreeSet::new();
        let name = lbd.name.clone();
        if let Some(lb) = self.router.load_balancer_mut(&name) {
            for s in ordered {
                for p in &s.ports {
                    if let Some(np) = p.node_port {
                        if seen.insert((p.protocol.number(), p.port)) {
                            lb.listen(p.protocol.number(), p.port, np);
                        }
                    }
                }
            }
        }
    }
}
