//! Just enough IPv4/TCP/UDP/ICMP to build fuzz inputs and to repair checksums after a
//! mutation (so mutated datagrams get past checksum checks into the NAT paths). Total on any
//! input: every function accepts arbitrary bytes.

use std::net::Ipv4Addr;

/// IP protocol numbers.
pub const ICMP: u8 = 1;
/// TCP.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;

/// TCP flag bits (FIN, SYN, RST, PSH, ACK) by their RFC 9293 names.
pub const TCP_FLAGS: [(&str, u8); 5] = [
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
];

/// The flag byte for a name like `"SA"` (S SYN, A ACK, F FIN, R RST, P PSH).
pub fn tcp_flags(spec: &str) -> u8 {
    spec.chars()
        .filter_map(|c| TCP_FLAGS.iter().find(|(n, _)| n.starts_with(c)))
        .fold(0, |acc, (_, bit)| acc | bit)
}

/// The Internet checksum (RFC 1071) of `data`, starting from the partial sum `init`.
pub fn checksum(init: u32, data: &[u8]) -> u16 {
    let mut sum = init;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [b] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 datagram (20-byte header, DF clear) around `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()).min(usize::from(u16::MAX)) as u16;
    let mut p = Vec::with_capacity(20 + payload.len());
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 0, ttl, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    fix_checksums(&mut p);
    p
}

/// A TCP segment (20-byte header, checksum filled in by [`ipv4`]).
pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

/// A UDP datagram (checksum filled in by [`ipv4`]).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()).min(usize::from(u16::MAX)) as u16;
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An ICMP message: type, code, the 4 "rest of header" bytes, payload (for errors: the
/// quoted datagram).
pub fn icmp(kind: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(payload);
    m
}

/// Header length of the IPv4 datagram `p`, if its first byte says IPv4 and it fits.
pub fn ihl(p: &[u8]) -> Option<usize> {
    let b = *p.first()?;
    let ihl = usize::from(b & 0x0f) * 4;
    (b >> 4 == 4 && ihl >= 20 && p.len() >= ihl).then_some(ihl)
}

/// Recomputes the IPv4 header checksum and the TCP/UDP/ICMP checksum of `p` (as far as the
/// bytes allow; the L4 checksum covers the payload up to the header's total length). Does
/// nothing to bytes that are not IPv4.
pub fn fix_checksums(p: &mut [u8]) {
    let Some(ihl) = ihl(p) else { return };
    p[10] = 0;
    p[11] = 0;
    let c = checksum(0, &p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).clamp(ihl, p.len());
    let proto = p[9];
    let (src, dst) = ([p[12], p[13], p[14], p[15]], [p[16], p[17], p[18], p[19]]);
    let l4 = &mut p[ihl..total];
    let off = match proto {
        TCP if l4.len() >= 18 => 16,
        UDP if l4.len() >= 8 => 6,
        ICMP if l4.len() >= 4 => 2,
        _ => return,
    };
    l4[off] = 0;
    l4[off + 1] = 0;
    let init = if proto == ICMP {
        0
    } else {
        let mut ph = 0u32;
        for w in [src, dst] {
            ph += u32::from(u16::from_be_bytes([w[0], w[1]]));
            ph += u32::from(u16::from_be_bytes([w[2], w[3]]));
        }
        ph + u32::from(proto) + l4.len() as u32
    };
    let mut c = checksum(init, l4);
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// (src, dst, proto, sport, dport) of a datagram whose headers are long enough.
pub fn five_tuple(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, u16, u16)> {
    let ihl = ihl(p)?;
    let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    let l4 = p.get(ihl..ihl + 4)?;
    let port = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]);
    Some((ip(12), ip(16), p[9], port(0), port(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let p = ipv4(a, b, TCP, 64, 1, &tcp(1, 2, 3, 4, tcp_flags("S"), b"abc"));
        assert_eq!(checksum(0, &p[..20]), 0);
        assert_eq!(tcp_flags("SA"), 0x12);
        assert_eq!(tcp_flags("FPA"), 0x19);
        let u = ipv4(a, b, UDP, 64, 1, &udp(53, 5353, b"q"));
        assert_eq!(five_tuple(&u), Some((a, b, UDP, 53, 5353)));
        let i = ipv4(a, b, ICMP, 64, 1, &icmp(3, 1, [0; 4], &p[..28]));
        assert_eq!(checksum(0, &i[20..]), 0);
        for n in 0..p.len() {
            let mut q = p[..n].to_vec();
            fix_checksums(&mut q);
        }
    }
}
