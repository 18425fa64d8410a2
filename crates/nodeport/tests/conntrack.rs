//! conntrack (§6): both directions translated from the entry, TCP states and timeouts,
//! UDP/ICMP timeouts, expiry, table full, MASQUERADE port collisions, ICMP errors.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use nodeport::conntrack::{ConnEntry, Dir, TcpState};
use nodeport::*;

/// Browser → master:32761 (ETP Cluster) → remote pod, SNAT to the master; the pod's reply
/// is un-NATed on the master; every later packet uses the entry, not the rules.
#[test]
fn both_directions_are_translated_from_the_entry() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(1);
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(&mut p, secs(0), &mut syn, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "NEW");
    assert_eq!(addrs(&syn), (MASTER, 40312, pod(1, 16), 80));

    // Reply from the pod to the master's masquerade address.
    let mut synack = tcp(pod(1, 16), 80, MASTER, 40312, SYN | ACK);
    let (pre, post) = forward(&mut p, secs(0), &mut synack, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "REPLY");
    assert!(pre.walk.steps.is_empty());
    assert_eq!(addrs(&synack), (MASTER, NODE_PORT, BROWSER, 40312));
    let kinds: Vec<RewriteKind> = pre.rewrites.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, vec![RewriteKind::UnSnat, RewriteKind::UnDnat]);
    assert_checksums(&synack);
    assert!(post.unwrap().rewrites.is_empty());

    // ACK from the browser: ESTABLISHED, translated like the SYN.
    let mut ack = tcp(BROWSER, 40312, MASTER, NODE_PORT, ACK);
    let (pre, _) = forward(&mut p, secs(1), &mut ack, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "ESTABLISHED");
    assert_eq!(addrs(&ack), (MASTER, 40312, pod(1, 16), 80));
    assert_checksums(&ack);

    let entries: Vec<&ConnEntry> = p.conntrack().entries().collect();
    assert_eq!(entries.len(), 1);
    let e = entries[0];
    assert_eq!(e.tcp_state(), Some(TcpState::Established));
    assert!(e.assured() && e.is_dnat() && e.is_snat());
    assert_eq!(
        e.format(secs(2)),
        "tcp      6 86399 ESTABLISHED src=203.0.113.11 dst=10.151.30.11 sport=40312 dport=32761 \
         src=10.244.1.16 dst=10.151.30.11 sport=80 dport=40312 [ASSURED] mark=0 use=1"
    );
}

#[test]
fn unreplied_entry_is_listed_unreplied() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    forward(&mut p, secs(0), &mut syn, Some(MASTER), &mut rng(2));
    let line = p.conntrack().entries().next().unwrap().format(secs(0));
    assert!(
        line.starts_with("tcp      6 120 SYN_SENT src=203.0.113.11"),
        "{line}"
    );
    assert!(
        line.contains("dport=32761 [UNREPLIED] src=10.244.1.16"),
        "{line}"
    );
}

/// Retransmitted SYN uses the entry (same endpoint), not a new random pick.
#[test]
fn retransmitted_syn_keeps_the_endpoint() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut r = rng(3);
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    forward(&mut p, secs(0), &mut syn, Some(MASTER), &mut r);
    let first = addrs(&syn);
    for t in 1..10 {
        let mut again = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
        let (pre, _) = forward(&mut p, secs(t), &mut again, Some(MASTER), &mut r);
        assert_eq!(
            pre.ct_state, "NEW",
            "unreplied original-direction packets are NEW"
        );
        assert!(pre.walk.steps.is_empty());
        assert_eq!(addrs(&again), first);
    }
    assert_eq!(p.conntrack().len(), 1);
}

/// Established flows survive endpoint removal (rules only apply to NEW).
#[test]
fn established_flow_keeps_endpoint_after_it_leaves_the_rules() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(4);
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    forward(&mut p, secs(0), &mut syn, Some(MASTER), &mut r);
    p.update(std::slice::from_ref(&svc), &[slice(&svc, vec![])]);
    let mut ack = tcp(BROWSER, 40312, MASTER, NODE_PORT, ACK);
    let (pre, _) = forward(&mut p, secs(1), &mut ack, Some(MASTER), &mut r);
    assert!(matches!(pre.verdict, Verdict::Accept(_)));
    assert_eq!(addrs(&ack).2, pod(1, 16));
}

#[test]
fn tcp_timeouts_follow_the_state_machine() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(5);
    let c = |p: &Proxier| p.conntrack().entries().next().unwrap().clone();
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    forward(&mut p, secs(0), &mut pkt, Some(MASTER), &mut r);
    assert_eq!(c(&p).expires(), secs(120));
    let mut pkt = tcp(pod(1, 16), 80, MASTER, 40312, SYN | ACK);
    forward(&mut p, secs(1), &mut pkt, Some(MASTER), &mut r);
    assert_eq!(
        (c(&p).tcp_state(), c(&p).expires()),
        (Some(TcpState::SynRecv), secs(61))
    );
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, ACK);
    forward(&mut p, secs(2), &mut pkt, Some(MASTER), &mut r);
    assert_eq!(c(&p).expires(), secs(2 + 86_400));
    // Client closes: FIN_WAIT, server ACKs: CLOSE_WAIT (3600 s as kube-proxy sets it).
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, FIN | ACK);
    forward(&mut p, secs(3), &mut pkt, Some(MASTER), &mut r);
    assert_eq!(c(&p).tcp_state(), Some(TcpState::FinWait));
    let mut pkt = tcp(pod(1, 16), 80, MASTER, 40312, ACK);
    forward(&mut p, secs(4), &mut pkt, Some(MASTER), &mut r);
    assert_eq!(
        (c(&p).tcp_state(), c(&p).expires()),
        (Some(TcpState::CloseWait), secs(3604))
    );
    let mut pkt = tcp(pod(1, 16), 80, MASTER, 40312, FIN | ACK);
    forward(&mut p, secs(5), &mut pkt, Some(MASTER), &mut r);
    assert_eq!(
        (c(&p).tcp_state(), c(&p).expires()),
        (Some(TcpState::LastAck), secs(35))
    );
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, ACK);
    forward(&mut p, secs(6), &mut pkt, Some(MASTER), &mut r);
    assert_eq!(
        (c(&p).tcp_state(), c(&p).expires()),
        (Some(TcpState::TimeWait), secs(126))
    );
    // A new SYN on the same tuple reopens the connection (re-running the rules).
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(&mut p, secs(7), &mut pkt, Some(MASTER), &mut r);
    assert!(!pre.walk.steps.is_empty());
    assert_eq!(c(&p).tcp_state(), Some(TcpState::SynSent));
    assert_eq!(p.conntrack().len(), 1);
}

#[test]
fn udp_unreplied_30s_stream_120s_and_expiry() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Udp;
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(6);
    let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    forward(&mut p, secs(0), &mut q, Some(MASTER), &mut r);
    assert_checksums(&q);
    assert_eq!(p.conntrack().entries().next().unwrap().expires(), secs(30));
    p.expire(secs(29));
    assert_eq!(p.conntrack().len(), 1);
    p.expire(secs(30));
    assert_eq!(
        p.conntrack().len(),
        0,
        "unreplied UDP entry expires after 30 s"
    );

    let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    forward(&mut p, secs(100), &mut q, Some(MASTER), &mut r);
    let mut a = udp(pod(1, 16), 80, MASTER, 5353, b"answer");
    let (pre, _) = forward(&mut p, secs(101), &mut a, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "REPLY");
    assert_eq!(addrs(&a), (MASTER, NODE_PORT, BROWSER, 5353));
    assert_checksums(&a);
    // The first reply keeps the unreplied timeout (nf_conntrack_udp_packet() runs before
    // SEEN_REPLY is set) and does not assure the entry.
    let e = p.conntrack().entries().next().unwrap().clone();
    assert_eq!(e.expires(), secs(131));
    assert!(e.seen_reply() && !e.assured());
    // Traffic more than 2 s after the first packet: a stream, ASSURED, 120 s.
    let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    forward(&mut p, secs(103), &mut q, Some(MASTER), &mut r);
    let e = p.conntrack().entries().next().unwrap().clone();
    assert_eq!(e.expires(), secs(223));
    assert!(e.assured());
    // Lazy expiry: a packet after the timeout starts a NEW flow.
    let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    let (pre, _) = forward(&mut p, secs(223), &mut q, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "NEW");
    assert!(!pre.walk.steps.is_empty());
}

#[test]
fn udp_checksum_zero_stays_zero() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Udp;
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    q[26] = 0;
    q[27] = 0;
    forward(&mut p, secs(0), &mut q, Some(MASTER), &mut rng(7));
    assert_eq!(&q[26..28], &[0, 0]);
    assert_eq!(addrs(&q), (MASTER, 5353, pod(1, 16), 80));
}

#[test]
fn icmp_echo_is_tracked_with_the_identifier_as_port() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut r = rng(8);
    let outside = Ipv4Addr::new(8, 8, 8, 8);
    let mut req = echo_request(pod(0, 5), outside, 77, 1);
    let (pre, _) = forward(&mut p, secs(0), &mut req, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "NEW");
    let e = p.conntrack().entries().next().unwrap().clone();
    assert_eq!(e.expires(), secs(30));
    assert!(e
        .format(secs(0))
        .starts_with("icmp     1 30 src=10.244.0.5 dst=8.8.8.8 type=8 code=0 id=77"));
    let mut rep = echo_reply(outside, pod(0, 5), 77, 1);
    let (pre, _) = forward(&mut p, secs(1), &mut rep, None, &mut r);
    assert_eq!(pre.ct_state, "REPLY");
    // A stray echo reply with no request is INVALID, not a new flow.
    let mut stray = echo_reply(outside, pod(0, 5), 78, 1);
    let (pre, _) = forward(&mut p, secs(1), &mut stray, None, &mut r);
    assert_eq!(pre.ct_state, "INVALID");
    assert_eq!(p.conntrack().len(), 1);
}

/// nf_conntrack_max reached: new flows are dropped and counted; existing ones continue;
/// once entries expire there is room again.
#[test]
fn table_full_drops_new_flows() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut cfg = master_config();
    cfg.conntrack_max = 2;
    let mut p = proxier_with(cfg, &svc, worker_pods());
    let mut r = rng(9);
    for port in [1000, 1001] {
        let mut pkt = tcp(BROWSER, port, MASTER, NODE_PORT, SYN);
        let (_, post) = forward(&mut p, secs(0), &mut pkt, Some(MASTER), &mut r);
        assert!(post.unwrap().dropped.is_none());
    }
    let mut pkt = tcp(BROWSER, 1002, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(&mut p, secs(1), &mut pkt, Some(MASTER), &mut r);
    assert!(matches!(
        pre.verdict,
        Verdict::Drop(DropReason::ConntrackFull)
    ));
    assert_eq!(p.conntrack().stats().drop_full, 1);
    // Existing flow still works.
    let mut pkt = tcp(BROWSER, 1000, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(&mut p, secs(1), &mut pkt, Some(MASTER), &mut r);
    assert!(matches!(pre.verdict, Verdict::Accept(_)));
    // After the SYN_SENT timeout (120 s) the table has room again (lazy expiry when full).
    let mut pkt = tcp(BROWSER, 1002, MASTER, NODE_PORT, SYN);
    let (pre, post) = forward(&mut p, secs(200), &mut pkt, Some(MASTER), &mut r);
    assert!(matches!(pre.verdict, Verdict::Accept(_)));
    assert!(post.unwrap().dropped.is_none());
}

/// Two clients with the same source port masqueraded to the same address and endpoint:
/// the second gets another port, and replies reach the right client.
#[test]
fn masquerade_port_collision_remaps_the_second_flow() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(10);
    let other = Ipv4Addr::new(198, 51, 100, 7);
    let mut a = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
    forward(&mut p, secs(0), &mut a, Some(MASTER), &mut r);
    let mut b = tcp(other, 40000, MASTER, NODE_PORT, SYN);
    let (_, post) = forward(&mut p, secs(0), &mut b, Some(MASTER), &mut r);
    assert_eq!(addrs(&a).1, 40000);
    let port_b = addrs(&b).1;
    assert_ne!(port_b, 40000, "source port remapped");
    assert!(port_b >= 1024);
    assert_checksums(&b);
    assert_eq!(post.unwrap().rewrites[0].after.port(), port_b);
    let mut reply = tcp(pod(1, 16), 80, MASTER, port_b, SYN | ACK);
    p.prerouting(secs(0), &mut reply, &mut r);
    assert_eq!(addrs(&reply), (MASTER, NODE_PORT, other, 40000));
    let mut reply = tcp(pod(1, 16), 80, MASTER, 40000, SYN | ACK);
    p.prerouting(secs(0), &mut reply, &mut r);
    assert_eq!(addrs(&reply), (MASTER, NODE_PORT, BROWSER, 40000));
}

#[test]
fn random_fully_randomises_the_source_port() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut cfg = master_config();
    cfg.masquerade_random_fully = true;
    let mut p = proxier_with(cfg, &svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(11);
    let mut kept = 0;
    for i in 0..20 {
        let mut a = tcp(BROWSER, 40000 + i, MASTER, NODE_PORT, SYN);
        let (_, post) = forward(&mut p, secs(0), &mut a, Some(MASTER), &mut r);
        assert!(post.unwrap().walk.has_target("MASQUERADE --random-fully"));
        if addrs(&a).1 == 40000 + i {
            kept += 1;
        }
    }
    assert!(kept <= 1);
    assert!(
        ProxyConfig::new("n", vec![]).masquerade_random_fully,
        "the default"
    );
}

/// The random MASQUERADE ports come from the proxier's own stream: with or without
/// `--random-fully`, the same caller RNG picks the same endpoints.
#[test]
fn random_ports_do_not_shift_endpoint_choices() {
    let svc = nginx(TrafficPolicy::Cluster);
    let picks = |fully: bool| -> Vec<Ipv4Addr> {
        let mut cfg = master_config();
        cfg.masquerade_random_fully = fully;
        let mut p = proxier_with(cfg, &svc, worker_pods());
        let mut r = rng(21);
        (0..40)
            .map(|i| {
                let mut a = tcp(BROWSER, 41000 + i, MASTER, NODE_PORT, SYN);
                forward(&mut p, secs(0), &mut a, Some(MASTER), &mut r);
                addrs(&a).2
            })
            .collect()
    };
    let kept = picks(false);
    assert_eq!(picks(true), kept);
    assert!(kept.iter().collect::<std::collections::BTreeSet<_>>().len() > 1);
}

/// Lab what-if: masquerade disabled → Cluster traffic leaves with the client's address.
#[test]
fn masquerade_disabled_leaves_client_source() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut cfg = master_config();
    cfg.masquerade_enabled = false;
    let mut p = proxier_with(cfg, &svc, vec![ep(pod(1, 16), "node1")]);
    let mut a = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
    let (pre, post) = forward(&mut p, secs(0), &mut a, Some(MASTER), &mut rng(12));
    assert!(masq(&pre));
    assert!(post.unwrap().walk.has_target("RETURN"));
    assert_eq!(addrs(&a).0, BROWSER);
}

/// Local delivery (hostNetwork endpoint / INPUT): no MASQUERADE, entry confirmed.
#[test]
fn local_delivery_confirms_without_snat() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![ep(MASTER, "master")]);
    let mut a = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
    let (pre, post) = forward(&mut p, secs(0), &mut a, None, &mut rng(13));
    assert!(masq(&pre));
    assert!(post.unwrap().walk.steps.is_empty());
    assert_eq!(addrs(&a), (BROWSER, 40000, MASTER, 80));
    assert_eq!(p.conntrack().len(), 1);
}

/// An ICMP port unreachable from the endpoint about a translated UDP packet is RELATED and
/// is translated back: outer to the client, embedded header to what the client sent.
#[test]
fn icmp_error_for_tracked_flow_is_translated_inside_and_out() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Udp;
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(14);
    let orig = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    let mut q = orig.clone();
    forward(&mut p, secs(0), &mut q, Some(MASTER), &mut r);
    // The endpoint's node answers port unreachable, quoting the packet it received.
    let b = etherparse::PacketBuilder::ipv4(pod(1, 16).octets(), MASTER.octets(), 64).icmpv4(
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ),
    );
    let mut err = Vec::new();
    b.write(&mut err, &q[..28]).unwrap();
    let (pre, _) = forward(&mut p, secs(1), &mut err, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "RELATED");
    assert!(pre
        .rewrites
        .iter()
        .any(|w| w.kind == RewriteKind::IcmpInner));
    let s = etherparse::SlicedPacket::from_ip(&err).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
        panic!()
    };
    assert_eq!(ip.header().source_addr(), MASTER);
    assert_eq!(ip.header().destination_addr(), BROWSER);
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(etherparse::TransportSlice::Icmpv4(ic)) = s.transport else {
        panic!()
    };
    assert_eq!(ic.checksum(), ic.icmp_type().calc_checksum(ic.payload()));
    // The embedded packet is now exactly what the browser sent (addresses, ports, checksums).
    assert_eq!(ic.payload(), &orig[..28]);
}

#[test]
fn udp_entries_to_removed_endpoints_are_cleared_on_sync() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Udp;
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    forward(&mut p, secs(0), &mut q, Some(MASTER), &mut rng(15));
    assert_eq!(p.conntrack().len(), 1);
    p.update(
        std::slice::from_ref(&svc),
        &[slice(&svc, vec![ep(pod(2, 7), "node2")])],
    );
    assert_eq!(p.conntrack().len(), 0, "§6.4: stale UDP entry deleted");
    let e = p.conntrack();
    assert!(e
        .lookup(&nodeport::Tuple {
            proto: 17,
            src: std::net::IpAddr::V4(BROWSER),
            sport: 5353,
            dst: std::net::IpAddr::V4(MASTER),
            dport: NODE_PORT
        })
        .is_none());
    let _ = Dir::Original;
}

/// Memory target: ≤ 128 B per entry at 1M entries (entries + both-tuple index).
#[test]
fn one_million_entries_fit_in_128_bytes_each() {
    let mut ct = Conntrack::new(1_000_000);
    for i in 0..1_000_000u32 {
        let o = Tuple::tcp(Ipv4Addr::from(0xcb00_0000 + i), 40000, MASTER, NODE_PORT);
        let r = Tuple::tcp(
            pod(1, 16),
            80,
            Ipv4Addr::from(u32::from(MASTER) + i / 60_000),
            (i % 60_000) as u16 + 1024,
        );
        ct.insert(ConnEntry::new(o, r, SYN, secs(0))).unwrap();
    }
    assert!(ct.is_full());
    let per_entry = ct.heap_bytes() as f64 / 1e6;
    assert!(per_entry <= 128.0, "{per_entry} B/entry");
    assert_eq!(
        ct.insert(ConnEntry::new(
            Tuple {
                proto: 6,
                src: std::net::IpAddr::V4(BROWSER),
                sport: 1,
                dst: std::net::IpAddr::V4(MASTER),
                dport: 2
            },
            Tuple {
                proto: 6,
                src: std::net::IpAddr::V4(MASTER),
                sport: 2,
                dst: std::net::IpAddr::V4(BROWSER),
                dport: 1
            },
            SYN,
            secs(0)
        )),
        Err(nodeport::conntrack::InsertError::Full)
    );
}

/// nf_conntrack_proto_udp.c (Linux ≥ 6.2, nf_conntrack_udp_packet): a request/response
/// exchange inside the first 2 s (a DNS lookup) never becomes ASSURED and keeps the 30 s
/// timeout however many packets it has; only traffic after `stream_ts` = first + 2 s does.
#[test]
fn udp_replies_within_two_seconds_stay_unassured() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Udp;
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(8);
    let ms = Duration::from_millis;
    let entry = |p: &Proxier| p.conntrack().entries().next().unwrap().clone();
    let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
    forward(&mut p, ms(0), &mut q, Some(MASTER), &mut r);
    for t in [100, 900, 1500, 2000] {
        let mut a = udp(pod(1, 16), 80, MASTER, 5353, b"answer");
        forward(&mut p, ms(t), &mut a, Some(MASTER), &mut r);
        let e = entry(&p);
        assert!(!e.assured(), "assured at {t} ms");
        assert_eq!(e.expires(), ms(t) + secs(30));
    }
    // 2000 ms is not after stream_ts; 2001 ms is.
    let mut a = udp(pod(1, 16), 80, MASTER, 5353, b"answer");
    forward(&mut p, ms(2001), &mut a, Some(MASTER), &mut r);
    let e = entry(&p);
    assert!(e.assured());
    assert_eq!(e.expires(), ms(2001) + secs(120));
    assert!(e.format(ms(2001)).contains("[ASSURED]"));
}

/// Without any reply, traffic past 2 s is still unreplied: 30 s, not assured.
#[test]
fn udp_without_reply_never_streams() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Udp;
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(9);
    for t in [0, 5, 10] {
        let mut q = udp(BROWSER, 5353, MASTER, NODE_PORT, b"query");
        forward(&mut p, secs(t), &mut q, Some(MASTER), &mut r);
    }
    let e = p.conntrack().entries().next().unwrap().clone();
    assert!(!e.assured() && !e.seen_reply());
    assert_eq!(e.expires(), secs(40));
}

/// Run one TCP connection from BROWSER:40312 to the NodePort through the handshake and a
/// FIN close (client first) into TIME_WAIT; return the pod it was DNATed to.
fn one_connection(p: &mut Proxier, r: &mut rand_chacha::ChaCha8Rng, t: u64) -> Ipv4Addr {
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(p, secs(t), &mut syn, Some(MASTER), r);
    assert_eq!(pre.ct_state, "NEW", "t={t}: a fresh decision");
    let pod_ip = addrs(&syn).2;
    let mut sa = tcp(pod_ip, 80, MASTER, 40312, SYN | ACK);
    forward(p, secs(t), &mut sa, Some(MASTER), r);
    for (src, fl) in [
        (true, ACK),
        (true, FIN | ACK),
        (false, FIN | ACK),
        (true, ACK),
    ] {
        let mut pkt = if src {
            tcp(BROWSER, 40312, MASTER, NODE_PORT, fl)
        } else {
            tcp(pod_ip, 80, MASTER, 40312, fl)
        };
        forward(p, secs(t), &mut pkt, Some(MASTER), r);
    }
    pod_ip
}

/// nf_conntrack_proto_tcp.c tcp_packet(): a SYN on an entry in TIME_WAIT (closed with
/// FINs: IP_CT_TCP_FLAG_CLOSE_INIT) kills the entry and the packet is looked up again, so
/// kube-proxy's rules run again and a new endpoint is drawn each time the client reuses
/// its source port.
#[test]
fn syn_on_time_wait_kills_the_entry_and_draws_again() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut r = rng(10);
    let mut pods = std::collections::BTreeSet::new();
    for t in 0..30 {
        pods.insert(one_connection(&mut p, &mut r, t));
        let e = p.conntrack().entries().next().unwrap().clone();
        assert_eq!(e.tcp_state(), Some(TcpState::TimeWait));
        assert_eq!(p.conntrack().len(), 1);
    }
    assert_eq!(pods.len(), 3, "30 reopened connections reached {pods:?}");
}

fn tcp_rst(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1000, 0)
        .rst();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

/// CLOSE after a RST: a SYN from the side that sent the RST reopens (kill + new draw); a
/// SYN after the other side's RST is ignored: it rides the old entry (same DNAT), which
/// keeps its state and timer.
#[test]
fn syn_after_rst_reopens_only_from_the_resetting_side() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut r = rng(11);
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    forward(&mut p, secs(0), &mut syn, Some(MASTER), &mut r);
    let pod_ip = addrs(&syn).2;
    // The pod resets: CLOSE, last packet RST in the reply direction.
    let mut rst = tcp_rst(pod_ip, 80, MASTER, 40312);
    forward(&mut p, secs(1), &mut rst, Some(MASTER), &mut r);
    let e = p.conntrack().entries().next().unwrap().clone();
    assert_eq!(
        (e.tcp_state(), e.expires()),
        (Some(TcpState::Close), secs(11))
    );
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(&mut p, secs(2), &mut syn, Some(MASTER), &mut r);
    assert!(pre.walk.steps.is_empty(), "ignored SYN runs no rules");
    assert_eq!(addrs(&syn).2, pod_ip, "ignored SYN keeps the old DNAT");
    let e = p.conntrack().entries().next().unwrap().clone();
    assert_eq!(
        (e.tcp_state(), e.expires()),
        (Some(TcpState::Close), secs(11))
    );
    // Now the client resets and SYNs again: reopened, rules run.
    let mut rst = tcp_rst(BROWSER, 40312, MASTER, NODE_PORT);
    forward(&mut p, secs(3), &mut rst, Some(MASTER), &mut r);
    let mut syn = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, _) = forward(&mut p, secs(4), &mut syn, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "NEW");
    assert!(!pre.walk.steps.is_empty());
    let e = p.conntrack().entries().next().unwrap().clone();
    assert_eq!(e.tcp_state(), Some(TcpState::SynSent));
}
