//! Trace events (links, nodes, router, fabric) and the per-request view of them.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use nodestack::HopEvent;
use vswitch::packet::{FlowTuple, Summary};
use vswitch::{LinkEvent, RouterEvent};

use super::{Attach, World};
use crate::host::RequestId;

/// A delivery between segments, recorded by the world.
#[derive(Debug, Clone)]
pub struct FabricEvent {
    pub at: Duration,
    pub segment: String,
    pub from: String,
    /// `None` = nobody owns the next hop (the datagram is lost).
    pub to: Option<String>,
    pub next_hop: IpAddr,
    pub summary: Option<Summary>,
}

/// One entry of the world's trace, in processing order.
#[derive(Debug, Clone)]
pub enum TraceEvent {
    /// A datagram crossing an edge port's link (pods, clients).
    Link(LinkEvent),
    /// A step inside a node.
    Node(HopEvent),
    /// A decision of the router / load balancer.
    Router(RouterEvent),
    /// A delivery on a segment.
    Fabric(FabricEvent),
}

impl TraceEvent {
    pub fn at(&self) -> Duration {
        match self {
            TraceEvent::Link(e) => e.at,
            TraceEvent::Node(e) => e.at,
            TraceEvent::Router(e) => e.at,
            TraceEvent::Fabric(e) => e.at,
        }
    }
    /// (before, after) summaries of the datagram at this event.
    pub(super) fn summaries(&self) -> (Option<&Summary>, Option<&Summary>) {
        match self {
            TraceEvent::Link(e) => (e.summary.as_ref(), None),
            TraceEvent::Node(e) => (e.before.as_ref(), e.after.as_ref()),
            TraceEvent::Router(e) => (e.before.as_ref(), e.after.as_ref()),
            TraceEvent::Fabric(e) => (e.summary.as_ref(), None),
        }
    }
}

/// ` <packet>` after an event line, when there is one.
fn write_after(f: &mut fmt::Formatter<'_>, packet: Option<&impl fmt::Display>) -> fmt::Result {
    match packet {
        Some(p) => write!(f, " {p}"),
        None => Ok(()),
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Link(e) => write!(f, "{e}"),
            TraceEvent::Node(e) => write!(f, "{e}"),
            TraceEvent::Router(e) => {
                let (at, out) = (e.at.as_secs_f64(), e.out_iface.as_deref().unwrap_or("-"));
                let (router, action) = (&e.router, &e.action);
                write!(f, "{at:>10.6}s {router} {}→{out} {action}", e.in_iface)?;
                write_after(f, e.after.as_ref())
            }
            TraceEvent::Fabric(e) => {
                let to = e.to.as_deref().unwrap_or("<no neighbour: lost>");
                let (at, hop) = (e.at.as_secs_f64(), e.next_hop);
                write!(
                    f,
                    "{at:>10.6}s {} {} → {to} (next hop {hop})",
                    e.segment, e.from
                )?;
                write_after(f, e.summary.as_ref())
            }
        }
    }
}

impl World {
    pub(super) fn collect(&mut self) {
        if !self.tracing {
            // Nothing records: tracers are pass-throughs, nodes and the router note nothing.
            return;
        }
        for e in self.sink.drain() {
            if self.tracing {
                self.trace.push(TraceEvent::Link(e));
            }
        }
        for n in &mut self.nodes {
            for e in n.node.drain_events() {
                self.trace.push(TraceEvent::Node(e));
            }
        }
        for e in self.router.drain_events() {
            self.trace.push(TraceEvent::Router(e));
        }
    }

    pub(super) fn attach_name(&self, a: Attach) -> String {
        match a {
            Attach::Node(n, i) => format!("{}/{i}", self.nodes[n].node.name()),
            Attach::Bridge(n) => format!("{}/cni0 bridge", self.nodes[n].node.name()),
            Attach::Router(i) => format!("router/{}", self.router.ifaces()[i].name),
            Attach::Edge(e) => self.edges[e].name.clone(),
        }
    }

    /// Every trace event so far, in processing order.
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }

    /// Every hop of every datagram of request `id`'s connection: events whose datagram
    /// belongs to the flow, following its translations (each hop's after-tuple joins the
    /// flow) and including ICMP errors quoting it.
    pub fn trace_for(&self, id: RequestId) -> Vec<TraceEvent> {
        let Some(m) = self.requests.get(&id) else {
            return Vec::new();
        };
        let Some(out) = self.outcome(id) else {
            return Vec::new();
        };
        let edge = &self.edges[m.client];
        let client_ip = match (m.dst.ip(), edge.ip6) {
            (IpAddr::V6(_), Some(a)) => IpAddr::V6(a),
            _ => IpAddr::V4(edge.ip),
        };
        let first = FlowTuple {
            proto: m.proto,
            src: client_ip,
            sport: out.client_port,
            dst: m.dst.ip(),
            dport: m.dst.port(),
        };
        let end = m.started + out.elapsed + Duration::from_secs(1);
        let mut flow: HashSet<FlowTuple> = HashSet::from([first, first.invert()]);
        let start = self.trace.partition_point(|e| e.at() < m.started);
        let mut res = Vec::new();
        for ev in &self.trace[start..] {
            if ev.at() > end {
                break;
            }
            let (before, after) = ev.summaries();
            let hit =
                |s: &Summary| flow.contains(&s.tuple) || s.inner.is_some_and(|t| flow.contains(&t));
            let matched = before.is_some_and(hit) || (before.is_none() && after.is_some_and(hit));
            if matched {
                if let Some(a) = after {
                    if a.icmp.is_none() {
                        flow.insert(a.tuple);
                        flow.insert(a.tuple.invert());
                    }
                }
                res.push(ev.clone());
            }
        }
        res
    }

    /// The trace of a request as printable lines.
    pub fn trace_lines_for(&self, id: RequestId) -> Vec<String> {
        self.trace_for(id).iter().map(|e| e.to_string()).collect()
    }

    /// Forget recorded trace events (long plans).
    pub fn clear_trace(&mut self) {
        self.trace.clear();
    }
}
