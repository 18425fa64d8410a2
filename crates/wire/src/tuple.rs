//! A flow's 5-tuple.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::proto;

/// A flow's 5-tuple. For ICMP echo both ports are the echo identifier; for other ICMP 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub proto: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl Tuple {
    /// A TCP flow `src:sport → dst:dport`.
    pub fn tcp(src: impl Into<IpAddr>, sport: u16, dst: impl Into<IpAddr>, dport: u16) -> Tuple {
        Tuple {
            proto: crate::PROTO_TCP,
            src: src.into(),
            sport,
            dst: dst.into(),
            dport,
        }
    }

    /// The tuple of a packet going the other way.
    #[inline]
    pub fn invert(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }

    /// `src:sport`.
    pub fn src_addr(&self) -> SocketAddr {
        SocketAddr::new(self.src, self.sport)
    }

    /// `dst:dport`.
    pub fn dst_addr(&self) -> SocketAddr {
        SocketAddr::new(self.dst, self.dport)
    }

    /// Whether the flow is IPv6.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} → {}",
            proto::name(self.proto),
            self.src_addr(),
            self.dst_addr()
        )
    }
}
