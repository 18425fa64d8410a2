//! The pods' apps on their own ports: agnhost netexec over HTTP and UDP, refusals on ports
//! nobody listens on, apps stopped and started, nginx's keep-alive.

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use sim::{
    AppDesc, AppKind, Attachment, ClientDesc, Host, HostConfig, NodeDesc, OutcomeKind, PodDesc,
    RequestOpts, RequestOutcome, ServerInfo, WallClock, World, WorldSpec,
};
use vswitch::Port;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn netexec(http: u16, udp: u16) -> AppDesc {
    AppDesc {
        kind: AppKind::Netexec,
        http_ports: vec![http],
        raw_tcp_ports: Vec::new(),
        udp_ports: vec![udp],
    }
}

/// node1 with a netexec pod `web` (8080/TCP, 8081/UDP), an nginx pod `ng` on 8000 and a
/// client pod `tester` next to them.
fn world() -> World {
    World::new(WorldSpec {
        nodes: vec![NodeDesc::new(
            "node1",
            ip("10.151.30.12"),
            "10.244.1.0/24".parse().unwrap(),
        )],
        clients: vec![ClientDesc {
            name: "tester".into(),
            ip: ip("10.244.1.50"),
            attach: Attachment::Pod {
                node: "node1".into(),
            },
        }],
        pods: vec![
            PodDesc {
                name: "web".into(),
                ip: ip("10.244.1.16"),
                node: "node1".into(),
                apps: vec![netexec(8080, 8081)],
            },
            PodDesc {
                name: "ng".into(),
                ip: ip("10.244.1.17"),
                node: "node1".into(),
                apps: vec![AppDesc::nginx(8000)],
            },
        ],
        seed: 3,
        ..WorldSpec::default()
    })
    .unwrap()
}

fn get(w: &mut World, dst: &str, path: &str) -> RequestOutcome {
    let opts = RequestOpts {
        path: path.into(),
        ..RequestOpts::default()
    };
    w.request("tester", dst.parse().unwrap(), opts).unwrap()
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
