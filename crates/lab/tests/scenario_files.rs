//! The shipped scenarios and the blog's manifests.

mod common;
use common::*;

#[test]
fn blog_manifests_are_copied_verbatim_and_load() {
    let dir = configs_dir().join("manifests");
    for f in ["nginx-nodeport.yaml", "nginx-nodeport-local-pinned.yaml"] {
        let ours = std::fs::read_to_string(dir.join(f)).unwrap();
        // CI and developers have shared/ next to the repository.
        let seed = configs_dir().join("../../shared/seed").join(f);
        if let Ok(orig) = std::fs::read_to_string(&seed) {
            assert_eq!(ours, orig, "{f} differs from shared/seed");
        }
        let docs = cluster::manifest::parse_documents(&ours, f, "").unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| d.object.kind()).collect();
        assert_eq!(kinds, ["Deployment", "Service"]);
        assert!(docs
            .iter()
            .all(|d| d.object.name() == "nginx" && d.object.namespace() == "default"));
    }
}

#[test]
fn every_scenario_parses_and_schedules() {
    let mut n = 0;
    for e in std::fs::read_dir(configs_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let c = lab::load_cluster(&p, None).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!c.description.is_empty(), "{} has no lesson", p.display());
            assert!(!c.plan.is_empty(), "{} has no plan", p.display());
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} scenarios");
}

#[test]
fn lesson_is_the_leading_comment() {
    let text = std::fs::read_to_string(configs_dir().join("seed-cluster.yaml")).unwrap();
    let lesson = cluster::config::leading_comment(&text);
    assert!(
        lesson.starts_with("externalTrafficPolicy: Cluster"),
        "{lesson}"
    );
    assert!(!lesson.contains('#'));
}

#[test]
fn local_imbalance_layout() {
    let c = lab::load_cluster(&configs_dir().join("local-imbalance.yaml"), None).unwrap();
    let on = |n: &str| c.pods.iter().filter(|p| p.node == n).count();
    assert_eq!((on("ydzs-node1"), on("ydzs-node2")), (1, 2));
    let svc = c.service("default/nginx").unwrap();
    assert_eq!(svc.type_, nodeport::ServiceType::LoadBalancer);
    assert_eq!(
        svc.load_balancer_ips,
        vec!["198.51.100.10".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(svc.health_check_node_port.is_some());
    assert_eq!(
        c.slices_of(svc).map(|s| s.endpoints.len()).sum::<usize>(),
        3
    );
    assert_eq!(c.plan[0].count, 3000);
}

#[test]
fn plan_destinations() {
    let c = lab::load_cluster(&configs_dir().join("seed-cluster.yaml"), None).unwrap();
    let np = c.service("default/nginx").unwrap().ports[0]
        .node_port
        .unwrap();
    let d = c.destination(&c.plan[0]).unwrap();
    assert_eq!((d.ip.to_string(), d.port), ("10.151.30.11".to_string(), np));
    assert_eq!(d.label, format!("ydzs-master 10.151.30.11:{np}"));
    let c = lab::load_cluster(&configs_dir().join("local-imbalance.yaml"), None).unwrap();
    let np = c.service("default/nginx").unwrap().ports[0].node_port;
    let d = c.destination(&c.plan[0]).unwrap();
    assert_eq!(
        (d.ip.to_string(), d.port, d.backend_node_port),
        ("198.51.100.10".to_string(), 80, np)
    );
    assert_eq!(d.label, "nlb 198.51.100.10:80");
}

/// `lab scenario gen … | lab scenario run - --json`: a generated mixed cluster runs, Cluster
/// Services answer every request, Local ones answer exactly when the node has a local pod.
#[test]
fn generated_config_runs_from_stdin() {
    let gen_args = [
        "scenario",
        "gen",
        "--nodes",
        "6",
        "--services",
        "4",
        "--replicas",
        "2",
    ];
    let gen = lab_with_stdin(
        &[
            &gen_args[..],
            &["--requests", "40", "--policy", "mixed", "--seed", "5"],
        ]
        .concat(),
        b"",
    );
    assert_eq!(gen.status.code(), Some(0), "{gen:?}");
    let cluster = lab::load_cluster_from_str(
        std::str::from_utf8(&gen.stdout).unwrap(),
        std::path::Path::new("gen.yaml"),
        None,
    )
    .unwrap();
    let out = lab_with_stdin(&["scenario", "run", "-", "--json"], &gen.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let requests = v["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 40);
    // The plan's request k goes to web-<k mod 4> (odd = Local) through the node it names.
    let steps = cluster
        .plan
        .iter()
        .flat_map(|s| std::iter::repeat_n(s, s.count as usize));
    for (k, (r, step)) in requests.iter().zip(steps).enumerate() {
        let svc = step.service.as_deref().unwrap();
        assert_eq!(svc, format!("default/web-{}", k % 4));
        let cluster::Target::Node(node) = &step.target else {
            panic!("{step:?}")
        };
        let deployment = &svc["default/".len()..];
        let local_pod = cluster
            .pods
            .iter()
            .any(|p| p.deployment == deployment && &p.node == node);
        let want = if k % 2 == 0 || local_pod {
            "ok"
        } else {
            "timeout"
        };
        assert_eq!(r["outcome"], want, "request {k} to {svc} via {node}: {r}");
    }
}
