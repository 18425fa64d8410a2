//! `clients:` (external clients behind the router, pod clients on a node) and `loadBalancer:`.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::nodes::Networks;
use super::raw::{RawClient, RawHealthCheck, RawLoadBalancer};
use super::{ClientSpec, NodeIndex};
use crate::error::LabError;
use crate::model::{ClientAttach, HealthCheck, LoadBalancer};
use crate::names;
use crate::net::{parse_ip, parse_ip6, Claims};
use crate::units::parse_duration;

pub(super) fn clients(
    f: &str,
    raw: &[RawClient],
    nodes: &NodeIndex,
    nets: &Networks,
    claims: &mut Claims,
) -> Result<Vec<ClientSpec>, LabError> {
    let mut clients: Vec<ClientSpec> = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    for (i, c) in raw.iter().enumerate() {
        let at = format!("clients[{i}]");
        let rule = names::client_name;
        super::unique_name(f, format!("{at}.name"), &c.name, "client", rule, &mut seen)?;
        let ip = match &c.ip {
            Some(s) => Some(parse_ip(f, &format!("{at}.ip"), s)?),
            None => None,
        };
        let attach = attach(f, &at, c, ip, nodes, nets)?;
        if let Some(ip) = ip {
            claims.claim(f, ip, &format!("{at}.ip"), &format!("client {}", c.name))?;
        }
        let ipv6 = client_ipv6(f, &at, c, &attach, nets)?;
        if let Some(ip) = ipv6 {
            claims.claim(f, ip, &format!("{at}.ipv6"), &format!("client {}", c.name))?;
        }
        clients.push(ClientSpec {
            name: c.name.clone(),
            ip,
            ipv6,
            attach,
        });
    }
    Ok(clients)
}

/// Where a client sits: a pod on `node` (its address, if given, free in that podCIDR) or
/// external (an address outside the node network and clusterCIDR).
fn attach(
    f: &str,
    at: &str,
    c: &RawClient,
    ip: Option<Ipv4Addr>,
    nodes: &NodeIndex,
    nets: &Networks,
) -> Result<ClientAttach, LabError> {
    let inv = |field: String, msg: String| LabError::invalid(f, field, msg);
    match (&c.node, &c.can_reach) {
        (Some(_), Some(_)) => Err(inv(
            at.to_string(),
            "a client is either a pod (`node`) or external (`canReach`), not both".into(),
        )),
        (Some(node), None) => {
            let n = nodes.get(f, format!("{at}.node"), node)?;
            if let Some(ip) = ip {
                let host_ok = crate::net::is_host_of(&n.pod_cidr, ip) && ip != n.cni0_ip();
                if !host_ok {
                    return Err(inv(
                        format!("{at}.ip"),
                        format!(
                            "{ip} is not a free pod address of node {node}'s podCIDR {} (.0 and .1 are reserved)",
                            n.pod_cidr
                        ),
                    ));
                }
            }
            Ok(ClientAttach::Pod { node: node.clone() })
        }
        (None, reach) => {
            let Some(ip) = ip else {
                return Err(inv(
                    format!("{at}.ip"),
                    "missing (external clients need an address; pod clients set `node`)".into(),
                ));
            };
            if nets.node_network.contains(&ip) {
                return Err(inv(
                    format!("{at}.ip"),
                    format!(
                        "{ip} is inside nodeNetwork {}; external clients sit behind the router",
                        nets.node_network
                    ),
                ));
            }
            if nets.cluster_cidr.contains(&ip) {
                return Err(inv(
                    format!("{at}.ip"),
                    format!("{ip} is inside clusterCIDR {} (pod addresses); use `node:` for a pod client", nets.cluster_cidr),
                ));
            }
            let can_reach = match reach {
                Some(list) => {
                    for (j, n) in list.iter().enumerate() {
                        nodes.get(f, format!("{at}.canReach[{j}]"), n)?;
                    }
                    list.clone()
                }
                None => nodes.names(),
            };
            Ok(ClientAttach::External { can_reach })
        }
    }
}

/// An external client's `ipv6` (outside nodeNetworkV6 and the IPv6 clusterCIDR). Pod clients
/// take theirs from the node's IPv6 podCIDR (the offset of their IPv4 address), so they may
/// not set one.
fn client_ipv6(
    f: &str,
    at: &str,
    c: &RawClient,
    attach: &ClientAttach,
    nets: &Networks,
) -> Result<Option<Ipv6Addr>, LabError> {
    let Some(s) = &c.ipv6 else { return Ok(None) };
    let field = format!("{at}.ipv6");
    let ip = parse_ip6(f, &field, s)?;
    let inv = |msg: String| Err(LabError::invalid(f, field.as_str(), msg));
    if let ClientAttach::Pod { node } = attach {
        return inv(format!(
            "{ip}: a pod client's IPv6 address comes from node {node}'s IPv6 podCIDR (the offset of its IPv4 address); leave `ipv6` out"
        ));
    }
    let Some(v6) = &nets.v6 else {
        return inv(format!("{ip}: the lab has no IPv6 (give the nodes `ipv6`)"));
    };
    if let Some(nn) = v6.node_network.filter(|nn| nn.contains(&ip)) {
        return inv(format!(
            "{ip} is inside nodeNetworkV6 {nn}; external clients sit behind the router"
        ));
    }
    if v6.cluster_cidr.contains(&ip) {
        return inv(format!(
            "{ip} is inside clusterCIDR {} (pod addresses); use `node:` for a pod client",
            v6.cluster_cidr
        ));
    }
    Ok(Some(ip))
}

pub(super) fn load_balancer(
    f: &str,
    lb: &RawLoadBalancer,
    nodes: &NodeIndex,
    nets: &Networks,
    claims: &mut Claims,
) -> Result<LoadBalancer, LabError> {
    let ip = parse_ip(f, "loadBalancer.ip", &lb.ip)?;
    if nets.cluster_cidr.contains(&ip) {
        return Err(LabError::invalid(
            f,
            "loadBalancer.ip",
            format!("{ip} is inside clusterCIDR {}", nets.cluster_cidr),
        ));
    }
    claims.claim(f, ip, "loadBalancer.ip", "the load balancer")?;
    let ipv6 = match &lb.ipv6 {
        None => None,
        Some(s) => {
            let ip6 = parse_ip6(f, "loadBalancer.ipv6", s)?;
            let Some(v6) = &nets.v6 else {
                return Err(LabError::invalid(
                    f,
                    "loadBalancer.ipv6",
                    format!("{ip6}: the lab has no IPv6 (give the nodes `ipv6`)"),
                ));
            };
            if v6.cluster_cidr.contains(&ip6) {
                return Err(LabError::invalid(
                    f,
                    "loadBalancer.ipv6",
                    format!("{ip6} is inside clusterCIDR {}", v6.cluster_cidr),
                ));
            }
            claims.claim(f, ip6, "loadBalancer.ipv6", "the load balancer")?;
            Some(ip6)
        }
    };
    let lb_nodes = match &lb.nodes {
        Some(list) => {
            if list.is_empty() {
                return Err(LabError::invalid(
                    f,
                    "loadBalancer.nodes",
                    "must list at least one node",
                ));
            }
            let mut seen = HashSet::new();
            for (j, n) in list.iter().enumerate() {
                nodes.get(f, format!("loadBalancer.nodes[{j}]"), n)?;
                if !seen.insert(n) {
                    return Err(LabError::invalid(
                        f,
                        format!("loadBalancer.nodes[{j}]"),
                        format!("duplicate node {n:?}"),
                    ));
                }
            }
            list.clone()
        }
        None => nodes.names(),
    };
    let health_check = match &lb.health_check {
        None => None,
        Some(hc) => Some(health_check(f, hc)?),
    };
    let name = lb.name.clone().unwrap_or_else(|| "lb".to_string());
    names::dns1123_label(&name).map_err(|e| {
        LabError::invalid(
            f,
            "loadBalancer.name",
            format!("{name:?} is not a valid name: {e}"),
        )
    })?;
    Ok(LoadBalancer {
        name,
        ip,
        ipv6,
        nodes: lb_nodes,
        health_check,
        weighted: lb.weighted,
    })
}

fn health_check(f: &str, hc: &RawHealthCheck) -> Result<HealthCheck, LabError> {
    let interval = match &hc.interval {
        Some(v) => parse_duration(f, "loadBalancer.healthCheck.interval", v)?,
        None => Duration::from_secs(10),
    };
    let healthy = hc.healthy_threshold.unwrap_or(3);
    let unhealthy = hc.unhealthy_threshold.unwrap_or(3);
    if healthy == 0 {
        return Err(LabError::invalid(
            f,
            "loadBalancer.healthCheck.healthyThreshold",
            "0 must be at least 1",
        ));
    }
    if unhealthy == 0 {
        return Err(LabError::invalid(
            f,
            "loadBalancer.healthCheck.unhealthyThreshold",
            "0 must be at least 1",
        ));
    }
    Ok(HealthCheck {
        interval,
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
    })
}
