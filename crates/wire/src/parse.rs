//! A datagram's parsed representation: its flow [`Tuple`] and where its headers are.
//!
//! Strict by design (the engine's view): fragments, unknown protocols and ICMP types other
//! than echo and the errors (ICMP 3, 11, 12; ICMPv6 1, 2, 3, 4) are errors. IPv6
//! hop-by-hop, destination-options and (exhausted, segments left 0) routing headers are
//! skipped; a fragment header is [`PacketError::Fragment`]. Header validation is etherparse's.

use std::net::IpAddr;

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

use crate::addr::IpFamily;
use crate::error::PacketError;
use crate::proto::{ipv6_ext, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use crate::tuple::Tuple;

/// What kind of L4 payload a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Kind {
    Tcp {
        flags: u8,
    },
    Udp,
    /// SCTP; `chunk` is the type of the first chunk (0 when the packet has none).
    Sctp {
        chunk: u8,
    },
    /// ICMP / ICMPv6 echo request (`request = true`) or reply; the identifier is the "port".
    IcmpEcho {
        request: bool,
    },
    /// ICMP destination unreachable / time exceeded / parameter problem, or ICMPv6
    /// destination unreachable / packet too big / time exceeded / parameter problem,
    /// carrying an embedded packet (of the same family) whose tuple is `inner`.
    IcmpError {
        /// Offset of the embedded IP header.
        inner_off: usize,
        /// Its header length (IPv6: with the extension headers skipped).
        inner_l3_len: usize,
        inner: Tuple,
    },
}

/// A parsed packet: the tuple and where things are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub tuple: Tuple,
    /// IPv4 or IPv6 (the tuple's addresses are of this family).
    pub family: IpFamily,
    /// Offset of the L4 header: the IPv4 header length, or the IPv6 fixed header plus the
    /// extension headers skipped.
    pub l3_len: usize,
    /// IPv4 total length / IPv6 40 + payload length (bytes beyond are ignored).
    pub total_len: usize,
    pub kind: L4Kind,
}

pub(crate) fn ipv4_header(pkt: &[u8]) -> Result<Ipv4HeaderSlice<'_>, PacketError> {
    use etherparse::err::ipv4::HeaderError as H;
    use etherparse::err::ipv4::HeaderSliceError as E;
    Ipv4HeaderSlice::from_slice(pkt).map_err(|e| match e {
        E::Len(_) => PacketError::Truncated,
        E::Content(H::UnexpectedVersion { .. }) => PacketError::NotIpv4,
        E::Content(_) => PacketError::BadHeaderLength,
    })
}

/// The IPv6 fixed header at the start of `pkt` and where its L4 header starts
/// (`(header, next header, offset)`), extension headers skipped within `pkt`.
pub(crate) fn ipv6_header(pkt: &[u8]) -> Result<(Ipv6HeaderSlice<'_>, u8, usize), PacketError> {
    let ip = Ipv6HeaderSlice::from_slice(pkt).map_err(|e| match e {
        etherparse::err::ipv6::HeaderSliceError::Len(_) => PacketError::Truncated,
        etherparse::err::ipv6::HeaderSliceError::Content(_) => PacketError::NotIp(pkt[0] >> 4),
    })?;
    let (next, off) = skip_ipv6_exts(pkt, ip.next_header().0, 40)?;
    Ok((ip, next, off))
}

/// Skip the IPv6 extension headers starting with `next` at `off` (RFC 8200 §4): hop-by-hop
/// and destination options always, a routing header when no segments are left (else the
/// pseudo-header's destination would be the last segment, not the header's: rejected). A
/// fragment header is a fragment. Returns the upper-layer protocol and its offset.
fn skip_ipv6_exts(pkt: &[u8], mut next: u8, mut off: usize) -> Result<(u8, usize), PacketError> {
    // RFC 8200 §4.1 allows each at most once or twice: 8 bounds any legal chain.
    for _ in 0..8 {
        match next {
            ipv6_ext::HOP_BY_HOP | ipv6_ext::DEST_OPTS | ipv6_ext::ROUTING => {}
            ipv6_ext::FRAGMENT => return Err(PacketError::Fragment),
            _ => return Ok((next, off)),
        }
        let h = pkt.get(off..off + 8).ok_or(PacketError::Truncated)?;
        if next == ipv6_ext::ROUTING && h[3] != 0 {
            return Err(PacketError::UnsupportedExtension(next));
        }
        next = h[0];
        off += (usize::from(h[1]) + 1) * 8;
        if off > pkt.len() {
            return Err(PacketError::Truncated);
        }
    }
    Err(PacketError::UnsupportedExtension(next))
}

/// The "ports" at the start of an L4 header `l4`: TCP/UDP source and destination port,
/// SCTP the common header's ports, ICMP/ICMPv6 the identifier (bytes 4–5) twice. `None`
/// when too short or another protocol.
pub fn l4_ports(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP if l4.len() >= 4 => Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )),
        PROTO_ICMP | PROTO_ICMPV6 if l4.len() >= 6 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            Some((id, id))
        }
        _ => None,
    }
}

/// The ICMP protocol of `family` and its echo request / reply types.
fn icmp_of(family: IpFamily) -> (u8, u8, u8) {
    match family {
        IpFamily::V4 => (PROTO_ICMP, 8, 0),
        IpFamily::V6 => (PROTO_ICMPV6, 128, 129),
    }
}

/// Tuple of an L4 header in `l4` (at least 8 bytes needed, as an ICMP error quotes).
fn embedded_tuple(proto: u8, src: IpAddr, dst: IpAddr, l4: &[u8]) -> Result<Tuple, PacketError> {
    if l4.len() < 8 {
        return Err(PacketError::Truncated);
    }
    let (icmp, req, rep) = icmp_of(IpFamily::of(src));
    if proto == icmp && l4[0] != req && l4[0] != rep {
        return Err(PacketError::UnsupportedIcmp(l4[0]));
    }
    if matches!(proto, PROTO_ICMP | PROTO_ICMPV6) && proto != icmp {
        return Err(PacketError::UnsupportedProtocol(proto));
    }
    let (sport, dport) = l4_ports(proto, l4).ok_or(PacketError::UnsupportedProtocol(proto))?;
    Ok(Tuple {
        proto,
        src,
        sport,
        dst,
        dport,
    })
}

/// Where a datagram's L3 header says things are: addresses, protocol, L4 offset, length.
struct L3 {
    family: IpFamily,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l3_len: usize,
    total_len: usize,
}

fn l3_v4(pkt: &[u8]) -> Result<L3, PacketError> {
    let ip = ipv4_header(pkt)?;
    let l3_len = usize::from(ip.ihl()) * 4;
    let total_len = usize::from(ip.total_len());
    if total_len > pkt.len() || total_len < l3_len {
        return Err(PacketError::LengthMismatch {
            total: total_len,
            len: pkt.len(),
        });
    }
    if ip.more_fragments() || ip.fragments_offset().value() != 0 {
        return Err(PacketError::Fragment);
    }
    Ok(L3 {
        family: IpFamily::V4,
        src: IpAddr::V4(ip.source_addr()),
        dst: IpAddr::V4(ip.destination_addr()),
        proto: ip.protocol().0,
        l3_len,
        total_len,
    })
}

fn l3_v6(pkt: &[u8]) -> Result<L3, PacketError> {
    let fixed = Ipv6HeaderSlice::from_slice(pkt).map_err(|_| PacketError::Truncated)?;
    // A payload length of 0 with a jumbo option (RFC 2675) is not supported: too short.
    let total_len = 40 + usize::from(fixed.payload_length());
    if total_len > pkt.len() {
        return Err(PacketError::LengthMismatch {
            total: total_len,
            len: pkt.len(),
        });
    }
    let (ip, proto, l3_len) = ipv6_header(&pkt[..total_len])?;
    Ok(L3 {
        family: IpFamily::V6,
        src: IpAddr::V6(ip.source_addr()),
        dst: IpAddr::V6(ip.destination_addr()),
        proto,
        l3_len,
        total_len,
    })
}

/// Parse an IPv4 or IPv6 packet down to its flow tuple. Never panics on arbitrary input.
pub fn parse(pkt: &[u8]) -> Result<Parsed, PacketError> {
    let l3 = match pkt.first().map(|b| b >> 4) {
        None => return Err(PacketError::Truncated),
        Some(4) => l3_v4(pkt)?,
        Some(6) => l3_v6(pkt)?,
        Some(v) => return Err(PacketError::NotIp(v)),
    };
    let L3 {
        family,
        src,
        dst,
        proto,
        l3_len,
        total_len,
    } = l3;
    let l4 = &pkt[l3_len..total_len];
    let tuple = |sport, dport| Tuple {
        proto,
        src,
        sport,
        dst,
        dport,
    };
    let (tuple, kind) = match proto {
        PROTO_TCP => {
            let tcp = TcpHeaderSlice::from_slice(l4)
                .map_err(|_| PacketError::BadTransportHeader("TCP"))?;
            let flags = l4[13];
            (
                tuple(tcp.source_port(), tcp.destination_port()),
                L4Kind::Tcp { flags },
            )
        }
        PROTO_UDP => {
            let udp = UdpHeaderSlice::from_slice(l4)
                .map_err(|_| PacketError::BadTransportHeader("UDP"))?;
            (
                tuple(udp.source_port(), udp.destination_port()),
                L4Kind::Udp,
            )
        }
        PROTO_SCTP => {
            // Common header: ports, verification tag, CRC32c (RFC 9260 §3.1).
            if l4.len() < 12 {
                return Err(PacketError::BadTransportHeader("SCTP"));
            }
            let (sport, dport) = l4_ports(proto, l4).unwrap_or((0, 0));
            let chunk = l4.get(12).copied().unwrap_or(0);
            (tuple(sport, dport), L4Kind::Sctp { chunk })
        }
        p if p == icmp_of(family).0 => parse_icmp(l4, l3_len, tuple(0, 0))?,
        p => return Err(PacketError::UnsupportedProtocol(p)),
    };
    Ok(Parsed {
        tuple,
        family,
        l3_len,
        total_len,
        kind,
    })
}

/// The tuple of the datagram an ICMP error quotes (`quoted`, of the error's `family`) and
/// its header length.
fn quoted_tuple(family: IpFamily, quoted: &[u8]) -> Result<(Tuple, usize), PacketError> {
    let want = match family {
        IpFamily::V4 => 4,
        IpFamily::V6 => 6,
    };
    if quoted.first().map(|b| b >> 4) != Some(want) {
        return Err(PacketError::BadTransportHeader("ICMP error"));
    }
    let (proto, src, dst, l3_len) = match family {
        IpFamily::V4 => {
            let ip = ipv4_header(quoted)?;
            let (src, dst) = (ip.source_addr().into(), ip.destination_addr().into());
            (ip.protocol().0, src, dst, usize::from(ip.ihl()) * 4)
        }
        IpFamily::V6 => {
            let (ip, proto, off) = ipv6_header(quoted)?;
            let (src, dst) = (ip.source_addr().into(), ip.destination_addr().into());
            (proto, src, dst, off)
        }
    };
    let l4 = quoted.get(l3_len..).ok_or(PacketError::Truncated)?;
    Ok((embedded_tuple(proto, src, dst, l4)?, l3_len))
}

/// ICMP / ICMPv6: echo (the identifier is the port) or an error quoting a datagram.
/// `outer` is the tuple with ports 0.
fn parse_icmp(l4: &[u8], l3_len: usize, outer: Tuple) -> Result<(Tuple, L4Kind), PacketError> {
    let family = IpFamily::of(outer.src);
    if l4.len() < 8 {
        return Err(PacketError::BadTransportHeader(match family {
            IpFamily::V4 => "ICMP",
            IpFamily::V6 => "ICMPv6",
        }));
    }
    let (_, req, rep) = icmp_of(family);
    let is_error = match family {
        IpFamily::V4 => matches!(l4[0], 3 | 11 | 12),
        IpFamily::V6 => matches!(l4[0], 1..=4),
    };
    match l4[0] {
        t if t == req || t == rep => {
            let tuple = embedded_tuple(outer.proto, outer.src, outer.dst, l4)?;
            Ok((tuple, L4Kind::IcmpEcho { request: t == req }))
        }
        _ if is_error => {
            let (inner, inner_l3_len) = quoted_tuple(family, &l4[8..])?;
            Ok((
                outer,
                L4Kind::IcmpError {
                    inner_off: l3_len + 8,
                    inner_l3_len,
                    inner,
                },
            ))
        }
        t => Err(PacketError::UnsupportedIcmp(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse(&[]), Err(PacketError::Truncated));
        assert_eq!(parse(&[0x50; 40]).unwrap_err(), PacketError::NotIp(5));
        assert!(matches!(
            parse(&[0x60; 40]),
            Err(PacketError::LengthMismatch { .. })
        ));
        assert!(parse(&[0x45, 0, 0, 10]).is_err());
    }
}
