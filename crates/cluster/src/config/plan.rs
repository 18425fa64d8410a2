//! `plan:` (requests, `scale:`, `wait:` and `delete:` actions) and `links:` (impairments).

use std::net::Ipv4Addr;
use std::time::Duration;

use nodeport::Protocol;
use serde_yaml_ng::Value;

use super::raw::{RawDelete, RawLink, RawPlan, RawScale};
use super::{ClientSpec, NodeIndex};
use crate::error::LabError;
use crate::model::{
    ActionKind, LinkSpec, PlanAction, PlanStep, PodRef, Target, DEFAULT_UDP_PAYLOAD,
    DEFAULT_UDP_TIMEOUT,
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
    has_lb: bool,
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
            plan.push(request(f, &at, p, clients, nodes, has_lb)?);
        }
    }
    Ok((plan, actions))
}

/// A `scale:`, `wait:` or `delete:` entry (`None` for a request).
fn action(f: &str, at: &str, p: &RawPlan) -> Result<Option<ActionKind>, LabError> {
    let request_fields = p.from.is_some()
        || p.to.is_some()
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
    let given = [p.scale.is_some(), p.wait.is_some(), p.delete.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(LabError::invalid(
            f,
            at,
            "`scale`, `wait` and `delete` must be separate plan entries",
        ));
    }
    let kind = match (&p.scale, &p.wait, &p.delete) {
        (Some(sc), _, _) => scale(f, at, sc)?,
        (_, Some(v), _) => ActionKind::Wait(parse_duration(f, &format!("{at}.wait"), v)?),
        (_, _, Some(d)) => delete(f, at, d)?,
        (None, None, None) => return Ok(None),
    };
    if request_fields {
        return Err(LabError::invalid(
            f,
            at,
            "a `scale`/`wait`/`delete` entry takes no request fields (from, to, count, ...)",
        ));
    }
    Ok(Some(kind))
}

/// `namespace/name` or `name` (namespace `default`).
fn ns_name(s: &str) -> (String, String) {
    match s.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => ("default".to_string(), s.to_string()),
    }
}

/// `delete: {pod: NAME}` or `delete: {deployment: NAME}` (exactly one of them).
fn delete(f: &str, at: &str, d: &RawDelete) -> Result<ActionKind, LabError> {
    let named = |field: &str, v: &str| -> Result<(String, String), LabError> {
        let (namespace, name) = ns_name(v);
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(LabError::invalid(
                f,
                format!("{at}.delete.{field}"),
                format!("{v:?} is not `name` or `namespace/name`"),
            ));
        }
        Ok((namespace, name))
    };
    let target = match (&d.pod, &d.deployment) {
        (Some(p), None) => {
            let (namespace, name) = named("pod", p)?;
            PodRef::Pod { namespace, name }
        }
        (None, Some(dep)) => {
            let (namespace, name) = named("deployment", dep)?;
            PodRef::Deployment { namespace, name }
        }
        _ => {
            return Err(LabError::invalid(
                f,
                format!("{at}.delete"),
                "give exactly one of `pod: NAME` or `deployment: NAME`",
            ))
        }
    };
    Ok(ActionKind::Delete(target))
}

fn scale(f: &str, at: &str, sc: &RawScale) -> Result<ActionKind, LabError> {
    if !(0..=MAX_REPLICAS).contains(&sc.replicas) {
        return Err(LabError::invalid(
            f,
            format!("{at}.scale.replicas"),
            format!("{} is not in 0..={MAX_REPLICAS}", sc.replicas),
        ));
    }
    let (namespace, name) = ns_name(&sc.deployment);
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
    has_lb: bool,
) -> Result<PlanStep, LabError> {
    let inv = |field: &str, msg: String| LabError::invalid(f, format!("{at}.{field}"), msg);
    let Some(from) = p.from.clone() else {
        return Err(inv(
            "from",
            "missing (a request needs `from` and `to`; or use `scale:` / `wait:`)".into(),
        ));
    };
    let Some(to) = p.to.as_deref() else {
        return Err(inv(
            "to",
            "missing (a node name, `loadBalancer` or an IPv4 address)".into(),
        ));
    };
    if !clients.iter().any(|c| c.name == from) {
        let known: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
        return Err(inv(
            "from",
            format!("unknown client {from:?} (known: {})", known.join(", ")),
        ));
    }
    let target = target(f, at, to, nodes, has_lb)?;
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
    if protocol == Protocol::Tcp {
        for (field, set) in [
            ("payload", p.payload.is_some()),
            ("timeout", p.timeout.is_some()),
            ("sourcePort", p.source_port.is_some()),
        ] {
            if set {
                return Err(inv(
                    field,
                    "only for `protocol: UDP` (TCP requests use connectTimeout/maxTime)".into(),
                ));
            }
        }
    } else {
        for (field, set) in [
            ("path", p.path.is_some()),
            ("connectTimeout", p.connect_timeout.is_some()),
            ("maxTime", p.max_time.is_some()),
        ] {
            if set {
                return Err(inv(
                    field,
                    "only for TCP requests (a UDP entry takes payload and timeout)".into(),
                ));
            }
        }
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

/// `to:`: `loadBalancer`, an IPv4 address or a node name.
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
    } else if let Ok(ip) = to.parse::<Ipv4Addr>() {
        Ok(Target::Address(ip))
    } else if nodes.by_name.contains_key(to) {
        Ok(Target::Node(to.to_string()))
    } else {
        Err(LabError::invalid(
            f,
            format!("{at}.to"),
            format!(
                "unknown node {to:?} (known: {}; or `loadBalancer`, or an IPv4 address)",
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
