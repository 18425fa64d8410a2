//! IPv6 in the packet layer: parsing (extension headers, fragments, ICMPv6 echo and errors),
//! ICMPv6 error building and translation, and arbitrary bytes never panicking. (The NAT
//! properties, incremental == full recompute and the round trip, run over both families
//! in `properties.rs`.)

use std::net::IpAddr;

use proptest::prelude::*;
use wire::{parse, rewrite, L4Kind, PacketError, Tuple, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

mod common;

fn tuple6(proto: u8) -> impl Strategy<Value = Tuple> {
    common::tuple_of(proto, true)
}

fn build6(t: &Tuple, payload: &[u8], hops: u8) -> Vec<u8> {
    common::build(t, payload, hops)
}

const SRC: &str = "fd00:10:180::1";
const DST: &str = "fd00:10:96::1";

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes after an IPv6 version nibble (with a plausible payload length and
    /// next header) never panic the parser, the rewrites, the ICMPv6 builders or the hop
    /// limit helper.
    #[test]
    fn v6_random_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
        next in prop::sample::select(vec![0u8, 6, 17, 43, 44, 58, 60, 132, 59]),
        new in tuple6(PROTO_TCP),
    ) {
        if bytes.len() >= 40 {
            bytes[0] = 0x60;
            let plen = (bytes.len() - 40) as u16;
            bytes[4..6].copy_from_slice(&plen.to_be_bytes());
            bytes[6] = next;
        }
        if let Ok(p) = parse(&bytes) {
            let n = Tuple { proto: p.tuple.proto, ..new };
            rewrite(&mut bytes, &p, &n);
            wire::rewrite_icmp_error(&mut bytes, &p, new.src, new.dst, &n);
            let _ = wire::icmp::port_unreachable(&bytes, &p, new.dst);
        }
        let _ = wire::icmp::time_exceeded(new.dst, &bytes);
        let _ = wire::icmp::packet_too_big(new.dst, &bytes, 1280);
        wire::nat::set_source(&mut bytes, new.src);
        let _ = wire::hop::decrement_hop_limit(&mut bytes);
    }
}

/// An IPv6 TCP segment with extension headers `exts` (each `(next header, body)`, the body
/// padded to a multiple of 8 with the length byte filled in) before the TCP header.
fn with_exts(t: &Tuple, exts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let plain = build6(t, b"hello", 64);
    let tcp = &plain[40..];
    let mut chain = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(PROTO_TCP, |e| e.0);
        let mut h = vec![next, 0];
        h.extend_from_slice(body);
        while h.len() % 8 != 0 {
            h.push(0);
        }
        h[1] = (h.len() / 8 - 1) as u8;
        chain.extend_from_slice(&h);
    }
    let mut out = plain[..40].to_vec();
    out[6] = exts.first().map_or(PROTO_TCP, |e| e.0);
    out[4..6].copy_from_slice(&((chain.len() + tcp.len()) as u16).to_be_bytes());
    out.extend_from_slice(&chain);
    out.extend_from_slice(tcp);
    out
}

#[test]
fn extension_headers_are_skipped_or_rejected() {
    let t = Tuple::tcp(a(SRC), 40312, a(DST), 80);
    // Hop-by-hop (PadN) + destination options: skipped, the TCP tuple found after them.
    let mut pkt = with_exts(
        &t,
        &[
            (0, vec![1, 4, 0, 0, 0, 0]),
            (60, vec![1, 4, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0]),
        ],
    );
    let p = parse(&pkt).unwrap();
    assert_eq!((p.tuple, p.l3_len), (t, 40 + 8 + 16));
    // The rewrite edits the TCP header behind them, checksums still right.
    let new = Tuple::tcp(a("fd00:10:244:1::7"), 40312, a("fd00:10:244:2::9"), 8080);
    rewrite(&mut pkt, &p, &new);
    assert_eq!(wire::checksum::verify(&pkt), Ok(()));
    assert_eq!(parse(&pkt).unwrap().tuple, new);
    // A routing header with no segments left is skipped; with segments left, rejected.
    let exhausted = with_exts(&t, &[(43, vec![4, 0, 0, 0, 0, 0])]);
    assert_eq!(parse(&exhausted).unwrap().tuple, t);
    let pending = with_exts(&t, &[(43, vec![4, 1, 0, 0, 0, 0])]);
    assert_eq!(parse(&pending), Err(PacketError::UnsupportedExtension(43)));
    // A fragment header (even the first fragment) is a fragment.
    let frag = with_exts(&t, &[(44, vec![0, 1, 0, 0, 0, 1])]);
    assert_eq!(parse(&frag), Err(PacketError::Fragment));
    // A chain running past the packet is truncated; no next header is unsupported.
    let mut cut = with_exts(&t, &[(0, vec![1, 4, 0, 0, 0, 0])]);
    cut[41] = 200;
    assert!(parse(&cut).is_err());
    let mut none = build6(&t, b"", 64);
    none[6] = 59;
    assert_eq!(parse(&none), Err(PacketError::UnsupportedProtocol(59)));
    // ICMPv4 inside IPv6 is not ICMPv6.
    none[6] = 1;
    assert_eq!(parse(&none), Err(PacketError::UnsupportedProtocol(1)));
}

#[test]
fn icmpv6_echo_identifier_is_the_port() {
    let t = Tuple {
        proto: PROTO_ICMPV6,
        src: a(SRC),
        sport: 77,
        dst: a(DST),
        dport: 77,
    };
    let req = build6(&t, b"ping", 64);
    let p = parse(&req).unwrap();
    assert_eq!(p.tuple, t);
    assert_eq!(p.kind, L4Kind::IcmpEcho { request: true });
    let mut rep = req.clone();
    rep[40] = 129;
    rep[42..44].copy_from_slice(&[0, 0]);
    let c = wire::checksum::l4_checksum(t.src, t.dst, PROTO_ICMPV6, &rep[40..], true);
    rep[42..44].copy_from_slice(&c.to_be_bytes());
    assert_eq!(wire::checksum::verify(&rep), Ok(()));
    assert_eq!(
        parse(&rep).unwrap().kind,
        L4Kind::IcmpEcho { request: false }
    );
    // Neighbour solicitation (135) is not for the engine.
    rep[40] = 135;
    assert_eq!(parse(&rep), Err(PacketError::UnsupportedIcmp(135)));
}

#[test]
fn port_unreachable_is_icmp6_send_shaped() {
    let t = Tuple::tcp(a(SRC), 40312, a(DST), 80);
    let big = build6(&t, &[0x5a; 1400], 64);
    let p = parse(&big).unwrap();
    let icmp = wire::icmp::port_unreachable(&big, &p, a("::"));
    // Type 1 code 4, quoting 1232 bytes: exactly the IPv6 minimum MTU.
    assert_eq!(icmp.len(), 1280);
    assert_eq!((icmp[40], icmp[41]), (1, 4));
    assert_eq!(icmp[7], 64);
    assert_eq!(&icmp[48..], &big[..1232]);
    assert_eq!(wire::checksum::verify(&icmp), Ok(()));
    // The route back picks the source: the ICMPv6 checksum follows.
    let mut icmp = icmp;
    wire::nat::set_source(&mut icmp, a("fd00:10:180::20"));
    assert_eq!(wire::checksum::verify(&icmp), Ok(()));
    let q = parse(&icmp).unwrap();
    assert_eq!((q.tuple.src, q.tuple.dst), (a("fd00:10:180::20"), t.src));
    let L4Kind::IcmpError { inner, .. } = q.kind else {
        panic!("not an ICMPv6 error: {:?}", q.kind)
    };
    assert_eq!(inner, t);
    // A short datagram is quoted whole.
    let small = build6(&t, b"GET /", 64);
    let icmp = wire::icmp::port_unreachable(&small, &parse(&small).unwrap(), a(DST));
    assert_eq!(icmp.len(), 48 + small.len());
    assert_eq!(wire::checksum::verify(&icmp), Ok(()));
}

#[test]
fn time_exceeded_and_packet_too_big_for_either_family() {
    let t = Tuple::tcp(a(SRC), 40312, a(DST), 80);
    let pkt = build6(&t, &[1; 1500], 1);
    let te = wire::icmp::time_exceeded(a("fd00:10:180::fe"), &pkt).unwrap();
    assert_eq!((te[40], te[41], te.len()), (3, 0, 1280));
    assert_eq!(wire::checksum::verify(&te), Ok(()));
    let ptb = wire::icmp::packet_too_big(a("fd00:10:180::fe"), &pkt, 1400).unwrap();
    assert_eq!((ptb[40], ptb[41]), (2, 0));
    assert_eq!(
        u32::from_be_bytes([ptb[44], ptb[45], ptb[46], ptb[47]]),
        1400
    );
    assert_eq!(wire::checksum::verify(&ptb), Ok(()));
    let p = parse(&ptb).unwrap();
    assert!(matches!(p.kind, L4Kind::IcmpError { inner, .. } if inner == t));
    // IPv4: type 3 code 4 with the next-hop MTU, quoting header + 8 bytes.
    let mut v4 = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 1)
        .udp(5, 53)
        .write(&mut v4, &[0; 100])
        .unwrap();
    let ptb4 = wire::icmp::packet_too_big(a("10.0.0.254"), &v4, 1400).unwrap();
    assert_eq!((ptb4[20], ptb4[21], ptb4.len()), (3, 4, 20 + 8 + 28));
    assert_eq!(u16::from_be_bytes([ptb4[26], ptb4[27]]), 1400);
    let te4 = wire::icmp::time_exceeded(a("10.0.0.254"), &v4).unwrap();
    assert_eq!((te4[20], te4[21]), (11, 0));
    assert!(wire::icmp::time_exceeded(a("10.0.0.254"), &[0x50; 40]).is_err());
}

/// The ICMPv6 error of a DNATed flow, translated back (nf_nat_icmpv6_reply_translation):
/// outer and quoted tuples rewritten, every checksum right, and byte-identical to the
/// error the router would have sent about the untranslated datagram.
#[test]
fn icmpv6_error_translation_matches_a_fresh_error() {
    let router = a("fd00:10:180::fe");
    let client = Tuple::tcp(a(SRC), 40312, a(DST), 80);
    let translated = Tuple::tcp(a("fd00:10:180::10"), 40312, a("fd00:10:244:2::9"), 8080);
    for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMPV6] {
        let fix = |t: Tuple| {
            let mut t = Tuple { proto, ..t };
            if proto == PROTO_ICMPV6 {
                t.dport = t.sport;
            }
            t
        };
        let (client, translated) = (fix(client), fix(translated));
        let sent = build6(&translated, &[7; 300], 64);
        let err = wire::icmp::packet_too_big(router, &sent, 1280).unwrap();
        let p = parse(&err).unwrap();
        let mut back = err.clone();
        wire::rewrite_icmp_error(&mut back, &p, router, client.src, &client);
        assert_eq!(wire::checksum::verify(&back), Ok(()), "proto {proto}");
        let q = parse(&back).unwrap();
        assert!(matches!(q.kind, L4Kind::IcmpError { inner, .. } if inner == client));
        let original = build6(&client, &[7; 300], 64);
        let fresh = wire::icmp::packet_too_big(router, &original, 1280).unwrap();
        assert_eq!(back, fresh, "proto {proto}");
    }
}
