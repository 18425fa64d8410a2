//! The embedded curl-like HTTP client: requests queued by the world, one smoltcp socket per
//! request, curl's outcomes and messages (`curl: (7) …`), Linux's SYN retry budget.
//! The client closes first once the response is complete (like curl), so TIME-WAIT sits on
//! the client as on a real host.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use vswitch::packet::{self, PROTO_TCP};

use super::tcp_socket;

/// Linux `tcp_syn_retries = 6`: SYN at 0, retransmits after 1, 2, 4, 8, 16, 32 s, give up
/// 64 s after the last one: ≈127 s.
pub const LINUX_CONNECT_TIMEOUT: Duration = Duration::from_secs(127);

/// Identifies one request started with [`crate::World::start_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// curl's options that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOpts {
    pub path: String,
    /// `--connect-timeout`; `None` = the kernel's SYN retry span ([`LINUX_CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// `-m/--max-time`; `None` = unlimited.
    pub max_time: Option<Duration>,
    /// `Host:` header; `None` = the destination `ip:port` as curl sends it.
    pub host: Option<String>,
}

impl Default for RequestOpts {
    fn default() -> Self {
        RequestOpts {
            path: "/".into(),
            connect_timeout: None,
            max_time: None,
            host: None,
        }
    }
}

/// How a request ended (with curl's exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// A complete HTTP response (exit 0).
    Ok,
    /// (28) connect or overall timeout.
    Timeout,
    /// (7) RST or ICMP port unreachable answered the SYN.
    Refused,
    /// (56) connection reset after it was established.
    Reset,
    /// (52) the server closed without answering.
    EmptyReply,
}

impl OutcomeKind {
    pub fn exit_code(self) -> i32 {
        match self {
            OutcomeKind::Ok => 0,
            OutcomeKind::Timeout => 28,
            OutcomeKind::Refused => 7,
            OutcomeKind::Reset => 56,
            OutcomeKind::EmptyReply => 52,
        }
    }
}

/// The end of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOutcome {
    pub kind: OutcomeKind,
    /// HTTP status for [`OutcomeKind::Ok`].
    pub status: Option<u16>,
    pub body: String,
    /// Virtual time from start to outcome.
    pub elapsed: Duration,
    pub started_at: Duration,
    pub client_port: u16,
    pub dst: SocketAddr,
    /// curl's error line (`curl: (28) …`), empty on success.
    pub message: String,
    /// Response headers (name, value) in order, for [`OutcomeKind::Ok`].
    pub headers: Vec<(String, String)>,
}

impl RequestOutcome {
    /// A response header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for RequestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            OutcomeKind::Ok => write!(f, "{} {}", self.status.unwrap_or(0), self.body.trim_end()),
            _ => f.write_str(&self.message),
        }
    }
}

/// Requests queued by the world and outcomes reported back.
#[derive(Debug, Default)]
struct ClientShared {
    starts: VecDeque<(RequestId, SocketAddr, RequestOpts, Duration)>,
    udp_starts: Vec<(RequestId, SocketAddr, crate::udp::UdpOpts, Duration)>,
    /// Outcomes not taken yet ([`ClientHandle::take_outcome`]).
    outcomes: HashMap<RequestId, RequestOutcome>,
    /// Source ports of the requests in progress (a finished one's is in its outcome).
    ports: HashMap<RequestId, u16>,
}

/// The world's handle on an embedded curl client.
#[derive(Debug, Clone, Default)]
pub struct ClientHandle(Arc<Mutex<ClientShared>>);

impl ClientHandle {
    pub(crate) fn start(&self, id: RequestId, dst: SocketAddr, opts: RequestOpts, now: Duration) {
        self.0
            .lock()
            .expect("poisoned")
            .starts
            .push_back((id, dst, opts, now));
    }
    /// The outcome of a finished request (until it is taken).
    pub fn outcome(&self, id: RequestId) -> Option<RequestOutcome> {
        self.0.lock().expect("poisoned").outcomes.get(&id).cloned()
    }
    /// Whether request `id` finished (its outcome not taken yet); no copy made.
    pub fn has_outcome(&self, id: RequestId) -> bool {
        self.0.lock().expect("poisoned").outcomes.contains_key(&id)
    }
    /// The outcome of a finished request, handed over: the client keeps nothing of it
    /// (memory stays O(requests in flight), not O(requests run)).
    pub fn take_outcome(&self, id: RequestId) -> Option<RequestOutcome> {
        self.0.lock().expect("poisoned").outcomes.remove(&id)
    }
    /// The source port the request uses (known once the client picked it up; for a
    /// finished request while its outcome is not taken).
    pub fn client_port(&self, id: RequestId) -> Option<u16> {
        let shared = self.0.lock().expect("poisoned");
        shared
            .ports
            .get(&id)
            .copied()
            .or_else(|| shared.outcomes.get(&id).map(|o| o.client_port))
    }
    fn has_starts(&self) -> bool {
        let s = self.0.lock().expect("poisoned");
        !s.starts.is_empty() || !s.udp_starts.is_empty()
    }
    pub(crate) fn start_udp(
        &self,
        id: RequestId,
        dst: SocketAddr,
        opts: crate::udp::UdpOpts,
        now: Duration,
    ) {
        let mut s = self.0.lock().expect("poisoned");
        s.udp_starts.push((id, dst, opts, now));
    }
    pub(crate) fn take_udp_starts(
        &self,
    ) -> Vec<(RequestId, SocketAddr, crate::udp::UdpOpts, Duration)> {
        std::mem::take(&mut self.0.lock().expect("poisoned").udp_starts)
    }
    pub(crate) fn set_port(&self, id: RequestId, port: u16) {
        self.0.lock().expect("poisoned").ports.insert(id, port);
    }
    /// Request `id` ended: its outcome waits to be taken, its port is in there.
    pub(crate) fn finish(&self, id: RequestId, out: RequestOutcome) {
        let mut shared = self.0.lock().expect("poisoned");
        shared.ports.remove(&id);
        shared.outcomes.insert(id, out);
    }
}

struct Active {
    id: RequestId,
    dst: SocketAddr,
    opts: RequestOpts,
    started: Duration,
    port: u16,
    handle: SocketHandle,
    established: bool,
    sent: bool,
    refused: bool,
    buf: Vec<u8>,
    /// SYNs put on the wire so far (first + retransmits).
    syns: u32,
}

/// Linux `net.ipv4.tcp_syn_retries` default: the first SYN plus 6 retransmits.
pub const SYN_RETRIES: u32 = 6;

impl Active {
    fn connect_deadline(&self) -> Duration {
        let c = self.opts.connect_timeout.unwrap_or(LINUX_CONNECT_TIMEOUT);
        let c = match self.opts.max_time {
            Some(m) => c.min(m),
            None => c,
        };
        self.started + c
    }
    fn deadline(&self) -> Option<Duration> {
        if !self.established {
            Some(self.connect_deadline())
        } else {
            self.opts.max_time.map(|m| self.started + m)
        }
    }
}

/// curl's request headers after `Host:`.
const CURL_HEADERS: &str = "\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

/// The client's socket buffers: a 64 KiB receive window (as advertised in every SYN and
/// ACK), room for the request line and headers.
const CLIENT_RX: usize = 65536;
const CLIENT_TX: usize = 4096;

/// Keep a socket taken out of the set (Closed or TIME-WAIT) for the next request: its
/// `connect` resets every connection field (smoltcp's `Socket::reset`), so a reused socket
/// behaves like a new one without allocating and zeroing its 68 KiB of buffers again.
fn keep_spare(spare: &mut Vec<tcp::Socket<'static>>, s: smoltcp::socket::Socket<'static>) {
    if let smoltcp::socket::Socket::Tcp(t) = s {
        if !t.is_open() {
            spare.push(t);
        }
    }
}

/// The curl-like client.
pub(super) struct CurlClient {
    /// The host's addresses (IPv4, and IPv6 on a dual-stack host).
    ips: Vec<IpAddr>,
    shared: ClientHandle,
    active: Vec<Active>,
    closing: Vec<SocketHandle>,
    /// Sockets of finished requests, out of the set, reused by the next ones.
    spare: Vec<tcp::Socket<'static>>,
    rng: ChaCha8Rng,
    recent_ports: RecentPorts,
}

/// The last [`RecentPorts::KEEP`] source ports handed out, oldest first, with a bit per
/// port so that checking one is O(1) (it was a scan of the 4096 per request).
struct RecentPorts {
    order: VecDeque<u16>,
    bits: Vec<u64>,
}

impl RecentPorts {
    const KEEP: usize = 4096;

    fn new() -> Self {
        RecentPorts {
            order: VecDeque::new(),
            bits: vec![0; 65536 / 64],
        }
    }
    fn bit(p: u16) -> (usize, u64) {
        (usize::from(p) / 64, 1 << (p % 64))
    }
    fn contains(&self, p: u16) -> bool {
        let (w, b) = Self::bit(p);
        self.bits[w] & b != 0
    }
    /// Remember `p` (not already in), forgetting the oldest beyond [`Self::KEEP`].
    fn push(&mut self, p: u16) {
        let (w, b) = Self::bit(p);
        self.bits[w] |= b;
        self.order.push_back(p);
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                let (w, b) = Self::bit(old);
                self.bits[w] &= !b;
            }
        }
    }
}

/// (status, body, headers) of a complete response.
type Parsed = (u16, String, Vec<(String, String)>);

/// Parse a response: (status, body, headers) once complete (`Content-Length` bytes of
/// body, or everything up to `eof` without one). Checked after every segment, so nothing
/// is allocated until the response is complete.
fn parse_http(buf: &[u8], eof: bool) -> Option<Parsed> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = resp.parse(buf) else {
        return None;
    };
    let status = resp.code.unwrap_or(0);
    let cl = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let body = &buf[n..];
    let body = match cl {
        Some(len) if body.len() >= len => &body[..len],
        None if eof => body,
        _ => return None,
    };
    let headers = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Some((status, String::from_utf8_lossy(body).into_owned(), headers))
}

/// How a request ended, as [`CurlClient::step`] finds it.
struct Ending {
    kind: OutcomeKind,
    status: Option<u16>,
    body: String,
    headers: Vec<(String, String)>,
    /// curl's error line (empty on success).
    message: String,
    /// Close the connection (FIN); else drop the socket without a word.
    graceful: bool,
}

impl Ending {
    fn failed(kind: OutcomeKind, message: String, graceful: bool) -> Option<Ending> {
        Some(Ending {
            kind,
            status: None,
            body: String::new(),
            headers: Vec::new(),
            message,
            graceful,
        })
    }
}

impl CurlClient {
    /// A client at `ips` whose source ports come from `seed`; the handle starts requests.
    pub(super) fn new(ips: Vec<IpAddr>, seed: u64) -> (CurlClient, ClientHandle) {
        let shared = ClientHandle::default();
        let client = CurlClient {
            ips,
            shared: shared.clone(),
            active: Vec::new(),
            closing: Vec::new(),
            spare: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            recent_ports: RecentPorts::new(),
        };
        (client, shared)
    }

    /// Requests queued and not picked up yet.
    pub(super) fn has_starts(&self) -> bool {
        self.shared.has_starts()
    }

    fn pick_port(&mut self) -> u16 {
        loop {
            let p: u16 = self.rng.random_range(32768..=60999);
            if !self.recent_ports.contains(p) && self.active.iter().all(|a| a.port != p) {
                self.recent_ports.push(p);
                return p;
            }
        }
    }

    pub(super) fn deadline(&self) -> Option<Duration> {
        self.active.iter().filter_map(|a| a.deadline()).min()
    }

    /// Model `tcp_syn_retries`: smoltcp keeps retransmitting SYNs (its backoff caps at
    /// 60 s); Linux sends the first SYN and 6 retransmits (0, 1, 3, 7, 15, 31, 63 s) and
    /// then waits for the connect timeout. Returns false for a SYN to swallow. Only
    /// connections not established send SYNs: with none of those, nothing is inspected.
    pub(super) fn allow_tx(&mut self, pkt: &[u8]) -> bool {
        if self.active.iter().all(|a| a.established) {
            return true;
        }
        let Ok(s) = packet::summarize(pkt) else {
            return true;
        };
        if s.tuple.proto != PROTO_TCP || s.flags != "S" {
            return true;
        }
        match self
            .active
            .iter_mut()
            .find(|a| a.port == s.tuple.sport && a.dst == s.tuple.dst_addr())
        {
            Some(a) => {
                a.syns += 1;
                a.syns <= SYN_RETRIES + 1
            }
            None => true,
        }
    }

    /// ICMP destination unreachable for one of our SYNs (`s`, a datagram the host
    /// received): connection refused.
    pub(super) fn on_icmp(&mut self, s: &packet::Summary) {
        let Some((_, sport, dst)) = crate::udp::unreachable_quoting(s, PROTO_TCP, &self.ips) else {
            return;
        };
        for a in &mut self.active {
            if sport == a.port && dst == a.dst && !a.established {
                a.refused = true;
            }
        }
    }

    pub(super) fn service(
        &mut self,
        now: Duration,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let mut changed = false;
        // Sockets that finished: out of the set once closed, kept for the next request.
        let spare = &mut self.spare;
        self.closing.retain(|h| {
            let st = sockets.get::<tcp::Socket>(*h).state();
            if matches!(st, tcp::State::Closed | tcp::State::TimeWait) {
                keep_spare(spare, sockets.remove(*h));
                false
            } else {
                true
            }
        });
        // New requests.
        let starts: Vec<_> = self
            .shared
            .0
            .lock()
            .expect("poisoned")
            .starts
            .drain(..)
            .collect();
        for (id, dst, opts, started) in starts {
            let port = self.pick_port();
            let mut s = self
                .spare
                .pop()
                .unwrap_or_else(|| tcp_socket(CLIENT_RX, CLIENT_TX));
            let res = s.connect(
                iface.context(),
                IpEndpoint::new(IpAddress::from(dst.ip()), dst.port()),
                port,
            );
            let handle = sockets.add(s);
            self.shared
                .0
                .lock()
                .expect("poisoned")
                .ports
                .insert(id, port);
            let mut a = Active {
                id,
                dst,
                opts,
                started,
                port,
                handle,
                established: false,
                sent: false,
                refused: false,
                buf: Vec::new(),
                syns: 0,
            };
            if res.is_err() {
                a.refused = true;
            }
            self.active.push(a);
            changed = true;
        }
        // Progress and outcomes.
        let mut i = 0;
        while i < self.active.len() {
            if let Some(end) = self.step(i, now, sockets) {
                let a = self.active.swap_remove(i);
                let s = sockets.get_mut::<tcp::Socket>(a.handle);
                if end.graceful {
                    s.close();
                    self.closing.push(a.handle);
                } else {
                    // Like close(2) on a socket that never connected: nothing on the wire
                    // (out of the set before it is polled again, so its abort sends nothing).
                    let mut s = sockets.remove(a.handle);
                    if let smoltcp::socket::Socket::Tcp(t) = &mut s {
                        t.abort();
                    }
                    keep_spare(&mut self.spare, s);
                }
                let out = RequestOutcome {
                    kind: end.kind,
                    status: end.status,
                    body: end.body,
                    elapsed: now.saturating_sub(a.started),
                    started_at: a.started,
                    client_port: a.port,
                    dst: a.dst,
                    message: end.message,
                    headers: end.headers,
                };
                self.shared.finish(a.id, out);
                changed = true;
            } else {
                i += 1;
            }
        }
        changed
    }

    #[allow(clippy::type_complexity)]
    fn step(
        &mut self,
        i: usize,
        now: Duration,
        sockets: &mut SocketSet<'static>,
    ) -> Option<Ending> {
        let a = &mut self.active[i];
        let s = sockets.get_mut::<tcp::Socket>(a.handle);
        let ms = now.saturating_sub(a.started).as_millis();
        let (ip, port) = (a.dst.ip(), a.dst.port());
        let refused = || {
            let msg = format!(
                "curl: (7) Failed to connect to {ip} port {port} after {ms} ms: Connection refused"
            );
            Ending::failed(OutcomeKind::Refused, msg, false)
        };
        if a.refused {
            return refused();
        }
        let st = s.state();
        if !a.established {
            match st {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    if now >= a.connect_deadline() {
                        return Ending::failed(
                            OutcomeKind::Timeout,
                            format!("curl: (28) Failed to connect to {ip} port {port} after {ms} ms: Timeout was reached"),
                            false,
                        );
                    }
                    return None;
                }
                tcp::State::Closed | tcp::State::Listen => return refused(),
                _ => a.established = true,
            }
        }
        if !a.sent && s.can_send() {
            let path = &a.opts.path;
            let req = match &a.opts.host {
                Some(host) => format!("GET {path} HTTP/1.1\r\nHost: {host}{CURL_HEADERS}"),
                None => format!("GET {path} HTTP/1.1\r\nHost: {ip}:{port}{CURL_HEADERS}"),
            };
            let _ = s.send_slice(req.as_bytes());
            a.sent = true;
        }
        while s.can_recv() {
            let buf = &mut a.buf;
            let _ = s.recv(|d| {
                buf.extend_from_slice(d);
                (d.len(), ())
            });
        }
        let eof = !s.may_recv() && s.state() != tcp::State::Established;
        if let Some((status, body, headers)) = parse_http(&a.buf, eof) {
            return Some(Ending {
                kind: OutcomeKind::Ok,
                status: Some(status),
                body,
                headers,
                message: String::new(),
                graceful: true,
            });
        }
        if st == tcp::State::Closed {
            return Ending::failed(
                OutcomeKind::Reset,
                "curl: (56) Recv failure: Connection reset by peer".into(),
                false,
            );
        }
        if eof {
            return Ending::failed(
                OutcomeKind::EmptyReply,
                "curl: (52) Empty reply from server".into(),
                true,
            );
        }
        if let Some(m) = a.opts.max_time {
            if now >= a.started + m {
                return Ending::failed(
                    OutcomeKind::Timeout,
                    format!(
                        "curl: (28) Operation timed out after {ms} milliseconds with {} bytes received",
                        a.buf.len()
                    ),
                    false,
                );
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let cl = || vec![("Content-Length".to_string(), "3".to_string())];
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_http(r, false), Some((200, "abc".into(), cl())));
        assert_eq!(parse_http(&r[..r.len() - 1], false), None);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(parse_http(r, false), Some((200, "abc".into(), cl())));
        let r = b"HTTP/1.1 200 OK\r\n\r\nab";
        assert_eq!(parse_http(r, false), None);
        assert_eq!(parse_http(r, true), Some((200, "ab".into(), vec![])));
    }
}
