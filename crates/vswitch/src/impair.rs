//! [`Impair`]: a [`Port`] wrapper adding one-way delay and random loss on both directions of
//! a link (smoltcp `FaultInjector` style). Randomness comes from an RNG the caller owns
//! (seeded by the world), so runs are reproducible. Rate limiting is not modelled yet.

use std::collections::VecDeque;
use std::time::Duration;

use rand::{Rng, RngCore};

use crate::Port;

/// What the link does to datagrams, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairConfig {
    /// One-way delay added to each datagram (the round trip grows by twice this).
    pub delay: Duration,
    /// Probability in [0, 1] that a datagram is lost.
    pub loss: f64,
}

/// Delay/loss wrapper.
pub struct Impair<P, R> {
    inner: P,
    cfg: ImpairConfig,
    rng: R,
    to_device: VecDeque<(Duration, Vec<u8>)>,
    from_device: VecDeque<(Duration, Vec<u8>)>,
    /// Datagrams lost so far.
    pub lost: u64,
}

impl<P: Port, R: RngCore> Impair<P, R> {
    pub fn new(inner: P, cfg: ImpairConfig, rng: R) -> Self {
        Impair {
            inner,
            cfg,
            rng,
            to_device: VecDeque::new(),
            from_device: VecDeque::new(),
            lost: 0,
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
}

impl<P: Port, R: RngCore> Port for Impair<P, R> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn send(&mut self, now: Duration, pkt: &[u8]) {
        if self.lose() {
            return;
        }
        if self.cfg.delay.is_zero() {
            self.inner.send(now, pkt);
        } else {
            self.to_device
                .push_back((now + self.cfg.delay, pkt.to_vec()));
        }
    }
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>> {
        while self.to_device.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((due, p)) = self.to_device.pop_front() {
                self.inner.send(due, &p);
            }
        }
        while let Some(p) = self.inner.recv(now) {
            if !self.lose() {
                self.from_device.push_back((now + self.cfg.delay, p));
            }
        }
        if self.from_device.front().is_some_and(|(due, _)| *due <= now) {
            return self.from_device.pop_front().map(|(_, p)| p);
        }
        None
    }
    fn poll_at(&self) -> Option<Duration> {
        [
            self.inner.poll_at(),
            self.to_device.front().map(|(d, _)| *d),
            self.from_device.front().map(|(d, _)| *d),
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
            loss: 0.0,
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
            delay: Duration::ZERO,
            loss: 0.5,
        };
        let mut p = Impair::new(port, cfg, ChaCha8Rng::seed_from_u64(2));
        for _ in 0..1000 {
            p.send(Duration::ZERO, b"z");
        }
        assert!((400..600).contains(&p.lost), "{}", p.lost);
    }
}
