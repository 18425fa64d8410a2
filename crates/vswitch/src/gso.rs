//! Checksum and segmentation offload at the TUN edge: the `virtio_net_hdr` a TUN device
//! opened with `IFF_VNET_HDR` puts in front of every packet, and what the fabric does with it.
//! Sans-IO: bytes in, bytes out.
//!
//! The kernel ABI (include/uapi/linux/virtio_net.h, drivers/net/tun.c):
//! - With `TUNSETOFFLOAD` (`TUN_F_CSUM | TUN_F_TSO4 | …`) a read may return a TCP
//!   *superpacket* of up to 64 KiB (IPv4 total length = the whole thing) with `gso_type`
//!   `TCPV4` and `gso_size` = the sender's MSS, and with `NEEDS_CSUM`: the TCP checksum field
//!   holds only the pseudo-header sum (`CHECKSUM_PARTIAL`) and the device must finish it from
//!   `csum_start`.
//! - A write may hand the kernel such a superpacket; the receiving stack takes it as one skb
//!   (as GRO would build it) and segments it only if it is forwarded to a device that cannot.
//!
//! What the lab does ([`ingress`], [`egress`]):
//! - On read, a `NEEDS_CSUM` checksum is kept partial: the datagram is marked
//!   ([`wire::partial`]) and crosses the fabric (nodes, NAT, router) with its checksum field
//!   holding a value nobody checks; the TUN it is written to hands it to the kernel still
//!   partial (`NEEDS_CSUM`, the pseudo-header sum of its translated addresses in the field),
//!   as the kernel forwards a `CHECKSUM_PARTIAL` skb. No pass over the payload anywhere.
//!   Where something checks or shows checksums the datagram is completed first: a node's own
//!   stack or an embedded host (smoltcp), a pcap copy, a TUN without offloads. A layout the
//!   fabric cannot carry partial (not TCP/UDP right after the IPv4 header) is completed on
//!   read ([`complete_ingress`]: one fast sum over the L4 bytes), as is everything when
//!   [`crate::tun::TunConfig::keep_partial`] is off.
//! - On write to a device with offloads, a TCP datagram longer than the link MTU goes out as a
//!   TSO superpacket: `gso_size` = MTU − IP − TCP header (the MSS its segments had: every lab
//!   link has the same MTU), `NEEDS_CSUM` with the pseudo-header sum in the field (cheap: no
//!   payload pass; the receiving kernel then trusts the sum as it does on a veth).
//! - A device without offloads gets the superpacket cut into MTU-sized segments
//!   ([`segment_tcp`]), as the kernel's `tcp_gso_segment` would.
//! - UDP superpackets (USO, `GSO_UDP_L4`) are cut into their datagrams at the read
//!   ([`crate::uso`]); UDP is never written as a superpacket.

use wire::checksum::{checksum, ones_sum, pseudo_sum, pseudo_sum_v6};
use wire::proto::PROTO_TCP;

/// Size of the legacy `struct virtio_net_hdr` (the TUN default without `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (pseudo-header only).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (bit or'ed into the type: the first segment carries CWR).
pub const GSO_ECN: u8 = 0x80;

/// TCP flag bits touched by segmentation.
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// `struct virtio_net_hdr`. Multi-byte fields are in the host's byte order (legacy virtio
/// on a TUN without `TUNSETVNETLE`/`TUNSETVNETBE`: `tun_is_little_endian` = host order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header from the first [`VNET_HDR_LEN`] bytes.
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        ]
        .into_iter()
        .enumerate()
        {
            b[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// Why a packet read from a device was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressError {
    /// A GSO type the lab did not negotiate (UFO): never sent by a kernel that honours
    /// `TUNSETOFFLOAD`. (UDP superpackets, `GSO_UDP_L4`, are [`crate::uso`]'s: the TUN port
    /// hands them there, never here.)
    GsoType(u8),
    /// `csum_start`/`csum_offset` outside the packet.
    CsumRange,
}

/// Makes a packet read with header `h` an ordinary datagram: completes a partial checksum
/// (`NEEDS_CSUM`) in place. Superpackets stay whole (the fabric forwards them as one).
pub fn complete_ingress(h: &VnetHdr, pkt: &mut [u8]) -> Result<(), IngressError> {
    match h.gso_type & !GSO_ECN {
        GSO_NONE | GSO_TCPV4 | GSO_TCPV6 => {}
        t => return Err(IngressError::GsoType(t)),
    }
    if h.flags & F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = usize::from(h.csum_start);
    let field = start + usize::from(h.csum_offset);
    if start < 20 || field + 2 > pkt.len() {
        return Err(IngressError::CsumRange);
    }
    // The field holds the pseudo-header sum; the sum over [start, end) including it is the
    // complete one (skb_checksum_help).
    let mut c = !ones_sum(&pkt[start..]);
    // The L4 protocol: IPv4's protocol field, IPv6's next header.
    let proto = if pkt[0] >> 4 == 6 { pkt[6] } else { pkt[9] };
    if c == 0 && proto == wire::proto::PROTO_UDP {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// What [`ingress`] did with a packet's checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// Complete as read (no `NEEDS_CSUM`).
    Complete,
    /// Partial, kept so and marked ([`wire::partial`]): completed by whoever finally sends it.
    KeptPartial,
    /// Partial, completed here (a layout the fabric cannot carry partial, or `keep` off).
    Completed,
}

/// Takes a packet read with header `h`: a partial checksum (`NEEDS_CSUM`) is kept partial
/// and marked when `keep` is set and the layout allows ([`wire::partial::mark`]), else
/// completed in place ([`complete_ingress`]). A packet that is not partial has a stray mark
/// cleared ([`wire::partial::clear_stray`]). Superpackets stay whole either way.
pub fn ingress(h: &VnetHdr, pkt: &mut [u8], keep: bool) -> Result<Ingress, IngressError> {
    if h.flags & F_NEEDS_CSUM == 0 {
        complete_ingress(h, pkt)?;
        wire::partial::clear_stray(pkt);
        return Ok(Ingress::Complete);
    }
    if keep {
        match h.gso_type & !GSO_ECN {
            GSO_NONE | GSO_TCPV4 | GSO_TCPV6 => {}
            t => return Err(IngressError::GsoType(t)),
        }
        let (start, off) = (usize::from(h.csum_start), usize::from(h.csum_offset));
        if wire::partial::mark(pkt, start, off) {
            return Ok(Ingress::KeptPartial);
        }
    }
    complete_ingress(h, pkt)?;
    wire::partial::clear_stray(pkt);
    Ok(Ingress::Completed)
}

/// The header of a datagram written with a partial checksum at `csum_start`/`csum_offset`
/// and no segmentation (`hdr_len` covers the checksum field, as `tun_get_user` wants).
pub fn partial_hdr(csum_start: usize, csum_offset: usize) -> VnetHdr {
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_NONE,
        hdr_len: (csum_start + csum_offset + 2) as u16,
        gso_size: 0,
        csum_start: csum_start as u16,
        csum_offset: csum_offset as u16,
    }
}

/// Header lengths of a whole TCP datagram: (IP header length, TCP header length, total
/// length). IPv4, or IPv6 with TCP right after the fixed header (what TSO6 hands over).
fn tcp_layout(pkt: &[u8]) -> Option<(usize, usize, usize)> {
    if pkt.len() >= 60 && pkt[0] >> 4 == 6 && pkt[6] == PROTO_TCP {
        let total = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
        let thl = usize::from(pkt[52] >> 4) * 4;
        return (thl >= 20 && 40 + thl <= total && total <= pkt.len()).then_some((40, thl, total));
    }
    if pkt.len() < 40 || pkt[0] >> 4 != 4 || pkt[9] != PROTO_TCP {
        return None;
    }
    // Fragments are not segmentable (offset or MF set).
    if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    let thl = usize::from(*pkt.get(ihl + 12)? >> 4) * 4;
    (ihl >= 20 && thl >= 20 && ihl + thl <= total && total <= pkt.len())
        .then_some((ihl, thl, total))
}

/// The pseudo-header sum of `pkt` (IPv4, or IPv6 with its 40-byte header: the callers have
/// checked the layout) for protocol `proto` and an L4 length of `l4_len` bytes.
pub(crate) fn l4_pseudo(pkt: &[u8], proto: u8, l4_len: usize) -> u16 {
    if pkt[0] >> 4 == 6 {
        let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
        src.copy_from_slice(&pkt[8..24]);
        dst.copy_from_slice(&pkt[24..40]);
        pseudo_sum_v6(src, dst, proto, l4_len as u32)
    } else {
        let a = |o: usize| [pkt[o], pkt[o + 1], pkt[o + 2], pkt[o + 3]];
        pseudo_sum(a(12), a(16), proto, l4_len as u16)
    }
}

/// [`l4_pseudo`] for TCP (see [`tcp_layout`]).
fn tcp_pseudo(pkt: &[u8], l4_len: usize) -> u16 {
    l4_pseudo(pkt, PROTO_TCP, l4_len)
}

/// How to write `pkt` to a device with offloads whose MTU is `mtu`: `None` = as is (header
/// all zero); `Some((hdr, field, sum))` = with `hdr`, the two bytes at `field` replaced by
/// `sum` (the pseudo-header sum of a partial checksum). Only TCP datagrams longer than the
/// MTU become superpackets.
pub fn egress(pkt: &[u8], mtu: u16) -> Option<(VnetHdr, usize, u16)> {
    if pkt.len() <= usize::from(mtu) {
        return None;
    }
    let (ihl, thl, total) = tcp_layout(pkt)?;
    let mss = usize::from(mtu)
        .checked_sub(ihl + thl)
        .filter(|&m| m >= 8)?;
    let ecn = if pkt[ihl + 13] & TCP_CWR != 0 {
        GSO_ECN
    } else {
        0
    };
    let sum = tcp_pseudo(pkt, total - ihl);
    // tcp_layout accepted an IPv4 or an IPv6 (40-byte header) TCP datagram.
    let family = if pkt[0] >> 4 == 6 {
        GSO_TCPV6
    } else {
        GSO_TCPV4
    };
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: family | ecn,
        hdr_len: (ihl + thl) as u16,
        gso_size: mss as u16,
        csum_start: ihl as u16,
        csum_offset: 16,
    };
    Some((hdr, ihl + 16, sum))
}

/// Cuts a TCP datagram longer than `mtu` into segments of at most `mtu` bytes, handing each
/// to `emit` (built in `scratch`, reused): IPv4 id incremented per segment (IPv6: the
/// payload length set), sequence numbers advanced, FIN/PSH only on the last segment and CWR
/// only on the first (`tcp_gso_segment`), checksums recomputed. Returns `false` (and emits nothing) if `pkt` is not a
/// segmentable TCP datagram or needs no cutting.
pub fn segment_tcp(
    pkt: &[u8],
    mtu: u16,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> bool {
    if pkt.len() <= usize::from(mtu) {
        return false;
    }
    let Some((ihl, thl, total)) = tcp_layout(pkt) else {
        return false;
    };
    let hl = ihl + thl;
    let Some(mss) = usize::from(mtu).checked_sub(hl).filter(|&m| m >= 8) else {
        return false;
    };
    let payload = &pkt[hl..total];
    let v6 = pkt[0] >> 4 == 6;
    let id = u16::from_be_bytes([pkt[4], pkt[5]]);
    let seq = u32::from_be_bytes([pkt[ihl + 4], pkt[ihl + 5], pkt[ihl + 6], pkt[ihl + 7]]);
    let n = payload.len().div_ceil(mss);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        scratch.clear();
        scratch.extend_from_slice(&pkt[..hl]);
        scratch.extend_from_slice(chunk);
        let len = scratch.len() as u16;
        if v6 {
            scratch[4..6].copy_from_slice(&(len - 40).to_be_bytes());
        } else {
            scratch[2..4].copy_from_slice(&len.to_be_bytes());
            scratch[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            scratch[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&scratch[..ihl]);
            scratch[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let s = seq.wrapping_add((i * mss) as u32);
        scratch[ihl + 4..ihl + 8].copy_from_slice(&s.to_be_bytes());
        if i + 1 < n {
            scratch[ihl + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            scratch[ihl + 13] &= !TCP_CWR;
        }
        let sum = tcp_pseudo(scratch, scratch.len() - ihl);
        scratch[ihl + 16..ihl + 18].copy_from_slice(&sum.to_be_bytes());
        let c = !ones_sum(&scratch[ihl..]);
        scratch[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
        emit(scratch);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP datagram with timestamps (32-byte TCP header), `payload` bytes, flags
    /// PSH|ACK|FIN|CWR, valid checksums.
    fn superpacket(payload: usize) -> Vec<u8> {
        let total = 20 + 32 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[203, 0, 113, 10]);
        p[16..20].copy_from_slice(&[10, 244, 1, 16]);
        p[20..24].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        p[24..28].copy_from_slice(&0xffff_f000u32.to_be_bytes()); // seq wraps inside
        p[32] = 0x80; // data offset 8 words
        p[33] = TCP_CWR | TCP_PSH | 0x10 | TCP_FIN;
        for (i, b) in p.iter_mut().enumerate().skip(52) {
            *b = (i * 7) as u8;
        }
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let s = pseudo_sum(
            [203, 0, 113, 10],
            [10, 244, 1, 16],
            PROTO_TCP,
            (total - 20) as u16,
        );
        p[36..38].copy_from_slice(&s.to_be_bytes());
        let c = !ones_sum(&p[20..]);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// `full` as a TUN read hands it over: the pseudo-header sum in its checksum field, and
    /// the header saying so.
    fn as_read(full: &[u8]) -> (Vec<u8>, VnetHdr) {
        let mut partial = full.to_vec();
        let s = pseudo_sum(
            [203, 0, 113, 10],
            [10, 244, 1, 16],
            PROTO_TCP,
            (full.len() - 20) as u16,
        );
        partial[36..38].copy_from_slice(&s.to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        (partial, h)
    }

    #[test]
    fn header_round_trip() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
    }

    #[test]
    fn partial_checksum_completed_on_ingress() {
        let full = superpacket(60_000);
        assert_eq!(wire::checksum::verify(&full), Ok(()));
        let (mut partial, h) = as_read(&full);
        assert_eq!(complete_ingress(&h, &mut partial), Ok(()));
        assert_eq!(partial, full);
        let bad = VnetHdr {
            csum_start: 19,
            ..h
        };
        assert_eq!(
            complete_ingress(&bad, &mut partial),
            Err(IngressError::CsumRange)
        );
        let bad = VnetHdr {
            csum_offset: 60_031,
            ..h
        };
        assert_eq!(
            complete_ingress(&bad, &mut partial),
            Err(IngressError::CsumRange)
        );
        // GSO types the TUN was not offered (3: UFO) are refused.
        let ufo = VnetHdr { gso_type: 3, ..h };
        assert_eq!(
            complete_ingress(&ufo, &mut partial),
            Err(IngressError::GsoType(3))
        );
    }

    #[test]
    fn ingress_keeps_partial_checksums_partial() {
        let full = superpacket(20_000);
        let (partial, h) = as_read(&full);
        let mut kept = partial.clone();
        assert_eq!(ingress(&h, &mut kept, true), Ok(Ingress::KeptPartial));
        assert!(wire::partial::is_marked(&kept));
        assert_eq!(kept[20..], partial[20..], "no byte of the segment touched");
        assert!(wire::partial::complete(&mut kept));
        assert_eq!(kept, full);
        let mut done = partial.clone();
        assert_eq!(ingress(&h, &mut done, false), Ok(Ingress::Completed));
        assert_eq!(done, full);
        // A layout the fabric cannot carry partial is completed on read.
        let mut odd = partial.clone();
        let h2 = VnetHdr {
            csum_offset: 6,
            ..h
        };
        assert_eq!(ingress(&h2, &mut odd, true), Ok(Ingress::Completed));
        assert!(!wire::partial::is_marked(&odd));
        let mut ufo = partial.clone();
        let h3 = VnetHdr { gso_type: 3, ..h };
        assert_eq!(ingress(&h3, &mut ufo, true), Err(IngressError::GsoType(3)));
        // Complete as read: a stray reserved bit is cleared, nothing else changes.
        let mut stray = full.clone();
        stray[6] |= 0x80;
        let c = checksum(&{
            let mut h = stray[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        stray[10..12].copy_from_slice(&c.to_be_bytes());
        let none = VnetHdr::default();
        assert_eq!(ingress(&none, &mut stray, true), Ok(Ingress::Complete));
        assert_eq!(stray, full);
    }

    #[test]
    fn egress_header_of_a_superpacket() {
        let p = superpacket(10_000);
        let (h, field, sum) = egress(&p, 1500).unwrap();
        assert_eq!(h.gso_type, GSO_TCPV4 | GSO_ECN);
        assert_eq!(
            (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
            (1448, 52, 20, 16)
        );
        assert_eq!(field, 36);
        // Completing the partial sum as the kernel would gives the datagram's own checksum.
        let mut q = p.clone();
        q[36..38].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(!ones_sum(&q[20..]), u16::from_be_bytes([p[36], p[37]]));
        assert_eq!(egress(&p, 65_000), None);
        assert_eq!(egress(&p[..1400], 1500), None);
    }

    #[test]
    fn segmentation_like_the_kernel() {
        let p = superpacket(3000);
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let mut scratch = Vec::new();
        assert!(segment_tcp(&p, 1500, &mut scratch, |s| segs.push(s.to_vec())));
        assert_eq!(
            segs.iter().map(Vec::len).collect::<Vec<_>>(),
            [1500, 1500, 52 + 104]
        );
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(wire::checksum::verify(s), Ok(()), "segment {i}");
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(1448 * i as u32));
            assert_eq!(
                u16::from_be_bytes([s[4], s[5]]),
                0xfffeu16.wrapping_add(i as u16)
            );
            let flags = s[33];
            assert_eq!(flags & TCP_CWR != 0, i == 0);
            assert_eq!(flags & (TCP_FIN | TCP_PSH) != 0, i == 2);
            data.extend_from_slice(&s[52..]);
        }
        assert_eq!(data, p[52..]);
        assert!(!segment_tcp(&p, 65_000, &mut scratch, |_| panic!(
            "no cut needed"
        )));
        assert!(!segment_tcp(&p[..30], 20, &mut scratch, |_| panic!(
            "not TCP"
        )));
    }

    /// An IPv6 TCP datagram (fixed header, 32-byte TCP header), `payload` bytes, flags
    /// PSH|ACK|FIN|CWR, valid checksum.
    fn superpacket_v6(payload: usize) -> Vec<u8> {
        let total = 40 + 32 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = PROTO_TCP;
        p[7] = 64;
        p[8..24].copy_from_slice(
            &"2001:db8::11"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p[24..40].copy_from_slice(
            &"fd00:10:244:1::10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p[40..44].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
        p[44..48].copy_from_slice(&0xffff_f000u32.to_be_bytes());
        p[52] = 0x80;
        p[53] = TCP_CWR | TCP_PSH | 0x10 | TCP_FIN;
        for (i, b) in p.iter_mut().enumerate().skip(72) {
            *b = (i * 7) as u8;
        }
        let s = tcp_pseudo(&p, total - 40);
        p[56..58].copy_from_slice(&s.to_be_bytes());
        let c = !ones_sum(&p[40..]);
        p[56..58].copy_from_slice(&c.to_be_bytes());
        assert_eq!(wire::checksum::verify(&p), Ok(()));
        p
    }

    /// TSO6: an IPv6 superpacket leaves as GSO_TCPV6 with the IPv6 pseudo-header sum, or is
    /// cut like tcp_gso_segment cuts it (payload length per segment, no IP id or header
    /// checksum, seq advanced, FIN/PSH last, CWR first); a TCPV6 read is taken.
    #[test]
    fn ipv6_superpackets_leave_as_tcpv6_or_segments() {
        let p = superpacket_v6(3000);
        let (h, field, sum) = egress(&p, 1500).expect("a superpacket");
        assert_eq!(h.gso_type, GSO_TCPV6 | GSO_ECN);
        assert_eq!(
            (h.hdr_len, h.gso_size, h.csum_start, h.csum_offset),
            (72, 1428, 40, 16)
        );
        assert_eq!(field, 56);
        assert_eq!(sum, tcp_pseudo(&p, p.len() - 40));
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let mut scratch = Vec::new();
        assert!(segment_tcp(&p, 1500, &mut scratch, |s| segs.push(s.to_vec())));
        assert_eq!(
            segs.iter().map(Vec::len).collect::<Vec<_>>(),
            [1500, 1500, 72 + 144]
        );
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(wire::checksum::verify(s), Ok(()), "segment {i}");
            assert_eq!(usize::from(u16::from_be_bytes([s[4], s[5]])), s.len() - 40);
            let seq = u32::from_be_bytes([s[44], s[45], s[46], s[47]]);
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(1428 * i as u32));
            assert_eq!(s[53] & TCP_CWR != 0, i == 0);
            assert_eq!(s[53] & (TCP_FIN | TCP_PSH) != 0, i == 2);
            data.extend_from_slice(&s[72..]);
        }
        assert_eq!(data, p[72..]);
        // A TCPV6 read with a partial checksum is completed (IPv6 is never kept marked).
        let mut read = p.clone();
        read[56..58].copy_from_slice(&tcp_pseudo(&p, p.len() - 40).to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 72,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        assert_eq!(ingress(&h, &mut read, true), Ok(Ingress::Completed));
        assert_eq!(read, p);
    }
}
