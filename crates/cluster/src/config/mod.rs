//! The lab-config schema (`lab-configs/*.yaml`) and its validation: text → [`LabConfig`].
//!
//! Owns: the YAML schema (strict: unknown fields are errors, see [`raw`]), defaults, and every
//! check that needs only the config itself (names, addresses, CIDRs, plan references to
//! nodes/clients). Checks that need the manifests (services, ports, scheduling) live in
//! [`crate::schedule`]; [`crate::load_cluster`] runs both. The schema is documented in the
//! repository README ("Lab config").
//!
//! One job per submodule: [`nodes`] (networks and nodes), [`clients`] (clients and the load
//! balancer), [`plan`] (requests, `scale`/`wait` actions, links).

mod clients;
mod ipv6;
mod nodes;
mod plan;
mod raw;

pub use ipv6::{
    DEFAULT_CLUSTER_CIDR, DEFAULT_CLUSTER_CIDR_V6, DEFAULT_SERVICE_CIDR, DEFAULT_SERVICE_CIDR_V6,
};
pub(crate) use nodes::check_labels;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_yaml_ng::Value;

use crate::error::{display_path, LabError};
use crate::manifest::{parse_documents, ManifestDoc};
use crate::model::{ClientAttach, KubeProxy, LinkSpec, LoadBalancer, Node, PlanAction, PlanStep};

/// The hostname label every node carries.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A client as declared; pod clients get their IP when the cluster is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub name: String,
    /// Explicit address (required for external clients, optional for pod clients).
    pub ip: Option<Ipv4Addr>,
    /// External clients: `ipv6` as given; pod clients get theirs when the cluster is built.
    pub ipv6: Option<Ipv6Addr>,
    pub attach: ClientAttach,
}

/// A validated lab config (before scheduling).
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Scenario name (file stem).
    pub scenario: String,
    pub source: PathBuf,
    /// The file as shown in messages.
    pub file: String,
    pub description: String,
    pub seed: u64,
    pub node_network: Ipv4Net,
    pub router_ip: Ipv4Addr,
    pub cluster_cidr: Ipv4Net,
    /// The IPv6 node network, router and clusterCIDR (`None` in an IPv4-only lab).
    pub node_network_v6: Option<Ipv6Net>,
    pub router_ipv6: Option<Ipv6Addr>,
    pub cluster_cidr_v6: Option<Ipv6Net>,
    /// ClusterIP ranges (kube-apiserver's --service-cluster-ip-range), primary family first.
    pub service_cidrs: Vec<IpNet>,
    pub nodes: Vec<Node>,
    pub clients: Vec<ClientSpec>,
    pub load_balancer: Option<LoadBalancer>,
    /// Plan with `service` normalised to `namespace/name` (existence checked later).
    pub plan: Vec<PlanStep>,
    /// `scale` / `wait` entries of the plan (before which request step they run).
    pub actions: Vec<PlanAction>,
    /// Per-link impairments (`links:`), names checked once pods exist.
    pub links: Vec<LinkSpec>,
    pub manifests: Vec<ManifestDoc>,
    /// `kubeProxy:` knobs.
    pub kube_proxy: KubeProxy,
}

/// Default seed when the config has none.
pub const DEFAULT_SEED: u64 = 1;

/// The scenario description: the file's leading `#` comment block, `# ` stripped.
pub fn leading_comment(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            lines.push(
                rest.strip_prefix(' ')
                    .unwrap_or(rest)
                    .trim_end()
                    .to_string(),
            );
        } else if t.is_empty() && lines.is_empty() {
            continue;
        } else {
            break;
        }
    }
    lines.join("\n").trim().to_string()
}

/// The validated nodes with a name → index map, for the checks that name nodes.
pub(crate) struct NodeIndex<'a> {
    pub nodes: &'a [Node],
    pub by_name: HashMap<&'a str, usize>,
}

impl<'a> NodeIndex<'a> {
    pub fn new(nodes: &'a [Node]) -> Self {
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        NodeIndex { nodes, by_name }
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The node called `name`, or the "unknown node" error for `field`.
    pub fn get(&self, file: &str, field: String, name: &str) -> Result<&'a Node, LabError> {
        match self.by_name.get(name) {
            Some(&i) => Ok(&self.nodes[i]),
            None => Err(LabError::invalid(
                file,
                field,
                format!("unknown node {name:?} (known: {})", self.names().join(", ")),
            )),
        }
    }
}

/// Check a node or client name with `rule` and that it was not `seen` before.
pub(super) fn unique_name<'a>(
    f: &str,
    field: String,
    name: &'a str,
    kind: &str,
    rule: fn(&str) -> Result<(), String>,
    seen: &mut HashSet<&'a str>,
) -> Result<(), LabError> {
    if let Err(e) = rule(name) {
        return Err(LabError::invalid(
            f,
            field,
            format!("{name:?} is not a valid {kind} name: {e}"),
        ));
    }
    if !seen.insert(name) {
        return Err(LabError::invalid(
            f,
            field,
            format!("duplicate {kind} name {name:?}"),
        ));
    }
    Ok(())
}

/// Parse and validate the config itself (manifests parsed, not yet interpreted).
pub fn parse_config(text: &str, path: &Path, seed: Option<u64>) -> Result<LabConfig, LabError> {
    let file = display_path(path);
    let f = file.as_str();
    let raw: raw::RawConfig = serde_yaml_ng::from_str(text).map_err(|e| LabError::yaml(f, &e))?;
    let mut claims = crate::net::Claims::default();
    let nets = nodes::networks(f, &raw, &mut claims)?;
    let nodes = nodes::nodes(f, &raw.nodes, &nets, &mut claims)?;
    let index = NodeIndex::new(&nodes);
    let clients = clients::clients(f, &raw.clients, &index, &nets, &mut claims)?;
    let load_balancer = match &raw.load_balancer {
        Some(lb) => Some(clients::load_balancer(f, lb, &index, &nets, &mut claims)?),
        None => None,
    };
    let lb = load_balancer.as_ref();
    let (plan, actions) = plan::plan(f, &raw.plan, &clients, &index, lb)?;
    let links = plan::links(f, &raw.links)?;
    let manifests = load_manifests(f, path, &raw.manifests)?;
    Ok(LabConfig {
        scenario: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source: path.to_path_buf(),
        file: file.clone(),
        description: leading_comment(text),
        seed: seed.or(raw.seed).unwrap_or(DEFAULT_SEED),
        node_network: nets.node_network,
        router_ip: nets.router_ip,
        cluster_cidr: nets.cluster_cidr,
        node_network_v6: nets.v6.as_ref().and_then(|v| v.node_network),
        router_ipv6: nets.v6.as_ref().and_then(|v| v.router),
        cluster_cidr_v6: nets.v6.as_ref().map(|v| v.cluster_cidr),
        service_cidrs: nets.service_cidrs,
        nodes,
        clients,
        load_balancer,
        plan,
        actions,
        links,
        manifests,
        kube_proxy: kube_proxy(&file, raw.kube_proxy.as_ref())?,
    })
}

/// Longest `kubeProxy.syncDelay` the lab takes (10 min), so a typo cannot stall a run.
const MAX_SYNC_DELAY: std::time::Duration = std::time::Duration::from_secs(600);

/// `kubeProxy:` with kube-proxy's defaults for what it leaves out.
fn kube_proxy(f: &str, raw: Option<&raw::RawKubeProxy>) -> Result<KubeProxy, LabError> {
    let d = KubeProxy::default();
    let Some(k) = raw else { return Ok(d) };
    let sync_delay = match &k.sync_delay {
        None => d.sync_delay,
        Some(v) => crate::units::parse_duration(f, "kubeProxy.syncDelay", v)?,
    };
    if sync_delay > MAX_SYNC_DELAY {
        return Err(LabError::invalid(
            f,
            "kubeProxy.syncDelay",
            format!("{sync_delay:?} is longer than the lab allows (10m)"),
        ));
    }
    Ok(KubeProxy {
        sync_delay,
        masquerade_random_fully: k
            .masquerade_random_fully
            .unwrap_or(d.masquerade_random_fully),
        localhost_node_ports: k.localhost_node_ports.unwrap_or(d.localhost_node_ports),
        tcp_be_liberal: k
            .conntrack
            .as_ref()
            .and_then(|c| c.tcp_be_liberal)
            .unwrap_or(d.tcp_be_liberal),
        conntrack_cleanup: k.conntrack_cleanup.unwrap_or(d.conntrack_cleanup),
    })
}

/// `manifests:` entries: inline YAML strings or `file: <path>` (relative to the config).
fn load_manifests(f: &str, path: &Path, raw: &[Value]) -> Result<Vec<ManifestDoc>, LabError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut manifests = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        let at = format!("manifests[{i}]");
        match m {
            Value::String(text) => manifests.extend(parse_documents(text, f, &at)?),
            Value::Mapping(map) => {
                if map.len() != 1 {
                    return Err(LabError::invalid(
                        f,
                        at,
                        "expected an inline YAML string or `file: <path>`",
                    ));
                }
                let Some(Value::String(rel)) = map.get("file") else {
                    let key = map.keys().next().and_then(|k| k.as_str()).unwrap_or("?");
                    return Err(LabError::invalid(
                        f,
                        at,
                        format!("unknown field `{key}`, expected `file: <path>` or an inline YAML string"),
                    ));
                };
                let rel_path = Path::new(rel);
                if rel_path.is_absolute()
                    || rel_path.components().any(|c| {
                        !matches!(
                            c,
                            std::path::Component::Normal(_) | std::path::Component::CurDir
                        )
                    })
                {
                    return Err(LabError::invalid(
                        f,
                        format!("{at}.file"),
                        format!("{rel:?} must be a relative path below the config's directory (no '..', not absolute)"),
                    ));
                }
                let mpath = base.join(rel_path);
                let mfile = display_path(&mpath);
                let text = std::fs::read_to_string(&mpath).map_err(|e| {
                    LabError::invalid(
                        f,
                        format!("{at}.file"),
                        format!("cannot read {mfile:?}: {e}"),
                    )
                })?;
                manifests.extend(parse_documents(&text, &mfile, "")?);
            }
            _ => {
                return Err(LabError::invalid(
                    f,
                    at,
                    "expected an inline YAML string (`|` block) or `file: <path>`",
                ))
            }
        }
    }
    Ok(manifests)
}
