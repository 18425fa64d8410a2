//! NodePort / healthCheckNodePort allocation (the apiserver's job, spec §5.5, §4.1).
//!
//! CONTRACT (used by `lab`): `NodePortAllocator::new`, `PortRange::DEFAULT`, `allocate`.

use rand::RngCore;

use crate::model::Service;

/// `--service-node-port-range` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// The apiserver default, 30000–32767.
    pub const DEFAULT: PortRange = PortRange {
        first: 30000,
        last: 32767,
    };
}

/// Errors name the service and the port, like the apiserver's validation messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("service {service}: nodePort {port} is not in the valid range {first}-{last}")]
    OutOfRange {
        service: String,
        port: u16,
        first: u16,
        last: u16,
    },
}

/// Cluster-wide allocator of node ports.
#[derive(Debug)]
pub struct NodePortAllocator {
    pub range: PortRange,
}

impl NodePortAllocator {
    pub fn new(range: PortRange) -> Self {
        NodePortAllocator { range }
    }

    /// Fill in `node_port` of every port of a NodePort/LoadBalancer service (explicit values
    /// honoured and checked for collisions), and `health_check_node_port` for
    /// LoadBalancer + Local. Deterministic for a given RNG state.
    pub fn allocate(&mut self, svc: &mut Service, rng: &mut dyn RngCore) -> Result<(), AllocError> {
        let _ = (svc, rng);
        todo!()
    }
}
