//! A generated cluster at scale, built directly as a [`World`] (no config, no scheduler):
//! N nodes, S NodePort Services (`externalTrafficPolicy: Cluster`) × R replicas spread round
//! robin over the nodes, Q requests from one external client, each to the next Service
//! through the next node. Ignored by default (it measures, it does not check a lesson):
//!
//! ```text
//! SCALE_NODES=1000 SCALE_SERVICES=1000 SCALE_REPLICAS=10 SCALE_REQUESTS=10000 \
//!   cargo test --release -p sim --test scale -- --ignored --nocapture
//! ```
//!
//! It prints the build, sync and request times, requests per second and the peak RSS
//! (`VmHWM`), and checks that every request was answered by a pod of its Service.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use nodeport::{
    Endpoint, EndpointPort, EndpointSlice, Protocol, Service, ServicePort, ServiceRef, ServiceType,
};
use sim::{Attachment, ClientDesc, NodeDesc, OutcomeKind, PodDesc, RequestOpts, World, WorldSpec};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 150, 0, 0)) + 10 + i as u32)
}

fn pod_cidr(i: usize) -> Ipv4Net {
    Ipv4Net::new(
        Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + 256 * i as u32),
        24,
    )
    .expect("/24")
}

fn service(s: usize) -> Service {
    Service {
        cluster_ips: vec![
            Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + s as u32).into(),
        ],
        ports: vec![ServicePort::tcp(80, 80, Some(30000 + s as u16))],
        ..Service::new("default", format!("svc-{s}"), ServiceType::NodePort)
    }
}

/// The generated cluster: (spec, services, slices, pod names of each service).
fn cluster(
    nodes: usize,
    services: usize,
    replicas: usize,
) -> (WorldSpec, Vec<Service>, Vec<EndpointSlice>) {
    let node_descs: Vec<NodeDesc> = (0..nodes)
        .map(|i| NodeDesc::new(format!("node-{i}"), node_ip(i), pod_cidr(i)))
        .collect();
    let mut per_node = vec![0u32; nodes];
    let mut pods = Vec::new();
    let mut slices = Vec::new();
    for s in 0..services {
        let mut endpoints = Vec::new();
        for r in 0..replicas {
            let n = (s * replicas + r) % nodes;
            per_node[n] += 1;
            let ip = Ipv4Addr::from(u32::from(pod_cidr(n).network()) + 1 + per_node[n]);
            pods.push(PodDesc {
                name: format!("svc-{s}-{r}"),
                ip,
                ipv6: None,
                node: format!("node-{n}"),
                apps: Vec::new(),
            });
            endpoints.push(Endpoint {
                ip: std::net::IpAddr::V4(ip),
                node_name: Some(format!("node-{n}")),
                ready: true,
                serving: true,
                terminating: false,
            });
        }
        slices.push(EndpointSlice {
            address_type: Default::default(),
            service: ServiceRef::new("default", format!("svc-{s}")),
            ports: vec![EndpointPort {
                name: String::new(),
                protocol: Protocol::Tcp,
                port: 80,
            }],
            endpoints,
        });
    }
    let spec = WorldSpec {
        node_network: "10.150.0.0/16".parse().expect("literal"),
        router_ip: "10.150.0.1".parse().expect("literal"),
        cluster_cidr: Some("172.16.0.0/12".parse().expect("literal")),
        nodes: node_descs,
        clients: vec![ClientDesc {
            name: "browser".into(),
            ip: "203.0.113.11".parse().expect("literal"),
            ipv6: None,
            attach: Attachment::External {
                can_reach: (0..nodes).map(|i| format!("node-{i}")).collect(),
            },
        }],
        pods,
        seed: 7,
        tracing: false,
        ..WorldSpec::default()
    };
    (spec, (0..services).map(service).collect(), slices)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture (see the module docs)"]
fn generated_cluster_at_scale() {
    let (nodes, services) = (env("SCALE_NODES", 100), env("SCALE_SERVICES", 100));
    let (replicas, requests) = (env("SCALE_REPLICAS", 10), env("SCALE_REQUESTS", 1000));
    let t0 = Instant::now();
    let (spec, svcs, slices) = cluster(nodes, services, replicas);
    let mut w = World::new(spec).expect("generated world");
    let built = t0.elapsed();
    w.set_services(&svcs, &slices);
    let synced = t0.elapsed();
    let mut ok = 0;
    for q in 0..requests {
        let (s, n) = (q % services, (q * 7) % nodes);
        let dst = SocketAddrV4::new(node_ip(n), 30000 + s as u16);
        let mark = w.access_mark();
        let out = w
            .request("browser", dst, RequestOpts::default())
            .expect("request");
        w.poll(w.now());
        assert_eq!(out.kind, OutcomeKind::Ok, "request {q} to {dst}: {out}");
        let logged = w.access_entries_since(mark);
        assert_eq!(logged.len(), 1, "request {q}: one access-log line");
        assert!(logged[0].0.starts_with(&format!("svc-{s}-")), "{logged:?}");
        ok += 1;
    }
    let total = t0.elapsed();
    let run = total - synced;
    println!(
        "scale: {nodes} nodes, {services} services x {replicas} replicas, {requests} requests: \
         build {:.3} s, sync {:.3} s, requests {:.3} s ({:.0} requests/s), total {:.3} s, \
         peak RSS {} MiB",
        built.as_secs_f64(),
        (synced - built).as_secs_f64(),
        run.as_secs_f64(),
        ok as f64 / run.as_secs_f64().max(1e-9),
        total.as_secs_f64(),
        peak_rss_kib() / 1024
    );
    assert!(run > Duration::ZERO);
}
