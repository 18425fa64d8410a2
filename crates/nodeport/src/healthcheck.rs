//! healthCheckNodePort answers (spec §4.2) and kube-proxy's `/healthz` `/livez` (§4.4).
//!
//! Owns the exact shape of the answers (status, headers, JSON body as kube-proxy prints it);
//! the [`crate::proxier::Proxier`] supplies the counts and health state. No sockets here.

use std::time::Duration;

use crate::model::ServiceRef;

/// An HTTP answer, ready to serialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HealthResponse {
    /// `status` with `body` of `content_type`, and the `nosniff` header Go's handlers add.
    fn new(status: u16, content_type: &str, body: String) -> Self {
        HealthResponse {
            status,
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("X-Content-Type-Options".into(), "nosniff".into()),
            ],
            body,
        }
    }
}

impl HealthResponse {
    /// The status line's reason phrase.
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            404 => "Not Found",
            503 => "Service Unavailable",
            _ => "",
        }
    }

    /// Header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A complete HTTP/1.1 response (headers in order, then `Content-Length`).
    pub fn to_http_bytes(&self) -> Vec<u8> {
        let mut s = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason());
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut out = s.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Go `%q` for the simple strings Kubernetes names are made of (JSON-compatible quoting).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The per-Service health-check answer (`service_health.go`): 200 iff `local_endpoints != 0`
/// and the proxy is healthy, else 503; tab-indented JSON, no trailing newline.
pub fn service_response(
    service: &ServiceRef,
    local_endpoints: usize,
    proxy_healthy: bool,
) -> HealthResponse {
    let status = if local_endpoints != 0 && proxy_healthy {
        200
    } else {
        503
    };
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        quote(&service.namespace),
        quote(&service.name),
        local_endpoints,
        proxy_healthy
    );
    let mut r = HealthResponse::new(status, "application/json", body);
    r.headers.push((
        "X-Load-Balancing-Endpoint-Weight".into(),
        local_endpoints.to_string(),
    ));
    r
}

/// Go's `http.NotFound`.
pub fn not_found() -> HealthResponse {
    HealthResponse::new(
        404,
        "text/plain; charset=utf-8",
        "404 page not found\n".into(),
    )
}

/// kube-proxy's `/healthz` (`healthz = true`) or `/livez` answer.
pub fn proxy_response(
    now: Duration,
    last_updated: Option<Duration>,
    healthy: bool,
    healthz: bool,
) -> HealthResponse {
    let status = if healthy { 200 } else { 503 };
    // On 200, lastUpdated is reported as "now" for backward compatibility (§4.4).
    let last = if healthy { Some(now) } else { last_updated };
    let last_s = last.map(rfc3339).unwrap_or_else(|| rfc3339(Duration::ZERO));
    let mut body = format!(
        "{{\"lastUpdated\": {:?}, \"currentTime\": {:?}",
        last_s,
        rfc3339(now)
    );
    if healthz {
        body.push_str(", \"nodeEligible\": true");
    }
    body.push_str(&format!(
        ", \"healthy\": {healthy}, \"status\": {{\"IPv4\": {{\"lastUpdated\": {:?}, \"healthy\": {healthy}}}}}}}",
        last_s
    ));
    HealthResponse::new(status, "application/json", body)
}

/// `now` (an offset from the Unix epoch, by convention) as an RFC 3339 UTC timestamp.
pub fn rfc3339(t: Duration) -> String {
    let secs = t.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_tab_indented_like_kube_proxy() {
        let r = service_response(&ServiceRef::new("default", "nginx"), 2, true);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"nginx\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["localEndpoints"], 2);
        assert_eq!(r.header("x-load-balancing-endpoint-weight"), Some("2"));
        let http = String::from_utf8(r.to_http_bytes()).unwrap();
        assert!(http.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(http.contains(&format!("Content-Length: {}\r\n", r.body.len())));
    }

    #[test]
    fn rfc3339_epoch_math() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Duration::from_secs(1_764_000_000)),
            "2025-11-24T16:00:00Z"
        );
    }
}
