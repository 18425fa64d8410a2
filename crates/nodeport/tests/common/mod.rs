//! Test fixtures: the seed cluster of the architecture doc (master 10.151.30.11 with
//! cni0 10.244.0.1, workers node1/node2 with pod CIDRs 10.244.1.0/24, 10.244.2.0/24),
//! an nginx Service and packets built with etherparse's `PacketBuilder`.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::PacketBuilder;
use nodeport::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub const MASTER: Ipv4Addr = Ipv4Addr::new(10, 151, 30, 11);
pub const MASTER_CNI: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const NODE1: Ipv4Addr = Ipv4Addr::new(10, 151, 30, 12);
pub const BROWSER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
pub const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
pub const EXT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 60);
pub const NODE_PORT: u16 = 32761;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The master's kube-proxy, with `--random-fully` off (the what-if
/// `masqueradeRandomFully: false`): these tests follow translated ports by value.
pub fn master_config() -> ProxyConfig {
    let mut c = ProxyConfig::new(
        "master",
        vec![
            std::net::IpAddr::V4(MASTER),
            std::net::IpAddr::V4(MASTER_CNI),
        ],
    );
    c.cluster_cidrs = vec!["10.244.0.0/16".parse().unwrap()];
    c.masquerade_random_fully = false;
    c
}

pub fn pod(n: u8, idx: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, n, idx)
}

/// A pod endpoint on `node` (node index n: master = 0, node1 = 1, …).
pub fn ep(ip: Ipv4Addr, node: &str) -> Endpoint {
    Endpoint {
        ip: std::net::IpAddr::V4(ip),
        node_name: Some(node.into()),
        ready: true,
        serving: true,
        terminating: false,
    }
}

pub fn terminating(mut e: Endpoint) -> Endpoint {
    e.ready = false;
    e.serving = true;
    e.terminating = true;
    e
}

/// `default/nginx`, type NodePort, port 80 → 80, nodePort 32761.
pub fn nginx(etp: TrafficPolicy) -> Service {
    Service {
        cluster_ips: vec![CLUSTER_IP.into()],
        ports: vec![ServicePort::tcp(80, 80, Some(NODE_PORT))],
        external_traffic_policy: etp,
        ..Service::new("default", "nginx", ServiceType::NodePort)
    }
}

pub fn slice(svc: &Service, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        address_type: Default::default(),
        service: svc.service_ref(),
        ports: svc
            .ports
            .iter()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                protocol: p.protocol,
                port: p.target_port,
            })
            .collect(),
        endpoints,
    }
}

/// Three nginx pods on the workers (the seed cluster).
pub fn worker_pods() -> Vec<Endpoint> {
    vec![
        ep(pod(1, 16), "node1"),
        ep(pod(2, 7), "node2"),
        ep(pod(2, 9), "node2"),
    ]
}

pub fn proxier(svc: &Service, eps: Vec<Endpoint>) -> Proxier {
    proxier_with(master_config(), svc, eps)
}

pub fn proxier_with(config: ProxyConfig, svc: &Service, eps: Vec<Endpoint>) -> Proxier {
    let mut p = Proxier::new(config);
    let sl = slice(svc, eps);
    p.update(std::slice::from_ref(svc), &[sl]);
    p
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;

pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).tcp(sport, dport, 1000, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(1);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    let payload: &[u8] = if flags == ACK {
        b"GET / HTTP/1.1\r\n\r\n"
    } else {
        &[]
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

pub fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).icmpv4_echo_request(id, seq);
    let mut out = Vec::new();
    b.write(&mut out, b"ping").unwrap();
    out
}

pub fn echo_reply(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).icmpv4_echo_reply(id, seq);
    let mut out = Vec::new();
    b.write(&mut out, b"ping").unwrap();
    out
}

/// (src, sport, dst, dport) of a packet.
pub fn addrs(pkt: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let p = nodeport::packet::parse(pkt).unwrap();
    (
        wire::v4(p.tuple.src),
        p.tuple.sport,
        wire::v4(p.tuple.dst),
        p.tuple.dport,
    )
}

/// Assert every checksum of a TCP/UDP packet is what a full recompute gives.
pub fn assert_checksums(pkt: &[u8]) {
    if let Err(which) = nodeport::packet::checksum::verify(pkt) {
        panic!("{which} differs from a full recompute");
    }
}

/// Run a packet arriving on eth0 through prerouting → postrouting (egress = the address the
/// caller's routing would pick, `None` for local delivery). Returns (prerouting, postrouting).
pub fn forward(
    p: &mut Proxier,
    now: Duration,
    pkt: &mut [u8],
    egress: Option<Ipv4Addr>,
    rng: &mut ChaCha8Rng,
) -> (Prerouting, Option<Postrouting>) {
    forward_ip(p, now, pkt, egress.map(std::net::IpAddr::V4), rng)
}

/// [`forward`] with an egress address of either family (the packet's, for MASQUERADE).
pub fn forward_ip(
    p: &mut Proxier,
    now: Duration,
    pkt: &mut [u8],
    egress: Option<std::net::IpAddr>,
    rng: &mut ChaCha8Rng,
) -> (Prerouting, Option<Postrouting>) {
    let mut pre = p.prerouting(now, pkt, rng);
    let post = match std::mem::replace(&mut pre.verdict, Verdict::Drop(DropReason::ConntrackFull)) {
        Verdict::Accept(pending) => {
            let post = p.postrouting(now, pkt, pending.clone(), egress, rng);
            pre.verdict = Verdict::Accept(pending);
            Some(post)
        }
        v => {
            pre.verdict = v;
            None
        }
    };
    (pre, post)
}

pub fn masq(pre: &Prerouting) -> bool {
    match &pre.verdict {
        Verdict::Accept(p) => p.masquerade,
        v => panic!("not accepted: {v:?}"),
    }
}

/// An IPv4 SCTP packet with one chunk of type `chunk` (4-byte body), CRC32c filled in.
pub fn sctp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, chunk: u8) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&[
        0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, chunk, 0, 0, 8, 1, 2, 3, 4,
    ]);
    let crc = nodeport::packet::checksum::sctp_crc32c(&l4);
    l4[8..12].copy_from_slice(&crc.to_le_bytes());
    let mut ip = etherparse::Ipv4Header::new(
        l4.len() as u16,
        64,
        etherparse::IpNumber(132),
        src.octets(),
        dst.octets(),
    )
    .unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&l4);
    out
}
