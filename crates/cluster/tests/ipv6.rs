//! IPv6 and dual-stack Services (issue 10), the Kubernetes side: the shipped scenarios and
//! inline configs through the whole loader (config → manifests → schedule).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cluster::{Cluster, Target};
use nodeport::{IpFamily, IpFamilyPolicy};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab-configs")
}

fn load(name: &str) -> Cluster {
    cluster::load_cluster(&configs().join(format!("{name}.yaml")), None).unwrap()
}

fn inline(text: &str) -> Result<Cluster, String> {
    cluster::load_cluster_from_str(text, Path::new("t.yaml"), None).map_err(|e| e.to_string())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn svc<'c>(c: &'c Cluster, name: &str) -> &'c nodeport::Service {
    c.service(&format!("default/{name}")).unwrap()
}

#[test]
fn seed_cluster_v6_is_the_blog_over_ipv6() {
    let c = load("seed-cluster-v6");
    let v4 = load("seed-cluster");
    let nginx = svc(&c, "nginx");
    assert_eq!(nginx.ip_families, vec![IpFamily::V6]);
    assert_eq!(nginx.ip_family_policy, IpFamilyPolicy::SingleStack);
    assert_eq!(nginx.cluster_ips.len(), 1);
    let range: ipnet::IpNet = "fd00:10:96::/112".parse().unwrap();
    assert!(
        range.contains(&nginx.cluster_ips[0]),
        "{:?}",
        nginx.cluster_ips
    );
    // Same pods as the IPv4 blog scenario, each with its IPv4 offset in its node's /64.
    let pods: Vec<(&str, &str)> = c
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.node.as_str()))
        .collect();
    let pods4: Vec<(&str, &str)> = v4
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.node.as_str()))
        .collect();
    assert_eq!(pods, pods4);
    for p in &c.pods {
        let n: u8 = p.node.trim_start_matches("ydzs-node").parse().unwrap();
        assert_eq!(p.ipv6, Some(format!("fd00:10:244:{n}::2").parse().unwrap()));
    }
    // One IPv6 slice set with the pods' IPv6 addresses.
    let slices: Vec<_> = c.slices_of(nginx).collect();
    assert!(!slices.is_empty());
    for s in &slices {
        assert_eq!(s.address_type, IpFamily::V6);
        assert!(s.endpoints.iter().all(|e| e.ip.is_ipv6()));
    }
    assert_eq!(slices.iter().map(|s| s.endpoints.len()).sum::<usize>(), 3);
    // default/kubernetes stays IPv4 SingleStack at 10.96.0.1.
    let k = c.service("default/kubernetes").unwrap();
    assert_eq!(
        (k.ip_families.clone(), k.cluster_ips.clone()),
        (vec![IpFamily::V4], vec![ip("10.96.0.1")])
    );
    // The request goes to the master's IPv6 address, from the browser's.
    let step = &c.plan[0];
    assert_eq!(step.family, IpFamily::V6);
    let d = c.destination(step).unwrap();
    assert_eq!(d.ip, ip("fd00:10:151:30::11"));
    assert_eq!(Some(d.port), nginx.ports[0].node_port);
    assert_eq!(
        c.client("browser").unwrap().ipv6,
        Some("2001:db8::11".parse().unwrap())
    );
    assert_eq!(c.router_ipv6, Some("fd00:10:151:30::1".parse().unwrap()));
    assert_eq!(c.cluster_cidr_v6, Some("fd00:10:244::/56".parse().unwrap()));
}

#[test]
fn dual_stack_services_get_both_families() {
    let c = load("dual-stack");
    let v4 = load("seed-cluster");
    for (name, policy) in [
        ("nginx", IpFamilyPolicy::RequireDualStack),
        ("nginx-local", IpFamilyPolicy::PreferDualStack),
    ] {
        let s = svc(&c, name);
        assert_eq!(s.ip_family_policy, policy, "{name}");
        assert_eq!(s.ip_families, vec![IpFamily::V4, IpFamily::V6], "{name}");
        assert!(
            s.cluster_ips[0].is_ipv4() && s.cluster_ips[1].is_ipv6(),
            "{name}"
        );
        let types: Vec<IpFamily> = c.slices_of(s).map(|s| s.address_type).collect();
        assert_eq!(types, vec![IpFamily::V4, IpFamily::V6], "{name}");
    }
    // The IPv4 ClusterIP and NodePort draws are the seed-cluster ones (IPv6 draws come from
    // their own RNG stream).
    assert_eq!(
        svc(&c, "nginx").cluster_ips[0],
        svc(&v4, "nginx").cluster_ips[0]
    );
    assert_eq!(svc(&c, "nginx").ports, svc(&v4, "nginx").ports);
    // Plan: IPv4 and IPv6 to the master and to node1.
    let dst: Vec<IpAddr> = c
        .plan
        .iter()
        .map(|s| c.destination(s).unwrap().ip)
        .collect();
    assert_eq!(
        dst,
        vec![
            ip("10.151.30.11"),
            ip("fd00:10:151:30::11"),
            ip("10.151.30.12"),
            ip("fd00:10:151:30::12")
        ]
    );
    // Default IPv6 pod CIDRs: the node's index-th /64 of fd00:10:244::/56.
    assert_eq!(
        c.nodes[2].pod_cidr_v6,
        Some("fd00:10:244:2::/64".parse().unwrap())
    );
    assert_eq!(
        c.nodes[2].cni0_ipv6(),
        Some("fd00:10:244:2::1".parse().unwrap())
    );
}

#[test]
fn ipv4_only_scenarios_stay_ipv4() {
    let c = load("seed-cluster");
    assert_eq!(c.cluster_cidr_v6, None);
    assert_eq!(c.node_network_v6, None);
    assert!(c
        .nodes
        .iter()
        .all(|n| n.ipv6.is_none() && n.pod_cidr_v6.is_none()));
    assert!(c.pods.iter().all(|p| p.ipv6.is_none()));
    for s in &c.services {
        assert_eq!(s.ip_families, vec![IpFamily::V4]);
        assert_eq!(s.ip_family_policy, IpFamilyPolicy::SingleStack);
    }
    assert!(c.slices.iter().all(|s| s.address_type == IpFamily::V4));
    assert_eq!(svc(&c, "nginx").cluster_ips, vec![ip("10.97.228.166")]);
    // PreferDualStack on an IPv4-only lab: one family, no error.
    let text = base(V4_NODES, "ipFamilyPolicy: PreferDualStack", "");
    let c = inline(&text).unwrap();
    assert_eq!(svc(&c, "web").ip_families, vec![IpFamily::V4]);
}

const V4_NODES: &str = "nodes:\n  - {name: a, ip: 10.151.30.11}\n  - {name: b, ip: 10.151.30.12}\n";
const DUAL_NODES: &str = "nodes:\n  - {name: a, ip: 10.151.30.11, ipv6: \"fd00:1::11\"}\n  - {name: b, ip: 10.151.30.12, ipv6: \"fd00:1::12\"}\n  - {name: c, ip: 10.151.30.13}\n";

/// `base` with the Service of type LoadBalancer.
fn lb(text: &str) -> String {
    text.replace("type: NodePort", "type: LoadBalancer")
}

/// A config with `nodes`, one external client, a 3-replica Deployment `web` and a NodePort
/// Service `web` whose spec gets `svc_extra` lines, and `tail` (plan, loadBalancer, ...).
fn base(nodes: &str, svc_extra: &str, tail: &str) -> String {
    let extra: String = svc_extra.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "{nodes}clients:\n  - {{name: browser, ip: 203.0.113.11, ipv6: \"2001:db8::11\"}}\n  - {{name: probe, node: b}}\nmanifests:\n  - |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {{name: web}}\n    spec:\n      replicas: 3\n      selector: {{matchLabels: {{app: web}}}}\n      template:\n        metadata: {{labels: {{app: web}}}}\n        spec:\n          containers: [{{name: nginx, image: nginx, ports: [{{containerPort: 80}}]}}]\n    ---\n    apiVersion: v1\n    kind: Service\n    metadata: {{name: web}}\n    spec:\n      type: NodePort\n      selector: {{app: web}}\n      ports: [{{port: 80}}]\n{extra}{tail}"
    )
    .replace(
        ", ipv6: \"2001:db8::11\"",
        if nodes == V4_NODES { "" } else { ", ipv6: \"2001:db8::11\"" },
    )
}

#[test]
fn pods_on_ipv4_only_nodes_have_no_ipv6_endpoint() {
    let c = inline(&base(DUAL_NODES, "ipFamilyPolicy: PreferDualStack", "")).unwrap();
    let web = svc(&c, "web");
    let count = |f: IpFamily| -> usize {
        c.slices_of(web)
            .filter(|s| s.address_type == f)
            .map(|s| s.endpoints.len())
            .sum()
    };
    assert_eq!(count(IpFamily::V4), 3);
    let on_c = c.pods.iter().filter(|p| p.node == "c").count();
    assert!(on_c > 0);
    assert_eq!(count(IpFamily::V6), 3 - on_c);
    assert!(c.pods.iter().all(|p| p.ipv6.is_some() == (p.node != "c")));
    // A pod client takes its IPv4 offset in its node's IPv6 podCIDR.
    let probe = c.client("probe").unwrap();
    let node = c.node("b").unwrap();
    assert_eq!(probe.ipv6, node.ipv6_of_pod(probe.ip));
    assert!(probe.ipv6.is_some());
}

#[test]
fn explicit_cluster_ips_and_a_full_range() {
    let pair = "ipFamilyPolicy: RequireDualStack\nclusterIP: 10.96.0.50\nclusterIPs: [10.96.0.50, \"fd00:10:96::50\"]";
    let c = inline(&base(DUAL_NODES, pair, "")).unwrap();
    assert_eq!(
        svc(&c, "web").cluster_ips,
        vec![ip("10.96.0.50"), ip("fd00:10:96::50")]
    );
    // IPv6 first: the primary family is IPv6, the IPv4 address is allocated.
    let v6_first = "ipFamilyPolicy: PreferDualStack\nipFamilies: [IPv6, IPv4]";
    let c = inline(&base(DUAL_NODES, v6_first, "")).unwrap();
    let web = svc(&c, "web");
    assert!(web.cluster_ips[0].is_ipv6() && web.cluster_ips[1].is_ipv4());
    let types: Vec<IpFamily> = c.slices_of(web).map(|s| s.address_type).collect();
    assert_eq!(types, vec![IpFamily::V6, IpFamily::V4]);
    // A service range with room for 3 IPv6 ClusterIPs and four dual-stack Services.
    let mut text = format!(
        "serviceCIDR: 10.96.0.0/12,fd00:10:96::/126\n{}",
        base(DUAL_NODES, "ipFamilyPolicy: PreferDualStack", "")
    );
    for i in 2..=4 {
        text = text.replacen(
            "    ---\n    apiVersion: v1\n",
            &format!("    ---\n    apiVersion: v1\n    kind: Service\n    metadata: {{name: s{i}}}\n    spec: {{ipFamilyPolicy: RequireDualStack, ports: [{{port: 80}}]}}\n    ---\n    apiVersion: v1\n"),
            1,
        );
    }
    let e = inline(&text).unwrap_err();
    assert!(
        e.contains("serviceCIDR: fd00:10:96::/126 has no free address left for service default/"),
        "{e}"
    );
    let taken = "ipFamilies: [IPv6]\nclusterIP: \"fd00:10:96::\"";
    let e = inline(&base(DUAL_NODES, taken, "")).unwrap_err();
    assert!(
        e.contains("spec.clusterIP: fd00:10:96:: is not in the service CIDR fd00:10:96::/112"),
        "{e}"
    );
}

#[test]
fn plan_families() {
    let plan = "plan:\n  - {from: browser, to: \"fd00:1::11\", port: 30080}\n  - {from: probe, to: a, family: IPv6}\n  - {from: browser, to: loadBalancer, family: IPv6}\nloadBalancer: {ip: 198.51.100.10, ipv6: \"2001:db8:100::10\"}\n";
    let c = inline(&lb(&base(
        DUAL_NODES,
        "ipFamilyPolicy: PreferDualStack",
        plan,
    )))
    .unwrap();
    assert!(matches!(c.plan[0].target, Target::Address(a) if a == ip("fd00:1::11")));
    assert_eq!(c.plan[0].family, IpFamily::V6);
    let d = c.destination(&c.plan[0]).unwrap();
    assert_eq!((d.ip, d.port), (ip("fd00:1::11"), 30080));
    assert_eq!(d.label, "a [fd00:1::11]:30080");
    assert_eq!(c.destination(&c.plan[1]).unwrap().ip, ip("fd00:1::11"));
    assert_eq!(
        c.destination(&c.plan[2]).unwrap().ip,
        ip("2001:db8:100::10")
    );
    assert_eq!(
        svc(&c, "web").load_balancer_ips,
        vec![ip("198.51.100.10"), ip("2001:db8:100::10")]
    );
    // A pod client on an IPv4-only node cannot send over IPv6.
    let plan = "plan:\n  - {from: probe, to: a, family: IPv6}\n";
    let text =
        base(DUAL_NODES, "ipFamilyPolicy: PreferDualStack", plan).replace("node: b}", "node: c}");
    let e = inline(&text).unwrap_err();
    assert!(
        e.contains(
            "plan[0].from: client probe has no IPv6 address (its node c has no IPv6 podCIDR)"
        ),
        "{e}"
    );
    let plan = "plan:\n  - {from: browser, to: loadBalancer, family: IPv6}\nloadBalancer: {ip: 198.51.100.10}\n";
    let e = inline(&lb(&base(DUAL_NODES, "", plan))).unwrap_err();
    assert!(
        e.contains("plan[0].to: the load balancer has no IPv6 address"),
        "{e}"
    );
    // An IPv4 request (the default family) to an IPv6-only Service.
    let plan = "plan:\n  - {from: browser, to: a}\n";
    let e = inline(&base(DUAL_NODES, "ipFamilies: [IPv6]", plan)).unwrap_err();
    assert!(e.contains("plan[0].family: service default/web has no IPv4 family (ipFamilies: IPv6); set `family: IPv6`"), "{e}");
}

#[test]
fn scale_recomputes_both_families() {
    let plan = "plan:\n  - scale: {deployment: web, replicas: 1}\n";
    let c = inline(&base(
        DUAL_NODES
            .replace(", ipv6: \"fd00:1::12\"", "")
            .replace(
                "{name: c, ip: 10.151.30.13}",
                "{name: c, ip: 10.151.30.13, ipv6: \"fd00:1::13\"}",
            )
            .as_str(),
        "ipFamilyPolicy: PreferDualStack",
        plan,
    ))
    .unwrap();
    let scaled = c.actions[0].scaled.as_ref().unwrap();
    let types: Vec<(IpFamily, usize)> = scaled
        .slices
        .iter()
        .map(|s| (s.address_type, s.endpoints.len()))
        .collect();
    let pod = &scaled.pods[0];
    let v6 = usize::from(pod.ipv6.is_some());
    assert_eq!(types, vec![(IpFamily::V4, 1), (IpFamily::V6, v6)]);
}
