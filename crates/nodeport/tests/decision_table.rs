//! One test per row of the §3.6 decision table (new flow to an external frontend on the
//! master node), plus the special cases of §2.4/§3.5.

mod common;

use common::*;
use etherparse::{Icmpv4Type, SlicedPacket, TransportSlice};
use nodeport::*;

/// Row 1: A = false (no usable endpoint anywhere) → REJECT with ICMP port unreachable.
#[test]
fn row1_no_endpoints_anywhere_rejects_with_icmp_port_unreachable() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![]);
    let mut rng = rng(1);
    let orig = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let mut pkt = orig.clone();
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng);
    let Verdict::Reject { icmp } = pre.verdict else {
        panic!("expected REJECT, got {:?}", pre.verdict)
    };
    assert_eq!(pkt, orig, "rejected packet is not rewritten");
    let s = SlicedPacket::from_ip(&icmp).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
        panic!()
    };
    assert_eq!(
        ip.header().source_addr(),
        MASTER,
        "from the address it was sent to"
    );
    assert_eq!(ip.header().destination_addr(), BROWSER);
    let Some(TransportSlice::Icmpv4(ic)) = s.transport else {
        panic!()
    };
    assert!(matches!(
        ic.icmp_type(),
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port)
    ));
    // __icmp_send quotes as much as fits in 576 bytes: the whole 40-byte SYN here.
    assert_eq!(ic.payload(), &orig[..], "the whole original datagram");
    assert_eq!(icmp[1], 0xc0, "TOS: IPTOS_PREC_INTERNETCONTROL");
    let step = &pre.walk.steps[0];
    assert_eq!(
        (step.table, step.chain.as_str()),
        ("filter", "KUBE-EXTERNAL-SERVICES")
    );
    assert!(step.rule.contains("has no endpoints"));
    assert!(step.target.starts_with("REJECT"));
    assert!(
        p.conntrack().is_empty(),
        "rejected flows are never confirmed"
    );
}

/// REJECT of a datagram not addressed to the node (a ClusterIP): the engine leaves the ICMP
/// source 0.0.0.0 for the node's route back to choose (net/ipv4/icmp.c `__icmp_send`:
/// saddr = iph->daddr only for RTCF_LOCAL), and quotes at most 548 bytes (576 in all).
#[test]
fn reject_of_a_large_datagram_to_a_cluster_ip() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.ports[0].protocol = Protocol::Udp;
    let mut p = proxier(&svc, vec![]);
    let orig = udp_to_cluster_ip(&[7u8; 1000]);
    let mut pkt = orig.clone();
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(1));
    let Verdict::Reject { icmp } = pre.verdict else {
        panic!("expected REJECT, got {:?}", pre.verdict)
    };
    assert_eq!(icmp.len(), 576);
    let s = SlicedPacket::from_ip(&icmp).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else {
        panic!()
    };
    assert_eq!(ip.header().source_addr(), std::net::Ipv4Addr::UNSPECIFIED);
    let Some(TransportSlice::Icmpv4(ic)) = s.transport else {
        panic!()
    };
    assert_eq!(ic.payload(), &orig[..548]);
    let mut fixed = icmp.clone();
    nodeport::packet::nat::set_ipv4_source(&mut fixed, MASTER_CNI);
    let h = etherparse::Ipv4HeaderSlice::from_slice(&fixed)
        .unwrap()
        .to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(h.source, MASTER_CNI.octets());
}

/// A pod's UDP datagram to the nginx ClusterIP, port 80.
fn udp_to_cluster_ip(payload: &[u8]) -> Vec<u8> {
    udp(pod(0, 5), 5353, CLUSTER_IP, 80, payload)
}

/// Row 2: ETP Cluster, any source → DNAT to uniform(C), always SNAT.
#[test]
fn row2_cluster_external_client_dnat_and_masquerade() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut rng = rng(2);
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, post) = forward(&mut p, secs(0), &mut pkt, Some(MASTER), &mut rng);
    assert!(masq(&pre));
    assert_eq!(pre.ct_state, "NEW");
    let (src, sport, dst, dport) = addrs(&pkt);
    assert!(worker_pods().iter().any(|e| e.ip == dst));
    assert_eq!(dport, 80);
    assert_eq!(
        (src, sport),
        (MASTER, 40312),
        "MASQUERADE keeps a free source port"
    );
    assert_checksums(&pkt);
    let chains: Vec<&str> = pre.walk.steps.iter().map(|s| s.chain.as_str()).collect();
    assert_eq!(chains[0], "KUBE-SERVICES");
    assert_eq!(chains[1], "KUBE-NODEPORTS");
    assert!(chains[2].starts_with("KUBE-EXT-"));
    assert!(pre.walk.has_target("KUBE-MARK-MASQ"));
    assert!(pre
        .walk
        .steps
        .iter()
        .any(|s| s.target.starts_with("KUBE-SVC-")));
    assert!(pre
        .walk
        .steps
        .last()
        .unwrap()
        .target
        .starts_with("DNAT --to-destination"));
    let post = post.unwrap();
    assert!(post.dropped.is_none());
    assert!(post.walk.steps.iter().any(|s| s.target == "MASQUERADE"));
    assert_eq!(post.rewrites.len(), 1);
    assert_eq!(post.rewrites[0].kind, RewriteKind::Snat);
    assert_eq!(post.rewrites[0].before.to_string(), "203.0.113.11:40312");
    assert_eq!(post.rewrites[0].after.to_string(), "10.151.30.11:40312");
}

#[test]
fn row2_cluster_pod_and_host_sources_also_masquerade() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut rng = rng(3);
    let mut from_pod = tcp(pod(1, 5), 5555, MASTER, NODE_PORT, SYN);
    assert!(masq(&p.prerouting(secs(0), &mut from_pod, &mut rng)));
    let mut from_host = tcp(MASTER, 5556, MASTER, NODE_PORT, SYN);
    assert!(masq(&p.output(secs(0), &mut from_host, &mut rng)));
}

/// Row 3: ETP Local, POD source → DNAT to uniform(C), no SNAT — even on a node without
/// local endpoints. This is kubernetes#74383: the pod on node1 reaches master:NodePort, the
/// master DNATs to a remote endpoint without SNAT, so the reply bypasses the master.
#[test]
fn row3_local_pod_source_short_circuits_to_cluster_set_without_snat_74383() {
    let svc = nginx(TrafficPolicy::Local);
    let mut p = proxier(&svc, worker_pods());
    let mut rng = rng(4);
    let client = pod(1, 5);
    for i in 0..20 {
        let mut pkt = tcp(client, 5000 + i, MASTER, NODE_PORT, SYN);
        let (pre, post) = forward(&mut p, secs(0), &mut pkt, Some(MASTER), &mut rng);
        assert!(!masq(&pre), "no KUBE-MARK-MASQ for pod traffic");
        assert!(pre.walk.steps.iter().any(|s| s
            .rule
            .contains("pod traffic for default/nginx external destinations")));
        let (src, _, dst, _) = addrs(&pkt);
        assert_eq!(
            src, client,
            "no SNAT: the reply will go straight back to the pod"
        );
        assert!(
            worker_pods().iter().any(|e| e.ip == dst),
            "DNAT to any endpoint"
        );
        assert!(post.unwrap().walk.steps.is_empty());
    }
}

/// Row 4: ETP Local, HOST source → DNAT to uniform(C), SNAT.
#[test]
fn row4_local_host_source_masquerades_and_uses_cluster_set() {
    let svc = nginx(TrafficPolicy::Local);
    let mut p = proxier(&svc, worker_pods());
    let mut rng = rng(5);
    let mut pkt = tcp(MASTER, 41000, MASTER, NODE_PORT, SYN);
    let pre = p.output(secs(0), &mut pkt, &mut rng);
    assert!(masq(&pre));
    assert!(pre
        .walk
        .steps
        .iter()
        .any(|s| s.rule.contains("masquerade LOCAL traffic")));
    // A host on *another* node is an external client for the master (§3.5b): dropped here.
    let mut other_host = tcp(NODE1, 41000, MASTER, NODE_PORT, SYN);
    let pre = p.prerouting(secs(0), &mut other_host, &mut rng);
    assert!(matches!(
        pre.verdict,
        Verdict::Drop(DropReason::NoLocalEndpoints { .. })
    ));
}

/// Row 5: ETP Local, EXT source, L ≠ ∅ → DNAT to uniform(L), client IP preserved.
#[test]
fn row5_local_external_client_with_local_endpoints_keeps_client_ip() {
    let svc = nginx(TrafficPolicy::Local);
    let mut eps = worker_pods();
    eps.push(ep(pod(0, 20), "master"));
    eps.push(ep(pod(0, 21), "master"));
    let mut p = proxier(&svc, eps);
    let mut rng = rng(6);
    for i in 0..50 {
        let mut pkt = tcp(BROWSER, 40000 + i, MASTER, NODE_PORT, SYN);
        let (pre, post) = forward(&mut p, secs(0), &mut pkt, Some(MASTER_CNI), &mut rng);
        assert!(!masq(&pre));
        assert!(pre
            .walk
            .steps
            .iter()
            .any(|s| s.target.starts_with("KUBE-SVL-")));
        let (src, sport, dst, _) = addrs(&pkt);
        assert_eq!((src, sport), (BROWSER, 40000 + i), "client IP preserved");
        assert!(
            dst == pod(0, 20) || dst == pod(0, 21),
            "only local endpoints"
        );
        assert!(post.unwrap().dropped.is_none());
    }
}

/// Row 6: ETP Local, EXT source, L = ∅ → no DNAT, filter DROP "has no local endpoints".
/// Uses the kube-proxy test fixture name ns2/svc2:p80 to check the chain hash.
#[test]
fn row6_local_external_client_without_local_endpoints_is_dropped() {
    let mut svc = nginx(TrafficPolicy::Local);
    svc.namespace = "ns2".into();
    svc.name = "svc2".into();
    svc.ports[0].name = "p80".into();
    let mut p = proxier(&svc, worker_pods());
    let mut rng = rng(7);
    let orig = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let mut pkt = orig.clone();
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng);
    match &pre.verdict {
        Verdict::Drop(DropReason::NoLocalEndpoints { service, port_name }) => {
            assert_eq!(service, &ServiceRef::new("ns2", "svc2"));
            assert_eq!(port_name, "p80");
        }
        v => panic!("expected DROP, got {v:?}"),
    }
    assert_eq!(pkt, orig, "not DNATed");
    assert!(pre.walk.has_target("KUBE-EXT-GNZBNJ2PO5MGZ6GT"));
    let last = pre.walk.steps.last().unwrap();
    assert_eq!(last.table, "filter");
    assert_eq!(last.chain, "KUBE-EXTERNAL-SERVICES");
    assert!(last.rule.contains("ns2/svc2:p80 has no local endpoints"));
    assert_eq!(last.target, "DROP");
    assert!(p.conntrack().is_empty());
}

/// Fixture name of the Cluster-policy chain (ns3/svc3:p80, kube-proxy's TestOverallIPTablesRules).
#[test]
fn chain_names_match_kube_proxy() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.namespace = "ns3".into();
    svc.name = "svc3".into();
    svc.ports[0].name = "p80".into();
    let mut p = proxier(&svc, worker_pods());
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(8));
    assert!(pre.walk.has_target("KUBE-EXT-X27LE4BHSL4DOUIK"));
    assert!(pre.walk.has_target("KUBE-SVC-X27LE4BHSL4DOUIK"));
    let sep = pre
        .walk
        .steps
        .iter()
        .find(|s| s.target.starts_with("KUBE-SEP-"))
        .unwrap();
    let ep = sep
        .rule
        .split("-> ")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(
        sep.target,
        nodeport::chains::chain_name("KUBE-SEP-", &format!("ns3/svc3:p80tcp{ep}"))
    );
}

/// §2.4: ETP Cluster masquerades even when the chosen endpoint is on this node; the
/// address is the egress interface's (cni0 for a local pod).
#[test]
fn cluster_policy_to_local_endpoint_still_snats_to_cni0() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, vec![ep(pod(0, 7), "master")]);
    let mut rng = rng(9);
    let mut pkt = tcp(BROWSER, 40312, MASTER, NODE_PORT, SYN);
    let (pre, post) = forward(&mut p, secs(0), &mut pkt, Some(MASTER_CNI), &mut rng);
    assert!(masq(&pre));
    assert_eq!(addrs(&pkt), (MASTER_CNI, 40312, pod(0, 7), 80));
    assert!(post.unwrap().dropped.is_none());
    assert_checksums(&pkt);
}

/// §2.4 hairpin: the endpoint reaches its own Service and is picked → masquerade.
#[test]
fn hairpin_endpoint_to_itself_is_masqueraded() {
    let svc = nginx(TrafficPolicy::Cluster);
    let me = pod(0, 7);
    let mut p = proxier(&svc, vec![ep(me, "master")]);
    let mut rng = rng(10);
    let mut pkt = tcp(me, 33000, CLUSTER_IP, 80, SYN);
    let (pre, _) = forward(&mut p, secs(0), &mut pkt, Some(MASTER_CNI), &mut rng);
    assert!(masq(&pre));
    assert!(pre
        .walk
        .steps
        .iter()
        .any(|s| s.chain.starts_with("KUBE-SEP-") && s.target == "KUBE-MARK-MASQ"));
    assert_eq!(addrs(&pkt), (MASTER_CNI, 33000, me, 80));
}

/// ClusterIP from a pod (ITP Cluster, no masqueradeAll): pod IP preserved.
#[test]
fn cluster_ip_from_pod_is_not_masqueraded() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut pkt = tcp(pod(0, 5), 33000, CLUSTER_IP, 80, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(11));
    assert!(!masq(&pre));
    assert!(pre.walk.steps[0].rule.contains("default/nginx cluster IP"));
}

/// ClusterIP from outside the cluster CIDR (host, routed client): masquerade when the
/// detector is configured; nothing without it (§3.5e).
#[test]
fn cluster_ip_from_non_pod_source_masquerades_only_with_detector() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut pkt = tcp(MASTER, 33000, CLUSTER_IP, 80, SYN);
    let pre = p.output(secs(0), &mut pkt, &mut rng(12));
    assert!(masq(&pre));
    assert!(pre
        .walk
        .steps
        .iter()
        .any(|s| s.rule.contains("! -s 10.244.0.0/16")));

    let mut cfg = master_config();
    cfg.cluster_cidrs.clear();
    let mut p = proxier_with(cfg, &svc, worker_pods());
    let mut pkt = tcp(MASTER, 33000, CLUSTER_IP, 80, SYN);
    assert!(!masq(&p.output(secs(0), &mut pkt, &mut rng(12))));
}

/// §3.5d masqueradeAll: every ClusterIP flow is marked, pods included.
#[test]
fn masquerade_all_marks_cluster_ip_traffic_from_pods() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut cfg = master_config();
    cfg.masquerade_all = true;
    let mut p = proxier_with(cfg, &svc, worker_pods());
    let mut pkt = tcp(pod(0, 5), 33000, CLUSTER_IP, 80, SYN);
    assert!(masq(&p.prerouting(secs(0), &mut pkt, &mut rng(13))));
}

/// §3.5d: masqueradeAll does not add masquerade to the ETP Local external path.
#[test]
fn masquerade_all_does_not_touch_etp_local_external_path() {
    let svc = nginx(TrafficPolicy::Local);
    let mut cfg = master_config();
    cfg.masquerade_all = true;
    let mut p = proxier_with(cfg, &svc, vec![ep(pod(0, 20), "master")]);
    let mut pkt = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
    assert!(!masq(&p.prerouting(secs(0), &mut pkt, &mut rng(14))));
}

/// §5.2 ITP Local: no local endpoint but endpoints elsewhere → DROP; none anywhere → REJECT.
#[test]
fn itp_local_without_local_endpoint_drops_and_without_any_rejects() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.internal_traffic_policy = TrafficPolicy::Local;
    let mut p = proxier(&svc, worker_pods());
    let mut pkt = tcp(pod(0, 5), 33000, CLUSTER_IP, 80, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(15));
    assert!(matches!(
        pre.verdict,
        Verdict::Drop(DropReason::NoLocalEndpoints { .. })
    ));
    let last = pre.walk.steps.last().unwrap();
    assert_eq!(
        (last.table, last.chain.as_str()),
        ("filter", "KUBE-SERVICES")
    );
    assert!(last.rule.contains("has no local endpoints"));

    let mut p = proxier(&svc, vec![]);
    let mut pkt = tcp(pod(0, 5), 33000, CLUSTER_IP, 80, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(15));
    assert!(matches!(pre.verdict, Verdict::Reject { .. }));

    let mut p = proxier(&svc, vec![ep(pod(0, 20), "master"), ep(pod(1, 3), "node1")]);
    let mut pkt = tcp(pod(0, 5), 33000, CLUSTER_IP, 80, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(15));
    assert!(pre.walk.steps[0].target.starts_with("KUBE-SVL-"));
    assert_eq!(addrs(&pkt).2, pod(0, 20));
}

/// §5.4 terminating fallback: only Serving+Terminating endpoints left → still used (cluster
/// and local), but the health check counts Ready only.
#[test]
fn terminating_endpoints_are_used_when_nothing_is_ready() {
    let mut svc = nginx(TrafficPolicy::Local);
    svc.type_ = ServiceType::LoadBalancer;
    svc.health_check_node_port = Some(30100);
    let eps = vec![
        terminating(ep(pod(0, 20), "master")),
        terminating(ep(pod(1, 16), "node1")),
    ];
    let mut p = proxier(&svc, eps);
    let mut pkt = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(16));
    assert!(!masq(&pre));
    assert_eq!(addrs(&pkt).2, pod(0, 20));
    let h = p.service_health(&svc.service_ref());
    assert_eq!(h.status, 503);
    assert!(h.body.contains("\"localEndpoints\": 0"));
    // Not serving + terminating: unusable → REJECT.
    let mut gone = terminating(ep(pod(0, 20), "master"));
    gone.serving = false;
    let mut p = proxier(&svc, vec![gone]);
    let mut pkt = tcp(BROWSER, 40001, MASTER, NODE_PORT, SYN);
    assert!(matches!(
        p.prerouting(secs(0), &mut pkt, &mut rng(16)).verdict,
        Verdict::Reject { .. }
    ));
}

/// LB IP and externalIP frontends go through KUBE-EXT like NodePorts.
#[test]
fn load_balancer_and_external_ips_use_the_ext_chain() {
    let mut svc = nginx(TrafficPolicy::Local);
    svc.type_ = ServiceType::LoadBalancer;
    svc.load_balancer_ips = vec![std::net::IpAddr::V4(LB_IP)];
    svc.external_ips = vec![std::net::IpAddr::V4(EXT_IP)];
    let mut p = proxier(&svc, worker_pods());
    let mut r = rng(17);
    for dst in [LB_IP, EXT_IP] {
        let mut pkt = tcp(BROWSER, 40000, dst, 80, SYN);
        let pre = p.prerouting(secs(0), &mut pkt, &mut r);
        assert!(pre.walk.steps[0].target.starts_with("KUBE-EXT-"));
        assert!(matches!(
            pre.verdict,
            Verdict::Drop(DropReason::NoLocalEndpoints { .. })
        ));
        let mut pkt = tcp(pod(1, 5), 40000, dst, 80, SYN);
        assert!(!masq(&p.prerouting(secs(0), &mut pkt, &mut r)));
    }
}

/// Host → LB IP via OUTPUT with no endpoints is not rejected by kube-proxy (§3.3).
#[test]
fn host_to_lb_ip_without_endpoints_leaves_untouched() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.type_ = ServiceType::LoadBalancer;
    svc.load_balancer_ips = vec![std::net::IpAddr::V4(LB_IP)];
    let mut p = proxier(&svc, vec![]);
    let orig = tcp(MASTER, 40000, LB_IP, 80, SYN);
    let mut pkt = orig.clone();
    let pre = p.output(secs(0), &mut pkt, &mut rng(18));
    assert!(!masq(&pre));
    assert_eq!(pkt, orig);
    // …but the same from outside is rejected.
    let mut pkt = tcp(BROWSER, 40000, LB_IP, 80, SYN);
    assert!(matches!(
        p.prerouting(secs(0), &mut pkt, &mut rng(18)).verdict,
        Verdict::Reject { .. }
    ));
}

/// NodePorts only on local addresses (or the nodePortAddresses subset).
#[test]
fn node_port_only_on_node_addresses() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let other = std::net::Ipv4Addr::new(10, 151, 30, 99);
    let orig = tcp(BROWSER, 40000, other, NODE_PORT, SYN);
    let mut pkt = orig.clone();
    let pre = p.prerouting(secs(0), &mut pkt, &mut rng(19));
    assert!(!masq(&pre));
    assert!(pre.walk.steps.is_empty());
    assert_eq!(pkt, orig);

    let mut cfg = master_config();
    cfg.node_port_addresses = vec!["10.151.30.0/24".parse().unwrap()];
    let mut p = proxier_with(cfg, &svc, worker_pods());
    let mut via_cni = tcp(BROWSER, 40001, MASTER_CNI, NODE_PORT, SYN);
    let orig = via_cni.clone();
    p.prerouting(secs(0), &mut via_cni, &mut rng(19));
    assert_eq!(via_cni, orig, "cni0 address not in nodePortAddresses");
    let mut via_eth = tcp(BROWSER, 40002, MASTER, NODE_PORT, SYN);
    assert!(masq(&p.prerouting(secs(0), &mut via_eth, &mut rng(19))));
}

/// ClientIP affinity: sticky per source IP while fresh, refreshed by every new flow, a fresh
/// pick after the timeout; state is per node (per Proxier).
#[test]
fn session_affinity_sticks_refreshes_and_expires() {
    let mut svc = nginx(TrafficPolicy::Cluster);
    svc.session_affinity = SessionAffinity::ClientIp { timeout: secs(100) };
    let mut p = proxier(&svc, worker_pods());
    let mut r = rng(20);
    let mut first = tcp(BROWSER, 40000, MASTER, NODE_PORT, SYN);
    let pre = p.prerouting(secs(0), &mut first, &mut r);
    assert!(pre.walk.steps.last().unwrap().rule.contains("--set"));
    let chosen = addrs(&first).2;
    // New flows every 60 s keep refreshing the entry: sticky for 10 minutes.
    for i in 1..=10u16 {
        let mut pkt = tcp(BROWSER, 40000 + i, MASTER, NODE_PORT, SYN);
        let pre = p.prerouting(secs(60 * u64::from(i)), &mut pkt, &mut r);
        assert_eq!(addrs(&pkt).2, chosen);
        assert!(pre
            .walk
            .steps
            .iter()
            .any(|s| s.rule.contains("--rcheck --seconds 100")));
    }
    // After the timeout without traffic, a fresh random pick happens.
    let mut picks = std::collections::HashSet::new();
    let mut t = 600;
    for i in 0..30u16 {
        t += 101;
        let mut pkt = tcp(BROWSER, 41000 + i, MASTER, NODE_PORT, SYN);
        let pre = p.prerouting(secs(t), &mut pkt, &mut r);
        assert!(pre
            .walk
            .steps
            .iter()
            .any(|s| s.rule.contains("statistic") || s.rule.ends_with('"')));
        picks.insert(addrs(&pkt).2);
    }
    assert!(picks.len() > 1, "expired affinity re-picks at random");
    // Another client is independent.
    let mut pkt = tcp(
        std::net::Ipv4Addr::new(203, 0, 113, 99),
        1,
        MASTER,
        NODE_PORT,
        SYN,
    );
    let pre = p.prerouting(secs(t), &mut pkt, &mut r);
    assert!(!pre.walk.steps.iter().any(|s| s.rule.contains("--rcheck")));
}

/// Non-service traffic is accepted unmodified and still tracked (replies are REPLY).
#[test]
fn non_service_traffic_is_tracked_without_nat() {
    let svc = nginx(TrafficPolicy::Cluster);
    let mut p = proxier(&svc, worker_pods());
    let mut r = rng(21);
    let mut pkt = tcp(
        pod(0, 5),
        50000,
        std::net::Ipv4Addr::new(1, 1, 1, 1),
        443,
        SYN,
    );
    let (pre, post) = forward(&mut p, secs(0), &mut pkt, Some(MASTER), &mut r);
    assert!(!masq(&pre));
    assert!(post.unwrap().dropped.is_none());
    assert_eq!(p.conntrack().len(), 1);
    let mut reply = tcp(
        std::net::Ipv4Addr::new(1, 1, 1, 1),
        443,
        pod(0, 5),
        50000,
        SYN | ACK,
    );
    let pre = p.prerouting(secs(1), &mut reply, &mut r);
    assert_eq!(pre.ct_state, "REPLY");
}
