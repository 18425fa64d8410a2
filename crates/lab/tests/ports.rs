//! Containers serve on their own ports, in both modes (issue 8, points 1, 2 and 5): a
//! `containerPort: 8080` behind `targetPort: 8080`, a named targetPort that resolves to
//! different numbers on different pods, a Service with several ports picked by `portName:`
//! and `port:` (also through the load balancer), a refusal where nothing listens (with the
//! warning), and the `targetport-8080` scenario. Every check reads `--json`.
//!
//! The real-mode half needs root, /dev/net/tun, nginx, curl and ip: it skips locally when
//! one is missing and fails under `CI=true`. Run it serialized with the other real tests:
//! `flock /tmp/nplab-real.lock cargo test -p lab --test ports`.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

/// Real-mode runs share the lab's lock and addresses: one at a time.
static REAL: Mutex<()> = Mutex::new(());

/// `lab scenario run - --json [--real]` on `config`: the JSON and stderr.
fn run(config: &str, real: bool) -> (Value, String) {
    let mut args = vec!["scenario", "run", "-", "--json", "--connect-timeout", "2"];
    if real {
        args.push("--real");
    }
    let out = common::lab_with_stdin(&args, config.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "lab {args:?} failed: {stderr}");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    (v, stderr)
}

/// Embedded, then real mode when it can run: `check` on both JSON documents (and stderr).
fn both_modes(config: &str, check: impl Fn(&Value, &str)) {
    let (emb, err) = run(config, false);
    assert_eq!(emb["mode"], "embedded");
    check(&emb, &err);
    if !common::run_or_skip(
        "real-mode ports",
        &common::real_missing(&["nginx", "curl", "ip"]),
    ) {
        return;
    }
    let _g = REAL.lock().unwrap_or_else(|e| e.into_inner());
    let (real, err) = run(config, true);
    assert_eq!(real["mode"], "real");
    check(&real, &err);
    eprintln!("real mode: {:?}", outcomes(&real));
    assert_eq!(emb["pods"], real["pods"], "same cluster in both modes");
}

fn outcomes(v: &Value) -> Vec<&str> {
    v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect()
}

fn pods_of(v: &Value, from: usize, to: usize) -> BTreeSet<String> {
    v["requests"].as_array().unwrap()[from..to]
        .iter()
        .map(|r| r["pod"].as_str().unwrap_or("-").to_string())
        .collect()
}

fn pod_named(v: &Value, prefix: &str) -> String {
    v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no pod {prefix}-…: {}", v["pods"]))
}

const TWO_WORKERS: &str = r#"seed: 4
nodes:
  - name: master
    ip: 10.151.30.11
    podCIDR: 10.244.0.0/24
    taints: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
  - {name: node1, ip: 10.151.30.12, podCIDR: 10.244.1.0/24}
  - {name: node2, ip: 10.151.30.13, podCIDR: 10.244.2.0/24}
clients:
  - {name: browser, ip: 203.0.113.11, canReach: [master]}
loadBalancer: {name: nlb, ip: 198.51.100.10, nodes: [node1, node2]}
"#;

fn config(manifests: &str, plan: &str) -> String {
    let mut block = String::from("manifests:\n  - |\n");
    for l in manifests.lines() {
        block.push_str("    ");
        block.push_str(l);
        block.push('\n');
    }
    format!("{TWO_WORKERS}{block}plan:\n{plan}")
}

/// A Deployment `name` (label app: `app`) of `image` with `args` and container ports.
fn deploy(name: &str, app: &str, image: &str, args: &str, ports: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: {app}, deploy: {name}}}}}\n  template:\n    \
         metadata: {{labels: {{app: {app}, deploy: {name}}}}}\n    spec:\n      containers:\n      \
         - name: c\n        image: {image}\n        args: [{args}]\n        ports: [{ports}]\n"
    )
}

fn node_port_service(app: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {app}}}\nspec:\n  type: LoadBalancer\n  \
         selector: {{app: {app}}}\n  ports: [{ports}]\n"
    )
}

#[test]
fn container_port_8080_behind_target_port_8080_serves() {
    let m = [
        deploy("web", "web", "nginx:1.25", "", "{containerPort: 8080}"),
        node_port_service("web", "{port: 80, targetPort: 8080}"),
    ]
    .join("---\n");
    let cfg = config(&m, "  - {from: browser, to: master, count: 3}\n");
    both_modes(&cfg, |v, err| {
        assert_eq!(outcomes(v), ["ok"; 3], "{v}");
        for r in v["requests"].as_array().unwrap() {
            assert_eq!(r["logged_client_ip"], "10.151.30.11", "{r}");
        }
        assert_eq!(v["pods"][0]["apps"][0], "nginx :8080/TCP");
        assert_eq!(v["warnings"], Value::Array(vec![]));
        assert!(!err.contains("warning"), "{err}");
    });
}

#[test]
fn a_named_target_port_resolves_per_pod() {
    // Same port name, different numbers: nginx on 8080, agnhost netexec on 9090. The
    // EndpointSlice controller puts them in two slices; kube-proxy DNATs each to its own.
    let m = [
        deploy("ng", "web", "nginx", "", "{containerPort: 8080, name: web}"),
        deploy(
            "nx",
            "web",
            "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "netexec, --http-port=9090",
            "{containerPort: 9090, name: web}",
        ),
        node_port_service("web", "{port: 80, targetPort: web}"),
    ]
    .join("---\n");
    let cfg = config(&m, "  - {from: browser, to: master, count: 8, path: /}\n");
    both_modes(&cfg, |v, _| {
        assert_eq!(outcomes(v), ["ok"; 8], "{v}");
        let want: BTreeSet<String> = [pod_named(v, "ng-"), pod_named(v, "nx-")].into();
        assert_eq!(pods_of(v, 0, 8), want, "both pods answer on their own port");
    });
}

#[test]
fn a_multi_port_service_by_port_name_and_number_and_through_the_lb() {
    let m = [
        deploy("ng", "multi", "nginx", "", "{containerPort: 80, name: web}"),
        deploy(
            "nx",
            "multi",
            "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "netexec",
            "{containerPort: 8080, name: api}",
        ),
        node_port_service(
            "multi",
            "{name: web, port: 80, targetPort: web}, {name: api, port: 8080, targetPort: api}",
        ),
    ]
    .join("---\n");
    let plan = "  - {from: browser, to: master, portName: web, count: 3}\n\
                \x20 - {from: browser, to: master, portName: api, path: /clientip, count: 3}\n\
                \x20 - {from: browser, to: master, service: multi, port: 8080, path: /hostname, count: 2}\n\
                \x20 - {from: browser, to: loadBalancer, portName: api, count: 2}\n\
                \x20 - {from: browser, to: loadBalancer, service: multi, port: 80, count: 2}\n";
    let cfg = config(
        &m,
        &format!("{plan}  - {{from: browser, to: master, port: 8080}}\n"),
    );
    both_modes(&cfg, |v, _| {
        assert_eq!(&outcomes(v)[..12], ["ok"; 12], "{v}");
        assert_eq!(outcomes(v)[12], "refused", "{v}");
        let (ng, nx) = (pod_named(v, "ng-"), pod_named(v, "nx-"));
        for (from, to, pod) in [(0, 3, &ng), (3, 8, &nx), (8, 10, &nx), (10, 12, &ng)] {
            assert_eq!(
                pods_of(v, from, to),
                [pod.clone()].into(),
                "requests {from}..{to}"
            );
        }
        let lb = &v["requests"][8];
        assert!(
            lb["target"]
                .as_str()
                .unwrap()
                .contains("198.51.100.10:8080"),
            "{lb}"
        );
        // Via the master (Cluster policy): masqueraded to the master's address.
        assert_eq!(v["requests"][3]["logged_client_ip"], "10.151.30.11");
        // `port:` without `service:` stays a raw destination port: master:8080 is no
        // NodePort, and the node refuses.
    });
}

#[test]
fn nothing_listening_on_the_target_port_is_refused_with_a_warning() {
    let m = [
        deploy(
            "nx",
            "web",
            "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "netexec",
            "{containerPort: 80}",
        ),
        node_port_service("web", "{port: 80, targetPort: 80}"),
    ]
    .join("---\n");
    let cfg = config(&m, "  - {from: browser, to: master, count: 2}\n");
    both_modes(&cfg, |v, err| {
        assert_eq!(outcomes(v), ["refused"; 2], "{v}");
        let w = v["warnings"][0].as_str().unwrap_or_default();
        for part in [
            "Service default/web",
            "targetPort 80/TCP",
            "agnhost netexec :8080/TCP :8081/UDP",
        ] {
            assert!(w.contains(part), "{part:?} missing in {w:?}");
        }
        assert!(err.contains(&format!("warning: {w}")), "{err}");
    });
}

#[test]
fn targetport_8080_shows_the_masters_ip_in_both_modes() {
    let cfg = std::fs::read_to_string(common::configs_dir().join("targetport-8080.yaml")).unwrap();
    // Relative manifests are not used by this config: stdin is fine.
    both_modes(&cfg, |v, _| {
        let n = v["requests"].as_array().unwrap().len();
        assert!(n >= 4, "{v}");
        assert_eq!(outcomes(v), vec!["ok"; n]);
        for r in v["requests"].as_array().unwrap() {
            assert_eq!(r["logged_client_ip"], "10.151.30.11", "{r}");
        }
        assert_eq!(
            v["pods"][0]["apps"][0],
            "agnhost netexec :8080/TCP :8081/UDP"
        );
    });
}

#[test]
fn scenario_show_names_each_pods_app_and_warns() {
    let show = common::lab_ok(
        &common::configs_dir().join(".."),
        &["scenario", "show", "targetport-8080"],
    );
    let show = String::from_utf8_lossy(&show);
    assert!(
        show.contains("agnhost netexec :8080/TCP :8081/UDP"),
        "{show}"
    );
    let bad = std::fs::read_to_string(common::configs_dir().join("targetport-8080.yaml"))
        .unwrap()
        .replace("targetPort: 8080", "targetPort: 9999");
    let out = common::lab_with_stdin(&["scenario", "show", "-"], bad.as_bytes());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(
            text.contains("warning: Service default/netexec port 80 → targetPort 9999/TCP"),
            "{text}"
        );
    }
}

#[test]
fn port_name_must_name_a_service_port() {
    let m = [
        deploy("ng", "web", "nginx", "", "{containerPort: 80}"),
        node_port_service("web", "{name: http, port: 80, targetPort: 80}"),
    ]
    .join("---\n");
    let cfg = config(&m, "  - {from: browser, to: master, portName: grpc}\n");
    let e = common::error_of(&cfg);
    common::assert_mentions(&e, &["plan[0].portName", "\"grpc\"", "\"http\" (80)"]);
    let cfg = config(
        &m,
        "  - {from: browser, to: master, port: 80, portName: http}\n",
    );
    common::assert_mentions(&common::error_of(&cfg), &["plan[0].portName", "not both"]);
}

#[test]
fn the_app_comes_from_the_image_and_args() {
    let c = |name: &str, image: &str, args: &str, ports: &str| {
        format!(
            "      - name: {name}\n        image: {image}\n        args: [{args}]\n        ports: [{ports}]\n"
        )
    };
    let containers = [
        c(
            "a",
            "docker.io/library/nginx:1.25@sha256:00",
            "",
            "{containerPort: 8080}, {containerPort: 53, protocol: UDP}",
        ),
        c(
            "b",
            "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "netexec, --http-port, '9000', --udp-port=-1",
            "",
        ),
        c(
            "c",
            "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "serve-hostname, --udp, --http=false, --port=7000",
            "",
        ),
        c(
            "d",
            "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "serve-hostname",
            "",
        ),
        c("e", "busybox", "", ""),
        c(
            "f",
            "ghcr.io/me/api:1",
            "",
            "{containerPort: 3000}, {containerPort: 3001, protocol: UDP}",
        ),
        c(
            "g",
            "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "pause",
            "{containerPort: 5000}",
        ),
    ]
    .concat();
    let doc = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: multi}}\nspec:\n  replicas: 1\n  \
         selector: {{matchLabels: {{app: multi}}}}\n  template:\n    metadata: {{labels: {{app: multi}}}}\n    \
         spec:\n      containers:\n{containers}"
    );
    let cfg = config(&doc, "  - {from: browser, to: 10.151.30.12, port: 80}\n");
    let cluster = common::load(&cfg).unwrap();
    let apps: Vec<String> = cluster.pods[0]
        .apps
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        apps,
        [
            "nginx :8080/TCP",
            "agnhost netexec :9000/TCP",
            "agnhost serve-hostname :7000/UDP",
            "agnhost serve-hostname :9376/TCP",
            "http :80/TCP",
            "http :3000/TCP :3001/UDP",
            "http :5000/TCP",
        ]
    );
    // agnhost exits when serve-hostname is asked for HTTP and UDP at once.
    let bad = cfg.replace("--udp, --http=false", "--udp");
    common::assert_mentions(
        &common::error_of(&bad),
        &["spec.template.spec.containers[2].args", "--http=false"],
    );
    let bad = cfg.replace("--http-port, '9000'", "--http-port=http");
    common::assert_mentions(
        &common::error_of(&bad),
        &["containers[1].args", "--http-port=http"],
    );
}
