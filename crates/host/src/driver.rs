//! The real-mode event loop: poll(2) over the TUN fds with a timeout equal to the fabric's
//! next deadline, then let the fabric move packets.
//!
//! The fabric is anything implementing [`Fabric`] (a closure `FnMut(now) -> Option<deadline>`
//! works): typically the simulated world owning the [`TunPort`]s as its edge ports, whose
//! `poll(now)` reads every ready port until `EAGAIN`, runs the nodes, and writes what it
//! delivers back into the ports. Time is wall-clock `Duration` since the driver's epoch.
//! [`Forwarder`] is a trivial fabric (forward IPv4 and IPv6 by destination, no NAT) that proves the
//! plumbing and gives a throughput baseline.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use vswitch::tun::{RecvOutcome, TunPort};

use super::{nix_err, Result};

/// Longest single poll(2) wait, so stop conditions are re-checked regularly even without
/// traffic or deadlines (signals interrupt the wait anyway).
pub const MAX_IDLE: Duration = Duration::from_millis(100);

/// Moves packets between the TUN ports and the simulated network.
pub trait Fabric {
    /// Called after every wake-up (readiness or deadline) with the current time: read ready
    /// ports, process, write deliveries. Returns the next time it must be called even if no
    /// packet arrives (`None` = only on packets).
    fn poll(&mut self, now: Duration) -> Option<Duration>;
}

impl<F: FnMut(Duration) -> Option<Duration>> Fabric for F {
    fn poll(&mut self, now: Duration) -> Option<Duration> {
        self(now)
    }
}

/// Loop counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// poll(2) calls.
    pub polls: u64,
    /// Fabric calls.
    pub fabric_polls: u64,
    /// Turns without poll(2) because the fabric had more work (deadline already due).
    pub busy_turns: u64,
    /// Fds removed from the set after POLLERR/POLLHUP/POLLNVAL (device gone).
    pub dead_fds: Vec<RawFd>,
}

/// The poll(2) loop.
#[derive(Debug)]
pub struct Driver {
    epoch: Instant,
    fds: Vec<RawFd>,
    stats: DriverStats,
}

impl Driver {
    /// A driver over `fds` (which must stay open while the driver runs; typically
    /// [`TunPort::raw_fd`] of every port the fabric owns). Time starts now.
    pub fn new(fds: impl IntoIterator<Item = RawFd>) -> Driver {
        Driver::with_epoch(fds, Instant::now())
    }
    /// Same, with time measured from `epoch`.
    pub fn with_epoch(fds: impl IntoIterator<Item = RawFd>, epoch: Instant) -> Driver {
        Driver {
            epoch,
            fds: fds.into_iter().collect(),
            stats: DriverStats::default(),
        }
    }
    /// Time since the epoch.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
    /// Counters.
    pub fn stats(&self) -> &DriverStats {
        &self.stats
    }
    /// Replaces the fd set (ports added/removed).
    pub fn set_fds(&mut self, fds: impl IntoIterator<Item = RawFd>) {
        self.fds = fds.into_iter().collect();
    }

    /// One wait (at most `max_wait`, less if `deadline` is earlier) followed by one fabric
    /// call. Returns the fabric's next deadline.
    pub fn turn(
        &mut self,
        fabric: &mut dyn Fabric,
        deadline: Option<Duration>,
        max_wait: Duration,
    ) -> Result<Option<Duration>> {
        let now = self.now();
        let wait = deadline
            .map(|d| d.saturating_sub(now))
            .unwrap_or(max_wait)
            .min(max_wait);
        if wait.is_zero() {
            // The fabric asked to run again at once (work left): skip the syscall.
            self.stats.busy_turns += 1;
        } else {
            self.wait(wait)?;
        }
        self.stats.fabric_polls += 1;
        Ok(fabric.poll(self.now()))
    }

    /// One poll(2) on the fds for at most `wait` (rounded up to whole milliseconds); an fd
    /// that reports POLLERR/POLLHUP/POLLNVAL (its device is gone) leaves the set for good
    /// ([`DriverStats::dead_fds`]). Returns `true` if some fd is readable.
    pub fn wait(&mut self, wait: Duration) -> Result<bool> {
        // Round up to whole milliseconds so we never wake just before a deadline.
        let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: the caller guarantees the fds stay open while the driver runs.
        let borrowed: Vec<BorrowedFd<'_>> = self
            .fds
            .iter()
            .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
            .collect();
        let mut pfds: Vec<PollFd<'_>> = borrowed
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        self.stats.polls += 1;
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        match poll(&mut pfds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(nix_err("poll(2) on TUN fds")(e)),
        }
        let bad = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
        let dead: Vec<RawFd> = pfds
            .iter()
            .zip(&self.fds)
            .filter(|(p, _)| p.revents().is_some_and(|r| r.intersects(bad)))
            .map(|(_, &fd)| fd)
            .collect();
        let readable = pfds
            .iter()
            .any(|p| p.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)));
        drop(pfds);
        if !dead.is_empty() {
            self.fds.retain(|fd| !dead.contains(fd));
            self.stats.dead_fds.extend(dead);
        }
        Ok(readable)
    }

    /// Runs until `stop(now)` returns `true` (checked at least every [`MAX_IDLE`] and after
    /// every wake-up; combine with [`super::cleanup::stop_requested`] for Ctrl-C).
    pub fn run(
        &mut self,
        fabric: &mut dyn Fabric,
        mut stop: impl FnMut(Duration) -> bool,
    ) -> Result<DriverStats> {
        self.stats.fabric_polls += 1;
        let mut next = fabric.poll(self.now());
        while !stop(self.now()) {
            next = self.turn(fabric, next, MAX_IDLE)?;
        }
        Ok(self.stats.clone())
    }
}

/// Counters of the trivial forwarder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Packets dropped: no port owns the destination (or it is the ingress port).
    pub no_route: u64,
}

/// A trivial fabric: every port owns a prefix; an IPv4 packet read from one port is written to
/// the port whose prefix contains its destination (longest prefix wins). No NAT, no TTL.
#[derive(Debug, Default)]
pub struct Forwarder {
    ports: Vec<(IpAddr, u8, TunPort)>,
    /// More prefixes owned by a port: (network, length, index in `ports`).
    extra: Vec<(IpAddr, u8, usize)>,
    buf: Vec<u8>,
    stats: ForwarderStats,
    /// Max packets read from one port per fabric call (fairness); default 256.
    pub batch: usize,
}

/// `addr` in `net/len`; addresses of different families never match.
fn in_prefix(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    let bits = |a: IpAddr| match a {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32u32),
        IpAddr::V6(a) => (u128::from(a), 128u32),
    };
    let ((a, width), (n, nwidth)) = (bits(addr), bits(net));
    let len = u32::from(len).min(width);
    let mask = if len == 0 {
        0
    } else {
        (u128::MAX >> (128 - width)) & !((1u128 << (width - len)) - 1)
    };
    width == nwidth && a & mask == n & mask
}

/// The destination address of an IPv4 or IPv6 datagram.
fn destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 => {
            let b: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

impl Forwarder {
    /// An empty forwarder.
    pub fn new() -> Self {
        Forwarder {
            batch: 256,
            ..Default::default()
        }
    }
    /// Adds a port owning `net/len` (IPv4 or IPv6; a dual-stack link is added once per
    /// family, see [`Forwarder::add_prefix`]).
    pub fn add(&mut self, net: impl Into<IpAddr>, len: u8, port: TunPort) {
        let need = port.read_capacity();
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        self.ports.push((net.into(), len, port));
    }
    /// Makes the port added last also own `net/len` (the other family of its link).
    pub fn add_prefix(&mut self, net: impl Into<IpAddr>, len: u8) -> bool {
        let Some(last) = self.ports.len().checked_sub(1) else {
            return false;
        };
        self.extra.push((net.into(), len, last));
        true
    }
    /// The fds to poll.
    pub fn fds(&self) -> Vec<RawFd> {
        self.ports.iter().map(|(_, _, p)| p.raw_fd()).collect()
    }
    /// The ports.
    pub fn ports(&self) -> impl Iterator<Item = &TunPort> {
        self.ports.iter().map(|(_, _, p)| p)
    }
    /// Counters.
    pub fn stats(&self) -> &ForwarderStats {
        &self.stats
    }
    fn route(&self, dst: IpAddr) -> Option<usize> {
        let own = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, (n, l, _))| (*n, *l, i));
        own.chain(self.extra.iter().copied())
            .filter(|(net, len, _)| in_prefix(dst, *net, *len))
            .max_by_key(|(_, len, _)| *len)
            .map(|(_, _, i)| i)
    }
}

impl Fabric for Forwarder {
    fn poll(&mut self, now: Duration) -> Option<Duration> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut moved = false;
        for i in 0..self.ports.len() {
            let mut n = 0;
            loop {
                if n >= self.batch {
                    break;
                }
                let len = match self.ports[i].2.recv_into(&mut buf) {
                    RecvOutcome::Packet(len) => len,
                    RecvOutcome::Dropped => continue,
                    RecvOutcome::Empty => break,
                };
                n += 1;
                moved = true;
                let pkt = &mut buf[..len];
                match destination(pkt).and_then(|d| self.route(d)) {
                    Some(j) if j != i => {
                        self.ports[j].2.send_in_place(pkt);
                        self.stats.forwarded += 1;
                        self.stats.bytes += len as u64;
                    }
                    _ => self.stats.no_route += 1,
                }
            }
        }
        self.buf = buf;
        // Traffic is flowing: call again at once (without poll(2)); the next call that finds
        // every port empty returns `None` and the driver sleeps in poll(2) again.
        moved.then_some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let v4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
        let a = v4([10, 244, 1, 16]);
        assert!(in_prefix(a, v4([10, 244, 1, 0]), 24));
        assert!(in_prefix(a, v4([10, 244, 0, 0]), 16));
        assert!(!in_prefix(a, v4([10, 244, 2, 0]), 24));
        assert!(in_prefix(a, v4([0, 0, 0, 0]), 0));
        assert!(in_prefix(a, a, 32));
        let b = v6("fd00:10:244:1::10");
        assert!(in_prefix(b, v6("fd00:10:244:1::"), 64));
        assert!(!in_prefix(b, v6("fd00:10:244:2::"), 64));
        assert!(in_prefix(b, v6("::"), 0));
        assert!(in_prefix(b, b, 128));
        assert!(!in_prefix(b, v6("fd00:10:244:1::11"), 128));
        // Families never match, not even the default route of the other one.
        assert!(!in_prefix(a, v6("::"), 0));
        assert!(!in_prefix(b, v4([0, 0, 0, 0]), 0));
    }

    #[test]
    fn destination_of_either_family() {
        let mut p4 = [0u8; 20];
        p4[0] = 0x45;
        p4[16..20].copy_from_slice(&[10, 244, 1, 16]);
        assert_eq!(destination(&p4), Some(IpAddr::from([10, 244, 1, 16])));
        let mut p6 = [0u8; 40];
        p6[0] = 0x60;
        let d: Ipv6Addr = "fd00:10:244:1::10".parse().unwrap();
        p6[24..40].copy_from_slice(&d.octets());
        assert_eq!(destination(&p6), Some(IpAddr::V6(d)));
        assert_eq!(destination(&p6[..39]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        assert_eq!(destination(&[]), None);
    }

    #[test]
    fn closure_fabric_and_deadlines() {
        // No fds: the driver just sleeps until the fabric's deadlines.
        let mut d = Driver::new(Vec::new());
        let mut calls = 0u32;
        let mut fab = |now: Duration| {
            calls += 1;
            Some(now + Duration::from_millis(5))
        };
        let t0 = Instant::now();
        let st = d
            .run(&mut fab, |now| now >= Duration::from_millis(50))
            .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(st.fabric_polls >= 5 && st.fabric_polls < 40, "{st:?}");
        assert!(calls >= 5);
    }
}
