//! `nodeNetwork`, `router`, `clusterCIDR`, `serviceCIDR` and `nodes:` (addresses, pod CIDRs,
//! taints, labels); the IPv6 half in [`super::ipv6`].

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::ipv6::{self, V6Networks};
use super::raw::{RawConfig, RawNode, RawTaint};
use super::HOSTNAME_LABEL;
use crate::error::LabError;
use crate::model::{Node, Taint};
use crate::names;
use crate::net::{self, parse_ip, parse_net, Claims};

/// The networks of a config.
pub(super) struct Networks {
    pub node_network: Ipv4Net,
    pub router_ip: Ipv4Addr,
    pub cluster_cidr: Ipv4Net,
    /// The IPv6 networks of a dual-stack lab (`None`: IPv4 only).
    pub v6: Option<V6Networks>,
    /// ClusterIP ranges, primary family first.
    pub service_cidrs: Vec<IpNet>,
}

/// Node network (default: the first node's /24), router (default: its first host),
/// clusterCIDR (default 10.244.0.0/16), the IPv6 networks and the service CIDRs. Claims the
/// routers' addresses.
pub(super) fn networks(
    f: &str,
    raw: &RawConfig,
    claims: &mut Claims,
) -> Result<Networks, LabError> {
    let inv = |field: &str, msg: String| LabError::invalid(f, field, msg);
    let Some(first) = raw.nodes.first() else {
        return Err(inv("nodes", "at least one node is required".into()));
    };
    for (i, n) in raw.nodes.iter().enumerate() {
        parse_ip(f, &format!("nodes[{i}].ip"), &n.ip)?;
    }
    let node_network = match &raw.node_network {
        Some(s) => parse_net(f, "nodeNetwork", s)?,
        None => {
            let ip = parse_ip(f, "nodes[0].ip", &first.ip)?;
            Ipv4Net::new(ip, 24)
                .map_err(|e| inv("nodes[0].ip", e.to_string()))?
                .trunc()
        }
    };
    let router_ip = match &raw.router {
        Some(s) => parse_ip(f, "router", s)?,
        None => net::first_host(&node_network).ok_or_else(|| {
            inv(
                "nodeNetwork",
                format!("{node_network} has no room for a router and nodes (at most /30)"),
            )
        })?,
    };
    if !node_network.contains(&router_ip) {
        return Err(inv(
            "router",
            format!("{router_ip} is not inside nodeNetwork {node_network}"),
        ));
    }
    let (cluster_cidr, cluster_v6) = ipv6::cluster_cidrs(f, raw.cluster_cidr.as_ref())?;
    if net::nets_overlap(&cluster_cidr, &node_network) {
        return Err(inv(
            "clusterCIDR",
            format!("{cluster_cidr} overlaps nodeNetwork {node_network}"),
        ));
    }
    claims.claim(f, router_ip, "router", "router")?;
    let v6 = if ipv6::wants_v6(raw, cluster_v6) {
        Some(ipv6::networks(f, raw, cluster_v6, claims)?)
    } else {
        None
    };
    let service_cidrs = ipv6::service_cidrs(f, raw.service_cidr.as_ref(), v6.is_some())?;
    Ok(Networks {
        node_network,
        router_ip,
        cluster_cidr,
        v6,
        service_cidrs,
    })
}

/// Every node, validated, with its IPv6 half; claims their addresses.
pub(super) fn nodes(
    f: &str,
    raw: &[RawNode],
    nets: &Networks,
    claims: &mut Claims,
) -> Result<Vec<Node>, LabError> {
    let mut nodes: Vec<Node> = Vec::with_capacity(raw.len());
    let mut v6_nodes = nets.v6.as_ref().map(|n6| ipv6::V6Nodes::new(f, n6));
    let mut seen = HashSet::new();
    for (i, n) in raw.iter().enumerate() {
        let at = format!("nodes[{i}]");
        let rule = names::dns1123_subdomain;
        super::unique_name(f, format!("{at}.name"), &n.name, "node", rule, &mut seen)?;
        let ip = parse_ip(f, &format!("{at}.ip"), &n.ip)?;
        if !net::is_host_of(&nets.node_network, ip) {
            return Err(LabError::invalid(
                f,
                format!("{at}.ip"),
                format!(
                    "{ip} is not a host address of nodeNetwork {}",
                    nets.node_network
                ),
            ));
        }
        claims.claim(f, ip, &format!("{at}.ip"), &format!("node {}", n.name))?;
        let given = ipv6::pod_cidr_fields(f, &at, n)?;
        let pod_cidr = pod_cidr(f, &at, i, given.v4, nets, &nodes)?;
        let (ipv6, pod_cidr_v6) = match &mut v6_nodes {
            Some(v6) => v6.node((&at, i), n, given.v6, pod_cidr, claims)?,
            None => (None, None),
        };
        let taints = taints(f, &at, &n.taints)?;
        let labels = labels(f, &format!("{at}.labels"), &n.labels)?;
        let mut labels = labels;
        labels.insert(HOSTNAME_LABEL.to_string(), n.name.clone());
        nodes.push(Node {
            name: n.name.clone(),
            ip,
            ipv6,
            prefix_len: nets.node_network.prefix_len(),
            pod_cidr,
            pod_cidr_v6,
            taints,
            labels,
            masquerade: n.masquerade.unwrap_or(true),
        });
    }
    Ok(nodes)
}

/// A node's podCIDR (default: the i-th /24 of clusterCIDR), checked against the networks and
/// the nodes before it.
fn pod_cidr(
    f: &str,
    at: &str,
    i: usize,
    given: Option<(String, String)>,
    nets: &Networks,
    before: &[Node],
) -> Result<Ipv4Net, LabError> {
    let field = match &given {
        Some((field, _)) => field.clone(),
        None => format!("{at}.podCIDR"),
    };
    let inv = |msg: String| LabError::invalid(f, field.as_str(), msg);
    let cluster_cidr = nets.cluster_cidr;
    let pod_cidr = match &given {
        Some((_, s)) => parse_net(f, &field, s)?,
        None => net::nth_subnet(&cluster_cidr, i).ok_or_else(|| {
            inv(format!(
                "cannot derive a /24 from clusterCIDR {cluster_cidr}; set podCIDR"
            ))
        })?,
    };
    if pod_cidr.prefix_len() > 30 {
        return Err(inv(format!("{pod_cidr} is too small (at most /30)")));
    }
    if pod_cidr != pod_cidr.trunc() {
        return Err(inv(format!(
            "{pod_cidr} has host bits set (did you mean {}?)",
            pod_cidr.trunc()
        )));
    }
    if !cluster_cidr.contains(&pod_cidr) {
        return Err(inv(format!(
            "{pod_cidr} is not inside clusterCIDR {cluster_cidr}"
        )));
    }
    if net::nets_overlap(&pod_cidr, &nets.node_network) {
        return Err(inv(format!(
            "{pod_cidr} overlaps nodeNetwork {}",
            nets.node_network
        )));
    }
    if let Some(o) = before
        .iter()
        .find(|o| net::nets_overlap(&o.pod_cidr, &pod_cidr))
    {
        return Err(inv(format!(
            "{pod_cidr} overlaps podCIDR {} of node {}",
            o.pod_cidr, o.name
        )));
    }
    Ok(pod_cidr)
}

fn taints(f: &str, at: &str, raw: &[RawTaint]) -> Result<Vec<Taint>, LabError> {
    let mut taints = Vec::with_capacity(raw.len());
    for (j, t) in raw.iter().enumerate() {
        if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            return Err(LabError::invalid(
                f,
                format!("{at}.taints[{j}].effect"),
                format!(
                    "{:?} is not one of NoSchedule, PreferNoSchedule, NoExecute",
                    t.effect
                ),
            ));
        }
        if t.key.is_empty() {
            return Err(LabError::invalid(
                f,
                format!("{at}.taints[{j}].key"),
                "must not be empty",
            ));
        }
        // Taint keys are qualified names and values label values (ValidateTaint).
        names::label_key(&t.key).map_err(|e| {
            LabError::invalid(
                f,
                format!("{at}.taints[{j}].key"),
                format!("{:?} {e}", t.key),
            )
        })?;
        if let Some(v) = &t.value {
            names::label_value(v).map_err(|e| {
                LabError::invalid(f, format!("{at}.taints[{j}].value"), format!("{v:?} {e}"))
            })?;
        }
        taints.push(Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
        });
    }
    Ok(taints)
}

/// A label map, every key a qualified name and every value a label value (as the apiserver
/// checks `metadata.labels` and selectors). `field` is the path of the map.
pub(crate) fn labels(
    f: &str,
    field: &str,
    labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, LabError> {
    check_labels(labels).map_err(|(k, msg)| LabError::invalid(f, format!("{field}.{k}"), msg))?;
    Ok(labels.clone())
}

/// `Err((key, message))` for the first bad label of a map.
pub(crate) fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (k, v) in labels {
        names::label_key(k).map_err(|e| (k.clone(), format!("label key {k:?} {e}")))?;
        names::label_value(v).map_err(|e| (k.clone(), format!("label value {v:?} {e}")))?;
    }
    Ok(())
}
