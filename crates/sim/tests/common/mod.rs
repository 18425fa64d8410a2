//! Worlds the app tests share.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use nodeport::{
    Endpoint, EndpointPort, EndpointSlice, IpFamily, Protocol, Service, ServicePort, ServiceRef,
    ServiceType, TrafficPolicy,
};

use sim::{AppDesc, AppKind, Attachment, ClientDesc, NodeDesc, PodDesc, World, WorldSpec};

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// agnhost `netexec --http-port=http --udp-port=udp`.
pub fn netexec(http: u16, udp: u16) -> AppDesc {
    AppDesc {
        kind: AppKind::Netexec,
        http_ports: vec![http],
        raw_tcp_ports: Vec::new(),
        udp_ports: vec![udp],
    }
}

/// node1 (10.151.30.12, pods on 10.244.1.0/24) with `pods` and a client pod `tester`
/// (10.244.1.50) next to them.
pub fn node1_world(pods: Vec<PodDesc>, seed: u64, tracing: bool) -> World {
    World::new(WorldSpec {
        nodes: vec![NodeDesc::new(
            "node1",
            ip("10.151.30.12"),
            "10.244.1.0/24".parse().unwrap(),
        )],
        clients: vec![ClientDesc {
            name: "tester".into(),
            ip: ip("10.244.1.50"),
            ipv6: None,
            attach: Attachment::Pod {
                node: "node1".into(),
            },
        }],
        pods,
        seed,
        tracing,
        ..WorldSpec::default()
    })
    .unwrap()
}

/// `default/nginx`'s EndpointSlice of `family` (port 80/TCP): every pod ready, at its
/// address of that family.
pub fn nginx_slice(family: IpFamily, pods: &[PodDesc]) -> EndpointSlice {
    EndpointSlice {
        address_type: family,
        service: ServiceRef::new("default", "nginx"),
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints: pods
            .iter()
            .map(|p| Endpoint {
                ip: match family {
                    IpFamily::V4 => IpAddr::V4(p.ip),
                    IpFamily::V6 => IpAddr::V6(p.ipv6.unwrap()),
                },
                node_name: Some(p.node.clone()),
                ready: true,
                serving: true,
                terminating: false,
            })
            .collect(),
    }
}

/// master (10.151.30.11, pods on 10.244.0.0/24) and node1 (10.151.30.12, 10.244.1.0/24).
pub fn master_and_node1() -> Vec<NodeDesc> {
    vec![
        NodeDesc::new(
            "master",
            ip("10.151.30.11"),
            "10.244.0.0/24".parse().unwrap(),
        ),
        NodeDesc::new(
            "node1",
            ip("10.151.30.12"),
            "10.244.1.0/24".parse().unwrap(),
        ),
    ]
}

/// `default/web` (ClusterIP 10.96.0.20, port 80 → 80/TCP, NodePort 30080).
pub fn web_service(type_: ServiceType, etp: TrafficPolicy, hc: Option<u16>) -> Service {
    Service {
        cluster_ips: vec![ip("10.96.0.20").into()],
        ports: vec![ServicePort::tcp(80, 80, Some(30080))],
        external_traffic_policy: etp,
        health_check_node_port: hc,
        ..Service::new("default", "web", type_)
    }
}

/// `default/web`'s EndpointSlice (port 80/TCP): endpoints `eps` (pod IP, node), ready;
/// its address type the family of the first address (IPv4 when none).
pub fn web_slice(eps: &[(&str, &str)]) -> EndpointSlice {
    let addr = |a: &str| a.parse::<IpAddr>().unwrap();
    EndpointSlice {
        address_type: eps
            .first()
            .map_or(IpFamily::V4, |e| IpFamily::of(addr(e.0))),
        service: ServiceRef::new("default", "web"),
        ports: vec![EndpointPort {
            name: String::new(),
            protocol: Protocol::Tcp,
            port: 80,
        }],
        endpoints: eps
            .iter()
            .map(|(a, n)| Endpoint {
                ip: addr(a),
                node_name: Some(n.to_string()),
                ready: true,
                serving: true,
                terminating: false,
            })
            .collect(),
    }
}
