//! `lab serve --real`: the page's backend on the real-mode lab of `lab up`
//! ([`crate::realrun::bring_up`]: pod namespaces running Debian's nginx, client namespaces
//! where real curl runs, all attached by TUN ports to the same [`sim::World`]).
//!
//! The world runs on the wall clock and must be polled all the time: [`pump`] runs it in
//! short turns on its own thread, taking the lab's lock for each turn, so API calls get in
//! between. A request holds the lock while its curl runs (the world keeps running inside
//! [`RealBackend::request`]). The trace recorder is on; it is emptied after every turn so
//! that what a request collects is its own hops (plus any LB health check that crossed the
//! fabric at the same moment).

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;

use crate::plan::{PlannedRequest, Quiet};
use crate::realrun::{bring_up, RealRun};
use crate::report::RequestResult;
use cluster::{Cluster, PlanStep};
use host::lab::UpOptions;

/// One request's result in real mode: the report's result, its hops and the access-log
/// line nginx wrote for it.
pub struct Sent {
    pub result: RequestResult,
    pub hops: Vec<sim::TraceEvent>,
    pub log_line: Option<String>,
}

/// The running real-mode lab and the access-log lines read so far (per pod).
pub struct RealBackend {
    rr: RealRun,
    logs: Vec<(String, Vec<String>)>,
}

impl RealBackend {
    /// Brings the lab up (namespaces, TUN ports, nginx; see [`bring_up`]) with tracing on.
    pub fn up(cluster: &Cluster) -> anyhow::Result<RealBackend> {
        let rr = bring_up(cluster, true, None, &UpOptions::default())?;
        let logs = cluster
            .pods
            .iter()
            .map(|p| (p.name.clone(), Vec::new()))
            .collect();
        Ok(RealBackend { rr, logs })
    }

    pub fn world(&self) -> &sim::World {
        &self.rr.world
    }

    pub fn world_mut(&mut self) -> &mut sim::World {
        &mut self.rr.world
    }

    /// The access-log lines of `pod` read so far.
    pub fn access_log(&self, pod: &str) -> Vec<String> {
        self.logs
            .iter()
            .find(|(p, _)| p == pod)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }

    /// Runs the fabric for `d`, then forgets the hops recorded meanwhile.
    pub fn run_for(&mut self, d: Duration) -> anyhow::Result<()> {
        let r = self.rr.run_for(d);
        self.rr.world.clear_trace();
        r
    }

    /// Real curl in the client's namespace (see [`RealRun::request`]).
    pub fn request(
        &mut self,
        cluster: &Cluster,
        number: usize,
        step: &PlanStep,
        dst: SocketAddrV4,
        label: &str,
    ) -> anyhow::Result<Sent> {
        self.rr.world.clear_trace();
        let before: Vec<usize> = self.logs.iter().map(|(_, l)| l.len()).collect();
        let req = PlannedRequest {
            step,
            step_index: 0,
            dst: dst.into(),
            label: label.to_string(),
        };
        let result = self
            .rr
            .request(cluster, number, req, &mut Quiet, &mut self.logs)?;
        let hops = self.rr.world.trace().to_vec();
        self.rr.world.clear_trace();
        let log_line = self
            .logs
            .iter()
            .zip(before)
            .filter(|((p, _), _)| result.pod.as_deref() == Some(p.as_str()))
            .find_map(|((_, l), n)| l.get(n..).and_then(|new| new.last().cloned()));
        Ok(Sent {
            result,
            hops,
            log_line,
        })
    }

    /// Starts pod `p` (see [`RealRun::add_pod`]).
    pub fn add_pod(&mut self, cluster: &Cluster, p: &cluster::Pod) -> anyhow::Result<()> {
        self.rr.add_pod(cluster, p)?;
        if !self.logs.iter().any(|(n, _)| *n == p.name) {
            self.logs.push((p.name.clone(), Vec::new()));
        }
        Ok(())
    }

    /// Every node syncs new Services / EndpointSlices (see [`RealRun::set_services`]).
    pub fn set_services(
        &mut self,
        services: &[nodeport::Service],
        slices: &[nodeport::EndpointSlice],
    ) {
        self.rr.set_services(services, slices);
    }

    /// Deletes pod `name` (see [`RealRun::remove_pod`]).
    pub fn remove_pod(&mut self, name: &str) -> anyhow::Result<()> {
        self.rr.remove_pod(name)
    }

    /// Tears the lab down (namespaces, processes); says what was removed.
    pub fn shutdown(self) -> anyhow::Result<String> {
        let rep = self.rr.lab.shutdown().map_err(|e| anyhow!("{e}"))?;
        Ok(format!(
            "removed {} namespaces, stopped {} processes",
            rep.namespaces.len(),
            rep.recorded_stopped + rep.strays_stopped
        ))
    }
}

/// Keeps a real-mode lab's world running between API calls until `stop` is set: turns of
/// `TURN` under the lock, with the lock released in between.
pub fn pump<L: Send + 'static>(
    lab: Arc<Mutex<L>>,
    stop: Arc<AtomicBool>,
    mut turn: impl FnMut(&mut L) -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            {
                let mut g = lab.lock().unwrap_or_else(|e| e.into_inner());
                if !turn(&mut g) {
                    return;
                }
            }
            // Let a waiting API call take the lock.
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// How long one pump turn drives the fabric.
pub const TURN: Duration = Duration::from_millis(10);
