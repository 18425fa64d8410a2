//! The connection tracking table (nf_conntrack semantics, spec §6).
use std::net::Ipv4Addr;

/// A flow's 5-tuple (for ICMP echo, both ports are the echo identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

/// One conntrack entry.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    pub original: Tuple,
    pub reply: Tuple,
}

/// State between prerouting and postrouting of a flow's first packet.
#[derive(Debug, Clone)]
pub struct PendingFlow {
    pub original: Tuple,
}

#[derive(Debug)]
pub struct Conntrack {
    max: usize,
}

impl Conntrack {
    pub fn new(max: usize) -> Self {
        Conntrack { max }
    }
    pub fn max(&self) -> usize {
        self.max
    }
}
