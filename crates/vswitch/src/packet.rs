//! Raw IPv4 datagrams: parse into a [`Summary`], rewrite addresses/ports, build the ICMP
//! errors the fabric itself generates. All parsing goes through etherparse; malformed input
//! is an error, never a panic.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{
    Icmpv4Slice, Icmpv4Type, IpNumber, Ipv4Header, Ipv4HeaderSlice, Ipv4Slice, PacketBuilder,
    TcpSlice, UdpSlice,
};

/// IP protocol numbers used by the lab.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Why a datagram could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("not a valid IPv4 datagram: {0}")]
    Ip(String),
    #[error("malformed {proto} header: {detail}")]
    Transport { proto: &'static str, detail: String },
    #[error("checksum computation failed: {0}")]
    Checksum(String),
}

/// A flow's 5-tuple. For ICMP echo both ports are the echo identifier; for other ICMP 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowTuple {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl FlowTuple {
    pub fn reversed(&self) -> FlowTuple {
        FlowTuple {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
    pub fn src_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.src, self.sport)
    }
    pub fn dst_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.dst, self.dport)
    }
}

impl fmt::Display for FlowTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            PROTO_TCP => "tcp",
            PROTO_UDP => "udp",
            PROTO_ICMP => "icmp",
            _ => "ip",
        };
        write!(
            f,
            "{p} {}:{} → {}:{}",
            self.src, self.sport, self.dst, self.dport
        )
    }
}

/// What a trace needs to know about one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tuple: FlowTuple,
    pub ttl: u8,
    /// TCP flags as letters in tcpdump order: "S", "SA", "A", "PA", "FA", "R", "RA" …
    pub flags: String,
    /// TCP/UDP payload length.
    pub payload_len: usize,
    /// ICMP: (type, code).
    pub icmp: Option<(u8, u8)>,
    /// ICMP errors: the tuple of the datagram quoted inside.
    pub inner: Option<FlowTuple>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tuple;
        match self.icmp {
            Some((ty, code)) => {
                let what = match (ty, code) {
                    (0, _) => "echo reply".to_string(),
                    (8, _) => "echo request".to_string(),
                    (3, 3) => "port unreachable".to_string(),
                    (3, c) => format!("unreachable code {c}"),
                    (11, _) => "time exceeded".to_string(),
                    (t, c) => format!("type {t} code {c}"),
                };
                write!(f, "{} → {} ICMP {what}", t.src, t.dst)?;
                if let Some(inner) = &self.inner {
                    write!(
                        f,
                        " [{}:{} → {}:{}]",
                        inner.src, inner.sport, inner.dst, inner.dport
                    )?;
                }
                Ok(())
            }
            None => {
                write!(f, "{}:{} → {}:{}", t.src, t.sport, t.dst, t.dport)?;
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

fn tcp_flags(tcp: &TcpSlice<'_>) -> String {
    let mut s = String::new();
    if tcp.syn() {
        s.push('S');
    }
    if tcp.fin() {
        s.push('F');
    }
    if tcp.rst() {
        s.push('R');
    }
    if tcp.psh() {
        s.push('P');
    }
    if tcp.ack() {
        s.push('A');
    }
    s
}

/// Parse a datagram's summary.
pub fn summarize(pkt: &[u8]) -> Result<Summary, PacketError> {
    let ip = Ipv4Slice::from_slice(pkt).map_err(|e| PacketError::Ip(e.to_string()))?;
    let h = ip.header();
    let (src, dst, ttl) = (h.source_addr(), h.destination_addr(), h.ttl());
    let proto = h.protocol();
    let payload = ip.payload().payload;
    let mut s = Summary {
        tuple: FlowTuple {
            proto: proto.0,
            src,
            sport: 0,
            dst,
            dport: 0,
        },
        ttl,
        flags: String::new(),
        payload_len: 0,
        icmp: None,
        inner: None,
    };
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
        _ => {}
    }
    Ok(s)
}

/// The tuple of the datagram quoted in an ICMP error (IP header + first 8 bytes).
pub fn quoted_tuple(quoted: &[u8]) -> Option<FlowTuple> {
    let h = Ipv4HeaderSlice::from_slice(quoted).ok()?;
    let rest = &quoted[h.slice().len()..];
    let (sport, dport) = match h.protocol().0 {
        PROTO_TCP | PROTO_UDP if rest.len() >= 4 => (
            u16::from_be_bytes([rest[0], rest[1]]),
            u16::from_be_bytes([rest[2], rest[3]]),
        ),
        PROTO_ICMP if rest.len() >= 6 => {
            let id = u16::from_be_bytes([rest[4], rest[5]]);
            (id, id)
        }
        _ => (0, 0),
    };
    Some(FlowTuple {
        proto: h.protocol().0,
        src: h.source_addr(),
        sport,
        dst: h.destination_addr(),
        dport,
    })
}

/// Rewrite source and/or destination (address and port) of a TCP/UDP datagram, recomputing
/// the IP and transport checksums. Other protocols get only their addresses rewritten.
pub fn rewrite(
    pkt: &[u8],
    new_src: Option<SocketAddrV4>,
    new_dst: Option<SocketAddrV4>,
) -> Result<Vec<u8>, PacketError> {
    let ip = Ipv4Slice::from_slice(pkt).map_err(|e| PacketError::Ip(e.to_string()))?;
    let mut h: Ipv4Header = ip.header().to_header();
    if let Some(s) = new_src {
        h.source = s.ip().octets();
    }
    if let Some(d) = new_dst {
        h.destination = d.ip().octets();
    }
    h.header_checksum = h.calc_header_checksum();
    let payload = ip.payload().payload;
    let mut out = Vec::with_capacity(pkt.len());
    out.extend_from_slice(&h.to_bytes());
    match h.protocol {
        IpNumber::TCP => {
            let tcp = TcpSlice::from_slice(payload).map_err(|e| PacketError::Transport {
                proto: "tcp",
                detail: e.to_string(),
            })?;
            let mut th = tcp.to_header();
            if let Some(s) = new_src {
                th.source_port = s.port();
            }
            if let Some(d) = new_dst {
                th.destination_port = d.port();
            }
            th.checksum = th
                .calc_checksum_ipv4(&h, tcp.payload())
                .map_err(|e| PacketError::Checksum(e.to_string()))?;
            out.extend_from_slice(&th.to_bytes());
            out.extend_from_slice(tcp.payload());
        }
        IpNumber::UDP => {
            let udp = UdpSlice::from_slice(payload).map_err(|e| PacketError::Transport {
                proto: "udp",
                detail: e.to_string(),
            })?;
            let mut uh = udp.to_header();
            if let Some(s) = new_src {
                uh.source_port = s.port();
            }
            if let Some(d) = new_dst {
                uh.destination_port = d.port();
            }
            uh.checksum = uh
                .calc_checksum_ipv4(&h, udp.payload())
                .map_err(|e| PacketError::Checksum(e.to_string()))?;
            out.extend_from_slice(&uh.to_bytes());
            out.extend_from_slice(udp.payload());
        }
        _ => out.extend_from_slice(payload),
    }
    Ok(out)
}

/// Translate an ICMP error (destination unreachable, time exceeded) for a NAT: rewrite the
/// outer source and the quoted datagram's destination address/port, recomputing the quoted
/// IP header checksum, the ICMP checksum and the outer header checksum. (The quoted
/// transport checksum is left as is: the quote is truncated, receivers don't verify it.)
pub fn rewrite_icmp_error(
    pkt: &[u8],
    new_outer_src: Ipv4Addr,
    new_inner_dst: SocketAddrV4,
) -> Result<Vec<u8>, PacketError> {
    let ip = Ipv4Slice::from_slice(pkt).map_err(|e| PacketError::Ip(e.to_string()))?;
    let mut h: Ipv4Header = ip.header().to_header();
    let icmp =
        Icmpv4Slice::from_slice(ip.payload().payload).map_err(|e| PacketError::Transport {
            proto: "icmp",
            detail: e.to_string(),
        })?;
    let quoted = icmp.payload();
    let ih = Ipv4HeaderSlice::from_slice(quoted).map_err(|e| PacketError::Transport {
        proto: "icmp",
        detail: format!("quoted header: {e}"),
    })?;
    let ihl = ih.slice().len();
    let mut inner = ih.to_header();
    inner.destination = new_inner_dst.ip().octets();
    inner.header_checksum = inner.calc_header_checksum();
    let mut new_quote = Vec::with_capacity(quoted.len());
    new_quote.extend_from_slice(&inner.to_bytes());
    let mut rest = quoted[ihl..].to_vec();
    if matches!(inner.protocol.0, PROTO_TCP | PROTO_UDP) && rest.len() >= 4 {
        rest[2..4].copy_from_slice(&new_inner_dst.port().to_be_bytes());
    }
    new_quote.extend_from_slice(&rest);
    let icmp_header = etherparse::Icmpv4Header::with_checksum(icmp.icmp_type(), &new_quote);
    h.source = new_outer_src.octets();
    h.header_checksum = h.calc_header_checksum();
    let mut out = Vec::with_capacity(pkt.len());
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(&icmp_header.to_bytes());
    out.extend_from_slice(&new_quote);
    Ok(out)
}

/// Decrement the TTL in place (header checksum recomputed). Returns the new TTL, or `None`
/// when the TTL was already ≤ 1 (the datagram must not be forwarded; packet unchanged).
pub fn decrement_ttl(pkt: &mut [u8]) -> Result<Option<u8>, PacketError> {
    let hs = Ipv4HeaderSlice::from_slice(pkt).map_err(|e| PacketError::Ip(e.to_string()))?;
    let len = hs.slice().len();
    let mut h = hs.to_header();
    if h.time_to_live <= 1 {
        return Ok(None);
    }
    h.time_to_live -= 1;
    h.header_checksum = h.calc_header_checksum();
    let bytes = h.to_bytes();
    pkt[..len].copy_from_slice(&bytes);
    Ok(Some(h.time_to_live))
}

/// ICMP error quoting `original` (its IP header + 8 bytes, RFC 792), from `from` to the
/// original sender.
fn icmp_error(from: Ipv4Addr, original: &[u8], ty: Icmpv4Type) -> Result<Vec<u8>, PacketError> {
    let hs = Ipv4HeaderSlice::from_slice(original).map_err(|e| PacketError::Ip(e.to_string()))?;
    let quote_len = (hs.slice().len() + 8).min(original.len());
    let builder = PacketBuilder::ipv4(from.octets(), hs.source(), 64).icmpv4(ty);
    let mut out = Vec::with_capacity(builder.size(quote_len));
    builder
        .write(&mut out, &original[..quote_len])
        .map_err(|e| PacketError::Checksum(e.to_string()))?;
    Ok(out)
}

/// ICMP time exceeded in transit (type 11 code 0), sent by a router at `from`.
pub fn time_exceeded(from: Ipv4Addr, original: &[u8]) -> Result<Vec<u8>, PacketError> {
    icmp_error(
        from,
        original,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
    )
}

/// ICMP destination unreachable, code host/port/…, sent by `from`.
pub fn dest_unreachable(
    from: Ipv4Addr,
    original: &[u8],
    code: etherparse::icmpv4::DestUnreachableHeader,
) -> Result<Vec<u8>, PacketError> {
    icmp_error(from, original, Icmpv4Type::DestinationUnreachable(code))
}

/// Build a TCP segment (for tests and tools): flags as in [`Summary::flags`] letters.
pub fn tcp_packet(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), ttl).tcp(
        src.port(),
        dst.port(),
        1000,
        64240,
    );
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
        let q = rewrite(&p, None, Some(sa("10.244.1.16:80"))).unwrap();
        let s2 = summarize(&q).unwrap();
        assert_eq!(s2.tuple.dst_addr(), sa("10.244.1.16:80"));
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
        assert_eq!(inner.dst_addr(), sa("198.51.100.10:80"));
        assert_eq!(inner.src_addr(), sa("203.0.113.11:40312"));
        let ip = Ipv4Slice::from_slice(&q).unwrap();
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let ic = Icmpv4Slice::from_slice(ip.payload().payload).unwrap();
        let expect = etherparse::Icmpv4Header::with_checksum(ic.icmp_type(), ic.payload());
        assert_eq!(ic.checksum(), expect.checksum);
        assert!(rewrite_icmp_error(&p, "1.1.1.1".parse().unwrap(), sa("1.1.1.1:1")).is_err());
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(summarize(&[0x45, 0, 0]).is_err());
        assert!(summarize(&[]).is_err());
        let mut p = vec![0x45u8; 3];
        assert!(decrement_ttl(&mut p).is_err());
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
        let icmp = time_exceeded("203.0.113.1".parse().unwrap(), &p).unwrap();
        let s = summarize(&icmp).unwrap();
        assert_eq!(s.icmp, Some((11, 0)));
        assert_eq!(s.tuple.dst, "203.0.113.11".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.inner.unwrap().dport, 32761);
    }
}
