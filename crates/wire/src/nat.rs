//! In-place NAT rewrite of IPv4 datagrams, checksums fixed incrementally (RFC 1624).
//!
//! [`rewrite`] gives a datagram a new tuple (addresses, ports or the ICMP echo identifier);
//! [`rewrite_icmp_error`] translates an ICMP error and the datagram it quotes, as
//! `nf_nat_icmp_reply_translation` does. Both take the [`Parsed`] of the buffer they edit.

use std::net::{IpAddr, Ipv4Addr};

use crate::addr::v4;
use crate::checksum::{
    apply_delta, checksum, csum_replace2, csum_replace4, delta16, delta32, sctp_crc32c,
};
use crate::parse::{L4Kind, Parsed};
use crate::proto::{PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use crate::tuple::Tuple;

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

/// Set an IPv4 datagram's source address, fixing the header checksum only: for ICMP, whose
/// checksum does not cover the IP header (a REJECT answer built with source 0.0.0.0 gets
/// the address of the route back to the sender). Datagrams shorter than 20 bytes are left.
pub fn set_ipv4_source(pkt: &mut [u8], src: Ipv4Addr) {
    if pkt.len() >= 20 {
        set_ip_addr(pkt, 0, true, src);
    }
}

/// Set an IPv4 datagram's TOS byte, fixing the header checksum.
pub fn set_tos(pkt: &mut [u8], tos: u8) {
    if pkt.len() >= 20 && pkt[1] != tos {
        let c = csum_replace2(rd16(pkt, 10), u16::from(pkt[1]), u16::from(tos));
        pkt[1] = tos;
        wr16(pkt, 10, c);
    }
}

/// Apply the accumulated one's-complement delta `acc` to the TCP/UDP checksum at `off`
/// (skipped when the field is beyond the bytes present); UDP checksum 0 ("none") stays 0
/// and a computed 0 is sent as 0xffff (RFC 768).
fn fix_l4_csum(pkt: &mut [u8], off: usize, proto: u8, acc: u32) {
    if off + 2 > pkt.len() {
        return;
    }
    let c = rd16(pkt, off);
    if proto == PROTO_UDP && c == 0 {
        return;
    }
    let mut n = apply_delta(c, acc);
    if proto == PROTO_UDP && n == 0 {
        n = 0xffff;
    }
    wr16(pkt, off, n);
}

/// Rewrite the packet so that its tuple becomes `(new.src:new.sport → new.dst:new.dport)`,
/// incrementally fixing checksums (one update per checksum field for all changed words).
/// For ICMP echo the identifier is set to `new.sport`. `p` must come from [`crate::parse()`] of this
/// very buffer; ICMP errors are left alone (see [`rewrite_icmp_error`]).
pub fn rewrite(pkt: &mut [u8], p: &Parsed, new: &Tuple) {
    let l4 = p.ihl;
    let old_src = rd32(pkt, 12);
    let old_dst = rd32(pkt, 16);
    let (new_src, new_dst) = (u32::from(v4(new.src)), u32::from(v4(new.dst)));
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
            fix_l4_csum(pkt, off, p.tuple.proto, acc);
        }
        L4Kind::Sctp { .. } => {
            // No pseudo-header: only the ports change, and the CRC32c over the whole SCTP
            // packet is recomputed (it cannot be updated incrementally), as nf_nat_sctp does.
            wr16(pkt, l4, new.sport);
            wr16(pkt, l4 + 2, new.dport);
            let crc = sctp_crc32c(&pkt[l4..p.total_len]);
            pkt[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
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
    outer_src: IpAddr,
    outer_dst: IpAddr,
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
    set_ip_addr(pkt, 0, true, v4(outer_src));
    set_ip_addr(pkt, 0, false, v4(outer_dst));
    let end = p.total_len;
    let iproto = old_inner.proto;
    let il4 = inner_off + inner_ihl;
    let csum_off = l4_csum_off(iproto).map(|(o, pseudo)| (il4 + o, pseudo));
    for (is_src, addr) in [(true, inner.src), (false, inner.dst)] {
        let (old, new) = (
            set_ip_addr(pkt, inner_off, is_src, v4(addr)),
            u32::from(v4(addr)),
        );
        if let (Some((off, true)), true) = (csum_off, old != new) {
            if off + 2 <= end {
                fix_l4_csum(pkt, off, iproto, delta32(0, old, new));
            }
        }
    }
    match iproto {
        // The quoted SCTP CRC32c (bytes 8–11) would need the whole packet: left as is.
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            for (off, port) in [(il4, inner.sport), (il4 + 2, inner.dport)] {
                let old = rd16(pkt, off);
                if old != port {
                    wr16(pkt, off, port);
                    if let Some((coff, _)) = csum_off {
                        if coff + 2 <= end {
                            fix_l4_csum(pkt, coff, iproto, delta16(0, old, port));
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
