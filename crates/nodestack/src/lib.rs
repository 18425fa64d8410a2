//! # nodestack — one simulated Linux node
//!
//! Owns a node's L3 behaviour: its two interfaces (`eth0` with the node IP on the node
//! network, `cni0` with the first address of the node's pod CIDR, where its pods attach), a
//! longest-prefix routing table (own pod CIDR on cni0, other nodes' pod CIDRs via their node
//! IPs on eth0 — flannel host-gw style — and a default route via the router; a dual-stack
//! node has the same for IPv6: its IPv6 address on eth0, the first host of its IPv6 pod /64
//! on cni0, routes to other nodes' IPv6 pod prefixes via their IPv6 node addresses), and the
//! netfilter hook order around the [`nodeport`] engine:
//!
//! ```text
//! in ─► PREROUTING (engine: conntrack + nat) ─► route ─┬─► INPUT ─► local stack (smoltcp)
//!                 │ Drop / Reject(ICMP back)           └─► FORWARD (TTL) ─► POSTROUTING ─► out
//! local stack ─► OUTPUT (engine) ─► route ─► POSTROUTING (masquerade to egress address) ─► out
//! ```
//!
//! Traffic that ends at the node goes to its own smoltcp `Interface` (ICMP echo, the
//! healthCheckNodePort HTTP servers answered by `Proxier::service_health`, kube-proxy's
//! `:10256`). smoltcp never forwards: forwarding is ours. Every hook records a [`HopEvent`].
//!
//! Sans-IO: datagrams in via [`Node::receive`], out as [`Egress`] values, timers via
//! [`Node::poll`]/[`Node::poll_at`]; time and RNG are parameters. Not here: the fabric
//! (which port owns which address — `vswitch`), the kube-proxy decisions (`nodeport`).

pub mod device;
mod http;
mod node;
mod routes;

pub use node::{
    first_host_v6, Egress, HopEvent, Iface, Node, NodeCounters, NodeSpec, NodeV6, Route,
    RouteResult, Stage,
};
