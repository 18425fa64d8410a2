//! The scheduler: which nodes may take a pod (taints/tolerations, nodeSelector,
//! PreferNoSchedule), which one does (least loaded, ties broken by the seeded RNG), and the
//! pod's name and addresses there (IPv6: the IPv4 address's offset in the node's IPv6 pod
//! CIDR, when it has one).
//!
//! Cost: one placement is O(candidate nodes): per-node pod counts are kept indexed by node,
//! never recounted from the pod list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Toleration;
use nodeport::Protocol;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::naming::random_suffix;
use crate::apps::AppSpec;
use crate::error::LabError;
use crate::manifest::ManifestDoc;
use crate::model::{Node, Pod, Taint};

/// Whether a toleration tolerates a taint (`ToleratesTaint` in k8s.io/api/core/v1).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        // Empty key with Exists matches every taint.
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// Why a node cannot take a pod (`None` = eligible).
pub fn ineligible_reason(
    node: &Node,
    tolerations: &[Toleration],
    node_selector: &BTreeMap<String, String>,
) -> Option<String> {
    for taint in &node.taints {
        if taint.effect == "PreferNoSchedule" {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Some(format!(
                "untolerated taint {{{}: {}}}:{}",
                taint.key,
                taint.value.as_deref().unwrap_or(""),
                taint.effect
            ));
        }
    }
    for (k, v) in node_selector {
        if node.labels.get(k) != Some(v) {
            return Some(format!("nodeSelector {k}={v} not matched"));
        }
    }
    None
}

pub(super) fn prefers_not(node: &Node, tolerations: &[Toleration]) -> bool {
    node.taints
        .iter()
        .any(|t| t.effect == "PreferNoSchedule" && !tolerations.iter().any(|x| tolerates(x, t)))
}

/// The nodes with their names indexed, per-node pod counts and pod address pools.
pub(super) struct Placement<'a> {
    pub nodes: &'a [Node],
    pub by_name: HashMap<&'a str, usize>,
    /// Deployment pods per node (by node index).
    pods_on: Vec<u32>,
    /// Next host offset to try in each node's podCIDR (.0 network, .1 cni0: from 2).
    next_ip: Vec<u32>,
    used_ips: HashSet<Ipv4Addr>,
    pod_names: HashSet<String>,
}

impl<'a> Placement<'a> {
    /// `reserved`: addresses already taken (explicit client addresses).
    pub fn new(nodes: &'a [Node], reserved: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        Placement {
            nodes,
            by_name: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.as_str(), i))
                .collect(),
            pods_on: vec![0; nodes.len()],
            next_ip: vec![2; nodes.len()],
            used_ips: reserved.into_iter().collect(),
            pod_names: HashSet::new(),
        }
    }

    /// The next free address of node `i`'s podCIDR, sequential from .2, skipping reserved
    /// addresses; `None` when the podCIDR is full.
    pub fn take_ip(&mut self, i: usize) -> Option<Ipv4Addr> {
        let cidr = self.nodes[i].pod_cidr;
        let base = u32::from(cidr.network());
        let last = u32::from(cidr.broadcast());
        let next = &mut self.next_ip[i];
        while let Some(addr) = base.checked_add(*next).filter(|a| *a < last) {
            *next += 1;
            let ip = Ipv4Addr::from(addr);
            if self.used_ips.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    /// Recount the pods per node from a pod list (after a scale action removed some).
    pub fn recount(&mut self, pods: &[Pod]) {
        self.pods_on.iter_mut().for_each(|c| *c = 0);
        for p in pods {
            if let Some(&i) = self.by_name.get(p.node.as_str()) {
                self.pods_on[i] += 1;
            }
        }
    }
}

/// What the scheduler keeps per Deployment to place more replicas later (`scale:`).
pub(super) struct DeploySched<'a> {
    pub doc: &'a ManifestDoc,
    pub namespace: String,
    pub name: String,
    pub hash: String,
    pub labels: BTreeMap<String, String>,
    pub container_ports: Vec<(String, u16, Protocol)>,
    /// The app of each container.
    pub apps: Vec<AppSpec>,
    pub readiness_probe: Option<crate::model::ReadinessProbe>,
    /// Eligible node indices (preferred ones when any), in node order.
    pub candidates: Vec<usize>,
    /// Pods of this Deployment on each candidate (same order as `candidates`).
    pub own: Vec<u32>,
    /// Pod-name suffixes: one stream per ReplicaSet.
    pub name_rng: ChaCha8Rng,
}

impl DeploySched<'_> {
    /// Recount this Deployment's pods per candidate from a pod list.
    pub fn recount(&mut self, pods: &[Pod], placement: &Placement) {
        let mut per_node = vec![0u32; placement.nodes.len()];
        for p in pods {
            if p.namespace == self.namespace && p.deployment == self.name {
                if let Some(&i) = placement.by_name.get(p.node.as_str()) {
                    per_node[i] += 1;
                }
            }
        }
        self.own = self.candidates.iter().map(|&i| per_node[i]).collect();
    }
}

/// Place one replica: the least loaded candidate (fewest pods of this Deployment, then
/// fewest pods), ties broken by the RNG; next free address of that node's podCIDR.
pub(super) fn place_one(
    ds: &mut DeploySched,
    placement: &mut Placement,
    sched_rng: &mut ChaCha8Rng,
) -> Result<Pod, LabError> {
    let (ns, name) = (&ds.namespace, &ds.name);
    let load = |k: usize| (ds.own[k], placement.pods_on[ds.candidates[k]]);
    let Some(best) = (0..ds.candidates.len()).map(load).min() else {
        return Err(ds.doc.err(
            "spec.template.spec",
            format!("no eligible node for a replica of deployment {ns}/{name}"),
        ));
    };
    let is_best = |k: &usize| load(*k) == best;
    let ties = (0..ds.candidates.len()).filter(is_best).count();
    let pick = sched_rng.random_range(0..ties);
    let Some(k) = (0..ds.candidates.len()).filter(is_best).nth(pick) else {
        return Err(ds.doc.err("spec.template.spec", "no candidate node left"));
    };
    let i = ds.candidates[k];
    let node = &placement.nodes[i];
    let ip = placement.take_ip(i).ok_or_else(|| {
        ds.doc.err(
            "spec.replicas",
            format!(
                "node {}'s podCIDR {} has no free address left",
                node.name, node.pod_cidr
            ),
        )
    })?;
    let pod_name = loop {
        let n = format!("{name}-{}-{}", ds.hash, random_suffix(&mut ds.name_rng, 5));
        if placement.pod_names.insert(n.clone()) {
            break n;
        }
    };
    ds.own[k] += 1;
    placement.pods_on[i] += 1;
    let mut pod = Pod {
        namespace: ns.clone(),
        name: pod_name,
        deployment: name.clone(),
        node: node.name.clone(),
        ip,
        ipv6: node.ipv6_of_pod(ip),
        labels: ds.labels.clone(),
        container_ports: ds.container_ports.clone(),
        apps: ds.apps.clone(),
        ready: true,
        restarts: 0,
        readiness_probe: ds.readiness_probe.clone(),
    };
    // A readinessProbe on a port the app does not listen on never passes: kubelet never
    // marks the pod Ready, so its endpoints stay `ready: false`.
    pod.ready = pod
        .readiness_probe
        .as_ref()
        .is_none_or(|pr| pod.tcp_ports().contains(&pr.check.port()));
    Ok(pod)
}
