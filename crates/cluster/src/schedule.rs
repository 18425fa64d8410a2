//! From a validated [`LabConfig`] to a [`Cluster`]: what the apiserver, the scheduler, the
//! ReplicaSet controller and the EndpointSlice controller would have done.
//!
//! This module runs the steps ([`build_cluster`]) and converts `v1 Service` objects into
//! [`nodeport::Service`]s. One job per submodule: [`naming`] (pod-template-hash, pod name
//! suffixes, seeded RNGs), [`placement`] (taints/tolerations, nodeSelector, spread, pod
//! addresses), [`deployments`] (Deployment checks and initial placement), [`endpoints`]
//! (EndpointSlices), [`probes`] (restartPolicy, readinessProbe), [`allocate`] (ClusterIPs, NodePorts), [`resolve`] (plan checks, `scale:`
//! actions, links). Deterministic for a seed: every random choice comes from a ChaCha RNG
//! derived from the seed and a purpose label.

mod allocate;
mod deployments;
mod endpoints;
mod families;
pub mod naming;
pub mod placement;
mod probes;
mod resolve;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nodeport::{
    IpFamily, IpFamilyPolicy, PortRange, Protocol, ServicePort, ServiceType, SessionAffinity,
    TrafficPolicy,
};

pub use naming::{pod_template_hash, random_suffix, rng_for, K8S_ALPHABET};
pub use placement::{ineligible_reason, tolerates};

use crate::config::LabConfig;
use crate::error::LabError;
use crate::manifest::{ManifestDoc, Object};
use crate::model::{Client, ClientAttach, Cluster};
use allocate::{ServiceRanges, Wanted};
use endpoints::{Pending, TargetPort};
use placement::Placement;

/// The IPv4 service CIDR when the config gives none (kube-apiserver's default
/// `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = crate::config::DEFAULT_SERVICE_CIDR;

/// Build the cluster. Errors name the file and field.
#[tracing::instrument(level = "debug", name = "schedule", skip_all, fields(file = %cfg.file))]
pub fn build_cluster(cfg: LabConfig) -> Result<Cluster, LabError> {
    let _span = tracing::debug_span!("build_cluster", nodes = cfg.nodes.len()).entered();
    let f = cfg.file.as_str();
    let (deployments, services) = objects(&cfg.manifests)?;
    let mut placement = Placement::new(&cfg.nodes, cfg.clients.iter().filter_map(|c| c.ip));
    let mut sched_rng = rng_for(cfg.seed, "schedule");
    let (pods, scheds) =
        deployments::schedule_all(&cfg, &deployments, &mut placement, &mut sched_rng)?;
    let clients = client_addresses(&cfg, &mut placement)?;
    let ranges = ServiceRanges::new(&cfg.service_cidrs);
    let mut conv = Converter::new(&cfg, ranges.clone());
    for (doc, s) in &services {
        conv.convert(doc, s)?;
    }
    let Converter {
        services: mut out_services,
        pending,
        mut cluster_ips,
        wanted,
        ..
    } = conv;
    allocate::cluster_ips(
        f,
        &mut out_services,
        &wanted,
        &ranges,
        &mut cluster_ips,
        cfg.seed,
    )?;
    allocate::node_ports(&mut out_services, &pending, cfg.seed)?;
    let slices = endpoints::all_slices(&mut out_services, &pending, &pods)?;
    let plan = resolve::plan(f, &cfg.plan, &out_services)?;
    let initial_slices: Vec<_> = slices.iter().flatten().cloned().collect();
    let mut st = resolve::ScaleState {
        scheds,
        placement,
        sched_rng,
        services: out_services,
        pending,
        slices,
    };
    let mut actions = resolve::scale_actions(f, &cfg.actions, &pods, &mut st)?;
    resolve::crash_targets(f, &mut actions, &pods)?;
    resolve::links(f, &cfg.links, &clients, &pods)?;
    let services = st.services;
    Ok(Cluster {
        scenario: cfg.scenario,
        source: cfg.source,
        description: cfg.description,
        nodes: cfg.nodes,
        node_network: cfg.node_network,
        router_ip: cfg.router_ip,
        cluster_cidr: cfg.cluster_cidr,
        node_network_v6: cfg.node_network_v6,
        router_ipv6: cfg.router_ipv6,
        cluster_cidr_v6: cfg.cluster_cidr_v6,
        clients,
        pods,
        services,
        slices: initial_slices,
        load_balancer: cfg.load_balancer,
        plan,
        seed: cfg.seed,
        actions,
        links: cfg.links,
        kube_proxy: cfg.kube_proxy,
    })
}

type Objects<'a> = (
    Vec<(&'a ManifestDoc, &'a Deployment)>,
    Vec<(&'a ManifestDoc, &'a Service)>,
);

/// The Deployments and Services of the manifests, each (kind, namespace, name) once.
fn objects(manifests: &[ManifestDoc]) -> Result<Objects<'_>, LabError> {
    let mut deployments = Vec::new();
    let mut services = Vec::new();
    let mut seen: HashSet<(&str, String, String)> = HashSet::new();
    for doc in manifests {
        let key = (doc.object.kind(), doc.object.namespace(), doc.object.name());
        if !seen.insert(key) {
            return Err(doc.err(
                "metadata.name",
                format!("duplicate {} {:?}", doc.object.kind(), doc.object.name()),
            ));
        }
        match &doc.object {
            Object::Deployment(d) => deployments.push((doc, &**d)),
            Object::Service(s) => {
                if doc.object.namespace() == "default" && doc.object.name() == "kubernetes" {
                    return Err(doc.err(
                        "metadata.name",
                        "\"kubernetes\" is reserved (default/kubernetes is created by the lab)",
                    ));
                }
                services.push((doc, &**s))
            }
        }
    }
    Ok((deployments, services))
}

/// Client addresses: explicit ones as given, pod clients the next free address of their
/// node's podCIDR (after the Deployment pods).
fn client_addresses(cfg: &LabConfig, placement: &mut Placement) -> Result<Vec<Client>, LabError> {
    let mut clients = Vec::with_capacity(cfg.clients.len());
    for (i, c) in cfg.clients.iter().enumerate() {
        let ip = match (&c.attach, c.ip) {
            (_, Some(ip)) => ip,
            (ClientAttach::Pod { node }, None) => {
                let full = |cidr: String| {
                    LabError::invalid(
                        &cfg.file,
                        format!("clients[{i}].node"),
                        format!("node {node}'s podCIDR {cidr} is full"),
                    )
                };
                let Some(&n) = placement.by_name.get(node.as_str()) else {
                    return Err(full(String::new()));
                };
                placement
                    .take_ip(n)
                    .ok_or_else(|| full(cfg.nodes[n].pod_cidr.to_string()))?
            }
            (ClientAttach::External { .. }, None) => {
                return Err(LabError::invalid(
                    &cfg.file,
                    format!("clients[{i}].ip"),
                    "missing (external clients need an address; pod clients set `node`)",
                ))
            }
        };
        let ipv6 = match &c.attach {
            ClientAttach::Pod { node } => placement
                .by_name
                .get(node.as_str())
                .and_then(|&n| cfg.nodes[n].ipv6_of_pod(ip)),
            ClientAttach::External { .. } => c.ipv6,
        };
        clients.push(Client {
            name: c.name.clone(),
            ip,
            ipv6,
            attach: c.attach.clone(),
        });
    }
    Ok(clients)
}

// --- checks shared by Deployments and Services ---------------------------------------

fn protocol(doc: &ManifestDoc, field: &str, p: Option<&str>) -> Result<Protocol, LabError> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        // kube-proxy programs SCTP frontends like TCP/UDP ones (the engine and `lab rules`);
        // the embedded and real clients speak TCP and UDP only.
        "SCTP" => Ok(Protocol::Sctp),
        other => Err(doc.err(
            field,
            format!("protocol {other:?} is not supported (TCP, UDP or SCTP)"),
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

/// A port name (`IsValidPortName`, IANA_SVC_NAME).
fn port_name(doc: &ManifestDoc, field: &str, name: &str) -> Result<(), LabError> {
    crate::names::port_name(name).map_err(|e| doc.err(field, format!("{name:?} {e}")))
}

/// Label keys and values of a label map or selector at `field`.
fn check_labels(
    doc: &ManifestDoc,
    field: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), LabError> {
    crate::config::check_labels(labels).map_err(|(k, msg)| doc.err(&format!("{field}.{k}"), msg))
}

// --- `v1 Service` → `nodeport::Service` ------------------------------------------------

/// Converts Services in order, claiming explicit ClusterIPs and NodePorts as it goes.
struct Converter<'c> {
    cfg: &'c LabConfig,
    ranges: ServiceRanges,
    /// `default/kubernetes` first, then the manifests' Services.
    services: Vec<nodeport::Service>,
    /// Per service (same order): its families and explicit ClusterIPs.
    wanted: Vec<Wanted>,
    pending: Vec<Pending<'c>>,
    cluster_ips: HashSet<IpAddr>,
    explicit_node_ports: HashMap<(u16, Protocol), String>,
}

impl<'c> Converter<'c> {
    fn new(cfg: &'c LabConfig, ranges: ServiceRanges) -> Self {
        // `default/kubernetes`: the first address of the IPv4 range (10.96.0.1), IPv4
        // SingleStack in the lab whatever the primary family.
        let kubernetes_ip = IpAddr::V4(ranges.kubernetes_ip());
        let kubernetes = nodeport::Service {
            cluster_ips: vec![kubernetes_ip],
            ip_families: vec![IpFamily::V4],
            ip_family_policy: IpFamilyPolicy::SingleStack,
            ports: vec![ServicePort {
                name: "https".into(),
                ..ServicePort::tcp(443, 6443, None)
            }],
            ..nodeport::Service::new("default", "kubernetes", ServiceType::ClusterIp)
        };
        Converter {
            cfg,
            ranges,
            services: vec![kubernetes],
            wanted: vec![vec![(IpFamily::V4, Some(kubernetes_ip))]],
            pending: Vec::new(),
            cluster_ips: HashSet::from([kubernetes_ip]),
            explicit_node_ports: HashMap::new(),
        }
    }

    fn convert(&mut self, doc: &'c ManifestDoc, s: &Service) -> Result<(), LabError> {
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
        let session_affinity = session_affinity(doc, &spec)?;
        let owner = format!("{ns}/{name}");
        let (ports, targets) = self.ports(doc, &spec, type_, &owner)?;
        let fams = self.cluster_ip_families(doc, &spec)?;
        let mut external_ips = Vec::new();
        for (i, s) in spec.external_ips.iter().flatten().enumerate() {
            external_ips.push(s.trim().parse::<IpAddr>().map_err(|_| {
                doc.err(
                    &format!("spec.externalIPs[{i}]"),
                    format!("{s:?} is not an IP address"),
                )
            })?);
        }
        let health_check_node_port = self.health_check_node_port(doc, &spec, type_, etp, &owner)?;
        if let Some(sel) = &spec.selector {
            check_labels(doc, "spec.selector", sel)?;
        }
        // The LB's status addresses: one per family of the Service it has an address for.
        let load_balancer_ips = match (&type_, &self.cfg.load_balancer) {
            (ServiceType::LoadBalancer, Some(lb)) => (fams.families.iter())
                .filter_map(|f| match f {
                    IpFamily::V4 => Some(IpAddr::V4(lb.ip)),
                    IpFamily::V6 => lb.ipv6.map(IpAddr::V6),
                })
                .collect(),
            _ => Vec::new(),
        };
        self.wanted.push(
            fams.families
                .iter()
                .copied()
                .zip(fams.explicit.iter().copied())
                .collect(),
        );
        self.services.push(nodeport::Service {
            namespace: ns,
            name,
            type_,
            cluster_ips: Vec::new(),
            ip_families: fams.families,
            ip_family_policy: fams.policy,
            ports,
            external_traffic_policy: etp,
            internal_traffic_policy: itp,
            session_affinity,
            health_check_node_port,
            external_ips,
            load_balancer_ips,
            load_balancer_source_ranges: source_ranges(doc, &spec)?,
        });
        self.pending.push(Pending {
            index: self.services.len() - 1,
            doc,
            selector: spec.selector.clone(),
            targets,
        });
        Ok(())
    }

    /// `spec.ports`: numbers, names, protocols, target ports and explicit NodePorts.
    fn ports(
        &mut self,
        doc: &ManifestDoc,
        spec: &ServiceSpec,
        type_: ServiceType,
        owner: &str,
    ) -> Result<(Vec<ServicePort>, Vec<TargetPort>), LabError> {
        let raw_ports = spec.ports.as_deref().unwrap_or_default();
        if raw_ports.is_empty() {
            return Err(doc.err("spec.ports", "at least one port is required"));
        }
        let mut ports = Vec::new();
        let mut targets = Vec::new();
        let mut port_names = HashSet::new();
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
            if !pname.is_empty() {
                port_name(doc, &format!("{at}.name"), &pname)?;
            }
            if !port_names.insert(pname.clone()) {
                return Err(doc.err(
                    &format!("{at}.name"),
                    format!("duplicate port name {pname:?}"),
                ));
            }
            let target = target_port(doc, &at, port, p.target_port.as_ref())?;
            let node_port = match p.node_port {
                None | Some(0) => None,
                Some(v) => Some(self.explicit_node_port(doc, &at, type_, v, proto, owner)?),
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
        Ok((ports, targets))
    }

    fn explicit_node_port(
        &mut self,
        doc: &ManifestDoc,
        at: &str,
        type_: ServiceType,
        v: i32,
        proto: Protocol,
        owner: &str,
    ) -> Result<u16, LabError> {
        let field = format!("{at}.nodePort");
        if type_ == ServiceType::ClusterIp {
            return Err(doc.err(&field, format!("{v} is not allowed for type ClusterIP")));
        }
        if !(PortRange::DEFAULT.first as i32..=PortRange::DEFAULT.last as i32).contains(&v) {
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
        if let Some(other) = self
            .explicit_node_ports
            .insert((v, proto), owner.to_string())
        {
            return Err(doc.err(
                &field,
                format!("{v}/{proto} is already allocated to service {other}"),
            ));
        }
        Ok(v)
    }

    /// The Service's IP families and policy (the apiserver's defaulting and validation,
    /// [`families`]) and its explicit ClusterIPs, claimed in their family's range.
    fn cluster_ip_families(
        &mut self,
        doc: &ManifestDoc,
        spec: &ServiceSpec,
    ) -> Result<families::Families, LabError> {
        if spec.cluster_ip.as_deref() == Some("None") {
            return Err(doc.err(
                "spec.clusterIP",
                "headless services (\"None\") are not supported by the lab",
            ));
        }
        let fams = families::init_ip_families(doc, spec, &self.ranges.families)?;
        for (i, ip) in fams.explicit.iter().enumerate() {
            if let Some(ip) = ip {
                let field = if i == 0 {
                    "spec.clusterIP".to_string()
                } else {
                    format!("spec.clusterIPs[{i}]")
                };
                self.ranges.claim(doc, &field, *ip, &mut self.cluster_ips)?;
            }
        }
        Ok(fams)
    }

    fn health_check_node_port(
        &mut self,
        doc: &ManifestDoc,
        spec: &ServiceSpec,
        type_: ServiceType,
        etp: TrafficPolicy,
        owner: &str,
    ) -> Result<Option<u16>, LabError> {
        let v = match spec.health_check_node_port {
            None | Some(0) => return Ok(None),
            Some(v) => v,
        };
        let field = "spec.healthCheckNodePort";
        if !(type_ == ServiceType::LoadBalancer && etp == TrafficPolicy::Local) {
            return Err(doc.err(
                field,
                format!(
                    "{v} may only be set for type LoadBalancer with externalTrafficPolicy Local"
                ),
            ));
        }
        if !(PortRange::DEFAULT.first as i32..=PortRange::DEFAULT.last as i32).contains(&v) {
            return Err(doc.err(field, format!("{v} is not in the valid range 30000-32767")));
        }
        if let Some(other) = self
            .explicit_node_ports
            .insert((v as u16, Protocol::Tcp), owner.to_string())
        {
            return Err(doc.err(
                field,
                format!("{v} is already allocated to service {other}"),
            ));
        }
        Ok(Some(v as u16))
    }
}

fn session_affinity(doc: &ManifestDoc, spec: &ServiceSpec) -> Result<SessionAffinity, LabError> {
    match spec.session_affinity.as_deref().unwrap_or("None") {
        "None" => Ok(SessionAffinity::None),
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
            Ok(SessionAffinity::ClientIp { timeout })
        }
        other => Err(doc.err(
            "spec.sessionAffinity",
            format!("{other:?} is not None or ClientIP"),
        )),
    }
}

/// `targetPort`: a number, a numeric string, or a port name (IANA_SVC_NAME).
fn target_port(
    doc: &ManifestDoc,
    at: &str,
    port: u16,
    tp: Option<&IntOrString>,
) -> Result<TargetPort, LabError> {
    let field = format!("{at}.targetPort");
    match tp {
        None => Ok(TargetPort::Number(port)),
        Some(IntOrString::Int(v)) => Ok(TargetPort::Number(check_port(doc, &field, *v)?)),
        Some(IntOrString::String(s)) => match s.parse::<i32>() {
            Ok(v) => Ok(TargetPort::Number(check_port(doc, &field, v)?)),
            Err(_) if !s.is_empty() => {
                port_name(doc, &field, s)?;
                Ok(TargetPort::Named(s.clone()))
            }
            Err(_) => Err(doc.err(&field, "empty name")),
        },
    }
}

/// `spec.loadBalancerSourceRanges`: the CIDRs KUBE-FW-* lets through (either family; each
/// family's proxier uses its own).
fn source_ranges(doc: &ManifestDoc, spec: &ServiceSpec) -> Result<Vec<IpNet>, LabError> {
    spec.load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, s)| {
            s.trim().parse::<IpNet>().map_err(|_| {
                doc.err(
                    &format!("spec.loadBalancerSourceRanges[{i}]"),
                    format!("{s:?} is not a CIDR"),
                )
            })
        })
        .collect()
}
