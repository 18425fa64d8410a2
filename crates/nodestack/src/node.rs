//! The node: interfaces, routing table, hook order, local stack.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::RngCore;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use nodeport::{
    ChainWalk, DropReason, EndpointSlice, NatPending, Postrouting, Prerouting, Proxier,
    ProxyConfig, Rewrite, Service, ServiceTable, Verdict,
};
use vswitch::packet::{self, Summary};

use crate::device::{duration, instant, QueueDevice};
use crate::http::{Handler, Listener};
use crate::routes::RouteTable;

/// kube-proxy's health server port.
pub const PROXY_HEALTH_PORT: u16 = 10256;

/// A node interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Iface {
    Eth0,
    Cni0,
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Iface::Eth0 => "eth0",
            Iface::Cni0 => "cni0",
        })
    }
}

/// How to build a node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// eth0 address.
    pub ip: Ipv4Addr,
    /// Prefix length of the node network.
    pub prefix_len: u8,
    /// The node's pod CIDR; cni0 gets its first host address.
    pub pod_cidr: Ipv4Net,
    /// Default gateway (the router on the node network), if any.
    pub gateway: Option<Ipv4Addr>,
    /// kube-proxy configuration. `node_addresses` is completed with eth0/cni0 (both
    /// families) if missing.
    pub proxy: ProxyConfig,
    /// The node's IPv6 side (none: an IPv4-only node).
    pub v6: Option<NodeV6>,
}

/// A dual-stack node's IPv6 addresses: eth0's on the node network, the node's IPv6 pod CIDR
/// (a /64; cni0 gets its first host address) and the router's IPv6 address as the default
/// gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeV6 {
    pub ip: Ipv6Addr,
    pub prefix_len: u8,
    pub pod_cidr: Ipv6Net,
    pub gateway: Option<Ipv6Addr>,
}

/// The node's IPv6 addresses as built (prefixes truncated, cni0 derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V6Addrs {
    eth0: Ipv6Addr,
    cni0: Ipv6Addr,
    pod_cidr: Ipv6Net,
}

/// The first host address of an IPv6 prefix (cni0's address in the node's IPv6 pod CIDR).
pub fn first_host_v6(net: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.trunc().network()).wrapping_add(1))
}

/// One routing-table entry (`ip route` style).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dest: IpNet,
    pub via: Option<IpAddr>,
    pub dev: Iface,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dest.prefix_len() == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.dest)?;
        }
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        write!(f, " dev {}", self.dev)
    }
}

/// Result of a route lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteResult {
    pub iface: Iface,
    pub next_hop: IpAddr,
    /// Primary address of the egress interface in the destination's family: what
    /// MASQUERADE uses.
    pub src: IpAddr,
}

/// A datagram leaving the node.
#[derive(Debug, Clone)]
pub struct Egress {
    pub iface: Iface,
    pub next_hop: IpAddr,
    pub pkt: Vec<u8>,
}

/// Where in the node a [`HopEvent`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// nat PREROUTING (+ conntrack) on an arriving datagram.
    Prerouting,
    /// nat OUTPUT on a locally generated datagram.
    Output,
    /// Delivered to the node's own stack (INPUT).
    Input,
    /// Forwarded (TTL decremented) and passed through POSTROUTING.
    Forward,
    /// Locally generated datagram passed through POSTROUTING.
    LocalOut,
    /// Dropped (by the engine, no route, malformed, TTL).
    Drop,
    /// REJECTed: the engine's ICMP error sent back.
    Reject,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Prerouting => "PREROUTING",
            Stage::Output => "OUTPUT",
            Stage::Input => "INPUT",
            Stage::Forward => "FORWARD/POSTROUTING",
            Stage::LocalOut => "POSTROUTING",
            Stage::Drop => "DROP",
            Stage::Reject => "REJECT",
        })
    }
}

/// One step of a datagram through the node, for traces.
#[derive(Debug, Clone)]
pub struct HopEvent {
    pub at: Duration,
    pub node: String,
    pub stage: Stage,
    pub iface_in: Option<Iface>,
    pub iface_out: Option<Iface>,
    /// The datagram before and after this step.
    pub before: Option<Summary>,
    pub after: Option<Summary>,
    /// The engine's chain walk (new flows only).
    pub walk: ChainWalk,
    pub rewrites: Vec<Rewrite>,
    /// conntrack's view: "NEW", "ESTABLISHED", "REPLY", …
    pub ct_state: Option<&'static str>,
    /// Human-readable verdict ("accept", "drop: …", "masquerade to 10.151.30.11", …).
    pub verdict: String,
}

impl fmt::Display for HopEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let iface = match (self.iface_in, self.iface_out) {
            (Some(i), Some(o)) => format!("{i}→{o}"),
            (Some(i), None) => i.to_string(),
            (None, Some(o)) => o.to_string(),
            (None, None) => "-".into(),
        };
        write!(
            f,
            "{:>10.6}s {} {iface} {}",
            self.at.as_secs_f64(),
            self.node,
            self.stage
        )?;
        if let Some(ct) = self.ct_state {
            write!(f, " ct={ct}")?;
        }
        write!(f, " [{}]", self.verdict)?;
        if self.rewrites.is_empty() {
            if let Some(a) = &self.after {
                write!(f, " {a}")?;
            }
        }
        // Continuation lines line up under the node name.
        let pad = " ".repeat(12);
        if !self.walk.steps.is_empty() {
            // The rule path as iptables would walk it: A → B → …; "↩ C" marks a return
            // from a jumped-to chain (e.g. KUBE-MARK-MASQ) back into C.
            // A change of table (nat PREROUTING, then filter) starts a new line. An IPv6
            // flow's rules are ip6tables' (kube-proxy's IPv6 proxier): its lines say so.
            let v6 = self
                .before
                .as_ref()
                .or(self.after.as_ref())
                .is_some_and(|s| s.tuple.is_ipv6());
            let tool = if v6 { "ip6tables " } else { "" };
            let mut path = String::new();
            let mut last: Option<&str> = None;
            let mut table = "";
            for st in &self.walk.steps {
                if st.table != table {
                    if !path.is_empty() {
                        write!(f, "\n{pad}{tool}{table}: {path}")?;
                        path.clear();
                    }
                    table = st.table;
                    last = None;
                }
                match last {
                    None => path.push_str(&st.chain),
                    Some(l) if l == st.chain => {}
                    Some(_) => {
                        path.push_str(" ↩ ");
                        path.push_str(&st.chain);
                    }
                }
                path.push_str(" → ");
                path.push_str(&st.target);
                last = Some(&st.target);
            }
            write!(f, "\n{pad}{tool}{table}: {path}")?;
        }
        for r in &self.rewrites {
            let (what, field) = match r.kind {
                nodeport::RewriteKind::Dnat => ("DNAT", "dst"),
                nodeport::RewriteKind::Snat => ("SNAT (MASQUERADE)", "src"),
                nodeport::RewriteKind::UnSnat => ("un-SNAT", "dst"),
                nodeport::RewriteKind::UnDnat => ("un-DNAT", "src"),
                nodeport::RewriteKind::IcmpInner => ("ICMP inner", "addr"),
            };
            write!(f, "\n{pad}{what} {field} {} → {}", r.before, r.after)?;
        }
        if !self.rewrites.is_empty() {
            if let Some(a) = &self.after {
                write!(f, "\n{pad}now {a}")?;
            }
        }
        Ok(())
    }
}

/// Per-node counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub received: u64,
    pub malformed: u64,
    pub no_route: u64,
    pub ttl_exceeded: u64,
    pub engine_drops: u64,
    pub rejects: u64,
    pub delivered_local: u64,
    pub forwarded: u64,
}

/// The engine's drop reason in kube-proxy's own words.
fn describe(r: &DropReason) -> String {
    match r {
        DropReason::NoLocalEndpoints { service, port_name } if port_name.is_empty() => {
            format!("{service} has no local endpoints")
        }
        DropReason::NoLocalEndpoints { service, port_name } => {
            format!("{service}:{port_name} has no local endpoints")
        }
        DropReason::SourceRangesDenied { service, port_name } if port_name.is_empty() => {
            format!("{service} traffic not accepted by loadBalancerSourceRanges")
        }
        DropReason::SourceRangesDenied { service, port_name } => {
            format!("{service}:{port_name} traffic not accepted by loadBalancerSourceRanges")
        }
        DropReason::ConntrackFull => "nf_conntrack: table full, dropping packet".into(),
        DropReason::SnatExhausted => "no free source port for MASQUERADE".into(),
        DropReason::NoMasqueradeAddress => "MASQUERADE: no address of the packet's family".into(),
        DropReason::Invalid(e) => format!("invalid packet: {e}"),
    }
}

/// Where a datagram is on its way through the node: the shared part of its [`HopEvent`]s.
#[derive(Debug, Clone, Copy)]
struct Hop<'a> {
    now: Duration,
    iface_in: Option<Iface>,
    /// Known once the datagram is routed.
    iface_out: Option<Iface>,
    /// The datagram as it arrived or was generated (`None`: it did not parse).
    before: Option<&'a Summary>,
}

impl Hop<'_> {
    /// The same datagram, now routed out of `iface`.
    fn out_of(self, iface: Iface) -> Self {
        Hop {
            iface_out: Some(iface),
            ..self
        }
    }
}

/// What the engine did at one hook, for a [`HopEvent`]. Empty for the node's own
/// decisions (malformed, no route, TTL).
#[derive(Debug, Default)]
struct EngineStep {
    walk: ChainWalk,
    rewrites: Vec<Rewrite>,
    ct_state: Option<&'static str>,
}

impl EngineStep {
    /// Split a nat hook's result into its verdict and what to trace.
    fn nat(pre: Prerouting) -> (Verdict, EngineStep) {
        let step = EngineStep {
            walk: pre.walk,
            rewrites: pre.rewrites,
            ct_state: Some(pre.ct_state),
        };
        (pre.verdict, step)
    }

    /// Split a POSTROUTING result into its drop reason and what to trace.
    fn postrouting(post: Postrouting) -> (Option<DropReason>, EngineStep) {
        let step = EngineStep {
            walk: post.walk,
            rewrites: post.rewrites,
            ct_state: None,
        };
        (post.dropped, step)
    }

    /// No rule walked, nothing rewritten.
    fn is_empty(&self) -> bool {
        self.walk.steps.is_empty() && self.rewrites.is_empty()
    }
}

/// How a nat hook's verdict is traced: PREROUTING for arriving datagrams, OUTPUT for the
/// node's own.
#[derive(Debug)]
struct NatHook {
    stage: Stage,
    /// Verdict prefix of an engine drop.
    drop: &'static str,
    /// Verdict of a REJECT.
    reject: &'static str,
    /// Trace an accept even when the engine walked no rule and rewrote nothing.
    trace_untouched: bool,
}

impl NatHook {
    const PREROUTING: NatHook = NatHook {
        stage: Stage::Prerouting,
        drop: "drop",
        reject: "reject: ICMP port unreachable sent back",
        trace_untouched: true,
    };
    const OUTPUT: NatHook = NatHook {
        stage: Stage::Output,
        drop: "drop at OUTPUT",
        reject: "reject (local)",
        trace_untouched: false,
    };
}

/// An arriving datagram after its one parse ([`Node::arrival`]).
struct Arrival {
    /// The engine's parse, handed to PREROUTING (none: the engine parses it itself).
    parsed: Option<wire::Parsed>,
    /// The trace summary (none: not tracing, and `parsed` stood for the malformed check).
    before: Option<Summary>,
    /// The destination it arrived with.
    dst: IpAddr,
}

/// What a nat hook's verdict leaves the caller to do (it is already counted and traced).
enum Hooked {
    /// Route the datagram, then POSTROUTING with this token.
    Accept(NatPending),
    Dropped,
    /// The engine's ICMP error, to be delivered.
    Reject(Vec<u8>),
}

/// One simulated Linux node.
pub struct Node {
    name: String,
    eth0: Ipv4Addr,
    eth0_net: Ipv4Net,
    cni0: Ipv4Addr,
    pod_cidr: Ipv4Net,
    v6: Option<V6Addrs>,
    routes: RouteTable,
    proxier: Proxier,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    events: Vec<HopEvent>,
    next_poll: Option<Duration>,
    pub counters: NodeCounters,
    /// Record [`HopEvent`]s (on by default).
    pub tracing: bool,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("eth0", &self.eth0)
            .field("cni0", &self.cni0)
            .field("routes", &self.routes.as_slice())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Build the node. `seed` seeds smoltcp's own randomness (ISNs) and the engine's
    /// MASQUERADE port stream deterministically.
    pub fn new(spec: NodeSpec, now: Duration, seed: u64) -> Node {
        let eth0_net = Ipv4Net::new(spec.ip, spec.prefix_len)
            .unwrap_or_else(|_| Ipv4Net::from(spec.ip))
            .trunc();
        let pod_cidr = spec.pod_cidr.trunc();
        let cni0 = Ipv4Addr::from(u32::from(pod_cidr.network()).wrapping_add(1));
        let v6 = spec.v6.map(|v| V6Addrs {
            eth0: v.ip,
            cni0: first_host_v6(v.pod_cidr),
            pod_cidr: v.pod_cidr.trunc(),
        });
        let mut proxy = spec.proxy;
        let mut own: Vec<IpAddr> = vec![spec.ip.into(), cni0.into()];
        if let Some(v) = &v6 {
            own.extend([IpAddr::V6(v.eth0), IpAddr::V6(v.cni0)]);
        }
        for a in own {
            if !proxy.node_addresses.contains(&a) {
                proxy.node_addresses.push(a);
            }
        }
        let mut routes = RouteTable::default();
        let mut route = |dest: IpNet, via: Option<IpAddr>, dev: Iface| {
            routes.push(Route { dest, via, dev });
        };
        route(eth0_net.into(), None, Iface::Eth0);
        route(pod_cidr.into(), None, Iface::Cni0);
        if let Some(gw) = spec.gateway {
            route(Ipv4Net::default().into(), Some(gw.into()), Iface::Eth0);
        }
        // `ip -6 route`: the node network's /64, the pod /64 on cni0, default via the router.
        if let (Some(s6), Some(v)) = (spec.v6, &v6) {
            let net = Ipv6Net::new(s6.ip, s6.prefix_len)
                .unwrap_or_else(|_| Ipv6Net::from(s6.ip))
                .trunc();
            route(net.into(), None, Iface::Eth0);
            route(v.pod_cidr.into(), None, Iface::Cni0);
            if let Some(gw) = s6.gateway {
                route(Ipv6Net::default().into(), Some(gw.into()), Iface::Eth0);
            }
        }
        let mut dev = QueueDevice::new(1500);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, instant(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(spec.ip), spec.prefix_len));
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cni0), pod_cidr.prefix_len()));
            if let (Some(s6), Some(v)) = (spec.v6, &v6) {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(v.eth0), s6.prefix_len));
                let _ = a.push(IpCidr::new(
                    IpAddress::Ipv6(v.cni0),
                    v.pod_cidr.prefix_len(),
                ));
            }
        });
        // smoltcp only needs *a* route to hand replies to us; our table picks the real egress.
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(spec.gateway.unwrap_or(spec.ip));
        if let (Some(s6), Some(v)) = (spec.v6, &v6) {
            let _ = iface
                .routes_mut()
                .add_default_ipv6_route(s6.gateway.unwrap_or(v.eth0));
        }
        let mut sockets = SocketSet::new(Vec::new());
        let listeners = vec![Listener::open(
            PROXY_HEALTH_PORT,
            Handler::ProxyHealth,
            &mut sockets,
        )];
        Node {
            name: spec.name,
            eth0: spec.ip,
            eth0_net,
            cni0,
            pod_cidr,
            v6,
            routes,
            proxier: {
                let mut p = Proxier::new(proxy);
                // MASQUERADE ports: a stream derived from the node's seed, not the world's.
                p.set_port_seed(seed ^ 0x6d61_7371_7565_7261);
                p
            },
            iface,
            dev,
            sockets,
            listeners,
            events: Vec::new(),
            next_poll: None,
            counters: NodeCounters::default(),
            tracing: true,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn eth0(&self) -> Ipv4Addr {
        self.eth0
    }
    pub fn eth0_net(&self) -> Ipv4Net {
        self.eth0_net
    }
    pub fn cni0(&self) -> Ipv4Addr {
        self.cni0
    }
    pub fn pod_cidr(&self) -> Ipv4Net {
        self.pod_cidr
    }
    pub fn address(&self, iface: Iface) -> Ipv4Addr {
        match iface {
            Iface::Eth0 => self.eth0,
            Iface::Cni0 => self.cni0,
        }
    }
    /// eth0's IPv6 address (a dual-stack node).
    pub fn eth0_v6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|v| v.eth0)
    }
    /// cni0's IPv6 address: the first host of the node's IPv6 pod CIDR.
    pub fn cni0_v6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|v| v.cni0)
    }
    /// The node's IPv6 pod CIDR.
    pub fn pod_cidr_v6(&self) -> Option<Ipv6Net> {
        self.v6.map(|v| v.pod_cidr)
    }
    /// `iface`'s address of `dst`'s family (its IPv4 address when it has no IPv6 one).
    pub fn address_for(&self, iface: Iface, dst: IpAddr) -> IpAddr {
        match (dst, self.v6) {
            (IpAddr::V6(_), Some(v)) => IpAddr::V6(match iface {
                Iface::Eth0 => v.eth0,
                Iface::Cni0 => v.cni0,
            }),
            _ => IpAddr::V4(self.address(iface)),
        }
    }
    pub fn routes(&self) -> &[Route] {
        self.routes.as_slice()
    }
    pub fn proxier(&self) -> &Proxier {
        &self.proxier
    }
    pub fn proxier_mut(&mut self) -> &mut Proxier {
        &mut self.proxier
    }

    /// `ip route add dest via gw` (out of eth0; e.g. another node's pod CIDR via its IP).
    pub fn add_route(&mut self, dest: Ipv4Net, via: Ipv4Addr) {
        self.push_route(dest.into(), via.into());
    }

    /// `ip -6 route add dest via gw` (out of eth0; another node's IPv6 pod CIDR via its IPv6
    /// address).
    pub fn add_route_v6(&mut self, dest: Ipv6Net, via: Ipv6Addr) {
        self.push_route(dest.into(), via.into());
    }

    fn push_route(&mut self, dest: IpNet, via: IpAddr) {
        self.routes.push(Route {
            dest: dest.trunc(),
            via: Some(via),
            dev: Iface::Eth0,
        });
    }

    /// Is `addr` one of the node's own addresses?
    pub fn is_local(&self, addr: impl Into<IpAddr>) -> bool {
        match addr.into() {
            IpAddr::V4(a) => a == self.eth0 || a == self.cni0,
            IpAddr::V6(a) => self.v6.is_some_and(|v| a == v.eth0 || a == v.cni0),
        }
    }

    /// Longest-prefix match.
    pub fn route(&self, dst: impl Into<IpAddr>) -> Option<RouteResult> {
        let dst = dst.into();
        let r = self.routes.lookup(dst)?;
        Some(RouteResult {
            iface: r.dev,
            next_hop: r.via.unwrap_or(dst),
            src: self.address_for(r.dev, dst),
        })
    }

    /// A kube-proxy sync: push the service view to the engine and open the
    /// healthCheckNodePort servers this node needs.
    pub fn set_services(&mut self, services: &[Service], slices: &[EndpointSlice]) {
        self.set_service_table(services, Arc::new(ServiceTable::compile(services, slices)));
    }

    /// [`Node::set_services`] with tables compiled once for many nodes
    /// ([`ServiceTable::compile`] of the same `services`).
    pub fn set_service_table(&mut self, services: &[Service], table: Arc<ServiceTable>) {
        tracing::debug!(node = %self.name, services = services.len(), "kube-proxy sync");
        let now = self.proxier.latest_now();
        self.proxier.set_table(now, table);
        for svc in services {
            if let Some(port) = svc.health_check_node_port {
                if self.listeners.iter().all(|l| l.port != port)
                    && self.proxier.health_check_service(port).is_some()
                {
                    let l = Listener::open(port, Handler::ServiceHealth, &mut self.sockets);
                    self.listeners.push(l);
                }
            }
        }
    }

    /// Take the trace events recorded so far.
    pub fn drain_events(&mut self) -> Vec<HopEvent> {
        std::mem::take(&mut self.events)
    }

    /// Earliest time the node's local stack needs polling.
    pub fn poll_at(&self) -> Option<Duration> {
        self.next_poll
    }

    /// Record a hop event; `verdict` is only formatted when tracing is on.
    fn note(
        &mut self,
        hop: Hop,
        stage: Stage,
        after: &[u8],
        step: EngineStep,
        verdict: impl FnOnce() -> String,
    ) {
        if !self.tracing {
            return;
        }
        self.events.push(HopEvent {
            at: hop.now,
            node: self.name.clone(),
            stage,
            iface_in: hop.iface_in,
            iface_out: hop.iface_out,
            before: hop.before.cloned(),
            after: packet::summarize(after).ok(),
            walk: step.walk,
            rewrites: step.rewrites,
            ct_state: step.ct_state,
            verdict: verdict(),
        });
    }

    /// A drop decided by the node itself (no engine step); the caller counts it.
    fn note_drop(&mut self, hop: Hop, pkt: &[u8], verdict: impl FnOnce() -> String) {
        self.note(hop, Stage::Drop, pkt, EngineStep::default(), verdict);
    }

    /// Count and trace the verdict of a nat hook (PREROUTING or OUTPUT).
    fn nat_verdict(&mut self, hook: &NatHook, hop: Hop, pre: Prerouting, pkt: &[u8]) -> Hooked {
        let (verdict, step) = EngineStep::nat(pre);
        match verdict {
            Verdict::Accept(pending) => {
                if hook.trace_untouched || !step.is_empty() {
                    self.note(hop, hook.stage, pkt, step, || "accept".into());
                }
                Hooked::Accept(pending)
            }
            Verdict::Drop(reason) => {
                self.counters.engine_drops += 1;
                let verdict = || format!("{}: {}", hook.drop, describe(&reason));
                self.note(hop, Stage::Drop, pkt, step, verdict);
                Hooked::Dropped
            }
            Verdict::Reject { mut icmp } => {
                self.reject_source(&mut icmp);
                self.counters.rejects += 1;
                self.note(hop, Stage::Reject, &icmp, step, || hook.reject.into());
                Hooked::Reject(icmp)
            }
        }
    }

    /// filter FORWARD → KUBE-FORWARD `-m conntrack --ctstate INVALID -j DROP` for a datagram
    /// conntrack found INVALID (e.g. a SYN-ACK with no entry: the reply of a flow DNATed on
    /// another node). kube-proxy omits the rule when `nf_conntrack_tcp_be_liberal` is set
    /// ([`nodeport::ProxyConfig::conntrack_tcp_be_liberal`]). Bridged datagrams traverse
    /// FORWARD too (br_netfilter). Returns whether it was dropped (counted and traced).
    fn forward_drops_invalid(&mut self, hop: Hop, pkt: &[u8]) -> bool {
        if self.proxier.config().conntrack_tcp_be_liberal {
            return false;
        }
        self.counters.engine_drops += 1;
        let mut step = EngineStep {
            ct_state: Some("INVALID"),
            ..EngineStep::default()
        };
        step.walk.push(
            "filter",
            nodeport::iptables::KUBE_FORWARD,
            "-m conntrack --ctstate INVALID",
            "DROP",
        );
        let verdict = || "drop at FORWARD: conntrack INVALID (KUBE-FORWARD)".to_string();
        self.note(hop, Stage::Drop, pkt, step, verdict);
        true
    }

    /// POSTROUTING towards `egress_addr` (the egress interface's address, for MASQUERADE),
    /// or for a datagram to the node itself (`None`) the INPUT confirm. A drop is counted
    /// and traced (`drop at POSTROUTING: …` / `drop at INPUT: …`); otherwise the engine's
    /// step is handed back for the caller to trace with its own stage and verdict.
    fn postrouting(
        &mut self,
        hop: Hop,
        pkt: &mut [u8],
        pending: NatPending,
        egress_addr: Option<IpAddr>,
        rng: &mut dyn RngCore,
    ) -> Option<EngineStep> {
        let post = self
            .proxier
            .postrouting(hop.now, pkt, pending, egress_addr, rng);
        let (dropped, step) = EngineStep::postrouting(post);
        let Some(reason) = dropped else {
            return Some(step);
        };
        self.counters.engine_drops += 1;
        let hook = if egress_addr.is_some() {
            "POSTROUTING"
        } else {
            "INPUT"
        };
        let verdict = || format!("drop at {hook}: {}", describe(&reason));
        self.note(hop, Stage::Drop, pkt, step, verdict);
        None
    }

    /// A datagram arrives on `iface`. Returns what leaves the node as a result (forwarded
    /// datagrams, replies of the local stack, ICMP errors).
    pub fn receive(
        &mut self,
        now: Duration,
        iface: Iface,
        pkt: &[u8],
        rng: &mut dyn RngCore,
    ) -> Vec<Egress> {
        let mut out = Vec::new();
        self.receive_inner(now, iface, pkt.to_vec(), rng, false, &mut out);
        out
    }

    /// [`Node::receive`] taking the datagram by value (no copy).
    pub fn receive_owned(
        &mut self,
        now: Duration,
        iface: Iface,
        pkt: Vec<u8>,
        rng: &mut dyn RngCore,
    ) -> Vec<Egress> {
        let mut out = Vec::new();
        self.receive_inner(now, iface, pkt, rng, false, &mut out);
        out
    }

    /// [`Node::receive_owned`] appending what leaves the node to `out`: the fabric's hot
    /// path (no copy, and no list allocated per datagram when `out` is reused).
    pub fn receive_into(
        &mut self,
        now: Duration,
        iface: Iface,
        pkt: Vec<u8>,
        rng: &mut dyn RngCore,
        out: &mut Vec<Egress>,
    ) {
        self.receive_inner(now, iface, pkt, rng, false, out)
    }

    /// A datagram between two ports of the cni0 bridge (pod → pod on this node). With
    /// `br_netfilter` (which Kubernetes requires) bridged traffic still traverses the
    /// iptables hooks, so conntrack can un-DNAT a reply from a local endpoint to a local
    /// client; it is not routed (no TTL decrement) unless DNAT sent it elsewhere.
    pub fn bridge(&mut self, now: Duration, pkt: &[u8], rng: &mut dyn RngCore) -> Vec<Egress> {
        let mut out = Vec::new();
        self.receive_inner(now, Iface::Cni0, pkt.to_vec(), rng, true, &mut out);
        out
    }

    /// [`Node::bridge`] taking the datagram by value (no copy).
    pub fn bridge_owned(
        &mut self,
        now: Duration,
        pkt: Vec<u8>,
        rng: &mut dyn RngCore,
    ) -> Vec<Egress> {
        let mut out = Vec::new();
        self.receive_inner(now, Iface::Cni0, pkt, rng, true, &mut out);
        out
    }

    /// [`Node::bridge_owned`] appending what leaves the node to `out` (see
    /// [`Node::receive_into`]).
    pub fn bridge_into(
        &mut self,
        now: Duration,
        pkt: Vec<u8>,
        rng: &mut dyn RngCore,
        out: &mut Vec<Egress>,
    ) {
        self.receive_inner(now, Iface::Cni0, pkt, rng, true, out)
    }

    /// Parse an arriving datagram once: the engine's parse when the datagram is one the
    /// trace summary is sure to accept too (TCP over IPv4, or over IPv6 without extension
    /// headers: etherparse's header and length checks are the same for both), the summary
    /// only when tracing. Any other datagram is summarized first as before (a datagram the
    /// summary rejects is malformed: counted, traced, `None`) and parsed by the engine.
    fn arrival(&mut self, hop: Hop, pkt: &[u8]) -> Option<Arrival> {
        let parsed = wire::parse(pkt).ok().filter(|p| {
            matches!(p.kind, wire::L4Kind::Tcp { .. })
                && (p.family == wire::IpFamily::V4 || p.l3_len == 40)
        });
        if let (Some(p), false) = (parsed, self.tracing) {
            let dst = p.tuple.dst;
            return Some(Arrival {
                parsed,
                before: None,
                dst,
            });
        }
        match packet::summarize(pkt) {
            Ok(s) => Some(Arrival {
                parsed,
                dst: s.tuple.dst,
                before: Some(s),
            }),
            Err(e) => {
                self.counters.malformed += 1;
                self.note_drop(hop, pkt, || format!("malformed: {e}"));
                None
            }
        }
    }

    fn receive_inner(
        &mut self,
        now: Duration,
        iface: Iface,
        mut pkt: Vec<u8>,
        rng: &mut dyn RngCore,
        bridged: bool,
        out: &mut Vec<Egress>,
    ) {
        self.counters.received += 1;
        let hop = Hop {
            now,
            iface_in: Some(iface),
            iface_out: None,
            before: None,
        };
        let Some(arrival) = self.arrival(hop, &pkt) else {
            return;
        };
        let hop = Hop {
            before: arrival.before.as_ref(),
            ..hop
        };
        let pre = match &arrival.parsed {
            Some(p) => self.proxier.prerouting_parsed(now, &mut pkt, p, rng),
            None => self.proxier.prerouting(now, &mut pkt, rng),
        };
        let ct_invalid = pre.ct_state == "INVALID";
        let pending = match self.nat_verdict(&NatHook::PREROUTING, hop, pre, &pkt) {
            Hooked::Accept(pending) => pending,
            Hooked::Dropped => return,
            Hooked::Reject(icmp) => {
                self.transmit_plain(now, icmp, out);
                return;
            }
        };
        // The nat hook may have rewritten the destination (DNAT, un-SNAT).
        let dst = packet::destination(&pkt).unwrap_or(arrival.dst);
        if self.is_local(dst) {
            // INPUT: conntrack confirmed, no masquerade; hand to the local stack.
            let Some(step) = self.postrouting(hop, &mut pkt, pending, None, rng) else {
                return;
            };
            self.counters.delivered_local += 1;
            let verdict = || "deliver to local stack".to_string();
            self.note(hop, Stage::Input, &pkt, step, verdict);
            // The local stack checks checksums: one a TUN left partial is completed here.
            wire::partial::complete(&mut pkt);
            self.dev.rx.push_back(pkt);
            self.poll_into(now, rng, out);
            return;
        }
        // FORWARD.
        let Some(rt) = self.route(dst) else {
            self.counters.no_route += 1;
            self.note_drop(hop, &pkt, || format!("no route to {dst}"));
            return;
        };
        if ct_invalid && self.forward_drops_invalid(hop.out_of(rt.iface), &pkt) {
            return;
        }
        let switched = bridged && rt.iface == Iface::Cni0;
        match if switched {
            Ok(Some(0))
        } else {
            packet::decrement_ttl(&mut pkt)
        } {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.counters.ttl_exceeded += 1;
                self.note_drop(hop, &pkt, || "ttl exceeded".into());
                let from6 = self.v6.map(|v| match iface {
                    Iface::Eth0 => v.eth0,
                    Iface::Cni0 => v.cni0,
                });
                if let Ok(icmp) = packet::time_exceeded(self.address(iface), from6, &pkt) {
                    self.local_out(now, icmp, rng, out);
                }
                return;
            }
            Err(e) => {
                self.counters.malformed += 1;
                self.note_drop(hop, &pkt, || format!("malformed: {e}"));
                return;
            }
        }
        let hop = hop.out_of(rt.iface);
        let Some(step) = self.postrouting(hop, &mut pkt, pending, Some(rt.src), rng) else {
            return;
        };
        self.counters.forwarded += 1;
        let verdict = || {
            if switched {
                format!("bridge to {} (br_netfilter)", rt.next_hop)
            } else {
                format!("forward via {} next hop {}", rt.iface, rt.next_hop)
            }
        };
        self.note(hop, Stage::Forward, &pkt, step, verdict);
        out.push(Egress {
            iface: rt.iface,
            next_hop: rt.next_hop,
            pkt,
        });
    }

    /// The source of a REJECT answer the engine left as 0.0.0.0 (the rejected datagram was
    /// not addressed to this node): like `__icmp_send` with saddr 0, the address of the
    /// route back to the sender (cni0's for a local pod, eth0's otherwise; the sender's own
    /// address when it is this node).
    fn reject_source(&self, icmp: &mut [u8]) {
        let Ok(s) = packet::summarize(icmp) else {
            return;
        };
        if !s.tuple.src.is_unspecified() {
            return;
        }
        let to = s.tuple.dst;
        let src = if self.is_local(to) {
            Some(to)
        } else {
            self.route(to).map(|r| r.src)
        };
        match src {
            Some(IpAddr::V4(src)) => nodeport::packet::nat::set_ipv4_source(icmp, src),
            // ICMPv6's checksum covers the pseudo-header: set_source fixes it.
            Some(src @ IpAddr::V6(_)) => nodeport::packet::nat::set_source(icmp, src),
            None => {}
        }
    }

    /// Route and transmit without the NAT hooks (the engine's REJECT answer is already
    /// addressed and translated).
    fn transmit_plain(&mut self, _now: Duration, pkt: Vec<u8>, out: &mut Vec<Egress>) {
        let Ok(s) = packet::summarize(&pkt) else {
            self.counters.malformed += 1;
            return;
        };
        match self.route(s.tuple.dst) {
            Some(rt) => out.push(Egress {
                iface: rt.iface,
                next_hop: rt.next_hop,
                pkt,
            }),
            None => self.counters.no_route += 1,
        }
    }

    /// A datagram generated by the node: OUTPUT → route → POSTROUTING.
    fn local_out(
        &mut self,
        now: Duration,
        mut pkt: Vec<u8>,
        rng: &mut dyn RngCore,
        out: &mut Vec<Egress>,
    ) {
        let before = match packet::summarize(&pkt) {
            Ok(s) => s,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        let hop = Hop {
            now,
            iface_in: None,
            iface_out: None,
            before: Some(&before),
        };
        let pre = self.proxier.output(now, &mut pkt, rng);
        let pending = match self.nat_verdict(&NatHook::OUTPUT, hop, pre, &pkt) {
            Hooked::Accept(pending) => pending,
            Hooked::Dropped => return,
            Hooked::Reject(icmp) => {
                // A locally generated packet rejected: the error goes back to our own stack.
                self.dev.rx.push_back(icmp);
                return;
            }
        };
        let dst = packet::destination(&pkt).unwrap_or(before.tuple.dst);
        if self.is_local(dst) {
            let post = self.proxier.postrouting(now, &mut pkt, pending, None, rng);
            if post.dropped.is_none() {
                self.dev.rx.push_back(pkt);
            }
            return;
        }
        let Some(rt) = self.route(dst) else {
            self.counters.no_route += 1;
            self.note_drop(hop, &pkt, || format!("no route to {dst}"));
            return;
        };
        let hop = hop.out_of(rt.iface);
        let Some(step) = self.postrouting(hop, &mut pkt, pending, Some(rt.src), rng) else {
            return;
        };
        let verdict = || format!("send via {} next hop {}", rt.iface, rt.next_hop);
        self.note(hop, Stage::LocalOut, &pkt, step, verdict);
        out.push(Egress {
            iface: rt.iface,
            next_hop: rt.next_hop,
            pkt,
        });
    }

    /// Advance the local stack's timers and servers.
    pub fn poll(&mut self, now: Duration, rng: &mut dyn RngCore) -> Vec<Egress> {
        let mut out = Vec::new();
        self.poll_into(now, rng, &mut out);
        out
    }

    /// [`Node::poll`] appending what leaves the node to `out`.
    pub fn poll_into(&mut self, now: Duration, rng: &mut dyn RngCore, out: &mut Vec<Egress>) {
        let at = instant(now);
        for _ in 0..16 {
            self.iface.poll(at, &mut self.dev, &mut self.sockets);
            let proxier = &self.proxier;
            let mut served = false;
            for l in &mut self.listeners {
                let handler = l.handler;
                let port = l.port;
                served |= l.serve(&mut self.sockets, |path| match handler {
                    Handler::ProxyHealth => proxier.proxy_health(now, path),
                    Handler::ServiceHealth => match proxier.health_check_service(port) {
                        Some(svc) => proxier.service_health(&svc),
                        None => nodeport::HealthResponse {
                            status: 404,
                            headers: vec![],
                            body: String::new(),
                        },
                    },
                });
            }
            let tx: Vec<Vec<u8>> = self.dev.tx.drain(..).collect();
            let progressed = served || !tx.is_empty();
            for p in tx {
                self.local_out(now, p, rng, out);
            }
            if !progressed && self.dev.rx.is_empty() {
                break;
            }
        }
        self.next_poll = self.iface.poll_at(at, &self.sockets).map(duration);
    }
}
