//! agnhost `netexec` (kubernetes/kubernetes test/images/agnhost/netexec/netexec.go): HTTP on
//! `--http-port` (8080) and UDP on `--udp-port` (8081).
//!
//! HTTP: `/` → `NOW: <time>`, `/clientip` → the `ip:port` the server saw (Go's
//! `r.RemoteAddr`), `/hostname` and `/hostName` → the hostname (the pod name), `/echo?msg=X`
//! → X, `/healthz` → 200; anything else falls to `/` as in Go's ServeMux. UDP: the datagram
//! is trimmed and lower-cased, then `hostname` → the hostname, `echo <text>` → text,
//! `clientip` → `ip:port`; anything else gets no answer.

use std::net::SocketAddr;
use std::time::Duration;

use super::http::{HttpRequest, HttpResponse};
use super::ServerInfo;
use crate::clock::WallClock;

/// netexec's default `--http-port`.
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// netexec's default `--udp-port`.
pub const DEFAULT_UDP_PORT: u16 = 8081;

fn ok(body: String) -> HttpResponse {
    HttpResponse {
        status: 200,
        reason: "OK",
        body,
        content_type: "text/plain; charset=utf-8",
        server: None,
        keepalive_header: false,
    }
}

pub(crate) fn respond(
    info: &ServerInfo,
    clock: &WallClock,
    now: Duration,
    req: &HttpRequest,
) -> HttpResponse {
    let (path, query) = req.path.split_once('?').unwrap_or((req.path, ""));
    match path {
        "/clientip" => ok(req.remote.to_string()),
        "/hostname" | "/hostName" => ok(info.pod.clone()),
        "/echo" => ok(query_value(query, "msg").unwrap_or_default()),
        "/healthz" => ok(String::new()),
        _ => ok(format!("NOW: {}", clock.time_local(now))),
    }
}

/// The (percent-decoded) value of `key` in a query string.
fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// netexec's UDP server: the answer to one datagram.
pub(crate) fn udp_answer(info: &ServerInfo, text: &[u8], from: SocketAddr) -> Option<String> {
    let cmd = String::from_utf8_lossy(text).trim().to_lowercase();
    if cmd == "hostname" {
        Some(info.pod.clone())
    } else if let Some(rest) = cmd.strip_prefix("echo ") {
        Some(rest.to_string())
    } else if cmd == "clientip" {
        Some(from.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ServerInfo {
        ServerInfo {
            pod: "web-1".into(),
            node: "n1".into(),
            ip: "10.244.1.5".parse().unwrap(),
        }
    }

    #[test]
    fn udp_commands_like_agnhost() {
        let from: SocketAddr = "10.151.30.11:40000".parse().unwrap();
        assert_eq!(
            udp_answer(&info(), b"hostname\n", from).as_deref(),
            Some("web-1")
        );
        assert_eq!(
            udp_answer(&info(), b"HostName", from).as_deref(),
            Some("web-1")
        );
        assert_eq!(
            udp_answer(&info(), b"echo Hi There", from).as_deref(),
            Some("hi there")
        );
        assert_eq!(
            udp_answer(&info(), b"clientip", from).as_deref(),
            Some("10.151.30.11:40000")
        );
        assert_eq!(udp_answer(&info(), b"what", from), None);
    }

    #[test]
    fn echo_query_is_decoded() {
        assert_eq!(
            query_value("msg=a%20b+c&x=1", "msg").as_deref(),
            Some("a b c")
        );
        assert_eq!(query_value("x=1", "msg"), None);
        assert_eq!(query_value("msg=%zz%4", "msg").as_deref(), Some("%zz%4"));
    }
}
