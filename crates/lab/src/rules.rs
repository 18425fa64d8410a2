//! `lab rules`: the `iptables-save` text kube-proxy would program on a scenario's nodes, and
//! on nodes with an IPv6 address the IPv6 proxier's `ip6tables-save` text after it.
//!
//! Uses exactly what the runner gives each node's engine: the proxy configuration of
//! [`crate::setup::world_spec`] and the cluster's services and EndpointSlices (every node syncs the
//! same set, [`sim::World::set_services`]). The rules are those of the scenario's start;
//! plan actions that scale deployments later change the slices, not this text.

use std::fmt::Write as _;

use cluster::{Cluster, LabError};

/// The node names of `cluster`, in config order.
pub fn node_names(cluster: &Cluster) -> Vec<String> {
    cluster.nodes.iter().map(|n| n.name.clone()).collect()
}

/// The proxy configuration the runner gives node `node`.
pub fn proxy_config(cluster: &Cluster, node: &str) -> Result<nodeport::ProxyConfig, LabError> {
    crate::setup::world_spec(cluster, false, false)
        .nodes
        .into_iter()
        .find(|n| n.name == node)
        .and_then(|n| n.proxy)
        .ok_or_else(|| {
            LabError::invalid(
                "command line",
                "node",
                format!(
                    "unknown node {node:?} in scenario {} (nodes: {})",
                    cluster.scenario,
                    node_names(cluster).join(", ")
                ),
            )
        })
}

/// `iptables-save` text of one node (no heading).
pub fn node_rules(cluster: &Cluster, node: &str) -> Result<String, LabError> {
    let cfg = proxy_config(cluster, node)?;
    Ok(nodeport::iptables_save(
        &cfg,
        &cluster.services,
        &cluster.slices,
    ))
}

/// `ip6tables-save` text of one node (no heading): the IPv6 proxier's rules (kube-proxy
/// runs one per family); `None` when the node has no IPv6 address.
pub fn node_rules_v6(cluster: &Cluster, node: &str) -> Result<Option<String>, LabError> {
    let cfg = proxy_config(cluster, node)?;
    if cfg.node_address(nodeport::IpFamily::V6).is_none() {
        return Ok(None);
    }
    Ok(Some(nodeport::ip6tables_save(
        &cfg,
        &cluster.services,
        &cluster.slices,
    )))
}

/// `lab rules <scenario> [node]`: the named node, or every node, each headed by a comment
/// line (`iptables-restore` skips `#` lines, so the text loads as is); a node with an IPv6
/// address adds its `ip6tables-save` text under a `# ip6tables-save` line.
pub fn rules_text(cluster: &Cluster, node: Option<&str>) -> Result<String, LabError> {
    let names = match node {
        Some(n) => vec![n.to_string()],
        None => node_names(cluster),
    };
    let mut out = String::new();
    for n in names {
        let rules = node_rules(cluster, &n)?;
        let ip = cluster
            .nodes
            .iter()
            .find(|x| x.name == n)
            .map(|x| x.ip.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# node {n} ({ip}): kube-proxy iptables mode, scenario {} (lab rules)",
            cluster.scenario
        );
        out.push_str(&rules);
        if let Some(v6) = node_rules_v6(cluster, &n)? {
            let _ = writeln!(out, "# ip6tables-save");
            out.push_str(&v6);
        }
    }
    Ok(out)
}
