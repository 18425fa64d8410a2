//! A flow's 5-tuple.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::proto;

/// A flow's 5-tuple. For ICMP echo both ports are the echo identifier; for other ICMP 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl Tuple {
    /// A TCP flow `src:sport → dst:dport`.
    pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Tuple {
        Tuple {
            proto: crate::PROTO_TCP,
            src,
            sport,
            dst,
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
    pub fn src_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.src, self.sport)
    }

    /// `dst:dport`.
    pub fn dst_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.dst, self.dport)
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{} → {}:{}",
            proto::name(self.proto),
            self.src,
            self.sport,
            self.dst,
            self.dport
        )
    }
}
