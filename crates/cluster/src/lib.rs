//! # cluster — the Kubernetes side of nodeport-lab
//!
//! Turns a lab config (`lab-configs/*.yaml`: nodes, clients, load balancer, traffic plan and
//! real Kubernetes manifests) into a [`Cluster`], the way a control plane would: pods
//! scheduled (taints, tolerations, nodeSelector, spread) and named like Kubernetes names them,
//! ClusterIPs and NodePorts allocated, EndpointSlices computed.
//!
//! Pipeline: [`load_cluster`] = [`config`] (lab-config schema + validation) → [`manifest`]
//! (`apps/v1 Deployment` / `v1 Service` documents) → [`schedule`] (pods, IPs, ClusterIPs,
//! NodePorts, EndpointSlices) → [`Cluster`] ([`model`]). Nothing here does I/O beyond reading
//! the config and the manifest files it names.

pub mod config;
pub mod error;
pub mod manifest;
pub mod model;
pub mod schedule;

pub use config::{load_cluster, load_cluster_from_str};
pub use error::LabError;
pub use model::*;
