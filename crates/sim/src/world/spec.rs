//! The plain description a [`super::World`] is built from: nodes, clients, pods, the load
//! balancer, the seed and the wall clock. A dual-stack world gives nodes, pods and clients an
//! IPv6 address too (`ipv6` fields) and itself an IPv6 node network and router address.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use nodeport::ProxyConfig;

use crate::apps::AppDesc;
use crate::clock::WallClock;

/// A node of the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    /// kube-proxy configuration; `None` = `ProxyConfig::new(name, [ip, cni0])` with the
    /// world's `cluster_cidr` (and `cluster_cidr_v6`).
    pub proxy: Option<ProxyConfig>,
    /// The node's IPv6 address on the world's `node_network_v6` (dual-stack node).
    pub ipv6: Option<Ipv6Addr>,
    /// The node's IPv6 pod CIDR (a /64; cni0 gets its first host).
    pub pod_cidr_v6: Option<Ipv6Net>,
}

impl NodeDesc {
    pub fn new(name: impl Into<String>, ip: Ipv4Addr, pod_cidr: Ipv4Net) -> Self {
        NodeDesc {
            name: name.into(),
            ip,
            pod_cidr,
            proxy: None,
            ipv6: None,
            pod_cidr_v6: None,
        }
    }
}

/// Where a client sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// Behind the router; may reach only the listed nodes (by name) and LB frontends.
    External { can_reach: Vec<String> },
    /// On a node's cni0, like a pod.
    Pod { node: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    pub attach: Attachment,
    /// A dual-stack client's IPv6 address (external: its client network is the /64 around
    /// it; pod-attached: inside the node's IPv6 pod CIDR).
    pub ipv6: Option<Ipv6Addr>,
}

/// A pod and the apps its containers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    /// A dual-stack pod's IPv6 address (inside its node's IPv6 pod CIDR).
    pub ipv6: Option<Ipv6Addr>,
    pub node: String,
    /// One per container; empty = nginx on 80/TCP (a container that declares no ports).
    pub apps: Vec<AppDesc>,
}

/// The external load balancer (its frontend lives on the router).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbDesc {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Target nodes (names), even split per node.
    pub nodes: Vec<String>,
    /// (frontend port, node port). Empty = derived from the services on every
    /// [`World::set_services`]: each port with a nodePort (LoadBalancer services first).
    pub ports: Vec<(u16, u16)>,
}

/// The plain description a world is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSpec {
    pub node_network: Ipv4Net,
    /// The router's address on the node network (every node's default gateway).
    pub router_ip: Ipv4Addr,
    /// kube-proxy's `clusterCIDR` for default proxy configs.
    pub cluster_cidr: Option<Ipv4Net>,
    /// The node network's IPv6 prefix (none: an IPv4-only lab).
    pub node_network_v6: Option<Ipv6Net>,
    /// The router's IPv6 address on the node network (every dual-stack node's IPv6 gateway).
    pub router_ipv6: Option<Ipv6Addr>,
    /// kube-proxy's IPv6 `clusterCIDR` for default proxy configs.
    pub cluster_cidr_v6: Option<Ipv6Net>,
    /// Client networks; a client outside all of them gets its own /24.
    pub client_networks: Vec<Ipv4Net>,
    pub nodes: Vec<NodeDesc>,
    pub clients: Vec<ClientDesc>,
    pub pods: Vec<PodDesc>,
    pub load_balancer: Option<LbDesc>,
    pub seed: u64,
    pub wall_clock: WallClock,
    /// Record traces (on by default; off saves memory for long plans).
    pub tracing: bool,
}

impl Default for WorldSpec {
    fn default() -> Self {
        WorldSpec {
            node_network: "10.151.30.0/24".parse().expect("literal"),
            router_ip: "10.151.30.1".parse().expect("literal"),
            cluster_cidr: Some("10.244.0.0/16".parse().expect("literal")),
            node_network_v6: None,
            router_ipv6: None,
            cluster_cidr_v6: None,
            client_networks: Vec::new(),
            nodes: Vec::new(),
            clients: Vec::new(),
            pods: Vec::new(),
            load_balancer: None,
            seed: 1,
            wall_clock: WallClock::default(),
            tracing: true,
        }
    }
}
