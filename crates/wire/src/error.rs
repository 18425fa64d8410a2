//! Why a datagram could not be handled.

/// Why a datagram could not be handled. The structured variants come from [`crate::parse`];
/// `Ip` / `Transport` carry etherparse's own description where a caller parses leniently
/// (traces, the fabric's TTL handling).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet truncated")]
    Truncated,
    #[error("not an IPv4 packet")]
    NotIpv4,
    #[error("bad IPv4 header length")]
    BadHeaderLength,
    #[error("IPv4 total length {total} does not match the {len} bytes received")]
    LengthMismatch { total: usize, len: usize },
    #[error("IPv4 fragment (not reassembled)")]
    Fragment,
    #[error("unsupported IP protocol {0}")]
    UnsupportedProtocol(u8),
    #[error("unsupported ICMP type {0}")]
    UnsupportedIcmp(u8),
    #[error("malformed {0} header")]
    BadTransportHeader(&'static str),
    #[error("not a valid IPv4 datagram: {0}")]
    Ip(String),
    #[error("malformed {proto} header: {detail}")]
    Transport { proto: &'static str, detail: String },
}
