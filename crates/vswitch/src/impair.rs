//! [`Impair`]: a [`Port`] wrapper adding one-way delay, jitter, a rate limit and random loss
//! on both directions of a link (smoltcp `FaultInjector` / netem style). Randomness comes from
//! an RNG the caller owns (seeded by the world), so runs are reproducible.
//!
//! Per direction, a datagram that is not lost is serialised at `rate` (it leaves when the
//! previous one has been clocked out, `len × 8 / rate` later), then delayed by
//! `delay ± jitter` (uniform). Datagrams never overtake each other (jitter does not reorder,
//! like netem with a rate). The queue is unbounded (no tail drop).

use std::collections::VecDeque;
use std::time::Duration;

use rand::{Rng, RngCore};

use crate::bufpool;
use crate::packet::summarize;
use crate::tracer::{Direction, LinkEvent, TraceSink};
use crate::Port;

/// What the link does to datagrams, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairConfig {
    /// One-way delay added to each datagram (the round trip grows by twice this).
    pub delay: Duration,
    /// Probability in [0, 1] that a datagram is lost.
    pub loss: f64,
    /// Uniform variation of the delay: each datagram gets `delay ± jitter` (never < 0).
    pub jitter: Duration,
    /// Bits per second; `None` = unlimited.
    pub rate: Option<u64>,
}

/// One direction's queue: datagrams with their due time.
#[derive(Default)]
struct Lane {
    q: VecDeque<(Duration, Vec<u8>)>,
    /// When the serialiser is free again (rate limiting).
    busy_until: Duration,
    /// Due time of the last queued datagram (keeps FIFO order under jitter).
    last_due: Duration,
}

/// Delay/loss wrapper.
pub struct Impair<P, R> {
    inner: P,
    cfg: ImpairConfig,
    rng: R,
    to_device: Lane,
    from_device: Lane,
    /// Datagrams lost so far.
    pub lost: u64,
    /// Where to record losses (as [`LinkEvent`]s with `lost: true`), if anywhere.
    trace: Option<TraceSink>,
}

impl<P: Port, R: RngCore> Impair<P, R> {
    pub fn new(inner: P, cfg: ImpairConfig, rng: R) -> Self {
        Impair {
            inner,
            cfg,
            rng,
            to_device: Lane::default(),
            from_device: Lane::default(),
            lost: 0,
            trace: None,
        }
    }
    /// Record every lost datagram in `sink` (so traces show where a packet vanished).
    pub fn with_trace(mut self, sink: TraceSink) -> Self {
        self.trace = Some(sink);
        self
    }
    fn note_loss(&self, now: Duration, dir: Direction, pkt: &[u8]) {
        if let Some(t) = &self.trace {
            t.record(LinkEvent {
                at: now,
                link: self.inner.name().to_string(),
                dir,
                summary: summarize(pkt).ok(),
                len: pkt.len(),
                lost: true,
            });
        }
    }
    pub fn inner(&self) -> &P {
        &self.inner
    }
    fn lose(&mut self) -> bool {
        let lost = self.cfg.loss > 0.0 && self.rng.random_bool(self.cfg.loss.clamp(0.0, 1.0));
        if lost {
            self.lost += 1;
        }
        lost
    }
    /// When a datagram of `len` bytes entering a lane at `now` is due at the other end.
    fn due(&mut self, to_device: bool, now: Duration, len: usize) -> Duration {
        let cfg = self.cfg;
        let mut t = now;
        let lane = if to_device {
            &mut self.to_device
        } else {
            &mut self.from_device
        };
        if let Some(rate) = cfg.rate.filter(|r| *r > 0) {
            let start = t.max(lane.busy_until);
            let tx = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            t = start + tx;
            lane.busy_until = t;
        }
        let mut d = cfg.delay;
        if !cfg.jitter.is_zero() {
            let j = cfg.jitter.as_secs_f64();
            let off: f64 = self.rng.random_range(-j..=j);
            d = Duration::from_secs_f64((cfg.delay.as_secs_f64() + off).max(0.0));
        }
        let lane = if to_device {
            &mut self.to_device
        } else {
            &mut self.from_device
        };
        let due = (t + d).max(lane.last_due);
        lane.last_due = due;
        due
    }
    /// A datagram towards the device: lost (counted and traced), passed on now, or queued
    /// until it is due.
    fn admit(&mut self, now: Duration, pkt: &[u8]) -> Admit {
        if self.lose() {
            self.note_loss(now, Direction::ToDevice, pkt);
            return Admit::Lost;
        }
        if self.passthrough() {
            Admit::Now
        } else {
            Admit::At(self.due(true, now, pkt.len()))
        }
    }
    fn passthrough(&self) -> bool {
        self.cfg.delay.is_zero() && self.cfg.jitter.is_zero() && self.cfg.rate.is_none()
    }
}

/// What [`Impair`] does with a datagram towards the device.
enum Admit {
    Lost,
    Now,
    At(Duration),
}

impl<P: Port, R: RngCore> Port for Impair<P, R> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn send(&mut self, now: Duration, pkt: &[u8]) {
        match self.admit(now, pkt) {
            Admit::Lost => {}
            Admit::Now => self.inner.send(now, pkt),
            Admit::At(due) => self.to_device.q.push_back((due, pkt.to_vec())),
        }
    }
    fn send_owned(&mut self, now: Duration, pkt: Vec<u8>) {
        match self.admit(now, &pkt) {
            Admit::Lost => bufpool::give(pkt),
            Admit::Now => self.inner.send_owned(now, pkt),
            Admit::At(due) => self.to_device.q.push_back((due, pkt)),
        }
    }
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>> {
        while self.to_device.q.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((due, p)) = self.to_device.q.pop_front() {
                self.inner.send_owned(due, p);
            }
        }
        while let Some(p) = self.inner.recv(now) {
            if self.lose() {
                self.note_loss(now, Direction::FromDevice, &p);
                bufpool::give(p);
            } else {
                let due = self.due(false, now, p.len());
                self.from_device.q.push_back((due, p));
            }
        }
        if self
            .from_device
            .q
            .front()
            .is_some_and(|(due, _)| *due <= now)
        {
            return self.from_device.q.pop_front().map(|(_, p)| p);
        }
        None
    }
    fn poll_at(&self) -> Option<Duration> {
        [
            self.inner.poll_at(),
            self.to_device.q.front().map(|(d, _)| *d),
            self.from_device.q.front().map(|(d, _)| *d),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemPort;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn delays_both_directions_and_loses_some() {
        let (port, handle) = MemPort::new("x");
        let cfg = ImpairConfig {
            delay: Duration::from_millis(20),
            ..ImpairConfig::default()
        };
        let mut p = Impair::new(port, cfg, ChaCha8Rng::seed_from_u64(1));
        p.send(Duration::ZERO, b"a");
        assert_eq!(p.poll_at(), Some(Duration::from_millis(20)));
        assert!(p.recv(Duration::from_millis(10)).is_none());
        assert!(handle.take_delivered().is_empty());
        assert!(p.recv(Duration::from_millis(20)).is_none());
        assert_eq!(handle.take_delivered(), vec![b"a".to_vec()]);
        handle.inject(b"b".to_vec());
        assert!(p.recv(Duration::from_millis(30)).is_none());
        assert_eq!(p.recv(Duration::from_millis(50)), Some(b"b".to_vec()));

        let (port, _h) = MemPort::new("y");
        let cfg = ImpairConfig {
            loss: 0.5,
            ..ImpairConfig::default()
        };
        let mut p = Impair::new(port, cfg, ChaCha8Rng::seed_from_u64(2));
        for _ in 0..1000 {
            p.send(Duration::ZERO, b"z");
        }
        assert!((400..600).contains(&p.lost), "{}", p.lost);
    }

    #[test]
    fn rate_serialises_and_jitter_keeps_order() {
        // 10 Mbit/s: a 1250-byte datagram takes 1 ms on the wire.
        let (port, handle) = MemPort::new("r");
        let cfg = ImpairConfig {
            rate: Some(10_000_000),
            ..ImpairConfig::default()
        };
        let mut p = Impair::new(port, cfg, ChaCha8Rng::seed_from_u64(3));
        for _ in 0..3 {
            p.send(Duration::ZERO, &[0u8; 1250]);
        }
        assert_eq!(p.poll_at(), Some(Duration::from_millis(1)));
        p.recv(Duration::from_millis(2));
        assert_eq!(handle.take_delivered().len(), 2);
        p.recv(Duration::from_millis(3));
        assert_eq!(handle.take_delivered().len(), 1);

        let (port, handle) = MemPort::new("j");
        let cfg = ImpairConfig {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            ..ImpairConfig::default()
        };
        let mut p = Impair::new(port, cfg, ChaCha8Rng::seed_from_u64(4));
        for i in 0..100u8 {
            p.send(Duration::from_micros(u64::from(i)), &[i]);
        }
        assert!(p.poll_at().unwrap() >= Duration::from_millis(40));
        p.recv(Duration::from_millis(39));
        assert!(handle.take_delivered().is_empty());
        p.recv(Duration::from_millis(61));
        let got: Vec<u8> = handle.take_delivered().into_iter().map(|v| v[0]).collect();
        assert_eq!(got, (0..100).collect::<Vec<u8>>(), "FIFO under jitter");
    }
}
