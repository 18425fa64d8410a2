//! The embedded UDP client: one datagram from a fixed or a fresh ephemeral source port, then
//! wait for the answer, like `socat - UDP4:ip:port,sourceport=N` (a connected UDP socket).
//!
//! Outcomes: [`OutcomeKind::Ok`] with the answer's text as the body, [`OutcomeKind::Timeout`]
//! when nothing came back in time, [`OutcomeKind::Refused`] when an ICMP destination
//! unreachable quoting the datagram came back (a connected socket's `ECONNREFUSED` for port
//! unreachable, `EHOSTUNREACH` otherwise). Answers from any other address are ignored, as a
//! connected socket does.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use vswitch::packet::{self, PROTO_UDP};

use crate::host::{ClientHandle, OutcomeKind, RequestId, RequestOutcome};

/// What one UDP request sends and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpOpts {
    /// The datagram's payload (e.g. agnhost netexec's `hostname`, `echo hi`, `clientip`).
    pub payload: String,
    /// How long to wait for the answer.
    pub timeout: Duration,
    /// Source port; `None` = a fresh ephemeral port.
    pub source_port: Option<u16>,
}

/// One datagram in flight.
struct Pending {
    id: RequestId,
    dst: SocketAddr,
    opts: UdpOpts,
    started: Duration,
    port: u16,
    handle: SocketHandle,
    sent: bool,
    /// ICMP destination unreachable code, once one quoting our datagram arrived.
    unreachable: Option<u8>,
}

/// The UDP side of an embedded client host.
pub(crate) struct UdpClient {
    /// The host's addresses (IPv4, and IPv6 on a dual-stack host).
    ips: Vec<IpAddr>,
    /// Where the world queues requests and reads outcomes (shared with the curl client).
    shared: ClientHandle,
    active: Vec<Pending>,
    rng: ChaCha8Rng,
}

impl UdpClient {
    pub(crate) fn new(ips: Vec<IpAddr>, shared: ClientHandle, seed: u64) -> Self {
        UdpClient {
            ips,
            shared,
            active: Vec::new(),
            // Its own stream: TCP requests draw the same ports as before UDP existed.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7564_7063_6c69_656e),
        }
    }

    /// The earliest answer deadline.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.active.iter().map(|a| a.started + a.opts.timeout).min()
    }

    fn pick_port(&mut self) -> u16 {
        loop {
            let p: u16 = self.rng.random_range(32768..=60999);
            if self.active.iter().all(|a| a.port != p) {
                return p;
            }
        }
    }

    /// An ICMP destination unreachable quoting one of our datagrams.
    pub(crate) fn on_icmp(&mut self, s: &packet::Summary) {
        let Some((code, sport, dst)) = unreachable_quoting(s, PROTO_UDP, &self.ips) else {
            return;
        };
        for a in &mut self.active {
            if sport == a.port && dst == a.dst {
                a.unreachable = Some(code);
            }
        }
    }

    /// Start queued requests, collect answers and timeouts (reported through the handle);
    /// whether anything changed.
    pub(crate) fn service(&mut self, now: Duration, sockets: &mut SocketSet<'static>) -> bool {
        let mut changed = false;
        let mut done = Vec::new();
        for (id, dst, opts, started) in self.shared.take_udp_starts() {
            let port = opts.source_port.unwrap_or_else(|| self.pick_port());
            let mut s = udp::Socket::new(
                udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
                udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 2], vec![0; 4096]),
            );
            if s.bind(port).is_err() {
                let msg = format!("udp: cannot bind source port {port}: Address already in use");
                done.push((
                    id,
                    outcome(OutcomeKind::Refused, dst, port, started, now, msg),
                ));
                continue;
            }
            self.shared.set_port(id, port);
            let handle = sockets.add(s);
            self.active.push(Pending {
                id,
                dst,
                opts,
                started,
                port,
                handle,
                sent: false,
                unreachable: None,
            });
            changed = true;
        }
        let mut i = 0;
        while i < self.active.len() {
            match step(&mut self.active[i], now, sockets) {
                Some((kind, body, message)) => {
                    let a = self.active.swap_remove(i);
                    sockets.remove(a.handle);
                    let mut out = outcome(kind, a.dst, a.port, a.started, now, message);
                    out.body = body;
                    done.push((a.id, out));
                    changed = true;
                }
                None => i += 1,
            }
        }
        changed |= !done.is_empty();
        for (id, out) in done {
            self.shared.finish(id, out);
        }
        changed
    }
}

/// An ICMP destination unreachable (type 3) quoting a `proto` packet that one of `ips` sent:
/// (code, the quoted source port, the quoted destination). Shared by the curl and UDP clients.
/// An ICMPv6 destination unreachable (type 1) counts too, its code in ICMP's terms (port
/// unreachable, 4, is ICMP's 3; the others "no route", ICMP's 1), as Linux's icmpv6_err_convert
/// maps both to the same errno.
pub(crate) fn unreachable_quoting(
    s: &packet::Summary,
    proto: u8,
    ips: &[IpAddr],
) -> Option<(u8, u16, SocketAddr)> {
    let code = match (s.tuple.proto, s.icmp?) {
        (packet::PROTO_ICMPV6, (1, 4)) => 3,
        (packet::PROTO_ICMPV6, (1, _)) => 1,
        (packet::PROTO_ICMP, (3, code)) => code,
        _ => return None,
    };
    let inner = s.inner?;
    (inner.proto == proto && ips.contains(&inner.src))
        .then(|| (code, inner.sport, inner.dst_addr()))
}

/// One datagram's progress: (kind, answer, error line) once it ended.
fn step(
    a: &mut Pending,
    now: Duration,
    sockets: &mut SocketSet<'static>,
) -> Option<(OutcomeKind, String, String)> {
    let s = sockets.get_mut::<udp::Socket>(a.handle);
    let peer = IpEndpoint::new(IpAddress::from(a.dst.ip()), a.dst.port());
    if !a.sent {
        if s.send_slice(a.opts.payload.as_bytes(), peer).is_err() {
            return Some((
                OutcomeKind::Refused,
                String::new(),
                format!("udp: sending to {}: No buffer space available", a.dst),
            ));
        }
        a.sent = true;
    }
    while let Ok((data, meta)) = s.recv() {
        if meta.endpoint == peer {
            return Some((
                OutcomeKind::Ok,
                String::from_utf8_lossy(data).into_owned(),
                String::new(),
            ));
        }
    }
    if let Some(code) = a.unreachable {
        let why = if code == 3 {
            "Connection refused"
        } else {
            "No route to host"
        };
        return Some((
            OutcomeKind::Refused,
            String::new(),
            format!("udp: {} port {}: {why}", a.dst.ip(), a.dst.port()),
        ));
    }
    if now >= a.started + a.opts.timeout {
        let ms = now.saturating_sub(a.started).as_millis();
        return Some((
            OutcomeKind::Timeout,
            String::new(),
            format!(
                "udp: no answer from {} port {} after {ms} ms",
                a.dst.ip(),
                a.dst.port()
            ),
        ));
    }
    None
}

fn outcome(
    kind: OutcomeKind,
    dst: SocketAddr,
    port: u16,
    started: Duration,
    now: Duration,
    message: String,
) -> RequestOutcome {
    RequestOutcome {
        kind,
        status: None,
        body: String::new(),
        elapsed: now.saturating_sub(started),
        started_at: started,
        client_port: port,
        dst,
        message,
        headers: Vec::new(),
    }
}
