//! The apps a pod's embedded host runs: which app ([`AppKind`]), where it listens
//! ([`AppDesc`]), and [`Apps`], the set of servers on the host's smoltcp stack.
//!
//! - [`http`]: a TCP server on one port: HTTP/1.1 with keep-alive like nginx and Go's
//!   net/http, answering through the app's responder (or serve-hostname's raw `--tcp`);
//! - [`udp`]: a UDP server on one port, answering through the app's command handler;
//! - [`nginx`], [`netexec`], [`serve_hostname`]: what each app answers;
//! - [`log`]: the access log every app writes in nginx's `main` format.
//!
//! A port nobody listens on is left to smoltcp: a SYN draws an RST, a datagram an ICMP port
//! unreachable, as from Linux. [`Apps::stop`] closes every socket (an app that exited) and
//! [`Apps::start`] listens again.

pub mod http;
pub mod log;
pub mod netexec;
pub mod nginx;
pub mod serve_hostname;
pub mod udp;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smoltcp::iface::SocketSet;

use crate::clock::WallClock;
pub use http::{HttpRequest, HttpResponse};
use http::{TcpApp, TcpServer};
pub use log::{main_line, Access, AccessJournal, AccessLog, AccessLogEntry};
use udp::UdpServer;

/// Which app a container runs (chosen from its image and args by the `cluster` crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppKind {
    /// `nginx*` images: the pod line on `/`, nginx's 404 page elsewhere.
    Nginx,
    /// `agnhost netexec`: `/`, `/clientip`, `/hostname`, `/echo?msg=`; UDP `hostname`,
    /// `echo <text>`, `clientip`.
    Netexec,
    /// `agnhost serve-hostname`: the hostname over HTTP, raw TCP or UDP.
    ServeHostname,
    /// Any other image: an HTTP server answering the pod line on every path.
    GenericHttp,
}

/// One container's app and the ports it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDesc {
    pub kind: AppKind,
    /// TCP ports serving HTTP.
    pub http_ports: Vec<u16>,
    /// TCP ports that write the answer and close (serve-hostname `--tcp`).
    pub raw_tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

impl AppDesc {
    /// nginx on one TCP port.
    pub fn nginx(port: u16) -> AppDesc {
        AppDesc {
            kind: AppKind::Nginx,
            http_ports: vec![port],
            raw_tcp_ports: Vec::new(),
            udp_ports: Vec::new(),
        }
    }
}

/// What an app says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub pod: String,
    pub node: String,
    pub ip: Ipv4Addr,
}

/// What every responder may use.
pub(crate) struct AppCtx<'a> {
    pub info: &'a ServerInfo,
    pub clock: &'a WallClock,
    pub log: &'a AccessLog,
}

/// The HTTP answer of `kind` to a request (shared with real mode's `lab app`: one
/// definition of what each app says).
pub fn answer_http(
    kind: AppKind,
    info: &ServerInfo,
    clock: &WallClock,
    now: Duration,
    req: &HttpRequest,
) -> HttpResponse {
    match kind {
        AppKind::Nginx => nginx::respond(info, req),
        AppKind::Netexec => netexec::respond(info, clock, now, req),
        AppKind::ServeHostname => serve_hostname::respond(info),
        AppKind::GenericHttp => nginx::generic(info),
    }
}

/// The UDP answer of `kind` to a datagram (`None`: no answer): netexec's commands, the
/// hostname for serve-hostname `--udp` and every other app.
pub fn answer_udp(
    kind: AppKind,
    info: &ServerInfo,
    text: &[u8],
    from: SocketAddr,
) -> Option<String> {
    match kind {
        AppKind::Netexec => netexec::udp_answer(info, text, from),
        _ => Some(info.pod.clone()),
    }
}

/// The world's handle to start and stop a pod's apps (shared with the host behind
/// `Box<dyn Port>`; the host applies the change on its next poll).
#[derive(Debug, Clone)]
pub struct AppsHandle(Arc<AtomicBool>);

impl Default for AppsHandle {
    fn default() -> Self {
        AppsHandle(Arc::new(AtomicBool::new(true)))
    }
}

impl AppsHandle {
    /// Ask for the apps to run (`true`) or to be stopped.
    pub fn set_running(&self, running: bool) {
        self.0.store(running, Ordering::Relaxed);
    }
    pub fn wants_running(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every server of a host's apps.
pub(crate) struct Apps {
    info: ServerInfo,
    clock: WallClock,
    log: AccessLog,
    tcp: Vec<TcpServer>,
    udp: Vec<UdpServer>,
    running: bool,
    handle: AppsHandle,
}

impl Apps {
    /// The servers of `apps` (listening at once).
    pub fn new(
        info: ServerInfo,
        clock: WallClock,
        apps: &[AppDesc],
        sockets: &mut SocketSet<'static>,
    ) -> Apps {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for a in apps {
            let http = a.http_ports.iter().map(|&p| (p, TcpApp::Http(a.kind)));
            let raw = a.raw_tcp_ports.iter().map(|&p| (p, TcpApp::Hostname));
            tcp.extend(http.chain(raw).map(|(p, app)| TcpServer::new(p, app)));
            udp.extend(a.udp_ports.iter().map(|&p| UdpServer::new(p, a.kind)));
        }
        let mut apps = Apps {
            info,
            clock,
            log: AccessLog::default(),
            tcp,
            udp,
            running: false,
            handle: AppsHandle::default(),
        };
        apps.start(sockets);
        apps
    }

    pub fn log(&self) -> AccessLog {
        self.log.clone()
    }
    pub fn handle(&self) -> AppsHandle {
        self.handle.clone()
    }
    pub fn running(&self) -> bool {
        self.running
    }
    /// The handle asks for a change not applied yet.
    pub fn change_pending(&self) -> bool {
        self.handle.wants_running() != self.running
    }

    /// Listen on every port (again).
    pub fn start(&mut self, sockets: &mut SocketSet<'static>) {
        if self.running {
            return;
        }
        self.running = true;
        self.tcp.iter_mut().for_each(|s| s.start(sockets));
        self.udp.iter_mut().for_each(|s| s.start(sockets));
    }

    /// The app exited: every socket closes (open connections are reset), so new SYNs draw
    /// an RST and datagrams an ICMP port unreachable from the stack.
    pub fn stop(&mut self, sockets: &mut SocketSet<'static>) {
        if !self.running {
            return;
        }
        self.running = false;
        self.tcp.iter_mut().for_each(|s| s.stop(sockets));
        self.udp.iter_mut().for_each(|s| s.stop(sockets));
    }

    /// Follow the world's [`AppsHandle`]; true when that changed something.
    pub fn apply_handle(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let want = self.handle.wants_running();
        if want == self.running {
            return false;
        }
        if want {
            self.start(sockets);
        } else {
            self.stop(sockets);
        }
        true
    }

    /// A SYN from `from` to `port` is about to reach the stack with `queued` other datagrams:
    /// false when it is a retransmission for a connection already half-open (Linux answers
    /// from the request socket; smoltcp would open a second one), else make sure enough
    /// sockets listen for every SYN that may be queued with it.
    pub fn on_syn(
        &mut self,
        sockets: &mut SocketSet<'static>,
        from: SocketAddr,
        port: u16,
        queued: usize,
    ) -> bool {
        if !self.running {
            return true;
        }
        match self.tcp.iter_mut().find(|s| s.port == port) {
            Some(s) if s.half_open(sockets, from) => false,
            Some(s) => {
                s.ensure_listeners(sockets, queued + 1);
                true
            }
            None => true,
        }
    }

    /// Serve every socket; true when something changed (poll the stack again).
    pub fn serve(&mut self, now: Duration, sockets: &mut SocketSet<'static>) -> bool {
        let ctx = AppCtx {
            info: &self.info,
            clock: &self.clock,
            log: &self.log,
        };
        let mut changed = false;
        for s in &mut self.tcp {
            changed |= s.serve(now, sockets, &ctx);
        }
        for s in &mut self.udp {
            changed |= s.serve(now, sockets, &ctx);
        }
        changed
    }

    /// The next keep-alive timeout.
    pub fn deadline(&self) -> Option<Duration> {
        self.tcp.iter().filter_map(TcpServer::deadline).min()
    }
}
