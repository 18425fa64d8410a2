//! The node's routing table with a longest-prefix-match index.
//!
//! Owns the `ip route` entries in insertion order (what `Node::routes` shows) and an index
//! by prefix length → network → entry, so a lookup costs one hash probe per distinct prefix
//! length (a handful) instead of a scan over every route (one per other node).

use std::net::Ipv4Addr;

use fnv::FnvHashMap;

use crate::node::Route;

/// Routes plus their lookup index.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    /// (prefix length, network → index into `routes`), longest prefix first. Of several
    /// routes with the same destination the last added wins, as the former linear
    /// `max_by_key` scan chose.
    by_len: Vec<(u8, FnvHashMap<u32, usize>)>,
}

impl RouteTable {
    pub(crate) fn push(&mut self, r: Route) {
        let len = r.dest.prefix_len();
        let net = u32::from(r.dest.network());
        let idx = self.routes.len();
        self.routes.push(r);
        let pos = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(p) if self.by_len[p].0 == len => p,
            Some(p) => {
                self.by_len.insert(p, (len, FnvHashMap::default()));
                p
            }
            None => {
                self.by_len.push((len, FnvHashMap::default()));
                self.by_len.len() - 1
            }
        };
        self.by_len[pos].1.insert(net, idx);
    }

    pub(crate) fn as_slice(&self) -> &[Route] {
        &self.routes
    }

    /// Longest-prefix match.
    pub(crate) fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        let d = u32::from(dst);
        self.by_len.iter().find_map(|(len, nets)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            nets.get(&(d & mask)).map(|&i| &self.routes[i])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Iface;
    use ipnet::Ipv4Net;

    fn route(dest: &str, via: Option<[u8; 4]>) -> Route {
        Route {
            dest: dest.parse::<Ipv4Net>().unwrap().trunc(),
            via: via.map(Ipv4Addr::from),
            dev: Iface::Eth0,
        }
    }

    /// The index agrees with a linear longest-prefix scan (last added wins on ties).
    #[test]
    fn lookup_matches_linear_scan() {
        let mut t = RouteTable::default();
        let rs = [
            route("192.168.0.0/24", None),
            route("10.244.1.0/24", None),
            route("0.0.0.0/0", Some([192, 168, 0, 1])),
            route("10.244.2.0/24", Some([192, 168, 0, 12])),
            route("10.244.0.0/16", Some([192, 168, 0, 13])),
            route("10.244.2.0/24", Some([192, 168, 0, 14])),
            route("10.244.2.128/25", Some([192, 168, 0, 15])),
        ];
        for r in &rs {
            t.push(r.clone());
        }
        let linear = |dst: Ipv4Addr| {
            rs.iter()
                .filter(|r| r.dest.contains(&dst))
                .max_by_key(|r| r.dest.prefix_len())
        };
        for dst in [
            [192, 168, 0, 7],
            [10, 244, 1, 3],
            [10, 244, 2, 3],
            [10, 244, 2, 200],
            [10, 244, 9, 1],
            [8, 8, 8, 8],
        ] {
            let dst = Ipv4Addr::from(dst);
            assert_eq!(t.lookup(dst), linear(dst), "{dst}");
        }
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 244, 2, 3)).unwrap().via,
            Some(Ipv4Addr::new(192, 168, 0, 14))
        );
        assert_eq!(RouteTable::default().lookup(Ipv4Addr::LOCALHOST), None);
    }
}
