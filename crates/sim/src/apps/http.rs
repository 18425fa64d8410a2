//! A TCP server on one port of a pod: a pool of smoltcp sockets, HTTP/1.1 with keep-alive
//! like nginx (`keepalive_timeout 65`) and Go's net/http: the connection stays open after a
//! response unless the client asked for `Connection: close` (or spoke HTTP/1.0 without
//! keep-alive); the server closes when the client does (curl closes first, so TIME-WAIT
//! sits on the client) or after 65 s idle. A raw mode (serve-hostname `--tcp`) writes the
//! answer and closes.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::log::Access;
use super::{answer_http, AppCtx, AppKind, ServerInfo};
use crate::clock::WallClock;
use crate::host::tcp_socket;

/// nginx's `keepalive_timeout` default.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(65);

/// At most this many connections at once per port (nginx's listen backlog, scaled down).
const SERVER_POOL: usize = 16;

/// A parsed request, as responders see it.
pub struct HttpRequest<'a> {
    /// The request target (path and query).
    pub path: &'a str,
    /// The peer address the socket saw.
    pub remote: SocketAddr,
}

/// A responder's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: &'static str,
    pub body: String,
    pub content_type: &'static str,
    /// `Server:` header (nginx sends one, Go's net/http none).
    pub server: Option<&'static str>,
    /// Send `Connection: keep-alive` on kept connections (nginx does, Go does not).
    pub keepalive_header: bool,
}

/// What the server on a port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpApp {
    Http(AppKind),
    /// Write the pod's hostname and close (serve-hostname `--tcp`).
    Hostname,
}

struct Slot {
    handle: SocketHandle,
    buf: Vec<u8>,
    /// The server closed its side (waits for the socket to finish).
    closing: bool,
    /// Established and waiting for a request since.
    idle_since: Option<Duration>,
}

impl Slot {
    fn listening(port: u16, sockets: &mut SocketSet<'static>) -> Slot {
        let mut s = tcp_socket(8192, 8192);
        let _ = s.listen(port);
        Slot {
            handle: sockets.add(s),
            buf: Vec::new(),
            closing: false,
            idle_since: None,
        }
    }
}

pub(crate) struct TcpServer {
    pub port: u16,
    app: TcpApp,
    slots: Vec<Slot>,
    /// Aborted sockets whose RST has not been polled out yet.
    dead: Vec<SocketHandle>,
}

fn remote(s: &tcp::Socket) -> SocketAddr {
    match s.remote_endpoint() {
        Some(IpEndpoint { addr, port }) => SocketAddr::new(addr.into(), port),
        None => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
    }
}

impl TcpServer {
    pub fn new(port: u16, app: TcpApp) -> TcpServer {
        TcpServer {
            port,
            app,
            slots: Vec::new(),
            dead: Vec::new(),
        }
    }

    pub fn start(&mut self, sockets: &mut SocketSet<'static>) {
        self.ensure_listeners(sockets, 1);
    }

    /// Close every socket, like the kernel when the app exits: listeners go away (a SYN
    /// then draws the stack's RST) and open connections are reset. An aborted socket sends
    /// its RST on the next poll, so it is kept aside until then ([`TcpServer::reap`]).
    pub fn stop(&mut self, sockets: &mut SocketSet<'static>) {
        for slot in self.slots.drain(..) {
            let s = sockets.get_mut::<tcp::Socket>(slot.handle);
            if matches!(s.state(), tcp::State::Listen | tcp::State::Closed) {
                sockets.remove(slot.handle);
            } else {
                s.abort();
                self.dead.push(slot.handle);
            }
        }
    }

    /// Grow the pool (in slot order, up to [`SERVER_POOL`]) until at least `wanted` sockets
    /// listen. A SYN goes to the first listening socket in slot order, and the slots never
    /// created are exactly the ones that would still be listening, so creating them only
    /// when the datagrams queued for the stack could need them hands every SYN to the same
    /// slot (and keeps 16 listeners' buffers per port off the heap).
    pub fn ensure_listeners(&mut self, sockets: &mut SocketSet<'static>, wanted: usize) {
        let mut listening = self
            .slots
            .iter()
            .filter(|sl| sockets.get::<tcp::Socket>(sl.handle).state() == tcp::State::Listen)
            .count();
        while listening < wanted && self.slots.len() < SERVER_POOL {
            self.slots.push(Slot::listening(self.port, sockets));
            listening += 1;
        }
    }

    /// A socket of the pool is half-open with `from`.
    pub fn half_open(&self, sockets: &SocketSet<'static>, from: SocketAddr) -> bool {
        let from = IpEndpoint::new(IpAddress::from(from.ip()), from.port());
        self.slots.iter().any(|sl| {
            let sock = sockets.get::<tcp::Socket>(sl.handle);
            sock.state() == tcp::State::SynReceived && sock.remote_endpoint() == Some(from)
        })
    }

    /// The next keep-alive timeout of an idle connection.
    pub fn deadline(&self) -> Option<Duration> {
        self.slots
            .iter()
            .filter(|s| !s.closing)
            .filter_map(|s| s.idle_since.map(|t| t + KEEPALIVE_TIMEOUT))
            .min()
    }

    /// Drop the sockets [`TcpServer::stop`] aborted (the stack polled since: RSTs are out).
    fn reap(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let reaped = !self.dead.is_empty();
        for h in self.dead.drain(..) {
            sockets.remove(h);
        }
        reaped
    }

    pub fn serve(&mut self, now: Duration, sockets: &mut SocketSet<'static>, ctx: &AppCtx) -> bool {
        let mut changed = self.reap(sockets);
        for i in 0..self.slots.len() {
            let h = self.slots[i].handle;
            let st = sockets.get::<tcp::Socket>(h).state();
            if st == tcp::State::TimeWait {
                // The listening socket of a real server is not held up by TIME-WAIT: replace
                // the finished connection's socket with a fresh listener (silently).
                sockets.remove(h);
                self.slots[i] = Slot::listening(self.port, sockets);
                continue;
            }
            let s = sockets.get_mut::<tcp::Socket>(h);
            if !s.is_open() {
                let slot = &mut self.slots[i];
                slot.buf.clear();
                slot.closing = false;
                slot.idle_since = None;
                let _ = s.listen(self.port);
                continue;
            }
            if matches!(st, tcp::State::Listen | tcp::State::SynReceived) {
                continue;
            }
            changed |= match self.app {
                TcpApp::Http(kind) => serve_http(&mut self.slots[i], s, kind, now, ctx),
                TcpApp::Hostname => serve_raw(&mut self.slots[i], s, now, ctx),
            };
        }
        changed
    }
}

/// One step of an HTTP connection; true when it changed something.
fn serve_http(
    slot: &mut Slot,
    s: &mut tcp::Socket,
    kind: AppKind,
    now: Duration,
    ctx: &AppCtx,
) -> bool {
    let idle = *slot.idle_since.get_or_insert(now);
    while s.can_recv() {
        let buf = &mut slot.buf;
        let _ = s.recv(|d| {
            buf.extend_from_slice(d);
            (d.len(), ())
        });
    }
    if slot.closing {
        return false;
    }
    if slot.buf.is_empty() {
        // The client closed (nginx reads EOF and closes), or keepalive_timeout expired.
        if !s.may_recv() || now >= idle + KEEPALIVE_TIMEOUT {
            s.close();
            slot.closing = true;
            return true;
        }
        return false;
    }
    let peer = remote(s);
    let Some(a) = answer_request(
        kind,
        ctx.info,
        ctx.clock,
        now,
        peer,
        &slot.buf,
        !s.may_recv(),
    ) else {
        return false;
    };
    slot.buf.drain(..a.consumed);
    let (bytes, close, access) = (a.bytes, a.close, a.access);
    let _ = s.send_slice(&bytes);
    if close {
        s.close();
        slot.closing = true;
    }
    slot.idle_since = Some(now);
    ctx.log.record(ctx.clock, now, peer, access);
    true
}

/// One request answered off the front of a connection's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// Request bytes used (the rest is the next, pipelined request).
    pub consumed: usize,
    /// The response on the wire.
    pub bytes: Vec<u8>,
    /// Close the connection after sending it.
    pub close: bool,
    /// The access-log entry.
    pub access: Access,
}

/// The answer of app `kind` to the request at the front of `buf` (shared with real mode's
/// `lab app`): `None` while the request is incomplete and more bytes may come (`eof`
/// false); a request that cannot be parsed (or is cut off by `eof`) gets nginx's 400 and the
/// connection closes.
pub fn answer_request(
    kind: AppKind,
    info: &ServerInfo,
    clock: &WallClock,
    now: Duration,
    peer: SocketAddr,
    buf: &[u8],
    eof: bool,
) -> Option<Answered> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let (access, bytes, close) = http_answer(&req, peer, kind, info, clock, now);
            Some(Answered {
                consumed: n,
                bytes,
                close,
                access,
            })
        }
        Ok(httparse::Status::Partial) if !eof => None,
        _ => {
            let (access, bytes, close) = bad_request(clock, now);
            Some(Answered {
                consumed: buf.len(),
                bytes,
                close,
                access,
            })
        }
    }
}

/// The response bytes to a parsed request, its access-log entry and whether to close.
fn http_answer(
    req: &httparse::Request,
    peer: SocketAddr,
    kind: AppKind,
    info: &ServerInfo,
    clock: &WallClock,
    now: Duration,
) -> (Access, Vec<u8>, bool) {
    let method = req.method.unwrap_or("GET");
    let path = req.path.unwrap_or("/");
    let http10 = req.version == Some(0);
    let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let hdr = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let close = wants_close(http10, hdr("Connection").as_deref());
    let req = HttpRequest { path, remote: peer };
    let resp = answer_http(kind, info, clock, now, &req);
    let bytes = response_bytes(&resp, clock, now, close);
    let access = Access {
        request: format!("{method} {path} {version}"),
        status: resp.status,
        body_bytes_sent: resp.body.len(),
        referer: hdr("Referer"),
        user_agent: hdr("User-Agent"),
        forwarded_for: hdr("X-Forwarded-For"),
    };
    (access, bytes, close)
}

/// nginx's answer to a request it cannot parse: 400, then close.
fn bad_request(clock: &WallClock, now: Duration) -> (Access, Vec<u8>, bool) {
    let resp = HttpResponse {
        status: 400,
        reason: "Bad Request",
        body: String::new(),
        content_type: "text/plain",
        server: Some("nginx"),
        keepalive_header: true,
    };
    let access = Access {
        status: 400,
        ..Access::default()
    };
    (access, response_bytes(&resp, clock, now, true), true)
}

/// Whether the server closes after answering: the client asked (`Connection: close`), or
/// spoke HTTP/1.0 without asking for keep-alive.
pub fn wants_close(http10: bool, connection: Option<&str>) -> bool {
    let conn = connection.unwrap_or_default().to_ascii_lowercase();
    conn.contains("close") || (http10 && !conn.contains("keep-alive"))
}

/// The response on the wire: status line, headers (`Server:` if the app sends one, `Date`,
/// `Content-Type`, `Content-Length`, `Connection`), body.
pub fn response_bytes(
    resp: &HttpResponse,
    clock: &WallClock,
    now: Duration,
    close: bool,
) -> Vec<u8> {
    let server = resp
        .server
        .map(|s| format!("Server: {s}\r\n"))
        .unwrap_or_default();
    let connection = if close {
        "Connection: close\r\n"
    } else if resp.keepalive_header {
        "Connection: keep-alive\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\n{server}Date: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{connection}\r\n",
        resp.status,
        resp.reason,
        clock.http_date(now),
        resp.content_type,
        resp.body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(resp.body.as_bytes());
    bytes
}

/// The access-log entry of a raw TCP answer (serve-hostname `--tcp`).
pub fn raw_access(body_bytes_sent: usize) -> Access {
    Access {
        request: "TCP".into(),
        status: 200,
        body_bytes_sent,
        ..Access::default()
    }
}

/// serve-hostname `--tcp`: the hostname, then close.
fn serve_raw(slot: &mut Slot, s: &mut tcp::Socket, now: Duration, ctx: &AppCtx) -> bool {
    if slot.closing || !s.can_send() {
        return false;
    }
    let body = ctx.info.pod.clone();
    let _ = s.send_slice(body.as_bytes());
    s.close();
    slot.closing = true;
    ctx.log
        .record(ctx.clock, now, remote(s), raw_access(body.len()));
    true
}
