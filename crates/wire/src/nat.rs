//! In-place NAT rewrite of IPv4 and IPv6 datagrams, checksums fixed incrementally (RFC 1624).
//!
//! [`rewrite`] gives a datagram a new tuple (addresses, ports or the ICMP echo identifier);
//! [`rewrite_icmp_error`] translates an ICMP error and the datagram it quotes, as
//! `nf_nat_icmp_reply_translation` does. Both take the [`Parsed`] of the buffer they edit.

use std::net::{IpAddr, Ipv4Addr};

use crate::addr::{v4, v6, IpFamily};
use crate::checksum::{
    apply_delta, csum_replace2, csum_replace4, delta16, delta32, delta_bytes, l4_checksum,
    sctp_crc32c,
};
use crate::parse::{L4Kind, Parsed};
use crate::proto::{PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
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
/// pseudo-header (TCP/UDP/ICMPv6) or not (ICMP).
fn l4_csum_off(proto: u8) -> Option<(usize, bool)> {
    match proto {
        PROTO_TCP => Some((16, true)),
        PROTO_UDP => Some((6, true)),
        PROTO_ICMP => Some((2, false)),
        PROTO_ICMPV6 => Some((2, true)),
        _ => None,
    }
}

/// Rewrite an IP header address (`src = true` for the source) of the `family` header at
/// `ip_off`, fixing the IPv4 header checksum (IPv6 has none); returns the one's-complement
/// delta of the change for the L4 pseudo-header (the L4 checksum is the caller's), 0 when
/// the address was already `new`.
fn set_ip_addr(pkt: &mut [u8], ip_off: usize, family: IpFamily, src: bool, new: IpAddr) -> u32 {
    match family {
        IpFamily::V4 => {
            let off = ip_off + if src { 12 } else { 16 };
            let old = rd32(pkt, off);
            let new = u32::from(v4(new));
            if old != new {
                pkt[off..off + 4].copy_from_slice(&new.to_be_bytes());
                let c = csum_replace4(rd16(pkt, ip_off + 10), old, new);
                wr16(pkt, ip_off + 10, c);
                return delta32(0, old, new);
            }
            0
        }
        IpFamily::V6 => {
            let off = ip_off + if src { 8 } else { 24 };
            let new = v6(new).octets();
            if pkt[off..off + 16] == new {
                return 0;
            }
            let acc = delta_bytes(0, &pkt[off..off + 16], &new);
            pkt[off..off + 16].copy_from_slice(&new);
            acc
        }
    }
}

/// Set an IPv4 datagram's source address, fixing the header checksum only: for ICMP, whose
/// checksum does not cover the IP header (a REJECT answer built with source 0.0.0.0 gets
/// the address of the route back to the sender). Datagrams shorter than 20 bytes are left.
pub fn set_ipv4_source(pkt: &mut [u8], src: Ipv4Addr) {
    if pkt.len() >= 20 {
        set_ip_addr(pkt, 0, IpFamily::V4, true, IpAddr::V4(src));
    }
}

/// Set a datagram's source address, either family: IPv4 as [`set_ipv4_source`]; IPv6 fixes
/// the checksum covering the pseudo-header (TCP, UDP, ICMPv6: a REJECT answer built with
/// source `::` gets the address of the route back to the sender, as icmp6_send picks it).
/// Datagrams that do not parse, or whose family differs from `src`'s, are left.
pub fn set_source(pkt: &mut [u8], src: IpAddr) {
    let Ok(p) = crate::parse::parse(pkt) else {
        return;
    };
    if p.family != IpFamily::of(src) {
        return;
    }
    let acc = set_ip_addr(pkt, 0, p.family, true, src);
    if p.family == IpFamily::V6 {
        if let Some((off, true)) = l4_csum_off(p.tuple.proto) {
            fix_l4_csum(pkt, p.l3_len + off, p.tuple.proto, acc);
        }
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

/// Apply the accumulated one's-complement delta `acc` to the TCP/UDP/ICMP checksum at `off`
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

/// Both addresses of the datagram at offset 0 become `new`'s; returns the delta.
fn set_addrs(pkt: &mut [u8], family: IpFamily, new: &Tuple) -> u32 {
    match family {
        IpFamily::V4 => {
            // One IP header checksum update for both addresses (kept byte-identical to
            // the single-update form the IPv4 path always had).
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
            addr_delta
        }
        IpFamily::V6 => {
            let acc = set_ip_addr(pkt, 0, family, true, new.src);
            acc + set_ip_addr(pkt, 0, family, false, new.dst)
        }
    }
}

/// Rewrite the packet so that its tuple becomes `(new.src:new.sport → new.dst:new.dport)`,
/// incrementally fixing checksums (one update per checksum field for all changed words;
/// IPv6: no header checksum, the 128-bit addresses enter the TCP/UDP/ICMPv6 pseudo-header
/// sum as eight words each). For ICMP echo the identifier is set to `new.sport`. `p` must
/// come from [`crate::parse()`] of this very buffer; ICMP errors are left alone (see
/// [`rewrite_icmp_error`]).
pub fn rewrite(pkt: &mut [u8], p: &Parsed, new: &Tuple) {
    let l4 = p.l3_len;
    let addr_delta = set_addrs(pkt, p.family, new);
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
            // ICMPv4 has no pseudo-header: only the identifier matters; ICMPv6's checksum
            // covers the addresses too (RFC 4443 §2.3).
            let old = rd16(pkt, l4 + 4);
            let acc = match p.family {
                IpFamily::V4 => 0,
                IpFamily::V6 => addr_delta,
            };
            if old != new.sport || acc != 0 {
                wr16(pkt, l4 + 4, new.sport);
                let c = apply_delta(rd16(pkt, l4 + 2), delta16(acc, old, new.sport));
                wr16(pkt, l4 + 2, c);
            }
        }
        L4Kind::IcmpError { .. } => {}
    }
}

/// Translate an ICMP/ICMPv6 error: outer addresses become `outer_src → outer_dst`, the
/// embedded packet's tuple becomes `inner` (its IPv4 header checksum and, when present in
/// the quoted bytes, its L4 checksum fixed incrementally), and the ICMP checksum is
/// recomputed (ICMPv6: over the pseudo-header too), as `nf_nat_icmp_reply_translation` /
/// `nf_nat_icmpv6_reply_translation` do.
pub fn rewrite_icmp_error(
    pkt: &mut [u8],
    p: &Parsed,
    outer_src: IpAddr,
    outer_dst: IpAddr,
    inner: &Tuple,
) {
    let L4Kind::IcmpError {
        inner_off,
        inner_l3_len,
        inner: old_inner,
    } = p.kind
    else {
        return;
    };
    let family = p.family;
    set_ip_addr(pkt, 0, family, true, outer_src);
    set_ip_addr(pkt, 0, family, false, outer_dst);
    let end = p.total_len;
    let iproto = old_inner.proto;
    let il4 = inner_off + inner_l3_len;
    let csum_off = l4_csum_off(iproto).map(|(o, pseudo)| (il4 + o, pseudo));
    for (is_src, addr) in [(true, inner.src), (false, inner.dst)] {
        let acc = set_ip_addr(pkt, inner_off, family, is_src, addr);
        if let (Some((off, true)), true) = (csum_off, acc != 0) {
            if off + 2 <= end {
                fix_l4_csum(pkt, off, iproto, acc);
            }
        }
    }
    // The quoted SCTP CRC32c (bytes 8–11) would need the whole packet: left as is.
    let port_offs: &[(usize, u16)] = match iproto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => &[(il4, inner.sport), (il4 + 2, inner.dport)],
        PROTO_ICMP | PROTO_ICMPV6 => &[(il4 + 4, inner.sport)],
        _ => &[],
    };
    for &(off, port) in port_offs {
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
    let icmp = p.l3_len;
    wr16(pkt, icmp + 2, 0);
    let c = l4_checksum(
        outer_src,
        outer_dst,
        p.tuple.proto,
        &pkt[icmp..end],
        family == IpFamily::V6,
    );
    wr16(pkt, icmp + 2, c);
}
