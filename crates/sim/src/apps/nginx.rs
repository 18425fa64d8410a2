//! nginx's answers (the lab's nginx pods serve one line naming the pod on `/`), and the
//! generic HTTP app any other image runs.

use super::http::{HttpRequest, HttpResponse};
use super::ServerInfo;

/// nginx's built-in 404 page.
const NOT_FOUND: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn pod_line(info: &ServerInfo) -> String {
    format!("pod {} on {} ({})\n", info.pod, info.node, info.ip)
}

fn text(status: u16, reason: &'static str, body: String) -> HttpResponse {
    HttpResponse {
        status,
        reason,
        body,
        content_type: "text/plain",
        server: Some("nginx"),
        keepalive_header: true,
    }
}

/// nginx: the pod line on `/` and `/index.html`, the 404 page elsewhere.
pub(crate) fn respond(info: &ServerInfo, req: &HttpRequest) -> HttpResponse {
    match req.path {
        "/" | "/index.html" => text(200, "OK", pod_line(info)),
        _ => text(404, "Not Found", NOT_FOUND.to_string()),
    }
}

/// Any other image: the pod line on every path (no `Server:` header: not nginx).
pub(crate) fn generic(info: &ServerInfo) -> HttpResponse {
    HttpResponse {
        server: None,
        ..text(200, "OK", pod_line(info))
    }
}
