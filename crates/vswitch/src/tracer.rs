//! [`Tracer`]: a [`Port`] wrapper recording every datagram crossing the link, smoltcp
//! `phy::Tracer` style. Records go to a [`TraceSink`] that several tracers may share (the
//! world keeps one for all its links).
//!
//! Pcap capture ([`crate::pcap::Pcap`]) and impairment ([`crate::impair::Impair`]) are
//! sibling wrappers of the same shape, e.g. `Tracer<Impair<Pcap<P>>>` (what the world builds:
//! trace on the fabric side, capture on the device side), each holding the inner port and
//! forwarding `send`/`recv`/`poll_at` (an impairment wrapper reports its delayed packets' due
//! times through `poll_at`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::packet::{summarize, Summary};
use crate::Port;

/// Which way a datagram crossed the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Fabric → device (the device received it).
    ToDevice,
    /// Device → fabric (the device transmitted it).
    FromDevice,
}

/// One datagram on one link.
#[derive(Debug, Clone)]
pub struct LinkEvent {
    pub at: Duration,
    pub link: String,
    pub dir: Direction,
    /// `None` when the datagram could not be parsed.
    pub summary: Option<Summary>,
    pub len: usize,
    /// Dropped on this link by an impairment (recorded by [`crate::impair::Impair`]).
    pub lost: bool,
}

impl std::fmt::Display for LinkEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let arrow = match self.dir {
            Direction::ToDevice => "in ",
            Direction::FromDevice => "out",
        };
        write!(f, "{:>10.6}s {} {arrow} ", self.at.as_secs_f64(), self.link)?;
        match &self.summary {
            Some(s) => write!(f, "{s}")?,
            None => write!(f, "<malformed, {} bytes>", self.len)?,
        }
        if self.lost {
            write!(f, " [lost on the link]")?;
        }
        Ok(())
    }
}

/// Shared, append-only record of link events.
#[derive(Debug, Clone, Default)]
pub struct TraceSink(Arc<Mutex<Vec<LinkEvent>>>);

impl TraceSink {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn record(&self, ev: LinkEvent) {
        self.0.lock().expect("poisoned").push(ev);
    }
    /// Take all records so far.
    pub fn drain(&self) -> Vec<LinkEvent> {
        std::mem::take(&mut *self.0.lock().expect("poisoned"))
    }
    pub fn len(&self) -> usize {
        self.0.lock().expect("poisoned").len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records every datagram crossing the wrapped port.
#[derive(Debug)]
pub struct Tracer<P> {
    inner: P,
    sink: TraceSink,
    enabled: bool,
}

impl<P: Port> Tracer<P> {
    pub fn new(inner: P, sink: TraceSink) -> Self {
        Tracer {
            inner,
            sink,
            enabled: true,
        }
    }
    /// Record or not (on by default). Off, the tracer is a plain pass-through: no parsing,
    /// no allocation, no lock per datagram (the real-mode hot path when nothing is traced).
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    pub fn inner(&self) -> &P {
        &self.inner
    }
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }
    pub fn into_inner(self) -> P {
        self.inner
    }
    fn note(&self, now: Duration, dir: Direction, pkt: &[u8]) {
        if !self.enabled {
            return;
        }
        self.sink.record(LinkEvent {
            at: now,
            link: self.inner.name().to_string(),
            dir,
            summary: summarize(pkt).ok(),
            len: pkt.len(),
            lost: false,
        });
    }
}

impl<P: Port> Port for Tracer<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn send(&mut self, now: Duration, pkt: &[u8]) {
        self.note(now, Direction::ToDevice, pkt);
        self.inner.send(now, pkt);
    }
    fn send_owned(&mut self, now: Duration, pkt: Vec<u8>) {
        self.note(now, Direction::ToDevice, &pkt);
        self.inner.send_owned(now, pkt);
    }
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>> {
        let pkt = self.inner.recv(now)?;
        self.note(now, Direction::FromDevice, &pkt);
        Some(pkt)
    }
    fn poll_at(&self) -> Option<Duration> {
        self.inner.poll_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tcp_packet;
    use crate::MemPort;
    use std::net::SocketAddrV4;

    #[test]
    fn records_both_directions() {
        let sink = TraceSink::new();
        let (port, handle) = MemPort::new("browser");
        let mut t = Tracer::new(port, sink.clone());
        let p = tcp_packet(
            "203.0.113.11:40312".parse::<SocketAddrV4>().unwrap(),
            "10.151.30.11:32761".parse::<SocketAddrV4>().unwrap(),
            64,
            "S",
            b"",
        );
        handle.inject(p.clone());
        assert!(t.recv(Duration::from_millis(5)).is_some());
        t.send(Duration::from_millis(6), &p);
        let ev = sink.drain();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].dir, Direction::FromDevice);
        assert_eq!(ev[1].dir, Direction::ToDevice);
        assert_eq!(
            ev[0].summary.as_ref().unwrap().to_string(),
            "203.0.113.11:40312 → 10.151.30.11:32761 S"
        );
        assert!(ev[0].to_string().contains("browser out"));
        assert_eq!(handle.take_delivered().len(), 1);
    }
}
