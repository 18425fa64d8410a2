//! # cluster — the Kubernetes side of nodeport-lab
//!
//! Turns a lab config (`lab-configs/*.yaml`: nodes, clients, load balancer, traffic plan and
//! real Kubernetes manifests) into a [`Cluster`], the way a control plane would: pods
//! scheduled (taints, tolerations, nodeSelector, spread) and named like Kubernetes names them,
//! ClusterIPs and NodePorts allocated, EndpointSlices computed.
//!
//! Pipeline: [`load_cluster`] = [`config`] (lab-config schema + validation) → [`manifest`]
//! (`apps/v1 Deployment` / `v1 Service` documents) → [`schedule`] (pods, IPs, ClusterIPs,
//! NodePorts, EndpointSlices) → [`Cluster`] ([`model`]). Helpers: [`names`] (apiserver name
//! and label rules), [`units`] (durations, rates, sizes), [`net`] (IPv4 helpers), [`gen`]
//! (generated scale configs). Nothing here does I/O beyond reading the config and the
//! manifest files it names.

pub mod apps;
pub mod config;
pub mod error;
pub mod gen;
pub mod manifest;
pub mod model;
pub mod names;
pub mod net;
pub mod schedule;
pub mod units;

use std::path::Path;

pub use apps::AppSpec;
pub use config::leading_comment;
pub use error::LabError;
pub use model::*;

/// Load a config file and build the cluster. `seed` overrides the config's `seed`.
#[tracing::instrument(level = "debug", skip_all, fields(path = %path.display(), ?seed))]
pub fn load_cluster(path: &Path, seed: Option<u64>) -> Result<Cluster, LabError> {
    let file = error::display_path(path);
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
    let _span = tracing::debug_span!("load_cluster", file = %path.display()).entered();
    let cfg = config::parse_config(text, path, seed)?;
    schedule::build_cluster(cfg)
}
