//! No heap allocation per forwarded packet (issue 11, "Hot path").
//!
//! A World whose client and pod are external ports (like real mode's TUN ports) forwards an
//! established TCP flow in both directions: client → NodePort → pod and the pod's ACKs back,
//! Cluster policy via the master (cross-node, masqueraded) and Local via the pod's node. A
//! counting `#[global_allocator]` (this test binary only) counts the allocations of the
//! forwarding thread over `N` data segments + `N` ACKs once the flow is established.
//!
//! The test ports do what `vswitch::tun::TunPort` does with a datagram: a read copies it
//! into a buffer taken from [`vswitch::bufpool`], a write gives the buffer back.
//!
//! Diagnosis: `NPLAB_ALLOC_BACKTRACE=20@5000 cargo test -p sim --test alloc_free -- --nocapture`
//! prints the backtraces of 20 allocations from the 5000th measured round trip on.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ip;
use etherparse::PacketBuilder;
use nodeport::{IpFamily, IpFamilyPolicy, Service, ServiceType, TrafficPolicy};
use sim::{Attachment, World, WorldSpec};
use vswitch::packet::summarize;
use vswitch::{bufpool, Port};

// ------------------------------------------------------------------ counting allocator

struct Counting;

thread_local! {
    /// Allocations (alloc, alloc_zeroed, realloc) made by this thread.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Print a backtrace for the next this-many allocations of this thread.
    static BACKTRACES: Cell<u32> = const { Cell::new(0) };
    /// Inside the backtrace printer (its own allocations are not reported).
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

fn note_alloc() {
    COUNT.with(|c| c.set(c.get() + 1));
    let left = BACKTRACES.with(|b| b.get());
    if left > 0 && !IN_HOOK.with(|h| h.replace(true)) {
        BACKTRACES.with(|b| b.set(left - 1));
        eprintln!(
            "allocation:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        IN_HOOK.with(|h| h.set(false));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note_alloc();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note_alloc();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note_alloc();
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    COUNT.with(|c| c.get())
}

// ------------------------------------------------------------------ a TUN-like test port

/// One side of the flow as the test plays it.
#[derive(Default)]
struct Side {
    /// Datagrams the device transmits, in order; `released` of them may go. Past the end
    /// the script starts over at `cycle_from` (the data segments: conntrack tracks no
    /// sequence numbers, so repeating them is the same work).
    script: Vec<Vec<u8>>,
    cycle_from: usize,
    sent: usize,
    released: usize,
    /// Keep what the fabric delivers (the handshake), or only count it (the measurement).
    keep: bool,
    kept: Vec<Vec<u8>>,
    delivered: u64,
    delivered_bytes: u64,
}

/// A port that reads and writes like `TunPort`: a read copies the next released datagram
/// into a pooled buffer, a write gives the datagram's buffer back to the pool.
struct TestPort {
    name: String,
    side: Arc<Mutex<Side>>,
}

impl Port for TestPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&mut self, now: Duration, pkt: &[u8]) {
        let mut b = bufpool::take(pkt.len());
        b.extend_from_slice(pkt);
        self.send_owned(now, b);
    }
    fn send_owned(&mut self, _now: Duration, pkt: Vec<u8>) {
        let mut s = self.side.lock().unwrap();
        s.delivered += 1;
        s.delivered_bytes += pkt.len() as u64;
        if s.keep {
            s.kept.push(pkt);
        } else {
            bufpool::give(pkt);
        }
    }
    fn recv(&mut self, _now: Duration) -> Option<Vec<u8>> {
        let mut s = self.side.lock().unwrap();
        if s.sent >= s.released {
            return None;
        }
        let (len, from) = (s.script.len(), s.cycle_from);
        let i = if s.sent < len {
            s.sent
        } else {
            from + (s.sent - from) % (len - from)
        };
        s.sent += 1;
        let src = &s.script[i];
        let mut b = bufpool::take(src.len());
        b.extend_from_slice(src);
        Some(b)
    }
}

fn port(name: &str) -> (Box<dyn Port + Send>, Arc<Mutex<Side>>) {
    let side = Arc::new(Mutex::new(Side {
        keep: true,
        ..Side::default()
    }));
    let p = TestPort {
        name: name.to_string(),
        side: side.clone(),
    };
    (Box::new(p), side)
}

// ------------------------------------------------------------------ the world

const CLIENT: &str = "203.0.113.11";
const CLIENT6: &str = "2001:db8::11";
const POD: &str = "10.244.1.16";
const POD6: &str = "fd00:10:244:1::16";
const CLIENT_PORT: u16 = 40000;
const PAYLOAD: usize = 1400;
/// Data segments (and as many ACKs) in the measured window.
const N: usize = 10_000;

/// master + node1 (dual-stack), the external client `browser` (may reach both) and the pod
/// `web` on node1, both external ports of both families; `default/web` a dual-stack
/// NodePort Service (port 30080) with `policy`, its one endpoint the pod.
fn world(policy: TrafficPolicy) -> (World, Arc<Mutex<Side>>, Arc<Mutex<Side>>) {
    let mut nodes = common::master_and_node1();
    for (k, n) in nodes.iter_mut().enumerate() {
        n.ipv6 = Some(format!("fd00:10:151:30::{}", 11 + k).parse().unwrap());
        n.pod_cidr_v6 = Some(format!("fd00:10:244:{k}::/64").parse().unwrap());
    }
    let mut w = World::new(WorldSpec {
        nodes,
        node_network_v6: Some("fd00:10:151:30::/64".parse().unwrap()),
        router_ipv6: Some("fd00:10:151:30::1".parse().unwrap()),
        cluster_cidr_v6: Some("fd00:10:244::/56".parse().unwrap()),
        seed: 11,
        tracing: false,
        ..WorldSpec::default()
    })
    .unwrap();
    let v4 = common::web_service(ServiceType::NodePort, policy, None);
    let svc = Service {
        cluster_ips: vec![v4.cluster_ips[0], "fd00:10:96::20".parse().unwrap()],
        ip_families: vec![IpFamily::V4, IpFamily::V6],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        ..v4
    };
    let slices = [
        common::web_slice(&[(POD, "node1")]),
        common::web_slice(&[(POD6, "node1")]),
    ];
    w.set_services(&[svc], &slices);
    let (pod, pod_side) = port("node1/cni0/web");
    let ips = (ip(POD), Some(POD6.parse().unwrap()));
    w.add_pod_port_ips("web", ips, "node1", pod).unwrap();
    let (client, client_side) = port("browser");
    let attach = Attachment::External {
        can_reach: vec!["master".into(), "node1".into()],
    };
    let ips = (ip(CLIENT), Some(CLIENT6.parse().unwrap()));
    w.add_client_port_ips("browser", ips, &attach, client)
        .unwrap();
    (w, client_side, pod_side)
}

/// A TCP segment `src → dst` with `flags` ("S", "SA", "A", "PA") and `len` payload bytes.
fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: &str, len: usize) -> Vec<u8> {
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        (s, d) => PacketBuilder::ipv4(wire::v4(s).octets(), wire::v4(d).octets(), 64),
    };
    let mut b = ip.tcp(src.port(), dst.port(), seq, 64_000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('P') {
        b = b.psh();
    }
    let payload = vec![0x61u8; len];
    let mut out = Vec::with_capacity(b.size(len));
    b.write(&mut out, &payload).unwrap();
    out
}

/// Release the next datagram of `side` and drive the world once (wall-clock style).
fn release(w: &mut World, side: &Arc<Mutex<Side>>, now: &mut Duration) {
    side.lock().unwrap().released += 1;
    *now += Duration::from_micros(10);
    w.poll(*now);
}

/// `NPLAB_ALLOC_BACKTRACE=count[@round]`: print the backtraces of `count` allocations from
/// measured round `round` on (default: none).
fn backtrace_window() -> (u32, usize) {
    let Ok(v) = std::env::var("NPLAB_ALLOC_BACKTRACE") else {
        return (0, 0);
    };
    let (count, round) = v.split_once('@').unwrap_or((&v, "0"));
    (count.parse().unwrap_or(8), round.parse().unwrap_or(0))
}

/// An established flow through a world: the client's and the pod's sides and the clock.
struct Flow {
    w: World,
    client: Arc<Mutex<Side>>,
    pod: Arc<Mutex<Side>>,
    now: Duration,
}

impl Flow {
    /// One round: a data segment client → pod, then its ACK pod → client.
    fn round(&mut self) {
        release(&mut self.w, &self.client, &mut self.now);
        release(&mut self.w, &self.pod, &mut self.now);
    }

    /// Datagrams delivered to (the client, the pod) so far.
    fn delivered(&self) -> (u64, u64) {
        let c = self.client.lock().unwrap().delivered;
        (c, self.pod.lock().unwrap().delivered)
    }
}

/// Distinct data segments (and ACKs) the flow cycles through.
const CYCLE: usize = 64;

/// Establish one connection from the client to `node`:30080 (the handshake, checking the
/// NAT), script `CYCLE` data segments and ACKs, and warm up (the handshake's ACK and one
/// round: buffers, pool, queues).
fn established(policy: TrafficPolicy, node: &str) -> Flow {
    let (mut w, client, pod) = world(policy);
    let mut now = Duration::ZERO;
    let node: IpAddr = node.parse().unwrap();
    let client_ip: IpAddr = if node.is_ipv6() { CLIENT6 } else { CLIENT }
        .parse()
        .unwrap();
    let pod_ip: IpAddr = if node.is_ipv6() { POD6 } else { POD }.parse().unwrap();
    let c = SocketAddr::new(client_ip, CLIENT_PORT);
    let vip = SocketAddr::new(node, 30080);
    // Handshake: learn the pod-side tuple (DNAT to the pod; Cluster: masqueraded).
    let syn = tcp(c, vip, 1000, 0, "S", 0);
    client.lock().unwrap().script.push(syn);
    release(&mut w, &client, &mut now);
    let syn = pod.lock().unwrap().kept.pop();
    let t = summarize(&syn.expect("the SYN reaches the pod"))
        .unwrap()
        .tuple;
    let (peer, me) = (t.src_addr(), t.dst_addr());
    assert_eq!(me, SocketAddr::new(pod_ip, 80));
    match policy {
        // The master's address of the flow's family.
        TrafficPolicy::Cluster => assert!(
            [
                ip("10.151.30.11").into(),
                "fd00:10:151:30::11".parse().unwrap()
            ]
            .contains(&peer.ip()),
            "masqueraded to the master: {peer}"
        ),
        TrafficPolicy::Local => assert_eq!(peer, c, "client source kept"),
    }
    let synack = tcp(me, peer, 5000, 1001, "SA", 0);
    pod.lock().unwrap().script.push(synack);
    release(&mut w, &pod, &mut now);
    let synack = client.lock().unwrap().kept.pop();
    let s = summarize(&synack.expect("the SYN-ACK reaches the client")).unwrap();
    assert_eq!(s.tuple.src_addr(), vip);
    {
        let (mut cs, mut ps) = (client.lock().unwrap(), pod.lock().unwrap());
        let (mut cseq, pseq) = (1001u32, 5001u32);
        cs.script.push(tcp(c, vip, cseq, pseq, "A", 0));
        (cs.cycle_from, ps.cycle_from) = (cs.script.len(), ps.script.len());
        for _ in 0..CYCLE {
            cs.script.push(tcp(c, vip, cseq, pseq, "PA", PAYLOAD));
            cseq = cseq.wrapping_add(PAYLOAD as u32);
            ps.script.push(tcp(me, peer, pseq, cseq, "A", 0));
        }
        (cs.keep, ps.keep) = (false, false);
    }
    release(&mut w, &client, &mut now);
    let mut flow = Flow {
        w,
        client,
        pod,
        now,
    };
    flow.round();
    flow
}

/// Forwarded datagrams and allocations over the measured window.
struct Figures {
    forwarded: u64,
    allocations: u64,
}

/// Count the allocations while `N` data segments go to the pod and `N` ACKs come back.
fn measure(policy: TrafficPolicy, node: &str) -> Figures {
    let mut flow = established(policy, node);
    let (c0, p0) = flow.delivered();
    let (traces, from_round) = backtrace_window();
    let before = allocations();
    for round in 0..N {
        if round == from_round {
            BACKTRACES.with(|b| b.set(traces));
        }
        flow.round();
    }
    let allocations = allocations() - before;
    BACKTRACES.with(|b| b.set(0));
    let (c1, p1) = flow.delivered();
    let (to_client, to_pod) = (c1 - c0, p1 - p0);
    assert_eq!(to_pod, N as u64, "every data segment reaches the pod");
    assert_eq!(to_client, N as u64, "every ACK reaches the client");
    assert_eq!(flow.w.lost, 0);
    Figures {
        forwarded: to_pod + to_client,
        allocations,
    }
}

const CASES: [(&str, TrafficPolicy, &str); 4] = [
    (
        "Cluster via master (cross-node, SNAT)",
        TrafficPolicy::Cluster,
        "10.151.30.11",
    ),
    ("Local via node1", TrafficPolicy::Local, "10.151.30.12"),
    (
        "IPv6 Cluster via master (cross-node, SNAT)",
        TrafficPolicy::Cluster,
        "fd00:10:151:30::11",
    ),
    (
        "IPv6 Local via node1",
        TrafficPolicy::Local,
        "fd00:10:151:30::12",
    ),
];

/// One test (not one per policy): the counter is per thread, and the figures are printed
/// together.
#[test]
fn established_flow_forwards_without_allocating() {
    let mut failed = Vec::new();
    for (what, policy, node) in CASES {
        let f = measure(policy, node);
        let per = f.allocations as f64 / f.forwarded as f64;
        println!(
            "{what}: {} allocations over {} forwarded datagrams ({per:.3} per datagram)",
            f.allocations, f.forwarded
        );
        if f.allocations != 0 {
            failed.push(format!("{what}: {} allocations", f.allocations));
        }
    }
    assert!(
        failed.is_empty(),
        "allocations on the forwarding path: {failed:?}"
    );
}

/// The forwarding rate of the same flows (release build; not a pass/fail test):
/// `cargo test --release -p sim --test alloc_free -- --ignored --nocapture`
/// (`NPLAB_RATE_ROUNDS`, default 200 000 rounds = 400 000 datagrams per case). The counting
/// allocator stays in (one thread-local increment per allocation).
#[test]
#[ignore]
fn forwarding_rate() {
    let rounds: u32 = std::env::var("NPLAB_RATE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    for (what, policy, node) in CASES {
        let mut flow = established(policy, node);
        let (a0, (c0, p0)) = (allocations(), flow.delivered());
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            flow.round();
        }
        let el = t.elapsed();
        let (c1, p1) = flow.delivered();
        let n = (c1 - c0) + (p1 - p0);
        assert_eq!(n, 2 * u64::from(rounds));
        let ns = el.as_nanos() as f64 / n as f64;
        println!(
            "{what}: {n} datagrams in {:.3} s: {ns:.0} ns per datagram ({:.2} M datagrams/s), {:.3} allocations per datagram",
            el.as_secs_f64(),
            1e3 / ns,
            (allocations() - a0) as f64 / n as f64
        );
    }
}
