//! The hop count every forwarding hop decrements: IPv4's TTL, IPv6's hop limit.

use crate::error::PacketError;

/// Decrement the TTL (IPv4, header checksum recomputed) or hop limit (IPv6, no header
/// checksum) in place. Returns the new value, or `None` when it was already ≤ 1 (the
/// datagram must not be forwarded: answer with [`crate::icmp::time_exceeded`]; packet
/// unchanged). Errors when `pkt` has no IPv4/IPv6 header.
pub fn decrement_hop_limit(pkt: &mut [u8]) -> Result<Option<u8>, PacketError> {
    let (at, header_len) = match pkt.first().map(|b| b >> 4) {
        Some(4) => (8, crate::parse::ipv4_header(pkt)?.slice().len()),
        Some(6) if pkt.len() >= 40 => (7, 0),
        Some(6) => return Err(PacketError::Truncated),
        Some(v) => return Err(PacketError::NotIp(v)),
        None => return Err(PacketError::Truncated),
    };
    let hops = pkt[at];
    if hops <= 1 {
        return Ok(None);
    }
    pkt[at] = hops - 1;
    // A valid IPv4 header slice is at least 20 bytes: checksum at 10..12.
    if let Some(header) = pkt.get_mut(..header_len).filter(|h| h.len() >= 20) {
        header[10..12].fill(0);
        let sum = crate::checksum::checksum(header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(Some(hops - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrements_either_family() {
        let mut v4 = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 2)
            .udp(1, 2)
            .write(&mut v4, b"x")
            .unwrap();
        assert_eq!(decrement_hop_limit(&mut v4), Ok(Some(1)));
        assert_eq!(crate::checksum::verify(&v4), Ok(()));
        assert_eq!(decrement_hop_limit(&mut v4), Ok(None));
        let mut v6 = Vec::new();
        etherparse::PacketBuilder::ipv6([1; 16], [2; 16], 64)
            .udp(1, 2)
            .write(&mut v6, b"x")
            .unwrap();
        assert_eq!(decrement_hop_limit(&mut v6), Ok(Some(63)));
        assert_eq!(v6[7], 63);
        assert_eq!(crate::checksum::verify(&v6), Ok(()));
        v6[7] = 1;
        assert_eq!(decrement_hop_limit(&mut v6), Ok(None));
        assert!(decrement_hop_limit(&mut [0x60; 10]).is_err());
        assert!(decrement_hop_limit(&mut []).is_err());
    }
}
