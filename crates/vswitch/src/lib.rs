//! # vswitch — the lab fabric
//!
//! CONTRACT: [`Port`] is how anything attaches to the fabric: embedded smoltcp hosts, node
//! interfaces, and (in real mode) TUN devices. Wrappers (tracer, pcap, impairment) are ports
//! that wrap ports, smoltcp `phy` style.
//!
//! Modules (each owns one thing; none does I/O, none reads a clock or an OS RNG):
//! - [`packet`]: parsing a raw IPv4 or IPv6 datagram into a [`packet::Summary`] (5-tuple, TCP
//!   flags, TTL / hop limit, the embedded tuple of ICMP and ICMPv6 errors), address/port
//!   rewrite with fresh checksums, and the ICMP errors the fabric generates (time exceeded).
//!   Built on etherparse.
//! - [`segment`]: an L3 broadcast domain; delivery by next-hop address ("ARP" / "NDP": which
//!   attachment owns this address; no MACs, so IPv6 needs no neighbour discovery).
//! - [`router`]: the router between the node network and the client networks: longest-prefix
//!   forwarding, TTL, client reachability, and the external load balancer ([`router::LoadBalancer`]).
//! - [`prefix`]: the longest-prefix-match index of the routing tables (router and nodes).
//! - [`bufpool`]: reused datagram buffers (a port's read takes one, the egress port's write
//!   gives it back: no allocation per forwarded datagram).
//! - [`mem`]: an in-memory [`Port`] (queues on both sides) for tests and glue.
//! - [`tracer`]: the [`tracer::Tracer`] wrapper and its shared [`tracer::TraceSink`].
//! - [`impair`]: the [`impair::Impair`] wrapper (one-way delay, jitter, rate, random loss).
//! - [`pcap`]: the [`pcap::Pcap`] wrapper and its [`pcap::PcapSink`] (LINKTYPE_RAW files).
//! - [`gso`]: the `virtio_net_hdr` of TUN devices with offloads (partial checksums completed on
//!   read, superpackets written as TSO or cut into segments).
//! - [`uso`]: UDP superpackets (USO) read from a TUN cut into their datagrams.
//! - `tun` (feature `tun`): the real-mode TUN port.
//!
//! Not here: anything node-specific (netfilter, kube-proxy) — that is `nodestack`/`nodeport`;
//! the event loop and clock — that is `sim`.

use std::time::Duration;

pub mod bufpool;
pub mod gso;
pub mod impair;
pub mod mem;
pub mod packet;
pub mod pcap;
pub mod prefix;
pub mod queued;
pub mod router;
pub mod segment;
pub mod tracer;
#[cfg(feature = "tun")]
pub mod tun;
#[cfg(feature = "tun")]
pub mod tun6;
#[cfg(feature = "tun")]
mod tunmq;
#[cfg(feature = "tun")]
pub(crate) mod tuntx;
pub mod uso;

pub use impair::{Impair, ImpairConfig};
pub use mem::{MemHandle, MemPort};
pub use packet::{FlowTuple, PacketError, Summary};
pub use pcap::{Pcap, PcapSink};
pub use router::{IfaceKind, LbTarget, LoadBalancer, Router, RouterEvent, RouterOutput};
pub use segment::Segment;
pub use tracer::{Direction, LinkEvent, TraceSink, Tracer};

/// A link endpoint: the fabric delivers packets into it (`send`) and collects the packets the
/// thing behind it transmitted (`recv`). Packets are raw IPv4 or IPv6 datagrams (no L2
/// header).
pub trait Port {
    /// Human-readable link name (e.g. "ydzs-node1/cni0/nginx-54f57cf6bf-xhs8g").
    fn name(&self) -> &str;
    /// Fabric → device.
    fn send(&mut self, now: Duration, pkt: &[u8]);
    /// Fabric → device, the datagram by value (the fabric's hot path: a port that queues
    /// datagrams, like a TUN port with a TX thread, takes it without a copy).
    fn send_owned(&mut self, now: Duration, pkt: Vec<u8>) {
        self.send(now, &pkt)
    }
    /// Device → fabric: the next packet the device transmitted, if any. Devices with timers
    /// (smoltcp hosts) advance them here, so polling `recv` at `poll_at()` is enough to drive
    /// them.
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>>;
    /// Earliest time this port wants to be polled again (timers, delayed packets).
    fn poll_at(&self) -> Option<Duration> {
        None
    }
}

impl<P: Port + ?Sized> Port for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn send(&mut self, now: Duration, pkt: &[u8]) {
        (**self).send(now, pkt)
    }
    fn send_owned(&mut self, now: Duration, pkt: Vec<u8>) {
        (**self).send_owned(now, pkt)
    }
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>> {
        (**self).recv(now)
    }
    fn poll_at(&self) -> Option<Duration> {
        (**self).poll_at()
    }
}
