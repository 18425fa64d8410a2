//! `apps/v1 Deployment` → its ReplicaSet's pods: spec checks (replicas, selector, template,
//! container ports), candidate nodes, and the initial placement of every replica.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::PodSpec;
use nodeport::Protocol;
use rand_chacha::ChaCha8Rng;

use super::naming::{pod_template_hash, rng_for};
use super::placement::{ineligible_reason, place_one, prefers_not, DeploySched, Placement};
use super::{check_labels, check_port, port_name, protocol};
use crate::apps::container_app;
use crate::config::LabConfig;
use crate::error::LabError;
use crate::manifest::ManifestDoc;
use crate::model::Pod;

/// Most replicas of one Deployment.
const MAX_REPLICAS: i32 = 1000;

/// Check every Deployment and place its replicas, in manifest order.
pub(super) fn schedule_all<'a>(
    cfg: &LabConfig,
    deployments: &[(&'a ManifestDoc, &'a Deployment)],
    placement: &mut Placement,
    sched_rng: &mut ChaCha8Rng,
) -> Result<(Vec<Pod>, Vec<DeploySched<'a>>), LabError> {
    let mut pods = Vec::new();
    let mut scheds = Vec::with_capacity(deployments.len());
    for (doc, d) in deployments {
        let (mut ds, replicas) = deploy_sched(cfg, doc, d, placement)?;
        for _ in 0..replicas {
            pods.push(place_one(&mut ds, placement, sched_rng)?);
        }
        scheds.push(ds);
    }
    Ok((pods, scheds))
}

/// One Deployment checked: what the scheduler needs to place its pods, and its replicas.
fn deploy_sched<'a>(
    cfg: &LabConfig,
    doc: &'a ManifestDoc,
    d: &Deployment,
    placement: &Placement,
) -> Result<(DeploySched<'a>, i32), LabError> {
    let spec = d.spec.as_ref().ok_or_else(|| doc.err("spec", "missing"))?;
    let ns = doc.object.namespace();
    let name = doc.object.name();
    let replicas = spec.replicas.unwrap_or(1);
    if replicas < 0 {
        return Err(doc.err("spec.replicas", format!("{replicas} must not be negative")));
    }
    if replicas > MAX_REPLICAS {
        return Err(doc.err(
            "spec.replicas",
            format!("{replicas} is more than the lab supports ({MAX_REPLICAS})"),
        ));
    }
    let tlabels = template_labels(doc, spec)?;
    let pspec = spec
        .template
        .spec
        .as_ref()
        .ok_or_else(|| doc.err("spec.template.spec", "missing"))?;
    let container_ports = container_ports(doc, pspec)?;
    let apps = pspec
        .containers
        .iter()
        .enumerate()
        .map(|(ci, c)| container_app(doc, ci, c))
        .collect::<Result<Vec<_>, _>>()?;
    let tolerations = pspec.tolerations.clone().unwrap_or_default();
    let selector = pspec.node_selector.clone().unwrap_or_default();
    check_labels(doc, "spec.template.spec.nodeSelector", &selector)?;
    let hash = pod_template_hash(&spec.template);
    // Pod-name suffixes: one stream per ReplicaSet, so scenarios do not share names.
    let name_rng = rng_for(cfg.seed, &format!("pod-names/{ns}/{name}-{hash}"));
    let mut labels = tlabels;
    labels.insert("pod-template-hash".into(), hash.clone());

    let eligible: Vec<usize> = (0..placement.nodes.len())
        .filter(|&i| ineligible_reason(&placement.nodes[i], &tolerations, &selector).is_none())
        .collect();
    if replicas > 0 && eligible.is_empty() {
        let reasons: Vec<String> = placement
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{}: {}",
                    n.name,
                    ineligible_reason(n, &tolerations, &selector).unwrap_or_default()
                )
            })
            .collect();
        return Err(doc.err(
            "spec.template.spec",
            format!(
                "no eligible node for a replica of deployment {ns}/{name}: 0/{} nodes are available ({})",
                placement.nodes.len(),
                reasons.join("; ")
            ),
        ));
    }
    let preferred: Vec<usize> = eligible
        .iter()
        .copied()
        .filter(|&i| !prefers_not(&placement.nodes[i], &tolerations))
        .collect();
    let candidates = if preferred.is_empty() {
        eligible
    } else {
        preferred
    };
    let own = vec![0; candidates.len()];
    let ds = DeploySched {
        doc,
        namespace: ns,
        name,
        hash,
        labels,
        container_ports,
        apps,
        candidates,
        own,
        name_rng,
    };
    Ok((ds, replicas))
}

/// `spec.template.metadata.labels`, checked against `spec.selector` (matchLabels only).
fn template_labels(
    doc: &ManifestDoc,
    spec: &DeploymentSpec,
) -> Result<BTreeMap<String, String>, LabError> {
    let tlabels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    check_labels(doc, "spec.template.metadata.labels", &tlabels)?;
    if spec
        .selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(doc.err(
            "spec.selector.matchExpressions",
            "not supported by the lab (use matchLabels)",
        ));
    }
    let sel = spec.selector.match_labels.clone().unwrap_or_default();
    if sel.is_empty() {
        return Err(doc.err("spec.selector.matchLabels", "missing or empty"));
    }
    check_labels(doc, "spec.selector.matchLabels", &sel)?;
    for (k, v) in &sel {
        if tlabels.get(k) != Some(v) {
            return Err(doc.err(
                "spec.selector.matchLabels",
                format!("{k}={v} does not match spec.template.metadata.labels"),
            ));
        }
    }
    Ok(tlabels)
}

/// (name, port, protocol) of every container port.
fn container_ports(
    doc: &ManifestDoc,
    pspec: &PodSpec,
) -> Result<Vec<(String, u16, Protocol)>, LabError> {
    if pspec.containers.is_empty() {
        return Err(doc.err(
            "spec.template.spec.containers",
            "at least one container is required",
        ));
    }
    let mut container_ports = Vec::new();
    for (ci, c) in pspec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let field = format!("spec.template.spec.containers[{ci}].ports[{pi}]");
            let port = check_port(doc, &format!("{field}.containerPort"), p.container_port)?;
            let proto = protocol(doc, &format!("{field}.protocol"), p.protocol.as_deref())?;
            let pname = p.name.clone().unwrap_or_default();
            if !pname.is_empty() {
                port_name(doc, &format!("{field}.name"), &pname)?;
            }
            container_ports.push((pname, port, proto));
        }
    }
    Ok(container_ports)
}
