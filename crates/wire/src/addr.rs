//! IP families and the IPv4 network arithmetic the lab needs in several places, written once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP family (`IPv4` / `IPv6` in Kubernetes' `ipFamilies` and EndpointSlice
/// `addressType`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum IpFamily {
    #[default]
    #[serde(rename = "IPv4")]
    V4,
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    /// The family of `a`.
    #[inline]
    pub fn of(a: IpAddr) -> IpFamily {
        if a.is_ipv6() {
            IpFamily::V6
        } else {
            IpFamily::V4
        }
    }
    /// Kubernetes' spelling: `IPv4` / `IPv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The IPv4 address in `a`; an IPv6 address gives its IPv4-mapped part or 0.0.0.0. For code
/// paths that only ever see IPv4 datagrams (their parse said so).
#[inline]
pub fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(x) => x,
        IpAddr::V6(x) => x.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// The IPv6 address in `a`; an IPv4 address gives its IPv4-mapped form. For code paths
/// that only ever see IPv6 datagrams (their parse said so).
#[inline]
pub fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(x) => x,
        IpAddr::V4(x) => x.to_ipv6_mapped(),
    }
}

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
