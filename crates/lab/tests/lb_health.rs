//! LB health checks, weights, scale-down and lossy links, checked from
//! `lab scenario run --json` (embedded mode), like tests/scenarios.rs.

mod common;

use std::collections::BTreeMap;

use serde_json::Value;

fn run(scenario: &str, extra: &[&str]) -> (Value, String) {
    let text = String::from_utf8_lossy(&common::scenario_run(scenario, extra)).into_owned();
    let v = if extra.contains(&"--json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{scenario}: not JSON ({e})"))
    } else {
        Value::Null
    };
    (v, text)
}

fn json(scenario: &str) -> Value {
    run(scenario, &["--json"]).0
}

fn requests(v: &Value) -> &Vec<Value> {
    v["requests"].as_array().expect("requests")
}

fn pod_nodes(v: &Value) -> BTreeMap<String, String> {
    v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["node"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Requests per node (answered ones) among `reqs`.
fn per_node(v: &Value, reqs: &[Value]) -> BTreeMap<String, usize> {
    let nodes = pod_nodes(v);
    let mut m = BTreeMap::new();
    for r in reqs {
        if let Some(p) = r["pod"].as_str() {
            *m.entry(nodes[p].clone()).or_default() += 1;
        }
    }
    m
}

#[test]
fn healthcheck_keeps_traffic_off_the_pod_less_node() {
    let v = json("lb-local-healthcheck");
    let reqs = requests(&v);
    assert_eq!(reqs.len(), 600);
    // No request hangs: the pod-less ydzs-node3 (503 on its healthCheckNodePort) never
    // becomes healthy, so the LB never sends it a connection.
    for r in reqs {
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(
            r["logged_client_ip"], "203.0.113.20",
            "Local keeps the client IP"
        );
    }
    let m = per_node(&v, reqs);
    assert_eq!(m.get("ydzs-node3"), None, "{m:?}");
    // Unweighted: an even split between the two healthy nodes (node1's single pod ~50 %).
    let n1 = m["ydzs-node1"] as f64 / 600.0;
    assert!((0.44..0.56).contains(&n1), "{m:?}");
    // The human report shows why: node3's healthCheckNodePort answers 503.
    let (_, text) = run("lb-local-healthcheck", &[]);
    assert!(
        text.contains("ydzs-node3 unhealthy (weight 1, last probe 503)"),
        "{text}"
    );
}

#[test]
fn weighted_lb_evens_out_local_to_a_third_each() {
    let v = json("lb-local-weighted");
    let reqs = requests(&v);
    assert!(reqs.len() >= 3000);
    assert!(reqs.iter().all(|r| r["outcome"] == "ok"));
    let per_pod = v["per_pod"].as_array().unwrap();
    assert_eq!(per_pod.len(), 3);
    for p in per_pod {
        let share = p["share"].as_f64().unwrap();
        // `share` is a fraction or a percentage depending on the report; normalise.
        let share = if share > 1.0 { share / 100.0 } else { share };
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.03,
            "{}: {share} (want 33 % ± 3)",
            p["pod"]
        );
    }
    // Without weights the same cluster is 50/25/25 (local-imbalance).
    let v = json("local-imbalance");
    let m = per_node(&v, requests(&v));
    let n1 = m["ydzs-node1"] as f64 / requests(&v).len() as f64;
    assert!((0.45..0.55).contains(&n1), "{m:?}");
}

#[test]
fn scaled_down_node_gets_no_traffic_after_the_flip() {
    let v = json("lb-local-scale-down");
    let reqs = requests(&v);
    // plan: 300 before the scale-down, 100 in the window, wait 10 s, 300 after.
    assert_eq!(reqs.len(), 700);
    let before = per_node(&v, &reqs[..300]);
    assert!(before["ydzs-node1"] > 100, "{before:?}");
    assert!(reqs[..300].iter().all(|r| r["outcome"] == "ok"));
    // In the window some connections may still go to node1 and hang (connectTimeout 1s);
    // none is answered by the deleted pod.
    let window = &reqs[300..400];
    assert_eq!(per_node(&v, window).get("ydzs-node1"), None);
    for r in window {
        assert!(r["outcome"] == "ok" || r["outcome"] == "timeout", "{r}");
    }
    // After the flip every request is answered by node2's pods.
    let after = &reqs[400..];
    for r in after {
        assert_eq!(r["outcome"], "ok", "{r}");
    }
    let m = per_node(&v, after);
    assert_eq!(m.get("ydzs-node1"), None, "{m:?}");
    assert_eq!(m["ydzs-node2"], 300);
    // The flip itself: node1's health check turns to 503 and the LB marks it unhealthy.
    let (_, text) = run("lb-local-scale-down", &[]);
    assert!(
        text.contains("ydzs-node1 probe 503 weight 0 → now unhealthy"),
        "{text}"
    );
}

#[test]
fn lossy_link_retransmits_and_still_succeeds() {
    let (_, text) = run("lossy-link", &["--trace"]);
    let row = text
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no row for request 1:\n{text}"));
    assert!(row.contains("ok 200"), "{row}");
    // The same segment (link, direction, tuple, flags, length) sent twice in the trace.
    let trace: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "trace:")
        .filter(|l| l.contains(" out ") && (l.contains(" len ") || l.ends_with(" S")))
        .map(|l| l.trim_start().split_once("s ").map(|x| x.1).unwrap_or(l))
        .map(|l| l.trim_end_matches(" [lost on the link]"))
        .collect();
    assert!(
        text.contains("[lost on the link]"),
        "the trace shows the loss itself"
    );
    let mut seen = BTreeMap::new();
    for l in &trace {
        *seen.entry(*l).or_insert(0) += 1;
    }
    assert!(
        seen.values().any(|n| *n >= 2),
        "no retransmission in the trace:\n{}",
        trace.join("\n")
    );
    let v = json("lossy-link");
    let reqs = requests(&v);
    assert!(
        reqs.iter().all(|r| r["outcome"] == "ok"),
        "lossy but all answered"
    );
    // 50 ± 10 ms one-way on the uplink, two round trips (handshake, request).
    assert!(reqs
        .iter()
        .all(|r| r["elapsed_ms"].as_u64().unwrap() >= 160));
}

#[test]
fn scaled_back_up_node_returns_after_the_healthy_threshold() {
    // lb-local-scale-down, then nginx-a back to 1 replica: a new pod (new name, placed by
    // the scheduler on node1, its only eligible node) and node1 healthy again after 2 probes.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../lab-configs/lb-local-scale-down.yaml"),
    )
    .unwrap();
    let text = format!(
        "{text}  - scale: {{deployment: nginx-a, replicas: 1}}\n  - wait: 10s\n  - {{from: users, to: loadBalancer, service: default/nginx, count: 300}}\n"
    );
    let path = std::env::temp_dir().join(format!("lb-scale-up-{}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let (v, _) = run(path.to_str().unwrap(), &["--json"]);
    let _ = std::fs::remove_file(&path);
    let reqs = requests(&v);
    assert_eq!(reqs.len(), 1000);
    let nodes = pod_nodes(&v);
    assert_eq!(nodes.len(), 4, "the new pod is listed: {nodes:?}");
    let last = &reqs[700..];
    assert!(last.iter().all(|r| r["outcome"] == "ok"));
    let m = per_node(&v, last);
    let n1 = m["ydzs-node1"] as f64 / 300.0;
    assert!((0.4..0.6).contains(&n1), "{m:?}");
    let on_node1 = |rs: &[Value]| -> std::collections::BTreeSet<String> {
        rs.iter()
            .filter_map(|r| r["pod"].as_str())
            .filter(|p| nodes[*p] == "ydzs-node1")
            .map(str::to_string)
            .collect()
    };
    let (old, new) = (on_node1(&reqs[..300]), on_node1(last));
    assert_eq!((old.len(), new.len()), (1, 1), "{old:?} {new:?}");
    assert_ne!(old, new, "a new replica, not the deleted one");
    assert!(new.iter().all(|p| p.starts_with("nginx-a-")));
}
