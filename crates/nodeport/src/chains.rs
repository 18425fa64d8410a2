//! kube-proxy's chain names and the record of a chain walk.
//!
//! Owns the naming scheme (`KUBE-SVC-<hash>` …, `pkg/proxy/iptables/proxier.go`
//! `portProtoHash` / `servicePortEndpointChainName`) and the [`ChainWalk`] trace type. It does
//! not decide anything: the [`crate::proxier`] records the steps it takes.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

/// nat KUBE-SERVICES.
pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
/// nat KUBE-NODEPORTS.
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
/// nat KUBE-MARK-MASQ.
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
/// nat KUBE-POSTROUTING.
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
/// filter KUBE-EXTERNAL-SERVICES.
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
/// The masquerade mark (`masqueradeBit` 14).
pub const MASQ_MARK: u32 = 0x4000;

/// One rule traversed: `-A <chain> … -j <target>` in `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStep {
    /// "nat" or "filter".
    pub table: &'static str,
    /// e.g. "KUBE-NODEPORTS", "KUBE-EXT-X27LE4BHSL4DOUIK".
    pub chain: String,
    /// The rule's match and comment, human readable (e.g. `--dport 32761 "default/nginx"`).
    pub rule: String,
    /// The target jumped to (chain name, "DNAT --to-destination 10.244.1.16:80", "DROP", …).
    pub target: String,
}

/// The ordered list of rules a packet traversed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainWalk {
    pub steps: Vec<ChainStep>,
}

impl ChainWalk {
    /// Append a step.
    pub fn push(
        &mut self,
        table: &'static str,
        chain: impl Into<String>,
        rule: impl Into<String>,
        target: impl Into<String>,
    ) {
        self.steps.push(ChainStep {
            table,
            chain: chain.into(),
            rule: rule.into(),
            target: target.into(),
        });
    }

    /// Whether any step jumped to `target`.
    pub fn has_target(&self, target: &str) -> bool {
        self.steps.iter().any(|s| s.target == target)
    }

    /// Whether any step is in `chain`.
    pub fn has_chain(&self, chain: &str) -> bool {
        self.steps.iter().any(|s| s.chain == chain)
    }
}

/// `KUBE-SVC-`/`KUBE-EXT-`/… + 16 chars of base32(sha256(input)), as kube-proxy names chains.
pub fn chain_name(prefix: &str, input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let encoded = BASE32.encode(&digest);
    format!("{prefix}{}", &encoded[..16])
}

/// kube-proxy's `ServicePortName.String()`: `ns/svc:port` (`ns/svc` for an unnamed port).
pub fn service_port_name(namespace: &str, name: &str, port_name: &str) -> String {
    if port_name.is_empty() {
        format!("{namespace}/{name}")
    } else {
        format!("{namespace}/{name}:{port_name}")
    }
}

/// The 16-character hash shared by KUBE-SVC/SVL/EXT/FW chains of a service port
/// (`portProtoHash(servicePortName, protocol)`; protocol lower case).
pub fn port_proto_hash(service_port_name: &str, protocol_lower: &str) -> String {
    chain_name("", &format!("{service_port_name}{protocol_lower}"))
}

/// `KUBE-SEP-<hash>`: `servicePortEndpointChainName(servicePortName, protocol, "ip:port")`.
pub fn endpoint_chain_name(
    service_port_name: &str,
    protocol_lower: &str,
    endpoint: &str,
) -> String {
    chain_name(
        "KUBE-SEP-",
        &format!("{service_port_name}{protocol_lower}{endpoint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kube_proxy_fixture() {
        let h = port_proto_hash(&service_port_name("ns3", "svc3", "p80"), "tcp");
        assert_eq!(format!("KUBE-EXT-{h}"), "KUBE-EXT-X27LE4BHSL4DOUIK");
        let h = port_proto_hash(&service_port_name("ns2", "svc2", "p80"), "tcp");
        assert_eq!(h, "GNZBNJ2PO5MGZ6GT");
        assert_eq!(
            chain_name("KUBE-SVC-", "ns2/svc2:p80tcp"),
            "KUBE-SVC-GNZBNJ2PO5MGZ6GT"
        );
    }

    #[test]
    fn unnamed_port_has_no_colon() {
        assert_eq!(service_port_name("default", "nginx", ""), "default/nginx");
    }
}
