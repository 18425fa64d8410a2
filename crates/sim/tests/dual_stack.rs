//! A dual-stack world (issue 10): the blog's topology with an IPv6 node network, IPv6 pod
//! /64s and a dual-stack browser. One dual-stack NodePort Service (kube-proxy's per-family
//! rules): over IPv4 and over IPv6 the request answers the same way, with the addresses of
//! its family — Cluster masquerades to the master's address of that family, Local keeps the
//! browser's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

mod common;
use common::nginx_slice;
use nodeport::{IpFamily, IpFamilyPolicy, Service, ServicePort, ServiceType, TrafficPolicy};
use sim::{Attachment, ClientDesc, NodeDesc, OutcomeKind, PodDesc, RequestOpts, World, WorldSpec};

const NODEPORT: u16 = 32761;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// master (no pod), node1 and node2 (one nginx each), dual-stack.
fn spec(tracing: bool) -> WorldSpec {
    let node = |name: &str, k: u8| NodeDesc {
        ipv6: Some(v6(&format!("fd00:10:151:30::{}", 11 + k))),
        pod_cidr_v6: Some(format!("fd00:10:244:{k}::/64").parse().unwrap()),
        ..NodeDesc::new(
            name,
            v4(&format!("10.151.30.{}", 11 + k)),
            format!("10.244.{k}.0/24").parse().unwrap(),
        )
    };
    let pod = |k: u8| PodDesc {
        name: format!("nginx-{k}"),
        ip: v4(&format!("10.244.{k}.16")),
        ipv6: Some(v6(&format!("fd00:10:244:{k}::16"))),
        node: format!("node{k}"),
        apps: Vec::new(),
    };
    WorldSpec {
        node_network_v6: Some("fd00:10:151:30::/64".parse().unwrap()),
        router_ipv6: Some(v6("fd00:10:151:30::1")),
        cluster_cidr_v6: Some("fd00:10:244::/56".parse().unwrap()),
        nodes: vec![node("master", 0), node("node1", 1), node("node2", 2)],
        clients: vec![ClientDesc {
            name: "browser".into(),
            ip: v4("203.0.113.11"),
            ipv6: Some(v6("2001:db8::11")),
            attach: Attachment::External {
                can_reach: vec!["master".into(), "node1".into()],
            },
        }],
        pods: vec![pod(1), pod(2)],
        seed: 7,
        tracing,
        ..WorldSpec::default()
    }
}

/// A dual-stack client pod on node2.
fn tester() -> ClientDesc {
    ClientDesc {
        name: "tester".into(),
        ip: v4("10.244.2.50"),
        ipv6: Some(v6("fd00:10:244:2::50")),
        attach: Attachment::Pod {
            node: "node2".into(),
        },
    }
}

fn world(etp: TrafficPolicy, tracing: bool) -> World {
    let spec = spec(tracing);
    let pods = spec.pods.clone();
    let mut w = World::new(spec).unwrap();
    let svc = Service {
        cluster_ips: vec![v4("10.96.145.24").into(), v6("fd00:10:96::f060").into()],
        ip_families: vec![IpFamily::V4, IpFamily::V6],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        ports: vec![ServicePort::tcp(80, 80, Some(NODEPORT))],
        external_traffic_policy: etp,
        ..Service::new("default", "nginx", ServiceType::NodePort)
    };
    let slices = [
        nginx_slice(IpFamily::V4, &pods),
        nginx_slice(IpFamily::V6, &pods),
    ];
    w.set_services(&[svc], &slices);
    w
}

/// The request's outcome and the `$remote_addr` nginx logged for it.
fn get(w: &mut World, dst: IpAddr) -> (OutcomeKind, IpAddr) {
    let mark = w.access_mark();
    let dst = SocketAddr::new(dst, NODEPORT);
    let out = w.request("browser", dst, RequestOpts::default()).unwrap();
    w.poll(w.now());
    let logged = w.access_peers_since(mark);
    assert_eq!(logged.len(), 1, "one access-log line for {dst}: {logged:?}");
    assert_eq!(out.dst, dst);
    (out.kind, logged[0].1)
}

#[test]
fn cluster_policy_masquerades_to_the_masters_address_of_each_family() {
    let mut w = world(TrafficPolicy::Cluster, true);
    let (kind, logged) = get(&mut w, v4("10.151.30.11").into());
    assert_eq!((kind, logged), (OutcomeKind::Ok, v4("10.151.30.11").into()));
    let (kind, logged) = get(&mut w, v6("fd00:10:151:30::11").into());
    assert_eq!(
        (kind, logged),
        (OutcomeKind::Ok, v6("fd00:10:151:30::11").into())
    );
    // The IPv6 flow shows in the master's conntrack table with its IPv6 addresses, and in the
    // trace: the router forwards it, the node masquerades it to its IPv6 address.
    let ct = w.conntrack("master").join("\n");
    assert!(
        ct.contains("src=2001:db8::11 dst=fd00:10:151:30::11"),
        "{ct}"
    );
    let lines: Vec<String> = w.trace().iter().map(|e| e.to_string()).collect();
    let text = lines.join("\n");
    assert!(
        text.contains("[2001:db8::11]:") && text.contains("MASQUERADE"),
        "{text}"
    );
}

#[test]
fn local_policy_keeps_the_client_address_of_each_family() {
    let mut w = world(TrafficPolicy::Local, false);
    let (kind, logged) = get(&mut w, v4("10.151.30.12").into());
    assert_eq!((kind, logged), (OutcomeKind::Ok, v4("203.0.113.11").into()));
    let (kind, logged) = get(&mut w, v6("fd00:10:151:30::12").into());
    assert_eq!((kind, logged), (OutcomeKind::Ok, v6("2001:db8::11").into()));
    // The pod-less master drops Local traffic in both families: curl times out.
    for dst in [
        IpAddr::from(v4("10.151.30.11")),
        v6("fd00:10:151:30::11").into(),
    ] {
        let opts = RequestOpts {
            connect_timeout: Some(std::time::Duration::from_secs(2)),
            ..RequestOpts::default()
        };
        let out = w
            .request("browser", SocketAddr::new(dst, NODEPORT), opts)
            .unwrap();
        assert_eq!(out.kind, OutcomeKind::Timeout, "{dst}");
    }
}

/// Pod to pod across nodes over IPv6: cni0's IPv6 address as the pods' gateway, the route to
/// the other node's pod /64 via its IPv6 address, no NAT; the router only reaches allowed
/// nodes (node2 is not in the browser's list, in either family).
#[test]
fn routes_pod_to_pod_and_filters_unreachable_nodes_over_ipv6() {
    let mut spec = spec(true);
    spec.clients.push(tester());
    let mut w = World::new(spec).unwrap();
    let mark = w.access_mark();
    let dst = SocketAddr::new(v6("fd00:10:244:1::16").into(), 80);
    let out = w.request("tester", dst, RequestOpts::default()).unwrap();
    assert_eq!(out.kind, OutcomeKind::Ok);
    w.poll(w.now());
    assert_eq!(
        w.access_peers_since(mark),
        [("nginx-1", IpAddr::from(v6("fd00:10:244:2::50")))]
    );
    let routes: Vec<String> = w
        .node("node2")
        .unwrap()
        .routes()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(
        routes.contains(&"fd00:10:244:1::/64 via fd00:10:151:30::12 dev eth0".to_string()),
        "{routes:?}"
    );
    let opts = RequestOpts {
        connect_timeout: Some(std::time::Duration::from_secs(1)),
        ..RequestOpts::default()
    };
    let node2 = SocketAddr::new(v6("fd00:10:151:30::13").into(), NODEPORT);
    let out = w.request("browser", node2, opts).unwrap();
    assert_eq!(out.kind, OutcomeKind::Timeout);
    assert!(w.router().counters.filtered > 0);
}

/// Node-local answers over IPv6: kube-proxy's `/healthz` on :10256 of node1's IPv6 address
/// (the node's own smoltcp stack, INPUT then its reply routed back via the router).
#[test]
fn node_answers_health_checks_over_ipv6() {
    let mut w = world(TrafficPolicy::Cluster, true);
    let opts = RequestOpts {
        path: "/healthz".into(),
        ..RequestOpts::default()
    };
    let dst = SocketAddr::new(v6("fd00:10:151:30::12").into(), 10256);
    let out = w.request("browser", dst, opts).unwrap();
    let t: Vec<String> = w.trace().iter().take(30).map(|e| e.to_string()).collect();
    assert_eq!(
        (out.kind, out.status),
        (OutcomeKind::Ok, Some(200)),
        "{out}\n{}",
        t.join("\n")
    );
}

/// UDP over IPv6 to agnhost netexec: `clientip` answers the peer as Go prints it
/// (`[addr]:port`), and a closed port draws ICMPv6 port unreachable (curl-like "Connection
/// refused").
#[test]
fn udp_over_ipv6() {
    let mut spec = spec(false);
    spec.pods[0].apps = vec![sim::AppDesc {
        kind: sim::AppKind::Netexec,
        http_ports: vec![8080],
        raw_tcp_ports: Vec::new(),
        udp_ports: vec![8081],
    }];
    spec.clients.push(tester());
    let mut w = World::new(spec).unwrap();
    let udp = |w: &mut World, port: u16| {
        let opts = sim::UdpOpts {
            payload: "clientip".into(),
            timeout: std::time::Duration::from_secs(2),
            source_port: Some(40000),
        };
        let dst = SocketAddr::new(v6("fd00:10:244:1::16").into(), port);
        let id = w.start_udp("tester", dst, opts).unwrap();
        w.run_until_complete(id).unwrap()
    };
    let out = udp(&mut w, 8081);
    assert_eq!(
        (out.kind, out.body.as_str()),
        (OutcomeKind::Ok, "[fd00:10:244:2::50]:40000")
    );
    let out = udp(&mut w, 9999);
    assert_eq!(out.kind, OutcomeKind::Refused, "{out}");
    assert!(
        out.message.contains("Connection refused"),
        "{}",
        out.message
    );
}

/// A Service without endpoints REJECTs over IPv6 too: kube-proxy's ip6tables
/// `--reject-with icmp6-port-unreachable`, sent from the node's IPv6 address; curl says
/// "Connection refused".
#[test]
fn reject_over_ipv6_is_connection_refused() {
    let mut w = World::new(spec(true)).unwrap();
    let svc = Service {
        cluster_ips: vec![v6("fd00:10:96::f060").into()],
        ip_families: vec![IpFamily::V6],
        ports: vec![ServicePort::tcp(80, 80, Some(NODEPORT))],
        ..Service::new("default", "nginx", ServiceType::NodePort)
    };
    w.set_services(&[svc], &[nginx_slice(IpFamily::V6, &[])]);
    let dst = SocketAddr::new(v6("fd00:10:151:30::11").into(), NODEPORT);
    let out = w.request("browser", dst, RequestOpts::default()).unwrap();
    assert_eq!(out.kind, OutcomeKind::Refused, "{out}");
    let text: Vec<String> = w.trace().iter().map(|e| e.to_string()).collect();
    let text = text.join("\n");
    assert!(
        text.contains("fd00:10:151:30::11 → 2001:db8::11 ICMP6 port unreachable"),
        "{text}"
    );
}

/// A dual-stack load balancer: the browser reaches the IPv6 frontend, the router DNATs to a
/// node's IPv6 address (Cluster: masqueraded by that node), and the reply is un-DNATed.
#[test]
fn load_balancer_ipv6_frontend() {
    let mut spec = spec(false);
    spec.load_balancer = Some(sim::LbDesc {
        name: "lb".into(),
        ip: v4("198.51.100.100"),
        ipv6: Some(v6("2001:db8:100::10")),
        nodes: vec!["master".into()],
        ports: vec![(80, NODEPORT)],
    });
    let pods = spec.pods.clone();
    let mut w = World::new(spec).unwrap();
    let svc = Service {
        cluster_ips: vec![v6("fd00:10:96::f060").into()],
        ip_families: vec![IpFamily::V6],
        ports: vec![ServicePort::tcp(80, 80, Some(NODEPORT))],
        ..Service::new("default", "nginx", ServiceType::NodePort)
    };
    w.set_services(&[svc], &[nginx_slice(IpFamily::V6, &pods)]);
    let mark = w.access_mark();
    let dst = SocketAddr::new(v6("2001:db8:100::10").into(), 80);
    let out = w.request("browser", dst, RequestOpts::default()).unwrap();
    assert_eq!(out.kind, OutcomeKind::Ok, "{out}");
    w.poll(w.now());
    let logged = w.access_peers_since(mark);
    assert_eq!(logged[0].1, IpAddr::from(v6("fd00:10:151:30::11")));
}

/// A world whose node has an IPv6 address but no IPv6 node network is refused; a pod's IPv6
/// address must be inside its node's IPv6 pod CIDR.
#[test]
fn ipv6_addresses_outside_their_networks_are_errors() {
    let mut bad = spec(false);
    bad.node_network_v6 = None;
    assert!(matches!(World::new(bad), Err(sim::SimError::NoIpv6 { .. })));
    let mut bad = spec(false);
    bad.pods[0].ipv6 = Some(v6("fd00:10:244:9::16"));
    assert!(matches!(
        World::new(bad),
        Err(sim::SimError::OutsideNetwork { .. })
    ));
}
