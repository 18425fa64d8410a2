//! `lab scenario gen`: a deterministic scale config (nodes, NodePort Services with their
//! Deployments, clients and a plan) as lab-config YAML text.
//!
//! Layout of a generated config (documented in the README, "Generated scale configs"):
//! - `nodeNetwork: 172.16.0.0/16`, router 172.16.0.1, node *i* (`node-<i>`, zero-padded) at
//!   172.16.0.0 + 2 + *i*;
//! - `clusterCIDR: 10.0.0.0/8`, node *i*'s podCIDR the *i*-th block just big enough for its
//!   share of the pods (at least /28);
//! - per Service *j*: Deployment `web-<j>` (`replicas` pods, nginx on port 80) and NodePort
//!   Service `web-<j>` (port 80), `externalTrafficPolicy` from `--policy` (`mixed`: even *j*
//!   Cluster, odd *j* Local);
//! - two external clients `client-1` (203.0.113.10) and `client-2` (203.0.113.11) that reach
//!   every node;
//! - the plan: request *k* goes from client `k % 2 + 1` to Service `k % services` through a
//!   node drawn from a ChaCha RNG seeded with `seed` (consecutive identical requests merged
//!   into one entry with a `count`); entries for Local Services set `connectTimeout: 1s`,
//!   since nodes without a local endpoint drop the SYN.

use std::fmt::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::LabError;

/// `externalTrafficPolicy` of the generated Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenPolicy {
    Cluster,
    Local,
    /// Even Services Cluster, odd ones Local.
    Mixed,
}

impl std::str::FromStr for GenPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "Cluster" | "cluster" => Ok(GenPolicy::Cluster),
            "Local" | "local" => Ok(GenPolicy::Local),
            "mixed" | "Mixed" => Ok(GenPolicy::Mixed),
            other => Err(format!("{other:?} is not Cluster, Local or mixed")),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    pub nodes: u32,
    pub services: u32,
    pub replicas: u32,
    pub requests: u64,
    pub policy: GenPolicy,
    pub seed: u64,
}

/// Limits: the node network is a /16, NodePorts come from 30000-32767, a Deployment has at
/// most 1000 replicas.
pub const MAX_NODES: u32 = 65_000;
pub const MAX_SERVICES: u32 = 2_000;
pub const MAX_REPLICAS: u32 = 1_000;
pub const MAX_REQUESTS: u64 = 10_000_000;

const CLIENTS: u64 = 2;

impl GenSpec {
    fn check(&self) -> Result<(), LabError> {
        let bad = |flag: &str, v: u64, max: u64| {
            LabError::invalid("command line", flag, format!("{v} is not in 1..={max}"))
        };
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(bad("--nodes", self.nodes.into(), MAX_NODES.into()));
        }
        if !(1..=MAX_SERVICES).contains(&self.services) {
            return Err(bad("--services", self.services.into(), MAX_SERVICES.into()));
        }
        if self.replicas > MAX_REPLICAS {
            return Err(LabError::invalid(
                "command line",
                "--replicas",
                format!("{} is not in 0..={MAX_REPLICAS}", self.replicas),
            ));
        }
        if self.requests > MAX_REQUESTS {
            return Err(LabError::invalid(
                "command line",
                "--requests",
                format!("{} is not in 0..={MAX_REQUESTS}", self.requests),
            ));
        }
        Ok(())
    }

    fn local(&self, service: u32) -> bool {
        match self.policy {
            GenPolicy::Cluster => false,
            GenPolicy::Local => true,
            GenPolicy::Mixed => service % 2 == 1,
        }
    }

    /// Host bits of each node's podCIDR: room for its share of the pods plus a margin.
    fn pod_host_bits(&self) -> u32 {
        let pods = u64::from(self.services) * u64::from(self.replicas);
        let per_node = pods.div_ceil(u64::from(self.nodes)) * 5 / 4 + 4;
        (4..=16).find(|h| (1u64 << h) - 3 >= per_node).unwrap_or(16)
    }
}

/// The config text for `spec` (deterministic: same spec, same bytes).
pub fn scale_config(spec: &GenSpec) -> Result<String, LabError> {
    spec.check()?;
    let host_bits = spec.pod_host_bits();
    if u64::from(spec.nodes) << host_bits > 1 << 24 {
        return Err(LabError::invalid(
            "command line",
            "--nodes",
            format!(
                "{} nodes with /{} podCIDRs do not fit clusterCIDR 10.0.0.0/8 (fewer replicas per node)",
                spec.nodes,
                32 - host_bits
            ),
        ));
    }
    let mut out = String::new();
    header(&mut out, spec);
    nodes(&mut out, spec, host_bits);
    out.push_str("clients:\n");
    for c in 0..CLIENTS {
        let _ = writeln!(
            out,
            "  - {{name: client-{}, ip: 203.0.113.{}}}",
            c + 1,
            10 + c
        );
    }
    manifests(&mut out, spec);
    plan(&mut out, spec);
    Ok(out)
}

fn header(out: &mut String, spec: &GenSpec) {
    let policy = match spec.policy {
        GenPolicy::Cluster => "Cluster",
        GenPolicy::Local => "Local",
        GenPolicy::Mixed => "mixed",
    };
    let _ = writeln!(
        out,
        "# Generated scale config: {} nodes, {} NodePort Services x {} replicas, {} requests \
         (externalTrafficPolicy {policy}).\n\
         # lab scenario gen --nodes {} --services {} --replicas {} --requests {} --policy {policy} --seed {}\n\
         seed: {}\n\
         nodeNetwork: 172.16.0.0/16\n\
         router: 172.16.0.1\n\
         clusterCIDR: 10.0.0.0/8",
        spec.nodes,
        spec.services,
        spec.replicas,
        spec.requests,
        spec.nodes,
        spec.services,
        spec.replicas,
        spec.requests,
        spec.seed,
        spec.seed,
    );
}

fn width(n: u32) -> usize {
    n.saturating_sub(1).to_string().len()
}

fn node_name(spec: &GenSpec, i: u32) -> String {
    format!("node-{i:0w$}", w = width(spec.nodes))
}

fn nodes(out: &mut String, spec: &GenSpec, host_bits: u32) {
    out.push_str("nodes:\n");
    for i in 0..spec.nodes {
        let ip = std::net::Ipv4Addr::from(u32::from_be_bytes([172, 16, 0, 0]) + 2 + i);
        let pod_net = std::net::Ipv4Addr::from((10u32 << 24) + (i << host_bits));
        let _ = writeln!(
            out,
            "  - {{name: {}, ip: {ip}, podCIDR: {pod_net}/{}}}",
            node_name(spec, i),
            32 - host_bits
        );
    }
}

fn manifests(out: &mut String, spec: &GenSpec) {
    out.push_str("manifests:\n");
    let w = width(spec.services);
    for j in 0..spec.services {
        let name = format!("web-{j:0w$}");
        let policy = if spec.local(j) { "Local" } else { "Cluster" };
        let _ = write!(
            out,
            "  - |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {{name: {name}}}\n    spec:\n      replicas: {}\n      selector: {{matchLabels: {{app: {name}}}}}\n      template:\n        metadata: {{labels: {{app: {name}}}}}\n        spec:\n          containers:\n            - {{name: nginx, image: nginx:1.27, ports: [{{containerPort: 80}}]}}\n    ---\n    apiVersion: v1\n    kind: Service\n    metadata: {{name: {name}}}\n    spec:\n      type: NodePort\n      externalTrafficPolicy: {policy}\n      selector: {{app: {name}}}\n      ports: [{{port: 80, targetPort: 80}}]\n",
            spec.replicas
        );
    }
}

fn plan(out: &mut String, spec: &GenSpec) {
    if spec.requests == 0 {
        return;
    }
    out.push_str("plan:\n");
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let w = width(spec.services);
    let mut last: Option<(u64, u32, u32)> = None;
    let mut count = 0u64;
    let flush = |out: &mut String, entry: (u64, u32, u32), count: u64| {
        let (client, svc, node) = entry;
        let timeout = if spec.local(svc) {
            ", connectTimeout: 1s"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  - {{from: client-{}, to: {}, service: default/web-{svc:0w$}, count: {count}{timeout}}}",
            client + 1,
            node_name(spec, node),
        );
    };
    for k in 0..spec.requests {
        let svc = (k % u64::from(spec.services)) as u32;
        let node = rng.random_range(0..spec.nodes);
        let entry = (k % CLIENTS, svc, node);
        match last {
            Some(prev) if prev == entry => count += 1,
            Some(prev) => {
                flush(out, prev, count);
                last = Some(entry);
                count = 1;
            }
            None => {
                last = Some(entry);
                count = 1;
            }
        }
    }
    if let Some(prev) = last {
        flush(out, prev, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nodes: u32, services: u32, replicas: u32, requests: u64, policy: GenPolicy) -> GenSpec {
        GenSpec {
            nodes,
            services,
            replicas,
            requests,
            policy,
            seed: 3,
        }
    }

    #[test]
    fn generated_configs_load_and_are_deterministic() {
        let s = spec(12, 5, 3, 40, GenPolicy::Mixed);
        let text = scale_config(&s).unwrap();
        assert_eq!(text, scale_config(&s).unwrap());
        let c = crate::load_cluster_from_str(&text, std::path::Path::new("gen.yaml"), None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.nodes.len(), 12);
        assert_eq!(c.pods.len(), 15);
        assert_eq!(c.services.len(), 6); // + default/kubernetes
        assert_eq!(c.plan.iter().map(|p| u64::from(p.count)).sum::<u64>(), 40);
        let local = c
            .services
            .iter()
            .filter(|s| s.external_traffic_policy == nodeport::TrafficPolicy::Local)
            .count();
        assert_eq!(local, 2); // web-1, web-3
        assert_eq!(c.seed, 3);
    }

    #[test]
    fn packed_nodes_get_bigger_pod_cidrs() {
        let s = spec(2, 10, 100, 1, GenPolicy::Cluster);
        let c =
            crate::load_cluster_from_str(&scale_config(&s).unwrap(), "g".as_ref(), None).unwrap();
        assert_eq!(c.pods.len(), 1000);
        assert!(c.nodes.iter().all(|n| n.pod_cidr.prefix_len() == 22));
    }

    #[test]
    fn limits_are_errors() {
        for s in [
            spec(0, 1, 1, 1, GenPolicy::Cluster),
            spec(1, 0, 1, 1, GenPolicy::Cluster),
            spec(1, 1, 1001, 1, GenPolicy::Cluster),
            spec(65_001, 1, 1, 1, GenPolicy::Cluster),
            spec(1, 1, 1, 10_000_001, GenPolicy::Cluster),
        ] {
            let Err(e) = scale_config(&s) else {
                panic!("{s:?} accepted");
            };
            let e = e.to_string();
            assert!(e.starts_with("command line: --"), "{e}");
        }
    }
}
