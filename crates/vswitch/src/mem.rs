//! An in-memory [`Port`]: two queues and a handle for the code playing the device.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Port;

#[derive(Debug, Default)]
struct Queues {
    /// Fabric → device (what the fabric delivered).
    delivered: VecDeque<Vec<u8>>,
    /// Device → fabric (what the device transmits).
    outgoing: VecDeque<Vec<u8>>,
}

/// The port side (goes into the fabric).
#[derive(Debug)]
pub struct MemPort {
    name: String,
    q: Arc<Mutex<Queues>>,
}

/// The device side (kept by the test or adapter).
#[derive(Debug, Clone)]
pub struct MemHandle {
    q: Arc<Mutex<Queues>>,
}

impl MemPort {
    pub fn new(name: impl Into<String>) -> (MemPort, MemHandle) {
        let q = Arc::new(Mutex::new(Queues::default()));
        (
            MemPort {
                name: name.into(),
                q: q.clone(),
            },
            MemHandle { q },
        )
    }
}

impl MemHandle {
    /// The device transmits `pkt` into the fabric.
    pub fn inject(&self, pkt: Vec<u8>) {
        self.q.lock().expect("poisoned").outgoing.push_back(pkt);
    }
    /// Everything the fabric delivered so far (drained).
    pub fn take_delivered(&self) -> Vec<Vec<u8>> {
        self.q
            .lock()
            .expect("poisoned")
            .delivered
            .drain(..)
            .collect()
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn send(&mut self, _now: Duration, pkt: &[u8]) {
        self.q
            .lock()
            .expect("poisoned")
            .delivered
            .push_back(pkt.to_vec());
    }
    fn recv(&mut self, _now: Duration) -> Option<Vec<u8>> {
        self.q.lock().expect("poisoned").outgoing.pop_front()
    }
}
