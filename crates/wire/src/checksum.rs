//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` for a 32-bit field change.
#[inline]
pub fn csum_replace4(csum: u16, old: u32, new: u32) -> u16 {
    apply_delta(csum, delta32(0, old, new))
}

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

/// Check a datagram's checksums against a full recompute by etherparse (an independent
/// implementation): the IPv4 header, and TCP or UDP (UDP checksum 0 means "none"). Names
/// the first wrong one. For tests and fuzz harnesses.
pub fn verify(pkt: &[u8]) -> Result<(), &'static str> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let s = SlicedPacket::from_ip(pkt).map_err(|_| "unparseable datagram")?;
    let Some(NetSlice::Ipv4(ip)) = s.net else {
        return Err("not IPv4");
    };
    let h = ip.header().to_header();
    if h.header_checksum != h.calc_header_checksum() {
        return Err("IPv4 header checksum");
    }
    let (got, want, what) = match s.transport {
        Some(TransportSlice::Tcp(t)) => (
            t.checksum(),
            t.to_header().calc_checksum_ipv4(&h, t.payload()),
            "TCP checksum",
        ),
        Some(TransportSlice::Udp(u)) if u.checksum() != 0 => (
            u.checksum(),
            u.to_header().calc_checksum_ipv4(&h, u.payload()),
            "UDP checksum",
        ),
        _ => return Ok(()),
    };
    match want {
        Ok(w) if w == got => Ok(()),
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

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
