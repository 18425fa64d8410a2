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
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
