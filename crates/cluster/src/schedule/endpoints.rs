//! EndpointSlices: what the EndpointSlice controller publishes for a Service over the pods its
//! selector matches (one slice set per IP family of the Service, `addressType` IPv4/IPv6,
//! grouped by resolved ports), and the resolution of named target ports.
//!
//! Cost: pods are indexed by (namespace, label, value) once per pod set, so a Service's
//! slices cost O(pods it selects), each Service is computed once, and a `scale:` action
//! recomputes only the Services that select the scaled Deployment.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use nodeport::{Endpoint, EndpointPort, EndpointSlice, IpFamily};

use crate::error::LabError;
use crate::manifest::ManifestDoc;
use crate::model::Pod;

/// A target port before resolution against pods.
#[derive(Debug, Clone)]
pub(super) enum TargetPort {
    Number(u16),
    Named(String),
}

/// A converted service waiting for its EndpointSlices: its index in the service list, its
/// manifest, selector and unresolved target ports.
pub(super) struct Pending<'a> {
    pub index: usize,
    pub doc: &'a ManifestDoc,
    pub selector: Option<BTreeMap<String, String>>,
    pub targets: Vec<TargetPort>,
}

impl Pending<'_> {
    /// The selector when the Service has a non-empty one (else no managed EndpointSlice).
    fn selector(&self) -> Option<&BTreeMap<String, String>> {
        self.selector.as_ref().filter(|s| !s.is_empty())
    }

    /// Whether this Service selects pods with these labels in `namespace`.
    pub fn selects(
        &self,
        svc: &nodeport::Service,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        svc.namespace == namespace
            && self
                .selector()
                .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// Pods by (namespace, label key, label value), each list in pod order.
pub(super) struct PodIndex<'p> {
    pods: &'p [Pod],
    by_label: HashMap<(&'p str, &'p str, &'p str), Vec<usize>>,
}

impl<'p> PodIndex<'p> {
    pub fn new(pods: &'p [Pod]) -> Self {
        let mut by_label: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, p) in pods.iter().enumerate() {
            for (k, v) in &p.labels {
                by_label
                    .entry((p.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        PodIndex { pods, by_label }
    }

    /// The pods of `namespace` whose labels match every selector entry, in pod order.
    fn matching(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Vec<&'p Pod> {
        let Some((k, v)) = selector.iter().next() else {
            return Vec::new();
        };
        let Some(list) = self.by_label.get(&(namespace, k.as_str(), v.as_str())) else {
            return Vec::new();
        };
        list.iter()
            .map(|&i| &self.pods[i])
            .filter(|p| selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .collect()
    }
}

/// Endpoints grouped by their resolved ports.
type Groups = Vec<(Vec<EndpointPort>, Vec<Endpoint>)>;

/// The EndpointSlices of one pending service over the indexed pods; resolves its named target
/// ports (first pod that has the name). Like the EndpointSlice controller
/// (pkg/controller/endpointslice `getAddressTypesForService`), one slice set per family of
/// the Service, each with only the pods' addresses of that family (a pod on an IPv4-only node
/// has none for IPv6).
pub(super) fn service_slices(
    svc: &mut nodeport::Service,
    pending: &Pending,
    pods: &PodIndex,
) -> Result<Vec<EndpointSlice>, LabError> {
    let Some(selector) = pending.selector() else {
        return Ok(Vec::new()); // no selector: no managed EndpointSlice
    };
    let matching = pods.matching(&svc.namespace, selector);
    let families = if svc.ip_families.is_empty() {
        vec![IpFamily::V4]
    } else {
        svc.ip_families.clone()
    };
    let per_family: Vec<(IpFamily, Groups)> = families
        .iter()
        .map(|&fam| (fam, groups(svc, pending, &matching, fam)))
        .collect();
    let all: Groups = per_family.iter().flat_map(|(_, g)| g.clone()).collect();
    resolve_named_ports(svc, pending, &all, &matching)?;
    let mut out = Vec::new();
    for (address_type, mut groups) in per_family {
        if groups.is_empty() {
            let ports = svc
                .ports
                .iter()
                .filter(|p| p.target_port != 0)
                .map(|p| EndpointPort {
                    name: p.name.clone(),
                    protocol: p.protocol,
                    port: p.target_port,
                })
                .collect();
            groups.push((ports, Vec::new()));
        }
        out.extend(groups.into_iter().map(|(ports, endpoints)| EndpointSlice {
            service: svc.service_ref(),
            address_type,
            ports,
            endpoints,
        }));
    }
    Ok(out)
}

/// The matching pods' endpoints of one family, grouped by their resolved ports (named target
/// ports can differ per pod).
fn groups(svc: &nodeport::Service, pending: &Pending, matching: &[&Pod], fam: IpFamily) -> Groups {
    let mut groups: Groups = Vec::new();
    for pod in matching {
        let ip = match fam {
            IpFamily::V4 => IpAddr::V4(pod.ip),
            IpFamily::V6 => match pod.ipv6 {
                Some(ip) => IpAddr::V6(ip),
                None => continue,
            },
        };
        let eps = pod_ports(svc, &pending.targets, pod);
        let ep = Endpoint {
            ip,
            node_name: Some(pod.node.clone()),
            ready: pod.ready,
            serving: pod.ready,
            terminating: false,
        };
        match groups.iter_mut().find(|(p, _)| *p == eps) {
            Some((_, list)) => list.push(ep),
            None => groups.push((eps, vec![ep])),
        }
    }
    groups
}

/// The endpoint ports of one pod: numbered target ports as they are, named ones looked up in
/// the pod's container ports (left out when the pod has no such port).
fn pod_ports(svc: &nodeport::Service, targets: &[TargetPort], pod: &Pod) -> Vec<EndpointPort> {
    let mut eps = Vec::new();
    for (sp, tp) in svc.ports.iter().zip(targets) {
        let port = match tp {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Named(name) => pod
                .container_ports
                .iter()
                .find(|(n, _, proto)| n == name && *proto == sp.protocol)
                .map(|(_, p, _)| *p),
        };
        if let Some(port) = port {
            eps.push(EndpointPort {
                name: sp.name.clone(),
                protocol: sp.protocol,
                port,
            });
        }
    }
    eps
}

/// Resolve named target ports for the Service itself (first pod that has it).
fn resolve_named_ports(
    svc: &mut nodeport::Service,
    pending: &Pending,
    groups: &Groups,
    matching: &[&Pod],
) -> Result<(), LabError> {
    for (i, tp) in pending.targets.iter().enumerate() {
        let TargetPort::Named(name) = tp else {
            continue;
        };
        let found = groups
            .iter()
            .flat_map(|(p, _)| p.iter())
            .find(|p| p.name == svc.ports[i].name)
            .map(|p| p.port);
        match found {
            Some(p) => svc.ports[i].target_port = p,
            None if !matching.is_empty() => {
                return Err(pending.doc.err(
                    &format!("spec.ports[{i}].targetPort"),
                    format!(
                        "{name:?} matches no container port name of the selected pods ({})",
                        matching
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// The slices of every pending service (one list per pending service, in order).
pub(super) fn all_slices(
    services: &mut [nodeport::Service],
    pending: &[Pending],
    pods: &[Pod],
) -> Result<Vec<Vec<EndpointSlice>>, LabError> {
    let index = PodIndex::new(pods);
    pending
        .iter()
        .map(|p| service_slices(&mut services[p.index], p, &index))
        .collect()
}
