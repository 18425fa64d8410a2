//! Raw IPv4 and IPv6 datagrams as the fabric sees them: a lenient [`Summary`] for traces (any
//! protocol, TCP flags as letters), the router's TTL / hop-limit handling and ICMP errors, and the load
//! balancer's copy-and-translate helpers. The bytes themselves — tuple, protocol numbers,
//! errors, incremental-checksum NAT — are the shared `wire` crate's; malformed input is an
//! error, never a panic.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use etherparse::{
    Icmpv4Slice, Icmpv4Type, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv4HeaderSlice, Ipv4Slice,
    Ipv6HeaderSlice, Ipv6Slice, PacketBuilder, TcpSlice, UdpSlice,
};

use wire::IpFamily;
pub use wire::{PacketError, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// A flow's 5-tuple: the shared [`wire::Tuple`] under the fabric's name.
pub type FlowTuple = wire::Tuple;

/// What a trace needs to know about one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tuple: FlowTuple,
    pub ttl: u8,
    /// TCP flags as letters in tcpdump order: "S", "SA", "A", "PA", "FA", "R", "RA" …
    pub flags: &'static str,
    /// TCP/UDP payload length.
    pub payload_len: usize,
    /// ICMP or ICMPv6 (the tuple's protocol tells which): (type, code).
    pub icmp: Option<(u8, u8)>,
    /// ICMP errors: the tuple of the datagram quoted inside.
    pub inner: Option<FlowTuple>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tuple;
        match self.icmp {
            Some((ty, code)) => {
                let what = if t.proto == PROTO_ICMPV6 {
                    icmpv6_name(ty, code)
                } else {
                    match (ty, code) {
                        (0, _) => "echo reply".to_string(),
                        (8, _) => "echo request".to_string(),
                        (3, 3) => "port unreachable".to_string(),
                        (3, c) => format!("unreachable code {c}"),
                        (11, _) => "time exceeded".to_string(),
                        (t, c) => format!("type {t} code {c}"),
                    }
                };
                let icmp = if t.proto == PROTO_ICMPV6 {
                    "ICMP6"
                } else {
                    "ICMP"
                };
                write!(f, "{} → {} {icmp} {what}", t.src, t.dst)?;
                if let Some(inner) = &self.inner {
                    write!(f, " [{} → {}]", inner.src_addr(), inner.dst_addr())?;
                }
                Ok(())
            }
            None => {
                // IPv6 addresses in brackets ([2001:db8::11]:40000), IPv4 as a.b.c.d:port.
                write!(f, "{} → {}", t.src_addr(), t.dst_addr())?;
                if !self.flags.is_empty() {
                    write!(f, " {}", self.flags)?;
                }
                if self.payload_len > 0 {
                    write!(f, " len {}", self.payload_len)?;
                }
                Ok(())
            }
        }
    }
}

/// An ICMPv6 message in tcpdump's words (RFC 4443 types and codes).
fn icmpv6_name(ty: u8, code: u8) -> String {
    match (ty, code) {
        (128, _) => "echo request".into(),
        (129, _) => "echo reply".into(),
        (1, 4) => "port unreachable".into(),
        (1, c) => format!("unreachable code {c}"),
        (2, _) => "packet too big".into(),
        (3, _) => "time exceeded".into(),
        (4, c) => format!("parameter problem code {c}"),
        (t, c) => format!("type {t} code {c}"),
    }
}

/// Every combination of the five flags [`tcp_flags`] reports, indexed by S=1, F=2, R=4, P=8,
/// A=16 (static strings: no allocation per summarised packet).
const FLAG_NAMES: [&str; 32] = [
    "", "S", "F", "SF", "R", "SR", "FR", "SFR", "P", "SP", "FP", "SFP", "RP", "SRP", "FRP", "SFRP",
    "A", "SA", "FA", "SFA", "RA", "SRA", "FRA", "SFRA", "PA", "SPA", "FPA", "SFPA", "RPA", "SRPA",
    "FRPA", "SFRPA",
];

fn tcp_flags(tcp: &TcpSlice<'_>) -> &'static str {
    let bits = usize::from(tcp.syn())
        | usize::from(tcp.fin()) << 1
        | usize::from(tcp.rst()) << 2
        | usize::from(tcp.psh()) << 3
        | usize::from(tcp.ack()) << 4;
    FLAG_NAMES[bits]
}

/// Parse a datagram's summary (IPv4 or IPv6, by the version nibble).
pub fn summarize(pkt: &[u8]) -> Result<Summary, PacketError> {
    if pkt.first().is_some_and(|b| b >> 4 == 6) {
        return summarize_v6(pkt);
    }
    let ip = Ipv4Slice::from_slice(pkt).map_err(|e| PacketError::Ip(e.to_string()))?;
    let h = ip.header();
    let (src, dst, ttl) = (h.source_addr(), h.destination_addr(), h.ttl());
    let proto = h.protocol();
    let payload = ip.payload().payload;
    let mut s = Summary {
        tuple: FlowTuple {
            proto: proto.0,
            src: std::net::IpAddr::V4(src),
            sport: 0,
            dst: std::net::IpAddr::V4(dst),
            dport: 0,
        },
        ttl,
        flags: "",
        payload_len: 0,
        icmp: None,
        inner: None,
    };
    match proto {
        IpNumber::ICMP => {
            let icmp = Icmpv4Slice::from_slice(payload).map_err(|e| PacketError::Transport {
                proto: "icmp",
                detail: e.to_string(),
            })?;
            s.icmp = Some((icmp.type_u8(), icmp.code_u8()));
            match icmp.icmp_type() {
                Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => {
                    s.tuple.sport = e.id;
                    s.tuple.dport = e.id;
                }
                Icmpv4Type::DestinationUnreachable(_) | Icmpv4Type::TimeExceeded(_) => {
                    s.inner = quoted_tuple(icmp.payload());
                }
                _ => {}
            }
        }
        other => summarize_ports(&mut s, other, payload)?,
    }
    Ok(s)
}

/// The transport part of a summary shared by both families: TCP, UDP and the ports of other
/// protocols with ports (SCTP).
fn summarize_ports(s: &mut Summary, proto: IpNumber, payload: &[u8]) -> Result<(), PacketError> {
    match proto {
        IpNumber::TCP => {
            let tcp = TcpSlice::from_slice(payload).map_err(|e| PacketError::Transport {
                proto: "tcp",
                detail: e.to_string(),
            })?;
            s.tuple.sport = tcp.source_port();
            s.tuple.dport = tcp.destination_port();
            s.flags = tcp_flags(&tcp);
            s.payload_len = tcp.payload().len();
        }
        IpNumber::UDP => {
            let udp = UdpSlice::from_slice(payload).map_err(|e| PacketError::Transport {
                proto: "udp",
                detail: e.to_string(),
            })?;
            s.tuple.sport = udp.source_port();
            s.tuple.dport = udp.destination_port();
            s.payload_len = udp.payload().len();
        }
        // Other protocols with ports (SCTP): the ports, nothing more.
        other => {
            if let Some((sport, dport)) = wire::l4_ports(other.0, payload) {
                (s.tuple.sport, s.tuple.dport) = (sport, dport);
                s.payload_len = payload.len().saturating_sub(12);
            }
        }
    }
    Ok(())
}

/// [`summarize`] for an IPv6 datagram: the hop limit in `ttl`, extension headers skipped,
/// ICMPv6 echo identifiers as ports and the quoted tuple of ICMPv6 errors.
fn summarize_v6(pkt: &[u8]) -> Result<Summary, PacketError> {
    let ip = Ipv6Slice::from_slice(pkt).map_err(|e| PacketError::Ip(e.to_string()))?;
    let h = ip.header();
    let p = ip.payload();
    let mut s = Summary {
        tuple: FlowTuple {
            proto: p.ip_number.0,
            src: IpAddr::V6(h.source_addr()),
            sport: 0,
            dst: IpAddr::V6(h.destination_addr()),
            dport: 0,
        },
        ttl: h.hop_limit(),
        flags: "",
        payload_len: 0,
        icmp: None,
        inner: None,
    };
    if p.fragmented {
        // Fragments (a Fragment header): no transport summary.
        return Ok(s);
    }
    if p.ip_number != IpNumber::IPV6_ICMP {
        summarize_ports(&mut s, p.ip_number, p.payload)?;
        return Ok(s);
    }
    let icmp = Icmpv6Slice::from_slice(p.payload).map_err(|e| PacketError::Transport {
        proto: "icmpv6",
        detail: e.to_string(),
    })?;
    s.icmp = Some((icmp.type_u8(), icmp.code_u8()));
    match icmp.icmp_type() {
        Icmpv6Type::EchoRequest(e) | Icmpv6Type::EchoReply(e) => {
            s.tuple.sport = e.id;
            s.tuple.dport = e.id;
        }
        Icmpv6Type::DestinationUnreachable(_)
        | Icmpv6Type::PacketTooBig { .. }
        | Icmpv6Type::TimeExceeded(_)
        | Icmpv6Type::ParameterProblem(_) => {
            s.inner = quoted_tuple(icmp.payload());
        }
        _ => {}
    }
    Ok(s)
}

/// The tuple of the datagram quoted in an ICMP error (IP header + first 8 bytes); ports 0
/// when the quote is too short or of another protocol.
pub fn quoted_tuple(quoted: &[u8]) -> Option<FlowTuple> {
    if quoted.first().is_some_and(|b| b >> 4 == 6) {
        // IPv6 fixed header + the first bytes of the payload (extension headers not walked).
        let h = Ipv6HeaderSlice::from_slice(quoted).ok()?;
        let proto = h.next_header().0;
        let (sport, dport) = wire::l4_ports(proto, &quoted[h.slice().len()..]).unwrap_or((0, 0));
        return Some(FlowTuple {
            proto,
            src: IpAddr::V6(h.source_addr()),
            sport,
            dst: IpAddr::V6(h.destination_addr()),
            dport,
        });
    }
    let h = Ipv4HeaderSlice::from_slice(quoted).ok()?;
    let proto = h.protocol().0;
    let (sport, dport) = wire::l4_ports(proto, &quoted[h.slice().len()..]).unwrap_or((0, 0));
    Some(FlowTuple {
        proto,
        src: std::net::IpAddr::V4(h.source_addr()),
        sport,
        dst: std::net::IpAddr::V4(h.destination_addr()),
        dport,
    })
}

/// A copy of `pkt` (up to its IPv4 total length) with the source and/or destination
/// (address and port) replaced; checksums fixed incrementally by [`wire::rewrite`].
pub fn rewrite(
    pkt: &[u8],
    new_src: Option<SocketAddr>,
    new_dst: Option<SocketAddr>,
) -> Result<Vec<u8>, PacketError> {
    let mut out = pkt.to_vec();
    rewrite_in_place(&mut out, new_src, new_dst)?;
    Ok(out)
}

/// [`rewrite`] on the datagram itself (for an owner that forwards it: no copy). On an
/// error the datagram is unchanged.
pub fn rewrite_in_place(
    pkt: &mut Vec<u8>,
    new_src: Option<SocketAddr>,
    new_dst: Option<SocketAddr>,
) -> Result<(), PacketError> {
    let p = wire::parse(pkt)?;
    let mut t = p.tuple;
    if let Some(s) = new_src {
        (t.src, t.sport) = (s.ip(), s.port());
    }
    if let Some(d) = new_dst {
        (t.dst, t.dport) = (d.ip(), d.port());
    }
    if IpFamily::of(t.src) != IpFamily::of(p.tuple.src)
        || IpFamily::of(t.dst) != IpFamily::of(p.tuple.dst)
    {
        return Err(PacketError::Ip("NAT across address families".into()));
    }
    pkt.truncate(p.total_len);
    wire::rewrite(pkt, &p, &t);
    Ok(())
}

/// Translate an ICMP error (destination unreachable, time exceeded) for a NAT: a copy with
/// the outer source and the quoted datagram's destination address/port rewritten, every
/// checksum fixed by [`wire::rewrite_icmp_error`].
pub fn rewrite_icmp_error(
    pkt: &[u8],
    new_outer_src: Ipv4Addr,
    new_inner_dst: SocketAddrV4,
) -> Result<Vec<u8>, PacketError> {
    let p = wire::parse(pkt)?;
    let wire::L4Kind::IcmpError { inner, .. } = p.kind else {
        return Err(PacketError::Transport {
            proto: "icmp",
            detail: "not an ICMP error".into(),
        });
    };
    let mut out = pkt[..p.total_len].to_vec();
    let quoted = FlowTuple {
        dst: std::net::IpAddr::V4(*new_inner_dst.ip()),
        dport: new_inner_dst.port(),
        ..inner
    };
    wire::rewrite_icmp_error(
        &mut out,
        &p,
        std::net::IpAddr::V4(new_outer_src),
        p.tuple.dst,
        &quoted,
    );
    Ok(out)
}

/// Decrement the TTL in place (header checksum recomputed), or an IPv6 datagram's hop limit
/// (no header checksum in IPv6). Returns the new TTL, or `None` when the TTL was already ≤ 1
/// (the datagram must not be forwarded; packet unchanged). Only the TTL byte and the
/// checksum are written (every forwarding hop does this: no header struct round trip).
pub fn decrement_ttl(pkt: &mut [u8]) -> Result<Option<u8>, PacketError> {
    if pkt.first().is_some_and(|b| b >> 4 == 6) {
        // RFC 8200 3: hop limit at byte 7 of the 40-byte fixed header.
        if pkt.len() < 40 {
            return Err(PacketError::Ip("short IPv6 header".into()));
        }
        let hops = pkt[7];
        if hops <= 1 {
            return Ok(None);
        }
        pkt[7] = hops - 1;
        return Ok(Some(hops - 1));
    }
    let len = Ipv4HeaderSlice::from_slice(pkt)
        .map_err(|e| PacketError::Ip(e.to_string()))?
        .slice()
        .len();
    // A valid header slice is at least 20 bytes: TTL at 8, checksum at 10..12.
    let Some(header) = pkt.get_mut(..len).filter(|h| h.len() >= 20) else {
        return Err(PacketError::Ip("short IPv4 header".into()));
    };
    let ttl = header[8];
    if ttl <= 1 {
        return Ok(None);
    }
    header[8] = ttl - 1;
    header[10..12].fill(0);
    let sum = wire::checksum::checksum(header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    Ok(Some(ttl - 1))
}

/// ICMP time exceeded in transit (type 11 code 0), sent by a router at `from`; for an IPv6
/// datagram ICMPv6 time exceeded (type 3 code 0, "hop limit exceeded in transit") from the
/// IPv6 address `from6` (none: no error can be sent, as from a router with no IPv6 address).
pub fn time_exceeded(
    from: Ipv4Addr,
    from6: Option<std::net::Ipv6Addr>,
    original: &[u8],
) -> Result<Vec<u8>, PacketError> {
    if original.first().is_some_and(|b| b >> 4 == 6) {
        let from6 =
            from6.ok_or_else(|| PacketError::Ip("no IPv6 address to answer from".into()))?;
        return time_exceeded_v6(from6, original);
    }
    wire::icmp::error_reply(
        from,
        original,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
    )
}

/// ICMPv6 time exceeded (RFC 4443 3.3) quoting as much of `original` as fits the IPv6
/// minimum MTU (RFC 4443 2.4(c)), addressed to its source.
fn time_exceeded_v6(from: std::net::Ipv6Addr, original: &[u8]) -> Result<Vec<u8>, PacketError> {
    let h = Ipv6HeaderSlice::from_slice(original).map_err(|e| PacketError::Ip(e.to_string()))?;
    // 1280 - IPv6 header (40) - ICMPv6 header (8).
    let quoted = &original[..original.len().min(1232)];
    let ty = Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded);
    let b = PacketBuilder::ipv6(from.octets(), h.source_addr().octets(), 64).icmpv6(ty);
    let mut out = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut out, quoted)
        .map_err(|e| PacketError::Ip(e.to_string()))?;
    Ok(out)
}

/// ICMP destination unreachable, code host/port/…, sent by `from`.
pub fn dest_unreachable(
    from: Ipv4Addr,
    original: &[u8],
    code: etherparse::icmpv4::DestUnreachableHeader,
) -> Result<Vec<u8>, PacketError> {
    wire::icmp::error_reply(from, original, Icmpv4Type::DestinationUnreachable(code))
}

/// Build a TCP segment (for tests and tools): flags as in [`Summary::flags`] letters.
pub fn tcp_packet(
    src: impl Into<SocketAddr>,
    dst: impl Into<SocketAddr>,
    ttl: u8,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = (src.into(), dst.into());
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), ttl),
        (s, d) => PacketBuilder::ipv4(wire::v4(s).octets(), wire::v4(d).octets(), ttl),
    };
    let mut b = ip.tcp(src.port(), dst.port(), 1000, 64240);
    for c in flags.chars() {
        b = match c {
            'S' => b.syn(),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            'A' => b.ack(1),
            _ => b,
        };
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    // Writing into a Vec cannot fail.
    let _ = b.write(&mut out, payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn summary_and_rewrite_keep_checksums_valid() {
        let p = tcp_packet(
            sa("203.0.113.11:40312"),
            sa("10.151.30.11:32761"),
            64,
            "S",
            b"",
        );
        let s = summarize(&p).unwrap();
        assert_eq!(s.to_string(), "203.0.113.11:40312 → 10.151.30.11:32761 S");
        let q = rewrite(&p, None, Some(sa("10.244.1.16:80").into())).unwrap();
        let s2 = summarize(&q).unwrap();
        assert_eq!(
            s2.tuple.dst_addr(),
            std::net::SocketAddr::V4(sa("10.244.1.16:80"))
        );
        // recompute with etherparse and compare
        let ip = Ipv4Slice::from_slice(&q).unwrap();
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let tcp = TcpSlice::from_slice(ip.payload().payload).unwrap();
        assert_eq!(
            tcp.checksum(),
            tcp.to_header()
                .calc_checksum_ipv4(&h, tcp.payload())
                .unwrap()
        );
    }

    #[test]
    fn icmp_error_translation() {
        let p = tcp_packet(
            sa("203.0.113.11:40312"),
            sa("10.151.30.12:32761"),
            63,
            "S",
            b"",
        );
        let icmp = dest_unreachable(
            "10.151.30.12".parse().unwrap(),
            &p,
            etherparse::icmpv4::DestUnreachableHeader::Port,
        )
        .unwrap();
        let q = rewrite_icmp_error(
            &icmp,
            "198.51.100.10".parse().unwrap(),
            sa("198.51.100.10:80"),
        )
        .unwrap();
        let s = summarize(&q).unwrap();
        assert_eq!(s.tuple.src, "198.51.100.10".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.icmp, Some((3, 3)));
        let inner = s.inner.unwrap();
        assert_eq!(
            inner.dst_addr(),
            std::net::SocketAddr::V4(sa("198.51.100.10:80"))
        );
        assert_eq!(
            inner.src_addr(),
            std::net::SocketAddr::V4(sa("203.0.113.11:40312"))
        );
        let ip = Ipv4Slice::from_slice(&q).unwrap();
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let ic = Icmpv4Slice::from_slice(ip.payload().payload).unwrap();
        let expect = etherparse::Icmpv4Header::with_checksum(ic.icmp_type(), ic.payload());
        assert_eq!(ic.checksum(), expect.checksum);
        assert!(rewrite_icmp_error(&p, "1.1.1.1".parse().unwrap(), sa("1.1.1.1:1")).is_err());
    }

    #[test]
    fn sctp_summary_has_ports() {
        let mut p = etherparse::Ipv4Header::new(
            16,
            64,
            IpNumber(wire::PROTO_SCTP),
            [203, 0, 113, 11],
            [10, 151, 30, 11],
        )
        .unwrap()
        .to_bytes()
        .to_vec();
        p.extend_from_slice(&[0x13, 0x88, 0x75, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 4]);
        let s = summarize(&p).unwrap();
        assert_eq!(
            s.tuple.to_string(),
            "sctp 203.0.113.11:5000 → 10.151.30.11:30080"
        );
        assert_eq!(s.payload_len, 4);
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(summarize(&[0x45, 0, 0]).is_err());
        assert!(summarize(&[]).is_err());
        let mut p = vec![0x45u8; 3];
        assert!(decrement_ttl(&mut p).is_err());
    }

    /// The in-place TTL decrement writes what etherparse's header round trip wrote (with
    /// and without options, any TTL and addresses); a TTL of 0 or 1 leaves the datagram.
    #[test]
    fn decrement_ttl_matches_a_header_round_trip() {
        for (k, ttl) in [(0u8, 64u8), (1, 2), (2, 255), (3, 1), (4, 0), (5, 17)] {
            let mut h = etherparse::Ipv4Header::new(
                20,
                ttl,
                IpNumber::TCP,
                [10, 0, k, 1],
                [203, 0, 113, k],
            )
            .unwrap();
            h.identification = 0x1234 + u16::from(k);
            h.dont_fragment = k % 2 == 0;
            if k >= 3 {
                h.options = [1, 1, 1, 0].as_slice().try_into().unwrap();
            }
            h.header_checksum = h.calc_header_checksum();
            let mut p = h.to_bytes().to_vec();
            p.extend_from_slice(&[7u8; 20]);
            let orig = p.clone();
            let got = decrement_ttl(&mut p).unwrap();
            if ttl <= 1 {
                assert_eq!((got, &p), (None, &orig));
                continue;
            }
            let mut want = h.clone();
            want.time_to_live -= 1;
            want.header_checksum = want.calc_header_checksum();
            assert_eq!(got, Some(ttl - 1));
            assert_eq!(&p[..want.header_len()], &want.to_bytes()[..]);
            assert_eq!(&p[want.header_len()..], &orig[want.header_len()..]);
        }
    }

    /// IPv6: summary (hop limit as ttl), hop-limit decrement without a header checksum, and
    /// ICMPv6 time exceeded quoting the original (its checksum over the pseudo-header).
    #[test]
    fn ipv6_summary_hop_limit_and_time_exceeded() {
        let s6 = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut p = tcp_packet(
            s6("[2001:db8::11]:40312"),
            s6("[fd00:151:30::11]:32761"),
            2,
            "S",
            b"",
        );
        let s = summarize(&p).unwrap();
        assert_eq!(
            s.to_string(),
            "[2001:db8::11]:40312 → [fd00:151:30::11]:32761 S"
        );
        assert_eq!(s.ttl, 2);
        let orig = p.clone();
        assert_eq!(decrement_ttl(&mut p).unwrap(), Some(1));
        assert_eq!(p[7], 1);
        assert_eq!((&p[..7], &p[8..]), (&orig[..7], &orig[8..]));
        assert_eq!(decrement_ttl(&mut p).unwrap(), None);
        assert!(decrement_ttl(&mut [0x60u8; 20]).is_err());
        let from: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(time_exceeded("203.0.113.1".parse().unwrap(), None, &p).is_err());
        let icmp = time_exceeded("203.0.113.1".parse().unwrap(), Some(from), &p).unwrap();
        let s = summarize(&icmp).unwrap();
        assert_eq!((s.tuple.proto, s.icmp), (PROTO_ICMPV6, Some((3, 0))));
        assert_eq!(s.tuple.src, IpAddr::V6(from));
        assert_eq!(s.inner.unwrap().dport, 32761);
        assert!(s
            .to_string()
            .ends_with("ICMP6 time exceeded [2001:db8::11:40312 → fd00:151:30::11:32761]"));
        let ip = Ipv6Slice::from_slice(&icmp).unwrap();
        let ic = Icmpv6Slice::from_slice(ip.payload().payload).unwrap();
        let h = ip.header();
        let expect = etherparse::Icmpv6Header::with_checksum(
            ic.icmp_type(),
            h.source_addr().octets(),
            h.destination_addr().octets(),
            ic.payload(),
        )
        .unwrap();
        assert_eq!(ic.checksum(), expect.checksum);
        assert!(summarize(&[0x60, 0, 0]).is_err());
        // NAT never changes a datagram's family.
        let mut q = orig.clone();
        assert!(rewrite_in_place(&mut q, None, Some(s6("10.0.0.1:80"))).is_err());
    }

    #[test]
    fn time_exceeded_quotes_original() {
        let p = tcp_packet(
            sa("203.0.113.11:40312"),
            sa("10.151.30.11:32761"),
            1,
            "S",
            b"",
        );
        let icmp = time_exceeded("203.0.113.1".parse().unwrap(), None, &p).unwrap();
        let s = summarize(&icmp).unwrap();
        assert_eq!(s.icmp, Some((11, 0)));
        assert_eq!(s.tuple.dst, "203.0.113.11".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.inner.unwrap().dport, 32761);
    }
}
