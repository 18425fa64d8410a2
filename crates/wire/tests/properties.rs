//! Properties of the packet layer, IPv4 and IPv6: incremental checksums equal a full
//! recompute, a NAT rewrite and its inverse restore the datagram byte for byte, and
//! arbitrary bytes never panic. (Moved from nodeport's tests with the code; the engine-level NAT round trip
//! through DNAT + MASQUERADE stays in nodeport.)

use std::net::Ipv4Addr;

use common::{build, tuple_pair};
use proptest::prelude::*;
use wire::{parse, rewrite, Tuple, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

mod common;

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// An IPv4 `proto` flow (the SCTP properties below build IPv4 only).
fn tuple(proto: u8) -> impl Strategy<Value = Tuple> {
    (ip(), any::<u16>(), ip(), any::<u16>()).prop_map(move |(src, sport, dst, dport)| Tuple {
        proto,
        src: src.into(),
        sport,
        dst: dst.into(),
        dport,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// RFC 1624 incremental update == etherparse's full computation (IPv4 header and the
    /// TCP/UDP checksum with its pseudo-header; for IPv6 the eight words of each 128-bit
    /// address in the pseudo-header, which ICMPv6 echo covers too, unlike ICMPv4); the
    /// result is byte-identical to a packet built from scratch with the new tuple.
    #[test]
    fn incremental_checksum_equals_full_recompute(
        tcp in tuple_pair(PROTO_TCP), udp in tuple_pair(PROTO_UDP),
        icmp in tuple_pair(PROTO_ICMP),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        ttl in 1u8..,
    ) {
        for (o, n) in [tcp, udp, icmp] {
            let mut pkt = build(&o, &payload, ttl);
            let p = parse(&pkt).unwrap();
            prop_assert_eq!(p.tuple, o);
            rewrite(&mut pkt, &p, &n);
            prop_assert_eq!(wire::checksum::verify(&pkt), Ok(()));
            prop_assert_eq!(&pkt, &build(&n, &payload, ttl));
        }
    }

    /// NAT there and back, either family: rewriting to any tuple and then to the original
    /// one restores the datagram byte for byte, and the parse sees each tuple in turn.
    #[test]
    fn nat_round_trip_restores_the_bytes(
        pair in tuple_pair(PROTO_TCP), udp in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let proto = if udp { PROTO_UDP } else { PROTO_TCP };
        let (old, new) = (Tuple { proto, ..pair.0 }, Tuple { proto, ..pair.1 });
        let orig = build(&old, &payload, 64);
        let mut pkt = orig.clone();
        let p = parse(&pkt).unwrap();
        prop_assert_eq!(p.tuple, old);
        rewrite(&mut pkt, &p, &new);
        let p = parse(&pkt).unwrap();
        prop_assert_eq!(p.tuple, new);
        rewrite(&mut pkt, &p, &old);
        prop_assert_eq!(pkt, orig);
    }

    /// Arbitrary bytes never panic the parser; what parses can be rewritten.
    #[test]
    fn random_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..120), new in tuple(PROTO_TCP),
    ) {
        if let Ok(p) = parse(&bytes) {
            let n = Tuple { proto: p.tuple.proto, ..new };
            rewrite(&mut bytes, &p, &n);
            wire::rewrite_icmp_error(&mut bytes, &p, new.src, new.dst, &n);
        }
    }
}

#[test]
fn verify_names_the_wrong_checksum() {
    let t = Tuple {
        proto: PROTO_TCP,
        src: std::net::IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11)),
        sport: 40312,
        dst: std::net::IpAddr::V4(Ipv4Addr::new(10, 151, 30, 11)),
        dport: 32761,
    };
    let mut pkt = build(&t, b"GET /", 64);
    assert_eq!(wire::checksum::verify(&pkt), Ok(()));
    pkt[36] ^= 1; // TCP checksum
    assert_eq!(wire::checksum::verify(&pkt), Err("TCP checksum"));
    pkt[10] ^= 1; // IPv4 header checksum
    assert_eq!(wire::checksum::verify(&pkt), Err("IPv4 header checksum"));
}

/// An IPv4 SCTP packet: common header (verification tag 0x01020304) and one chunk of type
/// `chunk` with `body`, CRC32c filled in.
fn sctp(t: &Tuple, chunk: u8, body: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&t.sport.to_be_bytes());
    l4.extend_from_slice(&t.dport.to_be_bytes());
    l4.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 0, chunk, 0]);
    l4.extend_from_slice(&(4 + body.len() as u16).to_be_bytes());
    l4.extend_from_slice(body);
    let crc = wire::checksum::sctp_crc32c(&l4);
    l4[8..12].copy_from_slice(&crc.to_le_bytes());
    let ip = etherparse::Ipv4Header::new(
        l4.len() as u16,
        64,
        etherparse::IpNumber(wire::PROTO_SCTP),
        wire::v4(t.src).octets(),
        wire::v4(t.dst).octets(),
    )
    .unwrap();
    let mut ip = ip;
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&l4);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// SCTP NAT: ports and addresses rewritten, CRC32c recomputed: byte-identical to a
    /// packet built with the new tuple, and the parse sees the new tuple and the chunk.
    #[test]
    fn sctp_rewrite_recomputes_crc32c(
        old in tuple(wire::PROTO_SCTP), new in tuple(wire::PROTO_SCTP),
        body in proptest::collection::vec(any::<u8>(), 0..48), chunk in any::<u8>(),
    ) {
        let mut pkt = sctp(&old, chunk, &body);
        prop_assert_eq!(wire::checksum::verify(&pkt), Ok(()));
        let p = parse(&pkt).unwrap();
        prop_assert_eq!(p.kind, wire::L4Kind::Sctp { chunk });
        rewrite(&mut pkt, &p, &new);
        prop_assert_eq!(wire::checksum::verify(&pkt), Ok(()));
        prop_assert_eq!(&pkt, &sctp(&new, chunk, &body));
        prop_assert_eq!(parse(&pkt).unwrap().tuple, new);
    }
}

#[test]
fn sctp_bad_crc_is_named_and_short_header_rejected() {
    let t = Tuple {
        proto: wire::PROTO_SCTP,
        src: std::net::IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11)),
        sport: 5000,
        dst: std::net::IpAddr::V4(Ipv4Addr::new(10, 151, 30, 11)),
        dport: 30080,
    };
    let mut pkt = sctp(&t, wire::sctp_chunk::INIT, &[0; 16]);
    pkt[30] ^= 1;
    assert_eq!(wire::checksum::verify(&pkt), Err("SCTP CRC32c"));
    let short = &sctp(&t, 1, &[])[..]; // 20 + 16 bytes
    let mut cut = short[..28].to_vec();
    cut[3] = 28; // total length 28: 8 bytes of SCTP
    assert_eq!(
        parse(&cut),
        Err(wire::PacketError::BadTransportHeader("SCTP"))
    );
}
