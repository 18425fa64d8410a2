//! Runs a scenario: turns a [`Cluster`] into a [`sim::World`], plays the traffic plan and
//! collects what each client and pod saw into a [`ScenarioResult`].
//!
//! Embedded mode drives the world on its virtual clock (a 127 s SYN timeout costs no wall
//! time). Real mode (`--real`) swaps the embedded pods and clients for TUN ports in network
//! namespaces running real nginx and curl; the packet path in between is the same world.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::report::{Mode, Outcome, RequestResult, ScenarioResult};
use cluster::{ActionKind, Client, ClientAttach, Cluster, HealthCheck, PlanStep};

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub json: bool,
    /// 1-based number of the request to trace (`--trace` = 1, `--trace-request K` = K).
    pub trace: Option<usize>,
    pub real: bool,
    /// Collect every node's conntrack table at the end (`--conntrack`).
    pub conntrack: bool,
    /// Write one pcap file per link into this directory (`--pcap DIR`).
    pub pcap: Option<PathBuf>,
    /// `--diagram FILE.svg`: draw the traced request (`trace`, default 1) as an SVG.
    pub diagram: Option<PathBuf>,
}

impl RunOptions {
    /// The request whose hops are recorded: `--trace-request K`, else request 1 when a trace
    /// or a diagram is asked for.
    pub fn traced_request(&self) -> Option<usize> {
        self.trace.or(self.diagram.as_ref().map(|_| 1))
    }
}

/// What the traced request's hops become: the `--diagram` file is written and the `--trace`
/// lines returned (if asked for). Shared by embedded and real mode.
pub fn traced_views(
    opts: &RunOptions,
    cluster: &Cluster,
    number: usize,
    request: &RequestResult,
    hops: &[sim::TraceEvent],
) -> anyhow::Result<Option<Vec<String>>> {
    if let Some(path) = &opts.diagram {
        let svg = crate::diagram::render_svg_numbered(cluster, number, request, hops);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(opts
        .trace
        .is_some()
        .then(|| hops.iter().map(|e| e.to_string()).collect()))
}

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

/// The LB health summary of a run: probes sent, every health flip, the final states.
pub fn lb_health_lines(world: &sim::World) -> Vec<String> {
    let ev = world.health_events();
    if ev.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{} probes; health changes (virtual time):",
        ev.len()
    )];
    lines.extend(ev.iter().filter(|e| e.changed).map(|e| e.to_string()));
    let states: Vec<String> = world
        .lb_targets()
        .iter()
        .map(|(n, h, w)| {
            let last = ev
                .iter()
                .rev()
                .find(|e| e.target == *n)
                .map(|e| match e.status {
                    Some(c) => format!(", last probe {c}"),
                    None => ", last probe failed".into(),
                })
                .unwrap_or_default();
            format!(
                "{n} {} (weight {w}{last})",
                if *h { "healthy" } else { "unhealthy" }
            )
        })
        .collect();
    lines.push(format!("at the end: {}", states.join(", ")));
    lines
}

/// The embedded world of a cluster, prepared exactly as [`run_embedded`] runs it: services
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
    world.set_services(&cluster.services, &cluster.slices);
    let mut warmup = Duration::ZERO;
    if let Some(hc) = effective_health_check(cluster) {
        let source =
            health_check_source(cluster).context("no free address for the LB's health checks")?;
        let timeout = (hc.interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let lb = cluster
            .load_balancer
            .as_ref()
            .expect("health check implies an LB");
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
        warmup = hc.interval * hc.healthy_threshold.saturating_sub(1) + timeout;
    }
    if !embedded_edges && !warmup.is_zero() {
        world.run_until(warmup);
    }
    attach(&mut world)?;
    if let Some(dir) = pcap {
        world
            .capture_all(dir)
            .with_context(|| format!("opening capture files in {}", dir.display()))?;
    }
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
    if embedded_edges && !warmup.is_zero() {
        world.run_until(warmup);
    }
    Ok(world)
}

/// The world description of a cluster (shared by embedded and real mode).
pub fn world_spec(cluster: &Cluster, embedded_edges: bool, tracing: bool) -> sim::WorldSpec {
    let nodes = cluster
        .nodes
        .iter()
        .map(|n| {
            let mut cfg = nodeport::ProxyConfig::new(n.name.clone(), vec![n.ip, n.cni0_ip()]);
            cfg.cluster_cidr = Some(cluster.cluster_cidr);
            cfg.masquerade_enabled = n.masquerade;
            sim::NodeDesc {
                name: n.name.clone(),
                ip: n.ip,
                pod_cidr: n.pod_cidr,
                proxy: Some(cfg),
            }
        })
        .collect();
    let (clients, pods) = if embedded_edges {
        (
            cluster.clients.iter().map(client_desc).collect(),
            cluster
                .pods
                .iter()
                .map(|p| sim::PodDesc {
                    name: p.name.clone(),
                    ip: p.ip,
                    node: p.node.clone(),
                })
                .collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    sim::WorldSpec {
        node_network: cluster.node_network,
        router_ip: cluster.router_ip,
        cluster_cidr: Some(cluster.cluster_cidr),
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

/// The world's view of a lab client.
pub fn client_desc(c: &Client) -> sim::ClientDesc {
    sim::ClientDesc {
        name: c.name.clone(),
        ip: c.ip,
        attach: attachment(&c.attach),
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

/// One resolved request of the plan.
pub struct PlannedRequest<'a> {
    pub step: &'a PlanStep,
    /// Index of `step` in the plan (where `scale:`/`wait:` entries are placed).
    pub step_index: usize,
    pub dst: SocketAddrV4,
    pub label: String,
}

/// Expand the plan (`count: N` → N requests), resolving each destination.
pub fn expand_plan(cluster: &Cluster) -> anyhow::Result<Vec<PlannedRequest<'_>>> {
    let mut out = Vec::new();
    for (i, step) in cluster.plan.iter().enumerate() {
        let d = cluster.destination(step).with_context(|| {
            format!(
                "{}: plan[{i}]: cannot resolve a destination port (service without a port?)",
                cluster.source.display()
            )
        })?;
        for _ in 0..step.count {
            out.push(PlannedRequest {
                step,
                step_index: i,
                dst: SocketAddrV4::new(d.ip, d.port),
                label: d.label.clone(),
            });
        }
    }
    Ok(out)
}

/// Run a scenario in the mode `opts` asks for.
pub fn run(cluster: &Cluster, opts: &RunOptions) -> anyhow::Result<ScenarioResult> {
    if opts.real {
        return crate::realrun::run_real(cluster, opts);
    }
    run_embedded(cluster, opts)
}

fn outcome_of(kind: sim::OutcomeKind) -> Outcome {
    match kind {
        sim::OutcomeKind::Ok => Outcome::Ok,
        sim::OutcomeKind::Timeout => Outcome::Timeout,
        sim::OutcomeKind::Refused => Outcome::Refused,
        // An empty reply is curl's (52); the JSON vocabulary has no separate word for a
        // connection the server closed, and it is a reset from the client's point of view.
        _ => Outcome::Reset,
    }
}

/// Embedded mode: simulated nginx pods and curl clients on smoltcp, virtual clock.
pub fn run_embedded(cluster: &Cluster, opts: &RunOptions) -> anyhow::Result<ScenarioResult> {
    let traced = opts.traced_request();
    let tracing = traced.is_some();
    let mut world = prepare_world(cluster, tracing, opts.pcap.as_deref())?;
    if tracing {
        world.clear_trace();
    }
    let mut next_action = 0;
    // Runs the entries due before request step `upto`; returns the pods they started.
    let mut run_actions =
        |world: &mut sim::World, upto: usize| -> anyhow::Result<Vec<cluster::Pod>> {
            let mut started = Vec::new();
            while let Some(a) = cluster
                .actions
                .get(next_action)
                .filter(|a| a.before <= upto)
            {
                next_action += 1;
                match (&a.kind, &a.scaled) {
                    (ActionKind::Wait(d), _) => {
                        let t = world.now() + *d;
                        world.run_until(t);
                    }
                    (ActionKind::Scale { .. }, Some(sc)) => {
                        let err = |e: sim::SimError| anyhow::anyhow!("plan[{}]: {e}", a.entry);
                        // New pods start first, then every kube-proxy syncs the new slices,
                        // then deleted pods go away.
                        for p in &sc.added {
                            world
                                .add_pod(&sim::PodDesc {
                                    name: p.name.clone(),
                                    ip: p.ip,
                                    node: p.node.clone(),
                                })
                                .map_err(err)?;
                        }
                        world.set_services(&cluster.services, &sc.slices);
                        for r in &sc.removed {
                            world.remove_pod(&r.name).map_err(err)?;
                        }
                        started.extend(sc.added.iter().cloned());
                    }
                    (ActionKind::Scale { .. }, None) => {
                        anyhow::bail!("plan[{}]: scale entry was not scheduled", a.entry)
                    }
                }
            }
            Ok(started)
        };

    let mut all_pods = cluster.pods.clone();
    let mut pods: Vec<String> = cluster.pods.iter().map(|p| p.name.clone()).collect();
    // Access-journal position of the last attribution (lines logged since belong to the
    // next request, as with per-pod counters).
    let mut mark = 0;
    let mut pod_index: HashMap<String, usize> = pods
        .iter()
        .enumerate()
        .map(|(k, p)| (p.clone(), k))
        .collect();
    let mut requests = Vec::new();
    let mut trace = None;

    for (i, req) in expand_plan(cluster)?.into_iter().enumerate() {
        let number = i + 1;
        for p in run_actions(&mut world, req.step_index)? {
            pod_index.insert(p.name.clone(), pods.len());
            pods.push(p.name.clone());
            all_pods.push(p);
        }
        let step = req.step;
        let client = cluster
            .client(&step.client)
            .with_context(|| format!("unknown client {:?}", step.client))?;
        let ropts = sim::RequestOpts {
            path: step.path.clone(),
            connect_timeout: step.connect_timeout,
            max_time: step.max_time,
            host: None,
        };
        let id = world
            .start_request(&step.client, req.dst, ropts)
            .map_err(|e| anyhow::anyhow!("request {number}: {e}"))?;
        let out = world
            .run_until_complete(id)
            .with_context(|| format!("request {number} never finished"))?;
        // Let the closing handshake and the server's log write finish at this instant.
        world.poll(world.now());

        // Which pod logged it: the one whose access log grew during this request (the last
        // such pod in `pods` order, with its latest line), read from the world's journal.
        let mut grew: Option<(usize, Ipv4Addr)> = None;
        for (name, entry) in world.access_entries_since(mark) {
            if let Some(&k) = pod_index.get(&name) {
                if grew.is_none_or(|(g, _)| k >= g) {
                    grew = Some((k, entry.remote_addr));
                }
            }
        }
        mark = world.access_mark();
        let pod = grew.map(|(k, _)| pods[k].clone());
        let logged = grew.map(|(_, ip)| ip);
        let hops = (traced == Some(number)).then(|| world.trace_for(id));
        if tracing {
            world.clear_trace();
        }
        let result = RequestResult {
            client: client.name.clone(),
            client_ip: client.ip,
            target: req.label,
            outcome: outcome_of(out.kind),
            status: out.status,
            pod,
            logged_client_ip: logged,
            elapsed_ms: out.elapsed.as_millis() as u64,
            curl_message: (!out.message.is_empty()).then(|| out.message.clone()),
        };
        if let Some(h) = hops {
            trace = traced_views(opts, cluster, number, &result, &h)?;
        }
        requests.push(result);
    }

    for p in run_actions(&mut world, cluster.plan.len())? {
        pods.push(p.name.clone());
        all_pods.push(p);
    }
    if opts.pcap.is_some() {
        world
            .finish_captures()
            .context("writing the capture files")?;
    }

    let access_logs = pods
        .iter()
        .map(|p| (p.clone(), world.access_log(p)))
        .collect();
    let conntrack = opts.conntrack.then(|| {
        cluster
            .nodes
            .iter()
            .map(|n| (n.name.clone(), world.conntrack(&n.name)))
            .collect()
    });
    let lb_health = lb_health_lines(&world);
    Ok(ScenarioResult {
        // Pods started by `scale:` entries are listed too (their access logs and shares).
        cluster: Cluster {
            pods: all_pods,
            ..cluster.clone()
        },
        mode: Mode::Embedded,
        requests,
        access_logs,
        trace,
        conntrack,
        lb_health,
    })
}
