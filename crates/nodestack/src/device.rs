//! A queue-backed smoltcp `phy::Device` (`Medium::Ip`): the adapter between a smoltcp
//! `Interface` and whoever moves raw IPv4 datagrams (the node's forwarding path, the sim's
//! fabric). RxToken owns a datagram popped from `rx` and hands its buffer back once the
//! stack consumed it; TxToken fills a spare buffer (or a new one) and pushes it to `tx`.

use std::collections::VecDeque;
use std::time::Duration;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Converts the lab's `Duration since epoch` into smoltcp's clock.
pub fn instant(now: Duration) -> Instant {
    Instant::from_micros(now.as_micros() as i64)
}

/// And back (negative instants clamp to zero).
pub fn duration(at: Instant) -> Duration {
    Duration::from_micros(at.total_micros().max(0) as u64)
}

#[derive(Debug)]
pub struct QueueDevice {
    /// Datagrams waiting to be read by the stack.
    pub rx: VecDeque<Vec<u8>>,
    /// Datagrams the stack transmitted.
    pub tx: VecDeque<Vec<u8>>,
    pub mtu: usize,
    /// Buffers of datagrams the stack consumed, ready for the next transmitted or queued
    /// one ([`QueueDevice::copy_in`]): no allocation per datagram in steady state.
    spare: Vec<Vec<u8>>,
    /// Buffers the last receive tokens handed back (moved to `spare` on the next call; the
    /// receive and transmit tokens of one call borrow the two lists apart).
    returned: Vec<Vec<u8>>,
}

/// At most this many spare buffers are kept, none larger than [`SPARE_MAX_CAPACITY`].
const SPARE_BUFFERS: usize = 32;
const SPARE_MAX_CAPACITY: usize = 65_536;

/// Keep `buf` for reuse if the list has room and it is not oversized.
fn keep(list: &mut Vec<Vec<u8>>, buf: Vec<u8>) {
    if list.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_MAX_CAPACITY {
        list.push(buf);
    }
}

impl QueueDevice {
    pub fn new(mtu: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu,
            spare: Vec::new(),
            returned: Vec::new(),
        }
    }

    /// `pkt` copied into a buffer of the device (a spare one when there is one), e.g. to
    /// queue it on `rx`.
    pub fn copy_in(&mut self, pkt: &[u8]) -> Vec<u8> {
        self.reclaim();
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(pkt);
        buf
    }

    fn reclaim(&mut self) {
        while let Some(b) = self.returned.pop() {
            keep(&mut self.spare, b);
        }
    }
}

pub struct RxToken<'a> {
    pkt: Vec<u8>,
    returned: &'a mut Vec<Vec<u8>>,
}
pub struct TxToken<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
    spare: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(&self.pkt);
        keep(self.returned, self.pkt);
        r
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // A zeroed buffer of `len` bytes, as `vec![0; len]` was, from a spare allocation.
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        let r = f(&mut buf);
        self.tx.push_back(buf);
        r
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let pkt = self.rx.pop_front()?;
        self.reclaim();
        let rx = RxToken {
            pkt,
            returned: &mut self.returned,
        };
        let tx = TxToken {
            tx: &mut self.tx,
            spare: &mut self.spare,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.reclaim();
        Some(TxToken {
            tx: &mut self.tx,
            spare: &mut self.spare,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{Device, RxToken as _, TxToken as _};

    /// A consumed datagram's buffer carries the next transmitted one, zeroed to its length
    /// like a fresh `vec![0; len]`.
    #[test]
    fn consumed_buffers_are_reused_zeroed() {
        let mut d = QueueDevice::new(1500);
        let q = d.copy_in(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let ptr = q.as_ptr();
        d.rx.push_back(q);
        let (rx, _) = d.receive(Instant::ZERO).expect("queued");
        rx.consume(|p| assert_eq!(p, [1, 2, 3, 4, 5, 6, 7, 8]));
        let tx = d.transmit(Instant::ZERO).expect("always");
        tx.consume(4, |b| {
            assert_eq!(b, [0, 0, 0, 0]);
            b[0] = 9;
        });
        let sent = d.tx.pop_front().expect("sent");
        assert_eq!(sent, [9, 0, 0, 0]);
        assert_eq!(sent.as_ptr(), ptr, "the consumed buffer was reused");
        // Nothing spare: a new buffer.
        let tx = d.transmit(Instant::ZERO).expect("always");
        tx.consume(2, |b| assert_eq!(b, [0, 0]));
        assert_eq!(d.tx.len(), 1);
    }
}
