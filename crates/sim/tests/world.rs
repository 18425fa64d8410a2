//! World mechanics: refusals, node health servers, external ports, wall-clock driving.

mod common;

use std::time::Duration;

use common::ip;
use nodeport::{Service, ServiceType, TrafficPolicy};
use sim::{
    Attachment, ClientDesc, OutcomeKind, PodDesc, RequestId, RequestOpts, RequestOutcome, World,
    WorldSpec,
};
use vswitch::packet::summarize;
use vswitch::MemPort;

fn spec() -> WorldSpec {
    WorldSpec {
        nodes: common::master_and_node1(),
        clients: vec![
            ClientDesc {
                name: "browser".into(),
                ip: ip("203.0.113.11"),
                ipv6: None,
                attach: Attachment::External {
                    can_reach: vec!["master".into(), "node1".into()],
                },
            },
            ClientDesc {
                name: "tester".into(),
                ip: ip("10.244.1.50"),
                ipv6: None,
                attach: Attachment::Pod {
                    node: "node1".into(),
                },
            },
        ],
        pods: vec![PodDesc {
            name: "web".into(),
            ip: ip("10.244.1.16"),
            ipv6: None,
            node: "node1".into(),
            apps: Vec::new(),
        }],
        seed: 5,
        ..WorldSpec::default()
    }
}

use common::{web_service as service, web_slice as slice};

/// A world from `s` with the `web` Service `svc` and its endpoints `eps` (pod IP, node).
fn world(s: WorldSpec, svc: Service, eps: &[(&str, &str)]) -> World {
    let mut w = World::new(s).unwrap();
    w.set_services(&[svc], &[slice(eps)]);
    w
}

/// A plain GET of `/` from `client` to `dst`, run to completion.
fn request(w: &mut World, client: &str, dst: &str) -> RequestOutcome {
    w.request(
        client,
        dst.parse::<std::net::SocketAddrV4>().unwrap(),
        RequestOpts::default(),
    )
    .unwrap()
}

/// A plain GET of `/` from `client` to `dst`, started only.
fn start(w: &mut World, client: &str, dst: &str) -> RequestId {
    w.start_request(
        client,
        dst.parse::<std::net::SocketAddrV4>().unwrap(),
        RequestOpts::default(),
    )
    .unwrap()
}

/// A load balancer `name` at `addr` in front of `nodes`, no extra ports.
fn lb(name: &str, addr: &str, nodes: &[&str]) -> sim::LbDesc {
    sim::LbDesc {
        name: name.into(),
        ip: ip(addr),
        ipv6: None,
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        ports: vec![],
    }
}

#[test]
fn service_without_endpoints_is_refused() {
    let mut w = world(
        spec(),
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[],
    );
    let out = request(&mut w, "browser", "10.151.30.11:30080");
    assert_eq!(out.kind, OutcomeKind::Refused, "{out:?}");
    assert!(
        out.message
            .starts_with("curl: (7) Failed to connect to 10.151.30.11 port 30080 after "),
        "{}",
        out.message
    );
    assert!(out.message.ends_with(" ms: Connection refused"));
    assert_eq!(out.kind.exit_code(), 7);
}

#[test]
fn closed_port_on_a_pod_is_refused_by_rst() {
    let mut w = World::new(spec()).unwrap();
    w.set_services(&[], &[]);
    let out = request(&mut w, "tester", "10.244.1.16:81");
    assert_eq!(out.kind, OutcomeKind::Refused, "{out:?}");
    // and port 80 works pod to pod (bridged on cni0, through the node's hooks)
    let out = w
        .request(
            "tester",
            "10.244.1.16:80".parse::<std::net::SocketAddrV4>().unwrap(),
            RequestOpts {
                path: "/nope".into(),
                ..RequestOpts::default()
            },
        )
        .unwrap();
    assert_eq!(out.status, Some(404));
    let log = w.access_log("web");
    assert_eq!(log.len(), 1);
    assert!(log[0].starts_with("10.244.1.50 - - ["), "{}", log[0]);
    assert!(log[0].contains("\"GET /nope HTTP/1.1\" 404 "), "{}", log[0]);
}

#[test]
fn node_health_servers_answer() {
    let mut w = world(
        spec(),
        service(ServiceType::LoadBalancer, TrafficPolicy::Local, Some(31000)),
        &[("10.244.1.16", "node1")],
    );
    let get = |w: &mut World, dst: &str, path: &str| {
        w.request(
            "browser",
            dst.parse::<std::net::SocketAddrV4>().unwrap(),
            RequestOpts {
                path: path.into(),
                ..RequestOpts::default()
            },
        )
        .unwrap()
    };
    let out = get(&mut w, "10.151.30.12:10256", "/healthz");
    assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
    assert_eq!(out.status, Some(200), "{out:?}");
    let out = get(&mut w, "10.151.30.12:31000", "/");
    assert_eq!(out.status, Some(200), "node1 has a local endpoint: {out:?}");
    assert!(out.body.contains("localEndpoints"), "{}", out.body);
    let out = get(&mut w, "10.151.30.11:31000", "/");
    assert_eq!(out.status, Some(503), "master has none: {out:?}");
    // many probes in a row: TIME-WAIT never blocks the listener
    for _ in 0..20 {
        assert_eq!(
            get(&mut w, "10.151.30.11:10256", "/livez").kind,
            OutcomeKind::Ok
        );
    }
}

#[test]
fn max_time_and_connect_timeout() {
    let mut w = World::new(spec()).unwrap();
    w.set_services(&[], &[]);
    // 10.244.1.99 is on-link but nobody owns it: SYNs are lost.
    let out = w
        .request(
            "tester",
            "10.244.1.99:80".parse::<std::net::SocketAddrV4>().unwrap(),
            RequestOpts {
                max_time: Some(Duration::from_secs(3)),
                ..RequestOpts::default()
            },
        )
        .unwrap();
    assert_eq!(out.kind, OutcomeKind::Timeout);
    assert_eq!(out.elapsed, Duration::from_secs(3));
    assert_eq!(
        out.message,
        "curl: (28) Failed to connect to 10.244.1.99 port 80 after 3000 ms: Timeout was reached"
    );
}

#[test]
fn external_port_stands_in_for_a_pod() {
    let mut w = world(
        spec(),
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[("10.244.0.9", "master")],
    );
    let (port, handle) = MemPort::new("master/cni0/tun-pod");
    w.add_pod_port("tun-pod", ip("10.244.0.9"), "master", Box::new(port))
        .unwrap();
    let id = w
        .start_request(
            "browser",
            "10.151.30.12:30080"
                .parse::<std::net::SocketAddrV4>()
                .unwrap(),
            RequestOpts {
                connect_timeout: Some(Duration::from_secs(2)),
                ..RequestOpts::default()
            },
        )
        .unwrap();
    w.run_until(Duration::from_millis(10));
    let got = handle.take_delivered();
    assert!(!got.is_empty());
    let syn = summarize(&got[0]).unwrap();
    assert_eq!(syn.tuple.dst_addr(), "10.244.0.9:80".parse().unwrap());
    assert_eq!(syn.tuple.src, ip("10.151.30.12"), "masqueraded by node1");
    assert_eq!(syn.flags, "S");
    // The device answers with a RST: the client sees a refusal.
    let ip_slice = etherparse::Ipv4Slice::from_slice(&got[0]).unwrap();
    let seq = etherparse::TcpSlice::from_slice(ip_slice.payload().payload)
        .unwrap()
        .sequence_number();
    let b = etherparse::PacketBuilder::ipv4(
        wire::v4(syn.tuple.dst).octets(),
        wire::v4(syn.tuple.src).octets(),
        64,
    )
    .tcp(syn.tuple.dport, syn.tuple.sport, 0, 0)
    .rst()
    .ack(seq.wrapping_add(1));
    let mut rst = Vec::new();
    b.write(&mut rst, &[]).unwrap();
    handle.inject(rst);
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Refused, "{out:?}");
    assert!(w.trace_for(id).len() > 5);
}

#[test]
fn wall_clock_driving_with_poll() {
    let mut w = world(
        spec(),
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[("10.244.1.16", "node1")],
    );
    let id = start(&mut w, "browser", "10.151.30.11:30080");
    // A caller with a real clock: poll at "wall" instants 1 ms apart.
    let mut now = Duration::ZERO;
    for _ in 0..100 {
        let _next = w.poll(now);
        if w.outcome(id).is_some() {
            break;
        }
        now += Duration::from_millis(1);
    }
    let out = w.outcome(id).expect("finished");
    assert_eq!(out.kind, OutcomeKind::Ok);
    assert_eq!(w.access_entries("web")[0].remote_addr, ip("10.151.30.11"));
}

#[test]
fn same_seed_same_world() {
    let run = || {
        let mut w = world(
            spec(),
            service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
            &[("10.244.1.16", "node1")],
        );
        (0..5)
            .map(|_| request(&mut w, "browser", "10.151.30.11:30080").client_port)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn impaired_links_slow_down_but_complete() {
    let mut w = world(
        spec(),
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[("10.244.1.16", "node1")],
    );
    w.impair(
        "browser",
        vswitch::ImpairConfig {
            delay: Duration::from_millis(25),
            ..Default::default()
        },
    )
    .unwrap();
    let out = request(&mut w, "browser", "10.151.30.11:30080");
    assert_eq!(out.kind, OutcomeKind::Ok);
    // SYN/SYN-ACK, then request/response: two round trips of 50 ms each.
    assert_eq!(out.elapsed, Duration::from_millis(100), "{out:?}");
    w.impair(
        "web",
        vswitch::ImpairConfig {
            loss: 0.3,
            ..Default::default()
        },
    )
    .unwrap();
    let mut ok = 0;
    for _ in 0..20 {
        let out = request(&mut w, "browser", "10.151.30.11:30080");
        if out.kind == OutcomeKind::Ok {
            ok += 1;
        }
    }
    assert!(ok >= 15, "retransmissions recover most requests: {ok}/20");
}

#[test]
fn pod_to_cluster_ip_keeps_the_pod_ip_on_remote_and_local_endpoints() {
    let mut s = spec();
    s.clients.push(ClientDesc {
        name: "remote-tester".into(),
        ip: ip("10.244.0.50"),
        ipv6: None,
        attach: Attachment::Pod {
            node: "master".into(),
        },
    });
    let mut w = world(
        s,
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[("10.244.1.16", "node1")],
    );
    // From a pod on another node: DNAT only, the pod IP survives (routed via host-gw).
    let id = start(&mut w, "remote-tester", "10.96.0.20:80");
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(
        out.kind,
        OutcomeKind::Ok,
        "{out:?}\n{}",
        w.trace()
            .iter()
            .take(14)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(w.access_entries("web")[0].remote_addr, ip("10.244.0.50"));
    // The same from a pod on the endpoint's node: the reply is bridged back through the
    // node's conntrack (br_netfilter), which un-DNATs it.
    let out = request(&mut w, "tester", "10.96.0.20:80");
    assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
    assert_eq!(w.access_entries("web")[1].remote_addr, ip("10.244.1.50"));
}

#[test]
fn lb_trace_shows_the_lb_translation() {
    let mut s = spec();
    s.load_balancer = Some(lb("lb", "198.51.100.100", &["master", "node1"]));
    let mut w = world(
        s,
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[("10.244.1.16", "node1")],
    );
    let id = start(&mut w, "browser", "198.51.100.100:80");
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
    let text = w.trace_lines_for(id).join("\n");
    assert!(
        text.contains("LB lb DNAT 198.51.100.100:80 → 10.151.30."),
        "{text}"
    );
    assert!(text.contains("LB lb un-DNAT"), "{text}");
    assert!(text.contains("web in"), "{text}");
}

#[test]
fn lb_frontend_inside_a_client_network_is_reachable() {
    let mut s = spec();
    s.clients.push(ClientDesc {
        name: "neighbour".into(),
        ip: ip("198.51.100.7"),
        ipv6: None,
        attach: Attachment::External { can_reach: vec![] },
    });
    s.load_balancer = Some(lb("nlb", "198.51.100.10", &["node1"]));
    let mut w = world(
        s,
        service(ServiceType::LoadBalancer, TrafficPolicy::Local, Some(31000)),
        &[("10.244.1.16", "node1")],
    );
    for client in ["neighbour", "browser"] {
        let out = request(&mut w, client, "198.51.100.10:80");
        assert_eq!(out.kind, OutcomeKind::Ok, "{client}: {out:?}");
    }
    let e = w.access_entries("web");
    assert_eq!(e[0].remote_addr, ip("198.51.100.7"));
    assert_eq!(e[1].remote_addr, ip("203.0.113.11"));
}

#[test]
fn reject_behind_the_lb_reaches_the_client_as_refused() {
    let mut s = spec();
    s.load_balancer = Some(lb("nlb", "198.51.100.10", &["master", "node1"]));
    let mut w = world(
        s,
        service(ServiceType::LoadBalancer, TrafficPolicy::Cluster, None),
        &[],
    );
    let id = start(&mut w, "browser", "198.51.100.10:80");
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Refused, "{out:?}");
    assert!(
        out.message.contains("198.51.100.10 port 80"),
        "{}",
        out.message
    );
    let text = w.trace_lines_for(id).join("\n");
    assert!(text.contains("un-DNAT ICMP error"), "{text}");
}

#[test]
fn health_check_node_port_answer_is_exactly_kube_proxys() {
    // Spec §4.2, fetched through the fabric by the embedded curl from a client that can
    // reach both nodes: status, the three headers in order, Content-Length, the tab-indented
    // JSON body; any path answers the same.
    let mut w = world(
        spec(),
        service(ServiceType::LoadBalancer, TrafficPolicy::Local, Some(31000)),
        &[("10.244.1.16", "node1")],
    );
    let body = |n: usize| {
        format!(
            "{{\n\t\"service\": {{\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t}},\n\t\"localEndpoints\": {n},\n\t\"serviceProxyHealthy\": true\n}}"
        )
    };
    for (dst, status, weight, path) in [
        ("10.151.30.12:31000", 200, "1", "/healthz"),
        ("10.151.30.12:31000", 200, "1", "/any/path"),
        ("10.151.30.11:31000", 503, "0", "/healthz"),
    ] {
        let out = w
            .request(
                "browser",
                dst.parse::<std::net::SocketAddrV4>().unwrap(),
                RequestOpts {
                    path: path.into(),
                    ..RequestOpts::default()
                },
            )
            .unwrap();
        assert_eq!(out.kind, OutcomeKind::Ok, "{dst}: {out:?}");
        assert_eq!(out.status, Some(status), "{dst}");
        let names: Vec<&str> = out.headers.iter().map(|(k, _)| k.as_str()).collect();
        // kube-proxy's own headers first, in its order (the node's server then adds
        // Content-Length and Connection: close).
        assert_eq!(
            names[..4],
            [
                "Content-Type",
                "X-Content-Type-Options",
                "X-Load-Balancing-Endpoint-Weight",
                "Content-Length"
            ],
            "{dst}"
        );
        assert_eq!(out.header("content-type"), Some("application/json"));
        assert_eq!(out.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(
            out.header("X-Load-Balancing-Endpoint-Weight"),
            Some(weight),
            "{dst}"
        );
        let n = weight.parse().unwrap();
        assert_eq!(out.body, body(n), "{dst}");
        assert_eq!(
            out.header("Content-Length"),
            Some(body(n).len().to_string().as_str())
        );
    }
}

fn lb_world(initially_healthy: bool, weighted: bool) -> World {
    let mut s = spec();
    s.pods.push(PodDesc {
        name: "web2".into(),
        ip: ip("10.244.1.17"),
        ipv6: None,
        node: "node1".into(),
        apps: Vec::new(),
    });
    s.load_balancer = Some(lb("nlb", "198.51.100.10", &["master", "node1"]));
    let mut w = world(
        s,
        service(ServiceType::LoadBalancer, TrafficPolicy::Local, Some(31000)),
        &[("10.244.1.16", "node1"), ("10.244.1.17", "node1")],
    );
    w.enable_health_checks(sim::HealthCheckSpec {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        weighted,
        source: ip("198.51.100.2"),
        initially_healthy,
    })
    .unwrap();
    w
}

#[test]
fn lb_health_checks_probe_over_the_fabric_and_flip_targets() {
    let mut w = lb_world(false, true);
    assert!(w.lb_targets().iter().all(|(_, h, _)| !h));
    // Rounds at 0 s and 5 s: node1 healthy after the second 200; master never (503).
    w.run_until(Duration::from_secs(6));
    let t = w.lb_targets();
    assert_eq!(
        t,
        vec![
            ("master".to_string(), false, 1),
            ("node1".to_string(), true, 2)
        ],
        "{:?}",
        w.health_events()
    );
    let ev: Vec<String> = w.health_events().iter().map(|e| e.to_string()).collect();
    assert!(
        ev.iter()
            .any(|e| e.contains("node1 probe 200 weight 2 → now healthy")),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| e.contains("master probe 503 weight 0 (unhealthy)")),
        "{ev:?}"
    );
    // Probes really crossed the fabric: node1's health server saw them as new connections
    // from the prober's address.
    for _ in 0..20 {
        let out = w
            .request(
                "browser",
                "198.51.100.10:80"
                    .parse::<std::net::SocketAddrV4>()
                    .unwrap(),
                RequestOpts {
                    connect_timeout: Some(Duration::from_secs(1)),
                    ..RequestOpts::default()
                },
            )
            .unwrap();
        assert_eq!(out.kind, OutcomeKind::Ok, "only node1 gets flows: {out:?}");
    }
    // node1 loses its endpoints: after two failed rounds the LB stops sending there.
    w.set_services(
        &[service(
            ServiceType::LoadBalancer,
            TrafficPolicy::Local,
            Some(31000),
        )],
        &[slice(&[])],
    );
    let now = w.now();
    w.run_until(now + Duration::from_secs(11));
    assert!(
        w.lb_targets().iter().all(|(_, h, _)| !h),
        "{:?}",
        w.lb_targets()
    );
    let ev = w.health_events().last().unwrap().clone();
    assert_eq!(ev.status, Some(503));
    // run_until_idle ignores the probe schedule (it would never be idle otherwise).
    w.run_until_idle();
}

#[test]
fn pcap_capture_of_every_link() {
    let dir = std::env::temp_dir().join(format!("sim-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = world(
        spec(),
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[("10.244.1.16", "node1")],
    );
    let files = w.capture_all(&dir).unwrap();
    let names: Vec<&str> = files.iter().map(|(l, _)| l.as_str()).collect();
    for want in [
        "master-eth0",
        "master-cni0",
        "node1-eth0",
        "node1-cni0",
        "router-node-network",
        "browser",
        "tester",
        "pod-web",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let out = request(&mut w, "browser", "10.151.30.11:30080");
    assert_eq!(out.kind, OutcomeKind::Ok);
    w.finish_captures().unwrap();
    let read = |f: &str| {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().datalink, pcap_file::DataLink::RAW);
        let mut v = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            v.push((p.timestamp, summarize(&p.data).unwrap().to_string()));
        }
        v
    };
    let b = read("browser.pcap");
    assert!(b[0].1.starts_with("203.0.113.11:"), "{b:?}");
    assert!(b[0].1.ends_with("→ 10.151.30.11:30080 S"), "{b:?}");
    assert!(b[0].0 >= Duration::from_secs(sim::clock::DEFAULT_BASE_UNIX));
    // master's eth0 carries the SYN in (to the nodePort) and out after DNAT+SNAT.
    let m = read("master-eth0.pcap");
    assert!(
        m.iter()
            .any(|(_, s)| s.starts_with("10.151.30.11:") && s.ends_with("→ 10.244.1.16:80 S")),
        "{m:?}"
    );
    let p = read("pod-web.pcap");
    assert!(
        p[0].1.starts_with("10.151.30.11:") && p[0].1.ends_with("→ 10.244.1.16:80 S"),
        "{p:?}"
    );
    let n1 = read("node1-cni0.pcap");
    assert!(!n1.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run_until_complete` takes the outcome from the client: the world remembers only the
/// last finished request's (for `outcome` and `trace_for`), so a long plan keeps nothing
/// per request; an outcome nobody took stays readable.
#[test]
fn finished_outcomes_are_handed_over() {
    let mut w = world(
        spec(),
        service(ServiceType::NodePort, TrafficPolicy::Cluster, None),
        &[("10.244.1.16", "node1")],
    );
    let first = start(&mut w, "browser", "10.151.30.11:30080");
    let out = w.run_until_complete(first).unwrap();
    assert_eq!(out.kind, OutcomeKind::Ok);
    assert_eq!(w.outcome(first), Some(out.clone()));
    let second = start(&mut w, "browser", "10.151.30.11:30080");
    let out2 = w.run_until_complete(second).unwrap();
    assert_eq!(w.outcome(second), Some(out2.clone()));
    assert_eq!(w.outcome(first), None, "the first outcome was handed over");
    assert_ne!(out.client_port, out2.client_port);
    // Polled by hand (not taken): still there after it finished.
    let third = start(&mut w, "browser", "10.151.30.11:30080");
    w.run_until_idle();
    assert_eq!(w.outcome(third).map(|o| o.kind), Some(OutcomeKind::Ok));
}
