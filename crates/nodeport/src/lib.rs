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
//! - [`packet`]: the shared `wire` crate re-exported: parsing of the flow tuple and in-place
//!   rewrite with RFC 1624 checksums.
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
//! on local addresses or `nodePortAddresses`, on 127.0.0.0/8 with `localhostNodePorts`), the
//! §3.6 decision table with the ClusterCIDR local-traffic detector, ITP, masqueradeAll,
//! hairpin, terminating fallback, ClientIP affinity, `loadBalancerSourceRanges` (KUBE-FW /
//! KUBE-PROXY-FIREWALL), REJECT (ICMP built like `__icmp_send`)/DROP, MASQUERADE
//! (`--random-fully` by default, ports from the proxier's own RNG stream; or the port kept
//! if free), conntrack (TCP states with the kernel's SYN-on-TIME_WAIT/CLOSE reopen, UDP
//! timeouts with the 2 s stream rule, ICMP timeouts, bounded size, UDP stale-entry cleanup
//! on sync, §6.4), SCTP frontends with a simplified association state (COOKIE_WAIT /
//! ESTABLISHED / CLOSED and the kernel's timeouts; CRC32c recomputed on NAT), health checks
//! and NodePort allocation (KEP-3668 bands). The caller (nodestack) applies KUBE-FORWARD's
//! INVALID drop from `ct_state` and [`ProxyConfig::conntrack_tcp_be_liberal`]. [`iptables`]
//! prints the rules all this stands for.
//!
//! IPv6 and dual-stack: one `Proxier` holds both families, but every decision is per family
//! as kube-proxy's MetaProxier runs one proxier per family: a Service port has one compiled
//! entry per ClusterIP family, fed only by EndpointSlices of that `addressType`, with that
//! family's external/LB IPs and source ranges; NodePorts answer on the node's addresses of
//! the packet's family (localhost NodePorts are IPv4 only); detect-local uses the family's
//! cluster CIDR; MASQUERADE takes the egress address of the packet's family; REJECT answers
//! with ICMPv6 port unreachable; conntrack tracks IPv6 tuples (ICMPv6 echo 30 s).
//! [`ip6tables_save`] prints the IPv6 proxier's rules.
//!
//! Not modelled: IP fragments (dropped as invalid), topology hints (§5.3),
//! detect-local modes other than ClusterCIDR, the localhost-NodePort martian guard (in the
//! rules only), TCP window tracking, SCTP's per-chunk state table and verification tags,
//! `xt_recent` list capacity, nftables/IPVS/Cilium datapaths.

use std::time::Duration;

pub mod alloc;
pub mod chains;
pub mod conntrack;
pub mod healthcheck;
pub mod iptables;
pub mod model;
pub mod proxier;
pub mod topology;

pub use alloc::{AllocError, NodePortAllocator, PortRange};
pub use chains::{ChainStep, ChainWalk};
pub use conntrack::{ConnEntry, Conntrack, TcpState, Tuple};
pub use healthcheck::HealthResponse;
pub use iptables::{ip6tables_save, iptables_save, RulesFormat};
pub use model::{
    Endpoint, EndpointPort, EndpointSlice, IpFamily, IpFamilyPolicy, Protocol, ProxyConfig,
    Service, ServicePort, ServiceRef, ServiceType, SessionAffinity, TrafficPolicy,
};
pub use proxier::{
    DropReason, FrontendKind, Hook, NatPending, Postrouting, Prerouting, Proxier, Rewrite,
    RewriteKind, ServiceTable, Verdict,
};
/// The packet layer (the `wire` crate) under its old path `nodeport::packet`.
pub use wire as packet;
pub use wire::PacketError;

/// Time as seen by the engine: a monotonic offset from an epoch chosen by the caller.
pub type Now = Duration;
