//! A longest-prefix-match index over IPv4 and IPv6 networks (for routing tables).
//!
//! Owns only the lookup structure: per family, networks grouped by prefix length (longest
//! first), each group a hash map from network address to the caller's entry index. A lookup costs one
//! probe per distinct prefix length (a handful in a routing table) instead of a scan over
//! every route. The routes themselves stay with the caller (`router::Router`,
//! `nodestack::Node`).

use std::hash::Hash;
use std::net::IpAddr;

use fnv::FnvHashMap;
use ipnet::IpNet;

/// Network address → entry (FNV: SipHash showed in the route-lookup profile).
type NetMap<K> = FnvHashMap<K, usize>;

/// One family's networks: (prefix length, network address → entry), longest prefix first.
#[derive(Debug, Clone)]
struct Family<K> {
    by_len: Vec<(u8, NetMap<K>)>,
}

impl<K> Default for Family<K> {
    fn default() -> Self {
        Family { by_len: Vec::new() }
    }
}

impl<K: Copy + Eq + Hash + std::ops::BitAnd<Output = K>> Family<K> {
    fn insert(&mut self, len: u8, network: K, idx: usize) {
        let pos = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(p) if self.by_len[p].0 == len => p,
            Some(p) => {
                self.by_len.insert(p, (len, NetMap::default()));
                p
            }
            None => {
                self.by_len.push((len, NetMap::default()));
                self.by_len.len() - 1
            }
        };
        self.by_len[pos].1.insert(network, idx);
    }

    fn lookup(&self, d: K, mask: impl Fn(u8) -> K) -> Option<usize> {
        self.by_len
            .iter()
            .find_map(|(len, nets)| nets.get(&(d & mask(*len))).copied())
    }
}

/// Network → entry index, longest-prefix lookup; IPv4 and IPv6 networks are kept apart
/// (an address only ever matches networks of its own family).
#[derive(Debug, Clone, Default)]
pub struct PrefixIndex {
    v4: Family<u32>,
    v6: Family<u128>,
}

impl PrefixIndex {
    /// Index entry `idx` under `net` (host bits ignored). A later entry with the same
    /// network replaces the earlier one, as a `max_by_key` scan in insertion order picks
    /// the last of equal candidates.
    pub fn insert(&mut self, net: impl Into<IpNet>, idx: usize) {
        match net.into().trunc() {
            IpNet::V4(n) => self.v4.insert(n.prefix_len(), u32::from(n.network()), idx),
            IpNet::V6(n) => self.v6.insert(n.prefix_len(), u128::from(n.network()), idx),
        }
    }

    /// The entry of the longest network containing `dst`.
    pub fn lookup(&self, dst: impl Into<IpAddr>) -> Option<usize> {
        match dst.into() {
            IpAddr::V4(d) => self.v4.lookup(u32::from(d), |len| {
                u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
            }),
            IpAddr::V6(d) => self.v6.lookup(u128::from(d), |len| {
                u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index agrees with a linear longest-prefix scan (last added wins on ties).
    #[test]
    fn lookup_matches_linear_scan() {
        let nets: Vec<IpNet> = [
            "192.168.0.0/24",
            "10.244.1.0/24",
            "0.0.0.0/0",
            "10.244.2.0/24",
            "10.244.0.0/16",
            "10.244.2.0/24",
            "10.244.2.128/25",
            "10.244.3.7/32",
            "::/0",
            "fd00:10:244:1::/64",
            "fd00:10:244::/56",
            "fd00:10:244:2::5/128",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let mut ix = PrefixIndex::default();
        for (i, n) in nets.iter().enumerate() {
            ix.insert(*n, i);
        }
        let linear = |dst: IpAddr| {
            nets.iter()
                .enumerate()
                .filter(|(_, n)| n.contains(&dst))
                .max_by_key(|(_, n)| n.prefix_len())
                .map(|(i, _)| i)
        };
        for dst in [
            [192, 168, 0, 7],
            [10, 244, 1, 3],
            [10, 244, 2, 3],
            [10, 244, 2, 200],
            [10, 244, 3, 7],
            [10, 244, 3, 8],
            [10, 244, 9, 1],
            [8, 8, 8, 8],
        ] {
            let dst = IpAddr::from(dst);
            assert_eq!(ix.lookup(dst), linear(dst), "{dst}");
        }
        for dst in [
            "fd00:10:244:1::7",
            "fd00:10:244:2::5",
            "fd00:10:244:2::6",
            "fd00:10:245::1",
            "2001:db8::1",
        ] {
            let dst: IpAddr = dst.parse().unwrap();
            assert_eq!(ix.lookup(dst), linear(dst), "{dst}");
        }
        assert_eq!(ix.lookup(std::net::Ipv4Addr::new(10, 244, 2, 3)), Some(5));
        assert_eq!(
            ix.lookup("fd00:10:244:1::9".parse::<IpAddr>().unwrap()),
            Some(9)
        );
        // The IPv6 default route never answers an IPv4 address and vice versa.
        let mut only6 = PrefixIndex::default();
        only6.insert("::/0".parse::<IpNet>().unwrap(), 0);
        assert_eq!(only6.lookup(std::net::Ipv4Addr::LOCALHOST), None);
        assert_eq!(
            PrefixIndex::default().lookup(std::net::Ipv4Addr::LOCALHOST),
            None
        );
    }
}
