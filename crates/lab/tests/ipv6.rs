//! IPv6 and dual-stack scenarios in embedded mode (issue 10): the request outcomes and the
//! addresses nginx logs, per family and policy, through `lab scenario run --json`; the trace
//! and conntrack views of an IPv6 flow.

mod common;
use common::*;

use serde_json::Value;

fn run_json(scenario: &str) -> Value {
    serde_json::from_slice(&scenario_run(scenario, &["--json"])).expect("JSON")
}

/// (outcome, client_ip, logged_client_ip) of every request.
fn requests(v: &Value) -> Vec<(String, String, String)> {
    let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("-").to_string();
    v["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| (s(r, "outcome"), s(r, "client_ip"), s(r, "logged_client_ip")))
        .collect()
}

fn req(outcome: &str, client: &str, logged: &str) -> (String, String, String) {
    (outcome.into(), client.into(), logged.into())
}

/// The blog's experiment over IPv6: ok, and nginx logs the master's IPv6 address.
#[test]
fn seed_cluster_v6_logs_the_masters_ipv6_address() {
    let v = run_json("seed-cluster-v6");
    assert_eq!(
        requests(&v),
        [req("ok", "2001:db8::11", "fd00:10:151:30::11")]
    );
    assert!(v["requests"][0]["target"]
        .as_str()
        .unwrap()
        .contains("[fd00:10:151:30::11]:"));
}

/// One dual-stack Service per policy, each reached over both families: Cluster via the
/// pod-less master logs the master's address of the request's family, Local via a node with a
/// pod logs the browser's.
#[test]
fn dual_stack_answers_per_family_and_policy() {
    let v = run_json("dual-stack");
    assert_eq!(
        requests(&v),
        [
            req("ok", "203.0.113.11", "10.151.30.11"),
            req("ok", "2001:db8::11", "fd00:10:151:30::11"),
            req("ok", "203.0.113.11", "203.0.113.11"),
            req("ok", "2001:db8::11", "2001:db8::11"),
        ]
    );
}

/// `--json` carries the cluster's IPv6 side (nodes', pods' IPv6 addresses, a Service's
/// families and ClusterIPs) only where there is one: an IPv4-only lab's document has none.
#[test]
fn json_shows_the_ipv6_side_of_the_cluster() {
    let v = run_json("dual-stack");
    let master = &v["nodes"][0];
    assert_eq!(master["ipv6"], "fd00:10:151:30::11");
    assert_eq!(master["pod_cidr_v6"], "fd00:10:244::/64");
    let pod = &v["pods"][0];
    assert!(
        pod["ipv6"].as_str().unwrap().starts_with("fd00:10:244:"),
        "{pod}"
    );
    let nginx = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nginx")
        .unwrap();
    assert_eq!(nginx["ip_family_policy"], "RequireDualStack");
    assert_eq!(nginx["ip_families"], serde_json::json!(["IPv4", "IPv6"]));
    let ips = nginx["cluster_ips"].as_array().unwrap();
    assert_eq!(ips[0], nginx["cluster_ip"]);
    assert!(
        ips[1].as_str().unwrap().starts_with("fd00:10:96::"),
        "{ips:?}"
    );
    let v4 = run_json("seed-cluster");
    for key in ["nodes", "pods", "services"] {
        for item in v4[key].as_array().unwrap() {
            for field in ["ipv6", "pod_cidr_v6", "cluster_ips", "ip_families"] {
                assert!(item.get(field).is_none(), "{key} has {field}: {item}");
            }
        }
    }
}

/// The trace shows the IPv6 flow hop by hop (the router, DNAT to the pod's IPv6 address,
/// MASQUERADE to the master's) and conntrack lists it with its IPv6 tuples.
#[test]
fn trace_and_conntrack_show_the_ipv6_flow() {
    let out = String::from_utf8(scenario_run("seed-cluster-v6", &["--trace", "--conntrack"]))
        .expect("utf-8");
    for want in [
        "router clients-203.0.113.0/24→node-network forward [2001:db8::11]:",
        "DNAT dst [fd00:10:151:30::11]:",
        "→ [fd00:10:244:",
        "SNAT (MASQUERADE) src [2001:db8::11]:",
        "src=2001:db8::11 dst=fd00:10:151:30::11",
        // kube-proxy's IPv6 proxier programs ip6tables: the chain walk says so.
        "ip6tables nat: KUBE-SERVICES → KUBE-NODEPORTS →",
        "ip6tables nat: KUBE-POSTROUTING →",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

/// The flow diagram of an IPv6 request names ip6tables in the nodes and the client's IPv6
/// address; an IPv4 request's names iptables.
#[test]
fn diagram_names_ip6tables_for_an_ipv6_request() {
    let dir = std::env::temp_dir().join(format!("lab-ipv6-diagram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let svg = |scenario: &str, request: &str| {
        let file = dir.join(format!("{scenario}-{request}.svg"));
        let f = file.to_str().expect("utf-8 path");
        scenario_run(scenario, &["--diagram", f, "--trace-request", request]);
        std::fs::read_to_string(&file).expect("svg written")
    };
    let v6 = svg("dual-stack", "2");
    assert!(
        v6.contains(">ip6tables<") && !v6.contains(">iptables<"),
        "{v6}"
    );
    assert!(v6.contains("2001:db8::11"));
    let v4 = svg("dual-stack", "1");
    assert!(
        v4.contains(">iptables<") && !v4.contains(">ip6tables<"),
        "{v4}"
    );
    let out = String::from_utf8(scenario_run(
        "dual-stack",
        &["--trace", "--trace-request", "1"],
    ))
    .expect("utf-8");
    assert!(out.contains("\n            nat: KUBE-SERVICES"), "{out}");
    assert!(!out.contains("ip6tables nat:"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
