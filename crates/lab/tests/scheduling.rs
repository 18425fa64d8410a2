//! Scheduling, naming, addressing and Service conversion (what the control plane would do).

mod common;
use common::*;

use std::collections::BTreeSet;

use cluster::schedule::{pod_template_hash, tolerates, K8S_ALPHABET};
use cluster::Taint;
use k8s_openapi::api::core::v1::Toleration;

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
    }
}

fn tol(
    key: Option<&str>,
    op: Option<&str>,
    value: Option<&str>,
    effect: Option<&str>,
) -> Toleration {
    Toleration {
        key: key.map(Into::into),
        operator: op.map(Into::into),
        value: value.map(Into::into),
        effect: effect.map(Into::into),
        toleration_seconds: None,
    }
}

#[test]
fn toleration_matching() {
    let cp = taint("node-role.kubernetes.io/control-plane", None, "NoSchedule");
    // operator Exists with an empty key tolerates everything (the blog's second manifest).
    assert!(tolerates(&tol(None, Some("Exists"), None, None), &cp));
    // Exists on the key.
    assert!(tolerates(
        &tol(
            Some("node-role.kubernetes.io/control-plane"),
            Some("Exists"),
            None,
            None
        ),
        &cp
    ));
    // Equal (default operator) needs key and value ("" == no value).
    assert!(tolerates(
        &tol(
            Some("node-role.kubernetes.io/control-plane"),
            None,
            None,
            Some("NoSchedule")
        ),
        &cp
    ));
    let dedicated = taint("dedicated", Some("web"), "NoSchedule");
    assert!(tolerates(
        &tol(
            Some("dedicated"),
            Some("Equal"),
            Some("web"),
            Some("NoSchedule")
        ),
        &dedicated
    ));
    assert!(!tolerates(
        &tol(Some("dedicated"), Some("Equal"), Some("db"), None),
        &dedicated
    ));
    // Effect must match when given.
    assert!(!tolerates(
        &tol(Some("dedicated"), Some("Exists"), None, Some("NoExecute")),
        &dedicated
    ));
    // Empty key with Equal tolerates nothing.
    assert!(!tolerates(&tol(None, None, None, None), &cp));
}

fn seed_cluster() -> String {
    std::fs::read_to_string(configs_dir().join("seed-cluster.yaml")).unwrap()
}

#[test]
fn taint_blocks_master_and_replicas_spread_one_per_worker() {
    let c = lab::load_cluster(&configs_dir().join("seed-cluster.yaml"), None).unwrap();
    assert_eq!(c.pods.len(), 3);
    let nodes: BTreeSet<&str> = c.pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["ydzs-node1", "ydzs-node2", "ydzs-node3"])
    );
    for p in &c.pods {
        let n = c.node(&p.node).unwrap();
        assert!(
            n.pod_cidr.contains(&p.ip),
            "{} {} in {}",
            p.name,
            p.ip,
            n.pod_cidr
        );
        assert_ne!(p.ip, n.cni0_ip());
        assert_ne!(p.ip, n.pod_cidr.network());
    }
    let svc = c.service("default/nginx").unwrap();
    assert_eq!(svc.type_, nodeport::ServiceType::NodePort);
    assert_eq!(
        svc.external_traffic_policy,
        nodeport::TrafficPolicy::Cluster
    );
    let np = svc.ports[0].node_port.unwrap();
    assert!((30000..=32767).contains(&np));
    let slice = c.slices_of(svc).next().unwrap();
    assert_eq!(slice.endpoints.len(), 3);
    assert_eq!(slice.ports[0].port, 80);
}

#[test]
fn exists_toleration_and_hostname_selector_pin_to_master() {
    let c = lab::load_cluster(&configs_dir().join("seed-local-pinned.yaml"), None).unwrap();
    assert_eq!(c.pods.len(), 3);
    assert!(c.pods.iter().all(|p| p.node == "ydzs-master"));
    let ips: BTreeSet<_> = c.pods.iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), 3);
    assert_eq!(
        c.service("default/nginx").unwrap().external_traffic_policy,
        nodeport::TrafficPolicy::Local
    );
}

#[test]
fn deterministic_for_a_seed() {
    let a = load_seed(&seed_cluster(), 42).unwrap();
    let b = load_seed(&seed_cluster(), 42).unwrap();
    assert_eq!(a.pods, b.pods);
    assert_eq!(a.services, b.services);
    assert_eq!(a.slices, b.slices);
    let c = load_seed(&seed_cluster(), 43).unwrap();
    assert_ne!(
        a.pods.iter().map(|p| &p.name).collect::<Vec<_>>(),
        c.pods.iter().map(|p| &p.name).collect::<Vec<_>>()
    );
}

#[test]
fn pod_names_look_like_kubernetes() {
    // ClusterIP service: needs no NodePort allocation.
    let cfg = format!(
        "{NODES}{}",
        block(&[deployment("web", 3, ""), clusterip_service("web", "")])
    );
    let c = load(&cfg).unwrap();
    let hash = c.pods[0].labels["pod-template-hash"].clone();
    assert!((8..=10).contains(&hash.len()), "{hash}");
    for p in &c.pods {
        let rest = p.name.strip_prefix("web-").unwrap();
        let (h, suffix) = rest.rsplit_once('-').unwrap();
        assert_eq!(h, hash);
        assert_eq!(suffix.len(), 5);
        assert!(
            format!("{h}{suffix}")
                .bytes()
                .all(|b| K8S_ALPHABET.contains(&b)),
            "{}",
            p.name
        );
    }
    // Stable for the same manifest, whatever the seed.
    let c2 = load_seed(&cfg, 99).unwrap();
    assert_eq!(c2.pods[0].labels["pod-template-hash"], hash);
    // A different template gives a different hash.
    let d = deployment("web", 1, "").replace("nginx:1.7.9", "nginx:1.27");
    let c3 = load(&format!("{NODES}{}", block(&[d]))).unwrap();
    assert_ne!(c3.pods[0].labels["pod-template-hash"], hash);
}

#[test]
fn template_hash_uses_the_kubernetes_alphabet() {
    let h = pod_template_hash(&Default::default());
    assert!((8..=10).contains(&h.len()));
    assert!(h.bytes().all(|b| K8S_ALPHABET.contains(&b)));
}

#[test]
fn prefer_no_schedule_is_soft() {
    let nodes = r#"
nodes:
  - {name: a, ip: 10.151.30.11, taints: [{key: busy, effect: PreferNoSchedule}]}
  - {name: b, ip: 10.151.30.12}
"#;
    let c = load(&format!("{nodes}{}", block(&[deployment("web", 2, "")]))).unwrap();
    assert!(c.pods.iter().all(|p| p.node == "b"));
    // Only the tainted node is eligible: the pod still lands there.
    let d = deployment(
        "web",
        1,
        "      nodeSelector: {kubernetes.io/hostname: a}\n",
    );
    let c = load(&format!("{nodes}{}", block(&[d]))).unwrap();
    assert_eq!(c.pods[0].node, "a");
    // Default pod CIDRs come from clusterCIDR, one /24 per node.
    assert_eq!(c.node("a").unwrap().pod_cidr.to_string(), "10.244.0.0/24");
    assert_eq!(c.node("b").unwrap().pod_cidr.to_string(), "10.244.1.0/24");
    assert_eq!(c.router_ip.to_string(), "10.151.30.1");
}

#[test]
fn cluster_ips_kubernetes_service_and_explicit_ip() {
    let cfg = format!(
        "{NODES}{}",
        block(&[
            deployment("web", 1, ""),
            clusterip_service("web", "  clusterIP: 10.106.190.194\n"),
            deployment("api", 1, ""),
            clusterip_service("api", ""),
        ])
    );
    let c = load(&cfg).unwrap();
    let k = c.service("default/kubernetes").unwrap();
    assert_eq!(k.cluster_ip().unwrap().to_string(), "10.96.0.1");
    assert_eq!(k.ports[0].port, 443);
    assert_eq!(k.type_, nodeport::ServiceType::ClusterIp);
    assert_eq!(
        c.service("default/web")
            .unwrap()
            .cluster_ip()
            .unwrap()
            .to_string(),
        "10.106.190.194"
    );
    let net: ipnet::IpNet = "10.96.0.0/12".parse().unwrap();
    let ips: BTreeSet<_> = c.services.iter().map(|s| s.cluster_ip().unwrap()).collect();
    assert_eq!(ips.len(), c.services.len());
    assert!(ips.iter().all(|ip| net.contains(ip)));
}

#[test]
fn named_target_port_resolves_against_container_ports() {
    let d = deployment("web", 2, "").replace("containerPort: 80", "containerPort: 8080");
    let cfg = format!("{NODES}{}", block(&[d, clusterip_service("web", "")]));
    let c = load(&cfg).unwrap();
    let svc = c.service("default/web").unwrap();
    assert_eq!(svc.ports[0].target_port, 8080);
    let slice = c.slices_of(svc).next().unwrap();
    assert_eq!(slice.ports[0].port, 8080);
    assert_eq!(slice.endpoints.len(), 2);
    assert!(slice
        .endpoints
        .iter()
        .all(|e| e.ready && e.node_name.is_some()));
}

#[test]
fn replicas_zero_and_selector_matching_nothing() {
    let cfg = format!(
        "{NODES}{}",
        block(&[
            deployment("web", 0, ""),
            clusterip_service("web", ""),
            clusterip_service("ghost", "")
        ])
    );
    let c = load(&cfg).unwrap();
    assert!(c.pods.is_empty());
    for name in ["default/web", "default/ghost"] {
        let svc = c.service(name).unwrap();
        let slices: Vec<_> = c.slices_of(svc).collect();
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty());
    }
}

#[test]
fn session_affinity_defaults() {
    let cfg = format!(
        "{NODES}{}",
        block(&[
            deployment("web", 1, ""),
            clusterip_service("web", "  sessionAffinity: ClientIP\n")
        ])
    );
    let c = load(&cfg).unwrap();
    assert_eq!(
        c.service("default/web").unwrap().session_affinity,
        nodeport::SessionAffinity::ClientIp {
            timeout: std::time::Duration::from_secs(10800)
        }
    );
}

#[test]
fn pod_client_gets_an_address_on_its_node() {
    let cfg = format!(
        "{NODES}  - {{name: probe, node: ydzs-node1}}\n{}",
        block(&[deployment("web", 3, "")])
    );
    let c = load(&cfg).unwrap();
    let probe = c.client("probe").unwrap();
    let n1 = c.node("ydzs-node1").unwrap();
    assert!(n1.pod_cidr.contains(&probe.ip));
    assert!(c.pods.iter().all(|p| p.ip != probe.ip));
}

#[test]
fn no_execute_taint_needs_a_toleration_too() {
    let nodes = r#"
nodes:
  - {name: a, ip: 10.151.30.11, taints: [{key: maintenance, value: "true", effect: NoExecute}]}
  - {name: b, ip: 10.151.30.12}
"#;
    let c = load(&format!("{nodes}{}", block(&[deployment("web", 3, "")]))).unwrap();
    assert!(c.pods.iter().all(|p| p.node == "b"));
    let tol = "      tolerations:\n      - {key: maintenance, operator: Equal, value: \"true\", effect: NoExecute}\n";
    let c = load(&format!("{nodes}{}", block(&[deployment("web", 2, tol)]))).unwrap();
    let on: BTreeSet<&str> = c.pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(on, BTreeSet::from(["a", "b"]));
}

/// The indexed scheduler still spreads like the recounting one did: each Deployment's
/// replicas on distinct nodes while it has fewer replicas than nodes, and the nodes' totals
/// within one pod of each other; every Service's EndpointSlice lists exactly its pods.
#[test]
fn generated_cluster_spreads_evenly() {
    use std::collections::BTreeMap;
    let spec = cluster::gen::GenSpec {
        nodes: 50,
        services: 40,
        replicas: 7,
        requests: 100,
        policy: cluster::gen::GenPolicy::Mixed,
        seed: 11,
    };
    let text = cluster::gen::scale_config(&spec).unwrap();
    let c = lab::load_cluster_from_str(&text, std::path::Path::new("gen.yaml"), None).unwrap();
    assert_eq!(c.pods.len(), 280);
    let mut per_node: BTreeMap<&str, usize> =
        c.nodes.iter().map(|n| (n.name.as_str(), 0)).collect();
    let mut per_deploy: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &c.pods {
        *per_node.get_mut(p.node.as_str()).unwrap() += 1;
        assert!(
            per_deploy.entry(&p.deployment).or_default().insert(&p.node),
            "{} twice on {}",
            p.deployment,
            p.node
        );
    }
    let (lo, hi) = (
        per_node.values().min().unwrap(),
        per_node.values().max().unwrap(),
    );
    assert!(hi - lo <= 1, "per-node totals {lo}..{hi}");
    for svc in c.services.iter().filter(|s| s.name.starts_with("web-")) {
        let eps: BTreeSet<_> = c
            .slices_of(svc)
            .flat_map(|s| s.endpoints.iter().map(|e| e.ip))
            .collect();
        let pods: BTreeSet<_> = c
            .pods
            .iter()
            .filter(|p| p.deployment == svc.name)
            .map(|p| std::net::IpAddr::V4(p.ip))
            .collect();
        assert_eq!(eps, pods, "{}", svc.name);
    }
}
