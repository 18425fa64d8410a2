//! healthCheckNodePort answers (spec §4.2) and kube-proxy's `/healthz` `/livez` (§4.4).

/// An HTTP answer, ready to serialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}
