//! What needs the built objects: plan steps checked against the Services, `scale:` actions
//! (pods deleted or placed, EndpointSlices recomputed), `crash:` targets, `links:` checked against pods and
//! clients.

use std::collections::{HashMap, HashSet};

use nodeport::{EndpointSlice, ServiceType};
use rand_chacha::ChaCha8Rng;

use super::endpoints::{service_slices, Pending, PodIndex};
use super::placement::{place_one, DeploySched, Placement};
use crate::error::LabError;
use crate::model::{
    ActionKind, Client, CrashTarget, LinkSpec, PlanAction, PlanStep, Pod, PodRef, Scaled, Target,
};

/// Fill in the default service of each step and check service references and targets.
pub(super) fn plan(
    f: &str,
    plan: &[PlanStep],
    services: &[nodeport::Service],
) -> Result<Vec<PlanStep>, LabError> {
    let user_services: Vec<String> = services
        .iter()
        .filter(|s| !(s.namespace == "default" && s.name == "kubernetes"))
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    let by_ref: HashMap<String, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{}/{}", s.namespace, s.name), i))
        .collect();
    let mut plan = plan.to_vec();
    for (i, step) in plan.iter_mut().enumerate() {
        let inv =
            |field: &str, msg: String| LabError::invalid(f, format!("plan[{i}].{field}"), msg);
        if step.service.is_none() && step.port.is_none() {
            match user_services.as_slice() {
                [only] => step.service = Some(only.clone()),
                _ => {
                    return Err(inv(
                        "service",
                        format!(
                            "missing; set `service: namespace/name` or `port` (services: {})",
                            user_services.join(", ")
                        ),
                    ))
                }
            }
        }
        let Some(sref) = step.service.clone() else {
            continue;
        };
        let Some(svc) = by_ref.get(&sref).map(|&k| &services[k]) else {
            return Err(inv(
                "service",
                format!(
                    "unknown service {sref:?} (known: {})",
                    user_services.join(", ")
                ),
            ));
        };
        pick_service_port(step, svc, &sref).map_err(|(field, msg)| inv(field, msg))?;
        check_family(step, svc, &sref).map_err(|msg| inv("family", msg))?;
        if matches!(step.target, Target::LoadBalancer) && svc.type_ == ServiceType::ClusterIp {
            return Err(inv(
                "to",
                format!("the load balancer forwards to node ports, but service {sref} is type ClusterIP"),
            ));
        }
        if step.port.is_none()
            && matches!(step.target, Target::Node(_))
            && svc.type_ == ServiceType::ClusterIp
        {
            return Err(inv(
                "to",
                format!("service {sref} is type ClusterIP and has no nodePort; target its ClusterIP address or set `port`"),
            ));
        }
    }
    Ok(plan)
}

/// A request to a node or the load balancer over a family the Service does not have would
/// find no rule in that family's table (kube-proxy programs each family's frontends only);
/// refuse it as a config mistake. A raw address is taken as given.
fn check_family(step: &PlanStep, svc: &nodeport::Service, sref: &str) -> Result<(), String> {
    if matches!(step.target, Target::Address(_))
        || svc.ip_families.is_empty()
        || svc.ip_families.contains(&step.family)
    {
        return Ok(());
    }
    let has: Vec<&str> = svc.ip_families.iter().map(|f| f.as_str()).collect();
    let hint = match step.family {
        nodeport::IpFamily::V4 => "; set `family: IPv6`",
        nodeport::IpFamily::V6 => "",
    };
    Err(format!(
        "service {sref} has no {} family (ipFamilies: {}){hint}",
        step.family.as_str(),
        has.join(", ")
    ))
}

/// `portName:` (must name a port of the service) or a `port:` that is one of the service's
/// port numbers picks that service port; any other `port:` stays an explicit destination.
fn pick_service_port(
    step: &mut PlanStep,
    svc: &nodeport::Service,
    sref: &str,
) -> Result<(), (&'static str, String)> {
    if let Some(name) = &step.port_name {
        let Some(i) = svc.ports.iter().position(|p| &p.name == name) else {
            let names: Vec<String> = svc
                .ports
                .iter()
                .map(|p| format!("{:?} ({})", p.name, p.port))
                .collect();
            return Err((
                "portName",
                format!(
                    "service {sref} has no port named {name:?} (ports: {})",
                    names.join(", ")
                ),
            ));
        };
        let picked = svc.ports[i].protocol;
        let udp = nodeport::Protocol::Udp;
        if (picked == udp || step.protocol == udp) && picked != step.protocol {
            return Err((
                "portName",
                format!(
                    "port {name:?} of service {sref} is {}, but the entry sends {} (set `protocol`)",
                    picked.as_lower().to_uppercase(),
                    step.protocol.as_lower().to_uppercase()
                ),
            ));
        }
        step.service_port = Some(i);
    } else if let Some(n) = step.port {
        // The same number may be both TCP and UDP (DNS's 53): the step's protocol first.
        let same = |p: &&nodeport::ServicePort| p.port == n && p.protocol == step.protocol;
        let pos = svc.ports.iter().position(|p| same(&p));
        if let Some(i) = pos.or_else(|| svc.ports.iter().position(|p| p.port == n)) {
            step.service_port = Some(i);
            step.port = None;
        }
    } else if step.protocol == nodeport::Protocol::Udp {
        // A UDP entry uses the service's first UDP port.
        let Some(i) = svc.ports.iter().position(|p| p.protocol == step.protocol) else {
            return Err((
                "protocol",
                format!("service {sref} has no UDP port; set `port`, `portName` or `protocol`"),
            ));
        };
        step.service_port = Some(i);
    }
    Ok(())
}

/// The built state `scale:` actions work on.
pub(super) struct ScaleState<'a, 'n> {
    pub scheds: Vec<DeploySched<'a>>,
    pub placement: Placement<'n>,
    pub sched_rng: ChaCha8Rng,
    pub services: Vec<nodeport::Service>,
    pub pending: Vec<Pending<'a>>,
    /// The current slices, one list per pending service.
    pub slices: Vec<Vec<EndpointSlice>>,
}

/// Run the `scale:` and `delete:` actions in order: scale-down deletes the newest pods,
/// scale-up places new replicas, a delete removes one pod and its ReplicaSet places a
/// replacement; the Services selecting the Deployment get new EndpointSlices.
pub(super) fn scale_actions(
    f: &str,
    actions: &[PlanAction],
    pods: &[Pod],
    st: &mut ScaleState,
) -> Result<Vec<PlanAction>, LabError> {
    let mut actions = actions.to_vec();
    let mut cur_pods = pods.to_vec();
    for a in &mut actions {
        let (k, removed, want) = match &a.kind {
            ActionKind::Scale {
                namespace,
                deployment,
                replicas,
            } => {
                let k = find_sched(f, a.entry, "scale.deployment", st, namespace, deployment)?;
                let own: Vec<&Pod> = own_pods(&cur_pods, &st.scheds[k]).collect();
                let removed: Vec<Pod> = own
                    .iter()
                    .skip(*replicas as usize)
                    .map(|p| (*p).clone())
                    .collect();
                (k, removed, *replicas as usize)
            }
            ActionKind::Delete(target) => {
                let pod = deleted_pod(f, a.entry, &cur_pods, target)?;
                let k = find_sched(f, a.entry, "delete", st, &pod.namespace, &pod.deployment)?;
                let want = own_pods(&cur_pods, &st.scheds[k]).count();
                (k, vec![pod], want)
            }
            ActionKind::Wait(_) | ActionKind::Crash(_) => continue,
        };
        let gone: HashSet<&str> = removed.iter().map(|p| p.name.as_str()).collect();
        cur_pods.retain(|p| !gone.contains(p.name.as_str()));
        let ds = &mut st.scheds[k];
        let have = own_pods(&cur_pods, ds).count();
        st.placement.recount(&cur_pods);
        ds.recount(&cur_pods, &st.placement);
        let mut added = Vec::new();
        for _ in have..want {
            let pod = place_one(ds, &mut st.placement, &mut st.sched_rng).map_err(|e| {
                let (ns, name) = (&ds.namespace, &ds.name);
                let (field, what) = match &a.kind {
                    ActionKind::Scale { .. } => {
                        ("scale.replicas", format!("scaling {ns}/{name} to {want}"))
                    }
                    _ => ("delete", format!("replacing a deleted pod of {ns}/{name}")),
                };
                LabError::invalid(
                    f,
                    format!("plan[{}].{field}", a.entry),
                    format!("{what}: {e}"),
                )
            })?;
            cur_pods.push(pod.clone());
            added.push(pod);
        }
        let index = PodIndex::new(&cur_pods);
        for (j, p) in st.pending.iter().enumerate() {
            let svc = &mut st.services[p.index];
            if p.selects(svc, &ds.namespace, &ds.labels) {
                st.slices[j] = service_slices(svc, p, &index)?;
            }
        }
        a.scaled = Some(Scaled {
            pods: cur_pods.clone(),
            slices: st.slices.iter().flatten().cloned().collect(),
            added,
            removed,
        });
    }
    Ok(actions)
}

/// A Deployment's pods, oldest first.
fn own_pods<'p>(pods: &'p [Pod], ds: &DeploySched<'_>) -> impl Iterator<Item = &'p Pod> {
    let (ns, name) = (ds.namespace.clone(), ds.name.clone());
    pods.iter()
        .filter(move |p| p.namespace == ns && p.deployment == name)
}

/// The index of a Deployment's scheduler state; an error naming `plan[entry].field`.
fn find_sched(
    f: &str,
    entry: usize,
    field: &str,
    st: &ScaleState,
    namespace: &str,
    deployment: &str,
) -> Result<usize, LabError> {
    st.scheds
        .iter()
        .position(|d| d.namespace == namespace && d.name == deployment)
        .ok_or_else(|| {
            let known: Vec<String> = st
                .scheds
                .iter()
                .map(|d| format!("{}/{}", d.namespace, d.name))
                .collect();
            LabError::invalid(
                f,
                format!("plan[{entry}].{field}"),
                format!(
                    "unknown deployment {namespace}/{deployment} (known: {})",
                    known.join(", ")
                ),
            )
        })
}

/// The pod a `delete:` entry removes: the named pod, or the Deployment's oldest pod.
fn deleted_pod(f: &str, entry: usize, pods: &[Pod], target: &PodRef) -> Result<Pod, LabError> {
    let (field, found) = match target {
        PodRef::Pod { namespace, name } => (
            "delete.pod",
            pods.iter()
                .find(|p| p.namespace == *namespace && p.name == *name),
        ),
        PodRef::Deployment { namespace, name } => (
            "delete.deployment",
            pods.iter()
                .find(|p| p.namespace == *namespace && p.deployment == *name),
        ),
    };
    found.cloned().ok_or_else(|| {
        let known: Vec<String> = pods
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        let what = match target {
            PodRef::Pod { namespace, name } => format!("no pod {namespace}/{name}"),
            PodRef::Deployment { namespace, name } => {
                format!("deployment {namespace}/{name} has no pod (or does not exist)")
            }
        };
        LabError::invalid(
            f,
            format!("plan[{entry}].{field}"),
            format!(
                "{what} at this point of the plan (pods: {})",
                known.join(", ")
            ),
        )
    })
}

/// Every `links:` entry names a client, a pod or a Deployment.
pub(super) fn links(
    f: &str,
    links: &[LinkSpec],
    clients: &[Client],
    pods: &[Pod],
) -> Result<(), LabError> {
    for (i, l) in links.iter().enumerate() {
        let known = clients.iter().any(|c| c.name == l.link)
            || pods
                .iter()
                .any(|p| p.name == l.link || p.deployment == l.link);
        if !known {
            return Err(LabError::invalid(
                f,
                format!("links[{i}].link"),
                format!(
                    "unknown link {:?}: name a client, a pod or a Deployment (clients: {})",
                    l.link,
                    clients
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Resolve every `crash:` entry to the pod it hits, against the pods that exist at that
/// point of the plan (after the `scale:` entries before it). `crash: {deployment: D}` hits
/// D's oldest pod (first in pod order), so the choice is the same on every run.
pub(super) fn crash_targets(
    f: &str,
    actions: &mut [PlanAction],
    pods: &[Pod],
) -> Result<(), LabError> {
    let mut cur: Vec<Pod> = pods.to_vec();
    for a in actions.iter_mut() {
        if let Some(sc) = &a.scaled {
            cur = sc.pods.clone();
        }
        let ActionKind::Crash(c) = &mut a.kind else {
            continue;
        };
        let (field, found) = match &c.target {
            CrashTarget::Pod(name) => (
                "pod",
                cur.iter()
                    .find(|p| p.namespace == c.namespace && p.name == *name),
            ),
            CrashTarget::Deployment(name) => (
                "deployment",
                cur.iter()
                    .find(|p| p.namespace == c.namespace && p.deployment == *name),
            ),
        };
        let Some(pod) = found else {
            let name = match &c.target {
                CrashTarget::Pod(n) | CrashTarget::Deployment(n) => n,
            };
            let mut known: Vec<String> = cur
                .iter()
                .take(10)
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect();
            if cur.len() > known.len() {
                known.push("…".into());
            }
            let what = match &c.target {
                CrashTarget::Pod(_) => format!("no pod {}/{name}", c.namespace),
                CrashTarget::Deployment(_) => {
                    format!("deployment {}/{name} has no pod", c.namespace)
                }
            };
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            return Err(LabError::invalid(
                f,
                format!("plan[{}].crash.{field}", a.entry),
                format!("{what} at this point of the plan (pods: {known})"),
            ));
        };
        c.pod = Some(pod.name.clone());
    }
    Ok(())
}
