//! IPv4 packet parsing and in-place NAT rewrite with RFC 1624 incremental checksums.

/// Why a packet could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet truncated")]
    Truncated,
}
