//! An L3 broadcast domain (the node network, a node's cni0 bridge, a client network).
//!
//! Owns only the "ARP table": which attachment holds which address. There are no MACs: a
//! sender hands a datagram to the segment together with its next hop, and the segment
//! answers which attachment owns that address (TUN devices are L3 too). A segment may carry
//! IPv6 prefixes besides its IPv4 one (a dual-stack link): IPv6 next hops resolve through the
//! same table, so there is no NDP either (links are L3; neighbour discovery has nothing to
//! find).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One segment; `A` identifies an attachment (chosen by whoever owns the topology).
#[derive(Debug, Clone)]
pub struct Segment<A> {
    name: String,
    net: Ipv4Net,
    /// IPv6 prefixes on this link (none for an IPv4-only segment).
    nets6: Vec<Ipv6Net>,
    members: BTreeMap<IpAddr, A>,
}

impl<A: Copy> Segment<A> {
    pub fn new(name: impl Into<String>, net: Ipv4Net) -> Self {
        Segment {
            name: name.into(),
            net,
            nets6: Vec::new(),
            members: BTreeMap::new(),
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn net(&self) -> Ipv4Net {
        self.net
    }
    /// The IPv6 prefixes on this link.
    pub fn nets6(&self) -> &[Ipv6Net] {
        &self.nets6
    }
    /// Put IPv6 prefix `net` on this link too (a no-op when it is already there).
    pub fn add_net6(&mut self, net: Ipv6Net) {
        let net = net.trunc();
        if !self.nets6.contains(&net) {
            self.nets6.push(net);
        }
    }
    /// `addr` (on this segment) is owned by `who`. Replaces a previous owner.
    pub fn attach(&mut self, addr: impl Into<IpAddr>, who: A) {
        self.members.insert(addr.into(), who);
    }
    pub fn detach(&mut self, addr: impl Into<IpAddr>) -> Option<A> {
        self.members.remove(&addr.into())
    }
    /// Neighbour resolution: who owns `next_hop`. `None` = no answer (the datagram is lost,
    /// as with an unanswered ARP request or neighbour solicitation).
    pub fn resolve(&self, next_hop: impl Into<IpAddr>) -> Option<A> {
        self.members.get(&next_hop.into()).copied()
    }
    /// Is `addr` inside one of this segment's prefixes (on-link)?
    pub fn on_link(&self, addr: impl Into<IpAddr>) -> bool {
        match addr.into() {
            IpAddr::V4(a) => self.net.contains(&a),
            IpAddr::V6(a) => self.nets6.iter().any(|n| n.contains(&a)),
        }
    }
    /// Every prefix of this segment, the IPv4 one first.
    pub fn nets(&self) -> impl Iterator<Item = IpNet> + '_ {
        std::iter::once(IpNet::V4(self.net)).chain(self.nets6.iter().map(|n| IpNet::V6(*n)))
    }
    pub fn members(&self) -> impl Iterator<Item = (IpAddr, A)> + '_ {
        self.members.iter().map(|(a, w)| (*a, *w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn resolves_owner_of_next_hop() {
        let mut s: Segment<u32> = Segment::new("nodes", "10.151.30.0/24".parse().unwrap());
        s.attach("10.151.30.11".parse::<Ipv4Addr>().unwrap(), 1);
        s.attach("10.151.30.12".parse::<Ipv4Addr>().unwrap(), 2);
        assert_eq!(
            s.resolve("10.151.30.12".parse::<Ipv4Addr>().unwrap()),
            Some(2)
        );
        assert_eq!(s.resolve("10.151.30.99".parse::<Ipv4Addr>().unwrap()), None);
        assert!(s.on_link("10.151.30.200".parse::<Ipv4Addr>().unwrap()));
        assert!(!s.on_link("10.244.1.2".parse::<Ipv4Addr>().unwrap()));
    }

    /// IPv6 next hops resolve through the same table (no NDP); on-link by the IPv6 prefixes.
    #[test]
    fn dual_stack_segment() {
        let mut s: Segment<u32> = Segment::new("nodes", "10.151.30.0/24".parse().unwrap());
        let a6: Ipv6Addr = "fd00:151:30::11".parse().unwrap();
        assert!(!s.on_link(a6));
        s.add_net6("fd00:151:30::/64".parse().unwrap());
        s.add_net6("fd00:151:30::/64".parse().unwrap());
        assert_eq!(s.nets6().len(), 1);
        s.attach("10.151.30.11".parse::<Ipv4Addr>().unwrap(), 1);
        s.attach(a6, 1);
        assert!(s.on_link(a6));
        assert!(!s.on_link("fd00:151:31::1".parse::<Ipv6Addr>().unwrap()));
        assert_eq!(s.resolve(a6), Some(1));
        assert_eq!(s.detach(a6), Some(1));
        assert_eq!(s.resolve(a6), None);
        assert_eq!(s.nets().count(), 2);
    }
}
