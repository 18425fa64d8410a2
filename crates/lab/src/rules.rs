//! `lab rules`: the `iptables-save` text kube-proxy would program on a scenario's nodes.
//!
//! Uses exactly what the runner gives each node's engine: the proxy configuration of
//! [`runner::world_spec`] and the cluster's services and EndpointSlices (every node syncs the
//! same set, [`sim::World::set_services`]). The rules are those of the scenario's start;
//! plan actions that scale deployments later change the slices, not this text.

use std::fmt::Write as _;

use cluster::{Cluster, LabError};

use crate::runner;

/// The node names of `cluster`, in config order.
pub fn node_names(cluster: &Cluster) -> Vec<String> {
    cluster.nodes.iter().map(|n| n.name.clone()).collect()
}

/// The proxy configuration the runner gives node `node`.
pub fn proxy_config(cluster: &Cluster, node: &str) -> Result<nodeport::ProxyConfig, LabError> {
    runner::world_spec(cluster, false, false)
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

/// `lab rules <scenario> [node]`: the named node, or every node, each headed by a comment
/// line (`iptables-restore` skips `#` lines, so the text loads as is).
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
    }
    Ok(out)
}
