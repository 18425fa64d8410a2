//! NodePort allocation (§5.5, §4.1) and the health answers (§4.2, §4.4).

mod common;

use common::*;
use nodeport::*;

fn lb_local() -> Service {
    let mut s = nginx(TrafficPolicy::Local);
    s.type_ = ServiceType::LoadBalancer;
    s.ports[0].node_port = None;
    s
}

#[test]
fn dynamic_node_ports_come_from_the_upper_band() {
    let mut a = NodePortAllocator::new(PortRange::DEFAULT);
    assert_eq!(PortRange::DEFAULT.static_band_size(), 86);
    let mut r = rng(1);
    for i in 0..200 {
        let mut s = nginx(TrafficPolicy::Cluster);
        s.name = format!("svc{i}");
        s.ports[0].node_port = None;
        a.allocate(&mut s, &mut r).unwrap();
        let np = s.ports[0].node_port.unwrap();
        assert!((30086..=32767).contains(&np), "{np}");
        assert_eq!(s.health_check_node_port, None);
    }
    assert_eq!(a.used(), 200);
}

#[test]
fn allocation_is_deterministic_for_a_seed() {
    let run = || {
        let mut a = NodePortAllocator::new(PortRange::DEFAULT);
        let mut s = nginx(TrafficPolicy::Cluster);
        s.ports[0].node_port = None;
        a.allocate(&mut s, &mut rng(42)).unwrap();
        s.ports[0].node_port
    };
    assert_eq!(run(), run());
}

#[test]
fn explicit_node_port_is_honoured_and_checked() {
    let mut a = NodePortAllocator::new(PortRange::DEFAULT);
    let mut s = nginx(TrafficPolicy::Cluster);
    a.allocate(&mut s, &mut rng(1)).unwrap();
    assert_eq!(s.ports[0].node_port, Some(NODE_PORT));
    assert_eq!(a.owner(NODE_PORT), Some("default/nginx"));

    let mut other = nginx(TrafficPolicy::Cluster);
    other.name = "web".into();
    let err = a.allocate(&mut other, &mut rng(1)).unwrap_err();
    assert!(matches!(err, AllocError::Collision { port: 32761, .. }));
    assert!(err.to_string().contains("default/web"));
    assert!(err.to_string().contains("32761"));

    other.ports[0].node_port = Some(29999);
    let err = a.allocate(&mut other, &mut rng(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "service default/web: nodePort 29999 is not in the valid range 30000-32767"
    );
    // Re-allocating the owner is fine (idempotent update).
    a.allocate(&mut s, &mut rng(1)).unwrap();
}

#[test]
fn health_check_node_port_only_for_load_balancer_local() {
    let mut a = NodePortAllocator::new(PortRange::DEFAULT);
    let mut s = lb_local();
    a.allocate(&mut s, &mut rng(2)).unwrap();
    let hc = s
        .health_check_node_port
        .expect("LB + Local gets a healthCheckNodePort");
    assert!(PortRange::DEFAULT.contains(hc));
    assert_ne!(Some(hc), s.ports[0].node_port);

    let mut np = nginx(TrafficPolicy::Local);
    np.name = "np".into();
    np.ports[0].node_port = None;
    np.health_check_node_port = Some(31000);
    let err = a.allocate(&mut np, &mut rng(2)).unwrap_err();
    assert!(matches!(
        err,
        AllocError::HealthCheckNotAllowed { port: 31000, .. }
    ));
    assert_eq!(np.ports[0].node_port, None, "nothing allocated on error");

    let mut explicit = lb_local();
    explicit.name = "explicit".into();
    explicit.health_check_node_port = Some(31001);
    a.allocate(&mut explicit, &mut rng(2)).unwrap();
    assert_eq!(explicit.health_check_node_port, Some(31001));
}

#[test]
fn cluster_ip_services_get_no_node_port() {
    let mut a = NodePortAllocator::new(PortRange::DEFAULT);
    let mut s = nginx(TrafficPolicy::Cluster);
    s.type_ = ServiceType::ClusterIp;
    s.ports[0].node_port = None;
    a.allocate(&mut s, &mut rng(3)).unwrap();
    assert_eq!(s.ports[0].node_port, None);
    s.ports[0].node_port = Some(30500);
    assert!(matches!(
        a.allocate(&mut s, &mut rng(3)),
        Err(AllocError::NodePortNotAllowed { .. })
    ));
}

#[test]
fn small_range_fills_static_band_last_then_exhausts() {
    let range = PortRange {
        first: 30000,
        last: 30019,
    };
    let mut a = NodePortAllocator::new(range);
    let mut got = Vec::new();
    for i in 0..20 {
        let mut s = nginx(TrafficPolicy::Cluster);
        s.name = format!("s{i}");
        s.ports[0].node_port = None;
        a.allocate(&mut s, &mut rng(i)).unwrap();
        got.push(s.ports[0].node_port.unwrap());
    }
    // 16-port static band (min size): the first 4 dynamic picks come from 30016..30019.
    assert!(got[..4].iter().all(|p| *p >= 30016));
    let mut s = nginx(TrafficPolicy::Cluster);
    s.name = "late".into();
    s.ports[0].node_port = None;
    assert!(matches!(
        a.allocate(&mut s, &mut rng(99)),
        Err(AllocError::Exhausted { .. })
    ));
}

#[test]
fn service_health_counts_distinct_local_ready_ips_across_ports() {
    let mut svc = lb_local();
    svc.ports[0].node_port = Some(NODE_PORT);
    svc.health_check_node_port = Some(30200);
    svc.ports.push(ServicePort {
        name: "metrics".into(),
        protocol: Protocol::Tcp,
        port: 9100,
        target_port: 9100,
        node_port: Some(32000),
    });
    svc.ports[0].name = "http".into();
    let eps = vec![
        ep(pod(0, 20), "master"),
        ep(pod(0, 21), "master"),
        terminating(ep(pod(0, 22), "master")),
        ep(pod(1, 16), "node1"),
    ];
    let mut p = Proxier::new(master_config());
    let before = p.service_health(&svc.service_ref());
    assert_eq!(before.status, 503);
    assert!(before.body.contains("\"serviceProxyHealthy\": false"));
    p.update(std::slice::from_ref(&svc), &[slice(&svc, eps)]);
    assert_eq!(p.health_check_service(30200), Some(svc.service_ref()));
    assert_eq!(p.health_check_service(NODE_PORT), None);
    let h = p.service_health(&svc.service_ref());
    assert_eq!(h.status, 200);
    assert_eq!(h.header("Content-Type"), Some("application/json"));
    assert_eq!(h.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(h.header("X-Load-Balancing-Endpoint-Weight"), Some("2"));
    assert_eq!(
        h.body,
        "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"nginx\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
    );
    let http = String::from_utf8(h.to_http_bytes()).unwrap();
    assert!(http.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"));
    assert!(http.ends_with("\"serviceProxyHealthy\": true\n}"));

    // A node without local endpoints answers 503 with weight 0.
    let mut cfg = master_config();
    cfg.node_name = "node2".into();
    let mut p2 = Proxier::new(cfg);
    p2.update(
        std::slice::from_ref(&svc),
        &[slice(&svc, vec![ep(pod(1, 16), "node1")])],
    );
    let h = p2.service_health(&svc.service_ref());
    assert_eq!(h.status, 503);
    assert_eq!(h.header("X-Load-Balancing-Endpoint-Weight"), Some("0"));
    assert!(String::from_utf8(h.to_http_bytes())
        .unwrap()
        .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
}

#[test]
fn proxy_healthz_and_livez() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = Proxier::new(master_config());
    assert_eq!(p.proxy_health(secs(5), "/healthz").status, 503);
    assert_eq!(p.proxy_health(secs(5), "/livez").status, 503);
    p.update_at(
        secs(10),
        std::slice::from_ref(&svc),
        &[slice(&svc, worker_pods())],
    );
    let h = p.proxy_health(secs(20), "/healthz");
    assert_eq!(h.status, 200);
    let v: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["nodeEligible"], true);
    assert_eq!(v["currentTime"], "1970-01-01T00:00:20Z");
    assert_eq!(v["lastUpdated"], "1970-01-01T00:00:20Z", "200 reports now");
    assert_eq!(v["status"]["IPv4"]["healthy"], true);
    let l = p.proxy_health(secs(20), "/livez?verbose");
    assert_eq!(l.status, 200);
    let v: serde_json::Value = serde_json::from_str(&l.body).unwrap();
    assert!(v.get("nodeEligible").is_none());
    let nf = p.proxy_health(secs(20), "/metrics");
    assert_eq!(nf.status, 404);
    assert_eq!(nf.body, "404 page not found\n");
}
