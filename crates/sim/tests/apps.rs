//! The pods' apps on their own ports: agnhost netexec over HTTP and UDP, refusals on ports
//! nobody listens on, apps stopped and started, nginx's keep-alive.

use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use sim::{
    AppDesc, AppKind, Host, HostConfig, OutcomeKind, PodDesc, RequestOpts, RequestOutcome,
    ServerInfo, WallClock, World,
};
use vswitch::Port;

mod common;
use common::{ip, netexec, node1_world};

/// node1 with a netexec pod `web` (8080/TCP, 8081/UDP), an nginx pod `ng` on 8000 and a
/// client pod `tester` next to them.
fn world() -> World {
    let pod = |name: &str, addr: &str, app: AppDesc| PodDesc {
        name: name.into(),
        ip: ip(addr),
        ipv6: None,
        node: "node1".into(),
        apps: vec![app],
    };
    node1_world(
        vec![
            pod("web", "10.244.1.16", netexec(8080, 8081)),
            pod("ng", "10.244.1.17", AppDesc::nginx(8000)),
        ],
        3,
        true,
    )
}

fn get(w: &mut World, dst: &str, path: &str) -> RequestOutcome {
    let opts = RequestOpts {
        path: path.into(),
        ..RequestOpts::default()
    };
    w.request(
        "tester",
        dst.parse::<std::net::SocketAddrV4>().unwrap(),
        opts,
    )
    .unwrap()
}

#[test]
fn netexec_answers_like_agnhost_on_its_own_port() {
    let mut w = world();
    let out = get(&mut w, "10.244.1.16:8080", "/clientip");
    assert_eq!(out.kind, OutcomeKind::Ok, "{out}");
    assert_eq!(out.body, format!("10.244.1.50:{}", out.client_port));
    let e = w.last_access_entry("web").unwrap();
    assert_eq!(e.remote_addr, ip("10.244.1.50"));
    assert_eq!(e.request, "GET /clientip HTTP/1.1");
    assert!(e.line.starts_with("10.244.1.50 - - ["), "{}", e.line);
    assert_eq!(get(&mut w, "10.244.1.16:8080", "/hostname").body, "web");
    assert_eq!(
        get(&mut w, "10.244.1.16:8080", "/echo?msg=hi%21").body,
        "hi!"
    );
    assert!(get(&mut w, "10.244.1.16:8080", "/")
        .body
        .starts_with("NOW: "));
    // Go's net/http: no Connection header on a kept-alive connection.
    assert_eq!(out.header("Connection"), None);
}

#[test]
fn a_port_nobody_listens_on_is_refused() {
    let mut w = world();
    let out = get(&mut w, "10.244.1.16:80", "/");
    assert_eq!(out.kind, OutcomeKind::Refused, "{out}");
    let out = get(&mut w, "10.244.1.17:80", "/");
    assert_eq!(out.kind, OutcomeKind::Refused, "{out}");
    let out = get(&mut w, "10.244.1.17:8000", "/");
    assert_eq!(out.kind, OutcomeKind::Ok, "{out}");
    assert_eq!(out.body, "pod ng on node1 (10.244.1.17)\n");
}

#[test]
fn nginx_keeps_the_connection_open_and_the_client_closes_first() {
    let mut w = world();
    let out = get(&mut w, "10.244.1.17:8000", "/");
    assert_eq!(out.header("Connection"), Some("keep-alive"));
    w.run_until(w.now() + Duration::from_secs(1));
    // The client's FIN came first: the pod's side sent its FIN after the client's.
    let lines = w.trace_lines_for(sim::RequestId(0));
    let fin_from = |src: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!("out {src}")) && l.contains(" FA"))
            .unwrap_or_else(|| panic!("no FIN from {src}:\n{}", lines.join("\n")))
    };
    assert!(fin_from("10.244.1.50") < fin_from("10.244.1.17:8000"));
}

#[test]
fn stopped_apps_refuse_and_started_apps_serve_again() {
    let mut w = world();
    assert_eq!(get(&mut w, "10.244.1.16:8080", "/").kind, OutcomeKind::Ok);
    w.set_apps_running("web", false).unwrap();
    let out = get(&mut w, "10.244.1.16:8080", "/");
    assert_eq!(out.kind, OutcomeKind::Refused, "{out}");
    w.set_apps_running("web", true).unwrap();
    let out = get(&mut w, "10.244.1.16:8080", "/hostname");
    assert_eq!((out.kind, out.body.as_str()), (OutcomeKind::Ok, "web"));
    assert!(w.set_apps_running("nobody", false).is_err());
}

// ----- UDP, straight at a host --------------------------------------------------------

const POD: [u8; 4] = [10, 244, 1, 16];
const PEER: [u8; 4] = [10, 151, 30, 11];

fn pod_host() -> Host {
    let mut h = Host::new(
        HostConfig {
            link: "pod".into(),
            ip: POD.into(),
            prefix_len: 24,
            gateway: ip("10.244.1.1"),
            seed: 1,
            v6: None,
        },
        Duration::ZERO,
    );
    let info = ServerInfo {
        pod: "web".into(),
        node: "node1".into(),
        ip: POD.into(),
    };
    h.with_apps(info, WallClock::default(), &[netexec(8080, 8081)]);
    h
}

fn datagram(dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(PEER, POD, 64).udp(40000, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// What the host sends back: (ICMP type, code) or the UDP payload.
fn exchange(h: &mut Host, pkt: &[u8]) -> Result<String, (u8, u8)> {
    h.send(Duration::ZERO, pkt);
    let reply = h.recv(Duration::ZERO).expect("an answer");
    let s = SlicedPacket::from_ip(&reply).unwrap();
    let Some(NetSlice::Ipv4(ip4)) = &s.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip4.header().destination(), PEER);
    match s.transport {
        Some(TransportSlice::Udp(u)) => Ok(String::from_utf8_lossy(u.payload()).into_owned()),
        Some(TransportSlice::Icmpv4(i)) => Err((i.type_u8(), i.code_u8())),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn netexec_udp_commands_and_port_unreachable() {
    let mut h = pod_host();
    assert_eq!(
        exchange(&mut h, &datagram(8081, b"hostname")),
        Ok("web".into())
    );
    assert_eq!(
        exchange(&mut h, &datagram(8081, b"clientip\n")),
        Ok("10.151.30.11:40000".into())
    );
    assert_eq!(
        exchange(&mut h, &datagram(8081, b"echo hello")),
        Ok("hello".into())
    );
    // Nobody on 9999/UDP: ICMP port unreachable (type 3, code 3), as from Linux.
    assert_eq!(exchange(&mut h, &datagram(9999, b"hostname")), Err((3, 3)));
    h.stop_apps();
    assert!(!h.apps_running());
    assert_eq!(exchange(&mut h, &datagram(8081, b"hostname")), Err((3, 3)));
    h.start_apps();
    assert_eq!(
        exchange(&mut h, &datagram(8081, b"hostname")),
        Ok("web".into())
    );
}

#[test]
fn a_syn_to_a_stopped_app_draws_an_rst() {
    let mut h = pod_host();
    h.stop_apps();
    let mut syn = Vec::new();
    PacketBuilder::ipv4(PEER, POD, 64)
        .tcp(40000, 8080, 1000, 64240)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    h.send(Duration::ZERO, &syn);
    let reply = h.recv(Duration::ZERO).expect("an answer");
    let s = SlicedPacket::from_ip(&reply).unwrap();
    let Some(TransportSlice::Tcp(t)) = s.transport else {
        panic!("not TCP")
    };
    assert!(t.rst());
}

#[test]
fn serve_hostname_and_generic_images_answer_over_http() {
    let mut w = world();
    let desc = |kind, port| AppDesc {
        kind,
        http_ports: vec![port],
        raw_tcp_ports: Vec::new(),
        udp_ports: Vec::new(),
    };
    for (name, ip, app) in [
        ("sh", "10.244.1.20", desc(AppKind::ServeHostname, 9376)),
        ("gen", "10.244.1.21", desc(AppKind::GenericHttp, 3000)),
    ] {
        let pod = PodDesc {
            name: name.into(),
            ip: ip.parse().unwrap(),
            ipv6: None,
            node: "node1".into(),
            apps: vec![app],
        };
        w.add_pod(&pod).unwrap();
    }
    let out = get(&mut w, "10.244.1.20:9376", "/anything");
    assert_eq!((out.kind, out.body.as_str()), (OutcomeKind::Ok, "sh"));
    let out = get(&mut w, "10.244.1.21:3000", "/x");
    assert_eq!(out.body, "pod gen on node1 (10.244.1.21)\n");
    assert_eq!(out.header("Server"), None);
}

/// A TCP segment from the peer to the pod.
fn segment(seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(PEER, POD, 64).tcp(40001, 8080, seq, 64240);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// Every TCP segment the host sends by `now`: (seq, fin, payload length).
fn drain_tcp(h: &mut Host, now: Duration) -> Vec<(u32, bool, usize)> {
    let mut v = Vec::new();
    while let Some(p) = h.recv(now) {
        let s = SlicedPacket::from_ip(&p).unwrap();
        if let Some(TransportSlice::Tcp(t)) = s.transport {
            v.push((t.sequence_number(), t.fin(), t.payload().len()));
        }
    }
    v
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_keepalive_timeout() {
    let mut h = pod_host();
    h.send(Duration::ZERO, &segment(1000, None, true, &[]));
    let synack = drain_tcp(&mut h, Duration::ZERO);
    let isn = synack[0].0;
    let req = b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n";
    h.send(Duration::ZERO, &segment(1001, Some(isn + 1), false, req));
    let resp = drain_tcp(&mut h, Duration::ZERO);
    assert!(
        resp.iter().any(|(_, fin, len)| *len > 0 && !fin),
        "{resp:?}"
    );
    // Kept open: no FIN within 64 s of silence, one at 65 s (nginx's keepalive_timeout).
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(64) {
        t += Duration::from_secs(1);
        assert!(
            drain_tcp(&mut h, t).iter().all(|(_, fin, _)| !fin),
            "FIN at {t:?}"
        );
    }
    let at65 = drain_tcp(&mut h, Duration::from_secs(65));
    assert!(at65.iter().any(|(_, fin, _)| *fin), "{at65:?}");
}
