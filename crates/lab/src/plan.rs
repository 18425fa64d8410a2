//! What a run is asked to do and what it plays, shared by both modes: the options, the
//! plan expanded into requests, the hook that watches requests go by ([`Progress`]), and
//! what the traced request becomes (`--trace` lines, the `--diagram` file).
//!
//! Owns no world and no processes: [`crate::runner`] (embedded) and [`crate::realrun`]
//! (real mode) use it; it uses neither.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::report::RequestResult;
use cluster::{Cluster, PlanStep};

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
    /// `--explain`: trace every request and explain each in plain words.
    pub explain: bool,
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

/// What the client is told for one request of `step` (path, connect timeout, max time).
pub fn request_opts(step: &PlanStep) -> sim::RequestOpts {
    sim::RequestOpts {
        path: step.path.clone(),
        connect_timeout: step.connect_timeout,
        max_time: step.max_time,
        host: None,
    }
}

/// What the UDP client is told for one datagram of `step` (payload, timeout, source port).
pub fn udp_opts(step: &PlanStep) -> sim::UdpOpts {
    sim::UdpOpts {
        payload: step.payload.clone(),
        timeout: step.timeout,
        source_port: step.source_port,
    }
}

/// Whether `step` sends UDP datagrams (else it is an HTTP GET over TCP).
pub fn is_udp(step: &PlanStep) -> bool {
    step.protocol == nodeport::Protocol::Udp
}

/// The address of `client` a request to `dst` leaves from: its IPv6 address for an IPv6
/// destination (a dual-stack client), else its IPv4 one.
pub fn client_ip(client: &cluster::Client, dst: std::net::IpAddr) -> std::net::IpAddr {
    match (dst, client.ipv6) {
        (std::net::IpAddr::V6(_), Some(a)) => a.into(),
        _ => client.ip.into(),
    }
}

/// One resolved request of the plan.
pub struct PlannedRequest<'a> {
    pub step: &'a PlanStep,
    /// Index of `step` in the plan (where `scale:`/`wait:` entries are placed).
    pub step_index: usize,
    pub dst: SocketAddr,
    pub label: String,
}

/// The `scale:`/`wait:` entries due before plan step `upto` that have not run yet (from
/// `*next` on); advances `*next` past them.
pub fn due_actions<'c>(
    cluster: &'c Cluster,
    next: &mut usize,
    upto: usize,
) -> &'c [cluster::PlanAction] {
    let start = *next;
    while cluster.actions.get(*next).is_some_and(|a| a.before <= upto) {
        *next += 1;
    }
    &cluster.actions[start..*next]
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
        // UDP targets say so (`ydzs-master 10.151.30.11:30053/udp`); TCP ones stay as they were.
        let label = if is_udp(step) {
            format!("{}/udp", d.label)
        } else {
            d.label.clone()
        };
        for _ in 0..step.count {
            out.push(PlannedRequest {
                step,
                step_index: i,
                dst: SocketAddr::new(d.ip, d.port),
                label: label.clone(),
            });
        }
    }
    Ok(out)
}

/// Watches a run go by, request after request (the progress bar's hook). Both modes call
/// it in plan order: [`Progress::start`] once, then [`Progress::request`] and
/// [`Progress::done`] for every request, then [`Progress::finish`]. Every method defaults to
/// doing nothing.
pub trait Progress {
    /// The run is about to play `total` requests.
    fn start(&mut self, _total: usize) {}
    /// Request `number` (1-based) starts. `limit` is how long it may hang on the wall clock
    /// before the client gives up connecting (real mode: curl's `--connect-timeout`, ~130 s
    /// by default); `None` when it costs no wall time (embedded mode).
    fn request(&mut self, _number: usize, _req: &PlannedRequest<'_>, _limit: Option<Duration>) {}
    /// Request `number` ended with `result`.
    fn done(&mut self, _number: usize, _result: &RequestResult) {}
    /// The plan is played (also on error paths that return early, when the caller drops it).
    fn finish(&mut self) {}
}

/// A [`Progress`] that shows nothing.
pub struct Quiet;

impl Progress for Quiet {}
