//! The node's routing, hook order and masquerade address choice.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use etherparse::{IcmpEchoHeader, Icmpv4Type, PacketBuilder};
use nodeport::{
    Endpoint, EndpointPort, EndpointSlice, Protocol, ProxyConfig, Service, ServicePort, ServiceRef,
    ServiceType, TrafficPolicy,
};
use nodestack::{Iface, Node, NodeSpec, Stage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vswitch::packet::{summarize, tcp_packet};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn a(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}
fn sa(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn node1() -> Node {
    node1_with(|_| {})
}

fn node1_with(tune: impl FnOnce(&mut ProxyConfig)) -> Node {
    let mut proxy = ProxyConfig::new("ydzs-node1", vec![]);
    proxy.cluster_cidrs = vec!["10.244.0.0/16".parse().unwrap()];
    tune(&mut proxy);
    let mut n = Node::new(
        NodeSpec {
            name: "ydzs-node1".into(),
            ip: ip("10.151.30.12"),
            prefix_len: 24,
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            gateway: Some(ip("10.151.30.1")),
            proxy,
            v6: None,
        },
        Duration::ZERO,
        1,
    );
    n.add_route("10.244.0.0/24".parse().unwrap(), ip("10.151.30.11"));
    n.add_route("10.244.2.0/24".parse().unwrap(), ip("10.151.30.13"));
    n
}

/// The browser's SYN to node1's NodePort 32761.
fn browser_syn() -> Vec<u8> {
    tcp_packet(
        sa("203.0.113.11:40000"),
        sa("10.151.30.12:32761"),
        63,
        "S",
        b"",
    )
}

fn nodeport_service(etp: TrafficPolicy) -> (Service, EndpointSlice) {
    let svc = Service {
        cluster_ips: vec![ip("10.96.0.10").into()],
        ports: vec![ServicePort::tcp(80, 80, Some(32761))],
        external_traffic_policy: etp,
        ..Service::new("default", "nginx", ServiceType::NodePort)
    };
    let ep = |a: &str, n: &str| Endpoint {
        ip: std::net::IpAddr::V4(ip(a)),
        node_name: Some(n.into()),
        ready: true,
        serving: true,
        terminating: false,
    };
    let slice = EndpointSlice {
        address_type: Default::default(),
        service: ServiceRef::new("default", "nginx"),
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints: vec![
            ep("10.244.1.16", "ydzs-node1"),
            ep("10.244.2.11", "ydzs-node2"),
        ],
    };
    (svc, slice)
}

#[test]
fn longest_prefix_routing_and_egress_addresses() {
    let n = node1();
    let r = n.route(ip("10.244.2.9")).unwrap();
    assert_eq!(
        (r.iface, r.next_hop, r.src),
        (Iface::Eth0, a("10.151.30.13"), a("10.151.30.12"))
    );
    let r = n.route(ip("10.244.1.5")).unwrap();
    assert_eq!(
        (r.iface, r.next_hop, r.src),
        (Iface::Cni0, a("10.244.1.5"), a("10.244.1.1"))
    );
    let r = n.route(ip("10.151.30.14")).unwrap();
    assert_eq!((r.iface, r.next_hop), (Iface::Eth0, a("10.151.30.14")));
    let r = n.route(ip("203.0.113.11")).unwrap();
    assert_eq!((r.iface, r.next_hop), (Iface::Eth0, a("10.151.30.1")));
    assert_eq!(n.cni0(), ip("10.244.1.1"));
    assert!(n.is_local(ip("10.244.1.1")) && n.is_local(ip("10.151.30.12")));
    let shown: Vec<String> = n.routes().iter().map(|r| r.to_string()).collect();
    assert!(
        shown.contains(&"default via 10.151.30.1 dev eth0".to_string()),
        "{shown:?}"
    );
    assert!(shown.contains(&"10.244.2.0/24 via 10.151.30.13 dev eth0".to_string()));
}

#[test]
fn masquerade_uses_the_egress_interface_address() {
    let mut n = node1();
    let (svc, slice) = nodeport_service(TrafficPolicy::Cluster);
    n.set_services(&[svc], &[slice]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (mut local, mut remote) = (0, 0);
    for port in 40000..40100u16 {
        let syn = tcp_packet(
            SocketAddrV4::new(ip("203.0.113.11"), port),
            sa("10.151.30.12:32761"),
            63,
            "S",
            b"",
        );
        let out = n.receive(Duration::ZERO, Iface::Eth0, &syn, &mut rng);
        assert_eq!(out.len(), 1);
        let s = summarize(&out[0].pkt).unwrap();
        match s.tuple.dst {
            d if d == ip("10.244.1.16") => {
                local += 1;
                assert_eq!(out[0].iface, Iface::Cni0);
                assert_eq!(s.tuple.src, ip("10.244.1.1"), "local pod sees cni0");
            }
            d if d == ip("10.244.2.11") => {
                remote += 1;
                assert_eq!(out[0].iface, Iface::Eth0);
                assert_eq!(out[0].next_hop, ip("10.151.30.13"));
                assert_eq!(
                    s.tuple.src,
                    ip("10.151.30.12"),
                    "remote pod sees the node IP"
                );
            }
            d => panic!("unexpected destination {d}"),
        }
        assert_eq!(s.ttl, 62);
    }
    assert!(local > 20 && remote > 20, "{local}/{remote}");
    let ev = n.drain_events();
    assert!(ev.iter().any(|e| e.stage == Stage::Prerouting
        && e.ct_state == Some("NEW")
        && !e.walk.steps.is_empty()));
    assert!(ev
        .iter()
        .any(|e| e.stage == Stage::Forward && !e.rewrites.is_empty()));
}

#[test]
fn local_policy_without_local_endpoint_drops() {
    let mut n = node1();
    let (svc, mut slice) = nodeport_service(TrafficPolicy::Local);
    slice
        .endpoints
        .retain(|e| e.node_name.as_deref() == Some("ydzs-node2"));
    n.set_services(&[svc], &[slice]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let syn = browser_syn();
    assert!(n
        .receive(Duration::ZERO, Iface::Eth0, &syn, &mut rng)
        .is_empty());
    assert_eq!(n.counters.engine_drops, 1);
    let ev = n.drain_events();
    assert_eq!(ev.last().unwrap().stage, Stage::Drop);
}

#[test]
fn ttl_expiry_sends_time_exceeded_from_the_ingress_address() {
    let mut n = node1();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let p = tcp_packet(sa("10.151.30.11:40000"), sa("10.244.1.16:80"), 1, "S", b"");
    let out = n.receive(Duration::ZERO, Iface::Eth0, &p, &mut rng);
    assert_eq!(out.len(), 1);
    let s = summarize(&out[0].pkt).unwrap();
    assert_eq!(s.icmp, Some((11, 0)));
    assert_eq!(s.tuple.src, ip("10.151.30.12"));
    assert_eq!(s.tuple.dst, ip("10.151.30.11"));
    assert_eq!(out[0].iface, Iface::Eth0);
    assert_eq!(n.counters.ttl_exceeded, 1);
}

#[test]
fn the_node_answers_ping_on_both_addresses() {
    let mut n = node1();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (dst, from, iface) in [
        ("10.151.30.12", "10.151.30.11", Iface::Eth0),
        ("10.244.1.1", "10.244.1.16", Iface::Cni0),
    ] {
        let b = PacketBuilder::ipv4(ip(from).octets(), ip(dst).octets(), 64)
            .icmpv4(Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 }));
        let mut p = Vec::new();
        b.write(&mut p, b"ping").unwrap();
        let out = n.receive(Duration::ZERO, iface, &p, &mut rng);
        assert_eq!(out.len(), 1, "reply to {from}");
        let s = summarize(&out[0].pkt).unwrap();
        assert_eq!(s.icmp, Some((0, 0)));
        assert_eq!(
            (s.tuple.src, s.tuple.dst),
            (ip(dst).into(), ip(from).into())
        );
        assert_eq!(out[0].iface, iface);
    }
}

#[test]
fn malformed_datagrams_are_counted() {
    let mut n = node1();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    assert!(n
        .receive(Duration::ZERO, Iface::Eth0, &[0x45, 0, 1], &mut rng)
        .is_empty());
    assert!(n
        .receive(Duration::ZERO, Iface::Cni0, &[], &mut rng)
        .is_empty());
    assert_eq!(n.counters.malformed, 2);
}

/// KUBE-FORWARD's `--ctstate INVALID -j DROP`: a SYN-ACK with no conntrack entry (the reply of
/// a flow another node DNATed, pod-to-nodeport) is dropped in FORWARD, and traced; with
/// `nf_conntrack_tcp_be_liberal` kube-proxy omits the rule and it is forwarded.
#[test]
fn forward_drops_conntrack_invalid_unless_tcp_be_liberal() {
    let synack = tcp_packet(sa("10.244.2.11:80"), sa("10.244.1.5:40000"), 63, "SA", b"");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut n = node1();
    let out = n.receive(Duration::ZERO, Iface::Eth0, &synack, &mut rng);
    assert!(out.is_empty(), "INVALID SYN-ACK forwarded");
    let ev = n.drain_events();
    let drop = ev
        .iter()
        .find(|e| e.stage == Stage::Drop)
        .expect("a drop event");
    assert_eq!(drop.ct_state, Some("INVALID"));
    assert!(drop.walk.has_chain("KUBE-FORWARD") && drop.walk.has_target("DROP"));
    assert!(drop.verdict.contains("INVALID"), "{}", drop.verdict);

    let mut n = node1_with(|c| c.conntrack_tcp_be_liberal = true);
    let out = n.receive(Duration::ZERO, Iface::Eth0, &synack, &mut rng);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].iface, Iface::Cni0);
}

/// REJECT of a datagram to a ClusterIP (not a local address): the ICMP error comes from the
/// address of the route back to the sender, cni0's for a local pod (`__icmp_send`, saddr 0);
/// to the node's own NodePort it comes from the address the SYN was sent to.
#[test]
fn reject_source_is_the_route_back_for_a_cluster_ip() {
    let mut n = node1();
    let (svc, mut slice) = nodeport_service(TrafficPolicy::Cluster);
    slice.endpoints.clear();
    n.set_services(&[svc], &[slice]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let syn = tcp_packet(sa("10.244.1.5:40000"), sa("10.96.0.10:80"), 64, "S", b"");
    let out = n.bridge(Duration::ZERO, &syn, &mut rng);
    assert_eq!(out.len(), 1);
    let s = summarize(&out[0].pkt).unwrap();
    assert_eq!(
        (s.tuple.src, s.tuple.dst),
        (ip("10.244.1.1").into(), ip("10.244.1.5").into())
    );
    let syn = browser_syn();
    let out = n.receive(Duration::ZERO, Iface::Eth0, &syn, &mut rng);
    let s = summarize(&out[0].pkt).unwrap();
    assert_eq!(s.tuple.src, ip("10.151.30.12"));
}

/// A dual-stack node: `ip -6 route` next to `ip route` (node network /64 on eth0, the pod /64
/// on cni0 with cni0 at its first host, other nodes' pod /64s via their IPv6 addresses,
/// default via the router), egress addresses per family, and the IPv6 addresses among the
/// node's own and kube-proxy's node addresses.
/// ydzs-node1, dual-stack: fd00:151:30::12 on eth0, fd00:10:244:1::/64 on cni0, node2's pod
/// /64 via fd00:151:30::13.
fn dual_node() -> Node {
    let v6 = nodestack::NodeV6 {
        ip: "fd00:151:30::12".parse().unwrap(),
        prefix_len: 64,
        pod_cidr: "fd00:10:244:1::/64".parse().unwrap(),
        gateway: Some("fd00:151:30::1".parse().unwrap()),
    };
    let mut n = Node::new(
        NodeSpec {
            name: "ydzs-node1".into(),
            ip: ip("10.151.30.12"),
            prefix_len: 24,
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            gateway: Some(ip("10.151.30.1")),
            proxy: ProxyConfig::new("ydzs-node1", vec![]),
            v6: Some(v6),
        },
        Duration::ZERO,
        1,
    );
    n.add_route_v6(
        "fd00:10:244:2::/64".parse().unwrap(),
        "fd00:151:30::13".parse().unwrap(),
    );
    n
}

#[test]
fn dual_stack_routes_and_addresses() {
    let n = dual_node();
    assert_eq!(n.cni0_v6(), Some("fd00:10:244:1::1".parse().unwrap()));
    assert!(n.is_local(a("fd00:10:244:1::1")) && n.is_local(a("fd00:151:30::12")));
    assert!(!n.is_local(a("fd00:10:244:1::2")));
    // (destination, egress, next hop, MASQUERADE address); IPv4 unchanged by the IPv6 side.
    for (dst, iface, next_hop, src) in [
        (
            "fd00:10:244:2::9",
            Iface::Eth0,
            "fd00:151:30::13",
            "fd00:151:30::12",
        ),
        (
            "fd00:10:244:1::5",
            Iface::Cni0,
            "fd00:10:244:1::5",
            "fd00:10:244:1::1",
        ),
        (
            "2001:db8::11",
            Iface::Eth0,
            "fd00:151:30::1",
            "fd00:151:30::12",
        ),
        ("203.0.113.11", Iface::Eth0, "10.151.30.1", "10.151.30.12"),
    ] {
        let r = n.route(a(dst)).unwrap();
        assert_eq!(
            (r.iface, r.next_hop, r.src),
            (iface, a(next_hop), a(src)),
            "{dst}"
        );
    }
    let shown: Vec<String> = n.routes().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        [
            "10.151.30.0/24 dev eth0",
            "10.244.1.0/24 dev cni0",
            "default via 10.151.30.1 dev eth0",
            "fd00:151:30::/64 dev eth0",
            "fd00:10:244:1::/64 dev cni0",
            "default via fd00:151:30::1 dev eth0",
            "fd00:10:244:2::/64 via fd00:151:30::13 dev eth0",
        ]
    );
    let addrs = &n.proxier().config().node_addresses;
    assert!(addrs.contains(&a("fd00:151:30::12")) && addrs.contains(&a("fd00:10:244:1::1")));
}

/// A forwarded IPv6 datagram with hop limit 1: ICMPv6 time exceeded from the ingress
/// interface's IPv6 address; a routed one leaves with the hop limit decremented.
#[test]
fn ipv6_hop_limit_and_time_exceeded() {
    let mut n = dual_node();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let s6 = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
    let fwd = tcp_packet(
        s6("[2001:db8::11]:1"),
        s6("[fd00:10:244:1::16]:80"),
        2,
        "S",
        b"",
    );
    let out = n.receive(Duration::ZERO, Iface::Eth0, &fwd, &mut rng);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].iface, out[0].next_hop),
        (Iface::Cni0, a("fd00:10:244:1::16"))
    );
    assert_eq!(summarize(&out[0].pkt).unwrap().ttl, 1);
    let last = tcp_packet(
        s6("[2001:db8::11]:2"),
        s6("[fd00:10:244:1::16]:80"),
        1,
        "S",
        b"",
    );
    let out = n.receive(Duration::ZERO, Iface::Eth0, &last, &mut rng);
    assert_eq!(out.len(), 1);
    let s = summarize(&out[0].pkt).unwrap();
    assert_eq!(s.icmp, Some((3, 0)));
    assert_eq!(s.tuple.src, a("fd00:151:30::12"));
    assert_eq!(s.tuple.dst, a("2001:db8::11"));
    assert_eq!(
        (out[0].iface, out[0].next_hop),
        (Iface::Eth0, a("fd00:151:30::1"))
    );
    assert_eq!(n.counters.ttl_exceeded, 1);
}

/// The node's own stack answers ICMPv6 echo on its IPv6 addresses (eth0 and cni0).
#[test]
fn the_node_answers_ping6_on_both_addresses() {
    let mut n = dual_node();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (dst, from, iface) in [
        ("fd00:151:30::12", "fd00:151:30::11", Iface::Eth0),
        ("fd00:10:244:1::1", "fd00:10:244:1::16", Iface::Cni0),
    ] {
        let (d, f): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            (dst.parse().unwrap(), from.parse().unwrap());
        let b = PacketBuilder::ipv6(f.octets(), d.octets(), 64).icmpv6(
            etherparse::Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 7, seq: 1 }),
        );
        let mut p = Vec::new();
        b.write(&mut p, b"ping").unwrap();
        let out = n.receive(Duration::ZERO, iface, &p, &mut rng);
        assert_eq!(out.len(), 1, "reply to {from}");
        let s = summarize(&out[0].pkt).unwrap();
        assert_eq!(s.icmp, Some((129, 0)));
        assert_eq!((s.tuple.src, s.tuple.dst), (a(dst), a(from)));
        assert_eq!(out[0].iface, iface);
    }
}

/// Without tracing, a TCP datagram is parsed once per hop (the engine's parse stands for the
/// trace summary's malformed check). Whatever the datagram, a node decides exactly as with
/// tracing on: same datagrams out (interface, next hop, bytes) and same counters, for
/// well-formed flows both ways and for datagrams one parser or both reject.
#[test]
fn untraced_node_decides_like_a_traced_one() {
    let flow = |src: &str, dst: &str, flags: &str, payload: &[u8]| {
        tcp_packet(sa(src), sa(dst), 63, flags, payload)
    };
    let syn = browser_syn();
    let data = flow("203.0.113.11:40000", "10.151.30.12:32761", "PA", b"GET /");
    let reply = flow("10.244.1.16:80", "203.0.113.11:40000", "SA", b"");
    let mut bad_offset = data.clone();
    bad_offset[32] = 0x40; // TCP data offset 4 (< 5 words)
    let mut short_tcp = data.clone();
    short_tcp[2..4].copy_from_slice(&30u16.to_be_bytes()); // IPv4 total length: 10 bytes of TCP
    let mut fragment = data.clone();
    fragment[6] = 0x20; // more fragments
    let mut udp = Vec::new();
    PacketBuilder::ipv4(ip("203.0.113.11").octets(), ip("10.151.30.12").octets(), 63)
        .udp(40000, 32761)
        .write(&mut udp, b"hello")
        .unwrap();
    let mut udp_bad_len = udp.clone();
    udp_bad_len[24..26].copy_from_slice(&4u16.to_be_bytes()); // UDP length below its header
    let mut options = Vec::new();
    let mut h = etherparse::Ipv4Header::new(
        20,
        63,
        etherparse::IpNumber::TCP,
        ip("203.0.113.11").octets(),
        ip("10.151.30.12").octets(),
    )
    .unwrap();
    h.options = [1u8, 1, 1, 0][..].try_into().unwrap(); // NOP NOP NOP EOL
    h.total_len = (h.header_len() + 20) as u16;
    h.header_checksum = h.calc_header_checksum();
    h.write(&mut options).unwrap();
    options.extend_from_slice(&data[20..40]);
    let datagrams: Vec<(Iface, Vec<u8>)> = vec![
        (Iface::Eth0, syn),
        (Iface::Cni0, reply),
        (Iface::Eth0, data),
        (Iface::Eth0, bad_offset),
        (Iface::Eth0, short_tcp),
        (Iface::Eth0, fragment),
        (Iface::Eth0, udp),
        (Iface::Eth0, udp_bad_len),
        (Iface::Eth0, options),
        (Iface::Eth0, vec![0x45, 0, 1]),
    ];
    let (svc, slice) = nodeport_service(TrafficPolicy::Local);
    let mut traced = node1();
    let mut untraced = node1();
    untraced.tracing = false;
    let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(7), ChaCha8Rng::seed_from_u64(7));
    for n in [&mut traced, &mut untraced] {
        n.set_services(std::slice::from_ref(&svc), std::slice::from_ref(&slice));
    }
    for (i, (iface, pkt)) in datagrams.iter().enumerate() {
        let t = Duration::from_millis(i as u64);
        let a = traced.receive(t, *iface, pkt, &mut r1);
        let b = untraced.receive(t, *iface, pkt, &mut r2);
        let key = |o: &[nodestack::Egress]| -> Vec<_> {
            o.iter()
                .map(|e| (e.iface, e.next_hop, e.pkt.clone()))
                .collect()
        };
        assert_eq!(key(&a), key(&b), "datagram {i}");
        assert_eq!(traced.counters, untraced.counters, "after datagram {i}");
    }
    let c = &untraced.counters;
    // Forwarded: the SYN, the reply, the data and the data with IP options; malformed: bad
    // data offset, short TCP, bad UDP length, garbage; the engine drops the fragment.
    let got = (c.forwarded, c.malformed, c.engine_drops);
    assert_eq!(got, (4, 4, 1), "{c:?}");
    assert!(untraced.drain_events().is_empty());
}
