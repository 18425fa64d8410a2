//! `plan:` (requests, `scale:`, `wait:`, `delete:` and `crash:` actions) and `links:`
//! (impairments).

use std::net::IpAddr;
use std::time::Duration;

use nodeport::{IpFamily, Protocol};
use serde_yaml_ng::Value;

use super::raw::{RawCrash, RawDelete, RawLink, RawPlan, RawScale};
use super::{ClientSpec, NodeIndex};
use crate::error::LabError;
use crate::model::{
    ActionKind, ClientAttach, Crash, CrashTarget, LinkSpec, LoadBalancer, PlanAction, PlanStep,
    PodRef, Target, DEFAULT_UDP_PAYLOAD, DEFAULT_UDP_TIMEOUT,
};
use crate::units::{parse_duration, parse_rate};

/// Most requests one plan entry may make.
pub const MAX_COUNT: i64 = 1_000_000;
/// Most replicas a `scale:` entry (or a Deployment) may ask for.
pub const MAX_REPLICAS: i64 = 1000;

/// The request steps and the actions between them.
pub(super) fn plan(
    f: &str,
    raw: &[RawPlan],
    clients: &[ClientSpec],
    nodes: &NodeIndex,
    lb: Option<&LoadBalancer>,
) -> Result<(Vec<PlanStep>, Vec<PlanAction>), LabError> {
    let mut plan = Vec::new();
    let mut actions = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let at = format!("plan[{i}]");
        if let Some(kind) = action(f, &at, p)? {
            actions.push(PlanAction {
                before: plan.len(),
                entry: i,
                kind,
                scaled: None,
            });
        } else {
            plan.push(request(f, &at, p, clients, nodes, lb)?);
        }
    }
    Ok((plan, actions))
}

/// A `scale:`, `wait:`, `delete:` or `crash:` entry (`None` for a request).
fn action(f: &str, at: &str, p: &RawPlan) -> Result<Option<ActionKind>, LabError> {
    let request_fields = p.from.is_some()
        || p.to.is_some()
        || p.family.is_some()
        || p.service.is_some()
        || p.port.is_some()
        || p.port_name.is_some()
        || p.count.is_some()
        || p.path.is_some()
        || p.connect_timeout.is_some()
        || p.max_time.is_some()
        || p.protocol.is_some()
        || p.payload.is_some()
        || p.timeout.is_some()
        || p.source_port.is_some();
    let given = [
        p.scale.is_some(),
        p.wait.is_some(),
        p.delete.is_some(),
        p.crash.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(LabError::invalid(
            f,
            at,
            "`scale`, `wait`, `delete` and `crash` must be separate plan entries",
        ));
    }
    let kind = if let Some(sc) = &p.scale {
        scale(f, at, sc)?
    } else if let Some(v) = &p.wait {
        ActionKind::Wait(parse_duration(f, &format!("{at}.wait"), v)?)
    } else if let Some(d) = &p.delete {
        delete(f, at, d)?
    } else if let Some(c) = &p.crash {
        crash(f, at, c)?
    } else {
        return Ok(None);
    };
    if request_fields {
        return Err(LabError::invalid(
            f,
            at,
            "a `scale`/`wait`/`delete`/`crash` entry takes no request fields (from, to, count, ...)",
        ));
    }
    Ok(Some(kind))
}

/// `namespace/name` or `name` (namespace `default`).
fn namespaced(s: &str) -> (String, String) {
    match s.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => ("default".to_string(), s.to_string()),
    }
}

/// `{pod: NAME}` or `{deployment: NAME}` of a `crash:` or `delete:` entry (`key`): exactly
/// one of them, each `name` or `namespace/name` (names are checked when the cluster is built).
/// Returns (is_pod, namespace, name).
fn pod_or_deployment(
    f: &str,
    at: &str,
    key: &str,
    pod: &Option<String>,
    deployment: &Option<String>,
) -> Result<(bool, String, String), LabError> {
    let (field, value) = match (pod, deployment) {
        (Some(p), None) => ("pod", p),
        (None, Some(d)) => ("deployment", d),
        _ => {
            return Err(LabError::invalid(
                f,
                format!("{at}.{key}"),
                "give exactly one of `pod: NAME` or `deployment: NAME`",
            ))
        }
    };
    let (namespace, name) = namespaced(value);
    if namespace.is_empty() || name.is_empty() || name.contains('/') {
        return Err(LabError::invalid(
            f,
            format!("{at}.{key}.{field}"),
            format!("{value:?} is not `name` or `namespace/name`"),
        ));
    }
    Ok((field == "pod", namespace, name))
}

/// `crash: {pod: NAME}` or `crash: {deployment: NAME}`.
fn crash(f: &str, at: &str, c: &RawCrash) -> Result<ActionKind, LabError> {
    let (is_pod, namespace, name) = pod_or_deployment(f, at, "crash", &c.pod, &c.deployment)?;
    let target = if is_pod {
        CrashTarget::Pod(name)
    } else {
        CrashTarget::Deployment(name)
    };
    Ok(ActionKind::Crash(Crash {
        namespace,
        target,
        pod: None,
    }))
}

/// `delete: {pod: NAME}` or `delete: {deployment: NAME}`.
fn delete(f: &str, at: &str, d: &RawDelete) -> Result<ActionKind, LabError> {
    let (is_pod, namespace, name) = pod_or_deployment(f, at, "delete", &d.pod, &d.deployment)?;
    Ok(ActionKind::Delete(if is_pod {
        PodRef::Pod { namespace, name }
    } else {
        PodRef::Deployment { namespace, name }
    }))
}

fn scale(f: &str, at: &str, sc: &RawScale) -> Result<ActionKind, LabError> {
    if !(0..=MAX_REPLICAS).contains(&sc.replicas) {
        return Err(LabError::invalid(
            f,
            format!("{at}.scale.replicas"),
            format!("{} is not in 0..={MAX_REPLICAS}", sc.replicas),
        ));
    }
    let (namespace, name) = namespaced(&sc.deployment);
    Ok(ActionKind::Scale {
        namespace,
        deployment: name,
        replicas: sc.replicas as u32,
    })
}

fn request(
    f: &str,
    at: &str,
    p: &RawPlan,
    clients: &[ClientSpec],
    nodes: &NodeIndex,
    lb: Option<&LoadBalancer>,
) -> Result<PlanStep, LabError> {
    let inv = |field: &str, msg: String| LabError::invalid(f, format!("{at}.{field}"), msg);
    let Some(from) = p.from.clone() else {
        return Err(inv(
            "from",
            "missing (a request needs `from` and `to`; or use `scale:` / `wait:` / `crash:`)"
                .into(),
        ));
    };
    let Some(to) = p.to.as_deref() else {
        return Err(inv(
            "to",
            "missing (a node name, `loadBalancer` or an IP address)".into(),
        ));
    };
    let Some(client) = clients.iter().find(|c| c.name == from) else {
        let known: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
        return Err(inv(
            "from",
            format!("unknown client {from:?} (known: {})", known.join(", ")),
        ));
    };
    let target = target(f, at, to, nodes, lb.is_some())?;
    let family = family(f, at, p.family.as_deref(), &target, client, nodes, lb)?;
    let port = match p.port {
        None => None,
        Some(v) => Some(check_port(f, &format!("{at}.port"), v)?),
    };
    if port.is_some() && p.port_name.is_some() {
        return Err(inv(
            "portName",
            "set `port` (a service port number) or `portName`, not both".into(),
        ));
    }
    let service = p.service.as_ref().map(|s| {
        if s.contains('/') {
            s.clone()
        } else {
            format!("default/{s}")
        }
    });
    let count = match p.count {
        None => 1,
        Some(c) if (1..=MAX_COUNT).contains(&c) => c as u32,
        Some(c) => return Err(inv("count", format!("{c} is not in 1..={MAX_COUNT}"))),
    };
    let path = p.path.clone().unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') {
        return Err(inv("path", format!("{path:?} must start with '/'")));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(inv(
            "path",
            format!("{path:?} must not contain spaces or control characters"),
        ));
    }
    let duration = |field: &str, v: &Option<Value>| match v {
        Some(v) => parse_duration(f, &format!("{at}.{field}"), v).map(Some),
        None => Ok(None),
    };
    let udp = udp_fields(f, at, p)?;
    Ok(PlanStep {
        client: from,
        target,
        family,
        service,
        port,
        port_name: p.port_name.clone(),
        service_port: None,
        count,
        path,
        connect_timeout: duration("connectTimeout", &p.connect_timeout)?,
        max_time: duration("maxTime", &p.max_time)?,
        protocol: udp.protocol,
        payload: udp.payload,
        timeout: udp.timeout,
        source_port: udp.source_port,
    })
}

/// What a plan entry's `protocol`, `payload`, `timeout` and `sourcePort` say.
struct UdpFields {
    protocol: Protocol,
    payload: String,
    timeout: Duration,
    source_port: Option<u16>,
}

/// Longest `payload:` (one datagram; agnhost netexec reads up to 1024 bytes).
pub const MAX_PAYLOAD: usize = 1024;
/// Longest UDP `timeout:`.
pub const MAX_UDP_TIMEOUT: Duration = Duration::from_secs(300);

/// `protocol:` (TCP or UDP; default TCP) and the fields only UDP takes.
fn udp_fields(f: &str, at: &str, p: &RawPlan) -> Result<UdpFields, LabError> {
    let inv = |field: &str, msg: String| LabError::invalid(f, format!("{at}.{field}"), msg);
    let protocol = match p.protocol.as_deref() {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some(other) => return Err(inv("protocol", format!("{other:?} is not TCP or UDP"))),
    };
    // Fields of the other protocol are refused, naming the first one set.
    let (others, msg) = if protocol == Protocol::Tcp {
        (
            [
                ("payload", p.payload.is_some()),
                ("timeout", p.timeout.is_some()),
                ("sourcePort", p.source_port.is_some()),
            ],
            "only for `protocol: UDP` (TCP requests use connectTimeout/maxTime)",
        )
    } else {
        (
            [
                ("path", p.path.is_some()),
                ("connectTimeout", p.connect_timeout.is_some()),
                ("maxTime", p.max_time.is_some()),
            ],
            "only for TCP requests (a UDP entry takes payload and timeout)",
        )
    };
    if let Some((field, _)) = others.iter().find(|(_, set)| *set) {
        return Err(inv(field, msg.into()));
    }
    let payload = p
        .payload
        .clone()
        .unwrap_or_else(|| DEFAULT_UDP_PAYLOAD.to_string());
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(inv(
            "payload",
            format!("{} bytes; a payload takes 1..={MAX_PAYLOAD}", payload.len()),
        ));
    }
    if payload.chars().any(|c| c.is_control()) {
        return Err(inv(
            "payload",
            format!("{payload:?} must not contain control characters"),
        ));
    }
    let timeout = match &p.timeout {
        None => DEFAULT_UDP_TIMEOUT,
        Some(v) => parse_duration(f, &format!("{at}.timeout"), v)?,
    };
    if timeout.is_zero() || timeout > MAX_UDP_TIMEOUT {
        return Err(inv(
            "timeout",
            format!(
                "{} s is not in (0, {}] s",
                timeout.as_secs_f64(),
                MAX_UDP_TIMEOUT.as_secs()
            ),
        ));
    }
    let source_port = match p.source_port {
        None => None,
        Some(v) => Some(check_port(f, &format!("{at}.sourcePort"), v)?),
    };
    Ok(UdpFields {
        protocol,
        payload,
        timeout,
        source_port,
    })
}

/// `family:` (IPv4 or IPv6; an address target sets its own): which address of the node or
/// the load balancer a request goes to. An IPv6 request needs an IPv6 address on the client
/// (an external client's `ipv6`, a pod client's node's IPv6 podCIDR) and on the target.
fn family(
    f: &str,
    at: &str,
    given: Option<&str>,
    target: &Target,
    client: &ClientSpec,
    nodes: &NodeIndex,
    lb: Option<&LoadBalancer>,
) -> Result<IpFamily, LabError> {
    let inv = |field: &str, msg: String| LabError::invalid(f, format!("{at}.{field}"), msg);
    let given = match given {
        None => None,
        Some("IPv4") => Some(IpFamily::V4),
        Some("IPv6") => Some(IpFamily::V6),
        Some(other) => return Err(inv("family", format!("{other:?} is not IPv4 or IPv6"))),
    };
    let family = match (target, given) {
        (Target::Address(ip), given) => {
            let own = IpFamily::of(*ip);
            if let Some(g) = given.filter(|g| *g != own) {
                return Err(inv(
                    "family",
                    format!(
                        "{} but `to` {ip} is an {} address",
                        g.as_str(),
                        own.as_str()
                    ),
                ));
            }
            own
        }
        (_, given) => given.unwrap_or(IpFamily::V4),
    };
    if family == IpFamily::V4 {
        return Ok(family);
    }
    match target {
        Target::Node(name) => {
            let node = nodes.get(f, format!("{at}.to"), name)?;
            if node.ipv6.is_none() {
                return Err(inv(
                    "to",
                    format!("node {name} has no IPv6 address (set its `ipv6`) for `family: IPv6`"),
                ));
            }
        }
        Target::LoadBalancer if lb.is_some_and(|lb| lb.ipv6.is_none()) => {
            return Err(inv(
                "to",
                "the load balancer has no IPv6 address (set loadBalancer.ipv6) for `family: IPv6`"
                    .into(),
            ));
        }
        _ => {}
    }
    let has_v6 = match &client.attach {
        ClientAttach::External { .. } => client.ipv6.is_some(),
        ClientAttach::Pod { node } => nodes
            .get(f, format!("{at}.from"), node)?
            .pod_cidr_v6
            .is_some(),
    };
    if !has_v6 {
        let why = match &client.attach {
            ClientAttach::External { .. } => "set `ipv6`".to_string(),
            ClientAttach::Pod { node } => format!("its node {node} has no IPv6 podCIDR"),
        };
        return Err(inv(
            "from",
            format!(
                "client {} has no IPv6 address ({why}) for an IPv6 request",
                client.name
            ),
        ));
    }
    Ok(family)
}

/// `to:`: `loadBalancer`, an IP address or a node name.
fn target(
    f: &str,
    at: &str,
    to: &str,
    nodes: &NodeIndex,
    has_lb: bool,
) -> Result<Target, LabError> {
    if to == "loadBalancer" {
        if !has_lb {
            return Err(LabError::invalid(
                f,
                format!("{at}.to"),
                "\"loadBalancer\" but the config has no loadBalancer",
            ));
        }
        Ok(Target::LoadBalancer)
    } else if let Ok(ip) = to.parse::<IpAddr>() {
        Ok(Target::Address(ip))
    } else if nodes.by_name.contains_key(to) {
        Ok(Target::Node(to.to_string()))
    } else {
        Err(LabError::invalid(
            f,
            format!("{at}.to"),
            format!(
                "unknown node {to:?} (known: {}; or `loadBalancer`, or an IP address)",
                nodes.names().join(", ")
            ),
        ))
    }
}

pub(crate) fn check_port(file: &str, field: &str, v: i64) -> Result<u16, LabError> {
    if (1..=65535).contains(&v) {
        Ok(v as u16)
    } else {
        Err(LabError::invalid(
            file,
            field,
            format!("port {v} is out of range 1-65535"),
        ))
    }
}

pub(super) fn links(f: &str, raw: &[RawLink]) -> Result<Vec<LinkSpec>, LabError> {
    let mut links: Vec<LinkSpec> = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let at = format!("links[{i}]");
        let dur = |field: &str, v: &Option<Value>| -> Result<Duration, LabError> {
            match v {
                Some(v) => parse_duration(f, &format!("{at}.{field}"), v),
                None => Ok(Duration::ZERO),
            }
        };
        let loss = l.loss.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&loss) {
            return Err(LabError::invalid(
                f,
                format!("{at}.loss"),
                format!("{loss} is not a probability in 0..=1"),
            ));
        }
        let rate = match &l.rate {
            None => None,
            Some(v) => Some(parse_rate(f, &format!("{at}.rate"), v)?),
        };
        if links.iter().any(|x| x.link == l.link) {
            return Err(LabError::invalid(
                f,
                format!("{at}.link"),
                format!("duplicate link {:?}", l.link),
            ));
        }
        links.push(LinkSpec {
            link: l.link.clone(),
            delay: dur("delay", &l.delay)?,
            jitter: dur("jitter", &l.jitter)?,
            loss,
            rate,
        });
    }
    Ok(links)
}
