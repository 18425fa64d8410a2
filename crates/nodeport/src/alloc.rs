//! NodePort / healthCheckNodePort allocation (the apiserver's job, spec §5.5, §4.1).
//!
//! Owns the cluster-wide set of used node ports. Explicit values are honoured after a range
//! and collision check; dynamic values are random (from the caller's RNG) in the upper band of
//! the range first, per KEP-3668 (`offset = min(max(16, size/32), 128)`: 30000–30085 is the
//! static band of the default range). It knows nothing about packets.
//!
//! CONTRACT (used by `lab`): `NodePortAllocator::new`, `PortRange::DEFAULT`, `allocate`.

use std::collections::HashMap;

use rand::{Rng, RngCore};

use crate::model::{Service, ServiceType};

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

    /// Number of ports in the range.
    pub fn size(&self) -> u32 {
        u32::from(self.last).saturating_sub(u32::from(self.first)) + 1
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// KEP-3668 static-band size: `min(max(16, size/32), 128)` (86 for the default range).
    pub fn static_band_size(&self) -> u32 {
        (self.size() / 32).clamp(16, 128).min(self.size())
    }
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
    #[error("service {service}: provided port {port} is already allocated (to {owner})")]
    Collision {
        service: String,
        port: u16,
        owner: String,
    },
    #[error("service {service}: range {first}-{last} is full, no node port left")]
    Exhausted {
        service: String,
        first: u16,
        last: u16,
    },
    #[error("service {service}: healthCheckNodePort {port} may only be set when type is LoadBalancer and externalTrafficPolicy is Local")]
    HealthCheckNotAllowed { service: String, port: u16 },
    #[error("service {service}: nodePort {port} may not be used when type is ClusterIP")]
    NodePortNotAllowed { service: String, port: u16 },
}

/// Cluster-wide allocator of node ports.
#[derive(Debug)]
pub struct NodePortAllocator {
    pub range: PortRange,
    /// port → owning service (`ns/name`).
    used: HashMap<u16, String>,
}

impl NodePortAllocator {
    pub fn new(range: PortRange) -> Self {
        NodePortAllocator {
            range,
            used: HashMap::new(),
        }
    }

    /// Whether `port` is taken, and by whom.
    pub fn owner(&self, port: u16) -> Option<&str> {
        self.used.get(&port).map(String::as_str)
    }

    /// Number of ports in use.
    pub fn used(&self) -> usize {
        self.used.len()
    }

    /// Release every port held by `svc` (service deleted).
    pub fn release(&mut self, svc: &Service) {
        let me = svc.service_ref().to_string();
        self.used.retain(|_, owner| *owner != me);
    }

    /// Fill in `node_port` of every port of a NodePort/LoadBalancer service (explicit values
    /// honoured and checked for collisions), and `health_check_node_port` for
    /// LoadBalancer + Local. Deterministic for a given RNG state. On error nothing is
    /// allocated and `svc` is unchanged.
    pub fn allocate(&mut self, svc: &mut Service, rng: &mut dyn RngCore) -> Result<(), AllocError> {
        let me = svc.service_ref().to_string();
        let wants_node_ports =
            matches!(svc.type_, ServiceType::NodePort | ServiceType::LoadBalancer);
        // Ports taken by this call (committed only on success).
        let mut taken: Vec<u16> = Vec::new();
        let mut node_ports: Vec<Option<u16>> = Vec::with_capacity(svc.ports.len());

        let check_explicit = |this: &Self, taken: &[u16], port: u16| -> Result<(), AllocError> {
            if !this.range.contains(port) {
                return Err(AllocError::OutOfRange {
                    service: me.clone(),
                    port,
                    first: this.range.first,
                    last: this.range.last,
                });
            }
            match this.used.get(&port) {
                Some(owner) if *owner != me => Err(AllocError::Collision {
                    service: me.clone(),
                    port,
                    owner: owner.clone(),
                }),
                _ if taken.contains(&port) => Err(AllocError::Collision {
                    service: me.clone(),
                    port,
                    owner: me.clone(),
                }),
                _ => Ok(()),
            }
        };

        // Explicit ports first, so dynamic picks cannot steal them.
        for p in &svc.ports {
            match (wants_node_ports, p.node_port) {
                (false, Some(port)) => {
                    return Err(AllocError::NodePortNotAllowed {
                        service: me.clone(),
                        port,
                    })
                }
                (true, Some(port)) => {
                    // One service may use a node port for TCP and UDP of the same port number.
                    let shared = svc.ports.iter().any(|q| {
                        q.node_port == Some(port) && q.port == p.port && q.protocol != p.protocol
                    });
                    if taken.contains(&port) {
                        if !shared {
                            return Err(AllocError::Collision {
                                service: me.clone(),
                                port,
                                owner: me.clone(),
                            });
                        }
                    } else {
                        if self.used.get(&port) != Some(&me) {
                            check_explicit(self, &taken, port)?;
                        }
                        taken.push(port);
                    }
                    node_ports.push(Some(port));
                }
                (_, None) => node_ports.push(None),
            }
        }
        if wants_node_ports {
            for np in node_ports.iter_mut().filter(|n| n.is_none()) {
                *np = Some(self.pick(&me, &taken, rng)?);
                taken.push(np.unwrap_or_default());
            }
        }

        let hc = match (svc.needs_health_check(), svc.health_check_node_port) {
            (false, Some(port)) => {
                return Err(AllocError::HealthCheckNotAllowed { service: me, port })
            }
            (false, None) => None,
            (true, Some(port)) => {
                if self.used.get(&port) != Some(&me) {
                    check_explicit(self, &taken, port)?;
                }
                taken.push(port);
                Some(port)
            }
            (true, None) => {
                let port = self.pick(&me, &taken, rng)?;
                taken.push(port);
                Some(port)
            }
        };

        for port in taken {
            self.used.insert(port, me.clone());
        }
        for (p, np) in svc.ports.iter_mut().zip(node_ports) {
            p.node_port = np;
        }
        svc.health_check_node_port = hc;
        Ok(())
    }

    /// A random free port: upper (dynamic) band first, then the static band (KEP-3668).
    fn pick(&self, me: &str, taken: &[u16], rng: &mut dyn RngCore) -> Result<u16, AllocError> {
        let first = u32::from(self.range.first);
        let size = self.range.size();
        let offset = self.range.static_band_size();
        let free = |p: u32| {
            let p = p as u16;
            !self.used.contains_key(&p) && !taken.contains(&p)
        };
        let bands = [(first + offset, size - offset), (first, offset)];
        for (base, len) in bands {
            if len == 0 {
                continue;
            }
            let start = rng.random_range(0..len);
            for i in 0..len {
                let p = base + (start + i) % len;
                if free(p) {
                    return Ok(p as u16);
                }
            }
        }
        Err(AllocError::Exhausted {
            service: me.to_string(),
            first: self.range.first,
            last: self.range.last,
        })
    }
}
