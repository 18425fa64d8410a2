//! The real-mode packet loop on several threads (`lab up --datapath-threads N`).
//!
//! Every TUN device has N queues (`IFF_MULTI_QUEUE`, [`host::lab::UpOptions::queues`]); the
//! kernel puts each flow of a namespace on one queue (a symmetric flow hash, and the queue
//! the flow's packets were last written from), and thread k owns queue k of every device.
//! A thread reads a batch from its queues *without* the lock, then, under the one lock that
//! guards the fabric (world, kubelet, control socket), hands the batch to the fabric's
//! [`QueuedPort`](vswitch::queued::QueuedPort)s, runs one turn and takes what the fabric
//! sent; it writes that through its own queues after releasing the lock. The copies of
//! reads and writes, and the receiving namespace's stack that the kernel runs inside every
//! write, happen on N threads at once; only the fabric's own work is serialised.
//!
//! Order: a flow's datagrams in one direction come in through one queue, so one thread
//! reads, forwards and writes them in order. Deadlines (timers of the fabric and kubelet) are
//! shared: every thread sleeps at most until the earliest one, so whichever wakes first runs
//! the turn that is due.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use host::driver::Driver;
use vswitch::queued::Exchange;
use vswitch::tun::TunPort;

/// Longest sleep without a deadline (stop requests are checked at least this often).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Datagrams read from one queue before the batch goes to the fabric.
const BATCH: usize = 64;
/// "No deadline" in [`Shared::deadline`].
const NONE: u64 = u64::MAX;

/// The devices' queues, as the threads own them, and the exchange the fabric's ports use.
pub struct Queues {
    /// Inboxes/outbox of the fabric's ports (slot = index in every `ports[k]`).
    pub ex: Arc<Exchange>,
    /// `ports[k][slot]`: queue k of the device in `slot`.
    pub ports: Vec<Vec<TunPort>>,
}

struct Shared<'a, S> {
    state: Mutex<&'a mut S>,
    ex: &'a Exchange,
    epoch: Instant,
    /// Earliest deadline of the fabric, in ns since `epoch` ([`NONE`]: none).
    deadline: AtomicU64,
}

/// Runs `turn` (the fabric and what goes with it) with the queues' I/O on one thread per
/// queue until `stop()`; `wake_fd` (e.g. kubelet's child watcher) is polled by thread 0 and
/// makes it run a turn when readable.
pub fn run<S: Send>(
    queues: Queues,
    wake_fd: RawFd,
    epoch: Instant,
    state: &mut S,
    turn: impl Fn(&mut S, Duration) -> Option<Duration> + Sync,
    stop: impl Fn() -> bool + Sync,
) -> anyhow::Result<()> {
    let shared = Shared {
        state: Mutex::new(state),
        ex: &queues.ex,
        epoch,
        deadline: AtomicU64::new(0),
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = queues
            .ports
            .into_iter()
            .enumerate()
            .map(|(k, ports)| {
                let (shared, turn, stop) = (&shared, &turn, &stop);
                let wake = (k == 0).then_some(wake_fd);
                std::thread::Builder::new()
                    .name(format!("nplab-dp{k}"))
                    .spawn_scoped(s, move || worker(ports, wake, shared, turn, stop))
            })
            .collect::<Result<_, _>>()?;
        let mut first_err = None;
        for h in handles {
            let r = h
                .join()
                .map_err(|_| anyhow!("a datapath thread panicked"))
                .and_then(|r| r);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

fn worker<S>(
    mut ports: Vec<TunPort>,
    wake_fd: Option<RawFd>,
    sh: &Shared<'_, S>,
    turn: &(impl Fn(&mut S, Duration) -> Option<Duration> + Sync),
    stop: &(impl Fn() -> bool + Sync),
) -> anyhow::Result<()> {
    // Dead queues leave the poll set inside the driver; `sh.epoch` keeps the clock.
    let mut poller = Driver::new(ports.iter().map(TunPort::raw_fd).chain(wake_fd));
    let mut batch: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut busy = false;
    while !stop() {
        let now = sh.epoch.elapsed();
        let due = sh.deadline.load(Relaxed);
        let wait = if busy {
            Duration::ZERO
        } else {
            Duration::from_nanos(due).saturating_sub(now).min(MAX_WAIT)
        };
        // Readable but nothing read below: the wake fd (or a queue emptied meanwhile).
        let woken = poller.wait(wait).map_err(|e| anyhow!("{e}"))?;
        for (slot, port) in ports.iter_mut().enumerate() {
            let start = batch.len();
            while batch.len() - start < BATCH {
                let Some(p) = port.recv_owned() else { break };
                batch.push((slot, p));
            }
        }
        busy = !batch.is_empty();
        let now = sh.epoch.elapsed();
        if !busy && !woken && now.as_nanos() < u128::from(sh.deadline.load(Relaxed)) {
            continue;
        }
        {
            let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
            sh.ex.push_all(&mut batch);
            let next = turn(&mut st, sh.epoch.elapsed());
            let ns = next.map_or(NONE, |t| u64::try_from(t.as_nanos()).unwrap_or(NONE));
            sh.deadline.store(ns, Relaxed);
            sh.ex.take_out(&mut out);
        }
        for (slot, pkt) in out.drain(..) {
            if let Some(port) = ports.get_mut(slot) {
                port.send_owned(pkt);
            }
        }
    }
    Ok(())
}
