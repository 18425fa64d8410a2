//! IPv4 packet parsing and in-place NAT rewrite with RFC 1624 incremental checksums.
//!
//! Owns the wire format: extracting a flow [`Tuple`] (TCP/UDP ports, ICMP echo identifier,
//! or the embedded packet of an ICMP error), rewriting addresses/ports in place while keeping
//! the IPv4 header and TCP/UDP (pseudo-header) checksums valid, and building the ICMP
//! port-unreachable that REJECT sends. Header validation is etherparse's; nothing here
//! decides policy or touches conntrack.

use std::net::Ipv4Addr;

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Ipv4HeaderSlice, PacketBuilder, TcpHeaderSlice,
    UdpHeaderSlice,
};

use crate::conntrack::Tuple;

/// IP protocol numbers handled here.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Why a packet could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet truncated")]
    Truncated,
    #[error("not an IPv4 packet")]
    NotIpv4,
    #[error("bad IPv4 header length")]
    BadHeaderLength,
    #[error("IPv4 total length {total} does not match the {len} bytes received")]
    LengthMismatch { total: usize, len: usize },
    #[error("IPv4 fragment (not reassembled)")]
    Fragment,
    #[error("unsupported IP protocol {0}")]
    UnsupportedProtocol(u8),
    #[error("unsupported ICMP type {0}")]
    UnsupportedIcmp(u8),
    #[error("malformed {0} header")]
    BadTransportHeader(&'static str),
}

/// What kind of L4 payload a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Kind {
    Tcp {
        flags: u8,
    },
    Udp,
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

fn ipv4_header(pkt: &[u8]) -> Result<Ipv4HeaderSlice<'_>, PacketError> {
    use etherparse::err::ipv4::HeaderError as H;
    use etherparse::err::ipv4::HeaderSliceError as E;
    Ipv4HeaderSlice::from_slice(pkt).map_err(|e| match e {
        E::Len(_) => PacketError::Truncated,
        E::Content(H::UnexpectedVersion { .. }) => PacketError::NotIpv4,
        E::Content(_) => PacketError::BadHeaderLength,
    })
}

/// Ports (or ICMP echo id) of an L4 header in `l4` (at least 8 bytes needed for embedded).
fn embedded_tuple(
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    l4: &[u8],
) -> Result<Tuple, PacketError> {
    if l4.len() < 8 {
        return Err(PacketError::Truncated);
    }
    match proto {
        PROTO_TCP | PROTO_UDP => Ok(Tuple {
            proto,
            src,
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dst,
            dport: u16::from_be_bytes([l4[2], l4[3]]),
        }),
        PROTO_ICMP if l4[0] == 8 || l4[0] == 0 => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            Ok(Tuple {
                proto,
                src,
                sport: id,
                dst,
                dport: id,
            })
        }
        PROTO_ICMP => Err(PacketError::UnsupportedIcmp(l4[0])),
        p => Err(PacketError::UnsupportedProtocol(p)),
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
    let src = ip.source_addr();
    let dst = ip.destination_addr();
    let proto = ip.protocol().0;
    let l4 = &pkt[ihl..total_len];
    match proto {
        PROTO_TCP => {
            let tcp = TcpHeaderSlice::from_slice(l4)
                .map_err(|_| PacketError::BadTransportHeader("TCP"))?;
            let flags = l4[13];
            Ok(Parsed {
                tuple: Tuple {
                    proto,
                    src,
                    sport: tcp.source_port(),
                    dst,
                    dport: tcp.destination_port(),
                },
                ihl,
                total_len,
                kind: L4Kind::Tcp { flags },
            })
        }
        PROTO_UDP => {
            let udp = UdpHeaderSlice::from_slice(l4)
                .map_err(|_| PacketError::BadTransportHeader("UDP"))?;
            Ok(Parsed {
                tuple: Tuple {
                    proto,
                    src,
                    sport: udp.source_port(),
                    dst,
                    dport: udp.destination_port(),
                },
                ihl,
                total_len,
                kind: L4Kind::Udp,
            })
        }
        PROTO_ICMP => {
            if l4.len() < 8 {
                return Err(PacketError::BadTransportHeader("ICMP"));
            }
            match l4[0] {
                0 | 8 => {
                    let tuple = embedded_tuple(proto, src, dst, l4)?;
                    Ok(Parsed {
                        tuple,
                        ihl,
                        total_len,
                        kind: L4Kind::IcmpEcho {
                            request: l4[0] == 8,
                        },
                    })
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
                    Ok(Parsed {
                        tuple: Tuple {
                            proto,
                            src,
                            sport: 0,
                            dst,
                            dport: 0,
                        },
                        ihl,
                        total_len,
                        kind: L4Kind::IcmpError {
                            inner_off: ihl + 8,
                            inner_ihl,
                            inner,
                        },
                    })
                }
                t => Err(PacketError::UnsupportedIcmp(t)),
            }
        }
        p => Err(PacketError::UnsupportedProtocol(p)),
    }
}

// ---------------------------------------------------------------- checksums

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for a 32-bit field change.
#[inline]
pub fn csum_replace4(csum: u16, old: u32, new: u32) -> u16 {
    let mut sum = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// RFC 1624 eqn. 3 for a 16-bit field change.
#[inline]
pub fn csum_replace2(csum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Full Internet checksum of `data` (one's complement of the one's complement sum).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[inline]
fn rd16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline]
fn wr16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Where the L4 checksum lives for `proto` (relative to the L4 header), if it covers a
/// pseudo-header (TCP/UDP) or not (ICMP).
fn l4_csum_off(proto: u8) -> Option<(usize, bool)> {
    match proto {
        PROTO_TCP => Some((16, true)),
        PROTO_UDP => Some((6, true)),
        PROTO_ICMP => Some((2, false)),
        _ => None,
    }
}

/// Rewrite an IPv4 header address (`src = true` for the source) at `ip_off` and fix the IP
/// header checksum; returns the old value. The L4 checksum is the caller's.
fn set_ip_addr(pkt: &mut [u8], ip_off: usize, src: bool, new: Ipv4Addr) -> u32 {
    let off = ip_off + if src { 12 } else { 16 };
    let old = rd32(pkt, off);
    let new = u32::from(new);
    if old != new {
        pkt[off..off + 4].copy_from_slice(&new.to_be_bytes());
        let c = csum_replace4(rd16(pkt, ip_off + 10), old, new);
        wr16(pkt, ip_off + 10, c);
    }
    old
}

/// Update a TCP/UDP checksum field at `off` for a 32-bit change; UDP checksum 0 stays 0
/// and a computed 0 is sent as 0xffff (RFC 768).
fn fix_l4_csum4(pkt: &mut [u8], off: usize, proto: u8, old: u32, new: u32) {
    if off + 2 > pkt.len() || old == new {
        return;
    }
    let c = rd16(pkt, off);
    if proto == PROTO_UDP && c == 0 {
        return;
    }
    let mut n = csum_replace4(c, old, new);
    if proto == PROTO_UDP && n == 0 {
        n = 0xffff;
    }
    wr16(pkt, off, n);
}

fn fix_l4_csum2(pkt: &mut [u8], off: usize, proto: u8, old: u16, new: u16) {
    if off + 2 > pkt.len() || old == new {
        return;
    }
    let c = rd16(pkt, off);
    if proto == PROTO_UDP && c == 0 {
        return;
    }
    let mut n = csum_replace2(c, old, new);
    if proto == PROTO_UDP && n == 0 {
        n = 0xffff;
    }
    wr16(pkt, off, n);
}

/// Accumulate a 16-bit field change `old → new` into a one's-complement delta.
#[inline]
fn delta16(acc: u32, old: u16, new: u16) -> u32 {
    acc + u32::from(!old) + u32::from(new)
}

#[inline]
fn delta32(acc: u32, old: u32, new: u32) -> u32 {
    delta16(
        delta16(acc, (old >> 16) as u16, (new >> 16) as u16),
        old as u16,
        new as u16,
    )
}

/// RFC 1624 eqn. 3 with an accumulated delta: `HC' = ~(~HC + Σ(~m + m'))`.
#[inline]
fn apply_delta(csum: u16, acc: u32) -> u16 {
    let mut sum = u32::from(!csum) + (acc & 0xffff) + (acc >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Rewrite the packet so that its tuple becomes `(new.src:new.sport → new.dst:new.dport)`,
/// incrementally fixing checksums (one update per checksum field for all changed words).
/// For ICMP echo the identifier is set to `new.sport`. `p` must come from [`parse`] of this
/// very buffer; ICMP errors are left alone (see [`rewrite_icmp_error`]).
pub fn rewrite(pkt: &mut [u8], p: &Parsed, new: &Tuple) {
    let l4 = p.ihl;
    let old_src = rd32(pkt, 12);
    let old_dst = rd32(pkt, 16);
    let (new_src, new_dst) = (u32::from(new.src), u32::from(new.dst));
    let addr_delta = delta32(delta32(0, old_src, new_src), old_dst, new_dst);
    if old_src != new_src || old_dst != new_dst {
        pkt[12..16].copy_from_slice(&new_src.to_be_bytes());
        pkt[16..20].copy_from_slice(&new_dst.to_be_bytes());
        let c = apply_delta(rd16(pkt, 10), addr_delta);
        wr16(pkt, 10, c);
    }
    match p.kind {
        L4Kind::Tcp { .. } | L4Kind::Udp => {
            let (old_sp, old_dp) = (rd16(pkt, l4), rd16(pkt, l4 + 2));
            let acc = delta16(delta16(addr_delta, old_sp, new.sport), old_dp, new.dport);
            wr16(pkt, l4, new.sport);
            wr16(pkt, l4 + 2, new.dport);
            let off = l4 + if p.tuple.proto == PROTO_TCP { 16 } else { 6 };
            let c = rd16(pkt, off);
            if p.tuple.proto == PROTO_UDP && c == 0 {
                return; // no checksum
            }
            let mut n = apply_delta(c, acc);
            if p.tuple.proto == PROTO_UDP && n == 0 {
                n = 0xffff;
            }
            wr16(pkt, off, n);
        }
        L4Kind::IcmpEcho { .. } => {
            // ICMP has no pseudo-header: only the identifier matters.
            let old = rd16(pkt, l4 + 4);
            if old != new.sport {
                wr16(pkt, l4 + 4, new.sport);
                let c = csum_replace2(rd16(pkt, l4 + 2), old, new.sport);
                wr16(pkt, l4 + 2, c);
            }
        }
        L4Kind::IcmpError { .. } => {}
    }
}

/// Translate an ICMP error: outer addresses become `outer_src → outer_dst`, the embedded
/// packet's tuple becomes `inner` (its IP checksum and, when present in the quoted bytes, its
/// L4 checksum fixed incrementally), and the ICMP checksum is recomputed.
pub fn rewrite_icmp_error(
    pkt: &mut [u8],
    p: &Parsed,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner: &Tuple,
) {
    let L4Kind::IcmpError {
        inner_off,
        inner_ihl,
        inner: old_inner,
    } = p.kind
    else {
        return;
    };
    set_ip_addr(pkt, 0, true, outer_src);
    set_ip_addr(pkt, 0, false, outer_dst);
    let end = p.total_len;
    let iproto = old_inner.proto;
    let il4 = inner_off + inner_ihl;
    let csum_off = l4_csum_off(iproto).map(|(o, pseudo)| (il4 + o, pseudo));
    for (is_src, addr) in [(true, inner.src), (false, inner.dst)] {
        let old = set_ip_addr(pkt, inner_off, is_src, addr);
        if let Some((off, true)) = csum_off {
            if off + 2 <= end {
                fix_l4_csum4(pkt, off, iproto, old, u32::from(addr));
            }
        }
    }
    match iproto {
        PROTO_TCP | PROTO_UDP => {
            for (off, port) in [(il4, inner.sport), (il4 + 2, inner.dport)] {
                let old = rd16(pkt, off);
                if old != port {
                    wr16(pkt, off, port);
                    if let Some((coff, _)) = csum_off {
                        if coff + 2 <= end {
                            fix_l4_csum2(pkt, coff, iproto, old, port);
                        }
                    }
                }
            }
        }
        PROTO_ICMP => {
            let old = rd16(pkt, il4 + 4);
            if old != inner.sport {
                wr16(pkt, il4 + 4, inner.sport);
                let c = csum_replace2(rd16(pkt, il4 + 2), old, inner.sport);
                wr16(pkt, il4 + 2, c);
            }
        }
        _ => {}
    }
    let icmp = p.ihl;
    wr16(pkt, icmp + 2, 0);
    let c = checksum(&pkt[icmp..end]);
    wr16(pkt, icmp + 2, c);
}

/// The most an ICMP error may occupy (RFC 1812 4.3.2.3; net/ipv4/icmp.c `__icmp_send`:
/// "return as much as we can without exceeding 576 bytes").
pub const ICMP_ERROR_MAX: usize = 576;

/// REJECT `--reject-with icmp-port-unreachable` as net/ipv4/icmp.c `__icmp_send` builds it: a
/// complete IPv4 ICMP type 3 code 3 packet from `src` back to the sender (see
/// [`crate::Verdict::Reject`] for `src`), TTL 64, TOS `RT_TOS(orig) | IPTOS_PREC_INTERNETCONTROL`,
/// quoting as much of the original datagram as fits in [`ICMP_ERROR_MAX`] bytes (up to 548:
/// 576 − 20-byte IP header − 8-byte ICMP header).
pub fn icmp_port_unreachable(orig: &[u8], p: &Parsed, src: Ipv4Addr) -> Vec<u8> {
    let room = ICMP_ERROR_MAX - 20 - 8;
    let quoted = &orig[..p.total_len.min(orig.len()).min(room)];
    let builder = PacketBuilder::ipv4(src.octets(), p.tuple.src.octets(), 64).icmpv4(
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
    );
    let mut out = Vec::with_capacity(builder.size(quoted.len()));
    // Writing into a Vec cannot fail; the payload is far below the IPv4 size limit.
    let _ = builder.write(&mut out, quoted);
    if out.len() >= 20 && !orig.is_empty() {
        let tos = (orig[1] & 0x1e) | 0xc0;
        let c = csum_replace2(rd16(&out, 10), u16::from(out[1]), u16::from(tos));
        out[1] = tos;
        wr16(&mut out, 10, c);
    }
    out
}

/// Set an IPv4 datagram's source address, fixing the header checksum only (for ICMP, whose
/// checksum does not cover the IP header: e.g. a REJECT answer built with source 0.0.0.0).
pub fn set_ipv4_source(pkt: &mut [u8], src: Ipv4Addr) {
    if pkt.len() >= 20 {
        set_ip_addr(pkt, 0, true, src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(csum_replace2(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse(&[]), Err(PacketError::Truncated));
        assert_eq!(parse(&[0x60; 40]).unwrap_err(), PacketError::NotIpv4);
        assert!(parse(&[0x45, 0, 0, 10]).is_err());
    }
}
