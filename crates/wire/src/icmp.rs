//! ICMP errors that quote a datagram (RFC 792: its IP header and the first 8 bytes of its
//! payload): REJECT's port unreachable, a router's time exceeded or host unreachable.

use std::net::Ipv4Addr;

use etherparse::{Icmpv4Type, PacketBuilder};

use crate::error::PacketError;
use crate::parse::{ipv4_header, Parsed};

/// A complete IPv4 ICMP error of type `ty` from `from` to `to` (TTL 64) carrying `quoted`.
/// A quoted datagram whose checksum the fabric carries partial ([`crate::partial`]) is
/// quoted as the kernel would quote it: without the lab's mark.
pub fn error_packet(from: Ipv4Addr, to: Ipv4Addr, ty: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    if crate::partial::is_marked(quoted) {
        let mut q = quoted.to_vec();
        crate::partial::finish_partial(&mut q);
        return error_packet(from, to, ty, &q);
    }
    let builder = PacketBuilder::ipv4(from.octets(), to.octets(), 64).icmpv4(ty);
    let mut out = Vec::with_capacity(builder.size(quoted.len()));
    // Writing into a Vec cannot fail; callers quote far below the IPv4 size limit.
    let _ = builder.write(&mut out, quoted);
    out
}

/// An ICMP error of type `ty` from `from` back to the sender of `original`, quoting its IP
/// header and 8 bytes (fewer if the datagram is shorter). Errors if `original` has no valid
/// IPv4 header.
pub fn error_reply(
    from: Ipv4Addr,
    original: &[u8],
    ty: Icmpv4Type,
) -> Result<Vec<u8>, PacketError> {
    let hs = ipv4_header(original)?;
    let quote_len = (hs.slice().len() + 8).min(original.len());
    Ok(error_packet(
        from,
        hs.source_addr(),
        ty,
        &original[..quote_len],
    ))
}

/// The most an ICMP error may occupy (RFC 1812 4.3.2.3; net/ipv4/icmp.c `__icmp_send`:
/// "return as much as we can without exceeding 576 bytes").
pub const ERROR_MAX: usize = 576;

/// REJECT `--reject-with icmp-port-unreachable` as net/ipv4/icmp.c `__icmp_send` builds it: a
/// complete IPv4 ICMP type 3 code 3 packet from `from` back to the sender of `orig`, TTL 64,
/// TOS `RT_TOS(orig) | IPTOS_PREC_INTERNETCONTROL`, quoting as much of `orig` as fits in
/// [`ERROR_MAX`] bytes (up to 548: 576 − 20-byte IP header − 8-byte ICMP header). `from` is
/// the rejected destination when it is the node's own address; else the kernel passes saddr
/// 0 and the route back to the sender picks it (callers build with 0.0.0.0, then
/// [`crate::nat::set_ipv4_source`]). `p` is the parse of `orig`.
pub fn port_unreachable(orig: &[u8], p: &Parsed, from: Ipv4Addr) -> Vec<u8> {
    let room = ERROR_MAX - 20 - 8;
    let mut out = error_packet(
        from,
        p.tuple.src,
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
        &orig[..p.total_len.min(orig.len()).min(room)],
    );
    if out.len() >= 20 && orig.len() >= 2 {
        let tos = (orig[1] & 0x1e) | 0xc0;
        crate::nat::set_tos(&mut out, tos);
    }
    out
}
