//! `lab verify <scenario> --kernel`: the scenario run by the lab (embedded mode) and by the
//! Linux kernel (namespaces, veth, bridges, host-gw routes, the rules of `lab rules` loaded
//! with iptables-restore, real nginx and curl: [`host::kernel`]), compared plan step by step.
//!
//! Random choices are compared as sets, as `tests/real_equivalence.rs` does against the
//! kernel reference: the kernel draws its own endpoints, so a step agrees when
//! - the set of outcomes is the same on both sides,
//! - every (outcome, pod, logged client IP) the kernel produced is one the lab produces for
//!   that step — in this run or in [`LAB_SAMPLES`] more runs with other world seeds (same
//!   cluster, so same pods and addresses; only the lab's random draws change),
//! - and when the lab always keeps one pod for the whole step (session affinity), so does
//!   the kernel.
//!
//! Owns: the comparison, its table and JSON. Does not own: the kernel plumbing
//! ([`host::kernel`]) nor the rules (`lab rules`, reached through [`node_rules`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::plan::{due_actions, expand_plan, RunOptions};
use crate::realrun::{first_word_ip, outcome_of};
use crate::report::{self, Outcome};
use crate::{runner, setup};
use cluster::{ActionKind, ClientAttach, Cluster, LabError};
use host::cleanup;
use host::curl::{CurlOutcome, CurlRequest, CurlRun};
use host::kernel::{
    KAttach, KClient, KLoadBalancer, KNode, KPod, KernelLab, KernelOptions, KernelSpec,
};

/// Extra lab runs (other world seeds) that give the set of results a step can have.
pub const LAB_SAMPLES: u64 = 16;
/// curl's connect timeout for plan entries that set none (both sides use it).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `lab verify`.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// `--connect-timeout` for plan entries that set none.
    pub connect_timeout: Duration,
    /// `--count N`: at most N requests per plan entry.
    pub count: Option<u32>,
    /// Where the kernel topology lives (namespace prefix, state dir).
    pub kernel: KernelOptions,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            count: None,
            kernel: KernelOptions::default(),
        }
    }
}

/// The command line of `lab verify`.
#[derive(Clone, Debug, Default)]
pub struct VerifyArgs {
    pub kernel: bool,
    pub json: bool,
    pub count: Option<u32>,
    pub connect_timeout: Option<f64>,
}

/// The two sides differ (exit status 1; the table says where).
#[derive(Debug, thiserror::Error)]
#[error("the lab and the kernel differ on {differ} of {steps} steps")]
pub struct Differ {
    pub differ: usize,
    pub steps: usize,
}

/// `lab verify <scenario> --kernel [--json]`: prints the table (or JSON); `Err(Differ)` when
/// a step differs, a [`LabError`] (exit 2) for bad input or a scenario it does not apply to.
pub fn command(
    cluster: &Cluster,
    args: &VerifyArgs,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let bad = |field: &str, msg: String| {
        anyhow::Error::new(LabError::invalid("command line", field, msg))
    };
    if !args.kernel {
        return Err(bad(
            "--kernel",
            "`lab verify` needs --kernel (the Linux kernel is the only reference so far)".into(),
        ));
    }
    let mut opts = VerifyOptions {
        count: args.count,
        ..VerifyOptions::default()
    };
    if let Some(s) = args.connect_timeout {
        if !(s.is_finite() && s > 0.0 && s < 1e6) {
            return Err(bad(
                "--connect-timeout",
                format!("{s} is not a positive number of seconds"),
            ));
        }
        opts.connect_timeout = Duration::from_secs_f64(s);
    }
    let v = verify(cluster, &opts)?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&to_json(&v))?)?;
    } else {
        write!(out, "{}", render(&v))?;
    }
    out.flush()?;
    let differ = v.steps.iter().filter(|r| !r.agrees()).count();
    if differ > 0 {
        return Err(anyhow::Error::new(Differ {
            differ,
            steps: v.steps.len(),
        }));
    }
    Ok(())
}

/// The seam to `lab rules`: the iptables-save text (nat + filter) kube-proxy would program
/// on `node`, generated from the same model the datapath runs.
pub fn node_rules(cluster: &Cluster, node: &str) -> anyhow::Result<String> {
    Ok(crate::rules::node_rules(cluster, node)?)
}

/// Why the kernel comparison does not apply to `cluster`, if it does not.
pub fn not_applicable(cluster: &Cluster) -> Option<String> {
    if setup::effective_health_check(cluster).is_some() {
        return Some(
            "its load balancer health-checks the nodes (healthCheckNodePort, weights): that \
             is kube-proxy's healthz server, which the kernel topology does not run"
                .into(),
        );
    }
    if cluster
        .actions
        .iter()
        .any(|a| matches!(a.kind, ActionKind::Scale { .. }))
    {
        return Some(
            "it has `scale:` plan entries (pods started and stopped mid-run; the kernel topology is \
             built once)"
                .into(),
        );
    }
    if cluster
        .actions
        .iter()
        .any(|a| matches!(a.kind, ActionKind::Crash(_)))
    {
        return Some(
            "it has `crash:` plan entries (kubelet restarting apps and resyncing kube-proxy: \
             the kernel topology runs no kubelet)"
                .into(),
        );
    }
    if cluster
        .actions
        .iter()
        .any(|a| matches!(a.kind, ActionKind::Delete(_)))
    {
        return Some(
            "it has `delete:` plan entries (pods replaced mid-run; the kernel topology is built \
             once)"
                .into(),
        );
    }
    if cluster.plan.iter().any(crate::plan::is_udp) {
        return Some(
            "it sends UDP (`protocol: UDP`): the kernel side's client is curl (HTTP over TCP)"
                .into(),
        );
    }
    if !cluster.links.is_empty() {
        return Some(
            "it impairs links (`links:`): the lab's seeded loss and delay are not netem's, so \
             steps cannot be compared one by one"
                .into(),
        );
    }
    None
}

/// One request's observation: (outcome, answering pod, logged client IP).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub outcome: &'static str,
    pub pod: Option<String>,
    pub logged: Option<std::net::IpAddr>,
}

/// One plan step, both sides.
#[derive(Clone, Debug)]
pub struct StepRow {
    /// 1-based plan entry (request entries only).
    pub step: usize,
    pub client: String,
    pub target: String,
    pub lab: Vec<Seen>,
    pub kernel: Vec<Seen>,
    /// Why the step differs (empty = agrees).
    pub differences: Vec<String>,
}

impl StepRow {
    pub fn agrees(&self) -> bool {
        self.differences.is_empty()
    }
}

/// The comparison of one scenario.
#[derive(Clone, Debug)]
pub struct Verification {
    pub scenario: String,
    pub steps: Vec<StepRow>,
    /// Namespaces the kernel topology used.
    pub namespaces: Vec<String>,
}

impl Verification {
    pub fn agrees(&self) -> bool {
        self.steps.iter().all(StepRow::agrees)
    }
}

/// The cluster as both sides run it: `--count` and the default connect timeout applied.
pub fn prepare(cluster: &Cluster, opts: &VerifyOptions) -> Cluster {
    let mut c = cluster.clone();
    for step in &mut c.plan {
        if let Some(n) = opts.count {
            step.count = step.count.min(n);
        }
        step.connect_timeout = step.connect_timeout.or(Some(opts.connect_timeout));
    }
    c
}

/// Runs both sides and compares them. Errors: not applicable (a [`LabError`], exit 2),
/// or the kernel side could not be built/run.
pub fn verify(cluster: &Cluster, opts: &VerifyOptions) -> anyhow::Result<Verification> {
    verify_with(cluster, opts, &node_rules)
}

/// [`verify`] with the rules taken from `rules` (node name → iptables-save text).
pub fn verify_with(
    cluster: &Cluster,
    opts: &VerifyOptions,
    rules: &dyn Fn(&Cluster, &str) -> anyhow::Result<String>,
) -> anyhow::Result<Verification> {
    if let Some(why) = not_applicable(cluster) {
        return Err(anyhow::Error::new(LabError::invalid(
            &cluster.source.display().to_string(),
            "scenario",
            format!("`lab verify --kernel` does not apply: {why}"),
        )));
    }
    let c = prepare(cluster, opts);
    let (lab, possible, sticky) = lab_side(&c)?;
    let spec = kernel_spec(&c, rules)?;
    cleanup::install_stop_handler().map_err(|e| anyhow!("{e}"))?;
    let klab = KernelLab::up(&spec, &opts.kernel)
        .map_err(|e| anyhow!("building the kernel topology: {e}"))?;
    let namespaces = klab.namespaces().to_vec();
    let kernel = kernel_side(&c, &klab);
    let down = klab.shutdown().map_err(|e| anyhow!("tearing down: {e}"));
    let kernel = kernel?;
    down?;
    Ok(Verification {
        scenario: c.scenario.clone(),
        steps: compare(&c, &lab, &possible, &sticky, &kernel)?,
        namespaces,
    })
}

/// Per request: (plan step index, what was seen).
type Observed = Vec<(usize, Seen)>;

fn seen(r: &report::RequestResult) -> Seen {
    Seen {
        outcome: r.outcome.as_str(),
        pod: r.pod.clone(),
        logged: r.logged_client_ip,
    }
}

/// The lab's run, the set of results each step can have (over [`LAB_SAMPLES`] more world
/// seeds), and whether each step always kept a single pod.
#[allow(clippy::type_complexity)]
fn lab_side(c: &Cluster) -> anyhow::Result<(Observed, Vec<BTreeSet<Seen>>, Vec<bool>)> {
    let plan = expand_plan(c)?;
    let steps: Vec<usize> = plan.iter().map(|r| r.step_index).collect();
    let mut possible = vec![BTreeSet::new(); c.plan.len()];
    let mut sticky = vec![true; c.plan.len()];
    let mut first = None;
    for k in 0..=LAB_SAMPLES {
        let sample = Cluster {
            seed: c.seed.wrapping_add(k),
            ..c.clone()
        };
        let res = runner::run(&sample, &RunOptions::default())
            .with_context(|| format!("lab run with world seed {}", sample.seed))?;
        let mut pods: Vec<BTreeSet<String>> = vec![BTreeSet::new(); c.plan.len()];
        for (r, &s) in res.requests.iter().zip(&steps) {
            possible[s].insert(seen(r));
            pods[s].extend(r.pod.clone());
        }
        for (s, p) in pods.iter().enumerate() {
            sticky[s] &= p.len() <= 1;
        }
        if k == 0 {
            first = Some(
                res.requests
                    .iter()
                    .zip(&steps)
                    .map(|(r, &s)| (s, seen(r)))
                    .collect(),
            );
        }
    }
    Ok((first.unwrap_or_default(), possible, sticky))
}

/// The kernel topology of `c`, with each node's rules from `rules`.
pub fn kernel_spec(
    c: &Cluster,
    rules: &dyn Fn(&Cluster, &str) -> anyhow::Result<String>,
) -> anyhow::Result<KernelSpec> {
    let mut nodes = Vec::new();
    for n in &c.nodes {
        nodes.push(KNode {
            name: n.name.clone(),
            ip: n.ip,
            prefix_len: c.node_network.prefix_len(),
            pod_net: (n.pod_cidr.network(), n.pod_cidr.prefix_len()),
            cni0: n.cni0_ip(),
            rules: rules(c, &n.name).with_context(|| format!("rules of node {}", n.name))?,
        });
    }
    let clients = c
        .clients
        .iter()
        .map(|cl| {
            let attach = match &cl.attach {
                ClientAttach::Pod { node } => KAttach::Pod { node: node.clone() },
                ClientAttach::External { can_reach } => KAttach::External {
                    // The lab's router gives an external client its own /24 (gateway .1).
                    prefix_len: 24,
                    reach: can_reach
                        .iter()
                        .filter_map(|n| c.node(n).map(|n| n.ip))
                        .collect(),
                },
            };
            KClient {
                name: cl.name.clone(),
                ip: cl.ip,
                attach,
            }
        })
        .collect();
    let load_balancer = c.load_balancer.as_ref().map(|lb| KLoadBalancer {
        ip: lb.ip,
        targets: lb
            .nodes
            .iter()
            .filter_map(|n| c.node(n).map(|n| n.ip))
            .collect(),
        listeners: lb_listeners(c),
    });
    Ok(KernelSpec {
        load_balancer,
        router_ip: c.router_ip,
        nodes,
        pods: c
            .pods
            .iter()
            .map(|p| KPod {
                name: p.name.clone(),
                node: p.node.clone(),
                ip: p.ip,
                apps: p.apps.iter().map(|a| crate::app::pod_app(a, p)).collect(),
            })
            .collect(),
        clients,
    })
}

/// The load balancer's (port, node port) listeners as the lab's world opens them: the
/// LoadBalancer services' ports first, then the NodePort services', the first per port wins.
fn lb_listeners(c: &Cluster) -> Vec<(u16, u16)> {
    use nodeport::{Protocol, ServiceType};
    let ordered = [ServiceType::LoadBalancer, ServiceType::NodePort]
        .into_iter()
        .flat_map(|t| c.services.iter().filter(move |s| s.type_ == t));
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in ordered {
        for p in s.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            if let Some(np) = p.node_port {
                if out.iter().all(|(port, _)| *port != p.port) {
                    out.push((p.port, np));
                }
            }
        }
    }
    out
}

/// Waits for curl, honouring Ctrl-C.
fn finish(run: &mut CurlRun) -> anyhow::Result<CurlOutcome> {
    loop {
        if cleanup::stop_requested() {
            bail!("interrupted");
        }
        if let Some(o) = run.try_finish().map_err(|e| anyhow!("{e}"))? {
            return Ok(o);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sleeps `d`, honouring Ctrl-C.
fn pause(d: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if cleanup::stop_requested() {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
    }
    Ok(())
}

/// The plan with real curl in the kernel topology; the answering pod and the client IP it
/// logged come from the nginx access logs.
fn kernel_side(c: &Cluster, klab: &KernelLab) -> anyhow::Result<Observed> {
    let mut tail = klab.log_tail();
    let mut next_action = 0;
    let mut out = Vec::new();
    for (i, req) in expand_plan(c)?.into_iter().enumerate() {
        for a in due_actions(c, &mut next_action, req.step_index) {
            if let ActionKind::Wait(d) = &a.kind {
                pause(*d)?;
            }
        }
        let step = req.step;
        let ns = klab
            .client_ns(&step.client)
            .with_context(|| format!("no namespace for client {}", step.client))?;
        let connect = step.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let max = step.max_time.unwrap_or(connect + Duration::from_secs(60));
        let creq =
            CurlRequest::get(format!("http://{}{}", req.dst, step.path)).timeouts(connect, max);
        let mut run = CurlRun::spawn(ns, &creq).map_err(|e| anyhow!("{e}"))?;
        let o = finish(&mut run)?;
        let (outcome, _, _) = outcome_of(&o).map_err(|e| anyhow!("request {}: {e}", i + 1))?;
        // nginx logs when it finalises the request, a moment after curl has the answer.
        let grace = if outcome == Outcome::Ok { 500 } else { 20 };
        let until = Instant::now() + Duration::from_millis(grace);
        let mut fresh = tail.new_lines();
        while fresh.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
            fresh = tail.new_lines();
        }
        let mut s = Seen {
            outcome: outcome.as_str(),
            pod: None,
            logged: None,
        };
        for (pod, line) in fresh {
            if let Some(ip) = first_word_ip(&line) {
                s.pod = Some(pod);
                s.logged = Some(ip);
            }
        }
        out.push((req.step_index, s));
    }
    Ok(out)
}

fn outcome_set(v: &[Seen]) -> BTreeSet<&'static str> {
    v.iter().map(|s| s.outcome).collect()
}

fn show_seen(s: &Seen) -> String {
    format!(
        "({}, {}, {})",
        s.outcome,
        s.pod.as_deref().unwrap_or("-"),
        s.logged
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into())
    )
}

/// The per-step comparison (see the module doc for the rules).
fn compare(
    c: &Cluster,
    lab: &Observed,
    possible: &[BTreeSet<Seen>],
    sticky: &[bool],
    kernel: &Observed,
) -> anyhow::Result<Vec<StepRow>> {
    let mut rows = Vec::new();
    for (s, step) in c.plan.iter().enumerate() {
        let pick = |o: &Observed| -> Vec<Seen> {
            o.iter()
                .filter(|(i, _)| *i == s)
                .map(|(_, x)| x.clone())
                .collect()
        };
        let (l, k) = (pick(lab), pick(kernel));
        let target = c
            .destination(step)
            .map(|d| d.label)
            .with_context(|| format!("plan[{s}]: no destination"))?;
        let mut differences = Vec::new();
        if l.len() != k.len() {
            differences.push(format!(
                "{} lab requests, {} kernel requests",
                l.len(),
                k.len()
            ));
        }
        let (lo, ko) = (outcome_set(&l), outcome_set(&k));
        if lo != ko {
            differences.push(format!("outcomes: lab {lo:?}, kernel {ko:?}"));
        }
        let unseen: BTreeSet<String> = k
            .iter()
            .filter(|x| !possible[s].contains(x))
            .map(show_seen)
            .collect();
        for u in unseen {
            differences.push(format!(
                "kernel {u} is not a result the lab gives (in {} runs)",
                LAB_SAMPLES + 1
            ));
        }
        let kpods: BTreeSet<&String> = k.iter().filter_map(|x| x.pod.as_ref()).collect();
        if sticky[s] && kpods.len() > 1 {
            differences.push(format!(
                "the lab always keeps one pod for this step; the kernel used {}",
                kpods.len()
            ));
        }
        rows.push(StepRow {
            step: s + 1,
            client: step.client.clone(),
            target,
            lab: l,
            kernel: k,
            differences,
        });
    }
    Ok(rows)
}

/// `value ×count, …` of a column (`-` when nothing).
fn tally<T: Ord + ToString>(items: impl Iterator<Item = T>) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.to_string()).or_insert(0) += 1;
    }
    m
}

fn columns(v: &[Seen]) -> [BTreeMap<String, u32>; 3] {
    [
        tally(v.iter().map(|s| s.outcome)),
        tally(v.iter().filter_map(|s| s.pod.clone())),
        tally(v.iter().filter_map(|s| s.logged)),
    ]
}

fn cell(m: &BTreeMap<String, u32>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, n)| {
            if *n == 1 {
                k.clone()
            } else {
                format!("{k} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The side-by-side table, the differences, and the verdict line.
pub fn render(v: &Verification) -> String {
    let headers = [
        "STEP",
        "FROM → TO",
        "N",
        "LAB OUTCOME",
        "KERNEL OUTCOME",
        "LAB PODS",
        "KERNEL PODS",
        "LAB CLIENT IP",
        "KERNEL CLIENT IP",
        "RESULT",
    ];
    let rows: Vec<Vec<String>> = v
        .steps
        .iter()
        .map(|r| {
            let ([lo, lp, li], [ko, kp, ki]) = (columns(&r.lab), columns(&r.kernel));
            vec![
                r.step.to_string(),
                format!("{} → {}", r.client, r.target),
                r.kernel.len().to_string(),
                cell(&lo),
                cell(&ko),
                cell(&lp),
                cell(&kp),
                cell(&li),
                cell(&ki),
                if r.agrees() { "agree" } else { "DIFFER" }.into(),
            ]
        })
        .collect();
    let mut out = format!(
        "lab verify {} --kernel: the lab (embedded) vs Linux ({} namespaces, rules from `lab rules`)\n\n",
        v.scenario,
        v.namespaces.len()
    );
    out.push_str(&report::table(&headers, &rows));
    for r in v.steps.iter().filter(|r| !r.agrees()) {
        for d in &r.differences {
            out.push_str(&format!("step {}: {d}\n", r.step));
        }
    }
    let differ = v.steps.iter().filter(|r| !r.agrees()).count();
    out.push_str(&if differ == 0 {
        format!("\nall {} steps agree\n", v.steps.len())
    } else {
        format!("\n{differ} of {} steps differ\n", v.steps.len())
    });
    out
}

fn side_json(v: &[Seen]) -> Value {
    let [o, p, i] = columns(v);
    json!({"outcomes": o, "pods": p, "logged_client_ips": i})
}

fn seen_json(s: &Seen) -> Value {
    json!({"outcome": s.outcome, "pod": s.pod, "logged_client_ip": s.logged.map(|i| i.to_string())})
}

/// The same table as JSON.
pub fn to_json(v: &Verification) -> Value {
    let steps: Vec<Value> = v
        .steps
        .iter()
        .map(|r| {
            json!({
                "step": r.step,
                "client": r.client,
                "target": r.target,
                "requests": r.kernel.len(),
                "lab": side_json(&r.lab),
                "kernel": side_json(&r.kernel),
                "lab_requests": r.lab.iter().map(seen_json).collect::<Vec<_>>(),
                "kernel_requests": r.kernel.iter().map(seen_json).collect::<Vec<_>>(),
                "agree": r.agrees(),
                "differences": r.differences,
            })
        })
        .collect();
    json!({
        "scenario": v.scenario,
        "reference": "kernel",
        "lab_samples": LAB_SAMPLES + 1,
        "namespaces": v.namespaces,
        "agree": v.agrees(),
        "steps": steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Cluster {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../lab-configs/{name}.yaml"));
        cluster::load_cluster(&p, None).unwrap()
    }

    fn ok(pod: &str, ip: &str) -> Seen {
        Seen {
            outcome: "ok",
            pod: Some(pod.into()),
            logged: Some(ip.parse().unwrap()),
        }
    }

    #[test]
    fn applies_to_plain_scenarios_only() {
        for n in ["seed-cluster", "pod-to-nodeport", "local-imbalance"] {
            assert_eq!(not_applicable(&load(n)), None, "{n}");
        }
        for (n, why) in [
            ("lb-local-weighted", "health-checks"),
            ("lb-local-healthcheck", "health-checks"),
            ("lb-local-scale-down", "health-checks"),
            ("lossy-link", "links:"),
        ] {
            let r = not_applicable(&load(n)).unwrap_or_default();
            assert!(r.contains(why), "{n}: {r}");
        }
    }

    #[test]
    fn prepare_applies_count_and_default_timeout() {
        let c = load("session-affinity");
        let p = prepare(
            &c,
            &VerifyOptions {
                count: Some(2),
                ..VerifyOptions::default()
            },
        );
        assert!(p.plan.iter().all(|s| s.count == 2));
        assert!(p
            .plan
            .iter()
            .all(|s| s.connect_timeout == Some(DEFAULT_CONNECT_TIMEOUT)));
        let n = load("no-endpoints");
        let p = prepare(&n, &VerifyOptions::default());
        assert_eq!(p.plan[0].connect_timeout, Some(Duration::from_secs(10)));
    }

    /// session-affinity with 2 requests per step: the lab keeps pod a for the browser and
    /// could have picked b.
    fn affinity_case(kernel: [Seen; 2]) -> StepRow {
        let c = prepare(
            &load("session-affinity"),
            &VerifyOptions {
                count: Some(2),
                ..VerifyOptions::default()
            },
        );
        let m = "10.151.30.11";
        let lab: Observed = vec![
            (0, ok("a", m)),
            (0, ok("a", m)),
            (1, ok("b", m)),
            (1, ok("b", m)),
        ];
        let possible = vec![
            [ok("a", m), ok("b", m)].into_iter().collect(),
            [ok("a", m), ok("b", m)].into_iter().collect(),
        ];
        let [k0, k1] = kernel;
        let kernel: Observed = vec![(0, k0), (0, k1), (1, ok("a", m)), (1, ok("a", m))];
        let rows = compare(&c, &lab, &possible, &[true, true], &kernel).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(
            rows[1].agrees(),
            "another pod, still one: {:?}",
            rows[1].differences
        );
        rows[0].clone()
    }

    #[test]
    fn random_choices_compare_as_sets() {
        let m = "10.151.30.11";
        assert!(affinity_case([ok("b", m), ok("b", m)]).agrees());
        let spread = affinity_case([ok("a", m), ok("b", m)]);
        assert!(!spread.agrees());
        assert!(
            spread.differences[0].contains("keeps one pod"),
            "{spread:?}"
        );
        let masq = affinity_case([ok("a", "203.0.113.11"), ok("a", "203.0.113.11")]);
        assert!(
            masq.differences[0].contains("not a result the lab gives"),
            "{masq:?}"
        );
        let hang = Seen {
            outcome: "timeout",
            pod: None,
            logged: None,
        };
        let t = affinity_case([hang.clone(), hang]);
        assert!(
            t.differences[0].starts_with("outcomes: lab {\"ok\"}, kernel {\"timeout\"}"),
            "{t:?}"
        );
    }

    #[test]
    fn table_and_json_show_both_sides() {
        let m = "10.151.30.11";
        let v = Verification {
            scenario: "session-affinity".into(),
            steps: vec![affinity_case([ok("a", m), ok("b", m)])],
            namespaces: vec!["nplab-k-router".into()],
        };
        let t = render(&v);
        assert!(t.contains("a ×2"), "{t}");
        assert!(t.contains("a, b"), "{t}");
        assert!(t.contains("DIFFER"), "{t}");
        assert!(t.contains("1 of 1 steps differ"), "{t}");
        let j = to_json(&v);
        assert_eq!(j["agree"], false);
        assert_eq!(j["steps"][0]["kernel"]["pods"]["b"], 1);
        assert_eq!(j["steps"][0]["lab"]["logged_client_ips"][m], 2);
        assert_eq!(j["steps"][0]["kernel_requests"][1]["pod"], "b");
    }
}
