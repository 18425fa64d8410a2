//! Reused datagram buffers: the real-mode ports read a datagram into a buffer taken from
//! the pool, the fabric carries that buffer as the datagram's `Vec<u8>` (rewriting it in
//! place), and the egress port gives it back once the datagram is written. In steady state
//! forwarding allocates nothing.
//!
//! Two classes, by capacity: small buffers ([`SMALL`] bytes: a datagram up to the MTUs pods
//! have, copied out of the port's read buffer) and large ones (at least [`LARGE_MIN`]: a
//! superpacket read in place). Each class keeps at most a bounded number of free buffers
//! (more are freed), so an idle lab holds at most
//! `MAX_SMALL * SMALL + MAX_LARGE * (largest read)` bytes (4 MiB + about 8.5 MiB with 66 KiB
//! reads). A buffer smaller than [`SMALL`] (a datagram some other code allocated) is not
//! kept.
//!
//! The pool is shared by every thread (one mutex per class, held for a push or a pop): a
//! datagram read on one thread may be written, and its buffer given back, on another. In
//! front of it each thread keeps up to 64 small buffers of its own ([`take`] and [`give`]),
//! so a thread that reads and writes its datagrams takes no lock per datagram.

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

/// Capacity of a small buffer (and the largest request a small buffer serves).
pub const SMALL: usize = 4096;
/// The smallest capacity kept as a large buffer.
pub const LARGE_MIN: usize = 16 * 1024;
/// Free small buffers kept at most.
pub const MAX_SMALL: usize = 1024;
/// Free large buffers kept at most.
pub const MAX_LARGE: usize = 128;

/// A pool of datagram buffers (see the module docs); [`take`] and [`give`] use the
/// process-wide one.
#[derive(Debug)]
pub struct BufPool {
    small: Mutex<Vec<Vec<u8>>>,
    large: Mutex<Vec<Vec<u8>>>,
    max_small: usize,
    max_large: usize,
}

impl BufPool {
    /// An empty pool keeping at most `max_small` small and `max_large` large free buffers.
    pub const fn new(max_small: usize, max_large: usize) -> BufPool {
        BufPool {
            small: Mutex::new(Vec::new()),
            large: Mutex::new(Vec::new()),
            max_small,
            max_large,
        }
    }

    /// An empty buffer (length 0) with room for at least `capacity` bytes: a free one of
    /// the matching class, else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity <= SMALL {
            let free = self
                .small
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            return free.unwrap_or_else(|| Vec::with_capacity(SMALL));
        }
        let free = self
            .large
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match free {
            Some(b) if b.capacity() >= capacity => b,
            // Reads grew (a larger MTU or offloads turned on): a new buffer of the new size.
            _ => Vec::with_capacity(capacity.max(LARGE_MIN)),
        }
    }

    /// Return a buffer for reuse (its contents are discarded). Freed instead when its class
    /// is full or it is too small to serve a [`BufPool::take`].
    pub fn give(&self, mut buf: Vec<u8>) {
        let (class, max) = match buf.capacity() {
            c if c >= LARGE_MIN => (&self.large, self.max_large),
            c if c >= SMALL => (&self.small, self.max_small),
            _ => return,
        };
        buf.clear();
        let mut free = class.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < max {
            // Reserve the class's whole list once, so a push never reallocates.
            if free.capacity() == 0 {
                free.reserve_exact(max);
            }
            free.push(buf);
        }
    }

    /// Free buffers held now: (small, large).
    pub fn free(&self) -> (usize, usize) {
        let small = self
            .small
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let large = self
            .large
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        (small, large)
    }
}

static POOL: BufPool = BufPool::new(MAX_SMALL, MAX_LARGE);

/// Small buffers each thread keeps in front of the shared pool: a thread that reads and
/// writes datagrams (the real-mode loop) takes and gives back without a lock. At most
/// `LOCAL_SMALL * SMALL` (256 KiB) per thread; beyond, buffers go to the shared pool.
const LOCAL_SMALL: usize = 64;

thread_local! {
    static LOCAL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// [`BufPool::take`] on the process-wide pool (a small buffer from this thread's own
/// free list first).
pub fn take(capacity: usize) -> Vec<u8> {
    if capacity <= SMALL {
        // `try_with`: a thread tearing down its locals goes to the shared pool.
        if let Some(b) = LOCAL.try_with(|l| l.borrow_mut().pop()).ok().flatten() {
            return b;
        }
    }
    POOL.take(capacity)
}

/// A pooled buffer holding a copy of `data`.
pub fn copy_of(data: &[u8]) -> Vec<u8> {
    let mut b = take(data.len());
    b.extend_from_slice(data);
    b
}

/// [`BufPool::give`] on the process-wide pool (a small buffer to this thread's own free
/// list while it has room).
pub fn give(buf: Vec<u8>) {
    let mut left = Some(buf);
    if left
        .as_ref()
        .is_some_and(|b| (SMALL..LARGE_MIN).contains(&b.capacity()))
    {
        let _ = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            if l.len() < LOCAL_SMALL {
                if l.capacity() == 0 {
                    l.reserve_exact(LOCAL_SMALL);
                }
                if let Some(mut b) = left.take() {
                    b.clear();
                    l.push(b);
                }
            }
        });
    }
    if let Some(b) = left {
        POOL.give(b);
    }
}

/// The process-wide pool (its counters, for tests and stats).
pub fn global() -> &'static BufPool {
    &POOL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_by_class() {
        let pool = BufPool::new(2, 1);
        let a = pool.take(1500);
        assert!(a.capacity() >= 1500 && a.is_empty());
        let mut big = pool.take(66_000);
        assert!(big.capacity() >= 66_000);
        big.extend_from_slice(&[1, 2, 3]);
        let (pa, pbig) = (a.as_ptr(), big.as_ptr());
        pool.give(a);
        pool.give(big);
        assert_eq!(pool.free(), (1, 1));
        // The same allocations come back, emptied.
        let a2 = pool.take(60);
        assert_eq!(a2.as_ptr(), pa);
        let big2 = pool.take(66_000);
        assert_eq!((big2.as_ptr(), big2.len()), (pbig, 0));
        assert_eq!(pool.free(), (0, 0));
    }

    #[test]
    fn bounded_and_small_foreign_buffers_dropped() {
        let pool = BufPool::new(1, 1);
        pool.give(Vec::with_capacity(100));
        assert_eq!(pool.free(), (0, 0), "too small to serve a take");
        pool.give(pool.take(10));
        pool.give(pool.take(10));
        pool.give(Vec::with_capacity(SMALL));
        assert_eq!(pool.free(), (1, 0), "at most one small buffer kept");
        pool.give(Vec::with_capacity(LARGE_MIN));
        pool.give(Vec::with_capacity(LARGE_MIN));
        assert_eq!(pool.free(), (1, 1));
    }

    #[test]
    fn the_thread_keeps_small_buffers_then_shares() {
        // This test's thread is its own: its local list starts empty.
        let bufs: Vec<Vec<u8>> = (0..LOCAL_SMALL + 3).map(|_| take(100)).collect();
        let ptrs: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        for b in bufs {
            give(b);
        }
        // The first LOCAL_SMALL stay with the thread (the rest went to the shared pool).
        assert_eq!(LOCAL.with(|l| l.borrow().len()), LOCAL_SMALL);
        // Taken back last in, first out, without the lock.
        let b = take(1500);
        assert_eq!(b.as_ptr(), ptrs[LOCAL_SMALL - 1]);
        assert!(b.is_empty() && b.capacity() >= SMALL);
    }

    #[test]
    fn a_larger_read_replaces_a_smaller_large_buffer() {
        let pool = BufPool::new(1, 1);
        pool.give(Vec::with_capacity(LARGE_MIN));
        let b = pool.take(LARGE_MIN + 1);
        assert!(b.capacity() > LARGE_MIN);
        assert_eq!(pool.free(), (0, 0));
    }
}
