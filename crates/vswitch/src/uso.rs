//! UDP segmentation offload (USO) on TUN reads: a UDP superpacket cut into the datagrams its
//! sender wrote, right where it is read. Sans-IO: bytes in, bytes out.
//!
//! The kernel ABI:
//! - `TUNSETOFFLOAD` with `TUN_F_USO4 | TUN_F_USO6` (include/uapi/linux/if_tun.h, 0x20 and
//!   0x40, Linux 6.2+; drivers/net/tun.c `set_offload` wants both, and `TUN_F_CSUM`) lets the
//!   device take `NETIF_F_GSO_UDP_L4` skbs: a socket's `UDP_SEGMENT` send (or a GRO'd UDP
//!   flow) reaches the reader as *one* IP datagram of up to 64 KiB. `tun_put_user` →
//!   `virtio_net_hdr_from_skb` gives it `gso_type` `VIRTIO_NET_HDR_GSO_UDP_L4` (5,
//!   include/uapi/linux/virtio_net.h), `gso_size` = the payload bytes of each datagram, and
//!   `NEEDS_CSUM` (`udp_send_skb` refuses a GSO send without `CHECKSUM_PARTIAL` support): the
//!   UDP checksum field holds the pseudo-header sum over the *whole* length.
//! - Unlike TCP, those bytes are N datagrams whose boundaries the receiver must see: the
//!   first `gso_size` payload bytes are datagram 0, and so on; the last may be shorter.
//!
//! What the lab does ([`UsoQueue`]): the fabric carries plain datagrams with no side
//! metadata, so the superpacket is cut at the read, as the kernel's `__udp_gso_segment`
//! (net/ipv4/udp_offload.c) with `inet_gso_segment` / `ipv6_gso_segment` would cut it before
//! a device without USO: each datagram gets the superpacket's headers with its own IPv4
//! total length, IPv4 id (the superpacket's + index, `iph->id = htons(id++)`), header
//! checksum, IPv6 payload length and UDP length, and its UDP checksum is the pseudo-header
//! sum of its own length, then kept partial (IPv4, marked, [`wire::partial`]) or completed,
//! exactly like a single datagram read with `NEEDS_CSUM` ([`crate::gso::ingress`]). A
//! superpacket read without `NEEDS_CSUM` gets each datagram's checksum completed (an IPv4
//! checksum of zero, "none", stays zero).
//!
//! The TUN port returns datagram 0 from the read itself (cut in place) and the rest from
//! this queue, one per `recv`, before it reads the device again: one syscall brings up to
//! 64 KiB of datagrams. Writes stay per datagram (no USO on write): the fabric does not know
//! which datagrams belonged together, and they are at most the MTU each.

use std::ops::Range;

use wire::checksum::checksum;
use wire::proto::PROTO_UDP;

use crate::gso::{self, Ingress, VnetHdr, F_NEEDS_CSUM, GSO_ECN};

/// `VIRTIO_NET_HDR_GSO_UDP_L4` (include/uapi/linux/virtio_net.h): a UDP superpacket.
pub const GSO_UDP_L4: u8 = 5;

/// UDP header length.
const UDP_HDR: usize = 8;
/// Offset of the checksum field in the UDP header.
const UDP_CSUM: usize = 6;

/// Why a USO superpacket was refused (the read is dropped and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsoError {
    /// `gso_size` 0.
    GsoSize,
    /// A header or length field points past the end of what was read (or is too short).
    Truncated,
    /// Not IPv4/IPv6 UDP right after the IP header (another protocol, IPv6 extension
    /// headers, an IPv4 fragment).
    NotUdp,
    /// `csum_start`/`csum_offset` are not the UDP checksum field.
    CsumRange,
    /// The caller's buffer cannot hold the next datagram.
    Room,
}

/// `true` if a read with header `h` is a UDP superpacket.
pub fn is_uso(h: &VnetHdr) -> bool {
    h.gso_type & !GSO_ECN == GSO_UDP_L4
}

/// Where things are in one superpacket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// IP header length (IPv4 IHL; IPv6 40).
    ip: usize,
    v6: bool,
    /// The superpacket's length (IPv4 total length; IPv6 40 + payload length).
    total: usize,
    /// Payload bytes per datagram (`gso_size`).
    mss: usize,
    /// The superpacket's IPv4 id (datagram i gets id + i).
    id: u16,
    /// The checksum field holds a pseudo-header sum (`NEEDS_CSUM`).
    partial: bool,
    /// IPv4, complete, checksum 0 ("no checksum"): every datagram keeps 0.
    no_csum: bool,
}

impl Layout {
    fn parse(h: &VnetHdr, sp: &[u8]) -> Result<Layout, UsoError> {
        if h.gso_size == 0 {
            return Err(UsoError::GsoSize);
        }
        let first = *sp.first().ok_or(UsoError::Truncated)?;
        let (ip, total, id) = match first >> 4 {
            4 => {
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < 20 || sp.len() < ihl {
                    return Err(UsoError::Truncated);
                }
                if sp[9] != PROTO_UDP || u16::from_be_bytes([sp[6], sp[7]]) & 0x3fff != 0 {
                    return Err(UsoError::NotUdp);
                }
                let total = usize::from(u16::from_be_bytes([sp[2], sp[3]]));
                (ihl, total, u16::from_be_bytes([sp[4], sp[5]]))
            }
            6 if sp.len() >= 40 => {
                if sp[6] != PROTO_UDP {
                    return Err(UsoError::NotUdp);
                }
                (40, 40 + usize::from(u16::from_be_bytes([sp[4], sp[5]])), 0)
            }
            6 => return Err(UsoError::Truncated),
            _ => return Err(UsoError::NotUdp),
        };
        // At least one payload byte: a superpacket of nothing is no datagram.
        if total <= ip + UDP_HDR || total > sp.len() {
            return Err(UsoError::Truncated);
        }
        let partial = h.flags & F_NEEDS_CSUM != 0;
        if partial && (usize::from(h.csum_start), usize::from(h.csum_offset)) != (ip, UDP_CSUM) {
            return Err(UsoError::CsumRange);
        }
        let field = ip + UDP_CSUM;
        let no_csum = !partial && first >> 4 == 4 && sp[field..field + 2] == [0, 0];
        Ok(Layout {
            ip,
            v6: first >> 4 == 6,
            total,
            mss: usize::from(h.gso_size),
            id,
            partial,
            no_csum,
        })
    }
    /// IP + UDP header length.
    fn hl(&self) -> usize {
        self.ip + UDP_HDR
    }
    /// How many datagrams the superpacket holds.
    fn count(&self) -> usize {
        (self.total - self.hl()).div_ceil(self.mss)
    }
    /// The payload bytes of datagram `i` in the superpacket.
    fn chunk(&self, i: usize) -> Range<usize> {
        let start = self.hl() + i * self.mss;
        start..(start + self.mss).min(self.total)
    }

    /// Makes `dg` (the superpacket's headers followed by the payload of datagram `i`) that
    /// datagram: lengths, IPv4 id and header checksum, UDP checksum (kept partial or
    /// completed as [`gso::ingress`] does with a single datagram).
    fn finish(&self, i: usize, dg: &mut [u8], keep: bool) -> Result<Ingress, UsoError> {
        // Both fit 16 bits: an IPv4 datagram is at most 65 535 bytes, an IPv6 payload too.
        let (ip, len) = (self.ip, dg.len());
        let l4 = (len - ip) as u16;
        if self.v6 {
            dg[4..6].copy_from_slice(&l4.to_be_bytes());
        } else {
            dg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            dg[4..6].copy_from_slice(&self.id.wrapping_add(i as u16).to_be_bytes());
            dg[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&dg[..ip]);
            dg[10..12].copy_from_slice(&c.to_be_bytes());
        }
        dg[ip + 4..ip + 6].copy_from_slice(&l4.to_be_bytes());
        if self.no_csum {
            // Complete as read; only a stray partial mark is cleared.
            return gso::ingress(&VnetHdr::default(), dg, false).map_err(|_| UsoError::CsumRange);
        }
        let sum = gso::l4_pseudo(dg, PROTO_UDP, usize::from(l4));
        dg[ip + UDP_CSUM..ip + UDP_CSUM + 2].copy_from_slice(&sum.to_be_bytes());
        let h = gso::partial_hdr(ip, UDP_CSUM);
        let done = gso::ingress(&h, dg, keep && self.partial).map_err(|_| UsoError::CsumRange)?;
        Ok(if self.partial {
            done
        } else {
            Ingress::Complete
        })
    }
}

/// The datagrams of the last USO read not yet handed out (one superpacket at most; its
/// buffer is reused from read to read).
#[derive(Debug, Default)]
pub struct UsoQueue {
    /// A copy of the superpacket (headers as read).
    sp: Vec<u8>,
    layout: Option<Layout>,
    /// Index of the next datagram to hand out.
    next: usize,
    /// Keep partial checksums partial ([`crate::tun::TunConfig::keep_partial`]).
    keep: bool,
}

impl UsoQueue {
    /// An empty queue.
    pub fn new() -> UsoQueue {
        UsoQueue::default()
    }

    /// Takes a superpacket read with header `h` (see [`is_uso`]): turns `pkt` into its first
    /// datagram in place and keeps the others for [`UsoQueue::pop_into`] /
    /// [`UsoQueue::pop_vec`] (datagrams still queued from an earlier read are discarded:
    /// callers drain the queue before reading). Returns the first datagram's length and what
    /// happened to its checksum. On error nothing is queued and `pkt` is unchanged.
    pub fn take(
        &mut self,
        h: &VnetHdr,
        pkt: &mut [u8],
        keep: bool,
    ) -> Result<(usize, Ingress), UsoError> {
        self.layout = None;
        let l = Layout::parse(h, pkt)?;
        if l.count() > 1 {
            self.sp.clear();
            self.sp.extend_from_slice(&pkt[..l.total]);
            self.layout = Some(l);
            self.next = 1;
            self.keep = keep;
        }
        let len = l.chunk(0).end;
        let done = l.finish(0, &mut pkt[..len], keep);
        if done.is_err() {
            self.layout = None;
        }
        done.map(|ing| (len, ing))
    }

    /// How many datagrams are queued.
    pub fn pending(&self) -> usize {
        self.layout.map_or(0, |l| l.count() - self.next)
    }

    /// The next queued datagram and its index, or `None` (the queue emptied).
    fn advance(&mut self) -> Option<(Layout, usize)> {
        let l = self.layout?;
        let i = self.next;
        self.next += 1;
        if self.next >= l.count() {
            self.layout = None;
        }
        Some((l, i))
    }

    /// Writes the next queued datagram at the start of `out`: `None` if none is queued, else
    /// its length and what happened to its checksum (or why it was dropped).
    pub fn pop_into(&mut self, out: &mut [u8]) -> Option<Result<(usize, Ingress), UsoError>> {
        let (l, i) = self.advance()?;
        let (hl, chunk) = (l.hl(), l.chunk(i));
        let len = hl + chunk.len();
        let Some(dg) = out.get_mut(..len) else {
            return Some(Err(UsoError::Room));
        };
        dg[..hl].copy_from_slice(&self.sp[..hl]);
        dg[hl..].copy_from_slice(&self.sp[chunk]);
        Some(l.finish(i, dg, self.keep).map(|ing| (len, ing)))
    }

    /// [`UsoQueue::pop_into`] into a buffer from [`crate::bufpool`] (no allocation per
    /// datagram once the pool is warm).
    pub fn pop_vec(&mut self) -> Option<Result<(Vec<u8>, Ingress), UsoError>> {
        let (l, i) = self.advance()?;
        let (hl, chunk) = (l.hl(), l.chunk(i));
        let mut dg = crate::bufpool::take(hl + chunk.len());
        dg.extend_from_slice(&self.sp[..hl]);
        dg.extend_from_slice(&self.sp[chunk]);
        Some(l.finish(i, &mut dg, self.keep).map(|ing| (dg, ing)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, Ipv6Header, UdpHeader};
    use rand::{Rng, SeedableRng};
    use wire::checksum::{pseudo_sum, pseudo_sum_v6};

    const SRC4: [u8; 4] = [10, 244, 1, 16];
    const DST4: [u8; 4] = [203, 0, 113, 11];
    const SRC6: [u8; 16] = [
        0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const DST6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
    ];
    const PORTS: (u16, u16) = (40000, 5353);

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn v4_header(len: usize, id: u16) -> Ipv4Header {
        let mut ip = Ipv4Header::new(len as u16, 64, IpNumber::UDP, SRC4, DST4).unwrap();
        ip.identification = id;
        ip.header_checksum = ip.calc_header_checksum();
        ip
    }

    fn v6_header(len: usize) -> Ipv6Header {
        Ipv6Header {
            payload_length: len as u16,
            next_header: IpNumber::UDP,
            hop_limit: 64,
            source: SRC6,
            destination: DST6,
            ..Default::default()
        }
    }

    /// What the sender's kernel would have put on the wire without USO: one datagram per
    /// `mss` bytes of `data`, built by etherparse (IPv4 id `id` + index, DF, valid checksums).
    fn sent(v6: bool, id: u16, data: &[u8], mss: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, chunk) in data.chunks(mss).enumerate() {
            let mut d = Vec::new();
            let udp = if v6 {
                let ip = v6_header(8 + chunk.len());
                ip.write(&mut d).unwrap();
                UdpHeader::with_ipv6_checksum(PORTS.0, PORTS.1, &ip, chunk).unwrap()
            } else {
                let ip = v4_header(8 + chunk.len(), id.wrapping_add(i as u16));
                ip.write(&mut d).unwrap();
                UdpHeader::with_ipv4_checksum(PORTS.0, PORTS.1, &ip, chunk).unwrap()
            };
            udp.write(&mut d).unwrap();
            d.extend_from_slice(chunk);
            assert_eq!(wire::checksum::verify(&d), Ok(()));
            out.push(d);
        }
        out
    }

    /// The superpacket a TUN read hands over for a `UDP_SEGMENT` send of `data` (lengths of
    /// the whole; with `partial`, the pseudo-header sum over the whole length in the UDP
    /// checksum field and `NEEDS_CSUM`, else the whole thing's complete checksum).
    fn superpacket(v6: bool, id: u16, data: &[u8], mss: u16, partial: bool) -> (Vec<u8>, VnetHdr) {
        let mut sp = Vec::new();
        let l4 = 8 + data.len();
        let (ip, mut udp) = if v6 {
            let h = v6_header(l4);
            h.write(&mut sp).unwrap();
            (
                40,
                UdpHeader::with_ipv6_checksum(PORTS.0, PORTS.1, &h, data).unwrap(),
            )
        } else {
            let h = v4_header(l4, id);
            h.write(&mut sp).unwrap();
            (
                20,
                UdpHeader::with_ipv4_checksum(PORTS.0, PORTS.1, &h, data).unwrap(),
            )
        };
        if partial {
            udp.checksum = if v6 {
                pseudo_sum_v6(SRC6, DST6, PROTO_UDP, l4 as u32)
            } else {
                pseudo_sum(SRC4, DST4, PROTO_UDP, l4 as u16)
            };
        }
        udp.write(&mut sp).unwrap();
        sp.extend_from_slice(data);
        let h = VnetHdr {
            flags: if partial { F_NEEDS_CSUM } else { 0 },
            gso_type: GSO_UDP_L4,
            hdr_len: (ip + 8) as u16,
            gso_size: mss,
            csum_start: if partial { ip as u16 } else { 0 },
            csum_offset: if partial { 6 } else { 0 },
        };
        (sp, h)
    }

    /// Everything a port hands out for one read: the first datagram cut in place, the rest
    /// popped (into a buffer or as vectors).
    fn cut(h: &VnetHdr, sp: &[u8], keep: bool, vecs: bool) -> Vec<(Vec<u8>, Ingress)> {
        let mut q = UsoQueue::new();
        let mut read = sp.to_vec();
        read.extend_from_slice(&[0xee; 3]); // trailing bytes past the IP length are ignored
        let (len, ing) = q.take(h, &mut read, keep).expect("a valid superpacket");
        let mut out = vec![(read[..len].to_vec(), ing)];
        let mut buf = vec![0u8; 65_575];
        loop {
            let next = if vecs {
                q.pop_vec().map(|r| r.unwrap())
            } else {
                q.pop_into(&mut buf).map(|r| {
                    let (n, ing) = r.unwrap();
                    (buf[..n].to_vec(), ing)
                })
            };
            let Some(d) = next else { break };
            out.push(d);
        }
        assert_eq!(q.pending(), 0);
        out
    }

    /// 48 000 bytes at gso_size 1200 (the root test's send) and 3000 bytes at 1200 (a short
    /// last datagram), both families, partial or complete as read, kept partial or not:
    /// exactly the datagrams the sender would have sent without USO.
    #[test]
    fn cuts_into_exactly_the_datagrams_sent() {
        for v6 in [false, true] {
            for (n, mss) in [(48_000, 1200u16), (3000, 1200), (1200, 1200), (1201, 1200)] {
                let data = payload(n);
                let want = sent(v6, 0xfffe, &data, usize::from(mss));
                for (partial, keep, vecs) in [
                    (true, false, false),
                    (true, true, false),
                    (true, true, true),
                    (false, true, true),
                ] {
                    let (sp, h) = superpacket(v6, 0xfffe, &data, mss, partial);
                    let got = cut(&h, &sp, keep, vecs);
                    let what = format!("v6 {v6} n {n} partial {partial} keep {keep}");
                    assert_eq!(got.len(), want.len(), "{what}");
                    for (i, ((mut d, ing), w)) in got.into_iter().zip(&want).enumerate() {
                        let marked = partial && keep && !v6;
                        assert_eq!(wire::partial::is_marked(&d), marked, "{what} #{i}");
                        let expect = match (partial, marked) {
                            (false, _) => Ingress::Complete,
                            (true, true) => Ingress::KeptPartial,
                            (true, false) => Ingress::Completed,
                        };
                        assert_eq!(ing, expect, "{what} #{i}");
                        if marked {
                            assert!(wire::partial::complete(&mut d));
                        }
                        assert_eq!(&d, w, "{what} #{i}");
                    }
                }
            }
        }
    }

    /// The largest reads: an IPv6 payload of 65 535 bytes (a datagram longer than 64 KiB
    /// when it is one) and an IPv4 datagram of 65 535 bytes, cut or whole.
    #[test]
    fn largest_superpackets() {
        for (v6, n) in [(true, 65_535 - 8), (false, 65_535 - 28)] {
            let data = payload(n);
            for mss in [n as u16, 1200, 65_535] {
                let (sp, h) = superpacket(v6, 9, &data, mss, true);
                let got = cut(&h, &sp, true, false);
                let want = sent(v6, 9, &data, usize::from(mss));
                assert_eq!(got.len(), want.len(), "v6 {v6} mss {mss}");
                for ((mut d, _), w) in got.into_iter().zip(&want) {
                    wire::partial::complete(&mut d);
                    assert_eq!(&d, w, "v6 {v6} mss {mss}");
                }
            }
        }
    }

    /// A complete IPv4 superpacket with checksum 0 ("none") gives datagrams with 0 too.
    #[test]
    fn no_checksum_stays_none() {
        let data = payload(2500);
        let (mut sp, mut h) = superpacket(false, 7, &data, 1000, false);
        sp[26..28].copy_from_slice(&[0, 0]);
        h.flags = 0;
        let got = cut(&h, &sp, true, false);
        let want = sent(false, 7, &data, 1000);
        assert_eq!(got.len(), 3);
        for ((d, ing), w) in got.iter().zip(&want) {
            assert_eq!(*ing, Ingress::Complete);
            assert_eq!(d[26..28], [0, 0]);
            assert_eq!(d[..26], w[..26]);
            assert_eq!(d[28..], w[28..]);
        }
    }

    #[test]
    fn malformed_superpackets_are_refused() {
        let data = payload(3000);
        let (sp, h) = superpacket(false, 1, &data, 1200, true);
        let (sp6, h6) = superpacket(true, 0, &data, 1200, true);
        let mut q = UsoQueue::new();
        let mut try_take = |h: VnetHdr, mut p: Vec<u8>| {
            let before = p.clone();
            let r = q.take(&h, &mut p, true);
            if r.is_err() {
                assert_eq!(p, before, "refused, yet changed");
                assert_eq!(q.pending(), 0);
                assert!(q.pop_vec().is_none());
            }
            r.map(|_| ())
        };
        // The superpacket with one byte set to a value.
        let edit = |base: &[u8], at: usize, v: u8| {
            let mut p = base.to_vec();
            p[at] = v;
            p
        };
        let mut empty = sp[..28].to_vec();
        empty[2..4].copy_from_slice(&28u16.to_be_bytes());
        let cases = [
            (VnetHdr { gso_size: 0, ..h }, sp.clone(), UsoError::GsoSize),
            (h, sp[..2000].to_vec(), UsoError::Truncated),
            (h6, sp6[..2000].to_vec(), UsoError::Truncated),
            (h6, sp6[..39].to_vec(), UsoError::Truncated),
            (h, sp[..10].to_vec(), UsoError::Truncated),
            (h, Vec::new(), UsoError::Truncated),
            (h, edit(&sp, 9, 6), UsoError::NotUdp),   // TCP
            (h6, edit(&sp6, 6, 6), UsoError::NotUdp), // TCP
            (h, edit(&sp, 6, sp[6] | 0x20), UsoError::NotUdp), // MF: a fragment
            (h, edit(&sp, 0, 0x55), UsoError::NotUdp), // version 5
            (h, edit(&sp, 0, 0x44), UsoError::Truncated), // IHL 16
            (h, empty, UsoError::Truncated),          // no payload
        ];
        for (i, (hdr, p, e)) in cases.into_iter().enumerate() {
            assert_eq!(try_take(hdr, p), Err(e), "case {i}");
        }
        let bad = VnetHdr {
            csum_offset: 16,
            ..h
        };
        assert_eq!(try_take(bad, sp.clone()), Err(UsoError::CsumRange));
        let bad = VnetHdr {
            csum_start: 40,
            ..h
        };
        assert_eq!(try_take(bad, sp.clone()), Err(UsoError::CsumRange));
        // A buffer too small for the next datagram: that one is dropped, the rest follow.
        assert_eq!(try_take(h, sp.clone()), Ok(()));
        let mut small = [0u8; 100];
        assert_eq!(q.pop_into(&mut small), Some(Err(UsoError::Room)));
        assert_eq!(q.pending(), 1);
        assert!(matches!(q.pop_vec(), Some(Ok((d, _))) if d.len() == 28 + 600));
        assert!(q.pop_vec().is_none());
    }

    /// Arbitrary bytes behind a USO header never panic, and whatever is handed out fits.
    #[test]
    fn random_input_never_panics() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut q = UsoQueue::new();
        let mut buf = vec![0u8; 4096];
        for k in 0..20_000 {
            // Now and then a read as long as they come (and a buffer that may be too short).
            let n = if k % 50 == 0 {
                rng.random_range(65_400..=65_575)
            } else {
                rng.random_range(0..3000)
            };
            let mut p: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            if n > 40 && rng.random_bool(0.7) {
                p[0] = if rng.random_bool(0.5) { 0x45 } else { 0x60 };
                p[6] = if p[0] == 0x60 { PROTO_UDP } else { 0 };
                p[9] = PROTO_UDP;
                // Lengths that match the read, so that most of these get cut.
                let (at, len) = if p[0] == 0x60 { (4, n - 40) } else { (2, n) };
                p[at..at + 2].copy_from_slice(&(len.min(65_535) as u16).to_be_bytes());
            }
            let h = VnetHdr {
                flags: rng.random_range(0..2),
                gso_type: GSO_UDP_L4,
                hdr_len: rng.random(),
                gso_size: match k % 3 {
                    0 => rng.random(),
                    1 => u16::MAX,
                    _ => rng.random_range(0..1600),
                },
                csum_start: if rng.random_bool(0.5) {
                    20
                } else {
                    rng.random()
                },
                csum_offset: if rng.random_bool(0.5) {
                    6
                } else {
                    rng.random()
                },
            };
            if let Ok((len, _)) = q.take(&h, &mut p, rng.random()) {
                assert!(len <= p.len());
            }
            while let Some(r) = q.pop_into(&mut buf) {
                if let Ok((len, _)) = r {
                    assert!(len <= buf.len());
                }
            }
        }
    }
}
