//! The router joining the node network and the client networks ("the internet").
//!
//! Owns: longest-prefix forwarding between its interfaces (IPv4 and IPv6: an interface may
//! carry IPv6 prefixes besides its IPv4 one), TTL / hop-limit decrement and ICMP(v6) time
//! exceeded, client reachability (a client may reach only the addresses it is allowed to —
//! everything else is dropped silently, as if unroutable) and the external
//! [`LoadBalancer`]s whose frontends live on it (an IPv4 frontend and optionally an IPv6
//! one, each translated to the target nodes' address of its family). It does not know what a
//! node or a pod is.
//!
//! Sans-IO: [`Router::receive`] takes `(now, ingress interface, datagram, rng)` and returns
//! the datagrams to transmit with their egress interface and next hop.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use fnv::FnvHashMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, RngCore};

use crate::packet::{self, FlowTuple, Summary};
use crate::prefix::PrefixIndex;

/// What an interface faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfaceKind {
    /// The node network: traffic from here is trusted.
    Cluster,
    /// A client network: sources here are subject to reachability rules.
    Clients,
}

#[derive(Debug, Clone)]
pub struct RouterIface {
    pub name: String,
    pub addr: Ipv4Addr,
    pub net: Ipv4Net,
    /// IPv6 addresses and their prefixes on this interface (none: IPv4 only).
    pub v6: Vec<(Ipv6Addr, Ipv6Net)>,
    pub kind: IfaceKind,
}

impl RouterIface {
    /// The interface's first IPv6 address (the source of its ICMPv6 errors).
    pub fn addr6(&self) -> Option<Ipv6Addr> {
        self.v6.first().map(|(a, _)| *a)
    }
    /// Is `a` one of this interface's addresses?
    fn owns(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => a == self.addr,
            IpAddr::V6(a) => self.v6.iter().any(|(x, _)| *x == a),
        }
    }
}

#[derive(Debug, Clone)]
struct Route {
    dest: IpNet,
    via: Option<IpAddr>,
    iface: usize,
}

/// A datagram the router transmits.
#[derive(Debug, Clone)]
pub struct RouterOutput {
    pub iface: usize,
    pub next_hop: IpAddr,
    pub pkt: Vec<u8>,
}

/// One decision of the router, for traces.
#[derive(Debug, Clone)]
pub struct RouterEvent {
    pub at: Duration,
    pub router: String,
    pub in_iface: String,
    pub out_iface: Option<String>,
    pub before: Option<Summary>,
    pub after: Option<Summary>,
    /// "forward", "LB DNAT …", "drop: …", "ttl exceeded" …
    pub action: String,
}

/// Drop/forward counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterCounters {
    pub forwarded: u64,
    pub malformed: u64,
    pub unroutable: u64,
    pub filtered: u64,
    pub ttl_exceeded: u64,
    pub to_router: u64,
    pub lb_no_target: u64,
}

/// A backend of the load balancer: a node, reached at `ip:node_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbTarget {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The node's IPv6 address (flows to the IPv6 frontend go there; none: IPv6 flows cannot
    /// use this target).
    pub ip6: Option<Ipv6Addr>,
    /// Relative weight (1 = plain even split per node). 0 = receives no new flows.
    pub weight: u32,
    /// Health as decided by whoever probes (none by default: always healthy).
    pub healthy: bool,
}

/// A listener: `proto frontend:port → target:node_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub proto: u8,
    pub port: u16,
    pub node_port: u16,
}

#[derive(Debug, Clone)]
struct LbFlow {
    target: SocketAddr,
    last_seen: Duration,
}

/// An NLB-style external load balancer: per new flow it picks a node (weighted by
/// [`LbTarget::weight`] among healthy targets, uniform by default, with the caller's RNG),
/// DNATs `frontend:port → nodeIP:nodePort` keeping the client's source address, and reverses
/// the translation on replies.
///
/// Hook for health checks: whoever probes `healthCheckNodePort` calls
/// [`LoadBalancer::set_healthy`] / [`LoadBalancer::set_weight`]; existing flows keep their
/// target.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub name: String,
    pub frontend: Ipv4Addr,
    /// The IPv6 frontend of a dual-stack load balancer.
    pub frontend6: Option<Ipv6Addr>,
    pub listeners: Vec<Listener>,
    pub targets: Vec<LbTarget>,
    /// Idle flows are forgotten after this long (AWS NLB: 350 s for TCP).
    pub idle_timeout: Duration,
    flows: FnvHashMap<FlowTuple, LbFlow>,
    /// A lower bound of every flow's `last_seen` (exact after each sweep): while
    /// `now - oldest_seen < idle_timeout` no flow can have expired, so `expire` skips the
    /// sweep (it was O(flows) per datagram).
    oldest_seen: Duration,
    /// reply tuple (target → client) → original tuple (client → frontend)
    replies: FnvHashMap<FlowTuple, FlowTuple>,
    /// New flows per target name.
    pub picks: BTreeMap<String, u64>,
}

impl LoadBalancer {
    pub fn new(name: impl Into<String>, frontend: Ipv4Addr) -> Self {
        LoadBalancer {
            name: name.into(),
            frontend,
            frontend6: None,
            listeners: Vec::new(),
            targets: Vec::new(),
            idle_timeout: Duration::from_secs(350),
            flows: FnvHashMap::default(),
            oldest_seen: Duration::ZERO,
            replies: FnvHashMap::default(),
            picks: BTreeMap::new(),
        }
    }
    pub fn listen(&mut self, proto: u8, port: u16, node_port: u16) {
        self.listeners
            .retain(|l| !(l.proto == proto && l.port == port));
        self.listeners.push(Listener {
            proto,
            port,
            node_port,
        });
    }
    pub fn add_target(&mut self, name: impl Into<String>, ip: Ipv4Addr) {
        self.targets.push(LbTarget {
            name: name.into(),
            ip,
            ip6: None,
            weight: 1,
            healthy: true,
        });
    }
    /// Target `name`'s IPv6 address (for flows to [`LoadBalancer::frontend6`]).
    pub fn set_target_v6(&mut self, name: &str, ip6: Ipv6Addr) {
        for t in self.targets.iter_mut().filter(|t| t.name == name) {
            t.ip6 = Some(ip6);
        }
    }
    /// Is `a` one of this load balancer's frontends?
    pub fn is_frontend(&self, a: IpAddr) -> bool {
        a == self.frontend || Some(a) == self.frontend6.map(IpAddr::V6)
    }
    pub fn set_healthy(&mut self, name: &str, healthy: bool) {
        for t in self.targets.iter_mut().filter(|t| t.name == name) {
            t.healthy = healthy;
        }
    }
    pub fn set_weight(&mut self, name: &str, weight: u32) {
        for t in self.targets.iter_mut().filter(|t| t.name == name) {
            t.weight = weight;
        }
    }
    /// The target a new flow goes to: weighted pick among healthy targets.
    pub fn pick(&self, rng: &mut dyn RngCore) -> Option<&LbTarget> {
        self.pick_for(false, rng)
    }

    /// [`LoadBalancer::pick`] among the targets that have an address of the flow's family
    /// (`v6`: an IPv6 flow).
    fn pick_for(&self, v6: bool, rng: &mut dyn RngCore) -> Option<&LbTarget> {
        let eligible: Vec<&LbTarget> = self
            .targets
            .iter()
            .filter(|t| t.healthy && t.weight > 0 && (!v6 || t.ip6.is_some()))
            .collect();
        let total: u64 = eligible.iter().map(|t| u64::from(t.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut r = rng.random_range(0..total);
        for t in eligible {
            if r < u64::from(t.weight) {
                return Some(t);
            }
            r -= u64::from(t.weight);
        }
        None
    }
    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    fn expire(&mut self, now: Duration) {
        let idle = self.idle_timeout;
        if now.saturating_sub(self.oldest_seen) < idle {
            return;
        }
        let before = self.flows.len();
        self.flows
            .retain(|_, f| now.saturating_sub(f.last_seen) < idle);
        if self.flows.len() != before {
            let flows = &self.flows;
            self.replies.retain(|_, orig| flows.contains_key(orig));
        }
        self.oldest_seen = self
            .flows
            .values()
            .map(|f| f.last_seen)
            .min()
            .unwrap_or(now);
    }
}

/// Result of the LB stage for one datagram.
enum LbAction {
    NotOurs,
    /// The rewritten datagram and the trace text (empty when not tracing).
    Translated(Vec<u8>, String),
    Drop(String),
}

/// The router.
#[derive(Debug, Clone)]
pub struct Router {
    name: String,
    ifaces: Vec<RouterIface>,
    routes: Vec<Route>,
    /// Longest-prefix index over `routes`.
    route_index: PrefixIndex,
    /// client address → addresses it may reach (LB frontends are always reachable).
    reach: FnvHashMap<IpAddr, BTreeSet<IpAddr>>,
    lbs: Vec<LoadBalancer>,
    events: Vec<RouterEvent>,
    pub counters: RouterCounters,
    pub tracing: bool,
}

impl Router {
    pub fn new(name: impl Into<String>) -> Self {
        Router {
            name: name.into(),
            ifaces: Vec::new(),
            routes: Vec::new(),
            route_index: PrefixIndex::default(),
            reach: FnvHashMap::default(),
            lbs: Vec::new(),
            events: Vec::new(),
            counters: RouterCounters::default(),
            tracing: true,
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Add an interface with address `addr` on `net` (a connected route is added). Returns
    /// its index.
    pub fn add_iface(
        &mut self,
        name: impl Into<String>,
        addr: Ipv4Addr,
        net: Ipv4Net,
        kind: IfaceKind,
    ) -> usize {
        self.ifaces.push(RouterIface {
            name: name.into(),
            addr,
            net: net.trunc(),
            v6: Vec::new(),
            kind,
        });
        let i = self.ifaces.len() - 1;
        self.push_route(Route {
            dest: net.trunc().into(),
            via: None,
            iface: i,
        });
        i
    }
    /// Give interface `iface` the IPv6 address `addr` on `net` too (a connected route is
    /// added). No-op for an unknown interface or an address it already has.
    pub fn add_iface_v6(&mut self, iface: usize, addr: Ipv6Addr, net: Ipv6Net) {
        let Some(i) = self.ifaces.get_mut(iface) else {
            return;
        };
        if i.v6.iter().any(|(a, _)| *a == addr) {
            return;
        }
        i.v6.push((addr, net.trunc()));
        self.push_route(Route {
            dest: net.trunc().into(),
            via: None,
            iface,
        });
    }
    pub fn ifaces(&self) -> &[RouterIface] {
        &self.ifaces
    }
    /// A static route `dest via gateway` out of `iface`.
    pub fn add_route(&mut self, dest: impl Into<IpNet>, via: impl Into<IpAddr>, iface: usize) {
        self.push_route(Route {
            dest: dest.into().trunc(),
            via: Some(via.into()),
            iface,
        });
    }
    fn push_route(&mut self, r: Route) {
        self.route_index.insert(r.dest, self.routes.len());
        self.routes.push(r);
    }
    /// Allow `client` to reach `dst`. A client with no entry reaches nothing but LB frontends.
    pub fn allow(&mut self, client: impl Into<IpAddr>, dst: impl Into<IpAddr>) {
        self.reach
            .entry(client.into())
            .or_default()
            .insert(dst.into());
    }
    pub fn add_load_balancer(&mut self, lb: LoadBalancer) {
        self.lbs.push(lb);
    }
    pub fn load_balancers(&self) -> &[LoadBalancer] {
        &self.lbs
    }
    pub fn load_balancer_mut(&mut self, name: &str) -> Option<&mut LoadBalancer> {
        self.lbs.iter_mut().find(|l| l.name == name)
    }
    /// Take the trace events recorded so far.
    pub fn drain_events(&mut self) -> Vec<RouterEvent> {
        std::mem::take(&mut self.events)
    }

    /// Longest-prefix match: (egress iface, next hop).
    pub fn lookup(&self, dst: impl Into<IpAddr>) -> Option<(usize, IpAddr)> {
        let dst = dst.into();
        let r = &self.routes[self.route_index.lookup(dst)?];
        Some((r.iface, r.via.unwrap_or(dst)))
    }

    fn note(
        &mut self,
        now: Duration,
        in_iface: usize,
        out_iface: Option<usize>,
        before: Option<&Summary>,
        after: &[u8],
        action: impl Into<String>,
    ) {
        if !self.tracing {
            return;
        }
        let ev = RouterEvent {
            at: now,
            router: self.name.clone(),
            in_iface: self
                .ifaces
                .get(in_iface)
                .map(|i| i.name.clone())
                .unwrap_or_default(),
            out_iface: out_iface.and_then(|o| self.ifaces.get(o).map(|i| i.name.clone())),
            before: before.cloned(),
            after: packet::summarize(after).ok(),
            action: action.into(),
        };
        self.events.push(ev);
    }

    /// Trace a datagram the router does not forward (`before`: its summary, if it parsed);
    /// the caller counts it.
    fn note_drop(
        &mut self,
        now: Duration,
        in_iface: usize,
        before: Option<&Summary>,
        pkt: &[u8],
        reason: impl fmt::Display,
    ) {
        self.note(now, in_iface, None, before, pkt, format!("drop: {reason}"));
    }

    fn lb_stage(
        &mut self,
        now: Duration,
        s: &Summary,
        pkt: &mut Vec<u8>,
        rng: &mut dyn RngCore,
    ) -> LbAction {
        let t = s.tuple;
        // Trace text only when tracing (no formatting per packet otherwise).
        let tracing = self.tracing;
        let text = |f: &dyn Fn() -> String| if tracing { f() } else { String::new() };
        for lb in &mut self.lbs {
            lb.expire(now);
            // ICMP errors about a translated flow (e.g. a node's REJECT): translate the
            // outer source and the quoted destination back to the frontend.
            if let (Some((3 | 11, _)), Some(q)) = (s.icmp, s.inner) {
                let hit = lb.flows.iter().find(|(orig, f)| {
                    orig.proto == q.proto
                        && orig.src == q.src
                        && orig.sport == q.sport
                        && f.target == q.dst_addr()
                });
                if let Some((orig, _)) = hit {
                    let front = orig.dst_addr();
                    return match packet::rewrite_icmp_error(pkt, orig.dst, front) {
                        Ok(p) => LbAction::Translated(
                            p,
                            text(&|| {
                                format!(
                                    "LB {} un-DNAT ICMP error {} → {}",
                                    lb.name,
                                    q.dst_addr(),
                                    front
                                )
                            }),
                        ),
                        Err(e) => LbAction::Drop(format!("LB {}: {e}", lb.name)),
                    };
                }
            }
            // Original direction: client → frontend.
            if lb.is_frontend(t.dst) {
                let target = if let Some(f) = lb.flows.get_mut(&t) {
                    f.last_seen = now;
                    f.target
                } else {
                    let Some(l) = lb
                        .listeners
                        .iter()
                        .find(|l| l.proto == t.proto && l.port == t.dport)
                        .copied()
                    else {
                        return LbAction::Drop(format!(
                            "LB {}: no listener on {}",
                            lb.name, t.dport
                        ));
                    };
                    let Some(target) = lb.pick_for(t.dst.is_ipv6(), rng).cloned() else {
                        self.counters.lb_no_target += 1;
                        return LbAction::Drop(format!("LB {}: no healthy target", lb.name));
                    };
                    *lb.picks.entry(target.name.clone()).or_default() += 1;
                    // The target node's address of the flow's family.
                    let ip = match (t.dst, target.ip6) {
                        (IpAddr::V6(_), Some(ip6)) => IpAddr::V6(ip6),
                        _ => IpAddr::V4(target.ip),
                    };
                    let to = SocketAddr::new(ip, l.node_port);
                    lb.flows.insert(
                        t,
                        LbFlow {
                            target: to,
                            last_seen: now,
                        },
                    );
                    let reply = FlowTuple {
                        proto: t.proto,
                        src: ip,
                        sport: l.node_port,
                        dst: t.src,
                        dport: t.sport,
                    };
                    lb.replies.insert(reply, t);
                    to
                };
                return match packet::rewrite_in_place(pkt, None, Some(target)) {
                    Ok(()) => LbAction::Translated(
                        std::mem::take(pkt),
                        text(&|| format!("LB {} DNAT {} → {}", lb.name, t.dst_addr(), target)),
                    ),
                    Err(e) => LbAction::Drop(format!("LB {}: {e}", lb.name)),
                };
            }
            // Reply direction: target → client.
            if let Some(orig) = lb.replies.get(&t).copied() {
                if let Some(f) = lb.flows.get_mut(&orig) {
                    f.last_seen = now;
                }
                // The frontend the client sent to (orig's destination), of its family.
                let from = orig.dst_addr();
                return match packet::rewrite_in_place(pkt, Some(from), None) {
                    Ok(()) => LbAction::Translated(
                        std::mem::take(pkt),
                        text(&|| format!("LB {} un-DNAT {} → {}", lb.name, t.src_addr(), from)),
                    ),
                    Err(e) => LbAction::Drop(format!("LB {}: {e}", lb.name)),
                };
            }
        }
        LbAction::NotOurs
    }

    /// A datagram arrives on interface `in_iface`.
    pub fn receive(
        &mut self,
        now: Duration,
        in_iface: usize,
        pkt: &[u8],
        rng: &mut dyn RngCore,
    ) -> Vec<RouterOutput> {
        self.receive_owned(now, in_iface, pkt.to_vec(), rng)
            .into_iter()
            .collect()
    }

    /// [`Router::receive`] taking the datagram by value: the fabric's hot path (no copy
    /// when it is forwarded unchanged by the load balancer stage; the router sends at most
    /// one datagram per datagram received, so no list is allocated).
    pub fn receive_owned(
        &mut self,
        now: Duration,
        in_iface: usize,
        pkt: Vec<u8>,
        rng: &mut dyn RngCore,
    ) -> Option<RouterOutput> {
        let s = match packet::summarize(&pkt) {
            Ok(s) => s,
            Err(e) => {
                self.counters.malformed += 1;
                self.note_drop(now, in_iface, None, &pkt, format!("malformed ({e})"));
                return None;
            }
        };
        let Some((in_kind, in_addr, in_addr6)) = self
            .ifaces
            .get(in_iface)
            .map(|i| (i.kind, i.addr, i.addr6()))
        else {
            self.counters.malformed += 1;
            return None;
        };
        // Reachability: clients reach only what they are allowed to (and LB frontends).
        if in_kind == IfaceKind::Clients {
            let dst = s.tuple.dst;
            let is_lb = self.lbs.iter().any(|l| l.is_frontend(dst));
            let allowed = self
                .reach
                .get(&s.tuple.src)
                .is_some_and(|set| set.contains(&dst));
            if !is_lb && !allowed {
                self.counters.filtered += 1;
                let why = format!("{} is unreachable from {}", dst, s.tuple.src);
                self.note_drop(now, in_iface, Some(&s), &pkt, why);
                return None;
            }
        }
        if self.ifaces.iter().any(|i| i.owns(s.tuple.dst)) {
            self.counters.to_router += 1;
            self.note_drop(now, in_iface, Some(&s), &pkt, "addressed to the router");
            return None;
        }
        let mut pkt = pkt;
        let (mut pkt, mut action, translated) = match self.lb_stage(now, &s, &mut pkt, rng) {
            LbAction::NotOurs => (pkt, Cow::Borrowed("forward"), false),
            LbAction::Translated(p, a) => (p, Cow::Owned(a), true),
            LbAction::Drop(reason) => {
                self.note_drop(now, in_iface, Some(&s), &pkt, reason);
                return None;
            }
        };
        // Only a translated datagram has a new destination.
        let dst = if translated {
            packet::destination(&pkt).unwrap_or(s.tuple.dst)
        } else {
            s.tuple.dst
        };
        let Some((out, next_hop)) = self.lookup(dst) else {
            self.counters.unroutable += 1;
            let why = format!("no route to {dst}");
            self.note_drop(now, in_iface, Some(&s), &pkt, why);
            return None;
        };
        match packet::decrement_ttl(&mut pkt) {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.counters.ttl_exceeded += 1;
                let icmp = packet::time_exceeded(in_addr, in_addr6, &pkt).ok();
                let outs = icmp.and_then(|icmp| {
                    let (o, nh) = self.lookup(s.tuple.src)?;
                    Some(RouterOutput {
                        iface: o,
                        next_hop: nh,
                        pkt: icmp,
                    })
                });
                let action = "ttl exceeded: ICMP time exceeded sent";
                self.note(now, in_iface, None, Some(&s), &pkt, action);
                return outs;
            }
            Err(e) => {
                self.counters.malformed += 1;
                self.note_drop(now, in_iface, Some(&s), &pkt, e);
                return None;
            }
        }
        if out == in_iface && !translated {
            action = Cow::Borrowed("forward (same interface)");
        }
        self.counters.forwarded += 1;
        self.note(now, in_iface, Some(out), Some(&s), &pkt, action);
        Some(RouterOutput {
            iface: out,
            next_hop,
            pkt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{summarize, tcp_packet};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::net::SocketAddrV4;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn router() -> Router {
        let mut r = Router::new("router");
        r.add_iface(
            "nodes",
            ip("10.151.30.1"),
            "10.151.30.0/24".parse().unwrap(),
            IfaceKind::Cluster,
        );
        r.add_iface(
            "clients-a",
            ip("203.0.113.1"),
            "203.0.113.0/24".parse().unwrap(),
            IfaceKind::Clients,
        );
        r.add_iface(
            "clients-b",
            ip("198.51.100.1"),
            "198.51.100.0/24".parse().unwrap(),
            IfaceKind::Clients,
        );
        r.allow(ip("203.0.113.11"), ip("10.151.30.11"));
        r
    }

    #[test]
    fn client_reaches_only_listed_nodes() {
        let mut r = router();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ok = tcp_packet(
            sa("203.0.113.11:40000"),
            sa("10.151.30.11:32761"),
            64,
            "S",
            b"",
        );
        let out = r.receive(Duration::ZERO, 1, &ok, &mut rng);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].iface, 0);
        assert_eq!(out[0].next_hop, IpAddr::V4(ip("10.151.30.11")));
        assert_eq!(summarize(&out[0].pkt).unwrap().ttl, 63);
        let no = tcp_packet(
            sa("203.0.113.11:40000"),
            sa("10.151.30.12:32761"),
            64,
            "S",
            b"",
        );
        assert!(r.receive(Duration::ZERO, 1, &no, &mut rng).is_empty());
        assert_eq!(r.counters.filtered, 1);
        // replies from nodes to clients are routed
        let back = tcp_packet(
            sa("10.151.30.11:32761"),
            sa("203.0.113.11:40000"),
            64,
            "SA",
            b"",
        );
        let out = r.receive(Duration::ZERO, 0, &back, &mut rng);
        assert_eq!(out[0].iface, 1);
        // other client networks are routed too
        let other = tcp_packet(
            sa("10.151.30.11:32761"),
            sa("198.51.100.7:1"),
            64,
            "SA",
            b"",
        );
        assert_eq!(r.receive(Duration::ZERO, 0, &other, &mut rng)[0].iface, 2);
        // no route
        let lost = tcp_packet(sa("10.151.30.11:32761"), sa("192.0.2.1:1"), 64, "SA", b"");
        assert!(r.receive(Duration::ZERO, 0, &lost, &mut rng).is_empty());
        assert_eq!(r.counters.unroutable, 1);
    }

    #[test]
    fn longest_prefix_wins() {
        let mut r = router();
        r.add_route(
            "10.244.0.0/16".parse::<Ipv4Net>().unwrap(),
            ip("10.151.30.11"),
            0,
        );
        r.add_route(
            "10.244.2.0/24".parse::<Ipv4Net>().unwrap(),
            ip("10.151.30.13"),
            0,
        );
        let v4 = |s: &str| IpAddr::V4(ip(s));
        assert_eq!(r.lookup(ip("10.244.2.9")), Some((0, v4("10.151.30.13"))));
        assert_eq!(r.lookup(ip("10.244.3.9")), Some((0, v4("10.151.30.11"))));
        assert_eq!(r.lookup(ip("10.151.30.14")), Some((0, v4("10.151.30.14"))));
    }

    #[test]
    fn ttl_exceeded_answers_with_icmp() {
        let mut r = router();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = tcp_packet(
            sa("203.0.113.11:40000"),
            sa("10.151.30.11:32761"),
            1,
            "S",
            b"",
        );
        let out = r.receive(Duration::ZERO, 1, &p, &mut rng);
        assert_eq!(out.len(), 1);
        let s = summarize(&out[0].pkt).unwrap();
        assert_eq!(s.icmp, Some((11, 0)));
        assert_eq!(s.tuple.src, ip("203.0.113.1"));
        assert_eq!(s.tuple.dst, ip("203.0.113.11"));
        assert_eq!(out[0].iface, 1);
        assert_eq!(r.counters.ttl_exceeded, 1);
    }

    /// IPv6 next to IPv4: connected IPv6 prefixes, static IPv6 routes, reachability by IPv6
    /// address, hop-limit decrement and ICMPv6 time exceeded from the ingress interface.
    #[test]
    fn ipv6_forwarding_and_reachability() {
        let mut r = router();
        let a6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let s6 = |s: &str| s.parse::<SocketAddr>().unwrap();
        r.add_iface_v6(0, a6("fd00:151:30::1"), "fd00:151:30::/64".parse().unwrap());
        r.add_iface_v6(1, a6("2001:db8::1"), "2001:db8::/64".parse().unwrap());
        r.add_route(
            "fd00:10:244:1::/64".parse::<Ipv6Net>().unwrap(),
            a6("fd00:151:30::12"),
            0,
        );
        r.allow(a6("2001:db8::11"), a6("fd00:151:30::11"));
        assert_eq!(
            r.lookup(a6("fd00:10:244:1::5")),
            Some((0, IpAddr::V6(a6("fd00:151:30::12"))))
        );
        assert_eq!(r.lookup(a6("2001:db9::1")), None);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let syn = tcp_packet(
            s6("[2001:db8::11]:40000"),
            s6("[fd00:151:30::11]:32761"),
            64,
            "S",
            b"",
        );
        let out = r.receive(Duration::ZERO, 1, &syn, &mut rng);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].next_hop, IpAddr::V6(a6("fd00:151:30::11")));
        assert_eq!(summarize(&out[0].pkt).unwrap().ttl, 63);
        // Not allowed: another node's IPv6 address.
        let no = tcp_packet(
            s6("[2001:db8::11]:40000"),
            s6("[fd00:151:30::12]:32761"),
            64,
            "S",
            b"",
        );
        assert!(r.receive(Duration::ZERO, 1, &no, &mut rng).is_empty());
        assert_eq!(r.counters.filtered, 1);
        // Addressed to the router's IPv6 address.
        let me = tcp_packet(
            s6("[fd00:151:30::11]:1"),
            s6("[fd00:151:30::1]:2"),
            64,
            "S",
            b"",
        );
        assert!(r.receive(Duration::ZERO, 0, &me, &mut rng).is_empty());
        assert_eq!(r.counters.to_router, 1);
        // Hop limit 1: ICMPv6 time exceeded back to the client from 2001:db8::1.
        let last = tcp_packet(
            s6("[2001:db8::11]:40000"),
            s6("[fd00:151:30::11]:32761"),
            1,
            "S",
            b"",
        );
        let out = r.receive(Duration::ZERO, 1, &last, &mut rng);
        assert_eq!(out.len(), 1);
        let s = summarize(&out[0].pkt).unwrap();
        assert_eq!(s.icmp, Some((3, 0)));
        assert_eq!(s.tuple.src, IpAddr::V6(a6("2001:db8::1")));
        assert_eq!(s.tuple.dst, IpAddr::V6(a6("2001:db8::11")));
        assert_eq!(s.inner.unwrap().dport, 32761);
        assert_eq!(out[0].iface, 1);
    }

    /// A dual-stack load balancer: flows to its IPv6 frontend go to a target's IPv6 address
    /// (targets without one are skipped), keep the client's IPv6 source and are un-DNATed.
    #[test]
    fn load_balancer_ipv6_frontend() {
        let mut r = router();
        let a6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let s6 = |s: &str| s.parse::<SocketAddr>().unwrap();
        r.add_iface_v6(0, a6("fd00:151:30::1"), "fd00:151:30::/64".parse().unwrap());
        r.add_iface_v6(1, a6("2001:db8::1"), "2001:db8::/64".parse().unwrap());
        let mut lb = LoadBalancer::new("lb", ip("198.51.100.100"));
        lb.frontend6 = Some(a6("2001:db8:100::10"));
        lb.listen(6, 80, 32761);
        lb.add_target("node1", ip("10.151.30.12"));
        lb.add_target("node2", ip("10.151.30.13"));
        lb.set_target_v6("node1", a6("fd00:151:30::12"));
        r.add_load_balancer(lb);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for port in 0..20u16 {
            let client = SocketAddr::new(a6("2001:db8::50").into(), 30000 + port);
            let p = tcp_packet(client, s6("[2001:db8:100::10]:80"), 64, "S", b"");
            let out = r.receive(Duration::ZERO, 1, &p, &mut rng);
            let s = summarize(&out[0].pkt).unwrap();
            assert_eq!(s.tuple.src_addr(), client, "client address kept");
            assert_eq!(s.tuple.dst_addr(), s6("[fd00:151:30::12]:32761"));
            let reply = tcp_packet(s6("[fd00:151:30::12]:32761"), client, 64, "SA", b"");
            let back = r.receive(Duration::ZERO, 0, &reply, &mut rng);
            let s = summarize(&back[0].pkt).unwrap();
            assert_eq!(s.tuple.src_addr(), s6("[2001:db8:100::10]:80"));
        }
        // The IPv4 frontend still splits over both nodes' IPv4 addresses.
        let p = tcp_packet(
            sa("203.0.113.50:40000"),
            sa("198.51.100.100:80"),
            64,
            "S",
            b"",
        );
        let out = r.receive(Duration::ZERO, 1, &p, &mut rng);
        assert!(summarize(&out[0].pkt).unwrap().tuple.dst.is_ipv4());
        // No target with an IPv6 address: the IPv6 flow is dropped.
        let lb = r.load_balancer_mut("lb").unwrap();
        lb.set_healthy("node1", false);
        let p = tcp_packet(
            s6("[2001:db8::50]:1"),
            s6("[2001:db8:100::10]:80"),
            64,
            "S",
            b"",
        );
        assert!(r.receive(Duration::ZERO, 1, &p, &mut rng).is_empty());
        assert_eq!(r.counters.lb_no_target, 1);
    }

    #[test]
    fn malformed_is_counted_not_panicking() {
        let mut r = router();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(r
            .receive(Duration::ZERO, 1, &[0x45, 1, 2], &mut rng)
            .is_empty());
        assert!(r.receive(Duration::ZERO, 9, &[], &mut rng).is_empty());
        assert_eq!(r.counters.malformed, 2);
    }

    #[test]
    fn load_balancer_splits_per_node_and_reverses() {
        let mut r = router();
        let mut lb = LoadBalancer::new("lb", ip("198.51.100.100"));
        lb.listen(6, 80, 32761);
        lb.add_target("node1", ip("10.151.30.12"));
        lb.add_target("node2", ip("10.151.30.13"));
        r.add_load_balancer(lb);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut per = std::collections::HashMap::new();
        for port in 0..1000u16 {
            let p = tcp_packet(
                SocketAddrV4::new(ip("203.0.113.50"), 30000 + port),
                sa("198.51.100.100:80"),
                64,
                "S",
                b"",
            );
            let out = r.receive(Duration::ZERO, 1, &p, &mut rng);
            let s = summarize(&out[0].pkt).unwrap();
            assert_eq!(s.tuple.src, ip("203.0.113.50"), "client IP kept");
            assert_eq!(s.tuple.dport, 32761);
            *per.entry(s.tuple.dst).or_insert(0) += 1;
            // same flow sticks
            let again = r.receive(Duration::ZERO, 1, &p, &mut rng);
            assert_eq!(summarize(&again[0].pkt).unwrap().tuple.dst, s.tuple.dst);
            // reply is un-DNATed
            let reply = tcp_packet(
                SocketAddrV4::new(wire::v4(s.tuple.dst), 32761),
                SocketAddrV4::new(ip("203.0.113.50"), 30000 + port),
                64,
                "SA",
                b"",
            );
            let back = r.receive(Duration::ZERO, 0, &reply, &mut rng);
            assert_eq!(
                summarize(&back[0].pkt).unwrap().tuple.src_addr(),
                std::net::SocketAddr::V4(sa("198.51.100.100:80"))
            );
        }
        let a = per[&ip("10.151.30.12").into()];
        assert!((430..=570).contains(&a), "split {a}/1000");
        // weights / health hook
        let lb = r.load_balancer_mut("lb").unwrap();
        lb.set_healthy("node1", false);
        for _ in 0..10 {
            assert_eq!(lb.pick(&mut rng).unwrap().name, "node2");
        }
        lb.set_healthy("node1", true);
        lb.set_weight("node2", 0);
        assert_eq!(lb.pick(&mut rng).unwrap().name, "node1");
    }
}
