//! kube-proxy's packet-flow tests replayed against the engine.
//!
//! Ports of `runPacketFlowTests` cases in kubernetes/kubernetes
//! `pkg/proxy/iptables/proxier_test.go`, on the fake proxier's world: node "test-node" with
//! the addresses 192.168.0.2, 192.168.1.2 (alt) and 192.168.99.11, detect-local 10.0.0.0/8,
//! external clients 203.0.113.2 (inside the LB source range) and 203.0.113.130 (outside).
//! A flow's output is what upstream's tracer reports: the set of DNAT destinations over many
//! draws and whether KUBE-MARK-MASQ was hit, "DROP", "REJECT", or "" (no service rule).
//! Sources that are the node's own addresses (or 127.0.0.1) enter by `output()`, like a
//! process on the node; the rest by `prerouting()`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::PacketBuilder;
use nodeport::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use upstream::*;

mod upstream;

/// [`upstream::svc`] ns1/svc1 (172.30.0.41, nodePort 3001), LoadBalancer with `lb_ips` and
/// `ranges` when `lb_ips` is not empty, else NodePort.
fn service(lb_ips: &[&str], ranges: &[&str]) -> Service {
    let type_ = if lb_ips.is_empty() {
        ServiceType::NodePort
    } else {
        ServiceType::LoadBalancer
    };
    let mut s = svc("ns1", "svc1", type_, "172.30.0.41", Some(3001));
    s.load_balancer_ips = lb_ips.iter().map(|a| ip(a).into()).collect();
    s.load_balancer_source_ranges = ranges.iter().map(|r| r.trim().parse().unwrap()).collect();
    s
}

fn syn(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .tcp(40000, dport, 1, 64240)
        .syn();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

/// One packet-flow case: upstream's `output` and `masq`.
struct Case {
    name: &'static str,
    src: &'static str,
    dst: &'static str,
    port: u16,
    output: &'static str,
    masq: bool,
}

fn run_cases(config: ProxyConfig, svc: &Service, sl: &EndpointSlice, cases: &[Case]) {
    for c in cases {
        let (src, dst) = (ip(c.src), ip(c.dst));
        let local = src.is_loopback() || config.node_addresses.contains(&src.into());
        let mut dests = BTreeSet::new();
        let mut verdict = String::new();
        let mut masq = false;
        for seed in 0..32 {
            // A fresh engine per draw: no conntrack or affinity carries over.
            let mut p = Proxier::new(config.clone());
            p.update(std::slice::from_ref(svc), std::slice::from_ref(sl));
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut pkt = syn(src, dst, c.port);
            let pre = if local {
                p.output(Duration::ZERO, &mut pkt, &mut rng)
            } else {
                p.prerouting(Duration::ZERO, &mut pkt, &mut rng)
            };
            match pre.verdict {
                Verdict::Accept(pending) => {
                    let t = nodeport::packet::parse(&pkt).unwrap().tuple;
                    if (t.dst, t.dport) != (std::net::IpAddr::V4(dst), c.port) {
                        dests.insert(format!("{}:{}", t.dst, t.dport));
                        masq |= pending.masquerade;
                    }
                }
                Verdict::Drop(_) => verdict = "DROP".into(),
                Verdict::Reject { .. } => verdict = "REJECT".into(),
            }
        }
        let got = if verdict.is_empty() {
            dests.into_iter().collect::<Vec<_>>().join(", ")
        } else {
            verdict
        };
        assert_eq!(got, c.output, "{}: output", c.name);
        if !got.is_empty() && got != "DROP" && got != "REJECT" {
            assert_eq!(masq, c.masq, "{}: masq", c.name);
        }
    }
}

/// `TestLoadBalancer`: loadBalancerSourceRanges (KUBE-FW-*, KUBE-PROXY-FIREWALL).
#[test]
fn load_balancer_source_ranges() {
    let (lb1, lb2) = ("1.2.3.4", "5.6.7.8");
    // Upstream's " 203.0.113.0/25": excess whitespace is ignored.
    let svc = service(&[lb1, lb2], &["192.168.0.0/24", " 203.0.113.0/25"]);
    let sl = slice("ns1", "svc1", &[("10.180.0.1", None)]);
    let ep = "10.180.0.1:80";
    let case = |name, src, dst, port, output, masq| Case {
        name,
        src,
        dst,
        port,
        output,
        masq,
    };
    run_cases(
        fake_config(),
        &svc,
        &sl,
        &[
            case(
                "pod to cluster IP",
                "10.0.0.2",
                "172.30.0.41",
                80,
                ep,
                false,
            ),
            case(
                "external to nodePort",
                EXTERNAL_CLIENT,
                NODE_IP,
                3001,
                ep,
                true,
            ),
            case(
                "nodePort bypasses LoadBalancerSourceRanges",
                EXTERNAL_CLIENT_BLOCKED,
                NODE_IP,
                3001,
                ep,
                true,
            ),
            case(
                "accepted external to LB1",
                EXTERNAL_CLIENT,
                lb1,
                80,
                ep,
                true,
            ),
            case(
                "accepted external to LB2",
                EXTERNAL_CLIENT,
                lb2,
                80,
                ep,
                true,
            ),
            case(
                "blocked external to LB1",
                EXTERNAL_CLIENT_BLOCKED,
                lb1,
                80,
                "DROP",
                false,
            ),
            case(
                "blocked external to LB2",
                EXTERNAL_CLIENT_BLOCKED,
                lb2,
                80,
                "DROP",
                false,
            ),
            case(
                "pod to LB1 (blocked by LoadBalancerSourceRanges)",
                "10.0.0.2",
                lb1,
                80,
                "DROP",
                false,
            ),
            case(
                "pod to LB2 (blocked by LoadBalancerSourceRanges)",
                "10.0.0.2",
                lb2,
                80,
                "DROP",
                false,
            ),
            case(
                "node to LB1 (allowed by LoadBalancerSourceRanges)",
                NODE_IP,
                lb1,
                80,
                ep,
                true,
            ),
            case(
                "node to LB2 (allowed by LoadBalancerSourceRanges)",
                NODE_IP,
                lb2,
                80,
                ep,
                true,
            ),
            case(
                "same node to LB1, SNATted to LB1 (implicitly allowed)",
                lb1,
                lb1,
                80,
                ep,
                true,
            ),
            case(
                "same node to LB2, SNATted to LB2 (implicitly allowed)",
                lb2,
                lb2,
                80,
                ep,
                true,
            ),
        ],
    );
}

/// Without a range containing the node IP, the LB IPs are not implicitly allowed.
#[test]
fn load_balancer_source_ranges_without_the_node() {
    let svc = service(&["1.2.3.4"], &["203.0.113.0/25"]);
    let sl = slice("ns1", "svc1", &[("10.180.0.1", None)]);
    run_cases(
        fake_config(),
        &svc,
        &sl,
        &[
            Case {
                name: "LB IP as source is not allowed",
                src: "1.2.3.4",
                dst: "1.2.3.4",
                port: 80,
                output: "DROP",
                masq: false,
            },
            Case {
                name: "node is not allowed",
                src: NODE_IP,
                dst: "1.2.3.4",
                port: 80,
                output: "DROP",
                masq: false,
            },
        ],
    );
}

/// `TestNodePorts` (the IPv4 cases): `localhostNodePorts` × `nodePortAddresses`.
#[test]
fn node_ports_localhost_and_node_port_addresses() {
    // (name, localhostNodePorts, nodePortAddresses, allowAltNodeIP)
    let cases: [(&str, bool, &[&str], bool); 4] = [
        ("ipv4, localhost-nodeports enabled", true, &[], true),
        ("ipv4, localhost-nodeports disabled", false, &[], true),
        (
            "ipv4, localhost-nodeports disabled, localhost in nodeport-addresses",
            false,
            &["192.168.0.0/24", "127.0.0.1/32"],
            false,
        ),
        (
            "ipv4, localhost-nodeports enabled, multiple nodeport-addresses",
            false,
            &["192.168.0.0/24", "192.168.1.0/24"],
            true,
        ),
    ];
    let svc = service(&[], &[]);
    let sl = slice(
        "ns1",
        "svc1",
        &[("10.180.0.1", None), ("10.180.2.1", Some("test-node"))],
    );
    let both = "10.180.0.1:80, 10.180.2.1:80";
    for (name, localhost, addrs, alt) in cases {
        let mut config = fake_config();
        config.localhost_node_ports = localhost;
        config.node_port_addresses = addrs.iter().map(|a| a.parse().unwrap()).collect();
        let mut flows = vec![
            Case {
                name: "pod to cluster IP",
                src: "10.0.0.2",
                dst: "172.30.0.41",
                port: 80,
                output: both,
                masq: false,
            },
            Case {
                name: "external to nodePort",
                src: EXTERNAL_CLIENT,
                dst: NODE_IP,
                port: 3001,
                output: both,
                masq: true,
            },
            Case {
                name: "node to nodePort",
                src: NODE_IP,
                dst: NODE_IP,
                port: 3001,
                output: both,
                masq: true,
            },
        ];
        flows.push(if localhost {
            Case {
                name: "localhost to nodePort gets masqueraded",
                src: "127.0.0.1",
                dst: "127.0.0.1",
                port: 3001,
                output: both,
                masq: true,
            }
        } else {
            Case {
                name: "localhost to nodePort is ignored",
                src: "127.0.0.1",
                dst: "127.0.0.1",
                port: 3001,
                output: "",
                masq: false,
            }
        });
        flows.push(if alt {
            Case {
                name: "external to nodePort on secondary IP",
                src: EXTERNAL_CLIENT,
                dst: NODE_IP_ALT,
                port: 3001,
                output: both,
                masq: true,
            }
        } else {
            Case {
                name: "secondary nodeIP ignores NodePorts",
                src: EXTERNAL_CLIENT,
                dst: NODE_IP_ALT,
                port: 3001,
                output: "",
                masq: false,
            }
        });
        eprintln!("TestNodePorts/{name}");
        run_cases(config.clone(), &svc, &sl, &flows);
        // The firewall rule is checked on the rules (upstream does the same: its tracer has
        // no conntrack states).
        let rules = iptables_save(
            &config,
            std::slice::from_ref(&svc),
            std::slice::from_ref(&sl),
        );
        assert_eq!(
            rules.contains("block incoming localnet connections\""),
            localhost,
            "{name}: KUBE-FIREWALL"
        );
    }
}

/// The rule path the engine records for LB traffic through KUBE-FW names only chains that
/// `iptables_save` declares for the same model (accepted and dropped sources).
#[test]
fn firewall_walks_use_the_generated_chains() {
    let svc = service(&["1.2.3.4"], &["203.0.113.0/25"]);
    let sl = slice("ns1", "svc1", &[("10.180.0.1", None)]);
    let config = fake_config();
    let rules = iptables_save(
        &config,
        std::slice::from_ref(&svc),
        std::slice::from_ref(&sl),
    );
    for (src, dropped) in [(EXTERNAL_CLIENT, false), (EXTERNAL_CLIENT_BLOCKED, true)] {
        let mut p = Proxier::new(config.clone());
        p.update(std::slice::from_ref(&svc), std::slice::from_ref(&sl));
        let mut pkt = syn(ip(src), ip("1.2.3.4"), 80);
        let pre = p.prerouting(Duration::ZERO, &mut pkt, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(matches!(pre.verdict, Verdict::Drop(_)), dropped, "{src}");
        assert!(pre
            .walk
            .steps
            .iter()
            .any(|s| s.chain.starts_with("KUBE-FW-")));
        assert_eq!(pre.walk.has_chain("KUBE-PROXY-FIREWALL"), dropped);
        for s in &pre.walk.steps {
            assert!(
                rules.contains(&format!(":{} ", s.chain)),
                "{} not in the rules",
                s.chain
            );
        }
    }
}
