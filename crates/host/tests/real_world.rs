//! Real mode end to end through the simulated cluster: real curl in a client namespace and
//! real nginx in a pod namespace, both attached to the sim `World` as TUN ports, the World
//! driven by the real-mode poll(2) loop on the wall clock. Reproduces the lesson's
//! observations 1–3 with real programs:
//!
//! 1. ETP Cluster, pod on node1, browser → master:32761: nginx logs the master's IP.
//! 2. ETP Local, same request: no local endpoint on master → curl times out.
//! 3. ETP Local, browser → node1:32761: nginx logs the browser's real IP.
//!
//! Needs root, nginx and curl; skips (or fails with CI=true) like `real_mode.rs`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use host::cleanup::{down, StateDir};
use host::curl::{CurlOutcome, CurlRequest, CurlRun};
use host::driver::Driver;
use host::netns::Netns;
use host::nginx::{Nginx, NginxSpec};
use host::preflight::{preflight, Needs};
use nodeport::{
    Endpoint, EndpointPort, EndpointSlice, Protocol, Service, ServicePort, ServiceRef, ServiceType,
    TrafficPolicy,
};
use sim::{Attachment, NodeDesc, World, WorldSpec};
use vswitch::tun::{TunConfig, TunPort};

mod common;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

const NODEPORT: u16 = 32761;
const POD: &str = "nginx-54f57cf6bf-xhs8g";

fn service(etp: TrafficPolicy) -> Service {
    Service {
        cluster_ips: vec![ip("10.96.61.10").into()],
        ports: vec![ServicePort::tcp(80, 80, Some(NODEPORT))],
        external_traffic_policy: etp,
        ..Service::new("default", "nginx", ServiceType::NodePort)
    }
}

fn slice() -> EndpointSlice {
    EndpointSlice {
        address_type: Default::default(),
        service: ServiceRef::new("default", "nginx"),
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints: vec![Endpoint {
            ip: ip("10.244.1.16").into(),
            node_name: Some("ydzs-node1".into()),
            ready: true,
            serving: true,
            terminating: false,
        }],
    }
}

/// The two lesson nodes, clients on 203.0.113.0/24.
fn spec() -> WorldSpec {
    WorldSpec {
        nodes: [
            ("ydzs-master", "10.151.30.11", "10.244.0.0/24"),
            ("ydzs-node1", "10.151.30.12", "10.244.1.0/24"),
        ]
        .map(|(name, addr, cidr)| NodeDesc::new(name, ip(addr), cidr.parse().unwrap()))
        .into(),
        client_networks: vec!["203.0.113.0/24".parse().unwrap()],
        ..WorldSpec::default()
    }
}

/// Pod `name` at 10.244.1.16 on ydzs-node1 and the browser (203.0.113.11, reaching
/// `can_reach`) as TUN ports of `world`.
fn attach_ports(world: &mut World, pod: (&str, TunPort), browser: TunPort, can_reach: &[&str]) {
    let (name, pod_port) = pod;
    world
        .add_pod_port(name, ip("10.244.1.16"), "ydzs-node1", Box::new(pod_port))
        .unwrap();
    let attach = Attachment::External {
        can_reach: can_reach.iter().map(|n| n.to_string()).collect(),
    };
    world
        .add_client_port("browser", ip("203.0.113.11"), &attach, Box::new(browser))
        .unwrap();
}

struct Scope {
    prefix: String,
    state: StateDir,
}

impl Scope {
    /// Prefix `nplab-<tag><pid>-`, state dir `/run/nplab-test-<name>-<pid>`: cleaned of a
    /// previous run's leftovers, then created.
    fn new(tag: &str, name: &str) -> Self {
        let scope = Scope {
            prefix: format!("nplab-{tag}{}-", std::process::id() % 10000),
            state: StateDir::new(format!("/run/nplab-test-{name}-{}", std::process::id())),
        };
        let _ = down(&scope.state, &scope.prefix);
        scope.state.ensure().unwrap();
        scope
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Err(e) = down(&self.state, &self.prefix) {
            eprintln!("cleanup of {} failed: {e}", self.prefix);
        }
    }
}

/// Runs one curl while the driver moves packets through the world.
fn curl_through(
    world: &mut World,
    driver: &mut Driver,
    ns: &Netns,
    req: &CurlRequest,
) -> CurlOutcome {
    let mut run = CurlRun::spawn(ns, req).expect("spawn curl");
    let mut done = None;
    driver
        .run(&mut |now| world.poll(now), |_| {
            if done.is_none() {
                done = run.try_finish().expect("curl");
            }
            done.is_some()
        })
        .expect("driver");
    done.unwrap()
}

fn last_log_line(nginx: &Nginx, n: usize) -> String {
    let t0 = Instant::now();
    loop {
        let log = nginx.access_log();
        if log.lines().count() >= n || t0.elapsed() > Duration::from_secs(2) {
            return log.lines().nth(n - 1).unwrap_or_default().to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn real_curl_and_nginx_through_the_simulated_cluster() {
    if let Err(e) = preflight(Needs::default()) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("real-mode test cannot run under CI=true: {e}");
        }
        eprintln!("SKIPPED (real mode unavailable): {e}");
        return;
    }
    let scope = Scope::new("w", "world");

    let mut world = World::new(spec()).expect("world");
    world.set_services(&[service(TrafficPolicy::Cluster)], &[slice()]);

    // The pod: a namespace with a TUN on node1's cni0 and real nginx.
    let pod_ns = Netns::create(&format!("{}pod", scope.prefix)).unwrap();
    let pod_port = TunPort::create(
        &TunConfig::new(pod_ns.name(), ip("10.244.1.16"), 24)
            .gateway(ip("10.244.1.1"))
            .port_name(format!("ydzs-node1/cni0/{POD}")),
    )
    .unwrap();
    // The browser: a namespace with a TUN behind the router.
    let cl_ns = Netns::create(&format!("{}cl", scope.prefix)).unwrap();
    let cl_port = TunPort::create(
        &TunConfig::new(cl_ns.name(), ip("203.0.113.11"), 24)
            .gateway(ip("203.0.113.1"))
            .port_name("browser"),
    )
    .unwrap();
    let fds = vec![pod_port.raw_fd(), cl_port.raw_fd()];
    attach_ports(
        &mut world,
        (POD, pod_port),
        cl_port,
        &["ydzs-master", "ydzs-node1"],
    );
    let spec = NginxSpec::new(POD, "ydzs-node1", ip("10.244.1.16"), &scope.state).unwrap();
    let nginx = Nginx::start(&pod_ns, &spec).expect("nginx");
    let mut driver = Driver::new(fds);

    // 1. ETP Cluster via the master: DNAT + masquerade, nginx sees the master.
    let out = curl_through(
        &mut world,
        &mut driver,
        &cl_ns,
        &CurlRequest::get(format!("http://10.151.30.11:{NODEPORT}/")),
    );
    let CurlOutcome::Ok(resp) = &out else {
        panic!("observation 1: {out:?}");
    };
    assert_eq!(resp.http_code, 200);
    assert_eq!(
        resp.body,
        "pod nginx-54f57cf6bf-xhs8g on ydzs-node1 (10.244.1.16)\n"
    );
    let line = last_log_line(&nginx, 1);
    eprintln!("1. {line}");
    assert!(line.starts_with("10.151.30.11 - - ["), "{line}");

    // 2. ETP Local via the master (no local endpoint): dropped, curl times out.
    world.set_services(&[service(TrafficPolicy::Local)], &[slice()]);
    let out = curl_through(
        &mut world,
        &mut driver,
        &cl_ns,
        &CurlRequest::get(format!("http://10.151.30.11:{NODEPORT}/"))
            .timeouts(Duration::from_secs(1), Duration::from_secs(2)),
    );
    eprintln!("2. {out:?}");
    assert_eq!(out.kind(), "timeout", "{out:?}");

    // 3. ETP Local via node1 (local endpoint): the browser's own address in the log.
    let out = curl_through(
        &mut world,
        &mut driver,
        &cl_ns,
        &CurlRequest::get(format!("http://10.151.30.12:{NODEPORT}/")),
    );
    assert_eq!(out.kind(), "ok", "{out:?}");
    let line = last_log_line(&nginx, 2);
    eprintln!("3. {line}");
    assert!(line.starts_with("203.0.113.11 - - ["), "{line}");
    assert_eq!(nginx.access_log().lines().count(), 2);
    eprintln!("driver: {:?}", driver.stats());

    nginx.stop().unwrap();
    drop(world);
    let rep = down(&scope.state, &scope.prefix).unwrap();
    assert_eq!(rep.namespaces.len(), 2);
}

/// iperf3 (5 s) from the browser namespace to an iperf3 server in the pod namespace through
/// the simulated cluster (NodePort 32201 on the master, ETP Cluster: DNAT + masquerade, one
/// extra node hop). Run with `--ignored --nocapture`; `NPLAB_BENCH_MTU` sets the TUN MTU.
#[test]
#[ignore]
fn bench_iperf3_through_the_simulated_cluster() {
    use host::preflight::find_program;
    use host::process::Running;
    let needs = Needs {
        nginx: false,
        curl: false,
        iperf3: true,
    };
    if let Err(e) = preflight(needs) {
        eprintln!("SKIPPED (real mode unavailable): {e}");
        return;
    }
    let mtu: u16 = std::env::var("NPLAB_BENCH_MTU")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let scope = Scope::new("b", "bench");
    let mut world = World::new(WorldSpec {
        tracing: false,
        ..spec()
    })
    .expect("world");
    let mut svc = service(TrafficPolicy::Cluster);
    svc.name = "iperf".into();
    svc.cluster_ips = vec![ip("10.96.61.11").into()];
    svc.ports[0].port = 5201;
    svc.ports[0].target_port = 5201;
    svc.ports[0].node_port = Some(32201);
    let mut sl = slice();
    sl.service = ServiceRef::new("default", "iperf");
    sl.ports[0].port = 5201;
    world.set_services(&[svc], &[sl]);
    let pod_ns = Netns::create(&format!("{}pod", scope.prefix)).unwrap();
    let pod_port = common::tun(&pod_ns, ip("10.244.1.16"), ip("10.244.1.1"), mtu);
    let cl_ns = Netns::create(&format!("{}cl", scope.prefix)).unwrap();
    let cl_port = common::tun(&cl_ns, ip("203.0.113.11"), ip("203.0.113.1"), mtu);
    let mut driver = Driver::new(vec![pod_port.raw_fd(), cl_port.raw_fd()]);
    attach_ports(&mut world, ("iperf", pod_port), cl_port, &["ydzs-master"]);
    let iperf3 = find_program("iperf3").unwrap().display().to_string();
    let mut server = common::iperf3_server(&pod_ns, scope.state.root());
    std::thread::sleep(Duration::from_millis(300));
    let mut client = Running::spawn(
        &cl_ns,
        &iperf3,
        &common::iperf3_client_args("10.151.30.11", "32201"),
        Duration::from_secs(20),
    )
    .unwrap();
    let mut out = None;
    driver
        .run(&mut |now| world.poll(now), |_| {
            if out.is_none() {
                out = client.try_finish().unwrap();
            }
            out.is_some()
        })
        .unwrap();
    let out = out.unwrap();
    server.stop(Duration::from_secs(2)).unwrap();
    let (bps, retr) = common::iperf3_result(&out.stdout);
    println!(
        "iperf3 browser -> master:32201 -> pod through the sim World, MTU {mtu}: {:.2} Gbit/s, \
         {retr} retransmits; driver {:?}",
        bps / 1e9,
        driver.stats()
    );
    assert!(
        bps > 0.0,
        "iperf3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
