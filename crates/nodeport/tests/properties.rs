//! Properties: NAT round trips through the engine restore the tuple, endpoint choice is
//! uniform, and no input bytes can make the engine panic. (Incremental checksum == full
//! recompute is a property of the packet layer: `crates/wire/tests/properties.rs`.)

mod common;

use std::net::Ipv4Addr;

use common::*;
use nodeport::packet::{self, PacketError};
use nodeport::*;
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// translate(reply(translate(p))) restores the tuple: what the client sends comes back
    /// to it as the exact inverse, through DNAT + MASQUERADE and the un-NAT.
    #[test]
    fn nat_round_trip_restores_the_tuple(
        client in ip(), sport in 1024u16.., seed in any::<u64>(), udp_flow in any::<bool>(),
        etp_local in any::<bool>(),
    ) {
        prop_assume!(!client.is_loopback() && client != MASTER && client != MASTER_CNI);
        let mut svc = nginx(if etp_local { TrafficPolicy::Local } else { TrafficPolicy::Cluster });
        if udp_flow { svc.ports[0].protocol = Protocol::Udp; }
        let mut eps = worker_pods();
        eps.push(ep(pod(0, 20), "master"));
        let mut p = proxier(&svc, eps);
        let mut r = rng(seed);
        let mut pkt = if udp_flow { udp(client, sport, MASTER, NODE_PORT, b"x") }
                      else { tcp(client, sport, MASTER, NODE_PORT, SYN) };
        let (pre, post) = forward(&mut p, secs(0), &mut pkt, Some(MASTER), &mut r);
        prop_assert!(matches!(pre.verdict, Verdict::Accept(_)));
        prop_assert!(post.unwrap().dropped.is_none());
        let (s, sp, d, dp) = addrs(&pkt);
        let mut reply = if udp_flow { udp(d, dp, s, sp, b"y") } else { tcp(d, dp, s, sp, SYN | ACK) };
        let pre = p.prerouting(secs(0), &mut reply, &mut r);
        prop_assert_eq!(pre.ct_state, "REPLY");
        prop_assert_eq!(addrs(&reply), (MASTER, NODE_PORT, client, sport));
        assert_checksums(&reply);
    }

    /// Arbitrary bytes never panic, and are either parsed or rejected as Invalid.
    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let svc = nginx(TrafficPolicy::Cluster);
        let mut p = proxier(&svc, worker_pods());
        let mut r = rng(1);
        let _ = packet::parse(&bytes);
        let (pre, _) = forward(&mut p, secs(0), &mut bytes, Some(MASTER), &mut r);
        if packet::parse(&bytes).is_err() {
            prop_assert!(matches!(pre.verdict, Verdict::Drop(DropReason::Invalid(_))));
        }
    }

    /// Valid packets with random corruption (IHL, lengths, flags, protocol, truncation).
    #[test]
    fn corrupted_packets_never_panic(
        flip in proptest::collection::vec((0usize..60, any::<u8>()), 0..6),
        cut in 0usize..80, icmp_err in any::<bool>(),
    ) {
        let svc = nginx(TrafficPolicy::Cluster);
        let mut p = proxier(&svc, worker_pods());
        let mut r = rng(2);
        let mut base = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
        if icmp_err {
            let b = etherparse::PacketBuilder::ipv4(pod(1,16).octets(), MASTER.octets(), 64)
                .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                    etherparse::icmpv4::DestUnreachableHeader::Port));
            let mut e = Vec::new();
            b.write(&mut e, &base[..28]).unwrap();
            base = e;
        }
        for (i, v) in flip {
            if i < base.len() { base[i] = v; }
        }
        base.truncate(cut.max(1));
        let _ = forward(&mut p, secs(0), &mut base, Some(MASTER), &mut r);
        let _ = forward(&mut p, secs(1), &mut base, None, &mut r);
    }
}

#[test]
fn bad_packets_are_named() {
    let good = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
    let mut frag = good.clone();
    frag[6] |= 0x20; // MF
    assert_eq!(packet::parse(&frag), Err(PacketError::Fragment));
    let mut off = good.clone();
    off[7] = 1; // fragment offset 8
    assert_eq!(packet::parse(&off), Err(PacketError::Fragment));
    let mut ihl = good.clone();
    ihl[0] = 0x44;
    assert_eq!(packet::parse(&ihl), Err(PacketError::BadHeaderLength));
    assert!(matches!(
        packet::parse(&good[..good.len() - 1]),
        Err(PacketError::LengthMismatch { .. })
    ));
    let mut gre = good.clone();
    gre[9] = 47;
    assert_eq!(
        packet::parse(&gre),
        Err(PacketError::UnsupportedProtocol(47))
    );
    // An IPv4 datagram relabelled version 6 is read as IPv6 and makes no sense as one.
    // Version 5 is not IP at all.
    let mut v6 = good.clone();
    v6[0] = 0x65;
    assert!(packet::parse(&v6).is_err());
    let mut v5 = good.clone();
    v5[0] = 0x55;
    assert_eq!(packet::parse(&v5), Err(PacketError::NotIp(5)));
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let pre = p.prerouting(secs(0), &mut frag, &mut rng(3));
    assert!(matches!(
        pre.verdict,
        Verdict::Drop(DropReason::Invalid(PacketError::Fragment))
    ));
}

/// kube-proxy's `statistic --mode random` chain is a uniform choice: 3 endpoints, 30 000
/// flows, each within ±2 % of a third.
#[test]
fn endpoint_choice_is_uniform() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    p.set_trace(false);
    let mut r = rng(2026);
    let mut counts = std::collections::HashMap::<Ipv4Addr, u32>::new();
    for i in 0..30_000u32 {
        let client = Ipv4Addr::from(0xcb00_0000 + i);
        let mut pkt = tcp(client, 40000, MASTER, NODE_PORT, SYN);
        let _ = p.prerouting(secs(0), &mut pkt, &mut r);
        *counts.entry(addrs(&pkt).2).or_default() += 1;
    }
    assert_eq!(counts.len(), 3);
    for (ip, n) in counts {
        assert!(
            (9_800..=10_200).contains(&n),
            "{ip} got {n} of 30000 flows (expected 10000 ± 2 %)"
        );
    }
}
