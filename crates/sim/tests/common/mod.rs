//! Worlds the app tests share.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use nodeport::{Endpoint, EndpointPort, EndpointSlice, IpFamily, Protocol, ServiceRef};

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
