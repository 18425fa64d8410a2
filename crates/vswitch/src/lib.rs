//! # vswitch — the lab fabric
//!
//! CONTRACT: [`Port`] is how anything attaches to the fabric: embedded smoltcp hosts, node
//! interfaces, and (in real mode) TUN devices. Wrappers (tracer, pcap, impairment) are ports
//! that wrap ports, smoltcp `phy` style.

use std::time::Duration;

/// A link endpoint: the fabric delivers packets into it (`send`) and collects the packets the
/// thing behind it transmitted (`recv`). Packets are raw IPv4 datagrams (no L2 header).
pub trait Port {
    /// Human-readable link name (e.g. "ydzs-node1/cni0/nginx-54f57cf6bf-xhs8g").
    fn name(&self) -> &str;
    /// Fabric → device.
    fn send(&mut self, now: Duration, pkt: &[u8]);
    /// Device → fabric: the next packet the device transmitted, if any.
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>>;
    /// Earliest time this port wants to be polled again (timers, delayed packets).
    fn poll_at(&self) -> Option<Duration> {
        None
    }
}
