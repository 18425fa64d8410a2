//! Real-mode plumbing tests: namespaces, TUN ports, real nginx and curl through a trivial
//! in-process forwarder, lock and cleanup.
//!
//! They need root, /dev/net/tun, nginx and curl. Without them they print why and skip —
//! except with CI=true, where they fail. Every test works under its own namespace prefix
//! (`nplab-t…`) and state dir, and cleans up with a Drop guard even when it fails.
//!
//! Throughput baseline (not run by default):
//! `cargo test -p host --release --test real_mode -- --ignored --nocapture bench`

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use host::cleanup::{down, LabLock, StateDir};
use host::curl::{curl, CurlOutcome, CurlRequest};
use host::driver::{Driver, Forwarder};
use host::netns::{self, Netns};
use host::nginx::{Nginx, NginxSpec};
use host::preflight::{find_program, preflight, Needs};
use host::process::{alive, run_in};
use host::{Error, Identity};
use vswitch::tun::{TunConfig, TunPort};
use vswitch::Port;

mod common;

/// Real-mode tests share the machine's namespaces and port numbers: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `true` if the test can run; prints the reason and returns `false` otherwise, or panics
/// when CI=true.
fn can_run(needs: Needs) -> bool {
    match preflight(needs) {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("real-mode test cannot run under CI=true: {e}");
            }
            eprintln!("SKIPPED (real mode unavailable): {e}");
            false
        }
    }
}

/// What the plumbing tests need besides root and `/dev/net/tun`: no programs.
const PLUMBING: Needs = Needs {
    nginx: false,
    curl: false,
    iperf3: false,
};

/// The serial guard (taken first) if the test can run; `None` when it skips (see
/// `can_run`).
fn begin(needs: Needs) -> Option<MutexGuard<'static, ()>> {
    let guard = serial();
    can_run(needs).then_some(guard)
}

/// Namespace prefix + state dir of one test; `down()` on drop.
struct Scope {
    prefix: String,
    state: StateDir,
}

impl Scope {
    fn new(tag: &str) -> Scope {
        let prefix = format!("nplab-t{}{}-", tag, std::process::id() % 10000);
        let state = StateDir::new(format!("/run/nplab-test-{tag}-{}", std::process::id()));
        let s = Scope { prefix, state };
        let _ = down(&s.state, &s.prefix);
        s
    }
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Err(e) = down(&self.state, &self.prefix) {
            eprintln!("cleanup of {} failed: {e}", self.prefix);
        }
    }
}

/// Real uid of `pid` (`Uid:` line of /proc/<pid>/status).
fn uid_of(pid: i32) -> Option<u32> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = st.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Pids whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let st = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let ppid = st.lines().find_map(|l| l.strip_prefix("PPid:"));
        if ppid.and_then(|v| v.trim().parse::<i32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).to_string()
}

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const CLIENT_GW: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 16);
const POD_GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const POD: &str = "nginx-54f57cf6bf-xhs8g";

/// The trivial forwarder running on its own thread; stopped and joined on drop.
/// `up` options in `scope`, pod [`POD`] on ydzs-node1 running `apps`, client `browser`.
fn one_pod_lab(
    scope: &Scope,
    apps: Vec<host::lab::PodApp>,
) -> (
    host::lab::UpOptions,
    [host::lab::PodSpec; 1],
    [host::lab::ClientSpec; 1],
) {
    let opts = host::lab::UpOptions {
        state: scope.state.clone(),
        prefix: scope.prefix.clone(),
        ..host::lab::UpOptions::default()
    };
    let pods = [host::lab::PodSpec {
        name: POD.into(),
        node: "ydzs-node1".into(),
        ip: POD_IP,
        prefix_len: 24,
        gateway: POD_GW,
        apps,
        ipv6: None,
    }];
    let clients = [host::lab::ClientSpec {
        name: "browser".into(),
        ip: CLIENT_IP,
        prefix_len: 24,
        gateway: CLIENT_GW,
        ipv6: None,
    }];
    (opts, pods, clients)
}

/// The pod and client ports of an `up`, moved by the trivial forwarder on its own thread.
fn forward(ports: Vec<host::lab::EdgePort>) -> FwdThread {
    let mut fw = Forwarder::new();
    for p in ports {
        match p.role {
            host::lab::Role::Pod { .. } => fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, p.port),
            host::lab::Role::Client => fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, p.port),
        }
    }
    FwdThread::start(fw)
}

struct FwdThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Forwarder>>,
}

impl FwdThread {
    fn start(fw: Forwarder) -> FwdThread {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut fw = fw;
            let mut d = Driver::new(fw.fds());
            d.run(&mut fw, |_| s2.load(Ordering::SeqCst))
                .expect("driver");
            fw
        });
        FwdThread {
            stop,
            handle: Some(handle),
        }
    }
    fn finish(mut self) -> Forwarder {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("forwarder thread")
    }
}

impl Drop for FwdThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Client and pod namespaces with TUN ports, joined by the trivial forwarder.
fn client_and_pod(scope: &Scope, mtu: u16) -> (Netns, Netns, FwdThread) {
    let cl = Netns::create(&scope.ns("cl")).expect("client ns");
    let pod = Netns::create(&scope.ns("pod")).expect("pod ns");
    let cport = common::tun(&cl, CLIENT_IP, CLIENT_GW, mtu);
    let pport = common::tun(&pod, POD_IP, POD_GW, mtu);
    let mut fw = Forwarder::new();
    fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, cport);
    fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, pport);
    (cl, pod, FwdThread::start(fw))
}

#[test]
fn netns_create_list_delete_idempotent() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("ns");
    let name = scope.ns("a");
    let ns = Netns::create(&name).expect("create");
    assert!(netns::exists(&name));
    assert!(netns::list(&scope.prefix).unwrap().contains(&name));
    // `ip netns` sees it, lo is up, nothing else is there.
    assert!(ip(&["netns", "list"]).contains(&name));
    let links = ip(&["-n", &name, "-o", "link"]);
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    assert_eq!(links.lines().count(), 1, "{links}");
    // Creating it again fails; recreate works.
    assert!(Netns::create(&name).is_err());
    let ns2 = Netns::recreate(&name).expect("recreate");
    assert_eq!(ns, ns2);
    // Names outside the prefix are refused.
    assert!(Netns::create("kref-x").is_err());
    // delete + delete again, then down twice.
    assert!(netns::delete(&name).unwrap());
    assert!(!netns::delete(&name).unwrap());
    let _b = Netns::create(&scope.ns("b")).unwrap();
    let r1 = down(&scope.state, &scope.prefix).unwrap();
    assert_eq!(r1.namespaces, vec![scope.ns("b")]);
    let r2 = down(&scope.state, &scope.prefix).unwrap();
    assert!(r2.namespaces.is_empty());
    assert!(netns::list(&scope.prefix).unwrap().is_empty());
}

#[test]
fn tun_in_namespace_has_address_route_and_dies_with_its_device() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("tun");
    let ns = Netns::create(&scope.ns("pod")).unwrap();
    let mut port = TunPort::create(
        &TunConfig::new(ns.name(), POD_IP, 24)
            .gateway(POD_GW)
            .mtu(9000),
    )
    .expect("tun");
    let addr = ip(&[
        "netns",
        "exec",
        ns.name(),
        "ip",
        "-o",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    assert!(addr.contains("inet 10.244.1.16/24"), "{addr}");
    assert!(!addr.contains("inet6"), "IPv6 must be off: {addr}");
    let link = ip(&["-n", ns.name(), "link", "show", "eth0"]);
    assert!(
        link.contains("mtu 9000") && link.contains("qlen 5000"),
        "{link}"
    );
    assert!(link.contains(",UP"), "{link}");
    let routes = ip(&["-n", ns.name(), "-4", "route"]);
    assert!(
        routes.contains("default via 10.244.1.1 dev eth0"),
        "{routes}"
    );
    assert!(routes.contains("10.244.1.0/24 dev eth0"), "{routes}");
    assert_eq!(port.name(), format!("{}/eth0", ns.name()));
    // Nothing to read yet; a packet written into the namespace and answered comes back.
    assert!(port.recv(Duration::ZERO).is_none());
    // An ICMP echo to the namespace's own address, from a fake peer.
    let ping = icmp_echo(Ipv4Addr::new(10, 244, 1, 1), POD_IP);
    port.send(Duration::ZERO, &ping);
    let t0 = Instant::now();
    let reply = loop {
        if let Some(p) = port.recv(Duration::ZERO) {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "no echo reply");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(&reply[12..16], &POD_IP.octets());
    assert_eq!(reply[20], 0, "echo reply");
    assert_eq!(port.stats().rx_packets, 1);
    // Delete the device under the port: it must die (EBADFD), not panic. (Deleting only the
    // namespace's name does not destroy it: the TUN fd, opened inside, pins the namespace
    // until the port is dropped.)
    let st = Command::new("ip")
        .args(["-n", ns.name(), "link", "del", "eth0"])
        .status()
        .unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    while !port.is_dead() && t0.elapsed() < Duration::from_secs(5) {
        port.send(Duration::ZERO, &ping);
        let _ = port.recv(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(port.is_dead(), "port should be dead: {:?}", port.stats());
    eprintln!("dead: {}", port.dead_reason().unwrap());
    assert!(port.recv(Duration::ZERO).is_none());
}

/// A link with IPv6 (issue 10) gets the lab's address and default route and nothing else:
/// no fe80:: link-local (so no router solicitations into the fabric), and no other link of
/// the namespace gets IPv6.
#[test]
fn tun_with_ipv6_has_only_the_labs_address_and_route() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("tun6");
    let ns = Netns::create(&scope.ns("pod")).unwrap();
    let v6: std::net::Ipv6Addr = "fd00:10:244:1::10".parse().unwrap();
    let gw6: std::net::Ipv6Addr = "fd00:10:244:1::1".parse().unwrap();
    let _port = TunPort::create(&TunConfig::new(ns.name(), POD_IP, 24).gateway(POD_GW).ipv6(
        v6,
        64,
        Some(gw6),
    ))
    .expect("tun with IPv6");
    let addr = ip(&["-n", ns.name(), "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains("inet 10.244.1.16/24"), "{addr}");
    assert!(addr.contains("inet6 fd00:10:244:1::10/64"), "{addr}");
    assert!(!addr.contains("fe80"), "no link-local: {addr}");
    let routes = ip(&["-n", ns.name(), "-6", "route"]);
    assert!(routes.contains("fd00:10:244:1::/64 dev eth0"), "{routes}");
    assert!(
        routes.contains("default via fd00:10:244:1::1 dev eth0"),
        "{routes}"
    );
    let sysctl = |key: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name(), "cat"])
            .arg(format!("/proc/sys/net/ipv6/conf/{key}"))
            .output()
            .expect("cat");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(sysctl("eth0/disable_ipv6"), "0");
    assert_eq!(
        sysctl("default/disable_ipv6"),
        "1",
        "other links stay IPv4-only"
    );
}

/// Runs iperf3 (2 s) from `cl` to `target` in `pod` through `fw` on its own thread and
/// checks what the TSO tests of both families check: the transfer moved, the pod's TUN wrote
/// the superpackets as TSO (`pod_offload`) or cut them into segments, no read was dropped
/// for its offload header. Returns the ports' counters (client first).
fn iperf3_forwarded_as_tso_or_segmented(
    scope: &Scope,
    cl: &Netns,
    pod: &Netns,
    fw: Forwarder,
    target: &str,
    pod_offload: bool,
) -> Vec<vswitch::tun::TunStats> {
    let iperf3 = find_program("iperf3").unwrap();
    let fwd = FwdThread::start(fw);
    let mut server = common::iperf3_server(pod, scope.state.root());
    std::thread::sleep(Duration::from_millis(300));
    let args = [
        "-c",
        target,
        "-p",
        "5201",
        "-t",
        "2",
        "--connect-timeout",
        "3000",
        "-J",
    ];
    let out = run_in(
        cl,
        &iperf3.display().to_string(),
        &args,
        Duration::from_secs(20),
    )
    .unwrap();
    let fw = fwd.finish();
    server.stop(Duration::from_secs(2)).unwrap();
    let (bps, retr) = common::iperf3_result(&out.stdout);
    let st: Vec<_> = fw.ports().map(|p| p.stats()).collect();
    eprintln!(
        "{target}, pod offload {pod_offload}: {:.2} Gbit/s, {retr} retransmits, {st:?}",
        bps / 1e9
    );
    assert!(
        bps > 1e8,
        "iperf3 to {target}: {bps} bit/s, {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if pod_offload {
        assert!(
            st[1].tx_superpackets > 0 && st[1].tx_segmented == 0,
            "{:?}",
            st[1]
        );
    } else {
        assert!(
            st[1].tx_segmented > 0 && st[1].tx_superpackets == 0,
            "{:?}",
            st[1]
        );
    }
    assert_eq!(st[0].rx_dropped_offload + st[1].rx_dropped_offload, 0);
    st
}

/// TSO6: IPv6 TCP crosses the fabric as superpackets too. The client's TUN hands over
/// GSO_TCPV6 superpackets; the pod's TUN takes them as TSO6 (offloads on) or gets them cut
/// into MTU-sized segments with correct checksums (offloads off); iperf3 over IPv6 moves.
#[test]
fn ipv6_tso_superpackets_forwarded_as_tso_or_segmented() {
    let Some(_s) = begin(Needs {
        iperf3: true,
        ..PLUMBING
    }) else {
        return;
    };
    let scope = Scope::new("gso6");
    scope.state.ensure().unwrap();
    let (cl6, pod6): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (CLIENT_IP6.parse().unwrap(), POD_IP6.parse().unwrap());
    for (i, pod_offload) in [true, false].into_iter().enumerate() {
        let cl = Netns::create(&scope.ns(&format!("cl{i}"))).expect("client ns");
        let pod = Netns::create(&scope.ns(&format!("pod{i}"))).expect("pod ns");
        let cport = TunPort::create(
            &TunConfig::new(cl.name(), CLIENT_IP, 24)
                .gateway(CLIENT_GW)
                .ipv6(cl6, 64, Some("fd00:203:0:113::1".parse().unwrap())),
        )
        .expect("client tun");
        let pport = TunPort::create(
            &TunConfig::new(pod.name(), POD_IP, 24)
                .gateway(POD_GW)
                .offload(pod_offload)
                .ipv6(pod6, 64, Some("fd00:10:244:1::1".parse().unwrap())),
        )
        .expect("pod tun");
        let mut fw = Forwarder::new();
        fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, cport);
        fw.add_prefix(cl6, 64);
        fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, pport);
        fw.add_prefix(pod6, 64);
        let st = iperf3_forwarded_as_tso_or_segmented(&scope, &cl, &pod, fw, POD_IP6, pod_offload);
        assert!(
            st[0].rx_superpackets > 0,
            "no IPv6 superpackets read: {:?}",
            st[0]
        );
    }
}

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = csum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..28].copy_from_slice(&[0x12, 0x34, 0, 1]);
    let c = csum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn curl_reaches_nginx_through_forwarder_and_down_cleans_up() {
    let Some(_s) = begin(Needs::default()) else {
        return;
    };
    let scope = Scope::new("web");
    scope.state.ensure().unwrap();
    let (cl, pod, fwd) = client_and_pod(&scope, 1500);
    let spec = NginxSpec::new(POD, "ydzs-node1", POD_IP, &scope.state).unwrap();
    let nginx = Nginx::start(&pod, &spec).expect("nginx");
    let nginx_pid = nginx.pid();
    // Least privilege: the master is root (port 80), its workers run as www-data/nobody.
    // (A worker is forked as root and drops to the user itself: wait for that.)
    let worker = Identity::nginx_worker().unwrap();
    assert_eq!(uid_of(nginx_pid), Some(0));
    let t0 = Instant::now();
    let uids = loop {
        let uids: Vec<_> = children_of(nginx_pid).into_iter().map(uid_of).collect();
        let settled = !uids.is_empty() && uids.iter().all(|&u| u == Some(worker.uid));
        if settled || t0.elapsed() > Duration::from_secs(3) {
            break uids;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!uids.is_empty(), "nginx {nginx_pid} has no worker");
    assert!(
        uids.iter().all(|&u| u == Some(worker.uid)),
        "workers of nginx {nginx_pid}: uids {uids:?}, expected {worker:?}"
    );

    let out = curl(&cl, &CurlRequest::get("http://10.244.1.16/")).unwrap();
    let CurlOutcome::Ok(resp) = out else {
        panic!("curl failed: {out:?}");
    };
    assert_eq!(resp.http_code, 200);
    assert_eq!(resp.remote_ip, "10.244.1.16");
    assert_eq!(resp.local_ip, "203.0.113.11");
    assert_eq!(
        resp.body,
        "pod nginx-54f57cf6bf-xhs8g on ydzs-node1 (10.244.1.16)\n"
    );
    // Refused: nothing listens on :81 (the pod's kernel answers RST).
    let out = curl(&cl, &CurlRequest::get("http://10.244.1.16:81/")).unwrap();
    assert_eq!(out.kind(), "refused", "{out:?}");
    // Timeout: nobody owns 10.244.1.99 (the pod's kernel drops it).
    let out = curl(
        &cl,
        &CurlRequest::get("http://10.244.1.99/")
            .timeouts(Duration::from_millis(500), Duration::from_secs(1)),
    )
    .unwrap();
    assert_eq!(out.kind(), "timeout", "{out:?}");

    // nginx logged the client's real address in the main format.
    let t0 = Instant::now();
    let log = loop {
        let l = nginx.access_log();
        if !l.is_empty() || t0.elapsed() > Duration::from_secs(2) {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("access.log: {log}");
    let line = log.lines().next().expect("one access log line");
    assert!(line.starts_with("203.0.113.11 - - ["), "{line}");
    assert!(line.contains("\"GET / HTTP/1.1\" 200 "), "{line}");
    assert!(
        line.ends_with("\"-\""),
        "main format ends with $http_x_forwarded_for: {line}"
    );

    let fw = fwd.finish();
    assert!(fw.stats().forwarded >= 10, "{:?}", fw.stats());
    assert!(fw.ports().all(|p| !p.is_dead()));
    // Simulate a crash: the lab's handle is leaked, nginx keeps running; down() must stop it
    // (by its record), delete the namespaces and the state dir; twice is fine.
    std::mem::forget(nginx);
    drop(fw);
    assert!(alive(nginx_pid));
    let rep = down(&scope.state, &scope.prefix).unwrap();
    eprintln!("down: {rep:?}");
    assert_eq!(rep.recorded_stopped, 1);
    assert_eq!(rep.namespaces.len(), 2);
    assert!(rep.state_removed);
    assert!(!alive(nginx_pid), "nginx {nginx_pid} still running");
    assert!(netns::list(&scope.prefix).unwrap().is_empty());
    assert!(!scope.state.root().exists());
    let rep2 = down(&scope.state, &scope.prefix).unwrap();
    assert_eq!(rep2, Default::default());
    let _ = (cl, pod);
}

#[test]
fn lock_refuses_second_up_and_takes_over_stale() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("lock");
    let lock = LabLock::acquire(&scope.state).expect("first lock");
    assert_eq!(lock.stale_pid(), None);
    match LabLock::acquire(&scope.state) {
        Err(Error::Locked { pid, .. }) => {
            assert_eq!(pid, std::process::id() as i32);
        }
        other => panic!("second lock must be refused: {other:?}"),
    }
    let msg = LabLock::acquire(&scope.state).unwrap_err().to_string();
    assert!(msg.contains("another `lab up` is running"), "{msg}");
    drop(lock);
    assert!(!scope.state.lock_path().exists());
    assert!(
        !scope.state.root().exists(),
        "empty state dir goes with the lock"
    );
    scope.state.ensure().unwrap();
    // Stale: a lock file naming a dead pid (as after kill -9) is taken over.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id() as i32;
    child.wait().unwrap();
    std::fs::write(scope.state.lock_path(), format!("{dead}\n")).unwrap();
    let lock = LabLock::acquire(&scope.state).expect("stale lock taken over");
    assert_eq!(lock.stale_pid(), Some(dead));
    drop(lock);
    // Held by another live process (util-linux flock): down() refuses and names it.
    if let Some(flock) = find_program("flock") {
        scope.state.ensure().unwrap();
        std::fs::write(scope.state.lock_path(), "0\n").unwrap();
        // Own process group: `flock` forks `sleep`, which inherits the lock; kill both.
        let mut holder = Command::new(flock)
            .arg(scope.state.lock_path())
            .args(["sleep", "5"])
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let r = down(&scope.state, &scope.prefix);
        let pgid = holder.id() as i32;
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pgid), nix::sys::signal::SIGKILL);
        let _ = holder.wait();
        // The orphaned `sleep` is reaped by init; wait until the lock is free again.
        let t0 = Instant::now();
        while LabLock::holder(&scope.state).is_some() && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(matches!(r, Err(Error::Locked { .. })), "{r:?}");
    }
}

/// TCP superpackets (TSO, up to 64 KiB) from the client's kernel cross the forwarder at MTU
/// 1500: written as TSO to a pod TUN with offloads, cut into segments by the lab for a pod
/// TUN without. Bad segments (checksums, lengths, sequence numbers) would be dropped by the
/// pod's kernel and iperf3 would stall. Partial checksums stay partial through the lab
/// (`wire::partial`): written out partial to the offload pod (and its partial ACKs to the
/// client), completed by the lab for the pod without offloads, whose kernel verifies them.
#[test]
fn tso_superpackets_forwarded_as_tso_or_segmented() {
    let Some(_s) = begin(Needs {
        iperf3: true,
        ..PLUMBING
    }) else {
        return;
    };
    let scope = Scope::new("gso");
    scope.state.ensure().unwrap();
    for (i, pod_offload) in [true, false].into_iter().enumerate() {
        let cl = Netns::create(&scope.ns(&format!("cl{i}"))).expect("client ns");
        let pod = Netns::create(&scope.ns(&format!("pod{i}"))).expect("pod ns");
        let cport = common::tun(&cl, CLIENT_IP, CLIENT_GW, 1500);
        let pport = TunPort::create(
            &TunConfig::new(pod.name(), POD_IP, 24)
                .gateway(POD_GW)
                .offload(pod_offload),
        )
        .expect("pod tun");
        assert_ne!(cport.offloads(), 0, "the kernel refused every offload");
        assert_eq!(pport.offloads() != 0, pod_offload);
        let mut fw = Forwarder::new();
        fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, cport);
        fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, pport);
        let st =
            iperf3_forwarded_as_tso_or_segmented(&scope, &cl, &pod, fw, "10.244.1.16", pod_offload);
        assert!(
            st[0].rx_superpackets > 0,
            "client sent no superpackets: {:?}",
            st[0]
        );
        assert!(st[0].rx_partial > 0, "nothing kept partial: {:?}", st[0]);
        if pod_offload {
            // The pod's ACKs were read partial and written to the client still partial.
            assert!(st[1].rx_partial > 0 && st[0].tx_partial > 0, "{st:?}");
        } else {
            assert_eq!(st[1].rx_partial + st[0].tx_partial + st[1].tx_partial, 0);
        }
    }
}

/// Throughput of the trivial forwarder (iperf3, 5 s). Run with --ignored --nocapture.
/// `NPLAB_BENCH_MTU` sets the TUN MTU (default 1500).
#[test]
#[ignore]
fn bench_iperf3_through_forwarder() {
    let Some(_s) = begin(Needs {
        iperf3: true,
        ..PLUMBING
    }) else {
        return;
    };
    let mtu: u16 = std::env::var("NPLAB_BENCH_MTU")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let scope = Scope::new("perf");
    scope.state.ensure().unwrap();
    let (cl, pod, fwd) = client_and_pod(&scope, mtu);
    let iperf3 = find_program("iperf3").unwrap();
    let mut server = common::iperf3_server(&pod, scope.state.root());
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let out = run_in(
        &cl,
        &iperf3.display().to_string(),
        &common::iperf3_client_args("10.244.1.16", "5201"),
        Duration::from_secs(20),
    )
    .unwrap();
    let wall = t0.elapsed();
    let fw = fwd.finish();
    server.stop(Duration::from_secs(2)).unwrap();
    let (bps, retr) = common::iperf3_result(&out.stdout);
    println!(
        "iperf3 client->pod through trivial forwarder, MTU {mtu}: {:.2} Gbit/s, {retr} retransmits \
         ({} packets forwarded, {wall:?})",
        bps / 1e9,
        fw.stats().forwarded
    );
    for p in fw.ports() {
        println!("  {}: {:?}", p.name(), p.stats());
    }
    assert!(
        bps > 0.0,
        "iperf3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = (cl, pod, PathBuf::new());
}

#[test]
fn real_lab_up_serves_refuses_second_up_and_shuts_down() {
    use host::lab::{Lab, Role};
    let Some(_s) = begin(Needs::default()) else {
        return;
    };
    let scope = Scope::new("up");
    let (opts, pods, clients) = one_pod_lab(&scope, Vec::new());
    let (lab, ports) = Lab::up(&pods, &clients, &opts).expect("up");
    assert_eq!(ports.len(), 2);
    assert_eq!(
        ports[0].role,
        Role::Pod {
            node: "ydzs-node1".into()
        }
    );
    assert_eq!(ports[0].port.name(), format!("ydzs-node1/cni0/{POD}"));
    let pod_ns = lab.pod_ns(POD).unwrap().name().to_string();
    assert_eq!(pod_ns, format!("{}pod-{POD}", scope.prefix));
    assert!(lab.client_ns("browser").is_some());
    for h in lab.hints() {
        eprintln!("{h}");
    }
    // A second `up` is refused while this one runs.
    match Lab::up(&pods, &clients, &opts) {
        Err(Error::Locked { pid, .. }) => assert_eq!(pid, std::process::id() as i32),
        other => panic!("second up must be refused: {other:?}"),
    }
    assert!(
        netns::exists(&pod_ns),
        "refused up must not touch the running lab"
    );
    // Serve through the trivial forwarder.
    let fwd = forward(ports);
    let out = lab
        .curl("browser", &CurlRequest::get("http://10.244.1.16/"))
        .unwrap();
    assert_eq!(out.kind(), "ok", "{out:?}");
    assert!(lab.access_log(POD).starts_with("203.0.113.11 - - ["));
    // An extra server in the pod (benchmarks): recorded, stopped by shutdown/down.
    let server = lab
        .spawn_in_pod(POD, "sleeper", &["sleep", "30"])
        .expect("server");
    let server_pid = server.pid();
    assert!(alive(server_pid));
    let nobody = Identity::nobody().unwrap();
    assert_eq!(
        uid_of(server_pid),
        Some(nobody.uid),
        "extra pod server runs as nobody"
    );
    assert!(scope
        .state
        .pod_dir(POD)
        .unwrap()
        .join("sleeper.proc.json")
        .exists());
    std::mem::forget(server); // as if the lab crashed: down must stop it by its record
    drop(fwd);
    let rep = lab.shutdown().unwrap();
    assert!(!alive(server_pid), "recorded server still running");
    assert_eq!(rep.recorded_stopped, 1, "{rep:?}");
    assert_eq!(rep.namespaces.len(), 2, "{rep:?}");
    assert!(netns::list(&scope.prefix).unwrap().is_empty());
    assert!(!scope.state.root().exists());
    // And up again works (the lock was released).
    let (lab, _ports) = Lab::up(&pods, &[], &opts).expect("up again");
    drop(lab);
    assert!(netns::list(&scope.prefix).unwrap().is_empty());
}

#[test]
fn client_tools_run_as_nobody_inside_their_namespace() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("who");
    let mut guard = netns::NetnsGuard::new();
    let cl = guard.create(&scope.ns("cl")).unwrap();
    // The TUN port (created by the lab as root) configures the namespace...
    let _port =
        TunPort::create(&TunConfig::new(cl.name(), CLIENT_IP, 24).gateway(CLIENT_GW)).expect("tun");
    // ...and what runs in it is nobody, with no supplementary groups, in that namespace.
    let nobody = Identity::nobody().unwrap();
    let run = |prog: &str, args: &[&str]| {
        let out = run_in(&cl, prog, args, Duration::from_secs(5)).unwrap();
        assert!(out.status.success(), "{prog} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run("id", &["-u"]), nobody.uid.to_string());
    assert_eq!(run("id", &["-G"]), nobody.gid.to_string());
    let status = run("cat", &["/proc/self/status"]);
    let caps = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .expect("CapEff line");
    assert!(caps.ends_with("0000000000000000"), "{caps}");
    assert!(run("ip", &["-o", "-4", "addr"]).contains("203.0.113.11/24"));
    // Writing where root could is refused to nobody.
    let out = run_in(
        &cl,
        "sh",
        &["-c", "echo x > /run/nplab-owned-by-root"],
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(!std::path::Path::new("/run/nplab-owned-by-root").exists());
}

#[test]
fn lab_up_refuses_a_pod_name_that_leaves_the_state_dir() {
    use host::lab::{Lab, PodSpec, UpOptions};
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("evil");
    let opts = UpOptions {
        state: scope.state.clone(),
        prefix: scope.prefix.clone(),
        nginx: false,
        ..UpOptions::default()
    };
    // `/run/nplab-test-evil-<pid>/../nplab-tevil-<pid>` would be /run/nplab-tevil-<pid>.
    let escape = format!("nplab-tevil-{}", std::process::id());
    let pods = [PodSpec {
        name: format!("../{escape}"),
        node: "ydzs-node1".into(),
        ip: POD_IP,
        prefix_len: 24,
        gateway: POD_GW,
        apps: Vec::new(),
        ipv6: None,
    }];
    match Lab::up(&pods, &[], &opts) {
        Err(Error::Invalid(m)) => assert!(m.contains(&pods[0].name), "{m}"),
        other => panic!("an escaping pod name must be refused: {other:?}"),
    }
    assert!(!std::path::Path::new("/run").join(&escape).exists());
    assert!(
        netns::list(&scope.prefix).unwrap().is_empty(),
        "nothing created"
    );
    assert!(LabLock::holder(&scope.state).is_none(), "lock released");
}

#[test]
fn real_pod_apps_listen_on_the_container_ports_and_stop_and_start() {
    use host::lab::{Lab, PodApp};
    let Some(_s) = begin(Needs::default()) else {
        return;
    };
    let scope = Scope::new("apps");
    let nginx = PodApp::Nginx {
        ports: vec![8080, 8443],
    };
    let (opts, pods, clients) = one_pod_lab(&scope, vec![nginx]);
    let (mut lab, ports) = Lab::up(&pods, &clients, &opts).expect("up");
    let fwd = forward(ports);
    let get = |lab: &Lab, url: &str| {
        let req = CurlRequest::get(url);
        lab.curl("browser", &req).unwrap().kind().to_string()
    };
    assert_eq!(get(&lab, "http://10.244.1.16:8080/"), "ok");
    assert_eq!(get(&lab, "http://10.244.1.16:8443/"), "ok");
    // Nothing on 80: the pod's kernel answers the SYN with an RST.
    assert_eq!(get(&lab, "http://10.244.1.16/"), "refused");
    assert!(lab.apps_running(POD));
    let pids = lab.app_pids(POD);
    assert_eq!(pids.len(), 1);
    lab.stop_apps(POD).unwrap();
    assert!(!lab.apps_running(POD));
    assert!(!alive(pids[0]));
    assert_eq!(get(&lab, "http://10.244.1.16:8080/"), "refused");
    lab.start_apps(POD).unwrap();
    assert!(lab.apps_running(POD));
    assert_eq!(get(&lab, "http://10.244.1.16:8080/"), "ok");
    // An app killed by hand is noticed.
    let pid = lab.app_pids(POD)[0];
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.apps_running(POD) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!lab.apps_running(POD));
    drop(fwd);
    lab.shutdown().unwrap();
}

const POD_IP6: &str = "fd00:10:244:1::10";
const CLIENT_IP6: &str = "fd00:203:0:113::11";

/// Issue 10, the host side of real-mode IPv6: a dual-stack pod and client (IPv6 on their TUN
/// links), joined by the forwarder for both families. curl -6 reaches nginx on `[::]:80`,
/// nginx logs the IPv6 client as nginx does (no brackets), IPv4 keeps working and is
/// logged as IPv4 (nginx's IPv4 socket, not a mapped address), a closed port refuses over
/// IPv6 too, and the UDP client talks IPv6.
#[test]
fn dual_stack_pod_serves_curl_over_ipv6_and_logs_the_ipv6_client() {
    use host::lab::{Ipv6Link, Lab};
    use host::udp::{UdpOutcome, UdpRequest, UdpRun};
    use std::net::{Ipv6Addr, SocketAddr};
    let Some(_s) = begin(Needs::default()) else {
        return;
    };
    let scope = Scope::new("v6");
    let (opts, mut pods, mut clients) = one_pod_lab(&scope, Vec::new());
    let pod6: Ipv6Addr = POD_IP6.parse().unwrap();
    let cl6: Ipv6Addr = CLIENT_IP6.parse().unwrap();
    pods[0].ipv6 = Some(Ipv6Link {
        ip: pod6,
        prefix_len: 64,
        gateway: "fd00:10:244:1::1".parse().unwrap(),
    });
    clients[0].ipv6 = Some(Ipv6Link {
        ip: cl6,
        prefix_len: 64,
        gateway: "fd00:203:0:113::1".parse().unwrap(),
    });
    let (lab, ports) = Lab::up(&pods, &clients, &opts).expect("up");
    assert_eq!(ports.iter().filter_map(|p| p.ipv6).count(), 2);
    let mut fw = Forwarder::new();
    for p in ports {
        let v6 = p.ipv6.expect("both links have IPv6");
        match p.role {
            host::lab::Role::Pod { .. } => {
                fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, p.port);
                fw.add_prefix(v6, 64);
            }
            host::lab::Role::Client => {
                fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, p.port);
                fw.add_prefix(v6, 64);
            }
        }
    }
    let fwd = FwdThread::start(fw);
    let conf = std::fs::read_to_string(scope.state.root().join(POD).join("nginx.conf")).unwrap();
    assert!(
        conf.contains("listen 80;\n        listen [::]:80;\n"),
        "{conf}"
    );

    let out = lab
        .curl("browser", &CurlRequest::get(format!("http://[{pod6}]/")))
        .unwrap();
    let CurlOutcome::Ok(resp) = out else {
        panic!("curl -6 failed: {out:?}");
    };
    assert_eq!(resp.http_code, 200);
    assert_eq!(resp.remote_ip, POD_IP6);
    assert_eq!(resp.local_ip, CLIENT_IP6);
    assert_eq!(
        resp.body,
        format!("pod {POD} on ydzs-node1 (10.244.1.16)\n")
    );
    let out = lab.curl("browser", &CurlRequest::get("http://10.244.1.16/"));
    assert_eq!(out.unwrap().kind(), "ok");
    let out = lab.curl("browser", &CurlRequest::get(format!("http://[{pod6}]:81/")));
    assert_eq!(out.unwrap().kind(), "refused");

    let t0 = Instant::now();
    let log = loop {
        let l = lab.access_log(POD);
        if l.lines().count() >= 2 || t0.elapsed() > Duration::from_secs(2) {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].starts_with(&format!("{CLIENT_IP6} - - [")),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("203.0.113.11 - - ["), "{}", lines[1]);

    // UDP over IPv6: nothing listens on 9/udp in the pod, its kernel answers ICMPv6 port
    // unreachable, which the connected socket reports as refused.
    let ns = lab.client_ns("browser").unwrap();
    let mut run = UdpRun::start(
        ns,
        &UdpRequest {
            dst: SocketAddr::new(pod6.into(), 9),
            payload: "hello".into(),
            timeout: Duration::from_secs(2),
            source_port: None,
        },
    )
    .expect("udp over IPv6");
    let out = loop {
        if let Some(o) = run.try_finish().unwrap() {
            break o;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        matches!(&out, UdpOutcome::Refused { message } if message.contains(POD_IP6)),
        "{out:?}"
    );
    let fw = fwd.finish();
    assert_eq!(fw.stats().no_route, 0, "{:?}", fw.stats());
    for p in fw.ports() {
        assert_eq!(p.stats().rx_dropped_not_ipv4, 0, "{:?}", p.stats());
    }
    drop(fw);
    lab.shutdown().unwrap();
}

/// `setsockopt(SOL_UDP, UDP_SEGMENT, gso_size)` (include/uapi/linux/udp.h; `libc` defines
/// `UDP_SEGMENT` only for some targets).
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
/// The USO tests' send: 48 000 bytes at gso_size 1200 = 40 datagrams of 1200 bytes.
const USO_GSO: usize = 1200;
const USO_SEND: usize = 48_000;

/// The bytes of one `UDP_SEGMENT` send; datagram `i` is `[i * USO_GSO..][..USO_GSO]` and no
/// two datagrams are equal.
fn uso_data() -> Vec<u8> {
    (0..USO_SEND)
        .map(|i| (i / USO_GSO * 31 + i * 7) as u8)
        .collect()
}

/// A UDP socket (of `dst`'s family, in the calling thread's namespace) whose sends are cut
/// into datagrams of [`USO_GSO`] bytes (`UDP_SEGMENT`).
fn udp_segment_socket(dst: std::net::SocketAddr) -> std::net::UdpSocket {
    use std::os::fd::AsRawFd;
    let bind = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = std::net::UdpSocket::bind(bind).expect("bind sender");
    let gso = USO_GSO as libc::c_int;
    // SAFETY: a valid socket fd and a c_int option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            SOL_UDP,
            UDP_SEGMENT,
            (&gso as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    s
}

/// One `sendto` of `data` with `UDP_SEGMENT` = [`USO_GSO`] from a fresh socket in `ns`: one
/// UDP superpacket for the stack below the socket. Returns the bytes sent.
fn send_segmented(ns: &Netns, dst: std::net::SocketAddr, data: Vec<u8>) -> usize {
    ns.run(move || {
        let s = udp_segment_socket(dst);
        s.send_to(&data, dst).expect("UDP_SEGMENT send")
    })
    .expect("sender in its namespace")
}

/// Checks that `got` is exactly the datagrams of [`uso_data`] in order (payloads).
fn assert_uso_payloads(what: &str, got: &[Vec<u8>]) {
    let data = uso_data();
    let want: Vec<&[u8]> = data.chunks(USO_GSO).collect();
    assert_eq!(got.len(), want.len(), "{what}: datagram count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "{what}: datagram {i} ({} bytes) differs", g.len());
    }
}

/// A dual-stack TUN port in `ns` (client addresses, default routes of both families).
fn dual_stack_tun(ns: &Netns, addr: Ipv4Addr, gw: Ipv4Addr, addr6: &str, gw6: &str) -> TunPort {
    TunPort::create(&TunConfig::new(ns.name(), addr, 24).gateway(gw).ipv6(
        addr6.parse().unwrap(),
        64,
        Some(gw6.parse().unwrap()),
    ))
    .unwrap_or_else(|e| panic!("tun {addr} in {}: {e}", ns.name()))
}

/// USO at the read: the TUN is offered TUN_F_USO4|USO6 (this kernel has them); one
/// `UDP_SEGMENT` send of 48 000 bytes reaches the lab as ONE read (a GSO_UDP_L4
/// superpacket), which the port hands out as the 40 datagrams the socket sent, each a
/// well-formed datagram (lengths, IPv4 ids, checksums valid once a kept-partial one is
/// completed) with its 1200 bytes. IPv4 and IPv6; read through `Port::recv` (`recv_owned`).
#[test]
fn uso_superpacket_read_as_its_datagrams() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("u");
    let ns = Netns::create(&scope.ns("rd")).expect("ns");
    let mut port = dual_stack_tun(&ns, CLIENT_IP, CLIENT_GW, CLIENT_IP6, "fd00:203:0:113::1");
    let uso = libc::TUN_F_USO4 | libc::TUN_F_USO6;
    assert_eq!(
        port.offloads() & uso,
        uso,
        "USO refused: {:#x}",
        port.offloads()
    );
    let dsts: [std::net::SocketAddr; 2] = [
        (POD_IP, 7000).into(),
        (POD_IP6.parse::<std::net::Ipv6Addr>().unwrap(), 7000).into(),
    ];
    for (k, dst) in dsts.into_iter().enumerate() {
        let before = port.stats();
        assert_eq!(send_segmented(&ns, dst, uso_data()), USO_SEND);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.len() < USO_SEND / USO_GSO && Instant::now() < deadline {
            match port.recv(Duration::ZERO) {
                Some(d) => got.push(d),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(port.recv(Duration::ZERO).is_none(), "{dst}: more than sent");
        let st = port.stats();
        eprintln!("{dst}: {} datagrams read, {st:?}", got.len());
        let hl = if dst.is_ipv4() { 28 } else { 48 };
        let mut payloads = Vec::new();
        let id0 = got.first().map_or(0, |d| u16::from_be_bytes([d[4], d[5]]));
        for (i, d) in got.iter_mut().enumerate() {
            assert_eq!(d.len(), hl + USO_GSO, "{dst}: datagram {i}");
            let udp_len = u16::from_be_bytes([d[hl - 4], d[hl - 3]]);
            assert_eq!(usize::from(udp_len), 8 + USO_GSO, "{dst}: UDP length {i}");
            if dst.is_ipv4() {
                let id = u16::from_be_bytes([d[4], d[5]]);
                assert_eq!(id, id0.wrapping_add(i as u16), "{dst}: IPv4 id {i}");
            }
            wire::partial::complete(d);
            assert_eq!(wire::checksum::verify(d), Ok(()), "{dst}: datagram {i}");
            payloads.push(d[hl..].to_vec());
        }
        assert_uso_payloads(&dst.to_string(), &payloads);
        assert_eq!(st.rx_uso - before.rx_uso, 1, "{dst}: one USO read: {st:?}");
        assert_eq!(st.rx_uso_datagrams - before.rx_uso_datagrams, 40, "{st:?}");
        assert_eq!(st.rx_dropped_offload, 0, "{st:?}");
        if k == 0 {
            assert_eq!(
                st.rx_partial - before.rx_partial,
                40,
                "IPv4 kept partial: {st:?}"
            );
        }
    }
}

/// Hands `each` every datagram `sock` receives until it has been quiet for 300 ms after
/// the first one (which may take up to 3 s to come).
fn recv_until_quiet(sock: &std::net::UdpSocket, mut each: impl FnMut(&[u8])) {
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let first = Instant::now() + Duration::from_secs(3);
    let mut any = false;
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                any = true;
                each(&buf[..n]);
            }
            Err(_) if !any && Instant::now() < first => {}
            Err(_) => break,
        }
    }
}

/// Client and pod namespaces number `i` of `scope`.
fn ns_pair(scope: &Scope, i: usize) -> (Netns, Netns) {
    let cl = Netns::create(&scope.ns(&format!("cl{i}"))).expect("client ns");
    let pod = Netns::create(&scope.ns(&format!("pod{i}"))).expect("pod ns");
    (cl, pod)
}

/// USO end to end: a `UDP_SEGMENT` sender (48 000 bytes, gso_size 1200) in the client
/// namespace, the forwarder, a receiver socket in the pod namespace: the receiver gets
/// exactly the 40 datagrams of 1200 bytes the sender wrote, in order, over IPv4 and IPv6,
/// to a pod TUN with offloads (IPv4 written still partial, the pod's kernel trusting it) and
/// without (checksums completed by the lab; the pod's kernel verifies them and would drop
/// a wrong one). The client port's counters show the reads were USO superpackets.
#[test]
fn uso_datagrams_forwarded_with_their_boundaries() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("uf");
    for (i, pod_offload) in [true, false].into_iter().enumerate() {
        let (cl, pod) = ns_pair(&scope, i);
        let cport = dual_stack_tun(&cl, CLIENT_IP, CLIENT_GW, CLIENT_IP6, "fd00:203:0:113::1");
        let pport = TunPort::create(
            &TunConfig::new(pod.name(), POD_IP, 24)
                .gateway(POD_GW)
                .offload(pod_offload)
                .ipv6(
                    POD_IP6.parse().unwrap(),
                    64,
                    Some("fd00:10:244:1::1".parse().unwrap()),
                ),
        )
        .expect("pod tun");
        let mut fw = Forwarder::new();
        fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, cport);
        fw.add_prefix(CLIENT_IP6.parse::<std::net::Ipv6Addr>().unwrap(), 64);
        fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, pport);
        fw.add_prefix(POD_IP6.parse::<std::net::Ipv6Addr>().unwrap(), 64);
        let fwd = FwdThread::start(fw);
        let rx4 = pod
            .run(|| std::net::UdpSocket::bind("0.0.0.0:7004"))
            .unwrap()
            .expect("bind IPv4 receiver");
        let rx6 = pod
            .run(|| std::net::UdpSocket::bind("[::]:7006"))
            .unwrap()
            .expect("bind IPv6 receiver");
        let pod6: std::net::Ipv6Addr = POD_IP6.parse().unwrap();
        for (dst, rx) in [
            (std::net::SocketAddr::from((POD_IP, 7004)), &rx4),
            (std::net::SocketAddr::from((pod6, 7006)), &rx6),
        ] {
            assert_eq!(send_segmented(&cl, dst, uso_data()), USO_SEND);
            let mut got = Vec::new();
            recv_until_quiet(rx, |d| got.push(d.to_vec()));
            assert_uso_payloads(&format!("{dst}, pod offload {pod_offload}"), &got);
        }
        let fw = fwd.finish();
        let st: Vec<_> = fw.ports().map(|p| p.stats()).collect();
        eprintln!("pod offload {pod_offload}: {st:?}");
        assert!(st[0].rx_uso >= 2, "no USO reads: {:?}", st[0]);
        assert!(st[0].rx_uso_datagrams >= 80, "{:?}", st[0]);
        assert_eq!(st[0].rx_dropped_offload + st[1].rx_dropped_offload, 0);
        assert!(
            st[1].tx_packets >= 80 && st[1].tx_dropped == 0,
            "{:?}",
            st[1]
        );
        // Written per datagram: nothing the pod got was a superpacket or cut again.
        assert_eq!(st[1].tx_superpackets + st[1].tx_segmented, 0, "{:?}", st[1]);
        if pod_offload {
            assert!(st[1].tx_partial >= 40, "IPv4 written partial: {:?}", st[1]);
        } else {
            assert_eq!(st[1].tx_partial, 0, "{:?}", st[1]);
        }
    }
}

/// UDP throughput through the forwarder from a `UDP_SEGMENT` sender (53 datagrams of 1200
/// bytes per send, 2 s, unpaced) with the client TUN's offloads on (USO: one read per
/// send) and off (the client's kernel segments: one read per datagram); prints what the
/// receiver got. Run with --ignored --nocapture.
#[test]
#[ignore]
fn bench_uso_through_forwarder() {
    let Some(_s) = begin(PLUMBING) else {
        return;
    };
    let scope = Scope::new("ub");
    for (i, client_offload) in [true, false].into_iter().enumerate() {
        let (cl, pod) = ns_pair(&scope, i);
        let cport = TunPort::create(
            &TunConfig::new(cl.name(), CLIENT_IP, 24)
                .gateway(CLIENT_GW)
                .offload(client_offload),
        )
        .expect("client tun");
        let pport = common::tun(&pod, POD_IP, POD_GW, 1500);
        let mut fw = Forwarder::new();
        fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, cport);
        fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, pport);
        let fwd = FwdThread::start(fw);
        let rx = pod
            .run(|| std::net::UdpSocket::bind("0.0.0.0:7008"))
            .unwrap()
            .expect("bind receiver");
        let counter = std::thread::spawn(move || {
            let (mut n, mut bytes) = (0u64, 0u64);
            recv_until_quiet(&rx, |d| {
                n += 1;
                bytes += d.len() as u64;
            });
            (n, bytes)
        });
        let dst = std::net::SocketAddr::from((POD_IP, 7008));
        let secs = 2.0;
        let sent = cl
            .run(move || {
                let s = udp_segment_socket(dst);
                let data = vec![0x5a; 53 * USO_GSO];
                let (start, mut sends) = (Instant::now(), 0u64);
                while start.elapsed().as_secs_f64() < secs {
                    if s.send_to(&data, dst).is_ok() {
                        sends += 1;
                    }
                }
                sends
            })
            .expect("sender");
        let (datagrams, bytes) = counter.join().expect("receiver");
        let fw = fwd.finish();
        let st = fw.ports().next().map(|p| p.stats()).unwrap_or_default();
        eprintln!(
            "client offload {client_offload}: received {:.2} Gbit/s ({datagrams} of {} datagrams); \
             client TUN reads: {} USO superpackets, {} datagrams",
            bytes as f64 * 8.0 / secs / 1e9,
            sent * 53,
            st.rx_uso,
            st.rx_packets,
        );
        assert!(datagrams > 0);
    }
}
