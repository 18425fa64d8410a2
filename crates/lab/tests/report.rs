//! Report output on a hand-built result (no runner needed).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use cluster::{Client, ClientAttach, Cluster, Node, Pod};
use lab::report::{get_pods_wide, get_svc, print_human, to_json, write_json};
use lab::{Mode, Outcome, RequestResult, ScenarioResult};
use nodeport::{Protocol, Service, ServicePort, ServiceType};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn cluster() -> Cluster {
    let node = |name: &str, addr: &str, cidr: &str| Node {
        name: name.into(),
        ip: ip(addr),
        ipv6: None,
        prefix_len: 24,
        pod_cidr: cidr.parse().unwrap(),
        pod_cidr_v6: None,
        taints: vec![],
        labels: BTreeMap::new(),
        masquerade: true,
    };
    let pod = |name: &str, node: &str, addr: &str| Pod {
        namespace: "default".into(),
        name: name.into(),
        deployment: "nginx".into(),
        node: node.into(),
        ip: ip(addr),
        ipv6: None,
        labels: BTreeMap::new(),
        container_ports: vec![(String::new(), 80, Protocol::Tcp)],
        apps: vec![cluster::AppSpec::Nginx { ports: vec![80] }],
        ready: true,
        restarts: 0,
        readiness_probe: None,
    };
    let svc = |name: &str, type_, cip: &str, port, np| Service {
        cluster_ips: vec![ip(cip).into()],
        ports: vec![ServicePort::tcp(port, 80, np)],
        ..Service::new("default", name, type_)
    };
    Cluster {
        scenario: "seed-cluster".into(),
        source: PathBuf::from("lab-configs/seed-cluster.yaml"),
        description: "lesson".into(),
        nodes: vec![
            node("ydzs-master", "10.151.30.11", "10.244.0.0/24"),
            node("ydzs-node1", "10.151.30.12", "10.244.1.0/24"),
        ],
        node_network: "10.151.30.0/24".parse().unwrap(),
        router_ip: ip("10.151.30.1"),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_network_v6: None,
        router_ipv6: None,
        cluster_cidr_v6: None,
        clients: vec![Client {
            name: "browser".into(),
            ip: ip("203.0.113.11"),
            ipv6: None,
            attach: ClientAttach::External {
                can_reach: vec!["ydzs-master".into()],
            },
        }],
        pods: vec![
            pod("nginx-54f57cf6bf-xhs8g", "ydzs-node1", "10.244.1.16"),
            pod("nginx-54f57cf6bf-ptvgs", "ydzs-node1", "10.244.1.17"),
        ],
        services: vec![
            svc("kubernetes", ServiceType::ClusterIp, "10.96.0.1", 443, None),
            svc(
                "nginx",
                ServiceType::NodePort,
                "10.106.190.194",
                80,
                Some(32761),
            ),
        ],
        slices: vec![],
        load_balancer: None,
        plan: vec![],
        seed: 1,
        actions: vec![],
        links: vec![],
        kube_proxy: Default::default(),
    }
}

fn result() -> ScenarioResult {
    let ok = RequestResult {
        client: "browser".into(),
        client_ip: ip("203.0.113.11").into(),
        target: "ydzs-master 10.151.30.11:32761".into(),
        outcome: Outcome::Ok,
        status: Some(200),
        pod: Some("nginx-54f57cf6bf-xhs8g".into()),
        logged_client_ip: Some(ip("10.151.30.11").into()),
        elapsed_ms: 3,
        curl_message: None,
        reply: None,
    };
    let timeout = RequestResult {
        outcome: Outcome::Timeout,
        status: None,
        pod: None,
        logged_client_ip: None,
        elapsed_ms: 10_001,
        curl_message: Some("curl: (28) Connection timed out after 10001 milliseconds".into()),
        reply: None,
        ..ok.clone()
    };
    ScenarioResult {
        cluster: cluster(),
        mode: Mode::Embedded,
        requests: vec![ok.clone(), ok, timeout],
        access_logs: vec![(
            "nginx-54f57cf6bf-xhs8g".into(),
            vec!["10.151.30.11 - - [07/Dec/2019:16:44:38 +0800] \"GET / HTTP/1.1\" 200 612 \"-\" \"curl/8.5.0\" \"-\"".into(); 2],
        )],
        trace: None,
        conntrack: None,
        lb_health: vec![],
        explanations: Vec::new(),
        events: Vec::new(),
    }
}

#[test]
fn json_shape_is_stable() {
    let v = to_json(&result());
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "scenario", "mode", "nodes", "services", "pods", "warnings", "requests", "per_pod",
        "events",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(v["scenario"], "seed-cluster");
    assert_eq!(v["mode"], "embedded");
    assert_eq!(v["events"], serde_json::json!([]));
    assert_eq!(
        v["nodes"][0],
        serde_json::json!({"name": "ydzs-master", "ip": "10.151.30.11", "pod_cidr": "10.244.0.0/24"})
    );
    assert_eq!(
        v["services"][1],
        serde_json::json!({
            "namespace": "default", "name": "nginx", "type": "NodePort", "cluster_ip": "10.106.190.194",
            "external_traffic_policy": "Cluster",
            "ports": [{"port": 80, "target_port": 80, "node_port": 32761, "protocol": "TCP"}]
        })
    );
    assert_eq!(
        v["services"][0]["ports"][0]["node_port"],
        serde_json::Value::Null
    );
    assert_eq!(
        v["pods"][0],
        serde_json::json!({"name": "nginx-54f57cf6bf-xhs8g", "ip": "10.244.1.16", "node": "ydzs-node1",
            "apps": ["nginx :80/TCP"], "restarts": 0})
    );
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(
        v["requests"][0],
        serde_json::json!({
            "client": "browser", "client_ip": "203.0.113.11", "target": "ydzs-master 10.151.30.11:32761",
            "outcome": "ok", "pod": "nginx-54f57cf6bf-xhs8g", "logged_client_ip": "10.151.30.11", "elapsed_ms": 3
        })
    );
    assert_eq!(v["requests"][2]["outcome"], "timeout");
    assert_eq!(v["requests"][2]["pod"], serde_json::Value::Null);
    assert_eq!(
        v["requests"][2]["logged_client_ip"],
        serde_json::Value::Null
    );
    // per_pod: every pod, shares over answered requests, 0 for a pod that got nothing.
    assert_eq!(
        v["per_pod"],
        serde_json::json!([
            {"pod": "nginx-54f57cf6bf-xhs8g", "node": "ydzs-node1", "requests": 2, "share": 1.0},
            {"pod": "nginx-54f57cf6bf-ptvgs", "node": "ydzs-node1", "requests": 0, "share": 0.0}
        ])
    );
}

/// `--json` is written as it is serialized (no document built first); the bytes must be
/// those of the sorted `Value` pretty-printed, explanations (present for some requests
/// only) included.
#[test]
fn written_json_is_the_pretty_value() {
    let mut r = result();
    r.explanations = vec!["first \"quoted\"".into(), "second".into()];
    r.requests[1].reply = Some("nginx-54f57cf6bf-xhs8g".into());
    let mut written = Vec::new();
    write_json(&r, &mut written).unwrap();
    let want = serde_json::to_string_pretty(&to_json(&r)).unwrap() + "\n";
    assert_eq!(String::from_utf8(written).unwrap(), want);
    let v = to_json(&r);
    assert_eq!(v["requests"][1]["explanation"], "second");
    assert!(v["requests"][2].get("explanation").is_none());
    assert_eq!(v["requests"][1]["reply"], "nginx-54f57cf6bf-xhs8g");
    assert!(v["requests"][0].get("reply").is_none());
}

#[test]
fn kubectl_tables() {
    let c = cluster();
    let svc = get_svc(&c);
    assert!(
        svc.starts_with(
            "NAME         TYPE        CLUSTER-IP       EXTERNAL-IP   PORT(S)        AGE\n"
        ),
        "{svc}"
    );
    assert!(
        svc.contains("nginx        NodePort    10.106.190.194   <none>        80:32761/TCP"),
        "{svc}"
    );
    assert!(
        svc.contains("kubernetes   ClusterIP   10.96.0.1        <none>        443/TCP"),
        "{svc}"
    );
    let pods = get_pods_wide(&c);
    assert!(pods.starts_with("NAME"));
    assert!(
        pods.contains(
            "nginx-54f57cf6bf-xhs8g   1/1     Running   0          5m    10.244.1.16   ydzs-node1"
        ),
        "{pods}"
    );
}

#[test]
fn human_output_has_requests_logs_and_shares() {
    let mut out = Vec::new();
    print_human(&result(), &mut out).unwrap();
    let s = String::from_utf8(out).unwrap();
    for want in [
        "NGINX LOGGED",
        "10.151.30.11 - - [07/Dec/2019",
        "timeout",
        "curl: (28)",
        "per pod (2 of 3 requests answered)",
        "100.0 %",
        "0.0 %",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}
