//! A [`Port`] for a fabric shared by several threads: the fabric side of a device whose I/O
//! another thread does.
//!
//! Real mode with more than one datapath thread (`lab up --datapath-threads N`) keeps the
//! fabric (nodes, conntrack, NAT, router) behind one lock and moves the expensive part, the
//! TUN reads and writes (copies, and the receiving namespace's stack run inside `write`),
//! out of it: a worker reads a batch from its own queues, pushes it into the ports' inboxes
//! ([`Exchange::push`]), runs the fabric, takes what the fabric sent ([`Exchange::take_out`])
//! and writes it after releasing the lock. [`QueuedPort`] is what the fabric sees of such a
//! device: `recv` pops its inbox, `send` appends to the exchange's outbox tagged with the
//! port's slot.
//!
//! Everything is in memory; no I/O here (the worker loop lives with the TUN code's users).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::Port;

/// Inboxes of every [`QueuedPort`] and the outbox they all send to.
#[derive(Debug, Default)]
pub struct Exchange {
    inner: Mutex<Queues>,
}

#[derive(Debug, Default)]
struct Queues {
    inbox: Vec<VecDeque<Vec<u8>>>,
    /// (slot, datagram) in the order the fabric sent them.
    outbox: Vec<(usize, Vec<u8>)>,
}

impl Exchange {
    /// An exchange with no ports yet.
    pub fn new() -> Arc<Exchange> {
        Arc::new(Exchange::default())
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        // A worker that panicked while holding the lock left plain queues behind: still
        // consistent, so go on with them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new port whose datagrams are tagged with the next free slot (0, 1, …).
    pub fn port(self: &Arc<Exchange>, name: impl Into<String>) -> QueuedPort {
        let mut q = self.queues();
        q.inbox.push(VecDeque::new());
        QueuedPort {
            name: name.into(),
            slot: q.inbox.len() - 1,
            ex: Arc::clone(self),
        }
    }

    /// Hands `pkt` to the fabric as if port `slot`'s device had sent it (an unknown slot
    /// drops it).
    pub fn push(&self, slot: usize, pkt: Vec<u8>) {
        if let Some(q) = self.queues().inbox.get_mut(slot) {
            q.push_back(pkt);
        }
    }

    /// [`Exchange::push`] for a batch, under one lock.
    pub fn push_all(&self, batch: &mut Vec<(usize, Vec<u8>)>) {
        let mut q = self.queues();
        for (slot, pkt) in batch.drain(..) {
            if let Some(inbox) = q.inbox.get_mut(slot) {
                inbox.push_back(pkt);
            }
        }
    }

    /// Moves everything the fabric sent since the last call into `out` (appended, in order).
    pub fn take_out(&self, out: &mut Vec<(usize, Vec<u8>)>) {
        out.append(&mut self.queues().outbox);
    }

    /// Datagrams waiting in the inboxes (not yet taken by the fabric).
    pub fn pending(&self) -> usize {
        self.queues().inbox.iter().map(VecDeque::len).sum()
    }
}

/// The fabric side of a device driven by another thread; see the module docs.
#[derive(Debug)]
pub struct QueuedPort {
    name: String,
    slot: usize,
    ex: Arc<Exchange>,
}

impl QueuedPort {
    /// The slot this port's datagrams carry in the exchange.
    pub fn slot(&self) -> usize {
        self.slot
    }
}

impl Port for QueuedPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, now: Duration, pkt: &[u8]) {
        self.send_owned(now, pkt.to_vec())
    }

    fn send_owned(&mut self, _now: Duration, pkt: Vec<u8>) {
        self.ex.queues().outbox.push((self.slot, pkt));
    }

    fn recv(&mut self, _now: Duration) -> Option<Vec<u8>> {
        self.ex.queues().inbox.get_mut(self.slot)?.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inboxes_per_slot_and_one_ordered_outbox() {
        let ex = Exchange::new();
        let mut a = ex.port("a");
        let mut b = ex.port("b");
        assert_eq!((a.slot(), b.slot()), (0, 1));
        let mut batch = vec![(1, vec![1]), (0, vec![2]), (1, vec![3]), (7, vec![9])];
        ex.push_all(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(ex.pending(), 3, "slot 7 does not exist: dropped");
        let t = Duration::ZERO;
        assert_eq!(a.recv(t), Some(vec![2]));
        assert_eq!(a.recv(t), None);
        assert_eq!(b.recv(t), Some(vec![1]));
        assert_eq!(b.recv(t), Some(vec![3]));
        b.send(t, &[4]);
        a.send_owned(t, vec![5]);
        b.send_owned(t, vec![6]);
        let mut out = vec![(9, vec![0])];
        ex.take_out(&mut out);
        assert_eq!(
            out,
            [(9, vec![0]), (1, vec![4]), (0, vec![5]), (1, vec![6])]
        );
        ex.take_out(&mut out);
        assert_eq!(out.len(), 4, "taken once");
        ex.push(0, vec![8]);
        assert_eq!(ex.pending(), 1);
        assert_eq!(a.name(), "a");
    }
}
