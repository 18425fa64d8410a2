//! # wire — the lab's one packet layer, IPv4 and IPv6
//!
//! Shared by the engine (`nodeport`: conntrack, DNAT/SNAT) and the fabric (`vswitch`: router,
//! load balancer, tracer), in the spirit of smoltcp's `wire` module: it knows the bytes and
//! nothing else — no policy, no flow state, no I/O.
//!
//! - [`proto`]: IP protocol numbers and TCP flag bits.
//! - [`Tuple`]: a flow's 5-tuple (ICMP echo: both ports are the identifier).
//! - [`PacketError`]: why a datagram could not be handled.
//! - [`mod@parse`]: a datagram's parsed representation ([`Parsed`]: tuple, header offsets, L4
//!   kind, the quoted tuple of an ICMP error). Header validation is etherparse's.
//! - [`checksum`]: RFC 1071 sums and RFC 1624 incremental updates; SCTP's CRC32c.
//! - [`nat`]: in-place rewrite of a datagram's tuple ([`rewrite`]) and of an ICMP error with
//!   its quoted datagram ([`rewrite_icmp_error`]), checksums fixed incrementally.
//! - [`addr`]: network arithmetic ([`first_host`] of a network).
//! - [`icmp`]: building ICMP / ICMPv6 errors that quote a datagram (REJECT, TTL exceeded,
//!   packet too big, …).
//! - [`hop`]: decrementing the TTL / hop limit.
//!
//! Never panics on any input: every parse path checks lengths, every rewrite takes a
//! [`Parsed`] of the very buffer it edits.

pub mod addr;
pub mod checksum;
pub mod error;
pub mod hop;
pub mod icmp;
pub mod nat;
pub mod parse;
pub mod partial;
pub mod proto;
pub mod tuple;

pub use addr::{first_host, v4, v6, IpFamily};
pub use error::PacketError;
pub use nat::{rewrite, rewrite_icmp_error};
pub use parse::{l4_ports, parse, L4Kind, Parsed};
pub use proto::{
    sctp_chunk, tcp_flags, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};
pub use tuple::Tuple;
