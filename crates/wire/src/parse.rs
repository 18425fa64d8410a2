//! A datagram's parsed representation: its flow [`Tuple`] and where its headers are.
//!
//! Strict by design (the engine's view): fragments, unknown protocols and ICMP types other
//! than echo and the errors (3, 11, 12) are errors. Header validation is etherparse's.

use std::net::IpAddr;

use etherparse::{Ipv4HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

use crate::error::PacketError;
use crate::proto::{PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
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
    /// ICMP echo request (`request = true`) or reply; the identifier is the "port".
    IcmpEcho {
        request: bool,
    },
    /// ICMP destination unreachable / time exceeded / parameter problem carrying an
    /// embedded packet whose tuple is `inner`.
    IcmpError {
        /// Offset of the embedded IPv4 header.
        inner_off: usize,
        /// Its header length.
        inner_ihl: usize,
        inner: Tuple,
    },
}

/// A parsed packet: the tuple and where things are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub tuple: Tuple,
    /// IPv4 header length (offset of the L4 header).
    pub ihl: usize,
    /// IPv4 total length (bytes beyond are ignored).
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

/// The "ports" at the start of an L4 header `l4`: TCP/UDP source and destination port,
/// SCTP the common header's ports, ICMP the identifier (bytes 4–5) twice. `None` when too short or another protocol.
pub fn l4_ports(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP if l4.len() >= 4 => Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )),
        PROTO_ICMP if l4.len() >= 6 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            Some((id, id))
        }
        _ => None,
    }
}

/// Tuple of an L4 header in `l4` (at least 8 bytes needed, as an ICMP error quotes).
fn embedded_tuple(
    proto: u8,
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    l4: &[u8],
) -> Result<Tuple, PacketError> {
    if l4.len() < 8 {
        return Err(PacketError::Truncated);
    }
    match proto {
        PROTO_ICMP if l4[0] != 8 && l4[0] != 0 => Err(PacketError::UnsupportedIcmp(l4[0])),
        _ => {
            let (sport, dport) =
                l4_ports(proto, l4).ok_or(PacketError::UnsupportedProtocol(proto))?;
            Ok(Tuple {
                proto,
                src: src.into(),
                sport,
                dst: dst.into(),
                dport,
            })
        }
    }
}

/// Parse an IPv4 packet down to its flow tuple. Never panics on arbitrary input.
pub fn parse(pkt: &[u8]) -> Result<Parsed, PacketError> {
    if pkt.is_empty() {
        return Err(PacketError::Truncated);
    }
    if pkt[0] >> 4 != 4 {
        return Err(PacketError::NotIpv4);
    }
    let ip = ipv4_header(pkt)?;
    let ihl = usize::from(ip.ihl()) * 4;
    let total_len = usize::from(ip.total_len());
    if total_len > pkt.len() || total_len < ihl {
        return Err(PacketError::LengthMismatch {
            total: total_len,
            len: pkt.len(),
        });
    }
    if ip.more_fragments() || ip.fragments_offset().value() != 0 {
        return Err(PacketError::Fragment);
    }
    let (src, dst) = (
        IpAddr::V4(ip.source_addr()),
        IpAddr::V4(ip.destination_addr()),
    );
    let proto = ip.protocol().0;
    let l4 = &pkt[ihl..total_len];
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
        PROTO_ICMP => parse_icmp(l4, ihl, tuple(0, 0))?,
        p => return Err(PacketError::UnsupportedProtocol(p)),
    };
    Ok(Parsed {
        tuple,
        ihl,
        total_len,
        kind,
    })
}

/// ICMP: echo (the identifier is the port) or an error quoting a datagram. `outer` is the
/// tuple with ports 0.
fn parse_icmp(l4: &[u8], ihl: usize, outer: Tuple) -> Result<(Tuple, L4Kind), PacketError> {
    if l4.len() < 8 {
        return Err(PacketError::BadTransportHeader("ICMP"));
    }
    match l4[0] {
        0 | 8 => {
            let tuple = embedded_tuple(outer.proto, outer.src, outer.dst, l4)?;
            Ok((
                tuple,
                L4Kind::IcmpEcho {
                    request: l4[0] == 8,
                },
            ))
        }
        3 | 11 | 12 => {
            let inner_pkt = &l4[8..];
            if inner_pkt.first().map(|b| b >> 4) != Some(4) {
                return Err(PacketError::BadTransportHeader("ICMP error"));
            }
            let inner_ip = ipv4_header(inner_pkt)?;
            let inner_ihl = usize::from(inner_ip.ihl()) * 4;
            let inner = embedded_tuple(
                inner_ip.protocol().0,
                inner_ip.source_addr(),
                inner_ip.destination_addr(),
                &inner_pkt[inner_ihl..],
            )?;
            Ok((
                outer,
                L4Kind::IcmpError {
                    inner_off: ihl + 8,
                    inner_ihl,
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
        assert_eq!(parse(&[0x60; 40]).unwrap_err(), PacketError::NotIpv4);
        assert!(parse(&[0x45, 0, 0, 10]).is_err());
    }
}
