//! # lab — the user-facing side of nodeport-lab
//!
//! Loads a lab config (`lab-configs/*.yaml`: nodes, clients, load balancer, traffic plan and
//! real Kubernetes manifests), schedules the pods and allocates addresses like a cluster
//! would, and prints kubectl-like tables and scenario results.
//!
//! Pipeline: [`config::load_cluster`] = [`config`] (lab-config schema + validation) →
//! [`manifest`] (`apps/v1 Deployment` / `v1 Service` documents) → [`schedule`] (pods, IPs,
//! ClusterIPs, NodePorts, EndpointSlices) → [`cluster::Cluster`]. The runner turns a
//! `Cluster` into a running world and returns a [`report::ScenarioResult`].

pub mod diagram;
pub mod realrun;
pub mod report;
pub mod rules;
pub mod runner;
pub mod verify;

pub use cluster::{load_cluster, load_cluster_from_str, Cluster, LabError};
pub use report::{Mode, Outcome, RequestResult, ScenarioResult};
