//! Packets into a node: the [`PacketHarness`].
//!
//! The node under test is `ydzs-node1` of the blog's cluster (eth0 10.151.30.12/24, pods on
//! cni0 10.244.1.0/24, the other nodes' pod CIDRs via their IPs) with services that reach
//! every NAT decision: NodePort with local and remote endpoints (TCP + UDP), a LoadBalancer
//! with `externalTrafficPolicy: Local`, a healthCheckNodePort, an external IP and ClientIP
//! affinity, a service without endpoints (REJECT), one with only remote endpoints under
//! Local policies (DROP), and not-ready/terminating endpoints. A small conntrack table
//! (`conntrack_max` 2048) makes the table-full path reachable.
//!
//! Inputs are generated around live state: fresh packets to the interesting addresses and
//! ports, *replies* to datagrams the node emitted (so un-DNAT/un-SNAT paths run), ICMP
//! errors that quote emitted datagrams (the "related" path that rewrites the quoted flow),
//! garbage, and any of those after [`mutate::havoc`] (checksums repaired most of the time).
//!
//! Input format (what a crash file holds): byte 0 = operation (`0` eth0, `1` cni0, `2` the
//! cni0 bridge, `3` timers only, `4` a kube-proxy resync with endpoints removed), byte 1 =
//! time step (`n <= 250`: n × 10 µs; 251..=255: 1 s, 10 s, 60 s, 300 s, 1 h), then the
//! datagram.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use nodeport::{
    Endpoint, EndpointPort, EndpointSlice, Protocol, ProxyConfig, Service, ServicePort, ServiceRef,
    ServiceType, SessionAffinity, TrafficPolicy,
};
use nodestack::{Egress, Iface, Node, NodeSpec};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::mutate::havoc;
use crate::wire::{self, ICMP, TCP, UDP};
use crate::Harness;

const fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

const NODE_IP: Ipv4Addr = ip(10, 151, 30, 12);
const CNI0: Ipv4Addr = ip(10, 244, 1, 1);
const ROUTER: Ipv4Addr = ip(10, 151, 30, 1);
const CLIENTS: [Ipv4Addr; 3] = [
    ip(203, 0, 113, 11),
    ip(203, 0, 113, 12),
    ip(198, 51, 100, 99),
];
const LOCAL_PODS: [Ipv4Addr; 4] = [
    ip(10, 244, 1, 16),
    ip(10, 244, 1, 17),
    ip(10, 244, 1, 18),
    ip(10, 244, 1, 30),
];
const REMOTE_PODS: [Ipv4Addr; 3] = [ip(10, 244, 2, 11), ip(10, 244, 0, 5), ip(10, 244, 2, 12)];
const NODES: [Ipv4Addr; 4] = [NODE_IP, ip(10, 151, 30, 11), ip(10, 151, 30, 13), CNI0];
const VIPS: [Ipv4Addr; 7] = [
    ip(10, 96, 0, 10),
    ip(10, 96, 0, 11),
    ip(10, 96, 0, 12),
    ip(10, 96, 0, 13),
    ip(10, 96, 0, 20),
    ip(192, 0, 2, 10),
    ip(198, 51, 100, 7),
];
const PORTS: [u16; 13] = [
    80, 8080, 53, 5353, 81, 30080, 30053, 30081, 30082, 30083, 32000, 10256, 0,
];

/// Packets since the last fresh node after which the node is rebuilt (bounds state, and
/// rotates the kube-proxy configuration variant).
const RESET_EVERY: u64 = 200_000;
/// Emitted datagrams remembered for replies and ICMP errors.
const RING: usize = 256;

/// One service of the fuzzed node, as data: ports are (name, protocol, port, targetPort =
/// endpoint port, nodePort or 0); endpoints are (address, node, ready, terminating).
struct Desc {
    name: &'static str,
    type_: ServiceType,
    vip: Ipv4Addr,
    local: (bool, bool),
    ports: &'static [(&'static str, Protocol, u16, u16, u16)],
    endpoints: &'static [(Ipv4Addr, &'static str, bool, bool)],
}

const N0: &str = "ydzs-master";
const N1: &str = "ydzs-node1";
const N2: &str = "ydzs-node2";

/// NodePort with local, remote, terminating and not-ready endpoints (TCP + UDP); a
/// LoadBalancer under Local policy (extras in [`services`]); no endpoints (REJECT); only a
/// remote endpoint under Local policies (DROP); a ClusterIP with internal policy Local.
const SERVICES: [Desc; 5] = [
    Desc {
        name: "web",
        type_: ServiceType::NodePort,
        vip: VIPS[0],
        local: (false, false),
        ports: &[
            ("http", Protocol::Tcp, 80, 8080, 30080),
            ("dns", Protocol::Udp, 53, 5353, 30053),
        ],
        endpoints: &[
            (LOCAL_PODS[0], N1, true, false),
            (REMOTE_PODS[0], N2, true, false),
            (LOCAL_PODS[2], N1, false, true),
            (REMOTE_PODS[2], N2, false, false),
        ],
    },
    Desc {
        name: "lb",
        type_: ServiceType::LoadBalancer,
        vip: VIPS[1],
        local: (true, false),
        ports: &[("", Protocol::Tcp, 80, 80, 30081)],
        endpoints: &[
            (LOCAL_PODS[1], N1, true, false),
            (REMOTE_PODS[1], N0, true, false),
        ],
    },
    Desc {
        name: "empty",
        type_: ServiceType::NodePort,
        vip: VIPS[2],
        local: (false, false),
        ports: &[("", Protocol::Tcp, 81, 81, 30082)],
        endpoints: &[],
    },
    Desc {
        name: "remote",
        type_: ServiceType::NodePort,
        vip: VIPS[3],
        local: (true, true),
        ports: &[
            ("", Protocol::Tcp, 80, 80, 30083),
            ("u", Protocol::Udp, 53, 53, 0),
        ],
        endpoints: &[(REMOTE_PODS[2], N2, true, false)],
    },
    Desc {
        name: "internal",
        type_: ServiceType::ClusterIp,
        vip: VIPS[4],
        local: (false, true),
        ports: &[("", Protocol::Udp, 53, 5353, 0)],
        endpoints: &[
            (LOCAL_PODS[0], N1, true, false),
            (REMOTE_PODS[0], N2, true, false),
        ],
    },
];

fn policy(local: bool) -> TrafficPolicy {
    if local {
        TrafficPolicy::Local
    } else {
        TrafficPolicy::Cluster
    }
}

impl Desc {
    fn service(&self) -> Service {
        Service {
            cluster_ips: vec![self.vip.into()],
            ports: (self.ports.iter())
                .map(|&(name, protocol, port, target_port, np)| ServicePort {
                    name: name.into(),
                    protocol,
                    port,
                    target_port,
                    node_port: (np != 0).then_some(np),
                })
                .collect(),
            external_traffic_policy: policy(self.local.0),
            internal_traffic_policy: policy(self.local.1),
            ..Service::new("default", self.name, self.type_)
        }
    }

    fn slice(&self) -> EndpointSlice {
        EndpointSlice {
            address_type: Default::default(),
            service: ServiceRef::new("default", self.name),
            ports: (self.ports.iter())
                .map(|&(name, protocol, _, port, _)| EndpointPort {
                    name: name.into(),
                    protocol,
                    port,
                })
                .collect(),
            endpoints: (self.endpoints.iter())
                .map(|&(ip, node, ready, terminating)| Endpoint {
                    ip: std::net::IpAddr::V4(ip),
                    node_name: Some(node.into()),
                    ready,
                    serving: ready || terminating,
                    terminating,
                })
                .collect(),
        }
    }
}

/// The services and EndpointSlices of the fuzzed node (see [`SERVICES`]); the
/// LoadBalancer gets a healthCheckNodePort, an ingress IP, an external IP and ClientIP
/// affinity.
pub fn services() -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs: Vec<Service> = SERVICES.iter().map(Desc::service).collect();
    if let Some(lb) = svcs.iter_mut().find(|s| s.name == "lb") {
        lb.health_check_node_port = Some(32000);
        lb.load_balancer_ips = vec![std::net::IpAddr::V4(VIPS[5])];
        lb.external_ips = vec![std::net::IpAddr::V4(VIPS[6])];
        lb.session_affinity = SessionAffinity::ClientIp {
            timeout: Duration::from_secs(10),
        };
    }
    let slices = (SERVICES.iter())
        .filter(|d| !d.endpoints.is_empty())
        .map(Desc::slice)
        .collect();
    (svcs, slices)
}

/// The fuzzed node, in configuration `variant` (masquerade-all, random-fully,
/// nodePortAddresses, no masquerade; chain tracing on odd variants).
pub fn node(variant: u64) -> Node {
    let mut proxy = ProxyConfig::new("ydzs-node1", vec![]);
    proxy.cluster_cidrs = vec!["10.244.0.0/16".parse().expect("literal CIDR")];
    proxy.conntrack_max = 2048;
    match variant % 4 {
        1 => proxy.masquerade_all = true,
        2 => {
            proxy.masquerade_random_fully = true;
            proxy.node_port_addresses = vec!["10.151.30.0/24".parse().expect("literal CIDR")];
        }
        3 => proxy.masquerade_enabled = false,
        _ => {}
    }
    let mut n = Node::new(
        NodeSpec {
            name: "ydzs-node1".into(),
            ip: NODE_IP,
            prefix_len: 24,
            pod_cidr: "10.244.1.0/24".parse().expect("literal CIDR"),
            gateway: Some(ROUTER),
            proxy,
            v6: None,
        },
        Duration::ZERO,
        variant,
    );
    n.add_route("10.244.0.0/24".parse().expect("literal CIDR"), NODES[1]);
    n.add_route("10.244.2.0/24".parse().expect("literal CIDR"), NODES[2]);
    n.tracing = variant % 2 == 1;
    n.proxier_mut().set_trace(variant % 2 == 1);
    let (svcs, slices) = services();
    n.set_services(&svcs, &slices);
    n
}

/// What the packet target counts.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    packets: u64,
    fresh: u64,
    replies: u64,
    icmp_errors: u64,
    garbage: u64,
    mutated: u64,
    bridged: u64,
    resyncs: u64,
    egress: u64,
    node_rebuilds: u64,
    engine_drops: u64,
    rejects: u64,
    forwarded: u64,
    delivered_local: u64,
    conntrack_full: u64,
    icmp_errors_out: u64,
    quotes_rewritten: u64,
    nated_out: u64,
}

/// Fuzz target: datagrams into one node (see the module docs).
pub struct PacketHarness {
    node: Node,
    variant: u64,
    since_reset: u64,
    now: Duration,
    rng: ChaCha8Rng,
    ring: VecDeque<Egress>,
    /// Emitted datagrams the node NATed (their tuple differs from the input's).
    nated: VecDeque<Egress>,
    counts: Counts,
}

impl Default for PacketHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketHarness {
    /// A fresh node (variant 0) with its services.
    pub fn new() -> Self {
        PacketHarness {
            node: node(0),
            variant: 0,
            since_reset: 0,
            now: Duration::ZERO,
            rng: ChaCha8Rng::seed_from_u64(0),
            ring: VecDeque::with_capacity(RING),
            nated: VecDeque::with_capacity(RING),
            counts: Counts::default(),
        }
    }

    fn retire_node_counters(&mut self) {
        let c = &self.node.counters;
        self.counts.engine_drops += c.engine_drops;
        self.counts.rejects += c.rejects;
        self.counts.forwarded += c.forwarded;
        self.counts.delivered_local += c.delivered_local;
    }

    fn rebuild(&mut self) {
        self.retire_node_counters();
        self.variant += 1;
        self.node = node(self.variant);
        self.now = Duration::ZERO;
        self.ring.clear();
        self.nated.clear();
        self.since_reset = 0;
        self.counts.node_rebuilds += 1;
    }

    fn remember(&mut self, input: &[u8], out: Vec<Egress>) {
        self.counts.egress += out.len() as u64;
        let tuple = wire::five_tuple(input);
        for e in out {
            let t = wire::five_tuple(&e.pkt);
            if t.is_some_and(|t| t.2 != ICMP)
                && tuple.is_some_and(|i| i.2 == t.map_or(0, |t| t.2))
                && t != tuple
            {
                self.counts.nated_out += 1;
                if self.nated.len() == RING {
                    self.nated.pop_front();
                }
                self.nated.push_back(e.clone());
            }
            if self.ring.len() == RING {
                self.ring.pop_front();
            }
            self.ring.push_back(e);
        }
    }

    fn resync(&mut self, pick: u8) {
        let (svcs, mut slices) = services();
        for (i, s) in slices.iter_mut().enumerate() {
            if pick & (1 << (i % 8)) != 0 {
                s.endpoints
                    .retain(|e| e.node_name.as_deref() != Some("ydzs-node1"));
            }
            if pick & 0x80 != 0 {
                s.endpoints.clear();
            }
        }
        let svcs: Vec<Service> = if pick & 0x40 != 0 {
            svcs.into_iter().skip(1).collect()
        } else {
            svcs
        };
        self.node.set_services(&svcs, &slices);
    }
}

fn step(code: u8) -> Duration {
    match code {
        0..=250 => Duration::from_micros(u64::from(code) * 10),
        251 => Duration::from_secs(1),
        252 => Duration::from_secs(10),
        253 => Duration::from_secs(60),
        254 => Duration::from_secs(300),
        _ => Duration::from_secs(3600),
    }
}

fn any_addr(rng: &mut ChaCha8Rng) -> Ipv4Addr {
    let pools: [&[Ipv4Addr]; 5] = [&CLIENTS, &LOCAL_PODS, &REMOTE_PODS, &NODES, &VIPS];
    match rng.random_range(0..12u8) {
        0 => Ipv4Addr::from(rng.random::<u32>()),
        1 => ROUTER,
        _ => *pools
            .choose(rng)
            .and_then(|p| p.choose(rng))
            .unwrap_or(&NODE_IP),
    }
}

fn any_port(rng: &mut ChaCha8Rng) -> u16 {
    if rng.random_bool(0.3) {
        rng.random_range(1024..=65535)
    } else {
        *PORTS.choose(rng).unwrap_or(&80)
    }
}

fn tcp_flags(rng: &mut ChaCha8Rng) -> u8 {
    if rng.random_bool(0.05) {
        return rng.random();
    }
    let spec = ["S", "SA", "A", "PA", "FA", "R", "RA", ""].choose(rng);
    wire::tcp_flags(spec.unwrap_or(&"S"))
}

fn ttl(rng: &mut ChaCha8Rng) -> u8 {
    *[64u8, 63, 1, 0, 2, 255].choose(rng).unwrap_or(&64)
}

/// A transport payload of protocol `proto` between the given ports.
fn l4(rng: &mut ChaCha8Rng, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let body: &[u8] = match rng.random_range(0..4u8) {
        0 => b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        1 => b"GET / HTTP/1.0\r\n\r\n",
        _ => b"",
    };
    match proto {
        TCP => wire::tcp(
            sport,
            dport,
            rng.random(),
            rng.random(),
            tcp_flags(rng),
            body,
        ),
        UDP => wire::udp(sport, dport, body),
        _ => {
            let kind = *[8u8, 0, 13, 3, 11].choose(rng).unwrap_or(&8);
            let id = rng.random::<u16>().to_be_bytes();
            wire::icmp(kind, 0, [id[0], id[1], 0, 1], body)
        }
    }
}

/// The services' frontends (address, port, protocol): what kube-proxy NATs.
const FRONTENDS: [(Ipv4Addr, u16, u8); 14] = [
    (VIPS[0], 80, TCP),
    (VIPS[0], 53, UDP),
    (NODE_IP, 30080, TCP),
    (NODE_IP, 30053, UDP),
    (CNI0, 30080, TCP),
    (NODE_IP, 30081, TCP),
    (VIPS[5], 80, TCP),
    (VIPS[6], 80, TCP),
    (VIPS[2], 81, TCP),
    (NODE_IP, 30082, TCP),
    (NODE_IP, 30083, TCP),
    (VIPS[3], 80, TCP),
    (VIPS[3], 53, UDP),
    (VIPS[4], 53, UDP),
];

fn fresh(rng: &mut ChaCha8Rng) -> (u8, Vec<u8>) {
    let mut src = any_addr(rng);
    let mut dst = any_addr(rng);
    let mut proto = *[TCP, TCP, UDP, ICMP].choose(rng).unwrap_or(&TCP);
    let (sport, mut dport) = (any_port(rng), any_port(rng));
    if rng.random_bool(0.5) {
        // A new flow to a service, from a client or a pod on this node.
        (dst, dport, proto) = *FRONTENDS.choose(rng).unwrap_or(&FRONTENDS[0]);
        let pool: &[Ipv4Addr] = if rng.random_bool(0.5) {
            &CLIENTS
        } else {
            &LOCAL_PODS
        };
        src = *pool.choose(rng).unwrap_or(&CLIENTS[0]);
    }
    let seg = l4(rng, proto, sport, dport);
    let pkt = wire::ipv4(src, dst, proto, ttl(rng), rng.random(), &seg);
    let from_pod = u32::from(src) >> 8 == u32::from(CNI0) >> 8;
    let op = match rng.random_range(0..10u8) {
        0 => rng.random_range(0..3u8),
        _ if from_pod && rng.random_bool(0.3) => 2,
        _ if from_pod => 1,
        _ => 0,
    };
    (op, pkt)
}

fn op_for(iface: Iface, dst: Ipv4Addr, rng: &mut ChaCha8Rng) -> u8 {
    match iface {
        Iface::Eth0 => 0,
        Iface::Cni0 if u32::from(dst) >> 8 == u32::from(CNI0) >> 8 && dst != CNI0 => {
            if rng.random_bool(0.8) {
                2
            } else {
                1
            }
        }
        Iface::Cni0 => 1,
    }
}

/// A reply to the emitted datagram `e`, arriving where `e` left.
fn reply(rng: &mut ChaCha8Rng, e: &Egress) -> Option<(u8, Vec<u8>)> {
    let (src, dst, proto, sport, dport) = wire::five_tuple(&e.pkt)?;
    let seg = match proto {
        TCP => wire::tcp(
            dport,
            sport,
            rng.random(),
            rng.random(),
            tcp_flags(rng),
            b"",
        ),
        UDP => wire::udp(dport, sport, b"r"),
        ICMP => {
            let ihl = wire::ihl(&e.pkt)?;
            let rest: [u8; 4] = e.pkt.get(ihl + 4..ihl + 8)?.try_into().ok()?;
            wire::icmp(0, 0, rest, b"")
        }
        _ => return None,
    };
    let pkt = wire::ipv4(dst, src, proto, 64, rng.random(), &seg);
    Some((op_for(e.iface, src, rng), pkt))
}

/// An ICMP error about `quoted` (a datagram, emitted or not), from `from` to the quoted
/// datagram's source.
fn icmp_error(rng: &mut ChaCha8Rng, quoted: &[u8], from: Ipv4Addr) -> Option<Vec<u8>> {
    let (qsrc, ..) = wire::five_tuple(quoted)?;
    let ihl = wire::ihl(quoted)?;
    let keep = match rng.random_range(0..10u8) {
        0..=3 => quoted.len(),
        4..=8 => (ihl + 8).min(quoted.len()),
        _ => rng.random_range(0..=quoted.len()),
    };
    let (kind, code, rest) = match rng.random_range(0..6u8) {
        0 => (3, 4, [0, 0, 0x05, 0xdc]), // fragmentation needed, MTU 1500
        1 => (11, rng.random_range(0..2), [0; 4]),
        2 => (12, 0, [rng.random(), 0, 0, 0]),
        3 => (5, 1, NODES[1].octets()),
        _ => (3, rng.random_range(0..16), [0; 4]),
    };
    let msg = wire::icmp(kind, code, rest, &quoted[..keep]);
    Some(wire::ipv4(from, qsrc, ICMP, 64, rng.random(), &msg))
}

/// The quoted datagram of an ICMP error (destination unreachable, source quench, redirect,
/// time exceeded, parameter problem).
fn icmp_error_quote(p: &[u8]) -> Option<&[u8]> {
    let ihl = wire::ihl(p)?;
    let kind = *p.get(ihl)?;
    (p[9] == ICMP && matches!(kind, 3 | 4 | 5 | 11 | 12)).then(|| p.get(ihl + 8..))?
}

fn garbage(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = rng.random_range(0..80usize);
    let mut v: Vec<u8> = (0..n).map(|_| rng.random()).collect();
    if rng.random_bool(0.5) && v.len() >= 20 {
        v[0] = 0x45;
        wire::fix_checksums(&mut v);
    }
    v
}

impl PacketHarness {
    /// A datagram the node emitted; a NATed one more often than not.
    fn pick_egress(&self, rng: &mut ChaCha8Rng) -> Option<Egress> {
        let ring = if !self.nated.is_empty() && rng.random_bool(0.6) {
            &self.nated
        } else {
            &self.ring
        };
        if ring.is_empty() {
            return None;
        }
        ring.get(rng.random_range(0..ring.len())).cloned()
    }

    fn related(&mut self, rng: &mut ChaCha8Rng) -> Option<(u8, Vec<u8>)> {
        if let Some(e) = self.pick_egress(rng).filter(|_| rng.random_bool(0.8)) {
            let (_, dst, ..) = wire::five_tuple(&e.pkt)?;
            let from = match rng.random_range(0..20u8) {
                0..=10 => dst,
                11..=14 => nodeport::packet::v4(e.next_hop),
                15..=17 => ROUTER,
                _ => any_addr(rng),
            };
            let err = icmp_error(rng, &e.pkt, from)?;
            return Some((op_for(e.iface, from, rng), err));
        }
        // About a datagram the node would receive (a pod's reply the sender could not take).
        let (op, q) = fresh(rng);
        let from = any_addr(rng);
        Some((op, icmp_error(rng, &q, from)?))
    }
}

impl Harness for PacketHarness {
    const NAME: &'static str = "packets";

    fn generate(&mut self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        // Mostly microseconds; now and then seconds to an hour, so conntrack entries expire
        // (the 2048-entry table would otherwise stay full and refuse most new flows).
        let t = if rng.random_bool(0.003) {
            rng.random_range(251..=255)
        } else {
            rng.random_range(0..=20)
        };
        let roll = rng.random_range(0..1000u32);
        let made = match roll {
            0..=4 => Some((3, Vec::new())),
            5..=6 => Some((4, vec![rng.random()])),
            7..=349 => {
                self.counts.fresh += 1;
                Some(fresh(rng))
            }
            350..=699 => {
                self.counts.replies += 1;
                self.pick_egress(rng).and_then(|e| reply(rng, &e))
            }
            700..=899 => {
                self.counts.icmp_errors += 1;
                self.related(rng)
            }
            _ => {
                self.counts.garbage += 1;
                Some((rng.random_range(0..3), garbage(rng)))
            }
        };
        let (op, mut pkt) = made.unwrap_or_else(|| fresh(rng));
        if op <= 2 && rng.random_bool(0.25) {
            self.counts.mutated += 1;
            havoc(rng, &mut pkt, 6, 1600);
            if rng.random_bool(0.8) {
                wire::fix_checksums(&mut pkt);
            }
        }
        let mut input = Vec::with_capacity(pkt.len() + 2);
        input.extend_from_slice(&[op, t]);
        input.extend_from_slice(&pkt);
        input
    }

    fn execute(&mut self, input: &[u8]) {
        if self.since_reset >= RESET_EVERY {
            self.rebuild();
        }
        self.since_reset += 1;
        self.counts.packets += 1;
        let (op, t, pkt) = match input {
            [op, t, rest @ ..] => (*op, *t, rest),
            [op] => (*op, 0, &[][..]),
            [] => (3, 0, &[][..]),
        };
        self.now += step(t);
        let now = self.now;
        let rng = &mut self.rng;
        let conntrack_before = self.node.proxier().conntrack().len();
        let mut out = match op % 5 {
            0 => self.node.receive(now, Iface::Eth0, pkt, rng),
            1 => self.node.receive(now, Iface::Cni0, pkt, rng),
            2 => {
                self.counts.bridged += 1;
                self.node.bridge(now, pkt, rng)
            }
            3 => Vec::new(),
            _ => {
                self.counts.resyncs += 1;
                self.resync(pkt.first().copied().unwrap_or(0));
                Vec::new()
            }
        };
        if self.node.poll_at().is_some_and(|at| at <= now) || op % 5 == 3 {
            out.extend(self.node.poll(now, &mut self.rng));
        }
        if conntrack_before >= 2048 {
            self.counts.conntrack_full += 1;
        }
        if self.node.tracing {
            self.node.drain_events();
        }
        let quoted_in = icmp_error_quote(pkt).map(|q| &q[..q.len().min(28)]);
        for o in &out {
            if let Some(q) = icmp_error_quote(&o.pkt) {
                self.counts.icmp_errors_out += 1;
                if quoted_in.is_some_and(|qi| qi != &q[..q.len().min(qi.len())]) {
                    self.counts.quotes_rewritten += 1;
                }
            }
        }
        self.remember(pkt, out);
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counts;
        let n = &self.node.counters;
        vec![
            ("packets", c.packets),
            ("  fresh", c.fresh),
            ("  replies", c.replies),
            ("  icmp errors", c.icmp_errors),
            ("  garbage", c.garbage),
            ("  mutated", c.mutated),
            ("  bridged", c.bridged),
            ("  resyncs", c.resyncs),
            ("datagrams out", c.egress),
            ("  NATed", c.nated_out),
            ("node rebuilds", c.node_rebuilds),
            ("engine drops", c.engine_drops + n.engine_drops),
            ("rejects (ICMP)", c.rejects + n.rejects),
            ("forwarded", c.forwarded + n.forwarded),
            ("delivered local", c.delivered_local + n.delivered_local),
            ("conntrack full", c.conntrack_full),
            ("ICMP errors out", c.icmp_errors_out),
            ("  quote NAT-rewritten", c.quotes_rewritten),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path the ICMP-error inputs are for: an error about a NATed flow comes back
    /// to the node, which rewrites the quoted datagram to what the client sent.
    #[test]
    fn icmp_error_about_a_nated_flow_is_un_nated() {
        let mut n = node(0);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for sport in 40000..40010u16 {
            let syn = wire::tcp(sport, 30080, 1, 0, wire::tcp_flags("S"), b"");
            let pkt = wire::ipv4(CLIENTS[0], NODE_IP, TCP, 64, 1, &syn);
            let out = n.receive(Duration::ZERO, Iface::Eth0, &pkt, &mut rng);
            let e = out.first().expect("SYN forwarded to an endpoint");
            let (src, dst, ..) = wire::five_tuple(&e.pkt).unwrap();
            let ihl = wire::ihl(&e.pkt).unwrap();
            let msg = wire::icmp(3, 3, [0; 4], &e.pkt[..ihl + 8]);
            let err = wire::ipv4(dst, src, ICMP, 64, 2, &msg);
            let op = op_for(e.iface, dst, &mut rng);
            let back = match op {
                2 => n.bridge(Duration::ZERO, &err, &mut rng),
                _ => n.receive(Duration::ZERO, e.iface, &err, &mut rng),
            };
            let b = back.first().expect("ICMP error forwarded to the client");
            let (.., qdst_port) = wire::five_tuple(icmp_error_quote(&b.pkt).unwrap()).unwrap();
            let (qsrc, qdst, ..) = wire::five_tuple(icmp_error_quote(&b.pkt).unwrap()).unwrap();
            assert_eq!((qsrc, qdst, qdst_port), (CLIENTS[0], NODE_IP, 30080));
        }
    }
}
