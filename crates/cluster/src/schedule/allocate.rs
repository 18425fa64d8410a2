//! ClusterIP and NodePort allocation (what the apiserver's allocators do for Services that ask
//! for none): seeded random ClusterIPs in the service CIDR of each of a Service's families,
//! NodePorts from the nodeport crate's allocator. Explicit values were claimed while the
//! Services were converted.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nodeport::{IpFamily, NodePortAllocator, PortRange, ServiceType};
use rand::Rng;

use super::endpoints::Pending;
use super::naming::rng_for;
use crate::error::LabError;
use crate::manifest::ManifestDoc;

/// The service CIDRs (kube-apiserver's `--service-cluster-ip-range`): one per family, the
/// first one's family is the cluster's primary.
#[derive(Debug, Clone)]
pub(super) struct ServiceRanges {
    pub v4: Ipv4Net,
    pub v6: Option<Ipv6Net>,
    /// The configured families, primary first.
    pub families: Vec<IpFamily>,
}

impl ServiceRanges {
    /// From the config's `serviceCIDR` list (validated: one or two, one per family, an IPv4
    /// one among them).
    pub fn new(cidrs: &[IpNet]) -> Self {
        let mut v4 = None;
        let mut v6 = None;
        let mut families = Vec::new();
        for c in cidrs {
            match c {
                IpNet::V4(n) => {
                    v4 = Some(*n);
                    families.push(IpFamily::V4);
                }
                IpNet::V6(n) => {
                    v6 = Some(*n);
                    families.push(IpFamily::V6);
                }
            }
        }
        let v4 = v4.unwrap_or_else(|| {
            crate::config::DEFAULT_SERVICE_CIDR
                .parse()
                .expect("a valid CIDR literal")
        });
        if !families.contains(&IpFamily::V4) {
            families.push(IpFamily::V4);
        }
        ServiceRanges { v4, v6, families }
    }

    /// The address of `default/kubernetes`: the first host of the IPv4 range (10.96.0.1).
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        crate::net::first_host(&self.v4).unwrap_or(self.v4.network())
    }

    fn range_text(&self, family: IpFamily) -> String {
        match (family, self.v6) {
            (IpFamily::V6, Some(n)) => n.to_string(),
            (IpFamily::V6, None) => "<none>".into(),
            (IpFamily::V4, _) => self.v4.to_string(),
        }
    }

    /// An explicit ClusterIP at `field`: inside its family's range and not taken yet.
    pub fn claim(
        &self,
        doc: &ManifestDoc,
        field: &str,
        ip: IpAddr,
        taken: &mut HashSet<IpAddr>,
    ) -> Result<(), LabError> {
        let inside = match ip {
            IpAddr::V4(a) => crate::net::is_host_of(&self.v4, a),
            IpAddr::V6(a) => self.v6.is_some_and(|n| crate::net::is_host_of6(&n, a)),
        };
        if !inside {
            let range = self.range_text(IpFamily::of(ip));
            return Err(doc.err(field, format!("{ip} is not in the service CIDR {range}")));
        }
        if !taken.insert(ip) {
            return Err(doc.err(field, format!("{ip} is already allocated")));
        }
        Ok(())
    }

    /// The allocatable offsets of a family's range (from the network address): IPv4
    /// network+2 ..= broadcast-1 (.1 is `kubernetes`), IPv6 network+1 ..= last (the
    /// apiserver's bitmap allocator reserves the network address and, for IPv4 only, the
    /// broadcast address).
    fn span(&self, family: IpFamily) -> Option<(u128, u128, u128)> {
        match family {
            IpFamily::V4 => {
                let base = u128::from(u32::from(self.v4.network()));
                let last = u128::from(u32::from(self.v4.broadcast()));
                Some((base, 2, (last - base).checked_sub(1)?))
            }
            IpFamily::V6 => {
                let n = self.v6?;
                let base = u128::from(n.network());
                let last = u128::from(n.broadcast());
                Some((base, 1, last - base))
            }
        }
    }
}

/// A Service's wanted ClusterIPs: (family, explicit address), primary first.
pub(super) type Wanted = Vec<(IpFamily, Option<IpAddr>)>;

/// ClusterIPs: explicit ones as claimed, the others seeded random in their family's range
/// (one RNG stream per family, so IPv4 results do not depend on IPv6 Services), skipping
/// taken ones. `wanted[i]` belongs to `services[i]`. A full range is an error.
pub(super) fn cluster_ips(
    f: &str,
    services: &mut [nodeport::Service],
    wanted: &[Wanted],
    ranges: &ServiceRanges,
    taken: &mut HashSet<IpAddr>,
    seed: u64,
) -> Result<(), LabError> {
    let mut v4 = Pool::new(ranges, IpFamily::V4, taken, rng_for(seed, "cluster-ips"));
    let mut v6 = Pool::new(ranges, IpFamily::V6, taken, rng_for(seed, "cluster-ips-v6"));
    for (svc, want) in services.iter_mut().zip(wanted) {
        let mut ips = Vec::with_capacity(want.len());
        for (family, explicit) in want {
            let pool = match family {
                IpFamily::V4 => &mut v4,
                IpFamily::V6 => &mut v6,
            };
            let ip = match explicit {
                Some(ip) => *ip,
                None => pool.next(taken).ok_or_else(|| {
                    LabError::invalid(
                        f,
                        "serviceCIDR",
                        format!(
                            "{} has no free address left for service {}/{}",
                            ranges.range_text(*family),
                            svc.namespace,
                            svc.name
                        ),
                    )
                })?,
            };
            ips.push(ip);
        }
        svc.cluster_ips = ips;
    }
    Ok(())
}

/// One family's allocatable addresses: absolute bounds, how many are free, the RNG.
struct Pool {
    family: IpFamily,
    /// Inclusive absolute bounds; `None` when the family has no range or no room.
    bounds: Option<(u128, u128)>,
    free: u128,
    rng: rand_chacha::ChaCha8Rng,
}

impl Pool {
    fn new(
        ranges: &ServiceRanges,
        family: IpFamily,
        taken: &HashSet<IpAddr>,
        rng: rand_chacha::ChaCha8Rng,
    ) -> Self {
        let bounds = ranges
            .span(family)
            .map(|(base, lo, hi)| (base + lo, base + hi))
            .filter(|(lo, hi)| lo <= hi);
        let free = match bounds {
            Some((lo, hi)) => {
                let used = taken
                    .iter()
                    .filter(|ip| IpFamily::of(**ip) == family)
                    .filter(|ip| (lo..=hi).contains(&addr_u128(**ip)))
                    .count() as u128;
                (hi - lo + 1).saturating_sub(used)
            }
            None => 0,
        };
        Pool {
            family,
            bounds,
            free,
            rng,
        }
    }

    /// A random free address (`None` when the range is full).
    fn next(&mut self, taken: &mut HashSet<IpAddr>) -> Option<IpAddr> {
        let (lo, hi) = self.bounds?;
        if self.free == 0 {
            return None;
        }
        loop {
            let ip = match self.family {
                // u32 draws, as the lab always made them (same ClusterIPs for a seed).
                IpFamily::V4 => {
                    let (lo, hi) = (u32::try_from(lo).ok()?, u32::try_from(hi).ok()?);
                    IpAddr::V4(Ipv4Addr::from(self.rng.random_range(lo..=hi)))
                }
                IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(self.rng.random_range(lo..=hi))),
            };
            if taken.insert(ip) {
                self.free -= 1;
                return Some(ip);
            }
        }
    }
}

fn addr_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// NodePorts (and healthCheckNodePorts) via the nodeport crate's allocator, in service order.
pub(super) fn node_ports(
    services: &mut [nodeport::Service],
    pending: &[Pending],
    seed: u64,
) -> Result<(), LabError> {
    let mut allocator = NodePortAllocator::new(PortRange::DEFAULT);
    let mut port_rng = rng_for(seed, "node-ports");
    for p in pending {
        let svc = &mut services[p.index];
        if matches!(svc.type_, ServiceType::NodePort | ServiceType::LoadBalancer) {
            allocator
                .allocate(svc, &mut port_rng)
                .map_err(|e| p.doc.err("spec.ports", e.to_string()))?;
        }
    }
    Ok(())
}
