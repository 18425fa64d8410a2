//! The [`World`]: every node, the router, the segments and the edge ports of one lab, one
//! seeded RNG, and the clock that drives them.
//!
//! Topology: the node network (each node's `eth0` + the router), one `cni0` segment per
//! node (the node's `cni0` + its pods and pod-attached clients), one segment per client
//! network (the router + external clients). Delivery is by next hop on a segment.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use nodeport::{EndpointSlice, ProxyConfig, Service, ServiceType, TrafficPolicy};
use nodestack::{HopEvent, Iface, Node, NodeSpec};
use vswitch::packet::{self, FlowTuple, Summary, PROTO_TCP};
use vswitch::router::IfaceKind;
use vswitch::{
    Impair, ImpairConfig, LinkEvent, LoadBalancer, Pcap, PcapSink, Port, Router, RouterEvent,
    Segment, TraceSink, Tracer,
};

use crate::clock::WallClock;

/// kube-proxy's health server port (`healthzBindAddress`, spec §4.4).
const PROXY_HEALTH_PORT: u16 = 10256;
use crate::host::{
    AccessLog, AccessLogEntry, ClientHandle, Host, HostConfig, RequestId, RequestOpts,
    RequestOutcome, ServerInfo,
};

/// Errors building or using a world.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("unknown client {0:?}")]
    UnknownClient(String),
    #[error("unknown pod {0:?}")]
    UnknownPod(String),
    #[error("client {0:?} is an external port: the world cannot start requests on it")]
    NotEmbedded(String),
    #[error("address {addr} of {name:?} is not inside {net}")]
    OutsideNetwork {
        name: String,
        addr: Ipv4Addr,
        net: Ipv4Net,
    },
    #[error("request {0} did not end within a virtual day (no max_time and a silent peer)")]
    NoOutcome(u64),
    #[error("duplicate name {0:?}")]
    Duplicate(String),
    #[error("the world has no load balancer")]
    NoLoadBalancer,
}

/// How the load balancer health-checks its target nodes (spec §4.3).
///
/// Probes are real HTTP GETs from an embedded curl-like client at `source` (behind the
/// router, like an NLB's own health-check addresses) to each target's healthCheckNodePort
/// (`/healthz`), or kube-proxy's `:10256/healthz` when no `externalTrafficPolicy: Local`
/// LoadBalancer service has one. A round starts every `interval` on the world's clock; a
/// probe fails on a non-200 answer or after `timeout` (connect or overall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive 200s that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
    /// Weight each target by `X-Load-Balancing-Endpoint-Weight` of its last 200 answer.
    pub weighted: bool,
    /// Address the probes come from.
    pub source: Ipv4Addr,
    /// Health before the first probes decide (cloud LBs start targets unhealthy).
    pub initially_healthy: bool,
}

/// A probe result or a health change of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub at: Duration,
    pub target: String,
    /// HTTP status of the probe, `None` for a timeout/refusal.
    pub status: Option<u16>,
    /// `X-Load-Balancing-Endpoint-Weight` of the answer.
    pub weight: Option<u32>,
    /// Health after this probe.
    pub healthy: bool,
    /// This probe flipped the target's health.
    pub changed: bool,
}

impl fmt::Display for HealthEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>10.6}s {} probe ", self.at.as_secs_f64(), self.target)?;
        match self.status {
            Some(c) => write!(f, "{c}")?,
            None => write!(f, "failed")?,
        }
        if let Some(w) = self.weight {
            write!(f, " weight {w}")?;
        }
        let h = if self.healthy { "healthy" } else { "unhealthy" };
        if self.changed {
            write!(f, " → now {h}")
        } else {
            write!(f, " ({h})")
        }
    }
}

struct ProbeTarget {
    name: String,
    ip: Ipv4Addr,
    ok_run: u32,
    fail_run: u32,
    healthy: bool,
    pending: Option<RequestId>,
}

struct Prober {
    spec: HealthCheckSpec,
    client: String,
    next_round: Duration,
    targets: Vec<ProbeTarget>,
    events: Vec<HealthEvent>,
}

/// A node of the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    /// kube-proxy configuration; `None` = `ProxyConfig::new(name, [ip, cni0])` with the
    /// world's `cluster_cidr`.
    pub proxy: Option<ProxyConfig>,
}

impl NodeDesc {
    pub fn new(name: impl Into<String>, ip: Ipv4Addr, pod_cidr: Ipv4Net) -> Self {
        NodeDesc {
            name: name.into(),
            ip,
            pod_cidr,
            proxy: None,
        }
    }
}

/// Where a client sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// Behind the router; may reach only the listed nodes (by name) and LB frontends.
    External { can_reach: Vec<String> },
    /// On a node's cni0, like a pod.
    Pod { node: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    pub attach: Attachment,
}

/// A pod running the nginx-like server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    pub node: String,
}

/// The external load balancer (its frontend lives on the router).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Target nodes (names), even split per node.
    pub nodes: Vec<String>,
    /// (frontend port, node port). Empty = derived from the services on every
    /// [`World::set_services`]: each port with a nodePort (LoadBalancer services first).
    pub ports: Vec<(u16, u16)>,
}

/// The plain description a world is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSpec {
    pub node_network: Ipv4Net,
    /// The router's address on the node network (every node's default gateway).
    pub router_ip: Ipv4Addr,
    /// kube-proxy's `clusterCIDR` for default proxy configs.
    pub cluster_cidr: Option<Ipv4Net>,
    /// Client networks; a client outside all of them gets its own /24.
    pub client_networks: Vec<Ipv4Net>,
    pub nodes: Vec<NodeDesc>,
    pub clients: Vec<ClientDesc>,
    pub pods: Vec<PodDesc>,
    pub load_balancer: Option<LbDesc>,
    pub seed: u64,
    pub wall_clock: WallClock,
    /// Record traces (on by default; off saves memory for long plans).
    pub tracing: bool,
}

impl Default for WorldSpec {
    fn default() -> Self {
        WorldSpec {
            node_network: "10.151.30.0/24".parse().expect("literal"),
            router_ip: "10.151.30.1".parse().expect("literal"),
            cluster_cidr: Some("10.244.0.0/16".parse().expect("literal")),
            client_networks: Vec::new(),
            nodes: Vec::new(),
            clients: Vec::new(),
            pods: Vec::new(),
            load_balancer: None,
            seed: 1,
            wall_clock: WallClock::default(),
            tracing: true,
        }
    }
}

/// A delivery between segments, recorded by the world.
#[derive(Debug, Clone)]
pub struct FabricEvent {
    pub at: Duration,
    pub segment: String,
    pub from: String,
    /// `None` = nobody owns the next hop (the datagram is lost).
    pub to: Option<String>,
    pub next_hop: Ipv4Addr,
    pub summary: Option<Summary>,
}

/// One entry of the world's trace, in processing order.
#[derive(Debug, Clone)]
pub enum TraceEvent {
    /// A datagram crossing an edge port's link (pods, clients).
    Link(LinkEvent),
    /// A step inside a node.
    Node(HopEvent),
    /// A decision of the router / load balancer.
    Router(RouterEvent),
    /// A delivery on a segment.
    Fabric(FabricEvent),
}

impl TraceEvent {
    pub fn at(&self) -> Duration {
        match self {
            TraceEvent::Link(e) => e.at,
            TraceEvent::Node(e) => e.at,
            TraceEvent::Router(e) => e.at,
            TraceEvent::Fabric(e) => e.at,
        }
    }
    /// (before, after) summaries of the datagram at this event.
    fn summaries(&self) -> (Option<&Summary>, Option<&Summary>) {
        match self {
            TraceEvent::Link(e) => (e.summary.as_ref(), None),
            TraceEvent::Node(e) => (e.before.as_ref(), e.after.as_ref()),
            TraceEvent::Router(e) => (e.before.as_ref(), e.after.as_ref()),
            TraceEvent::Fabric(e) => (e.summary.as_ref(), None),
        }
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Link(e) => write!(f, "{e}"),
            TraceEvent::Node(e) => write!(f, "{e}"),
            TraceEvent::Router(e) => {
                write!(
                    f,
                    "{:>10.6}s {} {}→{} {}",
                    e.at.as_secs_f64(),
                    e.router,
                    e.in_iface,
                    e.out_iface.as_deref().unwrap_or("-"),
                    e.action
                )?;
                if let Some(a) = &e.after {
                    write!(f, " {a}")?;
                }
                Ok(())
            }
            TraceEvent::Fabric(e) => {
                write!(
                    f,
                    "{:>10.6}s {} {} → {} (next hop {})",
                    e.at.as_secs_f64(),
                    e.segment,
                    e.from,
                    e.to.as_deref().unwrap_or("<no neighbour: lost>"),
                    e.next_hop
                )?;
                if let Some(s) = &e.summary {
                    write!(f, " {s}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attach {
    Node(usize, Iface),
    /// Pod-to-pod on a node's cni0 bridge: through the node's hooks (br_netfilter).
    Bridge(usize),
    Router(usize),
    Edge(usize),
}

struct NodeSlot {
    node: Node,
    eth0_seg: usize,
    cni_seg: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EdgeKind {
    Pod { node: usize },
    Client,
}

struct Edge {
    name: String,
    ip: Ipv4Addr,
    seg: usize,
    gateway: Ipv4Addr,
    kind: EdgeKind,
    port: Tracer<Box<dyn Port + Send>>,
    access_log: Option<AccessLog>,
    client: Option<ClientHandle>,
    /// Removed from the fabric (a deleted pod): not polled, its address detached.
    gone: bool,
}

struct RequestMeta {
    client: usize,
    dst: SocketAddrV4,
    started: Duration,
}

/// The running lab.
pub struct World {
    now: Duration,
    rng: ChaCha8Rng,
    /// Seeds for embedded hosts (smoltcp ISNs, ephemeral ports): a stream of its own, so the
    /// datapath's random decisions (`rng`: endpoint choice, LB node choice) are the same
    /// whether pods and clients are embedded or external ports (real mode).
    host_rng: ChaCha8Rng,
    clock: WallClock,
    segments: Vec<Segment<Attach>>,
    nodes: Vec<NodeSlot>,
    router: Router,
    router_segs: Vec<usize>,
    edges: Vec<Edge>,
    queue: VecDeque<(Attach, Vec<u8>)>,
    trace: Vec<TraceEvent>,
    sink: TraceSink,
    tracing: bool,
    requests: HashMap<RequestId, RequestMeta>,
    next_request: u64,
    lb: Option<LbDesc>,
    prober: Option<Prober>,
    /// (port, path) the health checks use; derived from the services.
    health_port: (u16, String),
    /// Pcap capture of node interfaces ([eth0, cni0] per node) and router interfaces.
    node_pcap: Vec<[Option<PcapSink>; 2]>,
    router_pcap: Vec<Option<PcapSink>>,
    edge_pcap: Vec<PcapSink>,
    /// Datagrams lost because no attachment owned the next hop, or unparseable at an edge.
    pub lost: u64,
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
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
        let router_segs = vec![0];

        // Nodes.
        let mut names = HashSet::new();
        let mut nodes: Vec<NodeSlot> = Vec::new();
        for (i, d) in spec.nodes.iter().enumerate() {
            if !names.insert(d.name.clone()) {
                return Err(SimError::Duplicate(d.name.clone()));
            }
            if !node_net.contains(&d.ip) {
                return Err(SimError::OutsideNetwork {
                    name: d.name.clone(),
                    addr: d.ip,
                    net: node_net,
                });
            }
            let cni0 = first_host(d.pod_cidr.trunc());
            let proxy = d.proxy.clone().unwrap_or_else(|| {
                let mut p = ProxyConfig::new(d.name.clone(), vec![d.ip, cni0]);
                p.cluster_cidr = spec.cluster_cidr;
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
                },
                Duration::ZERO,
                rng.next_u64(),
            );
            node.tracing = spec.tracing;
            for o in &spec.nodes {
                if o.name != d.name {
                    node.add_route(o.pod_cidr, o.ip);
                }
            }
            segments[0].attach(d.ip, Attach::Node(i, Iface::Eth0));
            let mut cni = Segment::new(format!("{}/cni0", d.name), d.pod_cidr.trunc());
            cni.attach(cni0, Attach::Node(i, Iface::Cni0));
            segments.push(cni);
            nodes.push(NodeSlot {
                node,
                eth0_seg: 0,
                cni_seg: segments.len() - 1,
            });
        }

        let mut world = World {
            now: Duration::ZERO,
            rng,
            host_rng: ChaCha8Rng::seed_from_u64(spec.seed ^ 0x6e70_6c61_625f_686f),
            clock: spec.wall_clock,
            segments,
            nodes,
            router,
            router_segs,
            edges: Vec::new(),
            queue: VecDeque::new(),
            trace: Vec::new(),
            sink: TraceSink::new(),
            tracing: spec.tracing,
            requests: HashMap::new(),
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

        // Pods (nginx).
        for p in &spec.pods {
            world.add_pod(p)?;
        }
        // Clients (curl).
        for c in &spec.clients {
            let e = match &c.attach {
                Attachment::Pod { node } => {
                    let n = world.node_index(node)?;
                    let mut host = world.embedded_host(&c.name, c.ip, n);
                    let seed = world.host_rng.next_u64();
                    let h = host.with_client(c.ip, seed);
                    let e = world.attach_pod(&c.name, c.ip, n, Box::new(host))?;
                    world.edges[e].kind = EdgeKind::Client;
                    world.edges[e].client = Some(h);
                    e
                }
                Attachment::External { can_reach } => {
                    let net = world.client_net_for(c.ip);
                    let gw = first_host(net);
                    let mut host = Host::new(
                        HostConfig {
                            link: c.name.clone(),
                            ip: c.ip,
                            prefix_len: net.prefix_len(),
                            gateway: gw,
                            seed: world.host_rng.next_u64(),
                        },
                        Duration::ZERO,
                    );
                    let seed = world.host_rng.next_u64();
                    let h = host.with_client(c.ip, seed);
                    let e = world.attach_external(&c.name, c.ip, can_reach, Box::new(host))?;
                    world.edges[e].client = Some(h);
                    e
                }
            };
            let _ = e;
        }
        // Load balancer.
        if let Some(lbd) = spec.load_balancer {
            let mut lb = LoadBalancer::new(lbd.name.clone(), lbd.ip);
            for n in &lbd.nodes {
                let i = world.node_index(n)?;
                lb.add_target(n.clone(), world.nodes[i].node.eth0());
            }
            for (port, np) in &lbd.ports {
                lb.listen(PROTO_TCP, *port, *np);
            }
            let frontend = lb.frontend;
            world.router.add_load_balancer(lb);
            for (i, iface) in world.router.ifaces().iter().enumerate() {
                if iface.kind == IfaceKind::Clients && iface.net.contains(&frontend) {
                    world.segments[world.router_segs[i]].attach(frontend, Attach::Router(i));
                }
            }
        }
        Ok(world)
    }

    /// Start an embedded nginx pod (at construction, or later: a scale-up).
    pub fn add_pod(&mut self, p: &PodDesc) -> Result<(), SimError> {
        let n = self.node_index(&p.node)?;
        let mut host = self.embedded_host(&p.name, p.ip, n);
        let info = ServerInfo {
            pod: p.name.clone(),
            node: p.node.clone(),
            ip: p.ip,
        };
        let log = host.with_server(info, self.clock);
        let e = self.attach_pod(&p.name, p.ip, n, Box::new(host))?;
        self.edges[e].access_log = Some(log);
        Ok(())
    }

    /// Delete a pod: its address leaves the cni0 segment (datagrams to it are lost, as for
    /// a deleted pod's veth) and it is no longer polled. Its access log stays readable.
    pub fn remove_pod(&mut self, name: &str) -> Result<(), SimError> {
        let e = self
            .edges
            .iter()
            .position(|e| e.name == name && matches!(e.kind, EdgeKind::Pod { .. }) && !e.gone)
            .ok_or_else(|| SimError::UnknownPod(name.to_string()))?;
        let (seg, ip) = (self.edges[e].seg, self.edges[e].ip);
        self.segments[seg].detach(ip);
        self.edges[e].gone = true;
        Ok(())
    }

    fn node_index(&self, name: &str) -> Result<usize, SimError> {
        self.nodes
            .iter()
            .position(|n| n.node.name() == name)
            .ok_or_else(|| SimError::UnknownNode(name.to_string()))
    }

    fn embedded_host(&mut self, name: &str, ip: Ipv4Addr, node: usize) -> Host {
        let n = &self.nodes[node].node;
        Host::new(
            HostConfig {
                link: format!("{}/cni0/{name}", n.name()),
                ip,
                prefix_len: n.pod_cidr().prefix_len(),
                gateway: n.cni0(),
                seed: self.host_rng.next_u64(),
            },
            self.now,
        )
    }

    /// The router interface/segment for a client network (created if new).
    fn client_network(&mut self, net: Ipv4Net) -> usize {
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

    fn client_net_for(&mut self, ip: Ipv4Addr) -> Ipv4Net {
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
    fn tracer(&self, port: Box<dyn Port + Send>) -> Tracer<Box<dyn Port + Send>> {
        let mut t = Tracer::new(port, self.sink.clone());
        t.set_enabled(self.tracing);
        t
    }

    fn push_edge(&mut self, edge: Edge) -> usize {
        self.segments[edge.seg].attach(edge.ip, Attach::Edge(self.edges.len()));
        self.edges.push(edge);
        self.edges.len() - 1
    }

    fn attach_pod(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        node: usize,
        port: Box<dyn Port + Send>,
    ) -> Result<usize, SimError> {
        if self.edges.iter().any(|e| e.name == name) {
            return Err(SimError::Duplicate(name.to_string()));
        }
        let n = &self.nodes[node];
        if !n.node.pod_cidr().contains(&ip) {
            return Err(SimError::OutsideNetwork {
                name: name.to_string(),
                addr: ip,
                net: n.node.pod_cidr(),
            });
        }
        let edge = Edge {
            name: name.to_string(),
            ip,
            seg: n.cni_seg,
            gateway: n.node.cni0(),
            kind: EdgeKind::Pod { node },
            port: self.tracer(port),
            access_log: None,
            client: None,
            gone: false,
        };
        Ok(self.push_edge(edge))
    }

    fn attach_external(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        can_reach: &[String],
        port: Box<dyn Port + Send>,
    ) -> Result<usize, SimError> {
        if self.edges.iter().any(|e| e.name == name) {
            return Err(SimError::Duplicate(name.to_string()));
        }
        let net = self.client_net_for(ip);
        let iface = self.client_network(net);
        for n in can_reach {
            let i = self.node_index(n)?;
            let nip = self.nodes[i].node.eth0();
            self.router.allow(ip, nip);
        }
        let edge = Edge {
            name: name.to_string(),
            ip,
            seg: self.router_segs[iface],
            gateway: first_host(net),
            kind: EdgeKind::Client,
            port: self.tracer(port),
            access_log: None,
            client: None,
            gone: false,
        };
        Ok(self.push_edge(edge))
    }

    /// Attach an external port (e.g. a TUN device) as pod `name` at `ip` on `node`'s cni0.
    pub fn add_pod_port(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        node: &str,
        port: Box<dyn Port + Send>,
    ) -> Result<(), SimError> {
        let n = self.node_index(node)?;
        self.attach_pod(name, ip, n, port).map(|_| ())
    }

    /// Attach an external port as client `name`.
    pub fn add_client_port(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        attach: &Attachment,
        port: Box<dyn Port + Send>,
    ) -> Result<(), SimError> {
        match attach {
            Attachment::Pod { node } => {
                let n = self.node_index(node)?;
                let e = self.attach_pod(name, ip, n, port)?;
                self.edges[e].kind = EdgeKind::Client;
            }
            Attachment::External { can_reach } => {
                self.attach_external(name, ip, can_reach, port)?;
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
            .edges
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| SimError::UnknownPod(name.to_string()))?;
        let placeholder: Box<dyn Port + Send> = Box::new(vswitch::MemPort::new(name).0);
        let placeholder = self.tracer(placeholder);
        let old = std::mem::replace(&mut self.edges[e].port, placeholder);
        self.edges[e].port = self.tracer(f(old.into_inner()));
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
        for n in &mut self.nodes {
            n.node.set_services(services, slices);
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

    // ----- load balancer health checks --------------------------------------------------

    /// Turn on LB health checking (see [`HealthCheckSpec`]). Adds the prober, an external
    /// embedded client named `<lb>-healthcheck` at `spec.source` that may reach every
    /// target node, sets every target's health to `spec.initially_healthy` and starts the
    /// first round now. Note: with probes running the clock always has a next deadline;
    /// [`World::run_until_idle`] ignores the probe schedule.
    pub fn enable_health_checks(&mut self, spec: HealthCheckSpec) -> Result<(), SimError> {
        let lbd = self.lb.clone().ok_or(SimError::NoLoadBalancer)?;
        let client = format!("{}-healthcheck", lbd.name);
        let desc = ClientDesc {
            name: client.clone(),
            ip: spec.source,
            attach: Attachment::External {
                can_reach: lbd.nodes.clone(),
            },
        };
        let net = self.client_net_for(spec.source);
        let mut host = Host::new(
            HostConfig {
                link: client.clone(),
                ip: spec.source,
                prefix_len: net.prefix_len(),
                gateway: first_host(net),
                seed: self.rng.next_u64(),
            },
            self.now,
        );
        let h = host.with_client(spec.source, self.rng.next_u64());
        let Attachment::External { can_reach } = &desc.attach else {
            unreachable!()
        };
        let e = self.attach_external(&client, spec.source, can_reach, Box::new(host))?;
        self.edges[e].client = Some(h);
        let mut targets = Vec::new();
        for n in &lbd.nodes {
            let i = self.node_index(n)?;
            targets.push(ProbeTarget {
                name: n.clone(),
                ip: self.nodes[i].node.eth0(),
                ok_run: 0,
                fail_run: 0,
                healthy: spec.initially_healthy,
                pending: None,
            });
        }
        if let Some(lb) = self.router.load_balancer_mut(&lbd.name) {
            for t in &targets {
                lb.set_healthy(&t.name, t.healthy);
            }
        }
        self.prober = Some(Prober {
            spec,
            client,
            next_round: self.now,
            targets,
            events: Vec::new(),
        });
        Ok(())
    }

    /// Every probe result so far (with health flips marked).
    pub fn health_events(&self) -> &[HealthEvent] {
        self.prober.as_ref().map(|p| &p.events[..]).unwrap_or(&[])
    }

    /// (target, healthy, weight) of the load balancer's targets now.
    pub fn lb_targets(&self) -> Vec<(String, bool, u32)> {
        self.router
            .load_balancers()
            .iter()
            .flat_map(|lb| lb.targets.iter())
            .map(|t| (t.name.clone(), t.healthy, t.weight))
            .collect()
    }

    /// Collect finished probes and start a round when due.
    fn probe_tick(&mut self) {
        let Some(mut pr) = self.prober.take() else {
            return;
        };
        let now = self.now;
        let lb_name = self.lb.as_ref().map(|l| l.name.clone()).unwrap_or_default();
        for t in &mut pr.targets {
            let Some(id) = t.pending else { continue };
            let Some(out) = self.outcome(id) else {
                continue;
            };
            t.pending = None;
            let ok = out.status == Some(200);
            let weight = out
                .header("X-Load-Balancing-Endpoint-Weight")
                .and_then(|v| v.trim().parse::<u32>().ok());
            let before = t.healthy;
            if ok {
                t.ok_run += 1;
                t.fail_run = 0;
                if !t.healthy && t.ok_run >= pr.spec.healthy_threshold {
                    t.healthy = true;
                }
            } else {
                t.fail_run += 1;
                t.ok_run = 0;
                if t.healthy && t.fail_run >= pr.spec.unhealthy_threshold {
                    t.healthy = false;
                }
            }
            if let Some(lb) = self.router.load_balancer_mut(&lb_name) {
                lb.set_healthy(&t.name, t.healthy);
                if pr.spec.weighted && ok {
                    if let Some(w) = weight {
                        lb.set_weight(&t.name, w);
                    }
                }
            }
            pr.events.push(HealthEvent {
                at: now,
                target: t.name.clone(),
                status: out.status,
                weight,
                healthy: t.healthy,
                changed: before != t.healthy,
            });
        }
        if now >= pr.next_round {
            let (port, path) = self.health_port.clone();
            for i in 0..pr.targets.len() {
                if pr.targets[i].pending.is_some() {
                    continue;
                }
                let opts = RequestOpts {
                    path: path.clone(),
                    connect_timeout: Some(pr.spec.timeout),
                    max_time: Some(pr.spec.timeout),
                    host: None,
                };
                let dst = SocketAddrV4::new(pr.targets[i].ip, port);
                if let Ok(id) = self.start_request(&pr.client, dst, opts) {
                    pr.targets[i].pending = Some(id);
                }
            }
            let step = pr.spec.interval.max(Duration::from_millis(1));
            while pr.next_round <= now {
                pr.next_round += step;
            }
        }
        self.prober = Some(pr);
    }

    // ----- pcap capture ------------------------------------------------------------------

    /// Capture every link into `dir` (created if missing), one LINKTYPE_RAW pcap file per
    /// link: each client's uplink (`<client>.pcap`, incl. the LB prober), each pod's link
    /// (`pod-<pod>.pcap`), each node's `eth0` and `cni0` (`<node>-eth0.pcap`,
    /// `<node>-cni0.pcap`: what the interface receives and what it transmits, i.e. after
    /// NAT on egress) and each router interface (`router-<iface>.pcap`). Timestamps are the
    /// world's wall clock (its base + virtual time). Call it before adding impairments so
    /// edge captures show the device side of an impaired link. Returns (link, path) pairs.
    pub fn capture_all(&mut self, dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
        std::fs::create_dir_all(dir)?;
        let base = Duration::from_secs(self.clock.base_unix);
        let mut files = Vec::new();
        let open = |link: String, files: &mut Vec<(String, PathBuf)>| {
            let path = dir.join(format!("{}.pcap", vswitch::pcap::sanitize(&link)));
            let sink = PcapSink::create(&path, base);
            if sink.is_ok() {
                files.push((link, path));
            }
            sink
        };
        let mut node_pcap = Vec::new();
        for n in &self.nodes {
            let name = n.node.name().to_string();
            node_pcap.push([
                Some(open(format!("{name}-eth0"), &mut files)?),
                Some(open(format!("{name}-cni0"), &mut files)?),
            ]);
        }
        let mut router_pcap = Vec::new();
        for i in self.router.ifaces() {
            router_pcap.push(Some(open(format!("router-{}", i.name), &mut files)?));
        }
        let mut edge_sinks = Vec::new();
        for e in &self.edges {
            if e.gone {
                continue;
            }
            let link = match e.kind {
                EdgeKind::Pod { .. } => format!("pod-{}", e.name),
                EdgeKind::Client => e.name.clone(),
            };
            edge_sinks.push((e.name.clone(), open(link, &mut files)?));
        }
        self.node_pcap = node_pcap;
        self.router_pcap = router_pcap;
        for (name, sink) in edge_sinks {
            let s2 = sink.clone();
            self.wrap_port(&name, move |p| Box::new(Pcap::new(p, s2)))
                .map_err(std::io::Error::other)?;
            self.edge_pcap.push(sink);
        }
        Ok(files)
    }

    /// Flush and close every capture file (also happens when the world is dropped).
    pub fn finish_captures(&mut self) -> std::io::Result<()> {
        let all = self
            .node_pcap
            .iter()
            .flatten()
            .flatten()
            .chain(self.router_pcap.iter().flatten())
            .chain(self.edge_pcap.iter());
        let mut first = Ok(());
        for s in all {
            if let Err(e) = s.finish() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    fn capture(&self, at: Attach, pkt: &[u8]) {
        let sink = match at {
            Attach::Node(n, Iface::Eth0) => self.node_pcap.get(n).and_then(|s| s[0].as_ref()),
            Attach::Node(n, Iface::Cni0) => self.node_pcap.get(n).and_then(|s| s[1].as_ref()),
            Attach::Router(i) => self.router_pcap.get(i).and_then(|s| s.as_ref()),
            _ => None,
        };
        if let Some(s) = sink {
            s.record(self.now, pkt);
        }
    }

    // ----- clock and driving -------------------------------------------------------------

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The wall clock used for logs.
    pub fn wall_clock(&self) -> WallClock {
        self.clock
    }

    fn collect(&mut self) {
        if !self.tracing {
            // Nothing records: tracers are pass-throughs, nodes and the router note nothing.
            return;
        }
        for e in self.sink.drain() {
            if self.tracing {
                self.trace.push(TraceEvent::Link(e));
            }
        }
        for n in &mut self.nodes {
            for e in n.node.drain_events() {
                self.trace.push(TraceEvent::Node(e));
            }
        }
        for e in self.router.drain_events() {
            self.trace.push(TraceEvent::Router(e));
        }
    }

    fn attach_name(&self, a: Attach) -> String {
        match a {
            Attach::Node(n, i) => format!("{}/{i}", self.nodes[n].node.name()),
            Attach::Bridge(n) => format!("{}/cni0 bridge", self.nodes[n].node.name()),
            Attach::Router(i) => format!("router/{}", self.router.ifaces()[i].name),
            Attach::Edge(e) => self.edges[e].name.clone(),
        }
    }

    fn emit(&mut self, from: Attach, seg: usize, next_hop: Ipv4Addr, pkt: Vec<u8>) {
        self.capture(from, &pkt);
        let to = self.segments[seg].resolve(next_hop);
        if to.is_none() {
            self.lost += 1;
        }
        if self.tracing {
            let ev = FabricEvent {
                at: self.now,
                segment: self.segments[seg].name().to_string(),
                from: self.attach_name(from),
                to: to.map(|a| self.attach_name(a)),
                next_hop,
                summary: packet::summarize(&pkt).ok(),
            };
            self.trace.push(TraceEvent::Fabric(ev));
        }
        if let Some(a) = to {
            self.queue.push_back((a, pkt));
        }
    }

    fn edge_egress(&mut self, e: usize, pkt: Vec<u8>) {
        let Ok(s) = packet::summarize(&pkt) else {
            self.lost += 1;
            return;
        };
        let edge = &self.edges[e];
        let seg = edge.seg;
        let on_link = self.segments[seg].on_link(s.tuple.dst);
        if on_link && s.tuple.dst != edge.gateway {
            // Pod to pod on a cni0 bridge: br_netfilter hands it to the node's hooks.
            if let Some(n) = self.nodes.iter().position(|n| n.cni_seg == seg) {
                if self.segments[seg].resolve(s.tuple.dst).is_some() {
                    if self.tracing {
                        let ev = FabricEvent {
                            at: self.now,
                            segment: self.segments[seg].name().to_string(),
                            from: self.edges[e].name.clone(),
                            to: Some(self.attach_name(Attach::Bridge(n))),
                            next_hop: s.tuple.dst,
                            summary: Some(s),
                        };
                        self.trace.push(TraceEvent::Fabric(ev));
                    }
                    self.queue.push_back((Attach::Bridge(n), pkt));
                } else {
                    self.emit(Attach::Edge(e), seg, s.tuple.dst, pkt);
                }
                return;
            }
        }
        let next_hop = if on_link { s.tuple.dst } else { edge.gateway };
        self.emit(Attach::Edge(e), seg, next_hop, pkt);
    }

    fn deliver(&mut self, to: Attach, pkt: Vec<u8>) {
        let now = self.now;
        self.capture(to, &pkt);
        match to {
            Attach::Node(n, iface) => {
                let outs = self.nodes[n]
                    .node
                    .receive_owned(now, iface, pkt, &mut self.rng);
                self.collect();
                for o in outs {
                    let seg = match o.iface {
                        Iface::Eth0 => self.nodes[n].eth0_seg,
                        Iface::Cni0 => self.nodes[n].cni_seg,
                    };
                    self.emit(Attach::Node(n, o.iface), seg, o.next_hop, o.pkt);
                }
            }
            Attach::Bridge(n) => {
                let outs = self.nodes[n].node.bridge_owned(now, pkt, &mut self.rng);
                self.collect();
                for o in outs {
                    let seg = match o.iface {
                        Iface::Eth0 => self.nodes[n].eth0_seg,
                        Iface::Cni0 => self.nodes[n].cni_seg,
                    };
                    self.emit(Attach::Node(n, o.iface), seg, o.next_hop, o.pkt);
                }
            }
            Attach::Router(i) => {
                let outs = self.router.receive_owned(now, i, pkt, &mut self.rng);
                self.collect();
                for o in outs {
                    let seg = self.router_segs[o.iface];
                    self.emit(Attach::Router(o.iface), seg, o.next_hop, o.pkt);
                }
            }
            Attach::Edge(e) => {
                if !self.edges[e].gone {
                    self.edges[e].port.send(now, &pkt);
                    self.collect();
                }
            }
        }
    }

    /// Process everything ready at the current time. Returns whether anything moved.
    fn step(&mut self) -> bool {
        let mut any = false;
        for _ in 0..100_000 {
            let mut progress = false;
            let now = self.now;
            self.probe_tick();
            for e in 0..self.edges.len() {
                if self.edges[e].gone {
                    continue;
                }
                while let Some(p) = self.edges[e].port.recv(now) {
                    progress = true;
                    self.collect();
                    self.edge_egress(e, p);
                }
            }
            for n in 0..self.nodes.len() {
                if self.nodes[n].node.poll_at().is_some_and(|t| t <= now) {
                    let outs = self.nodes[n].node.poll(now, &mut self.rng);
                    self.collect();
                    for o in outs {
                        progress = true;
                        let seg = match o.iface {
                            Iface::Eth0 => self.nodes[n].eth0_seg,
                            Iface::Cni0 => self.nodes[n].cni_seg,
                        };
                        self.emit(Attach::Node(n, o.iface), seg, o.next_hop, o.pkt);
                    }
                }
            }
            while let Some((to, pkt)) = self.queue.pop_front() {
                progress = true;
                self.deliver(to, pkt);
            }
            if !progress {
                break;
            }
            any = true;
        }
        any
    }

    /// The earliest deadline of any port or node (and the next health-check round).
    pub fn next_deadline(&self) -> Option<Duration> {
        let probes = self.prober.as_ref().map(|p| p.next_round);
        self.next_deadline_inner().into_iter().chain(probes).min()
    }

    fn next_deadline_inner(&self) -> Option<Duration> {
        let edges = self
            .edges
            .iter()
            .filter(|e| !e.gone)
            .filter_map(|e| e.port.poll_at());
        let nodes = self.nodes.iter().filter_map(|n| n.node.poll_at());
        edges.chain(nodes).min()
    }

    /// Real-time driving: process everything due at `now` (the caller's clock; never moves
    /// backwards) and return the next deadline, if any.
    pub fn poll(&mut self, now: Duration) -> Option<Duration> {
        if now > self.now {
            self.now = now;
        }
        self.step();
        self.next_deadline()
    }

    fn advance(&mut self, limit: Duration) -> bool {
        self.advance_with(limit, true)
    }

    fn advance_with(&mut self, limit: Duration, probes: bool) -> bool {
        let next = if probes {
            self.next_deadline()
        } else {
            self.next_deadline_inner()
        };
        match next {
            Some(t) if t <= limit => {
                // A deadline already due that produced nothing: nudge the clock forward.
                self.now = if t > self.now {
                    t
                } else {
                    self.now + Duration::from_millis(1)
                };
                true
            }
            _ => false,
        }
    }

    /// Virtual time: run until `deadline`, jumping over idle time.
    pub fn run_until(&mut self, deadline: Duration) {
        loop {
            self.step();
            if !self.advance(deadline) {
                break;
            }
        }
        if self.now < deadline {
            self.now = deadline;
            self.step();
        }
    }

    /// Virtual time: run until nothing is in flight and no timer is pending (bounded to one
    /// virtual day from now).
    pub fn run_until_idle(&mut self) {
        let limit = self.now + Duration::from_secs(86_400);
        loop {
            self.step();
            if !self.advance_with(limit, false) {
                break;
            }
        }
    }

    /// Virtual time: run until request `id` has an outcome (then finish what is in flight
    /// at that instant, e.g. the closing handshake, without advancing time).
    pub fn run_until_complete(&mut self, id: RequestId) -> Option<RequestOutcome> {
        let limit = self.now + Duration::from_secs(86_400);
        loop {
            self.step();
            if let Some(o) = self.outcome(id) {
                return Some(o);
            }
            if !self.advance(limit) {
                return self.outcome(id);
            }
        }
    }

    // ----- requests ----------------------------------------------------------------------

    /// Start a curl-like GET from `client` to `dst`. Run the clock to make progress.
    pub fn start_request(
        &mut self,
        client: &str,
        dst: SocketAddrV4,
        opts: RequestOpts,
    ) -> Result<RequestId, SimError> {
        let e = self
            .edges
            .iter()
            .position(|e| e.name == client && e.kind == EdgeKind::Client)
            .ok_or_else(|| SimError::UnknownClient(client.to_string()))?;
        let handle = self.edges[e]
            .client
            .clone()
            .ok_or_else(|| SimError::NotEmbedded(client.to_string()))?;
        let id = RequestId(self.next_request);
        self.next_request += 1;
        handle.start(id, dst, opts, self.now);
        self.requests.insert(
            id,
            RequestMeta {
                client: e,
                dst,
                started: self.now,
            },
        );
        Ok(id)
    }

    /// `start_request` + `run_until_complete`.
    pub fn request(
        &mut self,
        client: &str,
        dst: SocketAddrV4,
        opts: RequestOpts,
    ) -> Result<RequestOutcome, SimError> {
        let id = self.start_request(client, dst, opts)?;
        self.run_until_complete(id).ok_or(SimError::NoOutcome(id.0))
    }

    /// The outcome of a request, once it ended.
    pub fn outcome(&self, id: RequestId) -> Option<RequestOutcome> {
        let m = self.requests.get(&id)?;
        self.edges[m.client].client.as_ref()?.outcome(id)
    }

    // ----- observation -------------------------------------------------------------------

    fn pod_edge(&self, pod: &str) -> Result<&Edge, SimError> {
        self.edges
            .iter()
            .find(|e| e.name == pod && matches!(e.kind, EdgeKind::Pod { .. }))
            .ok_or_else(|| SimError::UnknownPod(pod.to_string()))
    }

    /// The pod's access log lines (nginx `main` format). Empty for external ports.
    pub fn access_log(&self, pod: &str) -> Vec<String> {
        self.pod_edge(pod)
            .ok()
            .and_then(|e| e.access_log.as_ref())
            .map(|l| l.lines())
            .unwrap_or_default()
    }

    /// Structured access log entries (with `remote_addr`).
    pub fn access_entries(&self, pod: &str) -> Vec<AccessLogEntry> {
        self.pod_edge(pod)
            .ok()
            .and_then(|e| e.access_log.as_ref())
            .map(|l| l.entries())
            .unwrap_or_default()
    }

    /// Names of the pods (edges running or standing in for servers), in attachment order.
    pub fn pods(&self) -> Vec<String> {
        self.edges
            .iter()
            .filter(|e| matches!(e.kind, EdgeKind::Pod { .. }))
            .map(|e| e.name.clone())
            .collect()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .map(|n| &n.node)
            .find(|n| n.name() == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes
            .iter_mut()
            .map(|n| &mut n.node)
            .find(|n| n.name() == name)
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Mutable router access: the hook for LB health checks and weights.
    pub fn router_mut(&mut self) -> &mut Router {
        &mut self.router
    }

    /// Every trace event so far, in processing order.
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }

    /// Every hop of every datagram of request `id`'s connection: events whose datagram
    /// belongs to the flow, following its translations (each hop's after-tuple joins the
    /// flow) and including ICMP errors quoting it.
    pub fn trace_for(&self, id: RequestId) -> Vec<TraceEvent> {
        let Some(m) = self.requests.get(&id) else {
            return Vec::new();
        };
        let Some(out) = self.outcome(id) else {
            return Vec::new();
        };
        let client_ip = self.edges[m.client].ip;
        let first = FlowTuple {
            proto: PROTO_TCP,
            src: client_ip,
            sport: out.client_port,
            dst: *m.dst.ip(),
            dport: m.dst.port(),
        };
        let end = m.started + out.elapsed + Duration::from_secs(1);
        let mut flow: HashSet<FlowTuple> = HashSet::from([first, first.invert()]);
        let start = self.trace.partition_point(|e| e.at() < m.started);
        let mut res = Vec::new();
        for ev in &self.trace[start..] {
            if ev.at() > end {
                break;
            }
            let (before, after) = ev.summaries();
            let hit =
                |s: &Summary| flow.contains(&s.tuple) || s.inner.is_some_and(|t| flow.contains(&t));
            let matched = before.is_some_and(hit) || (before.is_none() && after.is_some_and(hit));
            if matched {
                if let Some(a) = after {
                    if a.icmp.is_none() {
                        flow.insert(a.tuple);
                        flow.insert(a.tuple.invert());
                    }
                }
                res.push(ev.clone());
            }
        }
        res
    }

    /// The trace of a request as printable lines.
    pub fn trace_lines_for(&self, id: RequestId) -> Vec<String> {
        self.trace_for(id).iter().map(|e| e.to_string()).collect()
    }

    /// `conntrack -L` of a node at the current time (expired entries omitted).
    pub fn conntrack(&self, node: &str) -> Vec<String> {
        let Some(n) = self.node(node) else {
            return Vec::new();
        };
        let now = self.now;
        let mut lines: Vec<String> = n
            .proxier()
            .conntrack()
            .entries()
            .filter(|e| !e.is_expired(now))
            .map(|e| e.format(now))
            .collect();
        lines.sort();
        lines
    }

    /// Forget recorded trace events (long plans).
    pub fn clear_trace(&mut self) {
        self.trace.clear();
    }
}

/// The world can move to another thread (real mode drives it from a runtime task).
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<World>();
}
