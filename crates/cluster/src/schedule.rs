//! From a validated [`LabConfig`] to a [`Cluster`]: what the apiserver, the scheduler, the
//! ReplicaSet controller and the EndpointSlice controller would have done.
//!
//! Owns: scheduling (taints/tolerations, nodeSelector, spread), pod names and IPs, ClusterIP
//! and NodePort allocation, `v1 Service` → [`nodeport::Service`] conversion, EndpointSlices,
//! and the plan checks that need services. Deterministic for a seed: every random choice comes
//! from a ChaCha RNG derived from the seed and a purpose label.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nodeport::{
    Endpoint, EndpointPort, EndpointSlice, NodePortAllocator, PortRange, Protocol, ServicePort,
    ServiceType, SessionAffinity, TrafficPolicy,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::LabConfig;
use crate::error::LabError;
use crate::manifest::{ManifestDoc, Object};
use crate::model::{ActionKind, Client, ClientAttach, Cluster, Node, Pod, Taint, Target};

/// The alphabet of Kubernetes' `utilrand.String` / `SafeEncodeString` (no vowels, no
/// look-alikes).
pub const K8S_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The service CIDR (kube-apiserver's default `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// An RNG for one purpose, derived from the scenario seed.
pub fn rng_for(seed: u64, purpose: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ fnv64(purpose.as_bytes()))
}

fn fnv64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fnv32a(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &x in b {
        h ^= x as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `pod-template-hash` like the Deployment controller: FNV-32a of the pod template, its
/// decimal form mapped through `SafeEncodeString` (8–10 chars). Stable for a manifest.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_string(template).unwrap_or_default();
    let decimal = fnv32a(json.as_bytes()).to_string();
    let mut s = decimal
        .bytes()
        .map(|b| K8S_ALPHABET[b as usize % K8S_ALPHABET.len()] as char)
        .collect::<String>();
    // Kubernetes' hashes of small uint32 values can be short; keep at least 8 chars.
    while s.len() < 8 {
        s.insert(0, '4');
    }
    s
}

/// `utilrand.String(n)`: n chars from [`K8S_ALPHABET`].
pub fn random_suffix(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| K8S_ALPHABET[rng.random_range(0..K8S_ALPHABET.len())] as char)
        .collect()
}

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

fn prefers_not(node: &Node, tolerations: &[Toleration]) -> bool {
    node.taints
        .iter()
        .any(|t| t.effect == "PreferNoSchedule" && !tolerations.iter().any(|x| tolerates(x, t)))
}

/// Per-node pod address allocation: sequential from .2 (.0 network, .1 cni0), skipping
/// reserved addresses.
struct IpPool {
    next: BTreeMap<String, u32>,
    used: BTreeSet<Ipv4Addr>,
}

impl IpPool {
    fn take(&mut self, node: &Node) -> Option<Ipv4Addr> {
        let base = u32::from(node.pod_cidr.network());
        let last = u32::from(node.pod_cidr.broadcast());
        let next = self.next.entry(node.name.clone()).or_insert(2);
        while base + *next < last {
            let ip = Ipv4Addr::from(base + *next);
            *next += 1;
            if self.used.insert(ip) {
                return Some(ip);
            }
        }
        None
    }
}

fn protocol(doc: &ManifestDoc, field: &str, p: Option<&str>) -> Result<Protocol, LabError> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        other => Err(doc.err(
            field,
            format!("protocol {other:?} is not supported (TCP or UDP)"),
        )),
    }
}

fn check_port(doc: &ManifestDoc, field: &str, v: i32) -> Result<u16, LabError> {
    if (1..=65535).contains(&v) {
        Ok(v as u16)
    } else {
        Err(doc.err(field, format!("{v} is out of range 1-65535")))
    }
}

/// A target port before resolution against pods.
#[derive(Debug, Clone)]
enum TargetPort {
    Number(u16),
    Named(String),
}

/// A converted service waiting for ClusterIP/NodePort allocation and its EndpointSlices:
/// (index in the service list, its manifest, selector, unresolved target ports).
type Pending<'a> = (
    usize,
    &'a ManifestDoc,
    Option<BTreeMap<String, String>>,
    Vec<TargetPort>,
);

/// What the scheduler keeps per Deployment to place more replicas later (`scale:`).
struct DeploySched<'a> {
    doc: &'a ManifestDoc,
    namespace: String,
    name: String,
    hash: String,
    labels: BTreeMap<String, String>,
    container_ports: Vec<(String, u16, Protocol)>,
    /// Eligible nodes (preferred ones when any).
    candidates: Vec<&'a Node>,
    /// Pod-name suffixes: one stream per ReplicaSet.
    name_rng: ChaCha8Rng,
}

/// Place one replica: the least loaded candidate (fewest pods of this Deployment, then
/// fewest pods), ties broken by the RNG; next free address of that node's podCIDR.
fn place_one(
    ds: &mut DeploySched,
    pods: &mut Vec<Pod>,
    pool: &mut IpPool,
    sched_rng: &mut ChaCha8Rng,
    pod_names: &mut BTreeSet<String>,
) -> Result<Pod, LabError> {
    let (ns, name) = (&ds.namespace, &ds.name);
    let load = |n: &Node| {
        let own = pods
            .iter()
            .filter(|p| p.node == n.name && p.deployment == *name && p.namespace == *ns)
            .count();
        let all = pods.iter().filter(|p| p.node == n.name).count();
        (own, all)
    };
    let Some(best) = ds.candidates.iter().map(|n| load(n)).min() else {
        return Err(ds.doc.err(
            "spec.template.spec",
            format!("no eligible node for a replica of deployment {ns}/{name}"),
        ));
    };
    let ties: Vec<&Node> = ds
        .candidates
        .iter()
        .copied()
        .filter(|n| load(n) == best)
        .collect();
    let node = ties[sched_rng.random_range(0..ties.len())];
    let ip = pool.take(node).ok_or_else(|| {
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
        if pod_names.insert(n.clone()) {
            break n;
        }
    };
    let pod = Pod {
        namespace: ns.clone(),
        name: pod_name,
        deployment: name.clone(),
        node: node.name.clone(),
        ip,
        labels: ds.labels.clone(),
        container_ports: ds.container_ports.clone(),
        ready: true,
    };
    pods.push(pod.clone());
    Ok(pod)
}

/// The EndpointSlices of every pending service over `pods` (what the EndpointSlice
/// controller would publish); resolves named target ports on the services.
fn endpoint_slices(
    out_services: &mut [nodeport::Service],
    pending: &[Pending],
    pods: &[Pod],
) -> Result<Vec<EndpointSlice>, LabError> {
    let mut slices = Vec::new();
    for (idx, doc, selector, targets) in pending {
        let svc = &mut out_services[*idx];
        let Some(selector) = selector.as_ref().filter(|s| !s.is_empty()) else {
            continue; // no selector: no managed EndpointSlice
        };
        let matching: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.namespace == svc.namespace
                    && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .collect();
        // Group pods by their resolved ports (named target ports can differ per pod).
        let mut groups: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
        for pod in &matching {
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
            let ep = Endpoint {
                ip: pod.ip,
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
        // Resolve named target ports for the Service itself (first pod that has it).
        for (i, tp) in targets.iter().enumerate() {
            if let TargetPort::Named(name) = tp {
                let found = groups
                    .iter()
                    .flat_map(|(p, _)| p.iter())
                    .find(|p| p.name == svc.ports[i].name)
                    .map(|p| p.port);
                match found {
                    Some(p) => svc.ports[i].target_port = p,
                    None if !matching.is_empty() => {
                        return Err(doc.err(
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
        }
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
        for (ports, endpoints) in groups {
            slices.push(EndpointSlice {
                service: svc.service_ref(),
                ports,
                endpoints,
            });
        }
    }

    Ok(slices)
}

/// Build the cluster. Errors name the file and field.
pub fn build_cluster(cfg: LabConfig) -> Result<Cluster, LabError> {
    let f = cfg.file.clone();
    let f = f.as_str();

    // --- objects --------------------------------------------------------------------------
    let mut deployments: Vec<(&ManifestDoc, &Deployment)> = Vec::new();
    let mut services: Vec<(&ManifestDoc, &k8s_openapi::api::core::v1::Service)> = Vec::new();
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    for doc in &cfg.manifests {
        let key = (
            doc.object.kind().to_string(),
            doc.object.namespace(),
            doc.object.name(),
        );
        if !seen.insert(key) {
            return Err(doc.err(
                "metadata.name",
                format!("duplicate {} {:?}", doc.object.kind(), doc.object.name()),
            ));
        }
        match &doc.object {
            Object::Deployment(d) => deployments.push((doc, d)),
            Object::Service(s) => {
                if doc.object.namespace() == "default" && doc.object.name() == "kubernetes" {
                    return Err(doc.err(
                        "metadata.name",
                        "\"kubernetes\" is reserved (default/kubernetes is created by the lab)",
                    ));
                }
                services.push((doc, s))
            }
        }
    }

    // --- pods -----------------------------------------------------------------------------
    let mut pool = IpPool {
        next: BTreeMap::new(),
        used: cfg.clients.iter().filter_map(|c| c.ip).collect(),
    };
    let mut sched_rng = rng_for(cfg.seed, "schedule");
    let mut pods: Vec<Pod> = Vec::new();
    let mut pod_names: BTreeSet<String> = BTreeSet::new();
    let mut scheds: Vec<DeploySched> = Vec::new();
    for (doc, d) in &deployments {
        let spec = d.spec.as_ref().ok_or_else(|| doc.err("spec", "missing"))?;
        let ns = doc.object.namespace();
        let name = doc.object.name();
        let replicas = spec.replicas.unwrap_or(1);
        if replicas < 0 {
            return Err(doc.err("spec.replicas", format!("{replicas} must not be negative")));
        }
        if replicas > 1000 {
            return Err(doc.err(
                "spec.replicas",
                format!("{replicas} is more than the lab supports (1000)"),
            ));
        }
        let tlabels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
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
        for (k, v) in &sel {
            if tlabels.get(k) != Some(v) {
                return Err(doc.err(
                    "spec.selector.matchLabels",
                    format!("{k}={v} does not match spec.template.metadata.labels"),
                ));
            }
        }
        let pspec = spec
            .template
            .spec
            .as_ref()
            .ok_or_else(|| doc.err("spec.template.spec", "missing"))?;
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
                container_ports.push((p.name.clone().unwrap_or_default(), port, proto));
            }
        }
        let tolerations = pspec.tolerations.clone().unwrap_or_default();
        let selector = pspec.node_selector.clone().unwrap_or_default();
        let hash = pod_template_hash(&spec.template);
        // Pod-name suffixes: one stream per ReplicaSet, so scenarios do not share names.
        let name_rng = rng_for(cfg.seed, &format!("pod-names/{ns}/{name}-{hash}"));
        let mut labels = tlabels.clone();
        labels.insert("pod-template-hash".into(), hash.clone());

        let eligible: Vec<&Node> = cfg
            .nodes
            .iter()
            .filter(|n| ineligible_reason(n, &tolerations, &selector).is_none())
            .collect();
        if replicas > 0 && eligible.is_empty() {
            let reasons: Vec<String> = cfg
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
                    cfg.nodes.len(),
                    reasons.join("; ")
                ),
            ));
        }
        let preferred: Vec<&Node> = eligible
            .iter()
            .copied()
            .filter(|n| !prefers_not(n, &tolerations))
            .collect();
        let candidates = if preferred.is_empty() {
            eligible
        } else {
            preferred
        };
        let mut ds = DeploySched {
            doc,
            namespace: ns.clone(),
            name: name.clone(),
            hash: hash.clone(),
            labels: labels.clone(),
            container_ports: container_ports.clone(),
            candidates,
            name_rng,
        };
        for _ in 0..replicas {
            place_one(
                &mut ds,
                &mut pods,
                &mut pool,
                &mut sched_rng,
                &mut pod_names,
            )?;
        }
        scheds.push(ds);
    }

    // --- clients --------------------------------------------------------------------------
    let mut clients = Vec::new();
    for (i, c) in cfg.clients.iter().enumerate() {
        let ip = match (&c.attach, c.ip) {
            (_, Some(ip)) => ip,
            (ClientAttach::Pod { node }, None) => {
                let n = cfg
                    .nodes
                    .iter()
                    .find(|n| &n.name == node)
                    .expect("validated");
                pool.take(n).ok_or_else(|| {
                    LabError::invalid(
                        f,
                        format!("clients[{i}].node"),
                        format!("node {node}'s podCIDR {} is full", n.pod_cidr),
                    )
                })?
            }
            (ClientAttach::External { .. }, None) => {
                unreachable!("validated: external clients have an ip")
            }
        };
        clients.push(Client {
            name: c.name.clone(),
            ip,
            attach: c.attach.clone(),
        });
    }

    // --- services -------------------------------------------------------------------------
    let service_cidr: Ipv4Net = SERVICE_CIDR.parse().expect("valid");
    let kubernetes_ip = Ipv4Addr::new(10, 96, 0, 1);
    let mut out_services = vec![nodeport::Service {
        namespace: "default".into(),
        name: "kubernetes".into(),
        type_: ServiceType::ClusterIp,
        cluster_ip: Some(kubernetes_ip),
        ports: vec![ServicePort {
            name: "https".into(),
            protocol: Protocol::Tcp,
            port: 443,
            target_port: 6443,
            node_port: None,
        }],
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        session_affinity: SessionAffinity::None,
        health_check_node_port: None,
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        load_balancer_source_ranges: Vec::new(),
    }];
    let mut cluster_ips: BTreeSet<Ipv4Addr> = BTreeSet::from([kubernetes_ip]);
    // (service index in out_services, doc, selector, unresolved target ports)
    let mut pending: Vec<Pending> = Vec::new();
    let mut explicit_node_ports: std::collections::HashMap<(u16, Protocol), String> =
        std::collections::HashMap::new();
    for (doc, s) in &services {
        let spec = s.spec.clone().unwrap_or_default();
        let ns = doc.object.namespace();
        let name = doc.object.name();
        let type_ = match spec.type_.as_deref().unwrap_or("ClusterIP") {
            "ClusterIP" => ServiceType::ClusterIp,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            other => {
                return Err(doc.err(
                    "spec.type",
                    format!("{other:?} is not supported (ClusterIP, NodePort or LoadBalancer)"),
                ))
            }
        };
        let policy = |field: &str, v: Option<&str>| -> Result<TrafficPolicy, LabError> {
            match v.unwrap_or("Cluster") {
                "Cluster" => Ok(TrafficPolicy::Cluster),
                "Local" => Ok(TrafficPolicy::Local),
                other => Err(doc.err(field, format!("{other:?} is not Cluster or Local"))),
            }
        };
        let etp = policy(
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        )?;
        let itp = policy(
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        )?;
        let session_affinity = match spec.session_affinity.as_deref().unwrap_or("None") {
            "None" => SessionAffinity::None,
            "ClientIP" => {
                let t = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds);
                let timeout = match t {
                    None => SessionAffinity::DEFAULT_TIMEOUT,
                    Some(t) if (1..=86400).contains(&t) => std::time::Duration::from_secs(t as u64),
                    Some(t) => {
                        return Err(doc.err(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                            format!("{t} is not in (0, 86400]"),
                        ))
                    }
                };
                SessionAffinity::ClientIp { timeout }
            }
            other => {
                return Err(doc.err(
                    "spec.sessionAffinity",
                    format!("{other:?} is not None or ClientIP"),
                ))
            }
        };
        let raw_ports = spec.ports.clone().unwrap_or_default();
        if raw_ports.is_empty() {
            return Err(doc.err("spec.ports", "at least one port is required"));
        }
        let mut ports = Vec::new();
        let mut targets = Vec::new();
        let mut port_names = BTreeSet::new();
        for (i, p) in raw_ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            let port = check_port(doc, &format!("{at}.port"), p.port)?;
            let proto = protocol(doc, &format!("{at}.protocol"), p.protocol.as_deref())?;
            let pname = p.name.clone().unwrap_or_default();
            if raw_ports.len() > 1 && pname.is_empty() {
                return Err(doc.err(
                    &format!("{at}.name"),
                    "required when a service has more than one port",
                ));
            }
            if !port_names.insert(pname.clone()) {
                return Err(doc.err(
                    &format!("{at}.name"),
                    format!("duplicate port name {pname:?}"),
                ));
            }
            let target = match &p.target_port {
                None => TargetPort::Number(port),
                Some(IntOrString::Int(v)) => {
                    TargetPort::Number(check_port(doc, &format!("{at}.targetPort"), *v)?)
                }
                Some(IntOrString::String(s)) => match s.parse::<i32>() {
                    Ok(v) => TargetPort::Number(check_port(doc, &format!("{at}.targetPort"), v)?),
                    Err(_) if !s.is_empty() => TargetPort::Named(s.clone()),
                    Err(_) => return Err(doc.err(&format!("{at}.targetPort"), "empty name")),
                },
            };
            let node_port = match p.node_port {
                None | Some(0) => None,
                Some(v) => {
                    let field = format!("{at}.nodePort");
                    if type_ == ServiceType::ClusterIp {
                        return Err(
                            doc.err(&field, format!("{v} is not allowed for type ClusterIP"))
                        );
                    }
                    if !(PortRange::DEFAULT.first as i32..=PortRange::DEFAULT.last as i32)
                        .contains(&v)
                    {
                        return Err(doc.err(
                            &field,
                            format!(
                                "{v} is not in the valid range {}-{}",
                                PortRange::DEFAULT.first,
                                PortRange::DEFAULT.last
                            ),
                        ));
                    }
                    let v = v as u16;
                    if let Some(other) =
                        explicit_node_ports.insert((v, proto), format!("{ns}/{name}"))
                    {
                        return Err(doc.err(
                            &field,
                            format!("{v}/{proto} is already allocated to service {other}"),
                        ));
                    }
                    Some(v)
                }
            };
            ports.push(ServicePort {
                name: pname,
                protocol: proto,
                port,
                target_port: match &target {
                    TargetPort::Number(n) => *n,
                    TargetPort::Named(_) => 0,
                },
                node_port,
            });
            targets.push(target);
        }
        let cluster_ip = match spec.cluster_ip.as_deref() {
            None | Some("") => None,
            Some("None") => {
                return Err(doc.err(
                    "spec.clusterIP",
                    "headless services (\"None\") are not supported by the lab",
                ));
            }
            Some(s) => {
                let ip: Ipv4Addr = s.parse().map_err(|_| {
                    doc.err("spec.clusterIP", format!("{s:?} is not an IPv4 address"))
                })?;
                if !service_cidr.contains(&ip)
                    || ip == service_cidr.network()
                    || ip == service_cidr.broadcast()
                {
                    return Err(doc.err(
                        "spec.clusterIP",
                        format!("{ip} is not in the service CIDR {service_cidr}"),
                    ));
                }
                if !cluster_ips.insert(ip) {
                    return Err(doc.err("spec.clusterIP", format!("{ip} is already allocated")));
                }
                Some(ip)
            }
        };
        let mut external_ips = Vec::new();
        for (i, s) in spec.external_ips.iter().flatten().enumerate() {
            external_ips.push(s.parse::<Ipv4Addr>().map_err(|_| {
                doc.err(
                    &format!("spec.externalIPs[{i}]"),
                    format!("{s:?} is not an IPv4 address"),
                )
            })?);
        }
        let health_check_node_port = match spec.health_check_node_port {
            None | Some(0) => None,
            Some(v) => {
                if !(type_ == ServiceType::LoadBalancer && etp == TrafficPolicy::Local) {
                    return Err(doc.err(
                        "spec.healthCheckNodePort",
                        format!("{v} may only be set for type LoadBalancer with externalTrafficPolicy Local"),
                    ));
                }
                if !(PortRange::DEFAULT.first as i32..=PortRange::DEFAULT.last as i32).contains(&v)
                {
                    return Err(doc.err(
                        "spec.healthCheckNodePort",
                        format!("{v} is not in the valid range 30000-32767"),
                    ));
                }
                if let Some(other) =
                    explicit_node_ports.insert((v as u16, Protocol::Tcp), format!("{ns}/{name}"))
                {
                    return Err(doc.err(
                        "spec.healthCheckNodePort",
                        format!("{v} is already allocated to service {other}"),
                    ));
                }
                Some(v as u16)
            }
        };
        let load_balancer_ips = match (&type_, &cfg.load_balancer) {
            (ServiceType::LoadBalancer, Some(lb)) => vec![lb.ip],
            _ => Vec::new(),
        };
        out_services.push(nodeport::Service {
            namespace: ns,
            name,
            type_,
            cluster_ip,
            ports,
            external_traffic_policy: etp,
            internal_traffic_policy: itp,
            session_affinity,
            health_check_node_port,
            external_ips,
            load_balancer_ips,
            load_balancer_source_ranges: spec
                .load_balancer_source_ranges
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, s)| {
                    s.trim().parse::<Ipv4Net>().map_err(|_| {
                        doc.err(
                            &format!("spec.loadBalancerSourceRanges[{i}]"),
                            format!("{s:?} is not an IPv4 CIDR"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        });
        pending.push((out_services.len() - 1, *doc, spec.selector.clone(), targets));
    }

    // ClusterIPs: seeded random in 10.96.0.0/12 (explicit ones were honoured above).
    let mut ip_rng = rng_for(cfg.seed, "cluster-ips");
    let lo = u32::from(service_cidr.network()) + 2;
    let hi = u32::from(service_cidr.broadcast()) - 1;
    for svc in out_services.iter_mut() {
        if svc.cluster_ip.is_none() {
            let ip = loop {
                let ip = Ipv4Addr::from(ip_rng.random_range(lo..=hi));
                if cluster_ips.insert(ip) {
                    break ip;
                }
            };
            svc.cluster_ip = Some(ip);
        }
    }

    // NodePorts (and healthCheckNodePorts) via the nodeport crate's allocator.
    let mut allocator = NodePortAllocator::new(PortRange::DEFAULT);
    let mut port_rng = rng_for(cfg.seed, "node-ports");
    for (idx, doc, _, _) in &pending {
        let svc = &mut out_services[*idx];
        if matches!(svc.type_, ServiceType::NodePort | ServiceType::LoadBalancer) {
            allocator
                .allocate(svc, &mut port_rng)
                .map_err(|e| doc.err("spec.ports", e.to_string()))?;
        }
    }

    // --- endpoint slices ------------------------------------------------------------------
    let slices = endpoint_slices(&mut out_services, &pending, &pods)?;

    // --- plan checks that need services ---------------------------------------------------
    let user_services: Vec<String> = out_services
        .iter()
        .filter(|s| !(s.namespace == "default" && s.name == "kubernetes"))
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    let mut plan = cfg.plan.clone();
    for (i, step) in plan.iter_mut().enumerate() {
        if step.service.is_none() && step.port.is_none() {
            match user_services.as_slice() {
                [only] => step.service = Some(only.clone()),
                _ => {
                    return Err(LabError::invalid(
                        f,
                        format!("plan[{i}].service"),
                        format!(
                            "missing; set `service: namespace/name` or `port` (services: {})",
                            user_services.join(", ")
                        ),
                    ))
                }
            }
        }
        if let Some(sref) = &step.service {
            let Some(svc) = out_services
                .iter()
                .find(|s| format!("{}/{}", s.namespace, s.name) == *sref)
            else {
                return Err(LabError::invalid(
                    f,
                    format!("plan[{i}].service"),
                    format!(
                        "unknown service {sref:?} (known: {})",
                        user_services.join(", ")
                    ),
                ));
            };
            if matches!(step.target, Target::LoadBalancer) && svc.type_ == ServiceType::ClusterIp {
                return Err(LabError::invalid(
                    f,
                    format!("plan[{i}].to"),
                    format!("the load balancer forwards to node ports, but service {sref} is type ClusterIP"),
                ));
            }
            if step.port.is_none()
                && matches!(step.target, Target::Node(_))
                && svc.type_ == ServiceType::ClusterIp
            {
                return Err(LabError::invalid(
                    f,
                    format!("plan[{i}].to"),
                    format!("service {sref} is type ClusterIP and has no nodePort; target its ClusterIP address or set `port`"),
                ));
            }
        }
    }

    // --- plan actions and links that need pods ---------------------------------------------
    let mut actions = cfg.actions.clone();
    let mut cur_pods = pods.clone();
    for a in &mut actions {
        let ActionKind::Scale {
            namespace,
            deployment,
            replicas,
        } = &a.kind
        else {
            continue;
        };
        let Some(ds) = scheds
            .iter_mut()
            .find(|d| d.namespace == *namespace && d.name == *deployment)
        else {
            let known: Vec<String> = scheds
                .iter()
                .map(|d| format!("{}/{}", d.namespace, d.name))
                .collect();
            return Err(LabError::invalid(
                f,
                format!("plan[{}].scale.deployment", a.entry),
                format!(
                    "unknown deployment {namespace}/{deployment} (known: {})",
                    known.join(", ")
                ),
            ));
        };
        let own: Vec<Pod> = cur_pods
            .iter()
            .filter(|p| p.namespace == *namespace && p.deployment == *deployment)
            .cloned()
            .collect();
        let want = *replicas as usize;
        let mut added = Vec::new();
        let mut removed = Vec::new();
        if want < own.len() {
            removed = own[want..].to_vec();
            cur_pods.retain(|p| !removed.iter().any(|r| r.name == p.name));
        }
        for _ in own.len()..want {
            let pod = place_one(ds, &mut cur_pods, &mut pool, &mut sched_rng, &mut pod_names)
                .map_err(|e| {
                    LabError::invalid(
                        f,
                        format!("plan[{}].scale.replicas", a.entry),
                        format!("scaling {namespace}/{deployment} to {want}: {e}"),
                    )
                })?;
            added.push(pod);
        }
        let slices = endpoint_slices(&mut out_services, &pending, &cur_pods)?;
        a.scaled = Some(crate::model::Scaled {
            pods: cur_pods.clone(),
            slices,
            added,
            removed,
        });
    }
    for (i, l) in cfg.links.iter().enumerate() {
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

    Ok(Cluster {
        scenario: cfg.scenario,
        source: cfg.source,
        description: cfg.description,
        nodes: cfg.nodes,
        node_network: cfg.node_network,
        router_ip: cfg.router_ip,
        cluster_cidr: cfg.cluster_cidr,
        clients,
        pods,
        services: out_services,
        slices,
        load_balancer: cfg.load_balancer,
        plan,
        seed: cfg.seed,
        actions,
        links: cfg.links,
    })
}
