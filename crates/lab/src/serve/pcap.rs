//! `GET /api/pcap/{link}`: every link of the live world captured in memory (the world's
//! capture wrappers, [`sim::World::capture_all_with`], writing to growing buffers instead
//! of files), so the page can download what crossed a link so far as a pcap file.
//!
//! A buffer holds the classic pcap header then one record per datagram (`LINKTYPE_RAW`,
//! as `--pcap`); a download is a copy of it at that moment, a valid file on its own. The
//! buffers are not capped: a served lab carries the page's requests and the LB's health
//! checks, a few hundred bytes per datagram.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use vswitch::PcapSink;

/// A growing in-memory pcap file.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured links of one world, in the world's link order, each by its id: the link
/// name made URL- and file-safe ([`vswitch::pcap::sanitize`], as `--pcap`'s file names:
/// `router-clients-203.0.113.0-24`).
#[derive(Default)]
pub struct Captures {
    links: Vec<(String, PcapSink, Buf)>,
    base: Duration,
}

impl Captures {
    /// Captures every link of `world` from now on.
    pub fn start(world: &mut sim::World) -> std::io::Result<Captures> {
        let base = world.capture_base();
        let mut links = Vec::new();
        world.capture_all_with(&mut |link| {
            let buf = Buf::default();
            let sink = PcapSink::new(buf.clone(), base)?;
            links.push((vswitch::pcap::sanitize(link), sink.clone(), buf));
            Ok(sink)
        })?;
        Ok(Captures { links, base })
    }

    /// Captures pod `pod`'s link too (a pod started after [`Captures::start`]); a pod seen
    /// before (deleted, then back) keeps appending to its file.
    pub fn add_pod(&mut self, world: &mut sim::World, pod: &str) -> std::io::Result<()> {
        let link = vswitch::pcap::sanitize(&format!("pod-{pod}"));
        let sink = match self.links.iter().find(|(l, _, _)| *l == link) {
            Some((_, s, _)) => s.clone(),
            None => {
                let buf = Buf::default();
                let sink = PcapSink::new(buf.clone(), self.base)?;
                self.links.push((link, sink.clone(), buf));
                sink
            }
        };
        world.capture_edge(pod, sink)
    }

    /// `links` of `GET /api/state`: name and datagrams recorded so far.
    pub fn json(&self) -> Value {
        self.links
            .iter()
            .map(|(l, s, _)| json!({"name": l, "packets": s.packets()}))
            .collect()
    }

    /// The pcap file of `link` so far.
    pub fn file(&self, link: &str) -> Option<Vec<u8>> {
        self.links
            .iter()
            .find(|(l, _, _)| l == link)
            .map(|(_, _, b)| b.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    pub fn names(&self) -> Vec<String> {
        self.links.iter().map(|(l, _, _)| l.clone()).collect()
    }
}
