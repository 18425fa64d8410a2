//! ICMP errors that quote a datagram (RFC 792: its IP header and the first 8 bytes of its
//! payload): REJECT's port unreachable, a router's time exceeded or host unreachable.

use std::net::Ipv4Addr;

use etherparse::{Icmpv4Type, PacketBuilder};

use crate::error::PacketError;
use crate::parse::{ipv4_header, Parsed};

/// A complete IPv4 ICMP error of type `ty` from `from` to `to` (TTL 64) carrying `quoted`.
pub fn error_packet(from: Ipv4Addr, to: Ipv4Addr, ty: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
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

/// REJECT `--reject-with icmp-port-unreachable`: a complete IPv4 ICMP type 3 code 3 packet
/// from the address the offending packet was sent to, back to its sender, quoting the
/// original IP header and the first 8 bytes of its payload. `p` is the parse of `orig`.
pub fn port_unreachable(orig: &[u8], p: &Parsed) -> Vec<u8> {
    let quote_len = (p.ihl + 8).min(p.total_len);
    error_packet(
        p.tuple.dst,
        p.tuple.src,
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
        &orig[..quote_len],
    )
}
