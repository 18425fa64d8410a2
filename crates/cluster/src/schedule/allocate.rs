//! ClusterIP and NodePort allocation (what the apiserver's allocators do for Services that ask
//! for none): seeded random ClusterIPs in the service CIDR, NodePorts from the nodeport crate's
//! allocator. Explicit values were claimed while the Services were converted.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nodeport::{NodePortAllocator, PortRange, ServiceType};
use rand::Rng;

use super::endpoints::Pending;
use super::naming::rng_for;
use crate::error::LabError;

/// ClusterIPs: seeded random in the service CIDR (network+2 ..= broadcast-1; .1 is
/// `kubernetes`), skipping taken ones.
pub(super) fn cluster_ips(
    services: &mut [nodeport::Service],
    service_cidr: &Ipv4Net,
    taken: &mut HashSet<Ipv4Addr>,
    seed: u64,
) {
    let mut ip_rng = rng_for(seed, "cluster-ips");
    let lo = u32::from(service_cidr.network()) + 2;
    let hi = u32::from(service_cidr.broadcast()) - 1;
    for svc in services.iter_mut() {
        if svc.cluster_ips.is_empty() {
            let ip = loop {
                let ip = Ipv4Addr::from(ip_rng.random_range(lo..=hi));
                if taken.insert(ip) {
                    break ip;
                }
            };
            svc.cluster_ips = vec![ip.into()];
        }
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
