//! The world of kube-proxy's `pkg/proxy/iptables/proxier_test.go` (`NewFakeProxier`): node
//! "test-node" with the addresses 192.168.0.2, 192.168.1.2 (alt) and 192.168.99.11
//! (`testNodeIPs`), detect-local 10.0.0.0/8, service ports named "p80" on TCP 80.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use nodeport::*;

pub const NODE_IP: &str = "192.168.0.2";
pub const NODE_IP_ALT: &str = "192.168.1.2";
pub const EXTERNAL_IP: &str = "192.168.99.11";
pub const EXTERNAL_CLIENT: &str = "203.0.113.2";
pub const EXTERNAL_CLIENT_BLOCKED: &str = "203.0.113.130";

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// NewFakeProxier's kube-proxy: no `--random-fully` (the fake iptables lacks it).
pub fn fake_config() -> ProxyConfig {
    let mut c = ProxyConfig::new(
        "test-node",
        vec![
            std::net::IpAddr::V4(ip(NODE_IP)),
            std::net::IpAddr::V4(ip(NODE_IP_ALT)),
            std::net::IpAddr::V4(ip(EXTERNAL_IP)),
        ],
    );
    c.cluster_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
    c.masquerade_random_fully = false;
    c
}

/// `makeTestService(ns, name, …)` with one port "p80" (TCP 80, `node_port`).
pub fn svc(ns: &str, name: &str, type_: ServiceType, cluster_ip: &str, np: Option<u16>) -> Service {
    Service {
        cluster_ips: vec![ip(cluster_ip).into()],
        ports: vec![ServicePort {
            name: "p80".into(),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: 80,
            node_port: np,
        }],
        ..Service::new(ns, name, type_)
    }
}

/// `makeTestEndpointSlice(ns, name, …)`: port "p80" TCP 80, ready endpoints (ip, nodeName).
pub fn slice(ns: &str, name: &str, eps: &[(&str, Option<&str>)]) -> EndpointSlice {
    EndpointSlice {
        address_type: Default::default(),
        service: ServiceRef::new(ns, name),
        ports: vec![EndpointPort {
            name: "p80".into(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints: eps
            .iter()
            .map(|(a, node)| Endpoint {
                ip: std::net::IpAddr::V4(ip(a)),
                node_name: node.map(String::from),
                ready: true,
                serving: true,
                terminating: false,
            })
            .collect(),
    }
}

pub type Dump = BTreeMap<String, (BTreeSet<String>, BTreeMap<String, Vec<String>>)>;

/// table → (declared chains, chain → its rules in order), like `sortIPTablesRules`.
pub fn sorted_rules(text: &str) -> Dump {
    let mut out: Dump = BTreeMap::new();
    let mut table = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
            out.entry(table.clone()).or_default();
        } else if let Some(c) = line.strip_prefix(':') {
            let name = c.split_whitespace().next().unwrap_or_default().to_string();
            out.get_mut(&table).unwrap().0.insert(name);
        } else if let Some(r) = line.strip_prefix("-A ") {
            let chain = r.split_whitespace().next().unwrap_or_default().to_string();
            out.get_mut(&table)
                .unwrap()
                .1
                .entry(chain)
                .or_default()
                .push(line.to_string());
        }
    }
    out
}
