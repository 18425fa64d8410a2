//! The embedded UDP client (`World::start_udp`): one datagram, then the answer, a timeout or
//! an ICMP error; a fixed source port is kept; the flow's trace follows the datagram.

use std::time::Duration;

use sim::{OutcomeKind, PodDesc, UdpOpts, World};

mod common;
use common::{ip, netexec, node1_world};

/// One node, an agnhost netexec pod answering UDP on 8081, and a client pod next to it.
fn world() -> World {
    let pod = PodDesc {
        name: "netexec-1".into(),
        ip: ip("10.244.1.16"),
        ipv6: None,
        node: "node1".into(),
        apps: vec![netexec(8080, 8081)],
    };
    node1_world(vec![pod], 5, true)
}

fn opts(payload: &str, source_port: Option<u16>) -> UdpOpts {
    UdpOpts {
        payload: payload.into(),
        timeout: Duration::from_secs(2),
        source_port,
    }
}

#[test]
fn answer_from_a_fixed_source_port() {
    let mut w = world();
    let dst = "10.244.1.16:8081"
        .parse::<std::net::SocketAddrV4>()
        .unwrap();
    let id = w
        .start_udp("tester", dst, opts("clientip", Some(40000)))
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Ok, "{out:?}");
    assert_eq!(
        out.body, "10.244.1.50:40000",
        "netexec saw the client's address and port"
    );
    assert_eq!(out.client_port, 40000);
    assert!(out.message.is_empty());
    // The trace of this request follows the UDP flow both ways.
    let hops = w.trace_lines_for(id);
    assert!(hops
        .iter()
        .any(|l| l.contains("10.244.1.50:40000 → 10.244.1.16:8081")));
    assert!(hops
        .iter()
        .any(|l| l.contains("10.244.1.16:8081 → 10.244.1.50:40000")));
    let id = w.start_udp("tester", dst, opts("hostname", None)).unwrap();
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(
        (out.kind, out.body.as_str()),
        (OutcomeKind::Ok, "netexec-1")
    );
    assert!((32768..=60999).contains(&out.client_port), "ephemeral port");
}

#[test]
fn closed_port_is_refused_at_once() {
    let mut w = world();
    let id = w
        .start_udp(
            "tester",
            "10.244.1.16:9999"
                .parse::<std::net::SocketAddrV4>()
                .unwrap(),
            opts("x", None),
        )
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Refused, "{out:?}");
    assert_eq!(out.elapsed, Duration::ZERO);
    assert!(
        out.message.contains("Connection refused"),
        "{}",
        out.message
    );
}

#[test]
fn no_answer_is_a_timeout_after_the_wait() {
    let mut w = world();
    // netexec does not answer an unknown command.
    let id = w
        .start_udp(
            "tester",
            "10.244.1.16:8081"
                .parse::<std::net::SocketAddrV4>()
                .unwrap(),
            opts("what", None),
        )
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Timeout, "{out:?}");
    assert_eq!(out.elapsed, Duration::from_secs(2));
    // A deleted pod: the datagram is lost, no ICMP either.
    w.remove_pod("netexec-1").unwrap();
    let id = w
        .start_udp(
            "tester",
            "10.244.1.16:8081"
                .parse::<std::net::SocketAddrV4>()
                .unwrap(),
            opts("hostname", None),
        )
        .unwrap();
    let out = w.run_until_complete(id).unwrap();
    assert_eq!(out.kind, OutcomeKind::Timeout, "{out:?}");
}
