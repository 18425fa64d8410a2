//! An L3 broadcast domain (the node network, a node's cni0 bridge, a client network).
//!
//! Owns only the "ARP table": which attachment holds which address. There are no MACs: a
//! sender hands a datagram to the segment together with its next hop, and the segment
//! answers which attachment owns that address (TUN devices are L3 too).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// One segment; `A` identifies an attachment (chosen by whoever owns the topology).
#[derive(Debug, Clone)]
pub struct Segment<A> {
    name: String,
    net: Ipv4Net,
    members: BTreeMap<Ipv4Addr, A>,
}

impl<A: Copy> Segment<A> {
    pub fn new(name: impl Into<String>, net: Ipv4Net) -> Self {
        Segment {
            name: name.into(),
            net,
            members: BTreeMap::new(),
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn net(&self) -> Ipv4Net {
        self.net
    }
    /// `addr` (on this segment) is owned by `who`. Replaces a previous owner.
    pub fn attach(&mut self, addr: Ipv4Addr, who: A) {
        self.members.insert(addr, who);
    }
    pub fn detach(&mut self, addr: Ipv4Addr) -> Option<A> {
        self.members.remove(&addr)
    }
    /// Neighbour resolution: who owns `next_hop`. `None` = no answer (the datagram is lost,
    /// as with an unanswered ARP request).
    pub fn resolve(&self, next_hop: Ipv4Addr) -> Option<A> {
        self.members.get(&next_hop).copied()
    }
    /// Is `addr` inside this segment's prefix (on-link)?
    pub fn on_link(&self, addr: Ipv4Addr) -> bool {
        self.net.contains(&addr)
    }
    pub fn members(&self) -> impl Iterator<Item = (Ipv4Addr, A)> + '_ {
        self.members.iter().map(|(a, w)| (*a, *w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_owner_of_next_hop() {
        let mut s: Segment<u32> = Segment::new("nodes", "10.151.30.0/24".parse().unwrap());
        s.attach("10.151.30.11".parse().unwrap(), 1);
        s.attach("10.151.30.12".parse().unwrap(), 2);
        assert_eq!(s.resolve("10.151.30.12".parse().unwrap()), Some(2));
        assert_eq!(s.resolve("10.151.30.99".parse().unwrap()), None);
        assert!(s.on_link("10.151.30.200".parse().unwrap()));
        assert!(!s.on_link("10.244.1.2".parse().unwrap()));
    }
}
