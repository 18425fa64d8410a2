//! kube-proxy's IPv6 tests replayed against the engine and the rules printer.
//!
//! Ports of kubernetes/kubernetes `pkg/proxy/iptables/proxier_test.go`:
//! - `TestNodePorts`, its three IPv6 cases ("ipv6, localhost-nodeports enabled", "ipv6,
//!   localhost-nodeports disabled", "ipv6, localhost-nodeports disabled, multiple
//!   nodeport-addresses") with their `runPacketFlowTests` flows: pod to cluster IP,
//!   external to nodePort, node to nodePort, localhost (`::1`) to nodePort (always ignored:
//!   "localhost to NodePort is only allowed in IPv4"), and the secondary node IP. The IPv4
//!   cases stay in `packet_flows.rs`' world; they are replayed here too, on the same
//!   dual-stack node, to show one engine keeps the families apart.
//! - `TestEnableLocalhostNodePortsIPv6` / `TestDisableLocalhostNodePortsIPv6`: the IPv6
//!   proxier's `iptables-restore` input, byte for byte.
//!
//! The fake proxier's world (`NewFakeProxier` with an IPv6 fake iptables): node
//! "test-node" with `testNodeIPs` = 192.168.0.2, 192.168.1.2, 192.168.99.11, 2001:db8::1,
//! 2001:db8:1::2; detect-local 10.0.0.0/8 and fd00:10::/64.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::PacketBuilder;
use nodeport::iptables::{render_family, RulesFormat};
use nodeport::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use upstream::sorted_rules;

mod upstream;

const NODE_IPS: [&str; 5] = [
    "192.168.0.2",
    "192.168.1.2",
    "192.168.99.11",
    "2001:db8::1",
    "2001:db8:1::2",
];

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(localhost_node_ports: bool, node_port_addresses: &[&str]) -> ProxyConfig {
    let mut c = ProxyConfig::new("test-node", NODE_IPS.iter().map(|s| a(s)).collect());
    c.cluster_cidrs = vec![
        "10.0.0.0/8".parse().unwrap(),
        "fd00:10::/64".parse().unwrap(),
    ];
    c.masquerade_random_fully = false;
    c.localhost_node_ports = localhost_node_ports;
    c.node_port_addresses = node_port_addresses
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    c
}

/// ns1/svc1, NodePort 3001, port "p80" TCP 80, ClusterIP `cluster_ip` only (a single-stack
/// Service of that family, as each of upstream's fake proxiers sees it).
fn service(cluster_ip: &str) -> Service {
    Service {
        cluster_ips: vec![a(cluster_ip)],
        ip_families: vec![IpFamily::of(a(cluster_ip))],
        ports: vec![ServicePort {
            name: "p80".into(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: 80,
            node_port: Some(3001),
        }],
        ..Service::new("ns1", "svc1", ServiceType::NodePort)
    }
}

/// `makeTestEndpointSlice`: epIP1 with no node, epIP2 on test-node.
fn slice(ep1: &str, ep2: &str, node: &str) -> EndpointSlice {
    let ep = |ip: &str, node: Option<&str>| Endpoint {
        ip: a(ip),
        node_name: node.map(String::from),
        ready: true,
        serving: true,
        terminating: false,
    };
    EndpointSlice {
        service: ServiceRef::new("ns1", "svc1"),
        address_type: IpFamily::of(a(ep1)),
        ports: vec![EndpointPort {
            name: "p80".into(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints: vec![ep(ep1, None), ep(ep2, Some(node))],
    }
}

fn syn(src: IpAddr, dst: IpAddr, dport: u16) -> Vec<u8> {
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let mut out = Vec::new();
    b.tcp(40000, dport, 1, 64240)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

/// upstream's `packetFlowTest`: `output` is the set of DNAT destinations over many draws
/// ("" = no service rule matched), `masq` whether KUBE-MARK-MASQ was hit.
struct Flow {
    name: &'static str,
    src: &'static str,
    dst: &'static str,
    port: u16,
    output: String,
    masq: bool,
}

/// Local sources (the node's addresses, loopback) enter by `output()`, as upstream's tracer
/// gives them `--src-type LOCAL`; the rest by `prerouting()`.
fn run(config: &ProxyConfig, svcs: &[Service], slices: &[EndpointSlice], flows: &[Flow]) {
    for f in flows {
        let (src, dst) = (a(f.src), a(f.dst));
        let local = src.is_loopback() || config.node_addresses.contains(&src);
        let (mut dests, mut masq) = (BTreeSet::new(), false);
        for seed in 0..32 {
            let mut p = Proxier::new(config.clone());
            p.update(svcs, slices);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut pkt = syn(src, dst, f.port);
            let pre = if local {
                p.output(Duration::ZERO, &mut pkt, &mut rng)
            } else {
                p.prerouting(Duration::ZERO, &mut pkt, &mut rng)
            };
            let Verdict::Accept(pending) = pre.verdict else {
                panic!("{}: {:?}", f.name, pre.verdict)
            };
            let t = packet::parse(&pkt).unwrap().tuple;
            if (t.dst, t.dport) != (dst, f.port) {
                dests.insert(SocketAddr::new(t.dst, t.dport).to_string());
                masq |= pending.masquerade;
            }
        }
        let got = dests.into_iter().collect::<Vec<_>>().join(", ");
        assert_eq!(got, f.output, "{}: output", f.name);
        if !got.is_empty() {
            assert_eq!(masq, f.masq, "{}: masq", f.name);
        }
    }
}

/// One `TestNodePorts` case: (family is the cluster IP's) localhost NodePorts, the
/// nodePortAddresses, whether the alternate node IP answers.
fn node_ports_case(v6: bool, localhost: bool, npa: &[&str], allow_alt: bool) {
    let (svc_ip, ep1, ep2, pod, ext, node, alt, lo) = if v6 {
        let e = ("fd00:10:180::1", "fd00:10:180::2:1");
        (
            "fd00:172:30::41",
            e.0,
            e.1,
            "fd00:10::2",
            "2600:5200::1",
            "2001:db8::1",
            "2001:db8:1::2",
            "::1",
        )
    } else {
        let e = ("10.180.0.1", "10.180.2.1");
        let ext = "203.0.113.2";
        let (n, alt) = ("192.168.0.2", "192.168.1.2");
        (
            "172.30.0.41",
            e.0,
            e.1,
            "10.0.0.2",
            ext,
            n,
            alt,
            "127.0.0.1",
        )
    };
    let c = config(localhost, npa);
    let svcs = [service(svc_ip)];
    let slices = [slice(ep1, ep2, "test-node")];
    let output = format!(
        "{}, {}",
        SocketAddr::new(a(ep1), 80),
        SocketAddr::new(a(ep2), 80)
    );
    let flow = |name, src, dst, port, output: &str, masq| Flow {
        name,
        src,
        dst,
        port,
        output: output.to_string(),
        masq,
    };
    let mut flows = vec![
        flow("pod to cluster IP", pod, svc_ip, 80, &output, false),
        flow("external to nodePort", ext, node, 3001, &output, true),
        flow("node to nodePort", node, node, 3001, &output, true),
    ];
    // "localhost to NodePort is only allowed in IPv4, and only if not disabled"
    if !v6 && localhost {
        flows.push(flow("localhost to nodePort", lo, lo, 3001, &output, true));
    } else {
        flows.push(flow(
            "localhost to nodePort is ignored",
            lo,
            lo,
            3001,
            "",
            false,
        ));
    }
    if allow_alt {
        flows.push(flow(
            "nodePort on secondary IP",
            ext,
            alt,
            3001,
            &output,
            true,
        ));
    } else {
        flows.push(flow(
            "secondary nodeIP ignores NodePorts",
            ext,
            alt,
            3001,
            "",
            false,
        ));
    }
    run(&c, &svcs, &slices, &flows);
    // The firewall rule: kube-proxy writes KUBE-FIREWALL's localnet DROP for IPv4 with
    // localhost NodePorts only (`!isIPv6 && proxier.localhostNodePorts`).
    let family = if v6 { IpFamily::V6 } else { IpFamily::V4 };
    let rules = render_family(&c, &svcs, &slices, RulesFormat::KubeProxy, family);
    let firewall = !v6 && c.localhost_node_ports_effective();
    assert_eq!(
        rules.contains("block incoming localnet connections"),
        firewall,
        "{rules}"
    );
}

#[test]
fn node_ports_ipv6_localhost_enabled() {
    node_ports_case(true, true, &[], true);
}

#[test]
fn node_ports_ipv6_localhost_disabled() {
    node_ports_case(true, false, &[], true);
}

/// nodePortAddresses 2001:db8::/64 leaves out the alternate IPv6 node IP 2001:db8:1::2; the
/// IPv4 ranges in the list do not matter to the IPv6 proxier.
#[test]
fn node_ports_ipv6_localhost_disabled_multiple_nodeport_addresses() {
    node_ports_case(
        true,
        false,
        &["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"],
        false,
    );
}

/// The IPv4 cases of `TestNodePorts` on the same dual-stack node (the IPv6 node addresses
/// and cluster CIDR change nothing for IPv4).
#[test]
fn node_ports_ipv4_cases_on_a_dual_stack_node() {
    node_ports_case(false, true, &[], true);
    node_ports_case(false, false, &[], true);
    node_ports_case(false, false, &["192.168.0.0/24", "127.0.0.1/32"], false);
    node_ports_case(
        false,
        false,
        &["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"],
        true,
    );
}

/// A dual-stack Service on the same node: each family's flows reach only that family's
/// endpoints, exactly as the two single-stack replays above.
#[test]
fn dual_stack_service_keeps_the_families_apart() {
    let c = config(true, &[]);
    let svc = Service {
        cluster_ips: vec![a("172.30.0.41"), a("fd00:172:30::41")],
        ip_families: vec![IpFamily::V4, IpFamily::V6],
        ip_family_policy: IpFamilyPolicy::RequireDualStack,
        ..service("172.30.0.41")
    };
    let slices = [
        slice("10.180.0.1", "10.180.2.1", "test-node"),
        slice("fd00:10:180::1", "fd00:10:180::2:1", "test-node"),
    ];
    let v4 = "10.180.0.1:80, 10.180.2.1:80".to_string();
    let v6 = "[fd00:10:180::1]:80, [fd00:10:180::2:1]:80".to_string();
    let flow = |name, src, dst, port, output: &String, masq| Flow {
        name,
        src,
        dst,
        port,
        output: output.clone(),
        masq,
    };
    run(
        &c,
        std::slice::from_ref(&svc),
        &slices,
        &[
            flow(
                "v4 pod to cluster IP",
                "10.0.0.2",
                "172.30.0.41",
                80,
                &v4,
                false,
            ),
            flow(
                "v6 pod to cluster IP",
                "fd00:10::2",
                "fd00:172:30::41",
                80,
                &v6,
                false,
            ),
            flow(
                "v4 external to nodePort",
                "203.0.113.2",
                "192.168.0.2",
                3001,
                &v4,
                true,
            ),
            flow(
                "v6 external to nodePort",
                "2600:5200::1",
                "2001:db8::1",
                3001,
                &v6,
                true,
            ),
            // A v6 host outside fd00:10::/64 to the v6 cluster IP: the family's detector
            // says "not a pod", so the cluster-IP masquerade rule fires.
            flow(
                "v6 non-pod to cluster IP",
                "2600:5200::1",
                "fd00:172:30::41",
                80,
                &v6,
                true,
            ),
        ],
    );
}

/// `TestEnableLocalhostNodePortsIPv6` (kube-proxy's restore input of the IPv6 proxier:
/// no 127.0.0.0/8 rules, `! -d ::1/128` on the NodePorts jump, `[addr]:port` DNAT).
const LOCALHOST_NODE_PORTS_IPV6: &str = "\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-LIGRYQQLSZN4UWQ5 - [0:0]
:KUBE-SEP-XJJ5QXWGJG344QDZ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SVL-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 30001 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d fd00:ab34::20 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment \"masquerade LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment \"route LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE
-A KUBE-SEP-LIGRYQQLSZN4UWQ5 -m comment --comment ns1/svc1:p80 -s ff06::c1 -j KUBE-MARK-MASQ
-A KUBE-SEP-LIGRYQQLSZN4UWQ5 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [ff06::c1]:80
-A KUBE-SEP-XJJ5QXWGJG344QDZ -m comment --comment ns1/svc1:p80 -s ff06::c2 -j KUBE-MARK-MASQ
-A KUBE-SEP-XJJ5QXWGJG344QDZ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [ff06::c2]:80
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> [ff06::c1]:80\" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-LIGRYQQLSZN4UWQ5
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> [ff06::c2]:80\" -j KUBE-SEP-XJJ5QXWGJG344QDZ
-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> [ff06::c2]:80\" -j KUBE-SEP-XJJ5QXWGJG344QDZ
COMMIT
";

/// The fake proxier of those two tests: NoOpLocalDetector (no cluster CIDR), node
/// "test-hostname", the fake iptables without `--random-fully`.
fn localhost_rules(localhost_node_ports: bool) -> String {
    let mut c = ProxyConfig::new("test-hostname", vec![a("2001:db8::1")]);
    c.masquerade_random_fully = false;
    c.localhost_node_ports = localhost_node_ports;
    let mut svc = service("fd00:ab34::20");
    svc.ports[0].node_port = Some(30001);
    svc.external_traffic_policy = TrafficPolicy::Local;
    let sl = slice("ff06::c1", "ff06::c2", "test-hostname");
    render_family(&c, &[svc], &[sl], RulesFormat::KubeProxy, IpFamily::V6)
}

/// Compared like upstream's `assertIPTablesRulesEqual`: chains as a set, each chain's
/// rules in order.
#[test]
fn enable_localhost_node_ports_ipv6() {
    assert_eq!(
        sorted_rules(&localhost_rules(true)),
        sorted_rules(LOCALHOST_NODE_PORTS_IPV6)
    );
}

/// Disabling localhost NodePorts changes nothing for IPv6: they never work there.
#[test]
fn disable_localhost_node_ports_ipv6() {
    assert_eq!(
        sorted_rules(&localhost_rules(false)),
        sorted_rules(LOCALHOST_NODE_PORTS_IPV6)
    );
}
