//! The [`sim::World`] of a cluster, for either mode: its description (nodes with their
//! kube-proxy config, router, load balancer, embedded pods and clients), the services
//! synced, the LB health checks with their warm-up, captures and `links:` impairments.
//!
//! Used by [`crate::runner`] (embedded) and [`crate::realrun`] (real mode, which attaches
//! TUN ports instead of embedded pods and clients); uses neither.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use cluster::{Client, ClientAttach, Cluster, HealthCheck};

/// The health check the LB runs: the config's, or the defaults when only `weighted: true`
/// is set (weights come from the probes' answers).
pub fn effective_health_check(cluster: &Cluster) -> Option<HealthCheck> {
    let lb = cluster.load_balancer.as_ref()?;
    lb.health_check.clone().or_else(|| {
        lb.weighted.then(|| HealthCheck {
            interval: Duration::from_secs(10),
            healthy_threshold: 3,
            unhealthy_threshold: 3,
        })
    })
}

/// The address the LB's health checks come from: the first free host address of the LB's
/// /24 from `.2` (not the router's `.1`, the frontend, nor a client's address).
pub fn health_check_source(cluster: &Cluster) -> Option<Ipv4Addr> {
    let lb = cluster.load_balancer.as_ref()?;
    let base = u32::from(lb.ip) & 0xffff_ff00;
    (2..255)
        .map(|h| Ipv4Addr::from(base | h))
        .find(|a| *a != lb.ip && cluster.clients.iter().all(|c| c.ip != *a))
}

/// The embedded world of a cluster, prepared exactly as [`crate::runner::run_embedded`] runs it: services
/// synced to every node; with LB health checks, the prober on and the warm-up done (all
/// targets start unhealthy like a cloud LB's, and the clock runs `(healthyThreshold − 1) ×
/// interval + timeout` so nodes with local endpoints pass before the first request);
/// capture files opened (`pcap`, before impairments: edge captures are the device side);
/// `links:` impairments applied (seeded from the world RNG).
pub fn prepare_world(
    cluster: &Cluster,
    tracing: bool,
    pcap: Option<&Path>,
) -> anyhow::Result<sim::World> {
    prepare_world_with(cluster, true, tracing, pcap, |_| Ok(()))
}

/// [`prepare_world`] for either mode: with `embedded_edges` false the world gets no
/// embedded pods/clients and `attach` adds the external ports (real mode's TUN devices);
/// the health-check warm-up then runs on the virtual clock *before* the ports exist (it
/// only involves the LB and the nodes), so the caller's wall clock starts at `world.now()`.
pub fn prepare_world_with(
    cluster: &Cluster,
    embedded_edges: bool,
    tracing: bool,
    pcap: Option<&Path>,
    attach: impl FnOnce(&mut sim::World) -> anyhow::Result<()>,
) -> anyhow::Result<sim::World> {
    let mut world = sim::World::new(world_spec(cluster, embedded_edges, tracing))
        .map_err(|e| anyhow::anyhow!("{}: building the lab: {e}", cluster.source.display()))?;
    tracing::debug!(
        services = cluster.services.len(),
        "syncing services to every node"
    );
    world.set_services(&cluster.services, &cluster.slices);
    let warmup = enable_health_checks(&mut world, cluster)?;
    if !embedded_edges && !warmup.is_zero() {
        world.run_until(warmup);
    }
    attach(&mut world)?;
    if let Some(dir) = pcap {
        world
            .capture_all(dir)
            .with_context(|| format!("opening capture files in {}", dir.display()))?;
    }
    impair_links(&mut world, cluster)?;
    if embedded_edges && !warmup.is_zero() {
        world.run_until(warmup);
    }
    Ok(world)
}

/// Turns the LB's health checks on (all targets start unhealthy, like a cloud LB's);
/// returns the warm-up `(healthyThreshold − 1) × interval + timeout` after which nodes with
/// local endpoints pass (zero without health checks).
fn enable_health_checks(world: &mut sim::World, cluster: &Cluster) -> anyhow::Result<Duration> {
    let (Some(hc), Some(lb)) = (effective_health_check(cluster), &cluster.load_balancer) else {
        return Ok(Duration::ZERO);
    };
    let source =
        health_check_source(cluster).context("no free address for the LB's health checks")?;
    let timeout = (hc.interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    world
        .enable_health_checks(sim::HealthCheckSpec {
            interval: hc.interval,
            timeout,
            healthy_threshold: hc.healthy_threshold,
            unhealthy_threshold: hc.unhealthy_threshold,
            weighted: lb.weighted,
            source,
            initially_healthy: false,
        })
        .map_err(|e| anyhow::anyhow!("LB health checks: {e}"))?;
    Ok(hc.interval * hc.healthy_threshold.saturating_sub(1) + timeout)
}

/// The `links:` impairments: on a pod or client, or on every pod of a deployment.
fn impair_links(world: &mut sim::World, cluster: &Cluster) -> anyhow::Result<()> {
    for l in &cluster.links {
        let cfg = vswitch::ImpairConfig {
            delay: l.delay,
            loss: l.loss,
            jitter: l.jitter,
            rate: l.rate,
        };
        let names: Vec<String> =
            if cluster.client(&l.link).is_some() || cluster.pod(&l.link).is_some() {
                vec![l.link.clone()]
            } else {
                cluster
                    .pods
                    .iter()
                    .filter(|p| p.deployment == l.link)
                    .map(|p| p.name.clone())
                    .collect()
            };
        for n in names {
            world
                .impair(&n, cfg)
                .map_err(|e| anyhow::anyhow!("links: {e}"))?;
        }
    }
    Ok(())
}

/// The world description of a cluster (shared by embedded and real mode).
pub fn world_spec(cluster: &Cluster, embedded_edges: bool, tracing: bool) -> sim::WorldSpec {
    let nodes = cluster
        .nodes
        .iter()
        .map(|n| {
            let mut addrs = vec![
                std::net::IpAddr::V4(n.ip),
                std::net::IpAddr::V4(n.cni0_ip()),
            ];
            // A dual-stack node: kube-proxy's IPv6 proxier sees its IPv6 addresses and the
            // IPv6 cluster CIDR (kube-proxy's `--cluster-cidr=v4,v6`).
            let v6 = n.ipv6.zip(n.pod_cidr_v6);
            addrs.extend(v6.map(|(ip, _)| std::net::IpAddr::V6(ip)));
            addrs.extend(
                n.cni0_ipv6()
                    .filter(|_| v6.is_some())
                    .map(std::net::IpAddr::V6),
            );
            let mut cfg = nodeport::ProxyConfig::new(n.name.clone(), addrs);
            cfg.cluster_cidrs = vec![cluster.cluster_cidr.into()];
            if let (Some(_), Some(net)) = (v6, cluster.cluster_cidr_v6) {
                cfg.cluster_cidrs.push(net.into());
            }
            cfg.masquerade_enabled = n.masquerade;
            cfg.masquerade_random_fully = cluster.kube_proxy.masquerade_random_fully;
            cfg.localhost_node_ports = cluster.kube_proxy.localhost_node_ports;
            cfg.conntrack_tcp_be_liberal = cluster.kube_proxy.tcp_be_liberal;
            cfg.udp_conntrack_cleanup = cluster.kube_proxy.conntrack_cleanup;
            sim::NodeDesc {
                name: n.name.clone(),
                ip: n.ip,
                pod_cidr: n.pod_cidr,
                proxy: Some(cfg),
                ipv6: v6.map(|(ip, _)| ip),
                pod_cidr_v6: v6.map(|(_, net)| net),
            }
        })
        .collect();
    let (clients, pods) = if embedded_edges {
        (
            cluster.clients.iter().map(client_desc).collect(),
            cluster.pods.iter().map(pod_desc).collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    sim::WorldSpec {
        node_network: cluster.node_network,
        router_ip: cluster.router_ip,
        cluster_cidr: Some(cluster.cluster_cidr),
        node_network_v6: cluster.node_network_v6,
        router_ipv6: cluster.router_ipv6,
        cluster_cidr_v6: cluster.cluster_cidr_v6,
        client_networks: Vec::new(),
        nodes,
        clients,
        pods,
        load_balancer: cluster.load_balancer.as_ref().map(|lb| sim::LbDesc {
            name: lb.name.clone(),
            ip: lb.ip,
            nodes: lb.nodes.clone(),
            ports: Vec::new(),
        }),
        seed: cluster.seed,
        wall_clock: sim::WallClock::default(),
        tracing,
    }
}

/// The world's view of a pod: its address, node and the app of each container.
pub fn pod_desc(p: &cluster::Pod) -> sim::PodDesc {
    sim::PodDesc {
        name: p.name.clone(),
        ip: p.ip,
        ipv6: p.ipv6,
        node: p.node.clone(),
        apps: p.apps.iter().map(app_desc).collect(),
    }
}

/// The embedded app that plays a container's app.
pub fn app_desc(a: &cluster::AppSpec) -> sim::AppDesc {
    use cluster::AppSpec;
    let (kind, http, raw, udp) = match a {
        AppSpec::Nginx { ports } => (sim::AppKind::Nginx, ports.clone(), vec![], vec![]),
        AppSpec::Netexec {
            http_port,
            udp_port,
        } => (
            sim::AppKind::Netexec,
            vec![*http_port],
            vec![],
            udp_port.iter().copied().collect(),
        ),
        AppSpec::ServeHostname {
            port,
            udp,
            tcp,
            http,
        } => {
            let on = |b: bool| if b { vec![*port] } else { vec![] };
            (sim::AppKind::ServeHostname, on(*http), on(*tcp), on(*udp))
        }
        AppSpec::GenericHttp { ports, udp_ports } => (
            sim::AppKind::GenericHttp,
            ports.clone(),
            vec![],
            udp_ports.clone(),
        ),
    };
    sim::AppDesc {
        kind,
        http_ports: http,
        raw_tcp_ports: raw,
        udp_ports: udp,
    }
}

/// The world's view of a lab client.
pub fn client_desc(c: &Client) -> sim::ClientDesc {
    sim::ClientDesc {
        name: c.name.clone(),
        ip: c.ip,
        attach: attachment(&c.attach),
        ipv6: c.ipv6,
    }
}

pub fn attachment(a: &ClientAttach) -> sim::Attachment {
    match a {
        ClientAttach::External { can_reach } => sim::Attachment::External {
            can_reach: can_reach.clone(),
        },
        ClientAttach::Pod { node } => sim::Attachment::Pod { node: node.clone() },
    }
}
