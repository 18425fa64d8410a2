//! Which app a container runs, chosen from its image and args, and where that app listens.
//!
//! In Kubernetes `containerPort` is informational: what answers is the process in the
//! image. The lab models the images it knows:
//! - `nginx*` images: nginx on the container's TCP ports (80 when it declares no TCP port);
//! - `registry.k8s.io/e2e-test-images/agnhost:*` with `args[0]`:
//!   - `netexec`: HTTP on `--http-port` (8080), UDP on `--udp-port` (8081, -1 = off)
//!     (kubernetes/kubernetes test/images/agnhost/netexec/netexec.go);
//!   - `serve-hostname`: the hostname on `--port` (9376) over HTTP (`--http`, default on),
//!     raw TCP (`--tcp`) or UDP (`--udp`); HTTP cannot be combined with the others
//!     (test/images/agnhost/serve-hostname/serve_hostname.go exits);
//! - any other image (or another agnhost subcommand): an HTTP server on the container's
//!   TCP ports (80 when none) that answers datagrams on its UDP ports.

use std::fmt;

use k8s_openapi::api::core::v1::Container;
use nodeport::Protocol;

use crate::error::LabError;
use crate::manifest::ManifestDoc;

/// netexec's default `--http-port` and `--udp-port`; serve-hostname's default `--port`.
pub const NETEXEC_HTTP_PORT: u16 = 8080;
pub const NETEXEC_UDP_PORT: u16 = 8081;
pub const SERVE_HOSTNAME_PORT: u16 = 9376;

/// The app of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSpec {
    /// nginx on these TCP ports.
    Nginx { ports: Vec<u16> },
    /// agnhost netexec; `udp_port: None` = `--udp-port=-1`.
    Netexec {
        http_port: u16,
        udp_port: Option<u16>,
    },
    /// agnhost serve-hostname.
    ServeHostname {
        port: u16,
        udp: bool,
        tcp: bool,
        http: bool,
    },
    /// Any other image: HTTP on the TCP ports, an answer to every datagram on the UDP ports.
    GenericHttp {
        ports: Vec<u16>,
        udp_ports: Vec<u16>,
    },
}

impl AppSpec {
    /// Every (port, protocol) the app listens on.
    pub fn listens(&self) -> Vec<(u16, Protocol)> {
        let tcp = |p: &u16| (*p, Protocol::Tcp);
        let udp = |p: &u16| (*p, Protocol::Udp);
        match self {
            AppSpec::Nginx { ports } => ports.iter().map(tcp).collect(),
            AppSpec::Netexec {
                http_port,
                udp_port,
            } => std::iter::once(tcp(http_port))
                .chain(udp_port.iter().map(udp))
                .collect(),
            AppSpec::ServeHostname {
                port,
                udp: u,
                tcp: t,
                http,
            } => {
                let mut v = Vec::new();
                if *http || *t {
                    v.push(tcp(port));
                }
                if *u {
                    v.push(udp(port));
                }
                v
            }
            AppSpec::GenericHttp { ports, udp_ports } => ports
                .iter()
                .map(tcp)
                .chain(udp_ports.iter().map(udp))
                .collect(),
        }
    }

    /// Whether the app listens on `port`/`proto`.
    pub fn listens_on(&self, port: u16, proto: Protocol) -> bool {
        self.listens().contains(&(port, proto))
    }

    /// The model's name: `nginx`, `agnhost netexec`, `agnhost serve-hostname`, `http`.
    pub fn model(&self) -> &'static str {
        match self {
            AppSpec::Nginx { .. } => "nginx",
            AppSpec::Netexec { .. } => "agnhost netexec",
            AppSpec::ServeHostname { .. } => "agnhost serve-hostname",
            AppSpec::GenericHttp { .. } => "http",
        }
    }
}

/// `nginx :80/TCP`, `agnhost netexec :8080/TCP :8081/UDP`.
impl fmt::Display for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.model())?;
        for (p, proto) in self.listens() {
            write!(f, " :{p}/{proto}")?;
        }
        Ok(())
    }
}

/// The image's repository without registry tag or digest, last path segment.
fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The app of container `ci` of a pod template.
pub fn container_app(doc: &ManifestDoc, ci: usize, c: &Container) -> Result<AppSpec, LabError> {
    let ports = |proto: Protocol| -> Vec<u16> {
        c.ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == proto.to_string())
            .filter_map(|p| u16::try_from(p.container_port).ok())
            .collect()
    };
    let tcp_or_80 = || {
        let t = ports(Protocol::Tcp);
        if t.is_empty() && ports(Protocol::Udp).is_empty() {
            vec![80]
        } else {
            t
        }
    };
    let image = c.image.as_deref().unwrap_or_default();
    let name = image_name(image);
    if name.starts_with("nginx") {
        // nginx listens on 80 unless told otherwise: its TCP ports, or 80 (never UDP).
        let mut ports = ports(Protocol::Tcp);
        if ports.is_empty() {
            ports.push(80);
        }
        return Ok(AppSpec::Nginx { ports });
    }
    if name == "agnhost" {
        // The image's entrypoint is /agnhost: the subcommand is the first arg (or what a
        // `command: [/agnhost, …]` passes).
        let mut argv: Vec<&str> = c.command.iter().flatten().map(String::as_str).collect();
        if argv.first().is_some_and(|a| a.ends_with("agnhost")) {
            argv.remove(0);
        }
        argv.extend(c.args.iter().flatten().map(String::as_str));
        let field = format!("spec.template.spec.containers[{ci}].args");
        match argv.first() {
            Some(&"netexec") => return netexec(doc, &field, &argv[1..]),
            Some(&"serve-hostname") => return serve_hostname(doc, &field, &argv[1..]),
            _ => {}
        }
    }
    Ok(AppSpec::GenericHttp {
        ports: tcp_or_80(),
        udp_ports: ports(Protocol::Udp),
    })
}

/// Go-style flags: `--name=value`, `--name value`, `-name=value`; booleans as `--name`,
/// `--name=true|false`. Returns (name, value) pairs in order.
fn flags<'a>(args: &[&'a str]) -> Vec<(&'a str, Option<&'a str>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].trim_start_matches('-');
        if args[i].starts_with('-') {
            match a.split_once('=') {
                Some((k, v)) => out.push((k, Some(v))),
                None => {
                    let next = args.get(i + 1).filter(|n| !n.starts_with('-')).copied();
                    if next.is_some() {
                        i += 1;
                    }
                    out.push((a, next));
                }
            }
        }
        i += 1;
    }
    out
}

fn int_flag(doc: &ManifestDoc, field: &str, name: &str, v: Option<&str>) -> Result<i64, LabError> {
    v.and_then(|v| v.parse::<i64>().ok()).ok_or_else(|| {
        doc.err(
            field,
            format!("--{name}={} is not a number", v.unwrap_or_default()),
        )
    })
}

fn port_flag(doc: &ManifestDoc, field: &str, name: &str, v: Option<&str>) -> Result<u16, LabError> {
    let n = int_flag(doc, field, name, v)?;
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| doc.err(field, format!("--{name}={n} is not a port (1-65535)")))
}

fn bool_flag(
    doc: &ManifestDoc,
    field: &str,
    name: &str,
    v: Option<&str>,
) -> Result<bool, LabError> {
    match v {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(o) => Err(doc.err(field, format!("--{name}={o} is not true or false"))),
    }
}

fn netexec(doc: &ManifestDoc, field: &str, args: &[&str]) -> Result<AppSpec, LabError> {
    let mut http_port = NETEXEC_HTTP_PORT;
    let mut udp_port = Some(NETEXEC_UDP_PORT);
    for (k, v) in flags(args) {
        match k {
            "http-port" => http_port = port_flag(doc, field, k, v)?,
            "udp-port" if int_flag(doc, field, k, v)? == -1 => udp_port = None,
            "udp-port" => udp_port = Some(port_flag(doc, field, k, v)?),
            _ => {}
        }
    }
    Ok(AppSpec::Netexec {
        http_port,
        udp_port,
    })
}

fn serve_hostname(doc: &ManifestDoc, field: &str, args: &[&str]) -> Result<AppSpec, LabError> {
    let (mut port, mut udp, mut tcp, mut http) = (SERVE_HOSTNAME_PORT, false, false, true);
    for (k, v) in flags(args) {
        match k {
            "port" => port = port_flag(doc, field, k, v)?,
            "udp" => udp = bool_flag(doc, field, k, v)?,
            "tcp" => tcp = bool_flag(doc, field, k, v)?,
            "http" => http = bool_flag(doc, field, k, v)?,
            _ => {}
        }
    }
    if http && (tcp || udp) {
        return Err(doc.err(
            field,
            "agnhost serve-hostname exits: it can't serve TCP/UDP mode and HTTP mode at the same time (add --http=false)",
        ));
    }
    Ok(AppSpec::ServeHostname {
        port,
        udp,
        tcp,
        http,
    })
}

/// One warning per Service port whose target port no app of (some of) its selected pods
/// listens on: the most common reason a user's own Service refuses. Names the Service, the
/// port and what those pods listen on.
pub fn port_warnings(c: &crate::model::Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for svc in &c.services {
        // A dual-stack Service's slices of both families select the same pods: warn once,
        // from its primary family's.
        let primary = svc.ip_families.first().copied().unwrap_or_default();
        for slice in c.slices_of(svc).filter(|s| s.address_type == primary) {
            for ep in &slice.ports {
                let pods: Vec<&crate::model::Pod> = slice
                    .endpoints
                    .iter()
                    .filter_map(|e| c.pod_by_addr(e.ip))
                    .collect();
                let deaf: Vec<&&crate::model::Pod> = pods
                    .iter()
                    .filter(|p| !p.apps.iter().any(|a| a.listens_on(ep.port, ep.protocol)))
                    .collect();
                if deaf.is_empty() {
                    continue;
                }
                let port = svc
                    .ports
                    .iter()
                    .find(|p| p.name == ep.name && p.protocol == ep.protocol)
                    .map_or(String::new(), |p| format!("port {} ", p.port));
                let mut listen: Vec<String> = deaf
                    .iter()
                    .flat_map(|p| p.apps.iter().map(ToString::to_string))
                    .collect();
                listen.dedup();
                let mut names: Vec<&str> = deaf.iter().take(3).map(|p| p.name.as_str()).collect();
                if deaf.len() > 3 {
                    names.push("…");
                }
                out.push(format!(
                    "Service {}/{} {port}→ targetPort {}/{}: nothing listens there on {} of \
                     its {} pods ({}: {}); requests sent to them are refused",
                    svc.namespace,
                    svc.name,
                    ep.port,
                    ep.protocol,
                    deaf.len(),
                    pods.len(),
                    names.join(", "),
                    listen.join(", "),
                ));
            }
        }
    }
    out
}
