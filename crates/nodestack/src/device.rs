//! A queue-backed smoltcp `phy::Device` (`Medium::Ip`): the adapter between a smoltcp
//! `Interface` and whoever moves raw IPv4 datagrams (the node's forwarding path, the sim's
//! fabric). RxToken owns a datagram popped from `rx`; TxToken pushes to `tx`.

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
}

impl QueueDevice {
    pub fn new(mtu: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu,
        }
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let pkt = self.rx.pop_front()?;
        Some((RxToken(pkt), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}
