//! Partial L4 checksums carried through the fabric (`CHECKSUM_PARTIAL`, as the kernel keeps
//! them in `skb->ip_summed`).
//!
//! A TUN device with offloads hands the lab TCP/UDP datagrams whose checksum is only the
//! pseudo-header sum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the device that finally transmits
//! them completes it. Completing it in the lab costs one pass over every byte of every
//! 64 KiB superpacket; the lab instead keeps it partial from the TUN it was read from to the
//! TUN it is written to, which writes it out still partial (the receiving kernel trusts a
//! partial checksum as it does one from a veth peer) — the kernel's own behaviour for a
//! forwarded `CHECKSUM_PARTIAL` skb.
//!
//! The fabric moves plain datagrams (`Vec<u8>`), so the state travels in the datagram: the
//! IPv4 header's reserved flag bit (RFC 791 bit 0 of the flags, "must be zero"; no sender
//! sets it) marks "L4 checksum partial, to be completed at exit" ([`mark`]). While marked,
//! the checksum field's value is meaningless to the fabric: NAT's incremental updates of
//! it (RFC 1624) are harmless, because at exit the field is rewritten from the datagram's
//! current addresses and length ([`finish_partial`]) and the completion sums the L4 bytes
//! as they are then (rewritten ports included). A datagram that leaves the fast path for
//! something that checks or shows checksums (a node's own stack, an embedded host, a pcap
//! copy, a TUN without offloads) is completed first ([`complete`]). The IPv4 header
//! checksum stays valid throughout (the bit is set and cleared with RFC 1624 updates).
//!
//! Only IPv4 with the checksum where TCP (offset 16) or UDP (offset 6) has it right after
//! the IP header is marked; anything else is completed at once by the caller. IPv6 has no
//! spare header bit: a v6 datagram is never marked.

use crate::checksum::{csum_replace2, ones_sum, pseudo_sum};
use crate::proto::{PROTO_TCP, PROTO_UDP};

/// The reserved ("evil", RFC 3514) bit of the IPv4 flags/fragment-offset word.
const RESERVED: u16 = 0x8000;

fn frag_word(pkt: &[u8]) -> u16 {
    u16::from_be_bytes([pkt[6], pkt[7]])
}

fn set_frag_word(pkt: &mut [u8], new: u16) {
    let old = frag_word(pkt);
    let c = csum_replace2(u16::from_be_bytes([pkt[10], pkt[11]]), old, new);
    pkt[6..8].copy_from_slice(&new.to_be_bytes());
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Where the L4 checksum of a whole IPv4 TCP/UDP datagram is: (L4 start, field offset from
/// it). `None` for anything else (other protocols, IPv6, truncated).
pub fn layout(pkt: &[u8]) -> Option<(usize, usize)> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    let off = match pkt[9] {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return None,
    };
    (ihl >= 20 && ihl + off + 2 <= total && total <= pkt.len()).then_some((ihl, off))
}

/// Marks a datagram read with a partial checksum at `csum_start`/`csum_offset` (the
/// `virtio_net_hdr`'s). Returns `false` (datagram unchanged) where the lab cannot carry it
/// partial: the caller then completes it ([`complete_at`]).
pub fn mark(pkt: &mut [u8], csum_start: usize, csum_offset: usize) -> bool {
    match layout(pkt) {
        Some((ihl, off)) if (ihl, off) == (csum_start, csum_offset) => {}
        _ => return false,
    }
    let w = frag_word(pkt);
    if w & RESERVED == 0 {
        set_frag_word(pkt, w | RESERVED);
    }
    true
}

/// `true` if the datagram's L4 checksum is partial ([`mark`]).
pub fn is_marked(pkt: &[u8]) -> bool {
    pkt.len() >= 20 && pkt[0] >> 4 == 4 && frag_word(pkt) & RESERVED != 0
}

/// Clears a stray reserved bit on a datagram that is *not* partial (a crafted one read from
/// a namespace), so the fabric never takes its checksum for a partial one. Returns whether
/// it was set.
pub fn clear_stray(pkt: &mut [u8]) -> bool {
    if !is_marked(pkt) {
        return false;
    }
    set_frag_word(pkt, frag_word(pkt) & !RESERVED);
    true
}

/// Completes the checksum whose field is at `field`, summed from `start` to the end of the
/// datagram (`skb_checksum_help`): the field must hold the pseudo-header sum.
pub fn complete_at(pkt: &mut [u8], start: usize, field: usize) {
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
    let mut c = !ones_sum(&pkt[start..total]);
    if c == 0 && pkt[9] == PROTO_UDP {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Makes a marked datagram an ordinary one: the mark cleared and the L4 checksum complete
/// and valid. Does nothing to an unmarked datagram. Returns whether it was marked.
pub fn complete(pkt: &mut [u8]) -> bool {
    let Some(start) = finish_partial(pkt) else {
        return false;
    };
    let field = start.0 + start.1;
    complete_at(pkt, start.0, field);
    true
}

/// Turns a marked datagram into what a device with checksum offload is handed: the mark
/// cleared and the checksum field set to the pseudo-header sum of the datagram as it is now.
/// Returns `(csum_start, csum_offset)` for the `virtio_net_hdr`, or `None` (datagram
/// unchanged) if it was not marked or is no longer a TCP/UDP datagram (then the mark is
/// only cleared: a translated ICMP quote, say, carries no checksum of its own to finish).
pub fn finish_partial(pkt: &mut [u8]) -> Option<(usize, usize)> {
    if !is_marked(pkt) {
        return None;
    }
    set_frag_word(pkt, frag_word(pkt) & !RESERVED);
    let (ihl, off) = layout(pkt)?;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    let sum = pseudo_sum(
        [pkt[12], pkt[13], pkt[14], pkt[15]],
        [pkt[16], pkt[17], pkt[18], pkt[19]],
        pkt[9],
        (total - ihl) as u16,
    );
    pkt[ihl + off..ihl + off + 2].copy_from_slice(&sum.to_be_bytes());
    Some((ihl, off))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{checksum, verify};
    use crate::nat::rewrite;
    use crate::{parse, Tuple};

    /// An IPv4 TCP (or UDP) datagram with valid checksums.
    fn datagram(proto: u8, payload: usize) -> Vec<u8> {
        let l4h = if proto == PROTO_TCP { 20 } else { 8 };
        let total = 20 + l4h + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&[203, 0, 113, 10]);
        p[16..20].copy_from_slice(&[10, 151, 30, 11]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&32761u16.to_be_bytes());
        if proto == PROTO_TCP {
            p[32] = 0x50;
            p[33] = 0x18;
        } else {
            p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
        }
        for (i, b) in p.iter_mut().enumerate().skip(20 + l4h) {
            *b = (i * 13) as u8;
        }
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let off = if proto == PROTO_TCP { 16 } else { 6 };
        let s = pseudo_sum(
            [203, 0, 113, 10],
            [10, 151, 30, 11],
            proto,
            (total - 20) as u16,
        );
        p[20 + off..22 + off].copy_from_slice(&s.to_be_bytes());
        complete_at(&mut p, 20, 20 + off);
        p
    }

    /// What a sender with checksum offload hands the device: the pseudo-header sum.
    fn partial(full: &[u8], off: usize) -> Vec<u8> {
        let mut p = full.to_vec();
        let s = pseudo_sum(
            [p[12], p[13], p[14], p[15]],
            [p[16], p[17], p[18], p[19]],
            p[9],
            (p.len() - 20) as u16,
        );
        p[20 + off..22 + off].copy_from_slice(&s.to_be_bytes());
        p
    }

    #[test]
    fn marked_datagrams_survive_nat_and_complete_exactly() {
        for (proto, off) in [(PROTO_TCP, 16), (PROTO_UDP, 6)] {
            let full = datagram(proto, 3000);
            assert_eq!(verify(&full), Ok(()));
            let mut p = partial(&full, off);
            assert!(mark(&mut p, 20, off));
            assert!(is_marked(&p));
            assert_eq!(checksum(&p[..20]), 0, "IP header checksum kept valid");
            // DNAT + SNAT as the Cluster path does: addresses and both ports change.
            let parsed = parse(&p).unwrap();
            let new = Tuple {
                src: [10, 151, 30, 11].into(),
                dst: [10, 244, 1, 16].into(),
                sport: 61000,
                dport: 80,
                ..parsed.tuple
            };
            rewrite(&mut p, &parsed, &new);
            assert!(is_marked(&p), "NAT keeps the mark");
            // Written out partial: completing it as the receiving kernel would...
            let mut out = p.clone();
            assert_eq!(finish_partial(&mut out), Some((20, off)));
            assert!(!is_marked(&out));
            complete_at(&mut out, 20, 20 + off);
            // ...gives the checksum of the datagram translated with full checksums.
            let mut want = full.clone();
            let parsed = parse(&want).unwrap();
            rewrite(&mut want, &parsed, &new);
            assert_eq!(out, want);
            assert_eq!(verify(&out), Ok(()));
            // complete() in one go does the same.
            assert!(complete(&mut p));
            assert_eq!(p, want);
            assert!(!complete(&mut p), "nothing left to complete");
        }
    }

    #[test]
    fn only_ipv4_tcp_udp_with_the_kernel_layout_is_marked() {
        let full = datagram(PROTO_TCP, 10);
        let mut p = full.clone();
        assert!(!mark(&mut p, 20, 6), "UDP offset on TCP");
        assert!(!mark(&mut p, 24, 16));
        assert_eq!(p, full);
        let mut icmp = full.clone();
        icmp[9] = 1;
        assert!(!mark(&mut icmp, 20, 2));
        assert!(!mark(&mut p[..30], 20, 16), "truncated");
        let mut v6 = full.clone();
        v6[0] = 0x60;
        assert!(!mark(&mut v6, 20, 16));
        assert!(!is_marked(&[0x45; 10]));
        // A stray reserved bit on an ordinary datagram is cleared, checksums kept valid.
        let mut stray = full.clone();
        set_frag_word(&mut stray, 0xc000);
        assert!(clear_stray(&mut stray));
        assert_eq!(stray, full);
        assert!(!clear_stray(&mut stray));
    }

    #[test]
    fn icmp_errors_quote_without_the_mark() {
        let full = datagram(PROTO_TCP, 100);
        let mut p = partial(&full, 16);
        let want = p.clone();
        assert!(mark(&mut p, 20, 16));
        let ty = etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        );
        let e = crate::icmp::error_reply([10, 151, 30, 1].into(), &p, ty).unwrap();
        assert_eq!(&e[28..], &want[..28], "the quote is the datagram as sent");
    }
}
