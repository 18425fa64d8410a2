//! IPv4 network arithmetic the lab needs in several places, written once.

use std::net::Ipv4Addr;

/// The network address of `addr/prefix_len` (10.244.1.7/24 → 10.244.1.0); a prefix length
/// over 32 counts as 32.
pub fn network(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & mask)
}

/// The first host address of the network `addr/prefix_len` is in (10.244.1.0/24 →
/// 10.244.1.1): a node network's default router, a pod CIDR's cni0, a client network's
/// gateway. `None` when the network has no room for one (/31, /32).
pub fn first_host(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len > 30 {
        return None;
    }
    u32::from(network(addr, prefix_len))
        .checked_add(1)
        .map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_of_networks() {
        let cases = [
            ("10.244.1.0", 24, Some("10.244.1.1")),
            ("203.0.113.11", 24, Some("203.0.113.1")),
            ("255.255.255.252", 30, Some("255.255.255.253")),
            ("0.0.0.0", 0, Some("0.0.0.1")),
            ("255.255.255.255", 32, None),
            ("10.0.0.0", 31, None),
        ];
        for (addr, len, want) in cases {
            let want = want.map(|w| w.parse::<Ipv4Addr>().unwrap());
            assert_eq!(first_host(addr.parse().unwrap(), len), want, "{addr}/{len}");
        }
        let a: Ipv4Addr = "10.244.1.7".parse().unwrap();
        assert_eq!(network(a, 24), Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(network(a, 40), a);
        assert_eq!(network(a, 0), Ipv4Addr::UNSPECIFIED);
    }
}
