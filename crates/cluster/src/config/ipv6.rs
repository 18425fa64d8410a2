//! The IPv6 half of a dual-stack lab: `nodeNetworkV6`, `routerV6`, the IPv6 `clusterCIDR`,
//! `serviceCIDR` (both families), and each node's `ipv6` and IPv6 pod CIDR (`podCIDRs`).
//!
//! The lab's node network always keeps IPv4; IPv6 is added when any node has an `ipv6`
//! address or the config names an IPv6 CIDR (`nodeNetworkV6`, `routerV6`, `clusterCIDR`,
//! `serviceCIDR`, a node's `podCIDRs`). A config without any of them parses to the same
//! IPv4-only model as before.

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_yaml_ng::Value;

use super::raw::{RawConfig, RawNode};
use crate::error::LabError;
use crate::net::{self, parse_cidr_list, parse_ip6, parse_net6, Claims};

/// kube-proxy's IPv4 `clusterCIDR` when the config gives none.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The IPv6 `clusterCIDR` of a dual-stack lab that gives none (per-node /64s from it).
pub const DEFAULT_CLUSTER_CIDR_V6: &str = "fd00:10:244::/56";
/// kube-apiserver's default `--service-cluster-ip-range` (IPv4).
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// The IPv6 service range of a dual-stack lab that gives no `serviceCIDR`.
pub const DEFAULT_SERVICE_CIDR_V6: &str = "fd00:10:96::/112";
/// kube-apiserver's `maxCIDRBits` for a service range: at most 2^20 addresses
/// (cmd/kube-apiserver/app/options/validation.go, validateMaxCIDRRange: "specified
/// --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12").
const MAX_SERVICE_CIDR_BITS: u8 = 20;

/// The IPv6 networks of a dual-stack lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct V6Networks {
    /// `None` when no node has an IPv6 address and the config names none.
    pub node_network: Option<Ipv6Net>,
    pub router: Option<Ipv6Addr>,
    pub cluster_cidr: Ipv6Net,
}

/// `clusterCIDR` (one CIDR or a dual-stack pair): the IPv4 one (default 10.244.0.0/16) and
/// the IPv6 one, if given.
pub(super) fn cluster_cidrs(
    f: &str,
    raw: Option<&Value>,
) -> Result<(Ipv4Net, Option<Ipv6Net>), LabError> {
    let default4: Ipv4Net = DEFAULT_CLUSTER_CIDR.parse().expect("a valid CIDR literal");
    let Some(v) = raw else {
        return Ok((default4, None));
    };
    // A single IPv4 CIDR keeps the lab's IPv4 message.
    if let Value::String(s) = v {
        if !s.contains(',') && !s.contains(':') {
            return Ok((net::parse_net(f, "clusterCIDR", s)?, None));
        }
    }
    let mut v4 = default4;
    let mut v6 = None;
    for n in parse_cidr_list(f, "clusterCIDR", v)? {
        match n {
            IpNet::V4(n) => v4 = n,
            IpNet::V6(n) => v6 = Some(n),
        }
    }
    Ok((v4, v6))
}

/// Whether the config asks for IPv6 anywhere (see the module doc).
pub(super) fn wants_v6(raw: &RawConfig, cluster_v6: Option<Ipv6Net>) -> bool {
    let pod_v6 = |n: &RawNode| {
        n.pod_cidrs
            .iter()
            .flatten()
            .any(|c| c.parse::<IpNet>().is_ok_and(|c| matches!(c, IpNet::V6(_))))
    };
    let service_v6 = match &raw.service_cidr {
        Some(Value::String(s)) => s.contains(':'),
        Some(Value::Sequence(l)) => l
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.contains(':'))),
        _ => false,
    };
    cluster_v6.is_some()
        || raw.node_network_v6.is_some()
        || raw.router_v6.is_some()
        || service_v6
        || raw.nodes.iter().any(|n| n.ipv6.is_some() || pod_v6(n))
}

/// `nodeNetworkV6` (default: the first IPv6 node's /64), `routerV6` (default: its first
/// host) and the IPv6 clusterCIDR (default fd00:10:244::/56). Claims the router's address.
pub(super) fn networks(
    f: &str,
    raw: &RawConfig,
    cluster_v6: Option<Ipv6Net>,
    claims: &mut Claims,
) -> Result<V6Networks, LabError> {
    let inv = |field: &str, msg: String| LabError::invalid(f, field, msg);
    let cluster_cidr = cluster_v6.unwrap_or_else(|| {
        DEFAULT_CLUSTER_CIDR_V6
            .parse()
            .expect("a valid CIDR literal")
    });
    let first = raw.nodes.iter().enumerate().find(|(_, n)| n.ipv6.is_some());
    let node_network = match (&raw.node_network_v6, first) {
        (Some(s), _) => Some(parse_net6(f, "nodeNetworkV6", s)?),
        (None, Some((i, n))) => {
            let field = format!("nodes[{i}].ipv6");
            let ip = parse_ip6(f, &field, n.ipv6.as_deref().unwrap_or_default())?;
            Some(
                Ipv6Net::new(ip, 64)
                    .map_err(|e| inv(&field, e.to_string()))?
                    .trunc(),
            )
        }
        (None, None) => None,
    };
    let router = match (&raw.router_v6, node_network) {
        (Some(s), _) => Some(parse_ip6(f, "routerV6", s)?),
        (None, Some(nn)) => Some(net::first_host6(&nn).ok_or_else(|| {
            inv(
                "nodeNetworkV6",
                format!("{nn} has no room for a router and nodes (at most /126)"),
            )
        })?),
        (None, None) => None,
    };
    if let Some(r) = router {
        let Some(nn) = node_network else {
            return Err(inv(
                "routerV6",
                format!("{r} needs nodeNetworkV6 (or a node with `ipv6`)"),
            ));
        };
        if !net::is_host_of6(&nn, r) {
            return Err(inv(
                "routerV6",
                format!("{r} is not a host address of nodeNetworkV6 {nn}"),
            ));
        }
        claims.claim(f, r, "routerV6", "router")?;
    }
    if let Some(nn) = node_network {
        if net::nets_overlap6(&cluster_cidr, &nn) {
            return Err(inv(
                "clusterCIDR",
                format!("{cluster_cidr} overlaps nodeNetworkV6 {nn}"),
            ));
        }
    }
    Ok(V6Networks {
        node_network,
        router,
        cluster_cidr,
    })
}

/// `serviceCIDR`: the ClusterIP ranges, primary family first (kube-apiserver's
/// `--service-cluster-ip-range`). Default: 10.96.0.0/12, plus fd00:10:96::/112 in a
/// dual-stack lab. The lab's `default/kubernetes` Service is IPv4, so an IPv4 range is
/// required.
pub(super) fn service_cidrs(
    f: &str,
    raw: Option<&Value>,
    dual: bool,
) -> Result<Vec<IpNet>, LabError> {
    let Some(v) = raw else {
        let mut out = vec![DEFAULT_SERVICE_CIDR.parse().expect("a valid CIDR literal")];
        if dual {
            out.push(
                DEFAULT_SERVICE_CIDR_V6
                    .parse()
                    .expect("a valid CIDR literal"),
            );
        }
        return Ok(out);
    };
    let nets = parse_cidr_list(f, "serviceCIDR", v)?;
    for n in &nets {
        let bits = n.max_prefix_len() - n.prefix_len();
        let (min_prefix, room) = match n {
            IpNet::V4(_) => (32 - MAX_SERVICE_CIDR_BITS, bits >= 2),
            IpNet::V6(_) => (128 - MAX_SERVICE_CIDR_BITS, bits >= 2),
        };
        if bits > MAX_SERVICE_CIDR_BITS {
            return Err(LabError::invalid(
                f,
                "serviceCIDR",
                format!(
                    "{n} is too large; for {}-bit addresses, the mask must be >= {min_prefix}",
                    n.max_prefix_len()
                ),
            ));
        }
        if !room {
            return Err(LabError::invalid(
                f,
                "serviceCIDR",
                format!("{n} has no room for ClusterIPs"),
            ));
        }
    }
    if !nets.iter().any(|n| matches!(n, IpNet::V4(_))) {
        return Err(LabError::invalid(
            f,
            "serviceCIDR",
            format!(
                "{v:?} has no IPv4 range; the lab's default/kubernetes Service is IPv4 (for IPv6 Services give a pair, e.g. \"fd00:10:96::/112,10.96.0.0/12\")",
                v = nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
            ),
        ));
    }
    Ok(nets)
}

/// An IPv6 CIDR with the field it came from.
type FieldNet = (String, Ipv6Net);

/// A node's pod CIDRs as the config gives them, each with the field it came from.
pub(super) struct GivenPodCidrs {
    /// (field, text) of the IPv4 one (`podCIDR` or its `podCIDRs` entry).
    pub v4: Option<(String, String)>,
    /// (field, CIDR) of the IPv6 `podCIDRs` entry.
    pub v6: Option<FieldNet>,
}

/// A node's pod CIDRs from `podCIDR` / `podCIDRs` (node.spec.podCIDRs: at most one per
/// family, podCIDR = podCIDRs[0]).
pub(super) fn pod_cidr_fields(f: &str, at: &str, n: &RawNode) -> Result<GivenPodCidrs, LabError> {
    let Some(list) = &n.pod_cidrs else {
        return Ok(GivenPodCidrs {
            v4: n.pod_cidr.clone().map(|s| (format!("{at}.podCIDR"), s)),
            v6: None,
        });
    };
    let field = format!("{at}.podCIDRs");
    if list.is_empty() || list.len() > 2 {
        return Err(LabError::invalid(
            f,
            field,
            format!("{} CIDRs; give one per IP family (at most 2)", list.len()),
        ));
    }
    if let (Some(single), Some(first)) = (&n.pod_cidr, list.first()) {
        if single.trim() != first.trim() {
            return Err(LabError::invalid(
                f,
                format!("{field}[0]"),
                format!("{first:?} must match podCIDR {single:?} (podCIDR is podCIDRs[0])"),
            ));
        }
    }
    let mut v4 = None;
    let mut v6: Option<FieldNet> = None;
    for (k, s) in list.iter().enumerate() {
        let fk = format!("{field}[{k}]");
        if s.contains(':') {
            let net6 = parse_net6(f, &fk, s)?;
            if v6.is_some() {
                return Err(LabError::invalid(
                    f,
                    fk,
                    format!("{net6}: at most one CIDR per IP family"),
                ));
            }
            v6 = Some((fk, net6));
        } else {
            if v4.is_some() {
                return Err(LabError::invalid(
                    f,
                    fk,
                    format!("{s:?}: at most one CIDR per IP family"),
                ));
            }
            v4 = Some((fk, s.clone()));
        }
    }
    Ok(GivenPodCidrs {
        v4: v4.or_else(|| n.pod_cidr.clone().map(|s| (format!("{at}.podCIDR"), s))),
        v6,
    })
}

/// The IPv6 half of the nodes, one after the other (each checked against the ones before).
pub(super) struct V6Nodes<'a> {
    pub f: &'a str,
    pub nets: &'a V6Networks,
    /// (name, IPv6 pod CIDR) of the nodes so far.
    before: Vec<(String, Option<Ipv6Net>)>,
}

impl<'a> V6Nodes<'a> {
    pub fn new(f: &'a str, nets: &'a V6Networks) -> Self {
        V6Nodes {
            f,
            nets,
            before: Vec::new(),
        }
    }

    /// Node `i`'s IPv6 address and pod CIDR (explicit, or the node's index-th /64 of the
    /// IPv6 clusterCIDR when it has an address). `v4_pod` is the node's IPv4 pod CIDR: the
    /// IPv6 one must hold the same offsets. Claims the address.
    pub fn node(
        &mut self,
        (at, i): (&str, usize),
        n: &RawNode,
        explicit_pod: Option<FieldNet>,
        v4_pod: Ipv4Net,
        claims: &mut Claims,
    ) -> Result<(Option<Ipv6Addr>, Option<Ipv6Net>), LabError> {
        let (ip, pod) = node_v6(self.f, at, i, n, explicit_pod, self.nets, claims)?;
        if let Some((field, p)) = &pod {
            check_pod_v6(self.f, field, *p, v4_pod, self.nets, &self.before)?;
        }
        let pod = pod.map(|(_, p)| p);
        self.before.push((n.name.clone(), pod));
        Ok((ip, pod))
    }
}

/// A node's IPv6 address (checked, claimed) and its IPv6 pod CIDR with the field it comes
/// from (not yet checked).
fn node_v6(
    f: &str,
    at: &str,
    i: usize,
    n: &RawNode,
    explicit_pod: Option<FieldNet>,
    nets: &V6Networks,
    claims: &mut Claims,
) -> Result<(Option<Ipv6Addr>, Option<FieldNet>), LabError> {
    let ip = match &n.ipv6 {
        None => None,
        Some(s) => {
            let field = format!("{at}.ipv6");
            let ip = parse_ip6(f, &field, s)?;
            let Some(nn) = nets.node_network else {
                return Err(LabError::invalid(f, field, "needs nodeNetworkV6"));
            };
            if !net::is_host_of6(&nn, ip) {
                return Err(LabError::invalid(
                    f,
                    field,
                    format!("{ip} is not a host address of nodeNetworkV6 {nn}"),
                ));
            }
            claims.claim(f, ip, &field, &format!("node {}", n.name))?;
            Some(ip)
        }
    };
    let (field, pod) = match (explicit_pod, ip) {
        (Some((field, p)), Some(_)) => (field, p),
        (Some((field, p)), None) => {
            return Err(LabError::invalid(
                f,
                field,
                format!("{p}: an IPv6 podCIDR needs the node's `ipv6` address"),
            ))
        }
        (None, Some(_)) => {
            let field = format!("{at}.podCIDRs");
            let cc = nets.cluster_cidr;
            let p = net::nth_subnet6(&cc, i).ok_or_else(|| {
                LabError::invalid(
                    f,
                    field.as_str(),
                    format!("cannot derive a /64 from clusterCIDR {cc}; set podCIDRs"),
                )
            })?;
            (field, p)
        }
        (None, None) => return Ok((None, None)),
    };
    Ok((ip, Some((field, pod))))
}

fn check_pod_v6(
    f: &str,
    field: &str,
    pod: Ipv6Net,
    v4_pod: Ipv4Net,
    nets: &V6Networks,
    before: &[(String, Option<Ipv6Net>)],
) -> Result<(), LabError> {
    let inv = |msg: String| LabError::invalid(f, field, msg);
    net::no_host_bits(f, field, pod, pod.trunc())?;
    let (bits6, bits4) = (128 - pod.prefix_len(), 32 - v4_pod.prefix_len());
    if bits6 < bits4 {
        return Err(inv(format!(
            "{pod} is smaller than the IPv4 podCIDR {v4_pod} (a pod's IPv6 address has its IPv4 offset; at most /{})",
            128 - bits4
        )));
    }
    if !nets.cluster_cidr.contains(&pod) {
        return Err(inv(format!(
            "{pod} is not inside clusterCIDR {}",
            nets.cluster_cidr
        )));
    }
    if let Some(nn) = nets.node_network.filter(|nn| net::nets_overlap6(nn, &pod)) {
        return Err(inv(format!("{pod} overlaps nodeNetworkV6 {nn}")));
    }
    if let Some((name, Some(o))) = before
        .iter()
        .find(|(_, o)| o.is_some_and(|o| net::nets_overlap6(&o, &pod)))
    {
        return Err(inv(format!("{pod} overlaps podCIDR {o} of node {name}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse_config, LabConfig};

    fn parse(text: &str) -> Result<LabConfig, String> {
        parse_config(text, Path::new("t.yaml"), None).map_err(|e| e.to_string())
    }

    const V4_ONLY: &str =
        "nodes:\n  - {name: a, ip: 10.151.30.11}\n  - {name: b, ip: 10.151.30.12}\n";

    #[test]
    fn ipv4_only_configs_get_no_ipv6() {
        let c = parse(V4_ONLY).unwrap();
        assert_eq!(c.node_network_v6, None);
        assert_eq!(c.router_ipv6, None);
        assert_eq!(c.cluster_cidr_v6, None);
        assert_eq!(c.service_cidrs, vec!["10.96.0.0/12".parse().unwrap()]);
        assert!(c
            .nodes
            .iter()
            .all(|n| n.ipv6.is_none() && n.pod_cidr_v6.is_none()));
    }

    #[test]
    fn dual_stack_defaults() {
        let text = "nodes:\n  - {name: a, ip: 10.151.30.11, ipv6: \"fd00:151:30::11\"}\n  - {name: b, ip: 10.151.30.12, ipv6: \"fd00:151:30::12\"}\n  - {name: c, ip: 10.151.30.13}\nclients:\n  - {name: browser, ip: 203.0.113.11, ipv6: \"2001:db8::11\"}\n";
        let c = parse(text).unwrap();
        assert_eq!(c.node_network_v6, Some("fd00:151:30::/64".parse().unwrap()));
        assert_eq!(c.router_ipv6, Some("fd00:151:30::1".parse().unwrap()));
        assert_eq!(c.cluster_cidr_v6, Some("fd00:10:244::/56".parse().unwrap()));
        let svc: Vec<String> = c.service_cidrs.iter().map(|n| n.to_string()).collect();
        assert_eq!(svc, ["10.96.0.0/12", "fd00:10:96::/112"]);
        assert_eq!(
            c.nodes[1].pod_cidr_v6,
            Some("fd00:10:244:1::/64".parse().unwrap())
        );
        assert_eq!(
            c.nodes[2].pod_cidr_v6, None,
            "a node without ipv6 gets no IPv6 pods"
        );
        assert_eq!(c.clients[0].ipv6, Some("2001:db8::11".parse().unwrap()));
        // The IPv4 side is untouched.
        assert_eq!(c.cluster_cidr, "10.244.0.0/16".parse().unwrap());
        assert_eq!(c.nodes[1].pod_cidr, "10.244.1.0/24".parse().unwrap());
    }

    #[test]
    fn explicit_pairs() {
        let text = "clusterCIDR: 10.244.0.0/16,fd00:10:244::/56\nserviceCIDR: [fd00:10:96::/112, 10.96.0.0/16]\nnodeNetworkV6: fd00:151:30::/64\nrouterV6: fd00:151:30::fe\nnodes:\n  - {name: a, ip: 10.151.30.11, ipv6: \"fd00:151:30::11\", podCIDRs: [10.244.7.0/24, \"fd00:10:244:7::/64\"]}\n";
        let c = parse(text).unwrap();
        assert_eq!(c.router_ipv6, Some("fd00:151:30::fe".parse().unwrap()));
        assert_eq!(c.service_cidrs[0], "fd00:10:96::/112".parse().unwrap());
        assert_eq!(c.nodes[0].pod_cidr, "10.244.7.0/24".parse().unwrap());
        assert_eq!(
            c.nodes[0].pod_cidr_v6,
            Some("fd00:10:244:7::/64".parse().unwrap())
        );
    }

    #[test]
    fn bad_ipv6_configs_name_the_field() {
        let node = |extra: &str| {
            format!("nodes:\n  - {{name: a, ip: 10.151.30.11, ipv6: \"fd00:151:30::11\"{extra}}}\n")
        };
        let cases: Vec<(String, &str)> = vec![
            (node(", podCIDRs: [\"fd00:10:244:1::5/64\"]"), "nodes[0].podCIDRs[0]: fd00:10:244:1::5/64 has host bits set"),
            (node(", podCIDRs: [\"fd00:99::/64\"]"), "nodes[0].podCIDRs[0]: fd00:99::/64 is not inside clusterCIDR fd00:10:244::/56"),
            (node(", podCIDRs: [\"fd00:10:244::/121\"]"), "is smaller than the IPv4 podCIDR 10.244.0.0/24"),
            (node(", podCIDRs: [10.244.0.0/24, 10.244.1.0/24]"), "nodes[0].podCIDRs[1]: \"10.244.1.0/24\": at most one CIDR per IP family"),
            (node(", podCIDR: 10.244.0.0/24, podCIDRs: [10.244.3.0/24]"), "nodes[0].podCIDRs[0]: \"10.244.3.0/24\" must match podCIDR"),
            ("nodes:\n  - {name: a, ip: 10.151.30.11, ipv6: \"10.1.1.1\"}\n".into(), "nodes[0].ipv6: \"10.1.1.1\" is not an IPv6 address"),
            ("nodeNetworkV6: fd00:1::/64\nnodes:\n  - {name: a, ip: 10.151.30.11, ipv6: \"fd00:2::11\"}\n".into(), "nodes[0].ipv6: fd00:2::11 is not a host address of nodeNetworkV6 fd00:1::/64"),
            ("nodes:\n  - {name: a, ip: 10.151.30.11, podCIDRs: [10.244.0.0/24, \"fd00:10:244::/64\"]}\n".into(), "nodes[0].podCIDRs[1]: fd00:10:244::/64: an IPv6 podCIDR needs the node's `ipv6` address"),
            ("routerV6: fd00:1::1\nnodes:\n  - {name: a, ip: 10.151.30.11}\n".into(), "routerV6: fd00:1::1 needs nodeNetworkV6"),
            (node("").replace("nodes:", "routerV6: fd00:9::1\nnodes:"), "routerV6: fd00:9::1 is not a host address of nodeNetworkV6 fd00:151:30::/64"),
            (node("").replace("nodes:", "clusterCIDR: [10.244.0.0/16, \"fd00:151::/32\"]\nnodes:"), "clusterCIDR: fd00:151::/32 overlaps nodeNetworkV6 fd00:151:30::/64"),
            (node("").replace("nodes:", "serviceCIDR: fd00:10:96::/64,10.96.0.0/12\nnodes:"), "serviceCIDR: fd00:10:96::/64 is too large; for 128-bit addresses, the mask must be >= 108"),
            (node("").replace("nodes:", "serviceCIDR: 10.0.0.0/8\nnodes:"), "serviceCIDR: 10.0.0.0/8 is too large; for 32-bit addresses, the mask must be >= 12"),
            (node("").replace("nodes:", "serviceCIDR: fd00:10:96::/112\nnodes:"), "serviceCIDR: \"fd00:10:96::/112\" has no IPv4 range"),
            (node("").replace("nodes:", "serviceCIDR: 10.96.0.0/31\nnodes:"), "serviceCIDR: 10.96.0.0/31 has no room for ClusterIPs"),
            (format!("{}clients:\n  - {{name: c, ip: 203.0.113.1, ipv6: \"fd00:151:30::99\"}}\n", node("")), "clients[0].ipv6: fd00:151:30::99 is inside nodeNetworkV6"),
            (format!("{}clients:\n  - {{name: c, ip: 203.0.113.1, ipv6: \"fd00:10:244::9\"}}\n", node("")), "clients[0].ipv6: fd00:10:244::9 is inside clusterCIDR fd00:10:244::/56"),
            (format!("{}clients:\n  - {{name: c, node: a, ipv6: \"2001:db8::1\"}}\n", node("")), "clients[0].ipv6: 2001:db8::1: a pod client's IPv6 address comes from node a's IPv6 podCIDR"),
            (format!("{V4_ONLY}clients:\n  - {{name: c, ip: 203.0.113.1, ipv6: \"2001:db8::1\"}}\n"), "clients[0].ipv6: 2001:db8::1: the lab has no IPv6"),
            (format!("{}loadBalancer: {{ip: 198.51.100.10, ipv6: \"fd00:151:30::11\"}}\n", node("")), "loadBalancer.ipv6: duplicate address fd00:151:30::11 (already used by node a)"),
        ];
        for (text, want) in cases {
            let e = parse(&text).expect_err(&text);
            assert!(e.contains(want), "{text}\n got: {e}\nwant: {want}");
        }
    }
}
