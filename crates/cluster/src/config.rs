//! The lab-config schema (`lab-configs/*.yaml`), its validation, and [`load_cluster`], the
//! entry point that turns a config file into a [`Cluster`].
//!
//! Owns: the YAML schema (strict: unknown fields are errors), defaults, and every check that
//! needs only the config itself (names, addresses, CIDRs, plan references to nodes/clients).
//! Checks that need the manifests (services, ports, scheduling) live in [`crate::schedule`].
//! The schema is documented in the repository README ("Lab config").

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::error::{display_path, LabError};
use crate::manifest::{parse_documents, ManifestDoc};
use crate::model::{
    ActionKind, ClientAttach, Cluster, HealthCheck, LinkSpec, LoadBalancer, Node, PlanAction,
    PlanStep, Taint, Target,
};

/// The hostname label every node carries.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

// ---------------------------------------------------------------------------------------
// Raw schema (what serde reads)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a lab config mapping (seed, nodes, clients, loadBalancer, manifests, plan, ...)"
)]
struct RawConfig {
    seed: Option<u64>,
    node_network: Option<String>,
    router: Option<String>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    nodes: Vec<RawNode>,
    #[serde(default)]
    clients: Vec<RawClient>,
    load_balancer: Option<RawLoadBalancer>,
    #[serde(default)]
    manifests: Vec<Value>,
    #[serde(default)]
    plan: Vec<RawPlan>,
    #[serde(default)]
    links: Vec<RawLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLink {
    link: String,
    delay: Option<Value>,
    jitter: Option<Value>,
    loss: Option<f64>,
    rate: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScale {
    deployment: String,
    replicas: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNode {
    name: String,
    ip: String,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    #[serde(default)]
    taints: Vec<RawTaint>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    masquerade: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTaint {
    key: String,
    value: Option<String>,
    effect: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawClient {
    name: String,
    ip: Option<String>,
    can_reach: Option<Vec<String>>,
    node: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLoadBalancer {
    name: Option<String>,
    ip: String,
    nodes: Option<Vec<String>>,
    health_check: Option<RawHealthCheck>,
    #[serde(default)]
    weighted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHealthCheck {
    interval: Option<Value>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPlan {
    from: Option<String>,
    to: Option<String>,
    scale: Option<RawScale>,
    wait: Option<Value>,
    service: Option<String>,
    port: Option<i64>,
    count: Option<i64>,
    path: Option<String>,
    connect_timeout: Option<Value>,
    max_time: Option<Value>,
}

// ---------------------------------------------------------------------------------------
// Validated config
// ---------------------------------------------------------------------------------------

/// A client as declared; pod clients get their IP when the cluster is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub name: String,
    /// Explicit address (required for external clients, optional for pod clients).
    pub ip: Option<Ipv4Addr>,
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
}

/// Default seed when the config has none.
pub const DEFAULT_SEED: u64 = 1;

/// Load a config file and build the cluster. `seed` overrides the config's `seed`.
#[tracing::instrument(level = "debug", skip_all, fields(path = %path.display(), ?seed))]
pub fn load_cluster(path: &Path, seed: Option<u64>) -> Result<Cluster, LabError> {
    let file = display_path(path);
    let text = std::fs::read_to_string(path).map_err(|e| LabError::io(&file, e))?;
    load_cluster_from_str(&text, path, seed)
}

/// Like [`load_cluster`] but from text; `path` names the file in messages and anchors
/// relative `manifests: - file:` paths (its parent directory).
pub fn load_cluster_from_str(
    text: &str,
    path: &Path,
    seed: Option<u64>,
) -> Result<Cluster, LabError> {
    let cfg = parse_config(text, path, seed)?;
    crate::schedule::build_cluster(cfg)
}

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

/// Parse and validate the config itself (manifests parsed, not yet interpreted).
pub fn parse_config(text: &str, path: &Path, seed: Option<u64>) -> Result<LabConfig, LabError> {
    let file = display_path(path);
    let f = file.as_str();
    let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| LabError::yaml(f, &e))?;
    let inv = |field: String, msg: String| LabError::invalid(f, field, msg);

    // --- networks -------------------------------------------------------------------------
    if raw.nodes.is_empty() {
        return Err(inv("nodes".into(), "at least one node is required".into()));
    }
    let mut node_ips = Vec::new();
    for (i, n) in raw.nodes.iter().enumerate() {
        node_ips.push(parse_ip(f, &format!("nodes[{i}].ip"), &n.ip)?);
    }
    let node_network = match &raw.node_network {
        Some(s) => parse_net(f, "nodeNetwork", s)?,
        None => Ipv4Net::new(node_ips[0], 24).expect("24 is valid").trunc(),
    };
    let router_ip = match &raw.router {
        Some(s) => parse_ip(f, "router", s)?,
        // The first host of the network; 255.255.255.255/32 has none after it.
        None => match u32::from(node_network.network()).checked_add(1) {
            Some(a) => Ipv4Addr::from(a),
            None => {
                let msg = format!("nodeNetwork {node_network} leaves no default; set router");
                return Err(inv("router".into(), msg));
            }
        },
    };
    if !node_network.contains(&router_ip) {
        return Err(inv(
            "router".into(),
            format!("{router_ip} is not inside nodeNetwork {node_network}"),
        ));
    }
    let cluster_cidr = match &raw.cluster_cidr {
        Some(s) => parse_net(f, "clusterCIDR", s)?,
        None => "10.244.0.0/16".parse().expect("valid"),
    };
    if nets_overlap(&cluster_cidr, &node_network) {
        return Err(inv(
            "clusterCIDR".into(),
            format!("{cluster_cidr} overlaps nodeNetwork {node_network}"),
        ));
    }

    // --- nodes ----------------------------------------------------------------------------
    let mut nodes: Vec<Node> = Vec::new();
    let mut used_ips: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    used_ips.insert(router_ip, "router".into());
    for (i, n) in raw.nodes.iter().enumerate() {
        let at = format!("nodes[{i}]");
        check_name(f, &format!("{at}.name"), &n.name)?;
        if nodes.iter().any(|o| o.name == n.name) {
            return Err(inv(
                format!("{at}.name"),
                format!("duplicate node name {:?}", n.name),
            ));
        }
        let ip = node_ips[i];
        if !node_network.contains(&ip)
            || ip == node_network.network()
            || ip == node_network.broadcast()
        {
            return Err(inv(
                format!("{at}.ip"),
                format!("{ip} is not a host address of nodeNetwork {node_network}"),
            ));
        }
        claim_ip(
            f,
            &mut used_ips,
            ip,
            &format!("{at}.ip"),
            &format!("node {}", n.name),
        )?;
        let pod_cidr = match &n.pod_cidr {
            Some(s) => parse_net(f, &format!("{at}.podCIDR"), s)?,
            None => nth_subnet(&cluster_cidr, i).ok_or_else(|| {
                inv(
                    format!("{at}.podCIDR"),
                    format!("cannot derive a /24 from clusterCIDR {cluster_cidr}; set podCIDR"),
                )
            })?,
        };
        if pod_cidr.prefix_len() > 30 {
            return Err(inv(
                format!("{at}.podCIDR"),
                format!("{pod_cidr} is too small (at most /30)"),
            ));
        }
        if pod_cidr != pod_cidr.trunc() {
            return Err(inv(
                format!("{at}.podCIDR"),
                format!(
                    "{pod_cidr} has host bits set (did you mean {}?)",
                    pod_cidr.trunc()
                ),
            ));
        }
        if !cluster_cidr.contains(&pod_cidr) {
            return Err(inv(
                format!("{at}.podCIDR"),
                format!("{pod_cidr} is not inside clusterCIDR {cluster_cidr}"),
            ));
        }
        if nets_overlap(&pod_cidr, &node_network) {
            return Err(inv(
                format!("{at}.podCIDR"),
                format!("{pod_cidr} overlaps nodeNetwork {node_network}"),
            ));
        }
        if let Some(o) = nodes.iter().find(|o| nets_overlap(&o.pod_cidr, &pod_cidr)) {
            return Err(inv(
                format!("{at}.podCIDR"),
                format!(
                    "{pod_cidr} overlaps podCIDR {} of node {}",
                    o.pod_cidr, o.name
                ),
            ));
        }
        let mut taints = Vec::new();
        for (j, t) in n.taints.iter().enumerate() {
            if !matches!(
                t.effect.as_str(),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(inv(
                    format!("{at}.taints[{j}].effect"),
                    format!(
                        "{:?} is not one of NoSchedule, PreferNoSchedule, NoExecute",
                        t.effect
                    ),
                ));
            }
            if t.key.is_empty() {
                return Err(inv(
                    format!("{at}.taints[{j}].key"),
                    "must not be empty".into(),
                ));
            }
            taints.push(Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
            });
        }
        let mut labels = n.labels.clone();
        labels.insert(HOSTNAME_LABEL.to_string(), n.name.clone());
        nodes.push(Node {
            name: n.name.clone(),
            ip,
            prefix_len: node_network.prefix_len(),
            pod_cidr,
            taints,
            labels,
            masquerade: n.masquerade.unwrap_or(true),
        });
    }
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let known_nodes = || format!("(known: {})", node_names.join(", "));
    let check_node = |field: String, name: &str| -> Result<(), LabError> {
        if node_names.iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(inv(
                field,
                format!("unknown node {name:?} {}", known_nodes()),
            ))
        }
    };

    // --- clients --------------------------------------------------------------------------
    let mut clients: Vec<ClientSpec> = Vec::new();
    for (i, c) in raw.clients.iter().enumerate() {
        let at = format!("clients[{i}]");
        check_name(f, &format!("{at}.name"), &c.name)?;
        if clients.iter().any(|o| o.name == c.name) {
            return Err(inv(
                format!("{at}.name"),
                format!("duplicate client name {:?}", c.name),
            ));
        }
        let ip = match &c.ip {
            Some(s) => Some(parse_ip(f, &format!("{at}.ip"), s)?),
            None => None,
        };
        let attach = match (&c.node, &c.can_reach) {
            (Some(_), Some(_)) => {
                return Err(inv(
                    at.clone(),
                    "a client is either a pod (`node`) or external (`canReach`), not both".into(),
                ))
            }
            (Some(node), None) => {
                check_node(format!("{at}.node"), node)?;
                let n = nodes.iter().find(|n| &n.name == node).expect("checked");
                if let Some(ip) = ip {
                    let host_ok = n.pod_cidr.contains(&ip)
                        && ip != n.pod_cidr.network()
                        && ip != n.cni0_ip()
                        && ip != n.pod_cidr.broadcast();
                    if !host_ok {
                        return Err(inv(
                            format!("{at}.ip"),
                            format!(
                                "{ip} is not a free pod address of node {node}'s podCIDR {} (.0 and .1 are reserved)",
                                n.pod_cidr
                            ),
                        ));
                    }
                }
                ClientAttach::Pod { node: node.clone() }
            }
            (None, reach) => {
                let Some(ip) = ip else {
                    return Err(inv(
                        format!("{at}.ip"),
                        "missing (external clients need an address; pod clients set `node`)".into(),
                    ));
                };
                if node_network.contains(&ip) {
                    return Err(inv(
                        format!("{at}.ip"),
                        format!("{ip} is inside nodeNetwork {node_network}; external clients sit behind the router"),
                    ));
                }
                if cluster_cidr.contains(&ip) {
                    return Err(inv(
                        format!("{at}.ip"),
                        format!("{ip} is inside clusterCIDR {cluster_cidr} (pod addresses); use `node:` for a pod client"),
                    ));
                }
                let can_reach = match reach {
                    Some(list) => {
                        for (j, n) in list.iter().enumerate() {
                            check_node(format!("{at}.canReach[{j}]"), n)?;
                        }
                        list.clone()
                    }
                    None => node_names.clone(),
                };
                ClientAttach::External { can_reach }
            }
        };
        if let Some(ip) = ip {
            claim_ip(
                f,
                &mut used_ips,
                ip,
                &format!("{at}.ip"),
                &format!("client {}", c.name),
            )?;
        }
        clients.push(ClientSpec {
            name: c.name.clone(),
            ip,
            attach,
        });
    }

    // --- load balancer --------------------------------------------------------------------
    let load_balancer = match &raw.load_balancer {
        None => None,
        Some(lb) => {
            let ip = parse_ip(f, "loadBalancer.ip", &lb.ip)?;
            if cluster_cidr.contains(&ip) {
                return Err(inv(
                    "loadBalancer.ip".into(),
                    format!("{ip} is inside clusterCIDR {cluster_cidr}"),
                ));
            }
            claim_ip(f, &mut used_ips, ip, "loadBalancer.ip", "the load balancer")?;
            let lb_nodes = match &lb.nodes {
                Some(list) => {
                    if list.is_empty() {
                        return Err(inv(
                            "loadBalancer.nodes".into(),
                            "must list at least one node".into(),
                        ));
                    }
                    let mut seen = BTreeSet::new();
                    for (j, n) in list.iter().enumerate() {
                        check_node(format!("loadBalancer.nodes[{j}]"), n)?;
                        if !seen.insert(n) {
                            return Err(inv(
                                format!("loadBalancer.nodes[{j}]"),
                                format!("duplicate node {n:?}"),
                            ));
                        }
                    }
                    list.clone()
                }
                None => node_names.clone(),
            };
            let health_check = match &lb.health_check {
                None => None,
                Some(hc) => {
                    let interval = match &hc.interval {
                        Some(v) => parse_duration(f, "loadBalancer.healthCheck.interval", v)?,
                        None => Duration::from_secs(10),
                    };
                    let healthy = hc.healthy_threshold.unwrap_or(3);
                    let unhealthy = hc.unhealthy_threshold.unwrap_or(3);
                    if healthy == 0 {
                        return Err(inv(
                            "loadBalancer.healthCheck.healthyThreshold".into(),
                            "0 must be at least 1".into(),
                        ));
                    }
                    if unhealthy == 0 {
                        return Err(inv(
                            "loadBalancer.healthCheck.unhealthyThreshold".into(),
                            "0 must be at least 1".into(),
                        ));
                    }
                    Some(HealthCheck {
                        interval,
                        healthy_threshold: healthy,
                        unhealthy_threshold: unhealthy,
                    })
                }
            };
            Some(LoadBalancer {
                name: lb.name.clone().unwrap_or_else(|| "lb".to_string()),
                ip,
                nodes: lb_nodes,
                health_check,
                weighted: lb.weighted,
            })
        }
    };

    // --- plan -----------------------------------------------------------------------------
    let mut plan = Vec::new();
    let mut actions = Vec::new();
    for (i, p) in raw.plan.iter().enumerate() {
        let at = format!("plan[{i}]");
        let request_fields = p.from.is_some()
            || p.to.is_some()
            || p.service.is_some()
            || p.port.is_some()
            || p.count.is_some()
            || p.path.is_some()
            || p.connect_timeout.is_some()
            || p.max_time.is_some();
        let action = match (&p.scale, &p.wait) {
            (Some(_), Some(_)) => {
                return Err(inv(
                    at,
                    "`scale` and `wait` must be separate plan entries".into(),
                ))
            }
            (Some(sc), None) => {
                if !(0..=1000).contains(&sc.replicas) {
                    return Err(inv(
                        format!("{at}.scale.replicas"),
                        format!("{} is not in 0..=1000", sc.replicas),
                    ));
                }
                let (namespace, name) = match sc.deployment.split_once('/') {
                    Some((ns, n)) => (ns.to_string(), n.to_string()),
                    None => ("default".to_string(), sc.deployment.clone()),
                };
                Some(ActionKind::Scale {
                    namespace,
                    deployment: name,
                    replicas: sc.replicas as u32,
                })
            }
            (None, Some(v)) => Some(ActionKind::Wait(parse_duration(
                f,
                &format!("{at}.wait"),
                v,
            )?)),
            (None, None) => None,
        };
        if let Some(kind) = action {
            if request_fields {
                return Err(inv(
                    at,
                    "a `scale`/`wait` entry takes no request fields (from, to, count, ...)".into(),
                ));
            }
            actions.push(PlanAction {
                before: plan.len(),
                entry: i,
                kind,
                scaled: None,
            });
            continue;
        }
        let Some(from) = p.from.clone() else {
            return Err(inv(
                format!("{at}.from"),
                "missing (a request needs `from` and `to`; or use `scale:` / `wait:`)".into(),
            ));
        };
        let Some(to) = p.to.clone() else {
            return Err(inv(
                format!("{at}.to"),
                "missing (a node name, `loadBalancer` or an IPv4 address)".into(),
            ));
        };
        struct P<'a> {
            from: String,
            to: String,
            raw: &'a RawPlan,
        }
        let p = P { from, to, raw: p };
        let p = &p;
        if !clients.iter().any(|c| c.name == p.from) {
            let known: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
            return Err(inv(
                format!("{at}.from"),
                format!("unknown client {:?} (known: {})", p.from, known.join(", ")),
            ));
        }
        let target = if p.to == "loadBalancer" {
            if load_balancer.is_none() {
                return Err(inv(
                    format!("{at}.to"),
                    "\"loadBalancer\" but the config has no loadBalancer".into(),
                ));
            }
            Target::LoadBalancer
        } else if let Ok(ip) = p.to.parse::<Ipv4Addr>() {
            Target::Address(ip)
        } else if node_names.contains(&p.to) {
            Target::Node(p.to.clone())
        } else {
            return Err(inv(
                format!("{at}.to"),
                format!(
                    "unknown node {:?} (known: {}; or `loadBalancer`, or an IPv4 address)",
                    p.to,
                    node_names.join(", ")
                ),
            ));
        };
        let port = match p.raw.port {
            None => None,
            Some(v) => Some(check_port(f, &format!("{at}.port"), v)?),
        };
        let service = p.raw.service.as_ref().map(|s| {
            if s.contains('/') {
                s.clone()
            } else {
                format!("default/{s}")
            }
        });
        let count = match p.raw.count {
            None => 1,
            Some(c) if (1..=1_000_000).contains(&c) => c as u32,
            Some(c) => {
                return Err(inv(
                    format!("{at}.count"),
                    format!("{c} is not in 1..=1000000"),
                ))
            }
        };
        let path = p.raw.path.clone().unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') {
            return Err(inv(
                format!("{at}.path"),
                format!("{path:?} must start with '/'"),
            ));
        }
        let connect_timeout = match &p.raw.connect_timeout {
            Some(v) => Some(parse_duration(f, &format!("{at}.connectTimeout"), v)?),
            None => None,
        };
        let max_time = match &p.raw.max_time {
            Some(v) => Some(parse_duration(f, &format!("{at}.maxTime"), v)?),
            None => None,
        };
        plan.push(PlanStep {
            client: p.from.clone(),
            target,
            service,
            port,
            count,
            path,
            connect_timeout,
            max_time,
        });
    }

    // --- links ----------------------------------------------------------------------------
    let mut links = Vec::new();
    for (i, l) in raw.links.iter().enumerate() {
        let at = format!("links[{i}]");
        let dur = |field: &str, v: &Option<Value>| -> Result<Duration, LabError> {
            match v {
                Some(v) => parse_duration(f, &format!("{at}.{field}"), v),
                None => Ok(Duration::ZERO),
            }
        };
        let loss = l.loss.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&loss) {
            return Err(inv(
                format!("{at}.loss"),
                format!("{loss} is not a probability in 0..=1"),
            ));
        }
        let rate = match &l.rate {
            None => None,
            Some(v) => Some(parse_rate(f, &format!("{at}.rate"), v)?),
        };
        if links.iter().any(|x: &LinkSpec| x.link == l.link) {
            return Err(inv(
                format!("{at}.link"),
                format!("duplicate link {:?}", l.link),
            ));
        }
        links.push(LinkSpec {
            link: l.link.clone(),
            delay: dur("delay", &l.delay)?,
            jitter: dur("jitter", &l.jitter)?,
            loss,
            rate,
        });
    }

    // --- manifests ------------------------------------------------------------------------
    let base = path.parent().unwrap_or(Path::new("."));
    let mut manifests = Vec::new();
    for (i, m) in raw.manifests.iter().enumerate() {
        let at = format!("manifests[{i}]");
        match m {
            Value::String(text) => manifests.extend(parse_documents(text, f, &at)?),
            Value::Mapping(map) => {
                if map.len() != 1 {
                    return Err(inv(
                        at,
                        "expected an inline YAML string or `file: <path>`".into(),
                    ));
                }
                let Some(Value::String(rel)) = map.get("file") else {
                    let key = map.keys().next().and_then(|k| k.as_str()).unwrap_or("?");
                    return Err(inv(
                        at,
                        format!("unknown field `{key}`, expected `file: <path>` or an inline YAML string"),
                    ));
                };
                let mpath = base.join(rel);
                let mfile = display_path(&mpath);
                let text = std::fs::read_to_string(&mpath).map_err(|e| {
                    inv(format!("{at}.file"), format!("cannot read {mfile:?}: {e}"))
                })?;
                manifests.extend(parse_documents(&text, &mfile, "")?);
            }
            _ => {
                return Err(inv(
                    at,
                    "expected an inline YAML string (`|` block) or `file: <path>`".into(),
                ))
            }
        }
    }

    Ok(LabConfig {
        scenario: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source: path.to_path_buf(),
        file: file.clone(),
        description: leading_comment(text),
        seed: seed.or(raw.seed).unwrap_or(DEFAULT_SEED),
        node_network,
        router_ip,
        cluster_cidr,
        nodes,
        clients,
        load_balancer,
        plan,
        actions,
        links,
        manifests,
    })
}

/// `10mbit`, `512kbit`, `1gbit`, `100bit`, `2mbps` (bytes), or a bare number of bits/s.
pub fn parse_rate(file: &str, field: &str, v: &Value) -> Result<u64, LabError> {
    let bad = || {
        LabError::invalid(
            file,
            field,
            format!(
                "{} is not a rate (like 10mbit, 512kbit, 1gbit or bits per second)",
                serde_yaml_ng::to_string(v).unwrap_or_default().trim()
            ),
        )
    };
    let bits = match v {
        Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            let units: [(&str, f64); 8] = [
                ("gbit", 1e9),
                ("mbit", 1e6),
                ("kbit", 1e3),
                ("bit", 1.0),
                ("gbps", 8e9),
                ("mbps", 8e6),
                ("kbps", 8e3),
                ("bps", 8.0),
            ];
            let (num, mult) = units
                .iter()
                .find_map(|(u, m)| s.strip_suffix(u).map(|x| (x, *m)))
                .unwrap_or((s.as_str(), 1.0));
            num.trim().parse::<f64>().map_err(|_| bad())? * mult
        }
        _ => return Err(bad()),
    };
    if !(bits.is_finite() && (1.0..1e13).contains(&bits)) {
        return Err(bad());
    }
    Ok(bits as u64)
}

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn check_name(file: &str, field: &str, name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(LabError::invalid(
            file,
            field,
            format!("{name:?} is not a valid name (lower-case letters, digits, '-', '.')"),
        ))
    }
}

fn claim_ip(
    file: &str,
    used: &mut BTreeMap<Ipv4Addr, String>,
    ip: Ipv4Addr,
    field: &str,
    owner: &str,
) -> Result<(), LabError> {
    if let Some(other) = used.get(&ip) {
        return Err(LabError::invalid(
            file,
            field,
            format!("duplicate address {ip} (already used by {other})"),
        ));
    }
    used.insert(ip, owner.to_string());
    Ok(())
}

pub(crate) fn parse_ip(file: &str, field: &str, s: &str) -> Result<Ipv4Addr, LabError> {
    s.trim()
        .parse()
        .map_err(|_| LabError::invalid(file, field, format!("{s:?} is not an IPv4 address")))
}

fn parse_net(file: &str, field: &str, s: &str) -> Result<Ipv4Net, LabError> {
    s.trim().parse().map_err(|_| {
        LabError::invalid(
            file,
            field,
            format!("{s:?} is not an IPv4 CIDR (like 10.244.1.0/24)"),
        )
    })
}

pub(crate) fn check_port(file: &str, field: &str, v: i64) -> Result<u16, LabError> {
    if (1..=65535).contains(&v) {
        Ok(v as u16)
    } else {
        Err(LabError::invalid(
            file,
            field,
            format!("port {v} is out of range 1-65535"),
        ))
    }
}

/// Whether two CIDRs share any address.
pub fn nets_overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The i-th /24 inside `net` (10.244.0.0/16 → 10.244.i.0/24).
fn nth_subnet(net: &Ipv4Net, i: usize) -> Option<Ipv4Net> {
    if net.prefix_len() > 24 {
        return None;
    }
    net.subnets(24).ok()?.nth(i)
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(file: &str, field: &str, v: &Value) -> Result<Duration, LabError> {
    let bad = || {
        let shown = match v {
            Value::String(s) => format!("{s:?}"),
            other => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        LabError::invalid(
            file,
            field,
            format!("{shown} is not a duration (like 10s, 500ms, 2m or a number of seconds)"),
        )
    };
    let secs = |x: f64| {
        if x.is_finite() && (0.0..1e9).contains(&x) {
            Ok(Duration::from_secs_f64(x))
        } else {
            Err(bad())
        }
    };
    match v {
        Value::Number(n) => secs(n.as_f64().ok_or_else(bad)?),
        Value::String(s) => {
            let s = s.trim();
            let (num, mult) = if let Some(x) = s.strip_suffix("ms") {
                (x, 0.001)
            } else if let Some(x) = s.strip_suffix('s') {
                (x, 1.0)
            } else if let Some(x) = s.strip_suffix('m') {
                (x, 60.0)
            } else if let Some(x) = s.strip_suffix('h') {
                (x, 3600.0)
            } else {
                (s, 1.0)
            };
            let x: f64 = num.trim().parse().map_err(|_| bad())?;
            secs(x * mult)
        }
        _ => Err(bad()),
    }
}
