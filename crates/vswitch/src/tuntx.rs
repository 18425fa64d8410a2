//! The write half of a [`crate::tun::TunPort`], and the TX thread that can run it.
//!
//! A TUN write is the expensive half of forwarding: besides copying the datagram, the
//! kernel runs the receiving namespace's stack (IP, TCP, waking the reader) inside the
//! writer's `write(2)`. Measured with `perf record` on `lab up` under iperf3 at MTU 1500,
//! that was about half of the lab's CPU. With [`TunConfig::tx_thread`](crate::tun::TunConfig)
//! the port hands each datagram (owned: no copy on the fabric's hot path) to one process-wide
//! TX thread through a bounded FIFO, so the fabric thread goes on reading and routing while
//! the kernel delivers on the other core. One thread for every port keeps the order of the
//! datagrams of every port (and between ports) as the fabric emitted them.
//!
//! Measured on a 2-core machine (`lab up kernel-ref`, MTU 1500, same binary, A/B twice):
//! iperf3 5.6-8.1 Gbit/s with the TX thread vs 6.8-9.4 without, wrk keep-alive 24-38 k req/s
//! vs 37-54 k. The cores are already busy with iperf3/nginx/wrk and the kernel work each TUN
//! write triggers, and the hand-over costs a wake-up for most small datagrams: off by default
//! (`host::lab::UpOptions::tx_thread`); worth trying on machines with more cores.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};

use crate::gso;

/// Datagrams waiting for the TX thread before the fabric blocks (at most 64 KiB each).
const TX_QUEUE: usize = 512;

/// Counters of the write half (atomics: the TX thread updates them).
#[derive(Debug, Default)]
pub(crate) struct TxCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub superpackets: AtomicU64,
    pub segmented: AtomicU64,
    pub partial: AtomicU64,
}

/// Everything a write needs; shared by the port and the datagrams queued for the TX thread
/// (which keep the fd open until they are written).
#[derive(Debug)]
pub(crate) struct TxSide {
    pub dev: File,
    pub name: String,
    pub netns: String,
    pub mtu: u16,
    /// Every write carries a `virtio_net_hdr`.
    pub vnet: bool,
    /// `TUN_F_*` in effect.
    pub offloads: u32,
    pub counters: TxCounters,
    /// Why the device is gone (set once, by either half).
    pub dead: OnceLock<String>,
}

impl TxSide {
    pub fn mark_dead(&self, what: &str, e: &io::Error) {
        let _ = self.dead.set(format!(
            "{}: {what} failed: {e} (TUN device in {} is gone)",
            self.name, self.netns
        ));
    }

    /// Writes one datagram: a TSO superpacket when it is longer than the MTU and the device
    /// has TSO, cut into segments (in `scratch`) when it has not ([`crate::gso`]). A datagram
    /// whose checksum the fabric kept partial ([`wire::partial`]) is copied first (see
    /// [`TxSide::send_mut`], which takes it in place).
    pub fn send(&self, pkt: &[u8], scratch: &mut Vec<u8>) -> bool {
        if wire::partial::is_marked(pkt) {
            return self.send_mut(&mut pkt.to_vec(), scratch);
        }
        self.send_whole(pkt, scratch)
    }

    /// [`TxSide::send`] on a datagram the caller owns: a partial checksum is written out
    /// still partial (`NEEDS_CSUM`) to a device with checksum offload, and completed here
    /// for one without.
    pub fn send_mut(&self, pkt: &mut [u8], scratch: &mut Vec<u8>) -> bool {
        if !wire::partial::is_marked(pkt) {
            return self.send_whole(pkt, scratch);
        }
        if self.dead.get().is_some() {
            self.counters.dropped.fetch_add(1, Relaxed);
            return false;
        }
        if !self.vnet || self.offloads & libc::TUN_F_CSUM == 0 {
            wire::partial::complete(pkt);
            return self.send_whole(pkt, scratch);
        }
        let Some((start, off)) = wire::partial::finish_partial(pkt) else {
            return self.send_whole(pkt, scratch);
        };
        if pkt.len() > usize::from(self.mtu) {
            // A superpacket as TSO (its field now holds the pseudo-header sum, as `egress`
            // writes it), or segments whose checksums segment_tcp computes in full.
            if let Some(ok) = self.send_long(pkt, scratch) {
                return ok;
            }
        }
        let h = gso::partial_hdr(start, off).to_bytes();
        let ok = self.write_parts(&[&h, pkt], pkt.len());
        self.counters.partial.fetch_add(u64::from(ok), Relaxed);
        ok
    }

    /// A datagram whose checksums are complete.
    fn send_whole(&self, pkt: &[u8], scratch: &mut Vec<u8>) -> bool {
        if self.dead.get().is_some() {
            self.counters.dropped.fetch_add(1, Relaxed);
            return false;
        }
        if pkt.len() > usize::from(self.mtu) {
            if let Some(ok) = self.send_long(pkt, scratch) {
                return ok;
            }
        }
        self.write_plain(pkt)
    }

    /// A TCP datagram longer than the MTU: as a TSO superpacket (partial checksum) when the
    /// device has TSO, else cut into segments with complete checksums. `None` if it is not
    /// one that can be (the caller writes it whole).
    fn send_long(&self, pkt: &[u8], scratch: &mut Vec<u8>) -> Option<bool> {
        let tso = if pkt.first().is_some_and(|b| b >> 4 == 6) {
            libc::TUN_F_TSO6
        } else {
            libc::TUN_F_TSO4
        };
        if self.offloads & tso != 0 {
            let (h, field, sum) = gso::egress(pkt, self.mtu)?;
            let sum = sum.to_be_bytes();
            let parts = [&h.to_bytes()[..], &pkt[..field], &sum, &pkt[field + 2..]];
            let ok = self.write_parts(&parts, pkt.len());
            self.counters.superpackets.fetch_add(u64::from(ok), Relaxed);
            return Some(ok);
        }
        let mut ok = true;
        if gso::segment_tcp(pkt, self.mtu, scratch, |s| ok &= self.write_plain(s)) {
            self.counters.segmented.fetch_add(1, Relaxed);
            return Some(ok);
        }
        None
    }

    /// One datagram as is (behind an all-zero header with offloads).
    fn write_plain(&self, pkt: &[u8]) -> bool {
        if self.vnet {
            let h = [0u8; gso::VNET_HDR_LEN];
            self.write_parts(&[&h, pkt], pkt.len())
        } else {
            self.write_parts(&[pkt], pkt.len())
        }
    }

    /// One writev(2) of `parts` (a TUN write takes the whole datagram or fails); `len` = the
    /// datagram's length for the counters.
    fn write_parts(&self, parts: &[&[u8]], len: usize) -> bool {
        let iov: [libc::iovec; 4] = std::array::from_fn(|i| libc::iovec {
            iov_base: parts
                .get(i)
                .map_or(std::ptr::null_mut(), |p| p.as_ptr() as *mut _),
            iov_len: parts.get(i).map_or(0, |p| p.len()),
        });
        let cnt = parts.len().min(iov.len()) as libc::c_int;
        // SAFETY: every iovec points to a live slice of its length; the kernel only reads.
        let rc = unsafe { libc::writev(self.dev.as_raw_fd(), iov.as_ptr(), cnt) };
        if rc >= 0 {
            self.counters.packets.fetch_add(1, Relaxed);
            self.counters.bytes.fetch_add(len as u64, Relaxed);
            return true;
        }
        let e = io::Error::last_os_error();
        if matches!(
            e.raw_os_error(),
            Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::EBADF)
        ) {
            self.mark_dead("write", &e);
        }
        self.counters.dropped.fetch_add(1, Relaxed);
        false
    }
}

type Job = (Arc<TxSide>, Vec<u8>);

/// The process-wide TX thread's queue (started on first use; `None` if it could not be).
fn queue() -> Option<&'static SyncSender<Job>> {
    static TX: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(TX_QUEUE);
        std::thread::Builder::new()
            .name("nplab-tun-tx".into())
            .spawn(move || {
                let mut scratch = Vec::new();
                for (side, mut pkt) in rx {
                    side.send_mut(&mut pkt, &mut scratch);
                    crate::bufpool::give(pkt);
                }
            })
            .ok()
            .map(|_| tx)
    })
    .as_ref()
}

/// Queues `pkt` for the TX thread (blocks while the queue is full: back-pressure on the
/// fabric); writes it here if there is no TX thread.
pub(crate) fn enqueue(side: &Arc<TxSide>, pkt: Vec<u8>, scratch: &mut Vec<u8>) -> bool {
    match queue() {
        Some(q) => match q.send((Arc::clone(side), pkt)) {
            Ok(()) => true,
            Err(e) => side.send_mut(&mut { e.0 }.1, scratch),
        },
        None => side.send_mut(&mut { pkt }, scratch),
    }
}
