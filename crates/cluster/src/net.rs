//! IPv4 helpers shared by the config checks and the scheduler: parsing with lab-style
//! messages, CIDR overlap, "the first host of a network", address claims.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::LabError;

/// `addr + n`, `None` past 255.255.255.255.
pub fn offset(addr: Ipv4Addr, n: u32) -> Option<Ipv4Addr> {
    u32::from(addr).checked_add(n).map(Ipv4Addr::from)
}

/// The first host address of a network (10.244.1.0/24 → 10.244.1.1): a node network's
/// default router, a pod CIDR's cni0. `None` when the network has no room for it (/31, /32).
pub fn first_host(net: &Ipv4Net) -> Option<Ipv4Addr> {
    wire::first_host(net.network(), net.prefix_len())
}

/// Whether `ip` is a host address of `net` (inside, neither network nor broadcast address).
pub fn is_host_of(net: &Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && ip != net.network() && ip != net.broadcast()
}

/// Whether two CIDRs share any address.
pub fn nets_overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The i-th /24 inside `net` (10.244.0.0/16 → 10.244.i.0/24).
pub fn nth_subnet(net: &Ipv4Net, i: usize) -> Option<Ipv4Net> {
    if net.prefix_len() > 24 {
        return None;
    }
    net.subnets(24).ok()?.nth(i)
}

pub fn parse_ip(file: &str, field: &str, s: &str) -> Result<Ipv4Addr, LabError> {
    s.trim()
        .parse()
        .map_err(|_| LabError::invalid(file, field, format!("{s:?} is not an IPv4 address")))
}

pub fn parse_net(file: &str, field: &str, s: &str) -> Result<Ipv4Net, LabError> {
    s.trim().parse().map_err(|_| {
        LabError::invalid(
            file,
            field,
            format!("{s:?} is not an IPv4 CIDR (like 10.244.1.0/24)"),
        )
    })
}

/// Addresses taken so far (node, client, router, LB), for "duplicate address" errors.
#[derive(Debug, Default)]
pub struct Claims(HashMap<Ipv4Addr, String>);

impl Claims {
    pub fn claim(
        &mut self,
        file: &str,
        ip: Ipv4Addr,
        field: &str,
        owner: &str,
    ) -> Result<(), LabError> {
        if let Some(other) = self.0.get(&ip) {
            return Err(LabError::invalid(
                file,
                field,
                format!("duplicate address {ip} (already used by {other})"),
            ));
        }
        self.0.insert(ip, owner.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_never_overflows() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            first_host(&n("10.244.1.0/24")),
            Some(Ipv4Addr::new(10, 244, 1, 1))
        );
        assert_eq!(
            first_host(&n("255.255.255.252/30")),
            Some(Ipv4Addr::new(255, 255, 255, 253))
        );
        assert_eq!(first_host(&n("255.255.255.255/32")), None);
        assert_eq!(first_host(&n("10.0.0.0/31")), None);
        assert_eq!(offset(Ipv4Addr::BROADCAST, 1), None);
    }
}
