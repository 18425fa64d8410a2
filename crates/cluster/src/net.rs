//! Address helpers shared by the config checks and the scheduler: parsing with lab-style
//! messages (IPv4, IPv6 and dual-stack CIDR lists), CIDR overlap, "the first host of a
//! network", per-node /64s, address claims.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::LabError;

/// `addr + n`, `None` past 255.255.255.255.
pub fn offset(addr: Ipv4Addr, n: u32) -> Option<Ipv4Addr> {
    u32::from(addr).checked_add(n).map(Ipv4Addr::from)
}

/// The first host address of a network (10.244.1.0/24 → 10.244.1.1): a node network's
/// default router, a pod CIDR's cni0. `None` when the network has no room for it (/31, /32).
pub fn first_host(net: &Ipv4Net) -> Option<Ipv4Addr> {
    wire::first_host(net.network(), net.prefix_len())
}

/// Whether `ip` is a host address of `net` (inside, neither network nor broadcast address).
pub fn is_host_of(net: &Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && ip != net.network() && ip != net.broadcast()
}

/// Whether two CIDRs share any address.
pub fn nets_overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The i-th /24 inside `net` (10.244.0.0/16 → 10.244.i.0/24).
pub fn nth_subnet(net: &Ipv4Net, i: usize) -> Option<Ipv4Net> {
    if net.prefix_len() > 24 {
        return None;
    }
    net.subnets(24).ok()?.nth(i)
}

pub fn parse_ip(file: &str, field: &str, s: &str) -> Result<Ipv4Addr, LabError> {
    s.trim()
        .parse()
        .map_err(|_| LabError::invalid(file, field, format!("{s:?} is not an IPv4 address")))
}

pub fn parse_net(file: &str, field: &str, s: &str) -> Result<Ipv4Net, LabError> {
    s.trim().parse().map_err(|_| {
        LabError::invalid(
            file,
            field,
            format!("{s:?} is not an IPv4 CIDR (like 10.244.1.0/24)"),
        )
    })
}

pub fn parse_ip6(file: &str, field: &str, s: &str) -> Result<Ipv6Addr, LabError> {
    s.trim().parse().map_err(|_| {
        LabError::invalid(
            file,
            field,
            format!("{s:?} is not an IPv6 address (like 2001:db8::11)"),
        )
    })
}

pub fn parse_net6(file: &str, field: &str, s: &str) -> Result<Ipv6Net, LabError> {
    s.trim().parse().map_err(|_| {
        LabError::invalid(
            file,
            field,
            format!("{s:?} is not an IPv6 CIDR (like fd00:10:244::/56)"),
        )
    })
}

/// `net` without host bits, or an error naming `field` ("did you mean ...").
pub fn no_host_bits<N: Copy + PartialEq + std::fmt::Display>(
    file: &str,
    field: &str,
    net: N,
    trunc: N,
) -> Result<N, LabError> {
    if net == trunc {
        Ok(net)
    } else {
        Err(LabError::invalid(
            file,
            field,
            format!("{net} has host bits set (did you mean {trunc}?)"),
        ))
    }
}

/// A dual-stack CIDR list, like kube-proxy's `--cluster-cidr=10.244.0.0/16,fd00:10:244::/56`
/// or kube-apiserver's `--service-cluster-ip-range`: a YAML string (comma-separated) or a
/// list of strings; one or two CIDRs, at most one per family
/// (`ValidateKubeProxyConfiguration`: "must contain at most one CIDR per IP family").
/// Returns the CIDRs in the given order (the first is the primary family).
pub fn parse_cidr_list(
    file: &str,
    field: &str,
    v: &serde_yaml_ng::Value,
) -> Result<Vec<IpNet>, LabError> {
    use serde_yaml_ng::Value;
    let inv = |f: String, msg: String| LabError::invalid(file, f, msg);
    let items: Vec<(String, String)> = match v {
        Value::String(s) => s
            .split(',')
            .map(|x| (field.to_string(), x.trim().to_string()))
            .collect(),
        Value::Sequence(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, x) in list.iter().enumerate() {
                let Value::String(s) = x else {
                    return Err(inv(
                        format!("{field}[{i}]"),
                        "expected a CIDR string".into(),
                    ));
                };
                out.push((format!("{field}[{i}]"), s.trim().to_string()));
            }
            out
        }
        _ => {
            return Err(inv(
                field.to_string(),
                "expected a CIDR, a comma-separated pair or a list of CIDRs".into(),
            ))
        }
    };
    if items.is_empty() || items.len() > 2 {
        return Err(inv(
            field.to_string(),
            format!(
                "{} CIDRs; give one, or one IPv4 and one IPv6 (dual-stack)",
                items.len()
            ),
        ));
    }
    let mut nets: Vec<IpNet> = Vec::with_capacity(2);
    for (f, s) in &items {
        let net: IpNet = s.parse().map_err(|_| {
            inv(
                f.clone(),
                format!("{s:?} is not a CIDR (like 10.244.0.0/16 or fd00:10:244::/56)"),
            )
        })?;
        if nets.iter().any(|n| is_v6(n) == is_v6(&net)) {
            return Err(inv(
                field.to_string(),
                format!("{net}: at most one CIDR per IP family"),
            ));
        }
        nets.push(net);
    }
    Ok(nets)
}

fn is_v6(n: &IpNet) -> bool {
    matches!(n, IpNet::V6(_))
}

/// The i-th /64 inside an IPv6 network (fd00:10:244::/56 → fd00:10:244:i::/64), like
/// node-ipam's `--node-cidr-mask-size-ipv6` default of 64.
pub fn nth_subnet6(net: &Ipv6Net, i: usize) -> Option<Ipv6Net> {
    if net.prefix_len() > 64 {
        return None;
    }
    let i = u128::try_from(i).ok()?;
    let count = 1u128.checked_shl(u32::from(64 - net.prefix_len()))?;
    if i >= count {
        return None;
    }
    let base = u128::from(net.network());
    Ipv6Net::new(Ipv6Addr::from(base + (i << 64)), 64).ok()
}

/// `net`'s network address + `n` (`None` past the end of `net`).
pub fn offset6(net: &Ipv6Net, n: u128) -> Option<Ipv6Addr> {
    let host_bits = 128 - u32::from(net.prefix_len());
    if host_bits < 128 && n >> host_bits != 0 {
        return None;
    }
    u128::from(net.network()).checked_add(n).map(Ipv6Addr::from)
}

/// The first host of an IPv6 network (fd00:10:244:1::/64 → fd00:10:244:1::1).
pub fn first_host6(net: &Ipv6Net) -> Option<Ipv6Addr> {
    if net.prefix_len() > 126 {
        return None;
    }
    offset6(net, 1)
}

/// Whether `ip` is a host address of an IPv6 network: inside, not the network address
/// (the Subnet-Router anycast address, RFC 4291 §2.6.1).
pub fn is_host_of6(net: &Ipv6Net, ip: Ipv6Addr) -> bool {
    net.contains(&ip) && ip != net.network()
}

/// Whether two IPv6 CIDRs share any address.
pub fn nets_overlap6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The IPv6 address of a pod at `v4` in `v4_pod`: the same offset in the node's IPv6 pod
/// CIDR (10.244.1.5 in 10.244.1.0/24 → fd00:10:244:1::5 in fd00:10:244:1::/64).
pub fn pod_ipv6(v4_pod: &Ipv4Net, v4: Ipv4Addr, v6_pod: &Ipv6Net) -> Option<Ipv6Addr> {
    let off = u32::from(v4).checked_sub(u32::from(v4_pod.network()))?;
    offset6(v6_pod, u128::from(off))
}

/// Addresses taken so far (node, client, router, LB; both families), for "duplicate
/// address" errors.
#[derive(Debug, Default)]
pub struct Claims(HashMap<IpAddr, String>);

impl Claims {
    pub fn claim(
        &mut self,
        file: &str,
        ip: impl Into<IpAddr>,
        field: &str,
        owner: &str,
    ) -> Result<(), LabError> {
        let ip = ip.into();
        if let Some(other) = self.0.get(&ip) {
            return Err(LabError::invalid(
                file,
                field,
                format!("duplicate address {ip} (already used by {other})"),
            ));
        }
        self.0.insert(ip, owner.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_never_overflows() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            first_host(&n("10.244.1.0/24")),
            Some(Ipv4Addr::new(10, 244, 1, 1))
        );
        assert_eq!(
            first_host(&n("255.255.255.252/30")),
            Some(Ipv4Addr::new(255, 255, 255, 253))
        );
        assert_eq!(first_host(&n("255.255.255.255/32")), None);
        assert_eq!(first_host(&n("10.0.0.0/31")), None);
        assert_eq!(offset(Ipv4Addr::BROADCAST, 1), None);
    }

    #[test]
    fn ipv6_subnets_and_offsets() {
        let n = |s: &str| s.parse::<Ipv6Net>().unwrap();
        let cidr = n("fd00:10:244::/56");
        assert_eq!(nth_subnet6(&cidr, 0), Some(n("fd00:10:244::/64")));
        assert_eq!(nth_subnet6(&cidr, 3), Some(n("fd00:10:244:3::/64")));
        assert_eq!(nth_subnet6(&cidr, 255), Some(n("fd00:10:244:ff::/64")));
        assert_eq!(nth_subnet6(&cidr, 256), None);
        assert_eq!(nth_subnet6(&n("fd00::/80"), 0), None);
        assert_eq!(nth_subnet6(&n("::/0"), usize::MAX).map(|_| ()), Some(()));
        let pod = n("fd00:10:244:1::/64");
        assert_eq!(first_host6(&pod), Some("fd00:10:244:1::1".parse().unwrap()));
        assert_eq!(offset6(&pod, 2), Some("fd00:10:244:1::2".parse().unwrap()));
        assert_eq!(offset6(&n("fd00::/127"), 2), None);
        assert_eq!(
            offset6(&n("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), 1),
            None
        );
        assert_eq!(first_host6(&n("fd00::/127")), None);
        assert!(is_host_of6(&pod, "fd00:10:244:1::5".parse().unwrap()));
        assert!(!is_host_of6(&pod, "fd00:10:244:1::".parse().unwrap()));
    }

    #[test]
    fn cidr_lists_like_kube_proxy() {
        use serde_yaml_ng::Value;
        let s = |x: &str| Value::String(x.into());
        let ok =
            parse_cidr_list("f", "clusterCIDR", &s("10.244.0.0/16, fd00:10:244::/56")).unwrap();
        assert_eq!(ok.len(), 2);
        let list: Value = serde_yaml_ng::from_str("[fd00:10:96::/112, 10.96.0.0/12]").unwrap();
        let ok = parse_cidr_list("f", "serviceCIDR", &list).unwrap();
        assert!(matches!(ok[0], IpNet::V6(_)));
        let err = |v: &Value| {
            parse_cidr_list("f", "clusterCIDR", v)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&s("10.244.0.0/16,10.245.0.0/16")).contains("at most one CIDR per IP family"));
        assert!(err(&s("a,b,c")).contains("3 CIDRs"));
        assert!(err(&s("nope")).contains("\"nope\" is not a CIDR"));
        assert!(err(&Value::Bool(true)).contains("expected a CIDR"));
    }
}
