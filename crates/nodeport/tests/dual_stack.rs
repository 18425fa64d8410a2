//! The blog's experiment over IPv6 on a dual-stack seed cluster, and the rest of the engine
//! for IPv6 flows: the §3.6 decision table per family, REJECT's ICMPv6, conntrack and its
//! translations (replies, ICMPv6 errors, echo), health checks and the ip6tables text.
//!
//! The master (pod-less) has 10.151.30.11 and 2001:db8:151:30::11, cni0 10.244.0.1 and
//! fd00:10:244::1; pods live in 10.244.0.0/16 and fd00:10:244::/56 (a /64 per node); the
//! dual-stack nginx Service has ClusterIPs 10.96.0.10 and fd00:10:96::a (the default IPv6
//! service range fd00:10:96::/112), NodePort 32761; the browser is 203.0.113.11 and
//! 2001:db8:203::11.

mod common;

use std::net::{IpAddr, Ipv6Addr};

use common::*;
use etherparse::PacketBuilder;
use nodeport::*;
use rand_chacha::ChaCha8Rng;

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const MASTER6: &str = "2001:db8:151:30::11";
const MASTER_CNI6: &str = "fd00:10:244::1";
const BROWSER6: &str = "2001:db8:203::11";
const CLUSTER_IP6: &str = "fd00:10:96::a";

fn pod6(n: u8, idx: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0xfd00,
        0x10,
        0x244,
        u16::from(n),
        0,
        0,
        0,
        u16::from(idx),
    ))
}

/// The master's kube-proxy on a dual-stack node (both cluster CIDRs).
fn config() -> ProxyConfig {
    let mut c = master_config();
    c.node_addresses.extend([a(MASTER6), a(MASTER_CNI6)]);
    c.cluster_cidrs.push("fd00:10:244::/56".parse().unwrap());
    c
}

/// `default/nginx`, PreferDualStack (IPv4 primary), with `etp`.
fn nginx_ds(etp: TrafficPolicy) -> Service {
    let mut s = nginx(etp);
    s.cluster_ips.push(a(CLUSTER_IP6));
    s.ip_families = vec![IpFamily::V4, IpFamily::V6];
    s.ip_family_policy = IpFamilyPolicy::PreferDualStack;
    s
}

/// The seed cluster's three worker pods in both families: one IPv4 and one IPv6
/// EndpointSlice, as the EndpointSlice controller writes them for a dual-stack Service.
fn slices(svc: &Service) -> Vec<EndpointSlice> {
    let v6: Vec<Endpoint> = [(1, 16, "node1"), (2, 7, "node2"), (2, 9, "node2")]
        .iter()
        .map(|&(n, i, node)| Endpoint {
            ip: pod6(n, i),
            ..ep(pod(n, i), node)
        })
        .collect();
    vec![
        slice(svc, worker_pods()),
        EndpointSlice {
            address_type: IpFamily::V6,
            ..slice(svc, v6)
        },
    ]
}

fn proxier_ds(svc: &Service, slices: &[EndpointSlice]) -> Proxier {
    let mut p = Proxier::new(config());
    p.update(std::slice::from_ref(svc), slices);
    p
}

fn tcp6(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (a(src), a(dst)) else {
        panic!("not IPv6")
    };
    let mut b = PacketBuilder::ipv6(s.octets(), d.octets(), 64).tcp(sport, dport, 1000, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(1);
    }
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

/// prerouting → postrouting with `egress` (the egress interface's address of the packet's
/// family), as the node runs them.
fn through(
    p: &mut Proxier,
    pkt: &mut [u8],
    egress: Option<IpAddr>,
    rng: &mut ChaCha8Rng,
) -> (Prerouting, Option<Postrouting>) {
    forward_ip(p, secs(0), pkt, egress, rng)
}

fn tuple(pkt: &[u8]) -> Tuple {
    packet::parse(pkt).unwrap().tuple
}

/// The blog's request over IPv6 to the pod-less master under Cluster: DNAT to an IPv6
/// worker pod, MASQUERADE to the master's IPv6 address (what nginx logs); the reply is
/// translated back to the browser. The same request over IPv4 gives the IPv4 answer.
#[test]
fn blog_over_ipv6_cluster_masquerades_to_the_masters_ipv6_address() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let sl = slices(&svc);
    let v6_pods: Vec<IpAddr> = sl[1].endpoints.iter().map(|e| e.ip).collect();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let mut p = proxier_ds(&svc, &sl);
        let mut rng = rng(seed);
        let mut pkt = tcp6(BROWSER6, 40312, MASTER6, NODE_PORT, SYN);
        let (pre, post) = through(&mut p, &mut pkt, Some(a(MASTER6)), &mut rng);
        assert!(masq(&pre), "ETP Cluster marks for masquerade");
        assert_eq!(post.unwrap().dropped, None);
        let t = tuple(&pkt);
        assert!(v6_pods.contains(&t.dst), "an IPv6 endpoint: {}", t.dst);
        assert_eq!((t.src, t.dport), (a(MASTER6), 80), "nginx logs the master");
        assert_checksums(&pkt);
        assert!(pre.walk.has_target("KUBE-MARK-MASQ"));
        seen.insert(t.dst);
        // The pod's SYN-ACK comes back and is un-NATed to the browser.
        let mut reply = tcp6(&t.dst.to_string(), 80, MASTER6, t.sport, SYN | ACK);
        let pre = p.prerouting(secs(0), &mut reply, &mut rng);
        assert_eq!(pre.ct_state, "REPLY");
        let r = tuple(&reply);
        assert_eq!(
            (r.src, r.sport, r.dst, r.dport),
            (a(MASTER6), NODE_PORT, a(BROWSER6), 40312)
        );
        assert_checksums(&reply);
        let line = p.conntrack().entries().next().unwrap().format(secs(0));
        assert!(
            line.contains(&format!("src={BROWSER6} dst={MASTER6}")),
            "{line}"
        );
    }
    assert_eq!(seen.len(), 3, "uniform over the three IPv6 pods");
    // IPv4 unchanged: the same Service answers the IPv4 request as before.
    let mut p = proxier_ds(&svc, &sl);
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(&mut p, secs(0), &mut pkt, Some(MASTER), &mut rng(2));
    assert!(masq(&pre));
    let (src, _, dst, _) = addrs(&pkt);
    assert_eq!(src, MASTER);
    assert!(worker_pods().iter().any(|e| e.ip == dst));
}

/// Under Local the pod-less master drops the IPv6 request ("has no local endpoints"), and
/// a worker with IPv6 pods keeps the browser's IPv6 address.
#[test]
fn blog_over_ipv6_local_drops_on_the_podless_master() {
    let svc = nginx_ds(TrafficPolicy::Local);
    let sl = slices(&svc);
    let mut p = proxier_ds(&svc, &sl);
    let mut pkt = tcp6(BROWSER6, 40312, MASTER6, NODE_PORT, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(1));
    assert!(
        matches!(
            pre.verdict,
            Verdict::Drop(DropReason::NoLocalEndpoints { .. })
        ),
        "{:?}",
        pre.verdict
    );
    assert!(pre.walk.has_chain("KUBE-EXTERNAL-SERVICES"));
    // node2, with two IPv6 pods: DNAT to one of them, no masquerade.
    let mut c = config();
    c.node_name = "node2".into();
    c.node_addresses = vec![a("2001:db8:151:30::13")];
    let mut p = Proxier::new(c);
    p.update(std::slice::from_ref(&svc), &sl);
    let mut pkt = tcp6(BROWSER6, 40312, "2001:db8:151:30::13", NODE_PORT, SYN);
    let (pre, _) = through(&mut p, &mut pkt, Some(a("fd00:10:244:2::1")), &mut rng(1));
    assert!(!masq(&pre));
    let t = tuple(&pkt);
    assert_eq!(t.src, a(BROWSER6), "nginx logs the browser");
    assert!([pod6(2, 7), pod6(2, 9)].contains(&t.dst));
}

/// Detect-local per family: an IPv6 pod to the IPv6 ClusterIP is not masqueraded, a
/// non-pod IPv6 source is; each family's flow only ever reaches its family's endpoints.
#[test]
fn cluster_ip_per_family() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let sl = slices(&svc);
    for (src, want_masq) in [(pod6(0, 5), false), (a(MASTER6), true)] {
        let mut p = proxier_ds(&svc, &sl);
        let mut pkt = tcp6(&src.to_string(), 5000, CLUSTER_IP6, 80, SYN);
        let pre = if src == a(MASTER6) {
            p.output(secs(0), &mut pkt, &mut rng(4))
        } else {
            p.prerouting(secs(0), &mut pkt, &mut rng(4))
        };
        assert_eq!(masq(&pre), want_masq, "{src}");
        assert!(tuple(&pkt).dst.is_ipv6());
    }
    // A single-stack IPv4 Service has no IPv6 frontend: an IPv6 flow to its NodePort is
    // not a Service flow at all.
    let v4only = nginx(TrafficPolicy::Cluster);
    let mut p = proxier_ds(&v4only, &slices(&v4only));
    let mut pkt = tcp6(BROWSER6, 40312, MASTER6, NODE_PORT, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(1));
    assert!(pre.walk.steps.is_empty());
    assert_eq!(tuple(&pkt).dst, a(MASTER6));
}

/// MASQUERADE needs an address of the packet's family on the egress interface.
#[test]
fn masquerade_with_an_address_of_the_other_family_drops() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let mut p = proxier_ds(&svc, &slices(&svc));
    let mut pkt = tcp6(BROWSER6, 40312, MASTER6, NODE_PORT, SYN);
    let (_, post) = through(&mut p, &mut pkt, Some(MASTER.into()), &mut rng(1));
    assert_eq!(post.unwrap().dropped, Some(DropReason::NoMasqueradeAddress));
    assert!(p.conntrack().is_empty());
}

/// No endpoints: REJECT answers an IPv6 client with ICMPv6 port unreachable (type 1 code
/// 4), from the NodePort address it was sent to, quoting the whole SYN; to a ClusterIP
/// the source is `::` for the route back to choose.
#[test]
fn reject_over_ipv6_is_icmpv6_port_unreachable() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let mut p = proxier_ds(&svc, &[]);
    let orig = tcp6(BROWSER6, 40312, MASTER6, NODE_PORT, SYN);
    let mut pkt = orig.clone();
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(1));
    let Verdict::Reject { icmp } = pre.verdict else {
        panic!("expected REJECT, got {:?}", pre.verdict)
    };
    assert_eq!((icmp[6], icmp[40], icmp[41]), (58, 1, 4));
    assert_eq!(packet::checksum::verify(&icmp), Ok(()));
    let t = tuple(&icmp);
    assert_eq!((t.src, t.dst), (a(MASTER6), a(BROWSER6)));
    assert_eq!(&icmp[48..], &orig[..]);
    let step = &pre.walk.steps[0];
    assert_eq!(step.target, "REJECT --reject-with icmp6-port-unreachable");
    assert!(step.rule.contains("has no endpoints"));
    // To the IPv6 ClusterIP from a pod: source ::, fixed by the caller's route.
    let mut pkt = tcp6(&pod6(0, 5).to_string(), 5000, CLUSTER_IP6, 80, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(1));
    let Verdict::Reject { mut icmp } = pre.verdict else {
        panic!("expected REJECT")
    };
    assert_eq!(tuple(&icmp).src, a("::"));
    assert!(pre.walk.steps[0]
        .rule
        .contains(&format!("-d {CLUSTER_IP6}/128")));
    packet::nat::set_source(&mut icmp, a(MASTER_CNI6));
    assert_eq!(packet::checksum::verify(&icmp), Ok(()));
    assert_eq!(tuple(&icmp).src, a(MASTER_CNI6));
}

/// An ICMPv6 Packet Too Big from the pod about a DNATed and masqueraded IPv6 flow is
/// RELATED and translated back to what the browser sent (outer and quoted tuples).
#[test]
fn icmpv6_packet_too_big_about_a_nated_flow_is_translated() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let mut p = proxier_ds(&svc, &slices(&svc));
    let mut rng = rng(3);
    let orig = tcp6(BROWSER6, 40312, MASTER6, NODE_PORT, SYN);
    let mut pkt = orig.clone();
    through(&mut p, &mut pkt, Some(a(MASTER6)), &mut rng);
    let out = tuple(&pkt);
    // The pod's reply direction: it tells the master (the masqueraded source) the
    // segment was too big.
    let mut err = packet::icmp::packet_too_big(out.dst, &pkt, 1280).unwrap();
    let pre = p.prerouting(secs(0), &mut err, &mut rng);
    assert_eq!(pre.ct_state, "RELATED");
    assert_eq!(packet::checksum::verify(&err), Ok(()));
    let q = packet::parse(&err).unwrap();
    assert_eq!((q.tuple.src, q.tuple.dst), (a(MASTER6), a(BROWSER6)));
    let packet::L4Kind::IcmpError { inner, .. } = q.kind else {
        panic!("not an ICMPv6 error")
    };
    assert_eq!(inner, tuple(&orig), "quotes what the browser sent");
    assert_eq!(&err[48..], &orig[..], "byte for byte");
}

/// ICMPv6 echo through the master is tracked like ICMP echo: `conntrack -L` says icmpv6
/// with types 128/129, the reply is ESTABLISHED-direction REPLY.
#[test]
fn icmpv6_echo_is_tracked() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let mut p = proxier_ds(&svc, &slices(&svc));
    let echo = |src: &str, dst: &str, request: bool| {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (a(src), a(dst)) else {
            panic!()
        };
        let b = PacketBuilder::ipv6(s.octets(), d.octets(), 64);
        let b = if request {
            b.icmpv6_echo_request(77, 1)
        } else {
            b.icmpv6_echo_reply(77, 1)
        };
        let mut out = Vec::new();
        b.write(&mut out, b"ping").unwrap();
        out
    };
    let mut req = echo(BROWSER6, &pod6(1, 16).to_string(), true);
    through(&mut p, &mut req, Some(a(MASTER_CNI6)), &mut rng(1));
    let line = p.conntrack().entries().next().unwrap().format(secs(0));
    assert!(line.starts_with("icmpv6   58 30 "), "{line}");
    assert!(line.contains("type=128 code=0 id=77"), "{line}");
    assert!(line.contains("type=129 code=0 id=77"), "{line}");
    let mut rep = echo(&pod6(1, 16).to_string(), BROWSER6, false);
    let pre = p.prerouting(secs(1), &mut rep, &mut rng(1));
    assert_eq!(pre.ct_state, "REPLY");
    // A reply without a request is no connection.
    let mut p = proxier_ds(&svc, &slices(&svc));
    let pre = p.prerouting(secs(0), &mut rep, &mut rng(1));
    assert_eq!(pre.ct_state, "INVALID");
}

/// Localhost NodePorts are IPv4 only: 127.0.0.1 answers, ::1 does not.
#[test]
fn localhost_node_ports_are_ipv4_only() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let mut p = proxier_ds(&svc, &slices(&svc));
    let mut v4 = tcp(
        std::net::Ipv4Addr::LOCALHOST,
        5000,
        std::net::Ipv4Addr::LOCALHOST,
        NODE_PORT,
        SYN,
    );
    let pre = p.output(secs(0), &mut v4, &mut rng(1));
    assert!(masq(&pre));
    let mut v6 = tcp6("::1", 5000, "::1", NODE_PORT, SYN);
    let pre = p.output(secs(0), &mut v6, &mut rng(1));
    assert!(pre.walk.steps.is_empty());
    assert_eq!(tuple(&v6).dst, a("::1"));
}

/// The healthCheckNodePort answers per family: the IPv6 proxier counts the local endpoints
/// of the IPv6 slices only.
#[test]
fn health_check_per_family() {
    let mut svc = nginx_ds(TrafficPolicy::Local);
    svc.type_ = ServiceType::LoadBalancer;
    svc.health_check_node_port = Some(30200);
    let v4 = slice(&svc, vec![ep(pod(0, 5), "master")]);
    let v6 = EndpointSlice {
        address_type: IpFamily::V6,
        ..slice(&svc, vec![])
    };
    let mut p = Proxier::new(config());
    p.update(std::slice::from_ref(&svc), &[v4, v6]);
    let sref = svc.service_ref();
    assert_eq!(p.service_health(&sref).status, 200, "primary family: IPv4");
    assert_eq!(p.service_health_of(&sref, IpFamily::V4).status, 200);
    assert_eq!(p.service_health_of(&sref, IpFamily::V6).status, 503);
}

/// `lab rules` for the dual-stack Service: ip6tables-save carries the IPv6 ClusterIP, pods
/// and cluster CIDR only; the IPv4 text is byte-identical to the single-stack Service's.
#[test]
fn ip6tables_save_of_the_dual_stack_service() {
    let svc = nginx_ds(TrafficPolicy::Cluster);
    let sl = slices(&svc);
    let c = config();
    let text6 = ip6tables_save(&c, std::slice::from_ref(&svc), &sl);
    for want in [
        format!("-d {CLUSTER_IP6}/128 -p tcp"),
        format!("! -s fd00:10:244::/56 -d {CLUSTER_IP6}/128"),
        "--to-destination [fd00:10:244:1::10]:80".to_string(),
        "-s fd00:10:244:1::10/128 -m comment".to_string(),
        "-A KUBE-SERVICES ! -d ::1/128 -m comment".to_string(),
    ] {
        assert!(text6.contains(&want), "{want} missing:\n{text6}");
    }
    for absent in ["10.", "127.0.0.0/8", "KUBE-FIREWALL", "/32"] {
        assert!(!text6.contains(absent), "{absent} in:\n{text6}");
    }
    let v4only = nginx(TrafficPolicy::Cluster);
    let text4 = iptables_save(&c, std::slice::from_ref(&svc), &sl);
    let single = iptables_save(
        &master_config(),
        std::slice::from_ref(&v4only),
        &slices(&v4only)[..1],
    );
    assert_eq!(text4, single);
}
