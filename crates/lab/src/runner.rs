//! Runs a scenario: turns a [`Cluster`] into a [`sim::World`], plays the traffic plan and
//! collects what each client and pod saw into a [`ScenarioResult`].
//!
//! Embedded mode drives the world on its virtual clock (a 127 s SYN timeout costs no wall
//! time). Real mode (`--real`) swaps the embedded pods and clients for TUN ports in network
//! namespaces running real nginx and curl; the packet path in between is the same world.
//!
//! Owns: dispatching a run to its mode ([`run`], [`run_with`]) and embedded mode itself.
//! Real mode is [`crate::realrun`]; both build on [`crate::plan`] and [`crate::setup`].

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::Context;

use crate::plan::{due_actions, expand_plan, traced_views, PlannedRequest, Progress, Quiet};
use crate::report::{Mode, Outcome, RequestResult, ScenarioResult};
use crate::setup::prepare_world;
use cluster::kubelet::{Action, Kubelet};
use cluster::{ActionKind, Cluster, PlanAction, Scaled};

pub use crate::plan::RunOptions;

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

/// Run a scenario in the mode `opts` asks for.
pub fn run(cluster: &Cluster, opts: &RunOptions) -> anyhow::Result<ScenarioResult> {
    run_with(cluster, opts, &mut Quiet)
}

/// [`run`], telling `progress` about every request as it goes.
pub fn run_with(
    cluster: &Cluster,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<ScenarioResult> {
    let _span = tracing::debug_span!(
        "run",
        scenario = %cluster.scenario,
        mode = if opts.real { "real" } else { "embedded" },
        seed = cluster.seed
    )
    .entered();
    tracing::debug!(
        nodes = cluster.nodes.len(),
        pods = cluster.pods.len(),
        services = cluster.services.len(),
        plan_steps = cluster.plan.len(),
        "scenario loaded"
    );
    let result = if opts.real {
        crate::realrun::run_real(cluster, opts, progress)
    } else {
        run_embedded(cluster, opts, progress)
    };
    progress.finish();
    result
}

pub fn outcome_of(kind: sim::OutcomeKind) -> Outcome {
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
pub fn run_embedded(
    cluster: &Cluster,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<ScenarioResult> {
    let traced = opts.traced_request();
    let tracing = traced.is_some() || opts.explain;
    let world = prepare_world(cluster, tracing, opts.pcap.as_deref())?;
    let mut run = Embedded::new(cluster, world, tracing);
    let plan = expand_plan(cluster)?;
    progress.start(plan.len());
    let mut requests = Vec::with_capacity(plan.len());
    let mut trace = None;
    let mut explanations = Vec::new();
    for (i, req) in plan.into_iter().enumerate() {
        let number = i + 1;
        run.run_actions(req.step_index)?;
        progress.request(number, &req, None);
        let (result, hops) = run.request(number, req, traced == Some(number) || opts.explain)?;
        if let Some(h) = hops {
            if opts.explain {
                explanations.push(crate::explain::explain(cluster, &result, &h));
            }
            if traced == Some(number) {
                trace = traced_views(opts, cluster, number, &result, &h)?;
            }
        }
        progress.done(number, &result);
        requests.push(result);
    }
    run.run_actions(cluster.plan.len())?;
    let mut result = run.finish(opts, requests, trace)?;
    result.explanations = explanations;
    Ok(result)
}

/// Embedded mode's state while the plan plays.
struct Embedded<'c> {
    cluster: &'c Cluster,
    world: sim::World,
    tracing: bool,
    /// The next `scale:`/`wait:` entry to run.
    next_action: usize,
    /// Every pod that ran: the scheduled ones, then those `scale:` entries started.
    all_pods: Vec<cluster::Pod>,
    /// Every pod's name, in `all_pods` order, and its index there.
    pods: Vec<String>,
    pod_index: HashMap<String, usize>,
    /// Access-journal position of the last attribution (lines logged since belong to the
    /// next request).
    mark: usize,
    /// kubelet: crashed apps restart with back-off, readiness reaches kube-proxy late.
    kubelet: Kubelet,
    /// The EndpointSlices as the EndpointSlice controller last computed them (before
    /// kubelet's readiness is applied).
    slices: Vec<nodeport::EndpointSlice>,
}

impl<'c> Embedded<'c> {
    fn new(cluster: &'c Cluster, mut world: sim::World, tracing: bool) -> Self {
        if tracing {
            world.clear_trace();
        }
        let nodes = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        let kubelet = Kubelet::new(
            &cluster.pods,
            nodes,
            cluster.kube_proxy.sync_delay,
            world.now(),
        );
        Embedded {
            kubelet,
            slices: cluster.slices.clone(),
            cluster,
            world,
            tracing,
            next_action: 0,
            all_pods: cluster.pods.clone(),
            pods: cluster.pods.iter().map(|p| p.name.clone()).collect(),
            pod_index: cluster
                .pods
                .iter()
                .enumerate()
                .map(|(k, p)| (p.name.clone(), k))
                .collect(),
            mark: 0,
        }
    }

    /// Runs the `scale:`/`wait:` entries due before request step `upto`.
    fn run_actions(&mut self, upto: usize) -> anyhow::Result<()> {
        let cluster = self.cluster;
        for a in due_actions(cluster, &mut self.next_action, upto) {
            match (&a.kind, &a.scaled) {
                (ActionKind::Wait(d), _) => {
                    let t = self.world.now() + *d;
                    self.run_until(t)?;
                }
                (ActionKind::Crash(c), _) => {
                    let pod = c.pod.as_deref().with_context(|| {
                        format!("plan[{}]: crash entry was not resolved to a pod", a.entry)
                    })?;
                    self.world
                        .set_apps_running(pod, false)
                        .map_err(|e| anyhow::anyhow!("plan[{}]: {e}", a.entry))?;
                    self.kubelet.crash(pod, self.world.now());
                }
                (ActionKind::Scale { .. } | ActionKind::Delete(_), Some(sc)) => {
                    self.scale(a, sc)?
                }
                (ActionKind::Scale { .. } | ActionKind::Delete(_), None) => {
                    anyhow::bail!("plan[{}]: entry was not scheduled", a.entry)
                }
            }
        }
        Ok(())
    }

    /// A `scale:` or `delete:` entry: new pods start first, then every kube-proxy syncs the
    /// new slices, then deleted pods go away.
    fn scale(&mut self, a: &PlanAction, sc: &Scaled) -> anyhow::Result<()> {
        tracing::debug!(
            entry = a.entry,
            added = sc.added.len(),
            removed = sc.removed.len(),
            "scale"
        );
        let err = |e: sim::SimError| anyhow::anyhow!("plan[{}]: {e}", a.entry);
        for p in &sc.added {
            self.world
                .add_pod(&crate::setup::pod_desc(p))
                .map_err(err)?;
        }
        let now = self.world.now();
        for p in &sc.added {
            self.kubelet.add_pod(p, now);
        }
        self.slices = sc.slices.clone();
        let slices = self.kubelet.apply(&self.slices);
        self.world.set_services(&self.cluster.services, &slices);
        for r in &sc.removed {
            self.world.remove_pod(&r.name).map_err(err)?;
            self.kubelet.remove_pod(&r.name);
        }
        for p in &sc.added {
            self.pod_index.insert(p.name.clone(), self.pods.len());
            self.pods.push(p.name.clone());
            self.all_pods.push(p.clone());
        }
        Ok(())
    }

    /// Virtual time up to `end`, doing kubelet's work when it falls due.
    fn run_until(&mut self, end: std::time::Duration) -> anyhow::Result<()> {
        while let Some(t) = self.kubelet.poll_at().filter(|t| *t <= end) {
            self.world.run_until(t.max(self.world.now()));
            self.kubelet_tick()?;
        }
        self.world.run_until(end);
        Ok(())
    }

    /// Runs request `id` to its outcome, doing kubelet's work when it falls due meanwhile.
    fn complete(&mut self, id: sim::RequestId) -> anyhow::Result<Option<sim::RequestOutcome>> {
        let day = self.world.now() + std::time::Duration::from_secs(86_400);
        while let Some(t) = self.kubelet.poll_at().filter(|t| *t <= day) {
            let t = t.max(self.world.now());
            if let Some(out) = self.world.run_until_complete_or(id, t) {
                return Ok(Some(out));
            }
            self.kubelet_tick()?;
        }
        Ok(self.world.run_until_complete(id))
    }

    /// What kubelet does now: restart apps, push the readiness it published to every node.
    fn kubelet_tick(&mut self) -> anyhow::Result<()> {
        for a in self.kubelet.poll(self.world.now()) {
            match a {
                Action::StartApp { pod } => self
                    .world
                    .set_apps_running(&pod, true)
                    .map_err(|e| anyhow::anyhow!("restarting {pod}: {e}"))?,
                Action::Sync => {
                    let slices = self.kubelet.apply(&self.slices);
                    self.world.set_services(&self.cluster.services, &slices);
                }
            }
        }
        Ok(())
    }

    /// Plays request `number`; with `traced`, also returns its hop events.
    fn request(
        &mut self,
        number: usize,
        req: PlannedRequest<'_>,
        traced: bool,
    ) -> anyhow::Result<(RequestResult, Option<Vec<sim::TraceEvent>>)> {
        let step = req.step;
        let _span = tracing::debug_span!("request", number, client = %step.client, dst = %req.dst)
            .entered();
        let client = self
            .cluster
            .client(&step.client)
            .with_context(|| format!("unknown client {:?}", step.client))?;
        let started = if crate::plan::is_udp(step) {
            self.world
                .start_udp(&step.client, req.dst, crate::plan::udp_opts(step))
        } else {
            self.world
                .start_request(&step.client, req.dst, crate::plan::request_opts(step))
        };
        let id = started.map_err(|e| anyhow::anyhow!("request {number}: {e}"))?;
        let out = self
            .complete(id)?
            .with_context(|| format!("request {number} never finished"))?;
        // Let the closing handshake and the server's log write finish at this instant.
        let world = &mut self.world;
        world.poll(world.now());
        let (pod, logged) = self.who_logged();
        let hops = traced.then(|| self.world.trace_for(id));
        if self.tracing {
            self.world.clear_trace();
        }
        let result = RequestResult {
            client: client.name.clone(),
            client_ip: crate::plan::client_ip(client, req.dst.ip()),
            target: req.label,
            outcome: outcome_of(out.kind),
            status: out.status,
            pod,
            logged_client_ip: logged,
            elapsed_ms: out.elapsed.as_millis() as u64,
            curl_message: (!out.message.is_empty()).then(|| out.message.clone()),
            reply: crate::plan::is_udp(step).then(|| out.body.clone()),
        };
        tracing::debug!(
            outcome = result.outcome.as_str(),
            pod = result.pod.as_deref().unwrap_or("-"),
            elapsed_ms = result.elapsed_ms,
            "request done"
        );
        Ok((result, hops))
    }

    /// Which pod logged the request: the one whose access log grew during it (the last such
    /// pod in `pods` order, with its latest line), read from the world's access journal, and
    /// the client address it logged.
    fn who_logged(&mut self) -> (Option<String>, Option<IpAddr>) {
        let mut grew: Option<(usize, IpAddr)> = None;
        for (name, addr) in self.world.access_peers_since(self.mark) {
            if let Some(&k) = self.pod_index.get(name) {
                if grew.is_none_or(|(g, _)| k >= g) {
                    grew = Some((k, addr));
                }
            }
        }
        self.mark = self.world.access_mark();
        (
            grew.map(|(k, _)| self.pods[k].clone()),
            grew.map(|(_, ip)| ip),
        )
    }

    /// Captures written; access logs, conntrack tables and LB health collected.
    fn finish(
        mut self,
        opts: &RunOptions,
        requests: Vec<RequestResult>,
        trace: Option<Vec<String>>,
    ) -> anyhow::Result<ScenarioResult> {
        let world = &mut self.world;
        if opts.pcap.is_some() {
            world
                .finish_captures()
                .context("writing the capture files")?;
        }
        let access_logs = self
            .pods
            .iter()
            .map(|p| (p.clone(), world.access_log(p)))
            .collect();
        let conntrack = opts.conntrack.then(|| {
            self.cluster
                .nodes
                .iter()
                .map(|n| (n.name.clone(), world.conntrack(&n.name)))
                .collect()
        });
        let lb_health = lb_health_lines(world);
        let pods = self.kubelet.status_of(&self.all_pods);
        Ok(ScenarioResult {
            // Pods started by `scale:` entries are listed too (their access logs and shares).
            cluster: Cluster {
                pods,
                ..self.cluster.clone()
            },
            mode: Mode::Embedded,
            requests,
            access_logs,
            trace,
            conntrack,
            lb_health,
            explanations: Vec::new(),
            events: self.kubelet.events().to_vec(),
        })
    }
}
