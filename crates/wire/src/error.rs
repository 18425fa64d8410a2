//! Why a datagram could not be handled.

/// Why a datagram could not be handled. The structured variants come from [`crate::parse()`];
/// `Ip` / `Transport` carry etherparse's own description where a caller parses leniently
/// (traces, the fabric's TTL handling).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet truncated")]
    Truncated,
    #[error("not an IPv4 packet")]
    NotIpv4,
    #[error("not an IP packet (version {0})")]
    NotIp(u8),
    #[error("bad IPv4 header length")]
    BadHeaderLength,
    #[error("IP total length {total} does not match the {len} bytes received")]
    LengthMismatch { total: usize, len: usize },
    #[error("IP fragment (not reassembled)")]
    Fragment,
    #[error("unsupported IPv6 extension header {0}")]
    UnsupportedExtension(u8),
    #[error("unsupported IP protocol {0}")]
    UnsupportedProtocol(u8),
    #[error("unsupported ICMP/ICMPv6 type {0}")]
    UnsupportedIcmp(u8),
    #[error("malformed {0} header")]
    BadTransportHeader(&'static str),
    #[error("not a valid IPv4 datagram: {0}")]
    Ip(String),
    #[error("malformed {proto} header: {detail}")]
    Transport { proto: &'static str, detail: String },
}
