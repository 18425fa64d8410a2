//! The [`World`]: every node, the router, the segments and the edge ports of one lab, one
//! seeded RNG, and the clock that drives them.
//!
//! Topology: the node network (each node's `eth0` + the router), one `cni0` segment per
//! node (the node's `cni0` + its pods and pod-attached clients), one segment per client
//! network (the router + external clients). Delivery is by next hop on a segment.
//!
//! One job per module: [`spec`] (the plain description), `topology` (building the world,
//! attaching pods, clients and ports, service syncs), `queue` (the packet queue and
//! delivery), `drive` (the virtual and wall-clock driving), `requests` (the request API and
//! access logs), [`prober`] (the LB health checks), `capture` (pcap files) and [`trace`]
//! (trace events and per-request traces).

mod capture;
mod drive;
pub mod prober;
mod queue;
mod requests;
pub mod spec;
mod topology;
pub mod trace;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use rand_chacha::ChaCha8Rng;

use nodestack::{Egress, Iface, Node};
use vswitch::{PcapSink, Port, Router, Segment, TraceSink, Tracer};

use crate::apps::AppsHandle;
use crate::clock::WallClock;
use crate::host::{AccessJournal, AccessLog, ClientHandle, RequestId, RequestOutcome};

pub use prober::{HealthCheckSpec, HealthEvent};
pub use spec::{Attachment, ClientDesc, LbDesc, NodeDesc, PodDesc, WorldSpec};
pub use trace::{FabricEvent, TraceEvent};

use prober::Prober;

/// kube-proxy's health server port (`healthzBindAddress`, spec §4.4).
const PROXY_HEALTH_PORT: u16 = 10256;

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
        addr: IpAddr,
        net: IpNet,
    },
    #[error("{name:?} has an IPv6 address but the world has no IPv6 {what}")]
    NoIpv6 { name: String, what: &'static str },
    #[error("request {0} did not end within a virtual day (no max_time and a silent peer)")]
    NoOutcome(u64),
    #[error("duplicate name {0:?}")]
    Duplicate(String),
    #[error("the world has no load balancer")]
    NoLoadBalancer,
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
    /// A dual-stack edge's IPv6 address and gateway.
    ip6: Option<Ipv6Addr>,
    seg: usize,
    gateway: Ipv4Addr,
    gateway6: Option<Ipv6Addr>,
    kind: EdgeKind,
    port: Tracer<Box<dyn Port + Send>>,
    access_log: Option<AccessLog>,
    /// Starts and stops a pod's apps.
    apps: Option<AppsHandle>,
    client: Option<ClientHandle>,
    /// Removed from the fabric (a deleted pod): not polled, its address detached.
    gone: bool,
    /// An embedded host (possibly wrapped): it only needs polling at its `poll_at` (kept in
    /// [`World::wake`]) or after a request start. External ports (TUN devices) are polled
    /// on every step: their peers write at any time.
    embedded: bool,
    /// The deadline this edge is registered under in [`World::wake`].
    wake_at: Option<Duration>,
}

struct RequestMeta {
    client: usize,
    dst: SocketAddr,
    started: Duration,
    /// IP protocol of the request's flow (TCP for curl, UDP for a datagram).
    proto: u8,
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
    /// cni0 segment → its node (pod-to-pod traffic goes through the node's bridge hooks).
    cni_node: HashMap<usize, usize>,
    /// Node name → index in `nodes`.
    node_index: HashMap<String, usize>,
    router: Router,
    router_segs: Vec<usize>,
    edges: Vec<Edge>,
    /// Edge name → index in `edges` (names are unique, deleted pods included).
    edge_index: HashMap<String, usize>,
    /// (deadline, edge) of every embedded edge with a deadline: the edges a step must poll
    /// are the ones due now, found without scanning every pod.
    wake: BTreeSet<(Duration, usize)>,
    /// Edges that are external ports (not deleted): polled on every step.
    external: BTreeSet<usize>,
    /// Scratch list of the edges a step polls (kept to reuse its allocation).
    due: Vec<usize>,
    /// Every access-log line the pods wrote, in order: (edge, entry index in its log).
    journal: AccessJournal,
    queue: VecDeque<(Attach, Vec<u8>)>,
    /// Scratch list of what a node transmits per datagram (kept to reuse its allocation).
    egress: Vec<Egress>,
    trace: Vec<TraceEvent>,
    sink: TraceSink,
    tracing: bool,
    requests: HashMap<RequestId, RequestMeta>,
    /// The last outcome [`World::run_until_complete`] took from its client (the clients
    /// keep none once taken), for [`World::outcome`] and [`World::trace_for`].
    done: Option<(RequestId, RequestOutcome)>,
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

impl World {
    // ----- clock and driving -------------------------------------------------------------

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The wall clock used for logs.
    pub fn wall_clock(&self) -> WallClock {
        self.clock
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
}

/// The world can move to another thread (real mode drives it from a runtime task).
#[allow(dead_code)]
fn assert_send() {
    pub(super) fn is_send<T: Send>() {}
    is_send::<World>();
}
