//! `lab app …` (hidden): the pod apps of real mode that are not nginx (agnhost netexec and
//! serve-hostname, any other image's HTTP server), with real sockets in the pod's namespace.
//! What each app answers comes from the embedded models ([`sim::apps::answer_request`],
//! [`sim::apps::answer_udp`]): one definition for both modes. Started by
//! [`host::app::AppProc`]: binds every socket as root, writes the ready file, drops to
//! `nobody`, then serves (one thread per listener and per connection), logging each request
//! in nginx's `main` format with the address its socket saw.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sim::apps::http::{answer_request, raw_access, KEEPALIVE_TIMEOUT};
use sim::apps::udp::udp_access;
use sim::apps::{answer_udp, main_line, Access, AppDesc, AppKind, ServerInfo};
use sim::WallClock;

/// Real time as the embedded models read it: a wall clock at the Unix epoch.
const CLOCK: WallClock = WallClock { base_unix: 0 };

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The peer as logged: an IPv4-mapped IPv6 address (a dual-stack socket) as IPv4, a real
/// IPv6 peer as it is.
fn v4(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(ip.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// One running app: who it is and where it logs.
struct App {
    info: ServerInfo,
    kind: AppKind,
    log: Mutex<File>,
}

impl App {
    fn log(&self, peer: SocketAddr, access: &Access) {
        let line = main_line(&CLOCK, now(), peer, access);
        if let Ok(mut f) = self.log.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// A dual-stack socket on `[::]:port` (`IPV6_V6ONLY` off), as a Go server listening on
/// `:port` (agnhost) has in a pod with IPv6: IPv4 peers arrive as `::ffff:a.b.c.d` and are
/// logged as `a.b.c.d` ([`v4`]), IPv6 peers as they are.
fn dual_socket(port: u16, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV6, ty, None)?;
    s.set_only_v6(false)?;
    if ty == socket2::Type::STREAM {
        // std's TcpListener::bind sets it too (a restarted app rebinds at once).
        s.set_reuse_address(true)?;
    }
    s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
    if ty == socket2::Type::STREAM {
        s.listen(128)?;
    }
    Ok(s)
}

/// Bind every socket of `desc` (`dual`: a pod with IPv6, one dual-stack socket per port;
/// else IPv4 ones), write `ready`, drop root, serve until killed.
pub fn run(
    info: ServerInfo,
    desc: &AppDesc,
    dual: bool,
    log: &Path,
    ready: &Path,
) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let bind = |p: &u16| {
        let l = match dual {
            true => dual_socket(*p, socket2::Type::STREAM).map(TcpListener::from),
            false => TcpListener::bind((Ipv4Addr::UNSPECIFIED, *p)),
        };
        l.with_context(|| format!("bind {p}/TCP"))
    };
    let http: Vec<TcpListener> = desc.http_ports.iter().map(bind).collect::<Result<_, _>>()?;
    let raw: Vec<TcpListener> = desc
        .raw_tcp_ports
        .iter()
        .map(bind)
        .collect::<Result<_, _>>()?;
    let udp: Vec<UdpSocket> = desc
        .udp_ports
        .iter()
        .map(|p| {
            let s = match dual {
                true => dual_socket(*p, socket2::Type::DGRAM).map(UdpSocket::from),
                false => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, *p)),
            };
            s.with_context(|| format!("bind {p}/UDP"))
        })
        .collect::<Result<_, _>>()?;
    std::fs::write(ready, "").with_context(|| format!("write {}", ready.display()))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        host::identity::Identity::unprivileged()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .drop_privileges()
            .context("drop privileges")?;
    }
    let app = Arc::new(App {
        info,
        kind: desc.kind,
        log: Mutex::new(file),
    });
    let mut threads = Vec::new();
    for l in http {
        let app = app.clone();
        threads.push(std::thread::spawn(move || accept(l, app, http_conn)));
    }
    for l in raw {
        let app = app.clone();
        threads.push(std::thread::spawn(move || accept(l, app, raw_conn)));
    }
    for s in udp {
        let app = app.clone();
        threads.push(std::thread::spawn(move || udp_loop(s, app)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn accept(l: TcpListener, app: Arc<App>, conn: fn(TcpStream, SocketAddr, &App)) {
    for s in l.incoming().flatten() {
        let Ok(peer) = s.peer_addr() else { continue };
        let app = app.clone();
        std::thread::spawn(move || conn(s, v4(peer), &app));
    }
}

/// HTTP/1.1 with keep-alive: answer every request until the client closes (curl does,
/// first), asks for `Connection: close`, or stays idle for `keepalive_timeout`.
fn http_conn(mut s: TcpStream, peer: SocketAddr, app: &App) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(KEEPALIVE_TIMEOUT));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut eof = false;
    loop {
        if !buf.is_empty() || eof {
            if buf.is_empty() {
                return;
            }
            let t = now();
            match answer_request(app.kind, &app.info, &CLOCK, t, peer, &buf, eof) {
                Some(a) => {
                    buf.drain(..a.consumed);
                    let sent = s.write_all(&a.bytes).is_ok();
                    app.log(peer, &a.access);
                    if a.close || !sent {
                        return;
                    }
                    continue;
                }
                None if eof => return,
                None => {}
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return, // keepalive_timeout or reset
        }
    }
}

/// serve-hostname `--tcp`: the hostname, then close.
fn raw_conn(mut s: TcpStream, peer: SocketAddr, app: &App) {
    let body = app.info.pod.as_bytes();
    let _ = s.write_all(body);
    app.log(peer, &raw_access(body.len()));
}

fn udp_loop(s: UdpSocket, app: Arc<App>) {
    let mut buf = [0u8; 2048];
    while let Ok((n, peer)) = s.recv_from(&mut buf) {
        // The answer goes back to the address as the socket saw it (mapped on a dual one).
        let from = v4(peer);
        let text = &buf[..n];
        let answer = answer_udp(app.kind, &app.info, text, from);
        let sent = answer
            .as_ref()
            .is_some_and(|a| s.send_to(a.as_bytes(), peer).is_ok());
        app.log(from, &udp_access(text, answer.as_deref(), sent));
    }
}

/// Who the app is (every model).
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Pod name (the hostname the app reports).
    #[arg(long)]
    pub pod: String,
    #[arg(long)]
    pub node: String,
    #[arg(long)]
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address (dual-stack lab): the app then listens on both families.
    #[arg(long)]
    pub ipv6: Option<Ipv6Addr>,
    /// Access log (nginx's `main` format).
    #[arg(long)]
    pub log: std::path::PathBuf,
    /// Written once every socket is bound.
    #[arg(long)]
    pub ready: std::path::PathBuf,
}

/// `lab app <model>`: the models of [`cluster::AppSpec`] that are not nginx.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AppCommand {
    /// agnhost netexec.
    Netexec {
        #[arg(long, default_value_t = cluster::apps::NETEXEC_HTTP_PORT)]
        http_port: u16,
        /// -1 = no UDP server.
        #[arg(long, default_value_t = cluster::apps::NETEXEC_UDP_PORT as i32, allow_negative_numbers = true)]
        udp_port: i32,
        #[command(flatten)]
        common: Common,
    },
    /// agnhost serve-hostname.
    ServeHostname {
        #[arg(long, default_value_t = cluster::apps::SERVE_HOSTNAME_PORT)]
        port: u16,
        #[arg(long, action = clap::ArgAction::Set, default_value_t = false)]
        udp: bool,
        #[arg(long, action = clap::ArgAction::Set, default_value_t = false)]
        tcp: bool,
        #[arg(long, action = clap::ArgAction::Set, default_value_t = true)]
        http: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Any other image: HTTP on every `--port`, datagrams answered on every `--udp-port`.
    Http {
        #[arg(long)]
        port: Vec<u16>,
        #[arg(long)]
        udp_port: Vec<u16>,
        #[command(flatten)]
        common: Common,
    },
}

/// Run `lab app …`.
pub fn main(cmd: AppCommand) -> anyhow::Result<()> {
    let (spec, c) = match cmd {
        AppCommand::Netexec {
            http_port,
            udp_port,
            common,
        } => {
            let udp_port = u16::try_from(udp_port).ok().filter(|p| *p > 0);
            let spec = cluster::AppSpec::Netexec {
                http_port,
                udp_port,
            };
            (spec, common)
        }
        AppCommand::ServeHostname {
            port,
            udp,
            tcp,
            http,
            common,
        } => (
            cluster::AppSpec::ServeHostname {
                port,
                udp,
                tcp,
                http,
            },
            common,
        ),
        AppCommand::Http {
            port,
            udp_port,
            common,
        } => (
            cluster::AppSpec::GenericHttp {
                ports: port,
                udp_ports: udp_port,
            },
            common,
        ),
    };
    let info = ServerInfo {
        pod: c.pod,
        node: c.node,
        ip: c.ip,
    };
    let dual = c.ipv6.is_some();
    run(info, &crate::setup::app_desc(&spec), dual, &c.log, &c.ready)
}

/// What real mode starts for a container's app: nginx itself, or `lab app …` with the
/// arguments [`main`] reads back.
pub fn pod_app(a: &cluster::AppSpec, p: &cluster::Pod) -> host::lab::PodApp {
    use cluster::AppSpec;
    let mut args: Vec<String> = match a {
        AppSpec::Nginx { ports } => {
            return host::lab::PodApp::Nginx {
                ports: ports.clone(),
            }
        }
        AppSpec::Netexec {
            http_port,
            udp_port,
        } => vec![
            "netexec".into(),
            format!("--http-port={http_port}"),
            format!("--udp-port={}", udp_port.map_or(-1, i32::from)),
        ],
        AppSpec::ServeHostname {
            port,
            udp,
            tcp,
            http,
        } => vec![
            "serve-hostname".into(),
            format!("--port={port}"),
            format!("--udp={udp}"),
            format!("--tcp={tcp}"),
            format!("--http={http}"),
        ],
        AppSpec::GenericHttp { ports, udp_ports } => {
            let mut v = vec!["http".to_string()];
            v.extend(ports.iter().map(|p| format!("--port={p}")));
            v.extend(udp_ports.iter().map(|p| format!("--udp-port={p}")));
            v
        }
    };
    args.extend([
        format!("--pod={}", p.name),
        format!("--node={}", p.node),
        format!("--ip={}", p.ip),
    ]);
    if let Some(v6) = p.ipv6 {
        args.push(format!("--ipv6={v6}"));
    }
    host::lab::PodApp::Lab { args }
}
