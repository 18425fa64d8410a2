//! Embedded hosts: one smoltcp `Interface` (`Medium::Ip`, queue-backed device) per pod or
//! client, running an nginx-like HTTP server and/or a curl-like HTTP client. A [`Host`] is a
//! [`vswitch::Port`], so the world treats it exactly like a TUN device in real mode.
//!
//! State the world needs to read (access logs, request outcomes) is shared through
//! [`AccessLog`] and [`ClientHandle`]; the host itself stays behind `Box<dyn Port>`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use nodestack::device::{duration, instant, QueueDevice};
use vswitch::packet::{self, PROTO_TCP};
use vswitch::Port;

use crate::clock::WallClock;

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
    pub dst: SocketAddrV4,
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

/// One access-log entry of the nginx-like server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub at: Duration,
    /// `$remote_addr`: the peer address the server's socket saw.
    pub remote_addr: Ipv4Addr,
    pub remote_port: u16,
    pub request: String,
    pub status: u16,
    pub body_bytes_sent: usize,
    pub user_agent: Option<String>,
    /// The line in nginx's `main` format.
    pub line: String,
}

/// Every access-log line of a world's pods, in the order they were written: (the tag the
/// log was registered with, the entry's index in that log). Appended to, never scanned.
#[derive(Debug, Clone, Default)]
pub struct AccessJournal(Arc<Mutex<Vec<(usize, usize)>>>);

impl AccessJournal {
    pub fn len(&self) -> usize {
        self.0.lock().expect("poisoned").len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The (tag, index) pairs from position `mark` on.
    pub fn since(&self, mark: usize) -> Vec<(usize, usize)> {
        let j = self.0.lock().expect("poisoned");
        j.get(mark..).map(<[_]>::to_vec).unwrap_or_default()
    }
    fn push(&self, tag: usize, index: usize) {
        self.0.lock().expect("poisoned").push((tag, index));
    }
}

#[derive(Debug, Default)]
struct LogInner {
    entries: Vec<AccessLogEntry>,
    journal: Option<(AccessJournal, usize)>,
}

/// Shared view of a server's access log.
#[derive(Debug, Clone, Default)]
pub struct AccessLog(Arc<Mutex<LogInner>>);

impl AccessLog {
    pub fn entries(&self) -> Vec<AccessLogEntry> {
        self.0.lock().expect("poisoned").entries.clone()
    }
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("poisoned")
            .entries
            .iter()
            .map(|e| e.line.clone())
            .collect()
    }
    pub fn len(&self) -> usize {
        self.0.lock().expect("poisoned").entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Entry `i` (0 = the first line).
    pub fn get(&self, i: usize) -> Option<AccessLogEntry> {
        self.0.lock().expect("poisoned").entries.get(i).cloned()
    }
    /// The latest entry.
    pub fn last(&self) -> Option<AccessLogEntry> {
        self.0.lock().expect("poisoned").entries.last().cloned()
    }
    /// Also note every new line in `journal`, tagged `tag`.
    pub fn set_journal(&self, journal: AccessJournal, tag: usize) {
        self.0.lock().expect("poisoned").journal = Some((journal, tag));
    }
    fn push(&self, e: AccessLogEntry) {
        let mut log = self.0.lock().expect("poisoned");
        log.entries.push(e);
        if let Some((j, tag)) = &log.journal {
            j.push(*tag, log.entries.len() - 1);
        }
    }
}

/// What the nginx-like server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub pod: String,
    pub node: String,
    pub ip: Ipv4Addr,
}

fn dash(v: Option<&str>) -> &str {
    match v {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    }
}

/// The nginx-like HTTP/1.1 server on :80 (`Connection: close`).
struct NginxServer {
    info: ServerInfo,
    clock: WallClock,
    port: u16,
    slots: Vec<(SocketHandle, Vec<u8>, bool)>,
    log: AccessLog,
}

/// At most this many connections at once (nginx's listen backlog, scaled down).
const SERVER_POOL: usize = 16;

fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    s
}

impl NginxServer {
    fn new(info: ServerInfo, clock: WallClock, sockets: &mut SocketSet<'static>) -> Self {
        let mut srv = NginxServer {
            info,
            clock,
            port: 80,
            slots: Vec::new(),
            log: AccessLog::default(),
        };
        srv.ensure_listeners(sockets, 1);
        srv
    }

    /// Grow the pool (in slot order, up to [`SERVER_POOL`]) until at least `wanted` sockets
    /// listen. The pool used to be 16 listeners from the start (256 KiB of buffers per pod);
    /// a SYN goes to the first listening socket in slot order, and the slots never created
    /// are exactly the ones that would still be listening, so creating them only when the
    /// datagrams queued for the stack could need them hands every SYN to the same slot.
    fn ensure_listeners(&mut self, sockets: &mut SocketSet<'static>, wanted: usize) {
        let mut listening = self
            .slots
            .iter()
            .filter(|(h, _, _)| sockets.get::<tcp::Socket>(*h).state() == tcp::State::Listen)
            .count();
        while listening < wanted && self.slots.len() < SERVER_POOL {
            let mut s = tcp_socket(8192, 8192);
            let _ = s.listen(self.port);
            self.slots.push((sockets.add(s), Vec::new(), false));
            listening += 1;
        }
    }

    fn respond(&self, now: Duration, path: &str) -> (u16, String, &'static str) {
        match path {
            "/" | "/index.html" => (
                200,
                format!(
                    "pod {} on {} ({})\n",
                    self.info.pod, self.info.node, self.info.ip
                ),
                "OK",
            ),
            _ => {
                let _ = now;
                (
                    404,
                    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n".to_string(),
                    "Not Found",
                )
            }
        }
    }

    fn serve(&mut self, now: Duration, sockets: &mut SocketSet<'static>) -> bool {
        let mut changed = false;
        for i in 0..self.slots.len() {
            let h = self.slots[i].0;
            let st = sockets.get::<tcp::Socket>(h).state();
            if st == tcp::State::TimeWait {
                // The listening socket of a real server is not held up by TIME-WAIT: replace
                // the finished connection's socket with a fresh listener (silently).
                sockets.remove(h);
                let mut s = tcp_socket(8192, 8192);
                let _ = s.listen(self.port);
                self.slots[i] = (sockets.add(s), Vec::new(), false);
                continue;
            }
            let s = sockets.get_mut::<tcp::Socket>(h);
            if !s.is_open() {
                self.slots[i].1.clear();
                self.slots[i].2 = false;
                let _ = s.listen(self.port);
                continue;
            }
            if s.can_recv() {
                let buf = &mut self.slots[i].1;
                let _ = s.recv(|d| {
                    buf.extend_from_slice(d);
                    (d.len(), ())
                });
            }
            if self.slots[i].2 || self.slots[i].1.is_empty() {
                if !self.slots[i].2 && !s.may_recv() && s.state() == tcp::State::CloseWait {
                    s.close();
                    changed = true;
                }
                continue;
            }
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let parsed = req.parse(&self.slots[i].1);
            let (status, body, reason, request, ua, referer, xff) = match parsed {
                Ok(httparse::Status::Complete(_)) => {
                    let method = req.method.unwrap_or("GET");
                    let path = req.path.unwrap_or("/");
                    let version = if req.version == Some(0) {
                        "HTTP/1.0"
                    } else {
                        "HTTP/1.1"
                    };
                    let hdr = |name: &str| {
                        req.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    };
                    let (status, body, reason) = self.respond(now, path);
                    (
                        status,
                        body,
                        reason,
                        format!("{method} {path} {version}"),
                        hdr("User-Agent"),
                        hdr("Referer"),
                        hdr("X-Forwarded-For"),
                    )
                }
                Ok(httparse::Status::Partial) => continue,
                Err(_) => (
                    400,
                    String::new(),
                    "Bad Request",
                    String::new(),
                    None,
                    None,
                    None,
                ),
            };
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nServer: nginx\r\nDate: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.clock.http_date(now),
                body.len()
            );
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            let _ = s.send_slice(&bytes);
            s.close();
            let (raddr, rport) = match s.remote_endpoint() {
                Some(IpEndpoint {
                    addr: IpAddress::Ipv4(a),
                    port,
                }) => (a, port),
                _ => (Ipv4Addr::UNSPECIFIED, 0),
            };
            let line = format!(
                "{raddr} - - [{}] \"{}\" {status} {} \"{}\" \"{}\" \"{}\"",
                self.clock.time_local(now),
                dash(Some(&request)),
                body.len(),
                dash(referer.as_deref()),
                dash(ua.as_deref()),
                dash(xff.as_deref()),
            );
            self.log.push(AccessLogEntry {
                at: now,
                remote_addr: raddr,
                remote_port: rport,
                request,
                status,
                body_bytes_sent: body.len(),
                user_agent: ua,
                line,
            });
            self.slots[i].2 = true;
            changed = true;
        }
        changed
    }
}

/// Requests queued by the world and outcomes reported back.
#[derive(Debug, Default)]
struct ClientShared {
    starts: VecDeque<(RequestId, SocketAddrV4, RequestOpts, Duration)>,
    outcomes: HashMap<RequestId, RequestOutcome>,
    ports: HashMap<RequestId, u16>,
}

/// The world's handle on an embedded curl client.
#[derive(Debug, Clone, Default)]
pub struct ClientHandle(Arc<Mutex<ClientShared>>);

impl ClientHandle {
    pub(crate) fn start(&self, id: RequestId, dst: SocketAddrV4, opts: RequestOpts, now: Duration) {
        self.0
            .lock()
            .expect("poisoned")
            .starts
            .push_back((id, dst, opts, now));
    }
    pub fn outcome(&self, id: RequestId) -> Option<RequestOutcome> {
        self.0.lock().expect("poisoned").outcomes.get(&id).cloned()
    }
    /// The source port the request uses (known once the client picked it up).
    pub fn client_port(&self, id: RequestId) -> Option<u16> {
        self.0.lock().expect("poisoned").ports.get(&id).copied()
    }
    fn has_starts(&self) -> bool {
        !self.0.lock().expect("poisoned").starts.is_empty()
    }
}

struct Active {
    id: RequestId,
    dst: SocketAddrV4,
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
struct CurlClient {
    ip: Ipv4Addr,
    shared: ClientHandle,
    active: Vec<Active>,
    closing: Vec<SocketHandle>,
    /// Sockets of finished requests, out of the set, reused by the next ones.
    spare: Vec<tcp::Socket<'static>>,
    rng: ChaCha8Rng,
    recent_ports: VecDeque<u16>,
}

/// Parse a complete response: (status, body) once complete.
fn parse_response(buf: &[u8], eof: bool) -> Option<(u16, String)> {
    parse_http(buf, eof, false).map(|(s, b, _)| (s, b))
}

/// (status, body, headers) of a complete response.
type Parsed = (u16, String, Vec<(String, String)>);

/// Parse a complete response: (status, body, headers) once complete.
fn parse_response_full(buf: &[u8], eof: bool) -> Option<Parsed> {
    parse_http(buf, eof, true)
}

/// [`parse_response_full`]; the header list only `with_headers` (the per-segment
/// completeness check needs none: no allocation per header there).
fn parse_http(buf: &[u8], eof: bool, with_headers: bool) -> Option<Parsed> {
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
    let headers = resp
        .headers
        .iter()
        .filter(|_| with_headers)
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let body = &buf[n..];
    match cl {
        Some(len) if body.len() >= len => Some((
            status,
            String::from_utf8_lossy(&body[..len]).into_owned(),
            headers,
        )),
        None if eof => Some((status, String::from_utf8_lossy(body).into_owned(), headers)),
        _ => None,
    }
}

impl CurlClient {
    fn pick_port(&mut self) -> u16 {
        loop {
            let p: u16 = self.rng.random_range(32768..=60999);
            if !self.recent_ports.contains(&p) && self.active.iter().all(|a| a.port != p) {
                self.recent_ports.push_back(p);
                if self.recent_ports.len() > 4096 {
                    self.recent_ports.pop_front();
                }
                return p;
            }
        }
    }

    fn deadline(&self) -> Option<Duration> {
        self.active.iter().filter_map(|a| a.deadline()).min()
    }

    /// Model `tcp_syn_retries`: smoltcp keeps retransmitting SYNs (its backoff caps at
    /// 60 s); Linux sends the first SYN and 6 retransmits (0, 1, 3, 7, 15, 31, 63 s) and
    /// then waits for the connect timeout. Returns false for a SYN to swallow.
    fn allow_tx(&mut self, pkt: &[u8]) -> bool {
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

    /// ICMP destination unreachable for one of our SYNs: connection refused.
    fn on_icmp(&mut self, pkt: &[u8]) {
        let Ok(s) = packet::summarize(pkt) else {
            return;
        };
        if s.icmp.map(|(t, _)| t) != Some(3) {
            return;
        }
        let Some(inner) = s.inner else { return };
        for a in &mut self.active {
            if inner.proto == PROTO_TCP
                && inner.src == self.ip
                && inner.sport == a.port
                && inner.dst_addr() == a.dst
                && !a.established
            {
                a.refused = true;
            }
        }
    }

    fn service(
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
                IpEndpoint::new(IpAddress::Ipv4(*dst.ip()), dst.port()),
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
            let outcome = self.step(i, now, sockets);
            if let Some((kind, status, body, message, graceful)) = outcome {
                let headers = if kind == OutcomeKind::Ok {
                    parse_response_full(&self.active[i].buf, true)
                        .map(|(_, _, h)| h)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let a = self.active.swap_remove(i);
                let s = sockets.get_mut::<tcp::Socket>(a.handle);
                if graceful {
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
                    kind,
                    status,
                    body,
                    elapsed: now.saturating_sub(a.started),
                    started_at: a.started,
                    client_port: a.port,
                    dst: a.dst,
                    message,
                    headers,
                };
                self.shared
                    .0
                    .lock()
                    .expect("poisoned")
                    .outcomes
                    .insert(a.id, out);
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
    ) -> Option<(OutcomeKind, Option<u16>, String, String, bool)> {
        let a = &mut self.active[i];
        let s = sockets.get_mut::<tcp::Socket>(a.handle);
        let ms = now.saturating_sub(a.started).as_millis();
        let (ip, port) = (a.dst.ip(), a.dst.port());
        let refused = || {
            let msg = format!(
                "curl: (7) Failed to connect to {ip} port {port} after {ms} ms: Connection refused"
            );
            Some((OutcomeKind::Refused, None, String::new(), msg, false))
        };
        if a.refused {
            return refused();
        }
        let st = s.state();
        if !a.established {
            match st {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    if now >= a.connect_deadline() {
                        return Some((
                            OutcomeKind::Timeout,
                            None,
                            String::new(),
                            format!("curl: (28) Failed to connect to {ip} port {port} after {ms} ms: Timeout was reached"),
                            false,
                        ));
                    }
                    return None;
                }
                tcp::State::Closed | tcp::State::Listen => return refused(),
                _ => a.established = true,
            }
        }
        if !a.sent && s.can_send() {
            let host = a
                .opts
                .host
                .clone()
                .unwrap_or_else(|| format!("{ip}:{port}"));
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
                a.opts.path
            );
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
        if let Some((status, body)) = parse_response(&a.buf, eof) {
            return Some((OutcomeKind::Ok, Some(status), body, String::new(), true));
        }
        if st == tcp::State::Closed {
            return Some((
                OutcomeKind::Reset,
                None,
                String::new(),
                "curl: (56) Recv failure: Connection reset by peer".into(),
                false,
            ));
        }
        if eof {
            return Some((
                OutcomeKind::EmptyReply,
                None,
                String::new(),
                "curl: (52) Empty reply from server".into(),
                true,
            ));
        }
        if let Some(m) = a.opts.max_time {
            if now >= a.started + m {
                return Some((
                    OutcomeKind::Timeout,
                    None,
                    String::new(),
                    format!(
                        "curl: (28) Operation timed out after {ms} milliseconds with {} bytes received",
                        a.buf.len()
                    ),
                    false,
                ));
            }
        }
        None
    }
}

/// How to build a [`Host`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Link name for traces (e.g. `ydzs-node1/cni0/nginx-…`).
    pub link: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// Seeds smoltcp (ISNs) and the client's source-port choice.
    pub seed: u64,
}

/// A host on its own smoltcp stack.
pub struct Host {
    link: String,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    server: Option<NginxServer>,
    client: Option<CurlClient>,
    dirty: bool,
    next_poll: Option<Duration>,
    /// Datagrams that could not be parsed when inspected (still handed to smoltcp).
    pub malformed: u64,
}

impl Host {
    pub fn new(cfg: HostConfig, now: Duration) -> Host {
        let mut dev = QueueDevice::new(1500);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = cfg.seed;
        let mut iface = Interface::new(config, &mut dev, instant(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix_len));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway);
        Host {
            link: cfg.link,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            server: None,
            client: None,
            dirty: true,
            next_poll: None,
            malformed: 0,
        }
    }

    /// Run the nginx-like server on :80; returns its access log.
    pub fn with_server(&mut self, info: ServerInfo, clock: WallClock) -> AccessLog {
        let srv = NginxServer::new(info, clock, &mut self.sockets);
        let log = srv.log.clone();
        self.server = Some(srv);
        self.dirty = true;
        log
    }

    /// Run the curl-like client; returns the handle to start requests and read outcomes.
    pub fn with_client(&mut self, ip: Ipv4Addr, seed: u64) -> ClientHandle {
        let shared = ClientHandle::default();
        self.client = Some(CurlClient {
            ip,
            shared: shared.clone(),
            active: Vec::new(),
            closing: Vec::new(),
            spare: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            recent_ports: VecDeque::new(),
        });
        shared
    }

    fn service(&mut self, now: Duration) {
        let at = instant(now);
        for _ in 0..64 {
            self.iface.poll(at, &mut self.dev, &mut self.sockets);
            let mut changed = false;
            if let Some(srv) = &mut self.server {
                changed |= srv.serve(now, &mut self.sockets);
            }
            if let Some(cl) = &mut self.client {
                changed |= cl.service(now, &mut self.iface, &mut self.sockets);
            }
            if !changed {
                break;
            }
        }
        let stack = self.iface.poll_at(at, &self.sockets).map(duration);
        let app = self.client.as_ref().and_then(|c| c.deadline());
        self.next_poll = match (stack, app) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

impl Port for Host {
    fn name(&self) -> &str {
        &self.link
    }
    fn send(&mut self, _now: Duration, pkt: &[u8]) {
        let sum = packet::summarize(pkt);
        if sum.is_err() {
            self.malformed += 1;
        }
        // A retransmitted SYN for a connection a server socket already half-opened: Linux
        // answers from the existing request socket. smoltcp would hand it to another
        // listening socket of the pool (a second half-open connection with another ISN, and
        // the client's ACK then draws an RST from the first), so leave it to the existing
        // socket, which retransmits its SYN-ACK on its own timer.
        if let (Ok(s), Some(srv)) = (&sum, &self.server) {
            if s.tuple.proto == PROTO_TCP && s.flags == "S" && s.tuple.dport == srv.port {
                let from = IpEndpoint::new(IpAddress::Ipv4(s.tuple.src), s.tuple.sport);
                let half_open = srv.slots.iter().any(|(h, _, _)| {
                    let sock = self.sockets.get::<tcp::Socket>(*h);
                    sock.state() == tcp::State::SynReceived && sock.remote_endpoint() == Some(from)
                });
                if half_open {
                    return;
                }
            }
        }
        // Enough listeners for every SYN that may be in the queue with this one.
        if let (Ok(s), Some(srv)) = (&sum, &mut self.server) {
            if s.tuple.proto == PROTO_TCP && s.flags == "S" && s.tuple.dport == srv.port {
                srv.ensure_listeners(&mut self.sockets, self.dev.rx.len() + 1);
            }
        }
        if let Some(c) = &mut self.client {
            c.on_icmp(pkt);
        }
        self.dev.rx.push_back(pkt.to_vec());
        self.dirty = true;
    }
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>> {
        let due = self.next_poll.is_some_and(|t| t <= now);
        let starts = self.client.as_ref().is_some_and(|c| c.shared.has_starts());
        if self.dirty || due || starts {
            self.dirty = false;
            self.service(now);
        }
        loop {
            let pkt = self.dev.tx.pop_front()?;
            let allowed = match &mut self.client {
                Some(c) => c.allow_tx(&pkt),
                None => true,
            };
            if allowed {
                return Some(pkt);
            }
        }
    }
    fn poll_at(&self) -> Option<Duration> {
        if self.dirty {
            return Some(Duration::ZERO);
        }
        self.next_poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_response(r, false), Some((200, "abc".into())));
        assert_eq!(parse_response(&r[..r.len() - 1], false), None);
        let r = b"HTTP/1.1 200 OK\r\n\r\nab";
        assert_eq!(parse_response(r, false), None);
        assert_eq!(parse_response(r, true), Some((200, "ab".into())));
    }
}
