//! Pcap capture of every link: node interfaces, router interfaces and edge ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nodestack::Iface;
use vswitch::{Pcap, PcapSink};

use super::{Attach, EdgeKind, World};

impl World {
    /// Capture every link into `dir` (created if missing), one LINKTYPE_RAW pcap file per
    /// link: each client's uplink (`<client>.pcap`, incl. the LB prober), each pod's link
    /// (`pod-<pod>.pcap`), each node's `eth0` and `cni0` (`<node>-eth0.pcap`,
    /// `<node>-cni0.pcap`: what the interface receives and what it transmits, i.e. after
    /// NAT on egress) and each router interface (`router-<iface>.pcap`). Timestamps are the
    /// world's wall clock (its base + virtual time). Call it before adding impairments so
    /// edge captures show the device side of an impaired link. Returns (link, path) pairs.
    pub fn capture_all(&mut self, dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
        std::fs::create_dir_all(dir)?;
        let base = self.capture_base();
        let mut files = Vec::new();
        self.capture_all_with(&mut |link| {
            let path = dir.join(format!("{}.pcap", vswitch::pcap::sanitize(link)));
            let sink = PcapSink::create(&path, base)?;
            files.push((link.to_string(), path));
            Ok(sink)
        })?;
        Ok(files)
    }

    /// The pcap timestamp base of this world (its wall clock's epoch for virtual time 0).
    pub fn capture_base(&self) -> Duration {
        Duration::from_secs(self.clock.base_unix)
    }

    /// [`World::capture_all`] into sinks made by `open(link)` (e.g. in memory, for `lab
    /// serve`'s pcap downloads), the links named as there (`pod-<pod>`, `<client>`,
    /// `<node>-eth0`, `<node>-cni0`, `router-<iface>`). Returns the link names in order.
    pub fn capture_all_with(
        &mut self,
        open: &mut dyn FnMut(&str) -> std::io::Result<PcapSink>,
    ) -> std::io::Result<Vec<String>> {
        let mut links = Vec::new();
        let mut open = |link: String| {
            let sink = open(&link);
            if sink.is_ok() {
                links.push(link);
            }
            sink
        };
        let mut node_pcap = Vec::new();
        for n in &self.nodes {
            let name = n.node.name().to_string();
            node_pcap.push([
                Some(open(format!("{name}-eth0"))?),
                Some(open(format!("{name}-cni0"))?),
            ]);
        }
        let mut router_pcap = Vec::new();
        for i in self.router.ifaces() {
            router_pcap.push(Some(open(format!("router-{}", i.name))?));
        }
        let mut edge_sinks = Vec::new();
        for e in &self.edges {
            if e.gone {
                continue;
            }
            let link = match e.kind {
                EdgeKind::Pod { .. } => format!("pod-{}", e.name),
                EdgeKind::Client => e.name.clone(),
            };
            edge_sinks.push((e.name.clone(), open(link)?));
        }
        self.node_pcap = node_pcap;
        self.router_pcap = router_pcap;
        for (name, sink) in edge_sinks {
            self.capture_edge(&name, sink)?;
        }
        Ok(links)
    }

    /// Capture edge `name`'s link (pod or client; e.g. a pod added after
    /// [`World::capture_all_with`]) into `sink`.
    pub fn capture_edge(&mut self, name: &str, sink: PcapSink) -> std::io::Result<()> {
        let s2 = sink.clone();
        self.wrap_port(name, move |p| Box::new(Pcap::new(p, s2)))
            .map_err(std::io::Error::other)?;
        self.edge_pcap.push(sink);
        Ok(())
    }

    /// Flush and close every capture file (also happens when the world is dropped).
    pub fn finish_captures(&mut self) -> std::io::Result<()> {
        let all = self
            .node_pcap
            .iter()
            .flatten()
            .flatten()
            .chain(self.router_pcap.iter().flatten())
            .chain(self.edge_pcap.iter());
        let mut first = Ok(());
        for s in all {
            if let Err(e) = s.finish() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    pub(super) fn capture(&self, at: Attach, pkt: &[u8]) {
        let sink = match at {
            Attach::Node(n, Iface::Eth0) => self.node_pcap.get(n).and_then(|s| s[0].as_ref()),
            Attach::Node(n, Iface::Cni0) => self.node_pcap.get(n).and_then(|s| s[1].as_ref()),
            Attach::Router(i) => self.router_pcap.get(i).and_then(|s| s.as_ref()),
            _ => None,
        };
        if let Some(s) = sink {
            s.record(self.now, pkt);
        }
    }
}
