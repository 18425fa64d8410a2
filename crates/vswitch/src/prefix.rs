//! A longest-prefix-match index over IPv4 networks (for routing tables).
//!
//! Owns only the lookup structure: networks grouped by prefix length (longest first), each
//! group a hash map from network address to the caller's entry index. A lookup costs one
//! probe per distinct prefix length (a handful in a routing table) instead of a scan over
//! every route. The routes themselves stay with the caller (`router::Router`,
//! `nodestack::Node`).

use std::net::Ipv4Addr;

use fnv::FnvHashMap;
use ipnet::Ipv4Net;

/// Network address → entry (FNV: SipHash showed in the route-lookup profile).
type NetMap = FnvHashMap<u32, usize>;

/// Network → entry index, longest-prefix lookup.
#[derive(Debug, Clone, Default)]
pub struct PrefixIndex {
    /// (prefix length, network address → entry), longest prefix first.
    by_len: Vec<(u8, NetMap)>,
}

impl PrefixIndex {
    /// Index entry `idx` under `net` (host bits ignored). A later entry with the same
    /// network replaces the earlier one, as a `max_by_key` scan in insertion order picks
    /// the last of equal candidates.
    pub fn insert(&mut self, net: Ipv4Net, idx: usize) {
        let len = net.prefix_len();
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
        self.by_len[pos]
            .1
            .insert(u32::from(net.trunc().network()), idx);
    }

    /// The entry of the longest network containing `dst`.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<usize> {
        let d = u32::from(dst);
        self.by_len.iter().find_map(|(len, nets)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            nets.get(&(d & mask)).copied()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index agrees with a linear longest-prefix scan (last added wins on ties).
    #[test]
    fn lookup_matches_linear_scan() {
        let nets: Vec<Ipv4Net> = [
            "192.168.0.0/24",
            "10.244.1.0/24",
            "0.0.0.0/0",
            "10.244.2.0/24",
            "10.244.0.0/16",
            "10.244.2.0/24",
            "10.244.2.128/25",
            "10.244.3.7/32",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let mut ix = PrefixIndex::default();
        for (i, n) in nets.iter().enumerate() {
            ix.insert(*n, i);
        }
        let linear = |dst: Ipv4Addr| {
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
            let dst = Ipv4Addr::from(dst);
            assert_eq!(ix.lookup(dst), linear(dst), "{dst}");
        }
        assert_eq!(ix.lookup(Ipv4Addr::new(10, 244, 2, 3)), Some(5));
        assert_eq!(PrefixIndex::default().lookup(Ipv4Addr::LOCALHOST), None);
    }
}
