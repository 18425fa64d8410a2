//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for a 32-bit field change.
#[inline]
pub fn csum_replace4(csum: u16, old: u32, new: u32) -> u16 {
    apply_delta(csum, delta32(0, old, new))
}

use std::net::IpAddr;

/// RFC 1624 eqn. 3 for a 16-bit field change.
#[inline]
pub fn csum_replace2(csum: u16, old: u16, new: u16) -> u16 {
    apply_delta(csum, delta16(0, old, new))
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

/// One's-complement sum of `data` read as big-endian 16-bit words (an odd tail byte padded
/// with zero), folded to 16 bits and *not* complemented: `!ones_sum(d) == checksum(d)`.
/// The fast path for long buffers (64 KiB GSO superpackets): native-endian 32-bit words,
/// their low and high halves summed in 32-bit lanes (no carries to track within a 64 KiB
/// block), which the compiler vectorises (with AVX2 where the CPU has it), swapped once at
/// the end (the sum is byte-order independent, RFC 1071 §2(B)).
pub fn ones_sum(data: &[u8]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { ones_sum_avx2(data) };
    }
    ones_sum_generic(data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn ones_sum_avx2(data: &[u8]) -> u16 {
    ones_sum_generic(data)
}

#[inline(always)]
fn ones_sum_generic(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    // 16 Ki words per block: each half-sum stays below 2^16 * 2^16 = 2^32.
    for block in data.chunks(1 << 16) {
        let (mut lo, mut hi) = (0u32, 0u32);
        let mut words = block.chunks_exact(4);
        for c in &mut words {
            let w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            lo += w & 0xffff;
            hi += w >> 16;
        }
        let rem = words.remainder();
        let mut tail = [0u8; 4];
        tail[..rem.len()].copy_from_slice(rem);
        let w = u32::from_ne_bytes(tail);
        acc += u64::from(lo) + u64::from(hi) + u64::from(w & 0xffff) + u64::from(w >> 16);
    }
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    u16::from_be(acc as u16)
}

/// One's-complement sum (folded, not complemented) of the TCP/UDP pseudo-header of an IPv4
/// datagram: source, destination, protocol and L4 length (RFC 793 §3.1, RFC 768). What a
/// `CHECKSUM_PARTIAL` datagram carries in its L4 checksum field (Linux `tcp_v4_send_check`:
/// `~tcp_v4_check(len, saddr, daddr, 0)`).
pub fn pseudo_sum(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u16 {
    let w = |b: [u8; 4]| {
        u32::from(u16::from_be_bytes([b[0], b[1]])) + u32::from(u16::from_be_bytes([b[2], b[3]]))
    };
    let mut s = w(src) + w(dst) + u32::from(proto) + u32::from(l4_len);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// One's-complement sum (folded, not complemented) of the IPv6 upper-layer pseudo-header
/// (RFC 8200 §8.1): source, destination, 32-bit upper-layer length and next header. Covered
/// by TCP, UDP and (unlike ICMPv4) ICMPv6 checksums.
pub fn pseudo_sum_v6(src: [u8; 16], dst: [u8; 16], proto: u8, l4_len: u32) -> u16 {
    let mut s = delta_bytes(0, &[0; 16], &src);
    s = delta_bytes(s, &[0; 16], &dst);
    s += (l4_len >> 16) + (l4_len & 0xffff) + u32::from(proto);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The full checksum of an upper-layer packet `l4` (its checksum field zeroed by the
/// caller) with the pseudo-header of its family: IPv6 always; IPv4 for TCP/UDP (pass
/// `pseudo = false` for ICMPv4, whose checksum covers the message only).
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8], pseudo: bool) -> u16 {
    if !pseudo {
        return checksum(l4);
    }
    let len = l4.len();
    let ph = match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_sum_v6(s.octets(), d.octets(), proto, len as u32),
        _ => pseudo_sum(
            crate::addr::v4(src).octets(),
            crate::addr::v4(dst).octets(),
            proto,
            len as u16,
        ),
    };
    let mut sum = u32::from(ph) + u32::from(ones_sum(l4));
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Accumulate the change of a byte string `old → new` (an IPv6 address: eight 16-bit
/// words, RFC 1624 applied word by word) into a one's-complement delta. Equal lengths; an
/// odd tail byte is the high byte of a zero-padded word.
pub fn delta_bytes(mut acc: u32, old: &[u8], new: &[u8]) -> u32 {
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let w = |c: &[u8]| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        acc = delta16(acc, w(o), w(n));
    }
    acc
}

/// Accumulate a 16-bit field change `old → new` into a one's-complement delta.
#[inline]
pub fn delta16(acc: u32, old: u16, new: u16) -> u32 {
    acc + u32::from(!old) + u32::from(new)
}

/// Accumulate a 32-bit field change (two 16-bit words).
#[inline]
pub fn delta32(acc: u32, old: u32, new: u32) -> u32 {
    delta16(
        delta16(acc, (old >> 16) as u16, (new >> 16) as u16),
        old as u16,
        new as u16,
    )
}

/// RFC 1624 eqn. 3 with an accumulated delta: `HC' = ~(~HC + Σ(~m + m'))`.
#[inline]
pub fn apply_delta(csum: u16, acc: u32) -> u16 {
    let mut sum = u32::from(!csum) + (acc & 0xffff) + (acc >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// SCTP's checksum (RFC 9260 §6.8, appendix A): CRC32c over the SCTP packet `sctp` (common
/// header + chunks) with its checksum field taken as zero. Stored in the header as
/// `to_le_bytes()`, as Linux's `sctp_compute_cksum` does. Empty for packets under 12 bytes.
pub fn sctp_crc32c(sctp: &[u8]) -> u32 {
    if sctp.len() < 12 {
        return 0;
    }
    let crc = crc32c::crc32c(&sctp[..8]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &sctp[12..])
}

/// Check a datagram's checksums against a full recompute by etherparse (an independent
/// implementation): the IPv4 header, and TCP or UDP (UDP checksum 0 means "none"); for
/// IPv6 TCP, UDP and ICMPv6 with the IPv6 pseudo-header. Names the first wrong one;
/// SCTP's CRC32c is checked with [`sctp_crc32c`]. For tests and fuzz harnesses.
pub fn verify(pkt: &[u8]) -> Result<(), &'static str> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let s = SlicedPacket::from_ip(pkt).map_err(|_| "unparseable datagram")?;
    let (proto, l4) = match &s.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            if h.header_checksum != h.calc_header_checksum() {
                return Err("IPv4 header checksum");
            }
            (h.protocol.0, ip.payload().payload)
        }
        Some(NetSlice::Ipv6(ip)) => (ip.payload().ip_number.0, ip.payload().payload),
        _ => return Err("not IP"),
    };
    if proto == crate::proto::PROTO_SCTP {
        let ok = l4.len() >= 12 && l4[8..12] == sctp_crc32c(l4).to_le_bytes();
        return if ok { Ok(()) } else { Err("SCTP CRC32c") };
    }
    let (got, want, what) = match (&s.net, s.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) => (
            t.checksum(),
            t.to_header()
                .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                .ok(),
            "TCP checksum",
        ),
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) if u.checksum() != 0 => (
            u.checksum(),
            u.to_header()
                .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
                .ok(),
            "UDP checksum",
        ),
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) => (
            t.checksum(),
            t.to_header()
                .calc_checksum_ipv6(&ip.header().to_header(), t.payload())
                .ok(),
            "TCP checksum",
        ),
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(u))) if u.checksum() != 0 => (
            u.checksum(),
            u.to_header()
                .calc_checksum_ipv6(&ip.header().to_header(), u.payload())
                .ok(),
            "UDP checksum",
        ),
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(i))) => {
            let h = ip.header();
            let want = i
                .icmp_type()
                .calc_checksum(h.source(), h.destination(), i.payload());
            (i.checksum(), want.ok(), "ICMPv6 checksum")
        }
        _ => return Ok(()),
    };
    match want {
        Some(w) if w == got => Ok(()),
        _ => Err(what),
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

    /// RFC 3720 appendix B.4: CRC32c of 32 zero bytes is 0x8a9136aa; of 32 bytes 0xff,
    /// 0x62a8ab43. (The field-zeroing variant is checked against it on a 12-byte prefix.)
    #[test]
    fn crc32c_vectors() {
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let mut pkt = [0xffu8; 32];
        pkt[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(sctp_crc32c(&pkt), crc32c::crc32c(&pkt));
    }

    #[test]
    fn ones_sum_matches_checksum() {
        // Every length from 0 to 70 and a 64 KiB buffer, pseudo-random bytes.
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..65_535)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for n in (0..70).chain([1499, 1500, 65_534, 65_535]) {
            assert_eq!(!ones_sum(&data[..n]), checksum(&data[..n]), "length {n}");
        }
        assert_eq!(ones_sum(&[0xff; 64]), 0xffff);
    }

    #[test]
    fn pseudo_sum_completes_to_the_full_checksum() {
        // A TCP segment: field = pseudo sum; the device's sum over the L4 bytes completes it.
        let (src, dst) = ([10, 0, 0, 1], [192, 168, 1, 2]);
        let mut l4 = vec![0u8; 40];
        l4[0..4].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]);
        l4[12] = 0x50;
        for (i, b) in l4.iter_mut().enumerate().skip(20) {
            *b = i as u8;
        }
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6, 0, 40]);
        pseudo.extend_from_slice(&l4);
        let full = checksum(&pseudo);
        l4[16..18].copy_from_slice(&pseudo_sum(src, dst, 6, 40).to_be_bytes());
        assert_eq!(!ones_sum(&l4), full);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
