//! SCTP frontends (kube-proxy programs `-p sctp` rules like TCP/UDP ones) and the
//! simplified SCTP conntrack model: NAT both ways with the CRC32c recomputed, COOKIE_WAIT
//! (3 s) → ESTABLISHED (210 s, ASSURED) → CLOSED (10 s), with nf_conntrack_proto_sctp.c's
//! timeouts.

mod common;

use common::*;
use nodeport::packet::sctp_chunk::{ABORT, COOKIE_ACK, COOKIE_ECHO, INIT, INIT_ACK};
use nodeport::*;

const DATA: u8 = 0;

fn sctp_service() -> Service {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Sctp;
    svc
}

fn entry(p: &Proxier) -> ConnEntry {
    p.conntrack().entries().next().unwrap().clone()
}

#[test]
fn sctp_nodeport_is_dnated_masqueraded_and_tracked() {
    let svc = sctp_service();
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut r = rng(1);
    let mut init = sctp(BROWSER, 5000, MASTER, NODE_PORT, INIT);
    let (pre, post) = forward(&mut p, secs(0), &mut init, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "NEW");
    assert!(masq(&pre));
    assert!(post.unwrap().dropped.is_none());
    let (s, sport, d, dport) = addrs(&init);
    assert_eq!((s, d, dport), (MASTER, pod(1, 16), 80));
    assert_checksums(&init);
    // kube-proxy's rules for the port: `-p sctp`, chains hashed with "sctp".
    let h = chains::port_proto_hash("default/nginx", "sctp");
    assert!(pre.walk.has_chain(&format!("KUBE-EXT-{h}")));
    assert!(pre
        .walk
        .steps
        .iter()
        .any(|st| st.rule.contains("-p sctp --dport 32761")));
    assert_eq!(entry(&p).sctp_state(), "COOKIE_WAIT");
    assert_eq!(entry(&p).expires(), secs(3));

    // INIT_ACK from the pod: un-NATed back to the client, CRC32c valid.
    let mut ack = sctp(pod(1, 16), 80, MASTER, sport, INIT_ACK);
    let (pre, _) = forward(&mut p, secs(1), &mut ack, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "REPLY");
    assert_eq!(addrs(&ack), (MASTER, NODE_PORT, BROWSER, 5000));
    assert_checksums(&ack);
    assert_eq!(
        (entry(&p).sctp_state(), entry(&p).expires()),
        ("COOKIE_WAIT", secs(4))
    );

    // COOKIE_ECHO: COOKIE_ECHOED, still 3 s.
    let mut echo = sctp(BROWSER, 5000, MASTER, NODE_PORT, COOKIE_ECHO);
    let (pre, _) = forward(&mut p, secs(2), &mut echo, Some(MASTER), &mut r);
    assert_eq!(pre.ct_state, "ESTABLISHED");
    assert_eq!(addrs(&echo).2, pod(1, 16));
    assert_checksums(&echo);
    assert_eq!(
        (entry(&p).sctp_state(), entry(&p).expires()),
        ("COOKIE_ECHOED", secs(5))
    );
    // COOKIE_ACK from the pod: the association is up.
    let mut cack = sctp(pod(1, 16), 80, MASTER, sport, COOKIE_ACK);
    forward(&mut p, secs(2), &mut cack, Some(MASTER), &mut r);
    assert_checksums(&cack);
    let e = entry(&p);
    assert!(e.assured());
    assert_eq!(e.expires(), secs(212));
    assert!(
        e.format(secs(2))
            .starts_with("sctp     132 210 ESTABLISHED src=203.0.113.11"),
        "{}",
        e.format(secs(2))
    );
    // DATA refreshes ESTABLISHED without changing it.
    let mut data = sctp(BROWSER, 5000, MASTER, NODE_PORT, DATA);
    forward(&mut p, secs(3), &mut data, Some(MASTER), &mut r);
    assert_eq!(
        (entry(&p).sctp_state(), entry(&p).expires()),
        ("ESTABLISHED", secs(213))
    );

    // ABORT: CLOSED, 10 s.
    let mut abort = sctp(pod(1, 16), 80, MASTER, sport, ABORT);
    forward(&mut p, secs(4), &mut abort, Some(MASTER), &mut r);
    assert_eq!(
        (entry(&p).sctp_state(), entry(&p).expires()),
        ("CLOSED", secs(14))
    );
}

#[test]
fn sctp_handshake_that_stalls_expires_after_3s() {
    let svc = sctp_service();
    let mut p = proxier(&svc, vec![ep(pod(1, 16), "node1")]);
    let mut init = sctp(BROWSER, 5000, MASTER, NODE_PORT, INIT);
    forward(&mut p, secs(0), &mut init, Some(MASTER), &mut rng(2));
    p.expire(secs(2));
    assert_eq!(p.conntrack().len(), 1);
    p.expire(secs(3));
    assert_eq!(p.conntrack().len(), 0);
}

#[test]
fn sctp_without_endpoints_is_rejected_and_tcp_rules_do_not_match_sctp() {
    let svc = sctp_service();
    let mut p = proxier(&svc, vec![]);
    let mut init = sctp(BROWSER, 5000, MASTER, NODE_PORT, INIT);
    let pre = p.prerouting(secs(0), &mut init, &mut rng(3));
    assert!(matches!(pre.verdict, Verdict::Reject { .. }));
    assert!(pre.walk.steps[0].rule.contains("-p sctp"));
    // A TCP service on the same port number is no SCTP frontend.
    let tcp_svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&tcp_svc, worker_pods());
    let mut init = sctp(BROWSER, 5000, MASTER, NODE_PORT, INIT);
    let pre = p.prerouting(secs(0), &mut init, &mut rng(3));
    assert!(pre.walk.steps.is_empty());
    assert_eq!(addrs(&init).2, MASTER, "not DNATed");
    assert_eq!(
        p.match_frontend(Protocol::Sctp, std::net::IpAddr::V4(MASTER), NODE_PORT),
        None,
        "no SCTP frontend"
    );
}

/// Out-of-the-blue packets (nf_conntrack_sctp_packet: ABORT, SHUTDOWN_COMPLETE or
/// COOKIE_ACK on an unconfirmed entry) are INVALID: no rules run, nothing is tracked.
#[test]
fn sctp_out_of_the_blue_is_invalid() {
    let svc = sctp_service();
    let mut p = proxier(&svc, worker_pods());
    for chunk in [ABORT, COOKIE_ACK, 14] {
        let mut pkt = sctp(BROWSER, 5000, MASTER, NODE_PORT, chunk);
        let pre = p.prerouting(secs(0), &mut pkt, &mut rng(4));
        assert_eq!(pre.ct_state, "INVALID", "chunk {chunk}");
        assert!(pre.walk.steps.is_empty());
        assert_eq!(addrs(&pkt).2, MASTER);
    }
    assert_eq!(p.conntrack().len(), 0);
}
