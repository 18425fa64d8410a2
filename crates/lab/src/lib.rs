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
//!
//! Modules: [`plan`] (run options, the expanded plan, the [`plan::Progress`] hook),
//! [`setup`] (the `sim::World` of a cluster), [`runner`] (dispatch + embedded mode),
//! [`realrun`] (real mode, `lab up/down/status/conntrack`), [`supervise`] (real mode's
//! kubelet: apps that exit restart with back-off), [`report`] (text and JSON),
//! [`diagram`] (`--diagram` SVG), [`progress`] (the stderr progress bar), [`explain`]
//! (`--explain`: a request in plain words), [`timings`] (`LAB_TIMINGS=1`: phase times for
//! benchmarks), [`serve`] (`lab serve`: the live page and its
//! JSON API; uses setup, runner, report, diagram, explain, rules). Dependencies run
//! one way: runner → realrun → setup, plan; nothing calls back into runner.

pub mod app;
pub mod control;
pub mod diagram;
pub mod explain;
pub mod plan;
pub mod progress;
pub mod realrun;
pub mod report;
pub mod rules;
pub mod runner;
pub mod serve;
pub mod setup;
pub mod supervise;
pub mod timings;
pub mod tokioloop;
pub mod verify;
pub mod workers;

pub use cluster::{load_cluster, load_cluster_from_str, Cluster, LabError};
pub use report::{Mode, Outcome, RequestResult, ScenarioResult};
