//! The blog post's experiment, end to end through router → node → engine → pod.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

mod common;
use common::nginx_slice;
use nodeport::{IpFamily, Service, ServicePort, ServiceType, TrafficPolicy};
use sim::{
    Attachment, ClientDesc, LbDesc, NodeDesc, OutcomeKind, PodDesc, RequestOpts, World, WorldSpec,
};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

const MASTER: &str = "ydzs-master";
const NODEPORT: u16 = 32761;

fn nodes() -> Vec<NodeDesc> {
    [
        (MASTER, "10.151.30.11", "10.244.0.0/24"),
        ("ydzs-node1", "10.151.30.12", "10.244.1.0/24"),
        ("ydzs-node2", "10.151.30.13", "10.244.2.0/24"),
        ("ydzs-node3", "10.151.30.14", "10.244.3.0/24"),
    ]
    .map(|(name, addr, cidr)| NodeDesc::new(name, ip(addr), cidr.parse().unwrap()))
    .into()
}

fn worker_pods() -> Vec<PodDesc> {
    vec![
        PodDesc {
            name: "nginx-54f57cf6bf-xhs8g".into(),
            ip: ip("10.244.1.16"),
            ipv6: None,
            node: "ydzs-node1".into(),
            apps: Vec::new(),
        },
        PodDesc {
            name: "nginx-54f57cf6bf-jmp4k".into(),
            ip: ip("10.244.2.11"),
            ipv6: None,
            node: "ydzs-node2".into(),
            apps: Vec::new(),
        },
        PodDesc {
            name: "nginx-54f57cf6bf-8rw2c".into(),
            ip: ip("10.244.3.9"),
            ipv6: None,
            node: "ydzs-node3".into(),
            apps: Vec::new(),
        },
    ]
}

fn browser() -> ClientDesc {
    ClientDesc {
        name: "browser".into(),
        ip: ip("203.0.113.11"),
        ipv6: None,
        attach: Attachment::External {
            can_reach: vec![MASTER.into()],
        },
    }
}

fn service(etp: TrafficPolicy) -> Service {
    Service {
        cluster_ips: vec![ip("10.96.145.24").into()],
        ports: vec![ServicePort::tcp(80, 80, Some(NODEPORT))],
        external_traffic_policy: etp,
        ..Service::new("default", "nginx", ServiceType::NodePort)
    }
}

fn world(pods: Vec<PodDesc>, etp: TrafficPolicy, lb: Option<LbDesc>) -> World {
    let spec = WorldSpec {
        nodes: nodes(),
        clients: vec![browser()],
        pods: pods.clone(),
        load_balancer: lb,
        seed: 42,
        ..WorldSpec::default()
    };
    let mut w = World::new(spec).unwrap();
    w.set_services(&[service(etp)], &[nginx_slice(IpFamily::V4, &pods)]);
    w
}

fn master_np() -> SocketAddrV4 {
    SocketAddrV4::new(ip("10.151.30.11"), NODEPORT)
}

fn all_logs(w: &World) -> Vec<String> {
    w.pods().iter().flat_map(|p| w.access_log(p)).collect()
}

#[test]
fn cluster_policy_logs_the_masters_ip() {
    let mut w = world(worker_pods(), TrafficPolicy::Cluster, None);
    let id = w
        .start_request("browser", master_np(), RequestOpts::default())
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
    assert_eq!(out.status, Some(200));
    assert!(
        out.body.starts_with("pod nginx-54f57cf6bf-"),
        "{}",
        out.body
    );
    let logs = all_logs(&w);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].starts_with("10.151.30.11 - - ["), "{}", logs[0]);
    assert!(
        logs[0].ends_with("\"GET / HTTP/1.1\" 200 ".to_string().as_str())
            || logs[0].contains("\"GET / HTTP/1.1\" 200 "),
        "{}",
        logs[0]
    );
    assert!(
        logs[0].ends_with("\"-\" \"curl/7.88.1\" \"-\""),
        "{}",
        logs[0]
    );
    // The trace follows the flow through DNAT and masquerade, both ways.
    let trace = w.trace_lines_for(id);
    let text = trace.join("\n");
    assert!(text.contains("ydzs-master eth0 PREROUTING"), "{text}");
    assert!(text.contains("DNAT dst 10.151.30.11:"), "{text}");
    assert!(
        text.contains("SNAT (MASQUERADE) src 203.0.113.11:"),
        "{text}"
    );
    assert!(text.contains("un-SNAT dst 10.151.30.11:"), "{text}");
    assert!(
        text.contains("KUBE-SERVICES → KUBE-NODEPORTS → KUBE-EXT-"),
        "{text}"
    );
    assert!(text.contains("browser in"), "{text}");
    // conntrack on the master holds the flow
    let ct = w.conntrack(MASTER);
    assert!(ct.iter().any(|l| l.contains("dport=32761")), "{ct:?}");
}

#[test]
fn local_policy_without_local_pod_times_out() {
    let mut w = world(worker_pods(), TrafficPolicy::Local, None);
    let out = w
        .request("browser", master_np(), RequestOpts::default())
        .unwrap();
    assert_eq!(out.kind, OutcomeKind::Timeout);
    assert!(
        (Duration::from_secs(126)..=Duration::from_secs(128)).contains(&out.elapsed),
        "{:?}",
        out.elapsed
    );
    assert_eq!(
        out.message,
        "curl: (28) Failed to connect to 10.151.30.11 port 32761 after 127000 ms: Timeout was reached"
    );
    assert!(all_logs(&w).is_empty());
    // Linux's SYN schedule: first SYN + 6 retransmits at 1, 3, 7, 15, 31, 63 s.
    let id = sim::RequestId(0);
    let syns: Vec<u64> = w
        .trace_for(id)
        .iter()
        .filter_map(|e| match e {
            sim::TraceEvent::Link(l)
                if l.link == "browser" && l.dir == vswitch::Direction::FromDevice =>
            {
                Some(l.at.as_secs())
            }
            _ => None,
        })
        .collect();
    assert_eq!(syns, vec![0, 1, 3, 7, 15, 31, 63]);
}

#[test]
fn local_policy_with_pod_on_master_keeps_browser_ip() {
    let pods = vec![PodDesc {
        name: "nginx-54f57cf6bf-m4st3".into(),
        ip: ip("10.244.0.7"),
        ipv6: None,
        node: MASTER.into(),
        apps: Vec::new(),
    }];
    let mut w = world(pods, TrafficPolicy::Local, None);
    let out = w
        .request("browser", master_np(), RequestOpts::default())
        .unwrap();
    assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
    let logs = w.access_log("nginx-54f57cf6bf-m4st3");
    assert_eq!(logs.len(), 1);
    assert!(logs[0].starts_with("203.0.113.11 - - ["), "{}", logs[0]);
    assert_eq!(
        w.access_entries("nginx-54f57cf6bf-m4st3")[0].remote_addr,
        ip("203.0.113.11")
    );
}

#[test]
fn unreachable_node_is_silently_dropped_by_the_router() {
    let mut w = world(worker_pods(), TrafficPolicy::Cluster, None);
    let out = w
        .request(
            "browser",
            SocketAddrV4::new(ip("10.151.30.12"), NODEPORT),
            RequestOpts {
                connect_timeout: Some(Duration::from_secs(5)),
                ..RequestOpts::default()
            },
        )
        .unwrap();
    assert_eq!(out.kind, OutcomeKind::Timeout);
    assert_eq!(out.elapsed, Duration::from_secs(5));
    assert!(w.router().counters.filtered >= 1);
}

#[test]
fn cluster_policy_from_a_pod_on_the_same_node_sees_cni0() {
    // A client pod on node1 calls node1's NodePort; masquerade picks cni0 (10.244.1.1) when
    // the endpoint is local, eth0 (10.151.30.12) when it is remote.
    let pods = worker_pods();
    let spec = WorldSpec {
        nodes: nodes(),
        clients: vec![ClientDesc {
            name: "tester".into(),
            ip: ip("10.244.1.50"),
            ipv6: None,
            attach: Attachment::Pod {
                node: "ydzs-node1".into(),
            },
        }],
        pods: pods.clone(),
        seed: 7,
        ..WorldSpec::default()
    };
    let mut w = World::new(spec).unwrap();
    w.set_services(
        &[service(TrafficPolicy::Cluster)],
        &[nginx_slice(IpFamily::V4, &pods)],
    );
    for _ in 0..30 {
        let out = w
            .request(
                "tester",
                SocketAddrV4::new(ip("10.151.30.12"), NODEPORT),
                RequestOpts::default(),
            )
            .unwrap();
        assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
    }
    for e in w.access_entries("nginx-54f57cf6bf-xhs8g") {
        assert_eq!(e.remote_addr, ip("10.244.1.1"));
    }
    for p in ["nginx-54f57cf6bf-jmp4k", "nginx-54f57cf6bf-8rw2c"] {
        for e in w.access_entries(p) {
            assert_eq!(e.remote_addr, ip("10.151.30.12"));
        }
    }
    let total: usize = w.pods().iter().map(|p| w.access_log(p).len()).sum();
    assert_eq!(total, 30);
}

#[test]
fn thousand_requests_through_the_lb_split_per_node() {
    // ETP Local, 1 pod on node1, 2 on node2; the LB splits evenly per node → 50/25/25.
    let pods = vec![
        PodDesc {
            name: "nginx-a".into(),
            ip: ip("10.244.1.16"),
            ipv6: None,
            node: "ydzs-node1".into(),
            apps: Vec::new(),
        },
        PodDesc {
            name: "nginx-b".into(),
            ip: ip("10.244.2.11"),
            ipv6: None,
            node: "ydzs-node2".into(),
            apps: Vec::new(),
        },
        PodDesc {
            name: "nginx-c".into(),
            ip: ip("10.244.2.12"),
            ipv6: None,
            node: "ydzs-node2".into(),
            apps: Vec::new(),
        },
    ];
    let lb = LbDesc {
        name: "lb".into(),
        ip: ip("198.51.100.100"),
        ipv6: None,
        nodes: vec!["ydzs-node1".into(), "ydzs-node2".into()],
        ports: vec![],
    };
    let mut w = world(pods, TrafficPolicy::Local, Some(lb));
    let dst = SocketAddrV4::new(ip("198.51.100.100"), 80);
    let mut ports = std::collections::HashSet::new();
    for _ in 0..1000 {
        let out = w.request("browser", dst, RequestOpts::default()).unwrap();
        assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
        ports.insert(out.client_port);
        w.clear_trace();
    }
    assert!(ports.len() > 900, "source ports vary: {}", ports.len());
    let a = w.access_log("nginx-a").len();
    let b = w.access_log("nginx-b").len();
    let c = w.access_log("nginx-c").len();
    assert_eq!(a + b + c, 1000);
    assert!((440..=560).contains(&a), "{a} {b} {c}");
    assert!((190..=310).contains(&b), "{a} {b} {c}");
    assert!((190..=310).contains(&c), "{a} {b} {c}");
    // Local policy through an LB keeps the client IP.
    assert!(w
        .access_entries("nginx-b")
        .iter()
        .all(|e| e.remote_addr == ip("203.0.113.11")));
}

#[test]
#[ignore = "prints a trace for eyeballing"]
fn print_trace() {
    let mut w = world(worker_pods(), TrafficPolicy::Cluster, None);
    let id = w
        .start_request("browser", master_np(), RequestOpts::default())
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    w.run_until_idle();
    println!("{out}");
    for l in w.trace_lines_for(id) {
        println!("{l}");
    }
    for l in all_logs(&w) {
        println!("{l}");
    }
    for l in w.conntrack(MASTER) {
        println!("{l}");
    }
}

#[test]
#[ignore = "prints the SYN retransmit schedule for eyeballing"]
fn print_timeout_trace() {
    let mut w = world(worker_pods(), TrafficPolicy::Local, None);
    let id = w
        .start_request("browser", master_np(), RequestOpts::default())
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    println!("{out}");
    for l in w.trace_lines_for(id) {
        if l.contains("browser out") || l.contains("DROP") {
            println!("{l}");
        }
    }
}

#[test]
fn without_masquerade_the_reply_bypasses_the_master_and_the_client_hangs() {
    let mut ns = nodes();
    for n in &mut ns {
        let cni0 = Ipv4Addr::from(u32::from(n.pod_cidr.network()) + 1);
        let mut p = nodeport::ProxyConfig::new(
            n.name.clone(),
            vec![std::net::IpAddr::V4(n.ip), std::net::IpAddr::V4(cni0)],
        );
        p.cluster_cidrs = vec!["10.244.0.0/16".parse().unwrap()];
        p.masquerade_enabled = false;
        n.proxy = Some(p);
    }
    let pods = worker_pods();
    let mut w = World::new(WorldSpec {
        nodes: ns,
        clients: vec![browser()],
        pods: pods.clone(),
        seed: 42,
        ..WorldSpec::default()
    })
    .unwrap();
    w.set_services(
        &[service(TrafficPolicy::Cluster)],
        &[nginx_slice(IpFamily::V4, &pods)],
    );
    let id = w
        .start_request(
            "browser",
            master_np(),
            RequestOpts {
                connect_timeout: Some(Duration::from_secs(10)),
                ..RequestOpts::default()
            },
        )
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Timeout, "{out:?}");
    // The pod saw the browser's SYN and answered it directly (the master never un-DNATs).
    let text = w.trace_lines_for(id).join("\n");
    assert!(text.contains("→ 203.0.113.11:"), "{text}");
    assert!(
        text.contains("browser in  10.244."),
        "the SYN-ACK arrives from the pod IP: {text}"
    );
}
