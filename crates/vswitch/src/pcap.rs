//! [`Pcap`]: a [`Port`] wrapper writing every datagram crossing the link to a pcap file
//! (smoltcp `phy::PcapWriter` style), and the [`PcapSink`] it writes to.
//!
//! Files are classic pcap with `LINKTYPE_RAW` (101): each record is the raw IP datagram,
//! IPv4 or IPv6 (readers tell them apart by the version nibble), exactly as the fabric
//! carries it (no L2 header), so `tcpdump -nn -r FILE` and Wireshark
//! read them directly. Timestamps are `base + now` where `now` is the caller's (virtual)
//! clock and `base` an epoch offset chosen by the caller (the world uses its wall clock's
//! base, so pcap times match the nginx access log). The wrapper reads no clock itself.
//!
//! A sink can also be fed directly ([`PcapSink::record`]) by code that sees packets cross a
//! link that is not a [`Port`] (the world does that for node interfaces and the router).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use crate::Port;

struct SinkInner {
    writer: Option<PcapWriter<Box<dyn Write + Send>>>,
    base: Duration,
    packets: u64,
    error: Option<String>,
}

/// One pcap file, shareable (clones write to the same file, in call order).
#[derive(Clone)]
pub struct PcapSink(Arc<Mutex<SinkInner>>);

impl std::fmt::Debug for PcapSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSink")
            .field("packets", &self.packets())
            .finish()
    }
}

/// Snap length written in the header (no datagram here is larger than 64 KiB).
pub const SNAPLEN: u32 = 65_535;

impl PcapSink {
    /// A sink writing to `w` (the pcap header is written now). `base` is added to every
    /// timestamp (e.g. a Unix epoch for virtual time zero).
    pub fn new(w: impl Write + Send + 'static, base: Duration) -> io::Result<PcapSink> {
        let header = PcapHeader {
            datalink: DataLink::RAW,
            snaplen: SNAPLEN,
            ts_resolution: TsResolution::MicroSecond,
            ..PcapHeader::default()
        };
        let boxed: Box<dyn Write + Send> = Box::new(w);
        let writer = PcapWriter::with_header(boxed, header).map_err(io::Error::other)?;
        Ok(PcapSink(Arc::new(Mutex::new(SinkInner {
            writer: Some(writer),
            base,
            packets: 0,
            error: None,
        }))))
    }

    /// A sink writing to a new file at `path` (buffered; [`PcapSink::finish`] flushes).
    pub fn create(path: &Path, base: Duration) -> io::Result<PcapSink> {
        let f = File::create(path)?;
        PcapSink::new(BufWriter::new(f), base)
    }

    /// Append one datagram seen at `now`. Write errors are kept (see [`PcapSink::error`]),
    /// not raised: capturing never disturbs the datapath.
    ///
    /// A datagram whose L4 checksum the fabric carries partial ([`wire::partial`]) is
    /// recorded as the device that completes it would send it: a copy, completed.
    pub fn record(&self, now: Duration, pkt: &[u8]) {
        if wire::partial::is_marked(pkt) {
            let mut done = pkt.to_vec();
            wire::partial::complete(&mut done);
            return self.record(now, &done);
        }
        let mut g = self.0.lock().expect("poisoned");
        let ts = g.base + now;
        let len = pkt.len().min(SNAPLEN as usize);
        let Some(w) = g.writer.as_mut() else { return };
        let rec = PcapPacket::new(ts, pkt.len() as u32, &pkt[..len]);
        match w.write_packet(&rec) {
            Ok(_) => g.packets += 1,
            Err(e) => {
                if g.error.is_none() {
                    g.error = Some(e.to_string());
                }
            }
        }
    }

    /// Records written so far.
    pub fn packets(&self) -> u64 {
        self.0.lock().expect("poisoned").packets
    }

    /// The first write error, if any.
    pub fn error(&self) -> Option<String> {
        self.0.lock().expect("poisoned").error.clone()
    }

    /// Flush and close the file; later records are ignored. Idempotent.
    pub fn finish(&self) -> io::Result<()> {
        let w = self.0.lock().expect("poisoned").writer.take();
        match w {
            Some(w) => w.into_writer().flush(),
            None => Ok(()),
        }
    }
}

/// Writes every datagram crossing the wrapped port (both directions) to a [`PcapSink`].
pub struct Pcap<P> {
    inner: P,
    sink: PcapSink,
}

impl<P: Port> Pcap<P> {
    pub fn new(inner: P, sink: PcapSink) -> Self {
        Pcap { inner, sink }
    }
    pub fn inner(&self) -> &P {
        &self.inner
    }
    pub fn sink(&self) -> &PcapSink {
        &self.sink
    }
}

impl<P: Port> Port for Pcap<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn send(&mut self, now: Duration, pkt: &[u8]) {
        self.sink.record(now, pkt);
        self.inner.send(now, pkt);
    }
    fn send_owned(&mut self, now: Duration, pkt: Vec<u8>) {
        self.sink.record(now, &pkt);
        self.inner.send_owned(now, pkt);
    }
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>> {
        let pkt = self.inner.recv(now)?;
        self.sink.record(now, &pkt);
        Some(pkt)
    }
    fn poll_at(&self) -> Option<Duration> {
        self.inner.poll_at()
    }
}

/// A file-name-safe form of a link name: `ydzs-node1/cni0` → `ydzs-node1-cni0`,
/// `clients 203.0.113.0/24` → `clients-203.0.113.0-24` (anything outside `[A-Za-z0-9._-]`
/// becomes `-`, runs collapse, no leading/trailing `-`).
pub fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
        if ok {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tcp_packet;
    use crate::MemPort;
    use pcap_file::pcap::PcapReader;
    use std::net::SocketAddr;

    /// A SYN from `src` to `dst` (either family).
    fn syn(src: &str, dst: &str) -> Vec<u8> {
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        tcp_packet(addr(src), addr(dst), 64, "S", b"")
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_both_directions_with_base_epoch() {
        let buf = Shared::default();
        let base = Duration::from_secs(1_575_737_078);
        let sink = PcapSink::new(buf.clone(), base).unwrap();
        let (port, handle) = MemPort::new("browser");
        let mut p = Pcap::new(port, sink.clone());
        let syn = syn("203.0.113.11:40312", "10.151.30.11:32761");
        handle.inject(syn.clone());
        assert_eq!(p.recv(Duration::from_millis(5)), Some(syn.clone()));
        p.send(Duration::from_millis(7), &syn);
        assert_eq!(sink.packets(), 2);
        sink.finish().unwrap();
        let bytes = buf.0.lock().unwrap().clone();
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().datalink, DataLink::RAW);
        let a = r.next_packet().unwrap().unwrap();
        assert_eq!(a.timestamp, base + Duration::from_millis(5));
        assert_eq!(a.data.as_ref(), &syn[..]);
        let b = r.next_packet().unwrap().unwrap();
        assert_eq!(b.timestamp, base + Duration::from_millis(7));
        assert!(r.next_packet().is_none());
    }

    /// LINKTYPE_RAW carries both families (issue 10): an IPv6 datagram is recorded byte
    /// for byte, next to an IPv4 one, in the same file.
    #[test]
    fn ipv6_records_round_trip_next_to_ipv4() {
        let buf = Shared::default();
        let sink = PcapSink::new(buf.clone(), Duration::ZERO).unwrap();
        let v6 = syn("[fd00:203:0:113::11]:40312", "[fd00:10:151::11]:32761");
        assert_eq!(v6[0] >> 4, 6, "an IPv6 datagram");
        let v4 = syn("203.0.113.11:40312", "10.151.30.11:32761");
        sink.record(Duration::from_millis(1), &v6);
        sink.record(Duration::from_millis(2), &v4);
        sink.finish().unwrap();
        let bytes = buf.0.lock().unwrap().clone();
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().datalink, DataLink::RAW);
        let a = r.next_packet().unwrap().unwrap();
        assert_eq!(a.data.as_ref(), &v6[..]);
        assert_eq!(a.orig_len as usize, v6.len());
        let b = r.next_packet().unwrap().unwrap();
        assert_eq!(b.data.as_ref(), &v4[..]);
        assert!(r.next_packet().is_none());
    }

    #[test]
    fn sanitizes_link_names() {
        assert_eq!(sanitize("ydzs-node1/cni0"), "ydzs-node1-cni0");
        assert_eq!(
            sanitize("router/clients 203.0.113.0/24"),
            "router-clients-203.0.113.0-24"
        );
        assert_eq!(sanitize("browser"), "browser");
    }
}
