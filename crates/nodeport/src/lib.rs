//! # nodeport — kube-proxy's NodePort datapath as a sans-IO library
//!
//! This crate owns the decisions kube-proxy (iptables mode) makes for Service traffic on
//! one node, and the translations conntrack applies afterwards. It performs no I/O: packets
//! are byte buffers owned by the caller, time is a [`Duration`] since an arbitrary epoch
//! passed in by the caller, and randomness comes from an RNG the caller owns (seeded in tests).
//!
//! Layers (each a module):
//! - [`model`]: Services, EndpointSlices and the per-node proxy configuration.
//! - [`alloc`]: NodePort / healthCheckNodePort allocation (the apiserver's job, cluster-wide).
//! - [`topology`]: endpoint categorisation (`CategorizeEndpoints`: cluster / local sets).
//! - [`chains`]: kube-proxy's chain names (`KUBE-SVC-<hash>` …) and the chain walk record.
//! - [`packet`]: parsing of the flow tuple and in-place rewrite with RFC 1624 checksums.
//! - [`conntrack`]: the connection table (tuples, NAT, TCP state, timeouts, bounded size).
//! - [`proxier`]: the per-node engine tying it together: [`Proxier::prerouting`],
//!   [`Proxier::postrouting`], [`Proxier::output`].
//! - [`healthcheck`]: the healthCheckNodePort answer and kube-proxy's `/healthz` `/livez`.
//! - [`iptables`]: the nat/filter rules kube-proxy programs for the same model, as
//!   `iptables-save` text.
//!
//! The hook order the caller (a simulated node) must follow mirrors netfilter:
//!
//! ```text
//! packet in ──► prerouting() ──► route lookup ──► local delivery ─► postrouting(egress=None)
//!                  │ (conntrack + nat PREROUTING)    or forward    ─► postrouting(egress=Some(ip))
//!                  └─ Drop / Reject (caller sends the ICMP error we built)
//! locally generated ──► output() ──► route ──► postrouting(egress=Some(ip))
//! ```
//!
//! `postrouting` performs MASQUERADE (for flows marked by KUBE-MARK-MASQ) using the address
//! the caller says the egress interface has, and confirms the conntrack entry.
//!
//! All NAT of a confirmed flow (both directions, and ICMP errors quoting it) is applied in
//! `prerouting`/`output` from the conntrack entry; `postrouting` only acts on first packets.
//! [`Proxier::set_trace`] turns off the trace data (walks, rewrite lists) for speed.
//!
//! Modelled: iptables-mode frontends (ClusterIP, externalIPs, LB IPs in VIP mode, NodePorts
//! on local addresses or `nodePortAddresses`), the §3.6 decision table with the
//! ClusterCIDR local-traffic detector, ITP, masqueradeAll, hairpin, terminating fallback,
//! ClientIP affinity, REJECT/DROP, MASQUERADE (port kept if free, `--random-fully`),
//! conntrack (TCP states, UDP/ICMP timeouts, bounded size, UDP stale-entry cleanup on sync,
//! §6.4), health checks and NodePort allocation (KEP-3668 bands).
//!
//! Not modelled: IPv6, IP fragments (dropped as invalid), `loadBalancerSourceRanges`
//! (KUBE-FW / KUBE-PROXY-FIREWALL), topology hints (§5.3), detect-local modes other than
//! ClusterCIDR, the localhost-NodePort martian guard, KUBE-FORWARD's INVALID drop, TCP
//! window tracking, `xt_recent` list capacity, nftables/IPVS/Cilium datapaths.

use std::time::Duration;

pub mod alloc;
pub mod chains;
pub mod conntrack;
pub mod healthcheck;
pub mod iptables;
pub mod model;
pub mod packet;
pub mod proxier;
pub mod topology;
mod walk;

pub use alloc::{AllocError, NodePortAllocator, PortRange};
pub use chains::{ChainStep, ChainWalk};
pub use conntrack::{ConnEntry, Conntrack, TcpState, Tuple};
pub use healthcheck::HealthResponse;
pub use iptables::{iptables_save, RulesFormat};
pub use model::{
    Endpoint, EndpointPort, EndpointSlice, Protocol, ProxyConfig, Service, ServicePort, ServiceRef,
    ServiceType, SessionAffinity, TrafficPolicy,
};
pub use packet::PacketError;
pub use proxier::{
    DropReason, FrontendKind, Hook, NatPending, Postrouting, Prerouting, Proxier, Rewrite,
    RewriteKind, Verdict,
};

/// Time as seen by the engine: a monotonic offset from an epoch chosen by the caller.
pub type Now = Duration;
