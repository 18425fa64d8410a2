//! `plan:` (requests, `scale:` and `wait:` actions) and `links:` (impairments).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::raw::{RawLink, RawPlan, RawScale};
use super::{ClientSpec, NodeIndex};
use crate::error::LabError;
use crate::model::{ActionKind, LinkSpec, PlanAction, PlanStep, Target};
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

/// A `scale:` or `wait:` entry (`None` for a request).
fn action(f: &str, at: &str, p: &RawPlan) -> Result<Option<ActionKind>, LabError> {
    let request_fields = p.from.is_some()
        || p.to.is_some()
        || p.service.is_some()
        || p.port.is_some()
        || p.port_name.is_some()
        || p.count.is_some()
        || p.path.is_some()
        || p.connect_timeout.is_some()
        || p.max_time.is_some();
    let kind = match (&p.scale, &p.wait) {
        (Some(_), Some(_)) => {
            return Err(LabError::invalid(
                f,
                at,
                "`scale` and `wait` must be separate plan entries",
            ))
        }
        (Some(sc), None) => scale(f, at, sc)?,
        (None, Some(v)) => ActionKind::Wait(parse_duration(f, &format!("{at}.wait"), v)?),
        (None, None) => return Ok(None),
    };
    if request_fields {
        return Err(LabError::invalid(
            f,
            at,
            "a `scale`/`wait` entry takes no request fields (from, to, count, ...)",
        ));
    }
    Ok(Some(kind))
}

fn scale(f: &str, at: &str, sc: &RawScale) -> Result<ActionKind, LabError> {
    if !(0..=MAX_REPLICAS).contains(&sc.replicas) {
        return Err(LabError::invalid(
            f,
            format!("{at}.scale.replicas"),
            format!("{} is not in 0..={MAX_REPLICAS}", sc.replicas),
        ));
    }
    let (namespace, name) = match sc.deployment.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => ("default".to_string(), sc.deployment.clone()),
    };
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
