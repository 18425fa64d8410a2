//! agnhost `serve-hostname`: the pod's hostname (its name) over HTTP on every path, over raw
//! TCP (`--tcp`: write it and close, see `http::TcpApp::Hostname`) or over UDP (`--udp`: to
//! any datagram). Port 9376 by default. Go's net/http: no `Server:` header.

use super::http::HttpResponse;
use super::ServerInfo;

/// serve-hostname's default `--port`.
pub const DEFAULT_PORT: u16 = 9376;

pub(crate) fn respond(info: &ServerInfo) -> HttpResponse {
    HttpResponse {
        status: 200,
        reason: "OK",
        body: info.pod.clone(),
        content_type: "text/plain; charset=utf-8",
        server: None,
        keepalive_header: false,
    }
}
