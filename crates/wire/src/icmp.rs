//! ICMP errors that quote a datagram (RFC 792: its IP header and the first 8 bytes of its
//! payload; RFC 4443: ICMPv6 quotes up to the IPv6 minimum MTU): REJECT's port unreachable,
//! a router's time exceeded, host unreachable or packet too big.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Icmpv4Type, PacketBuilder};

use crate::addr::IpFamily;
use crate::checksum::l4_checksum;
use crate::error::PacketError;
use crate::parse::{ipv4_header, Parsed};
use crate::proto::PROTO_ICMPV6;

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

/// REJECT's port unreachable for `orig` (parsed as `p`), of its family: ICMP type 3 code 3
/// (`--reject-with icmp-port-unreachable`, below) or ICMPv6 type 1 code 4
/// (`--reject-with icmp6-port-unreachable`, quoting up to the IPv6 minimum MTU).
pub fn port_unreachable(orig: &[u8], p: &Parsed, from: IpAddr) -> Vec<u8> {
    match p.family {
        IpFamily::V4 => port_unreachable_v4(orig, p, crate::addr::v4(from)),
        IpFamily::V6 => port_unreachable_v6(orig, p, crate::addr::v6(from)),
    }
}

/// REJECT `--reject-with icmp-port-unreachable` as net/ipv4/icmp.c `__icmp_send` builds it: a
/// complete IPv4 ICMP type 3 code 3 packet from `from` back to the sender of `orig`, TTL 64,
/// TOS `RT_TOS(orig) | IPTOS_PREC_INTERNETCONTROL`, quoting as much of `orig` as fits in
/// [`ERROR_MAX`] bytes (up to 548: 576 − 20-byte IP header − 8-byte ICMP header). `from` is
/// the rejected destination when it is the node's own address; else the kernel passes saddr
/// 0 and the route back to the sender picks it (callers build with 0.0.0.0, then
/// [`crate::nat::set_ipv4_source`]). `p` is the parse of `orig`.
fn port_unreachable_v4(orig: &[u8], p: &Parsed, from: Ipv4Addr) -> Vec<u8> {
    let room = ERROR_MAX - 20 - 8;
    let mut out = error_packet(
        from,
        crate::addr::v4(p.tuple.src),
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
        &orig[..p.total_len.min(orig.len()).min(room)],
    );
    if out.len() >= 20 && orig.len() >= 2 {
        let tos = (orig[1] & 0x1e) | 0xc0;
        crate::nat::set_tos(&mut out, tos);
    }
    out
}

/// The IPv6 minimum MTU (RFC 8200 §5): an ICMPv6 error quotes "as much of invoking packet
/// as possible without the ICMPv6 packet exceeding the minimum IPv6 MTU" (RFC 4443 §2.4(c)).
pub const IPV6_MIN_MTU: usize = 1280;

/// ICMPv6 error types (RFC 4443 §3) and the codes the lab sends.
pub mod v6 {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    /// Destination unreachable codes: no route, address unreachable, port unreachable.
    pub const CODE_NO_ROUTE: u8 = 0;
    pub const CODE_ADDR_UNREACHABLE: u8 = 3;
    pub const CODE_PORT_UNREACHABLE: u8 = 4;
    /// Time exceeded: hop limit exceeded in transit.
    pub const CODE_HOP_LIMIT: u8 = 0;
}

/// A complete ICMPv6 message from `from` to `to` (hop limit 64, traffic class and flow
/// label 0): type, code, the 4-byte field after the checksum (`rest`: the MTU of a Packet
/// Too Big, the pointer of a Parameter Problem, else 0) and `body`, the checksum computed
/// over the IPv6 pseudo-header (RFC 4443 §2.3).
pub fn icmpv6_packet(
    from: Ipv6Addr,
    to: Ipv6Addr,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let l4_len = 8 + body.len();
    let mut out = Vec::with_capacity(40 + l4_len);
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    // Callers quote at most IPV6_MIN_MTU bytes: the payload length fits.
    out.extend_from_slice(&(l4_len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&[PROTO_ICMPV6, 64]);
    out.extend_from_slice(&from.octets());
    out.extend_from_slice(&to.octets());
    out.extend_from_slice(&[ty, code, 0, 0]);
    out.extend_from_slice(&rest);
    out.extend_from_slice(body);
    let c = l4_checksum(from.into(), to.into(), PROTO_ICMPV6, &out[40..], true);
    out[42..44].copy_from_slice(&c.to_be_bytes());
    out
}

/// An ICMPv6 error (`ty`, `code`, `rest` as in [`icmpv6_packet`]) from `from` back to the
/// sender of the IPv6 datagram `original`, quoting as much of it as fits in
/// [`IPV6_MIN_MTU`] (up to 1232 bytes: 1280 − 40-byte IPv6 header − 8-byte ICMPv6 header,
/// as net/ipv6/icmp.c `icmp6_send` does). Bytes beyond its payload length are not quoted.
/// Errors if `original` has no IPv6 header.
pub fn error_reply_v6(
    from: Ipv6Addr,
    original: &[u8],
    ty: u8,
    code: u8,
    rest: [u8; 4],
) -> Result<Vec<u8>, PacketError> {
    if original.first().map(|b| b >> 4) != Some(6) {
        return Err(PacketError::NotIp(original.first().map_or(0, |b| b >> 4)));
    }
    let ip =
        etherparse::Ipv6HeaderSlice::from_slice(original).map_err(|_| PacketError::Truncated)?;
    let len = (40 + usize::from(ip.payload_length()))
        .min(original.len())
        .min(IPV6_MIN_MTU - 40 - 8);
    Ok(icmpv6_packet(
        from,
        ip.source_addr(),
        ty,
        code,
        rest,
        &original[..len],
    ))
}

/// A router's "time exceeded in transit" from `from` for `original`, of `original`'s
/// family: ICMP type 11 code 0 quoting the IP header and 8 bytes, or ICMPv6 type 3 code 0
/// quoting up to the minimum MTU.
pub fn time_exceeded(from: IpAddr, original: &[u8]) -> Result<Vec<u8>, PacketError> {
    match original.first().map(|b| b >> 4) {
        Some(6) => error_reply_v6(
            crate::addr::v6(from),
            original,
            v6::TIME_EXCEEDED,
            v6::CODE_HOP_LIMIT,
            [0; 4],
        ),
        _ => error_reply(
            crate::addr::v4(from),
            original,
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        ),
    }
}

/// "Packet too big" from `from` for `original`, of its family: ICMPv6 type 2 with `mtu`
/// (RFC 4443 §3.2), or ICMP type 3 code 4 "fragmentation needed" with the next-hop MTU
/// (RFC 1191; an MTU over 65535 is sent as 65535).
pub fn packet_too_big(from: IpAddr, original: &[u8], mtu: u32) -> Result<Vec<u8>, PacketError> {
    match original.first().map(|b| b >> 4) {
        Some(6) => error_reply_v6(
            crate::addr::v6(from),
            original,
            v6::PACKET_TOO_BIG,
            0,
            mtu.to_be_bytes(),
        ),
        _ => error_reply(
            crate::addr::v4(from),
            original,
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu.min(u32::from(u16::MAX)) as u16,
                },
            ),
        ),
    }
}

/// REJECT `--reject-with icmp6-port-unreachable` (kube-proxy's ip6tables rules) as
/// net/ipv6/icmp.c `icmp6_send` builds it: ICMPv6 type 1 code 4 from `from` back to the
/// sender of `orig`, hop limit 64, quoting up to 1232 bytes of it. `from` is the rejected
/// destination when it is the node's own address; else the kernel lets the route back pick
/// it (callers build with `::`, then [`crate::nat::set_source`]). `p` is the parse of `orig`.
fn port_unreachable_v6(orig: &[u8], p: &Parsed, from: Ipv6Addr) -> Vec<u8> {
    let len = p.total_len.min(orig.len()).min(IPV6_MIN_MTU - 40 - 8);
    icmpv6_packet(
        from,
        crate::addr::v6(p.tuple.src),
        v6::DEST_UNREACHABLE,
        v6::CODE_PORT_UNREACHABLE,
        [0; 4],
        &orig[..len],
    )
}
