//! The raw lab-config schema: what serde reads (strict: unknown fields are errors).
//! Values that take units (durations, rates) stay YAML values until [`crate::units`] reads them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a lab config mapping (seed, nodes, clients, loadBalancer, manifests, plan, ...)"
)]
pub(super) struct RawConfig {
    pub(super) seed: Option<u64>,
    pub(super) node_network: Option<String>,
    pub(super) router: Option<String>,
    /// The node network's IPv6 prefix (default: the first IPv6 node's /64).
    #[serde(rename = "nodeNetworkV6")]
    pub(super) node_network_v6: Option<String>,
    /// The router's IPv6 address (default: the first host of nodeNetworkV6).
    #[serde(rename = "routerV6")]
    pub(super) router_v6: Option<String>,
    /// One CIDR or a dual-stack pair (string `a,b` or list), like kube-proxy's --cluster-cidr.
    #[serde(rename = "clusterCIDR")]
    pub(super) cluster_cidr: Option<Value>,
    /// The Service ClusterIP range(s), like kube-apiserver's --service-cluster-ip-range.
    #[serde(rename = "serviceCIDR")]
    pub(super) service_cidr: Option<Value>,
    pub(super) nodes: Vec<RawNode>,
    #[serde(default)]
    pub(super) clients: Vec<RawClient>,
    pub(super) load_balancer: Option<RawLoadBalancer>,
    #[serde(default)]
    pub(super) manifests: Vec<Value>,
    #[serde(default)]
    pub(super) plan: Vec<RawPlan>,
    #[serde(default)]
    pub(super) links: Vec<RawLink>,
    pub(super) kube_proxy: Option<RawKubeProxy>,
}

/// `kubeProxy:`: kube-proxy's own configuration knobs (KubeProxyConfiguration) and the lab's
/// MASQUERADE what-if.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawKubeProxy {
    pub(super) masquerade_random_fully: Option<bool>,
    pub(super) localhost_node_ports: Option<bool>,
    pub(super) conntrack: Option<RawConntrack>,
    pub(super) sync_delay: Option<Value>,
    pub(super) conntrack_cleanup: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConntrack {
    pub(super) tcp_be_liberal: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLink {
    pub(super) link: String,
    pub(super) delay: Option<Value>,
    pub(super) jitter: Option<Value>,
    pub(super) loss: Option<f64>,
    pub(super) rate: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawScale {
    pub(super) deployment: String,
    pub(super) replicas: i64,
}

/// `crash: {pod: NAME}` or `crash: {deployment: NAME}` (`namespace/` prefix optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawCrash {
    pub(super) pod: Option<String>,
    pub(super) deployment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawNode {
    pub(super) name: String,
    pub(super) ip: String,
    pub(super) ipv6: Option<String>,
    #[serde(rename = "podCIDR")]
    pub(super) pod_cidr: Option<String>,
    /// node.spec.podCIDRs: one per family, `[v4]` or `[v4, v6]` (either order).
    #[serde(rename = "podCIDRs")]
    pub(super) pod_cidrs: Option<Vec<String>>,
    #[serde(default)]
    pub(super) taints: Vec<RawTaint>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) masquerade: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTaint {
    pub(super) key: String,
    pub(super) value: Option<String>,
    pub(super) effect: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawClient {
    pub(super) name: String,
    pub(super) ip: Option<String>,
    pub(super) ipv6: Option<String>,
    pub(super) can_reach: Option<Vec<String>>,
    pub(super) node: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLoadBalancer {
    pub(super) name: Option<String>,
    pub(super) ip: String,
    pub(super) ipv6: Option<String>,
    pub(super) nodes: Option<Vec<String>>,
    pub(super) health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub(super) weighted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawHealthCheck {
    pub(super) interval: Option<Value>,
    pub(super) healthy_threshold: Option<u32>,
    pub(super) unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPlan {
    pub(super) from: Option<String>,
    pub(super) to: Option<String>,
    /// `IPv4` or `IPv6`: which address of the target node / load balancer.
    pub(super) family: Option<String>,
    pub(super) scale: Option<RawScale>,
    pub(super) wait: Option<Value>,
    pub(super) crash: Option<RawCrash>,
    pub(super) service: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) port_name: Option<String>,
    pub(super) count: Option<i64>,
    pub(super) path: Option<String>,
    pub(super) connect_timeout: Option<Value>,
    pub(super) max_time: Option<Value>,
    pub(super) protocol: Option<String>,
    pub(super) payload: Option<String>,
    pub(super) timeout: Option<Value>,
    pub(super) source_port: Option<i64>,
    pub(super) delete: Option<RawDelete>,
}

/// `delete:` a pod by name, or one pod of a Deployment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawDelete {
    pub(super) pod: Option<String>,
    pub(super) deployment: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validated config
// ---------------------------------------------------------------------------------------
