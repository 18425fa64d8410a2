//! The rules generator against kube-proxy's own expected dumps.
//!
//! `overall_iptables_rules` ports `TestOverallIPTablesRules` of kubernetes/kubernetes
//! `pkg/proxy/iptables/proxier_test.go`: the same six services and slices on the fake
//! proxier's node ("test-node", node IP 192.168.0.2, cluster CIDR 10.0.0.0/8, no
//! `--random-fully`), compared with upstream's expected `iptables-restore` input
//! (tests/fixtures/overall_iptables_rules.txt, copied verbatim). Like upstream's
//! `assertIPTablesRulesEqual`, chains are compared as sets and each chain's rules in order.
//! The one deliberate difference: the fake proxier has nfacct counters, the lab does not
//! (kube-proxy then omits `-m nfacct` and the localhost-only KUBE-NODEPORTS rules), so those
//! are stripped from the expected text.

use std::net::Ipv4Addr;
use std::time::Duration;

use nodeport::iptables::{probability, render, saved_probability};
use nodeport::*;
use upstream::{fake_config, slice, sorted_rules as parse, svc};

mod upstream;

/// The services and slices of TestOverallIPTablesRules.
fn overall_model() -> (Vec<Service>, Vec<EndpointSlice>) {
    let svc1 = svc("ns1", "svc1", ServiceType::ClusterIp, "172.30.0.41", None);
    let mut svc2 = svc(
        "ns2",
        "svc2",
        ServiceType::LoadBalancer,
        "172.30.0.42",
        Some(3001),
    );
    svc2.external_traffic_policy = TrafficPolicy::Local;
    svc2.load_balancer_ips = vec![std::net::IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))];
    svc2.external_ips = vec![std::net::IpAddr::V4(Ipv4Addr::new(192, 168, 99, 22))];
    svc2.health_check_node_port = Some(30000);
    let svc3 = svc(
        "ns3",
        "svc3",
        ServiceType::NodePort,
        "172.30.0.43",
        Some(3003),
    );
    let mut svc4 = svc("ns4", "svc4", ServiceType::NodePort, "172.30.0.44", None);
    svc4.external_ips = vec![std::net::IpAddr::V4(Ipv4Addr::new(192, 168, 99, 33))];
    let mut svc5 = svc(
        "ns5",
        "svc5",
        ServiceType::LoadBalancer,
        "172.30.0.45",
        Some(3002),
    );
    svc5.load_balancer_ips = vec![std::net::IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8))];
    // Upstream sets healthCheckNodePort on this Cluster-policy service too; kube-proxy
    // ignores it (no NeedsHealthCheck), as does the lab.
    svc5.health_check_node_port = Some(30000);
    svc5.load_balancer_source_ranges = vec!["203.0.113.0/25".parse().unwrap()];
    svc5.session_affinity = SessionAffinity::ClientIp {
        timeout: Duration::from_secs(10800),
    };
    let svc6 = svc("ns6", "svc6", ServiceType::ClusterIp, "172.30.0.46", None);
    let slices = vec![
        slice("ns1", "svc1", &[("10.180.0.1", None)]),
        slice("ns2", "svc2", &[("10.180.0.2", None)]),
        slice("ns3", "svc3", &[("10.180.0.3", None)]),
        slice(
            "ns4",
            "svc4",
            &[("10.180.0.4", None), ("10.180.0.5", Some("test-node"))],
        ),
        slice("ns5", "svc5", &[("10.180.0.3", None)]),
    ];
    (vec![svc1, svc2, svc3, svc4, svc5, svc6], slices)
}

/// Upstream's expected dump without the nfacct parts (the lab has no nfacct counters).
fn expected_without_nfacct() -> String {
    include_str!("fixtures/overall_iptables_rules.txt")
        .lines()
        .filter(|l| !(l.contains("-d 127.0.0.0/8 --dport") && l.contains("nfacct")))
        .map(|l| l.replace(" -m nfacct --nfacct-name ct_state_invalid_dropped_pkts", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn overall_iptables_rules() {
    let (services, slices) = overall_model();
    let got = render(&fake_config(), &services, &slices, RulesFormat::KubeProxy);
    let want = parse(&expected_without_nfacct());
    let got = parse(&got);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (table, (chains, rules)) in &want {
        let (gc, gr) = &got[table];
        assert_eq!(gc, chains, "chains of table {table}");
        for (chain, list) in rules {
            assert_eq!(gr.get(chain), Some(list), "rules of {table} {chain}");
        }
        assert_eq!(
            gr.keys().collect::<Vec<_>>(),
            rules.keys().collect::<Vec<_>>(),
            "chains with rules in {table}"
        );
    }
}

#[test]
fn probability_matches_kube_proxy_and_iptables_save() {
    // computeProbability: "%0.10f"; iptables-save reads the kernel's 31-bit value back.
    assert_eq!(probability(2), "0.5000000000");
    assert_eq!(probability(3), "0.3333333333");
    assert_eq!(saved_probability(&probability(3)), "0.33333333349");
    assert_eq!(saved_probability(&probability(2)), "0.50000000000");
    assert_eq!(saved_probability(&probability(4)), "0.25000000000");
}

#[test]
fn iptables_save_form_of_the_overall_model() {
    let (services, slices) = overall_model();
    let mut c = fake_config();
    c.masquerade_random_fully = true;
    let text = iptables_save(&c, &services, &slices);
    // nat first, then filter; built-in chains declared with their policy.
    let nat = text.find("*nat").unwrap();
    let filter = text.find("*filter").unwrap();
    assert!(nat < filter);
    for line in [
        ":PREROUTING ACCEPT [0:0]",
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O",
        "-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment \"ns4/svc4:p80 -> 10.180.0.4:80\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC",
        "-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment \"ns5/svc5:p80 -> 10.180.0.3:80\" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-I77PXRDZVX7PMWMN --mask 255.255.255.255 --rsource -j KUBE-SEP-I77PXRDZVX7PMWMN",
        "-A KUBE-SEP-I77PXRDZVX7PMWMN -p tcp -m comment --comment \"ns5/svc5:p80\" -m recent --set --name KUBE-SEP-I77PXRDZVX7PMWMN --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.3:80",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
        "-A KUBE-SERVICES -d 172.30.0.46/32 -p tcp -m comment --comment \"ns6/svc6:p80 has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable",
        "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        "-A KUBE-FW-NUKIZ6OKUXPJNT4C -s 203.0.113.0/25 -m comment --comment \"ns5/svc5:p80 loadbalancer IP\" -j KUBE-EXT-NUKIZ6OKUXPJNT4C",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    // EnsureRule(Prepend): the last jump of a built-in chain comes first.
    let input: Vec<&str> = text[filter..]
        .lines()
        .filter(|l| l.starts_with("-A INPUT "))
        .collect();
    let order: Vec<&str> = input
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "KUBE-FIREWALL",
            "KUBE-PROXY-FIREWALL",
            "KUBE-NODEPORTS",
            "KUBE-EXTERNAL-SERVICES"
        ]
    );
}

#[test]
fn knobs_change_the_rules() {
    let (services, slices) = overall_model();
    let mut c = fake_config();
    c.conntrack_tcp_be_liberal = true;
    c.localhost_node_ports = false;
    let text = iptables_save(&c, &services, &slices);
    assert!(!text.contains("--ctstate INVALID"));
    assert!(!text.contains("block incoming localnet connections"));
    assert!(text.contains(
        "-A KUBE-SERVICES ! -d 127.0.0.0/8 -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    ));
    assert!(!text.contains("--random-fully"));
    // Node IP inside a source range: the LB IP is allowed as a source too.
    let mut services = services;
    services[4].load_balancer_source_ranges = vec!["192.168.0.0/24".parse().unwrap()];
    let text = iptables_save(&c, &services, &slices);
    assert!(text.contains(
        "-A KUBE-FW-NUKIZ6OKUXPJNT4C -s 5.6.7.8/32 -m comment --comment \"ns5/svc5:p80 loadbalancer IP\" -j KUBE-EXT-NUKIZ6OKUXPJNT4C"
    ));
}

/// One chain of kube-proxy's restore input, as upstream's `assertIPTablesChainEqual` reads it.
fn chain_rules(text: &str, table: &str, chain: &str) -> Vec<String> {
    parse(text)
        .get(table)
        .and_then(|(_, rules)| rules.get(chain).cloned())
        .unwrap_or_default()
}

/// `TestDropInvalidRule` (the cases without nfacct): the INVALID drop goes with
/// `nf_conntrack_tcp_be_liberal`.
#[test]
fn drop_invalid_rule() {
    let tail = [
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT",
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ];
    for (liberal, drop) in [
        (
            false,
            Some("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"),
        ),
        (true, None),
    ] {
        let mut c = fake_config();
        c.conntrack_tcp_be_liberal = liberal;
        let text = render(&c, &[], &[], RulesFormat::KubeProxy);
        let want: Vec<String> = drop.into_iter().chain(tail).map(String::from).collect();
        assert_eq!(
            chain_rules(&text, "filter", "KUBE-FORWARD"),
            want,
            "tcpLiberal {liberal}"
        );
    }
}

/// `TestMasqueradeRule`: `--random-fully` when iptables has it.
#[test]
fn masquerade_rule() {
    for random_fully in [false, true] {
        let mut c = fake_config();
        c.masquerade_random_fully = random_fully;
        let text = render(&c, &[], &[], RulesFormat::KubeProxy);
        let fully = if random_fully { " --random-fully" } else { "" };
        let want = vec![
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN".to_string(),
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000".to_string(),
            format!("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{fully}"),
        ];
        assert_eq!(chain_rules(&text, "nat", "KUBE-POSTROUTING"), want);
    }
}
