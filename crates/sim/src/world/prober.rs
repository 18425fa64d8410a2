//! The load balancer's health checks: an embedded curl-like prober that GETs each target
//! node's health port every interval and flips targets healthy/unhealthy (spec §4.3).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use rand::RngCore;

use super::topology::first_host;
use super::{Attachment, ClientDesc, SimError, World};
use crate::host::{Host, HostConfig, RequestId, RequestOpts};

/// How the load balancer health-checks its target nodes (spec §4.3).
///
/// Probes are real HTTP GETs from an embedded curl-like client at `source` (behind the
/// router, like an NLB's own health-check addresses) to each target's healthCheckNodePort
/// (`/healthz`), or kube-proxy's `:10256/healthz` when no `externalTrafficPolicy: Local`
/// LoadBalancer service has one. A round starts every `interval` on the world's clock; a
/// probe fails on a non-200 answer or after `timeout` (connect or overall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive 200s that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
    /// Weight each target by `X-Load-Balancing-Endpoint-Weight` of its last 200 answer.
    pub weighted: bool,
    /// Address the probes come from.
    pub source: Ipv4Addr,
    /// Health before the first probes decide (cloud LBs start targets unhealthy).
    pub initially_healthy: bool,
}

/// A probe result or a health change of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub at: Duration,
    pub target: String,
    /// HTTP status of the probe, `None` for a timeout/refusal.
    pub status: Option<u16>,
    /// `X-Load-Balancing-Endpoint-Weight` of the answer.
    pub weight: Option<u32>,
    /// Health after this probe.
    pub healthy: bool,
    /// This probe flipped the target's health.
    pub changed: bool,
}

impl fmt::Display for HealthEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>10.6}s {} probe ", self.at.as_secs_f64(), self.target)?;
        match self.status {
            Some(c) => write!(f, "{c}")?,
            None => write!(f, "failed")?,
        }
        if let Some(w) = self.weight {
            write!(f, " weight {w}")?;
        }
        let h = if self.healthy { "healthy" } else { "unhealthy" };
        if self.changed {
            write!(f, " → now {h}")
        } else {
            write!(f, " ({h})")
        }
    }
}

pub(super) struct ProbeTarget {
    name: String,
    ip: Ipv4Addr,
    ok_run: u32,
    fail_run: u32,
    healthy: bool,
    pending: Option<RequestId>,
}

pub(super) struct Prober {
    spec: HealthCheckSpec,
    client: String,
    pub(super) next_round: Duration,
    targets: Vec<ProbeTarget>,
    events: Vec<HealthEvent>,
}

impl World {
    /// Turn on LB health checking (see [`HealthCheckSpec`]). Adds the prober, an external
    /// embedded client named `<lb>-healthcheck` at `spec.source` that may reach every
    /// target node, sets every target's health to `spec.initially_healthy` and starts the
    /// first round now. Note: with probes running the clock always has a next deadline;
    /// [`World::run_until_idle`] ignores the probe schedule.
    pub fn enable_health_checks(&mut self, spec: HealthCheckSpec) -> Result<(), SimError> {
        let lbd = self.lb.clone().ok_or(SimError::NoLoadBalancer)?;
        let client = format!("{}-healthcheck", lbd.name);
        let desc = ClientDesc {
            name: client.clone(),
            ip: spec.source,
            attach: Attachment::External {
                can_reach: lbd.nodes.clone(),
            },
            ipv6: None,
        };
        let net = self.client_net_for(spec.source);
        let mut host = Host::new(
            HostConfig {
                link: client.clone(),
                ip: spec.source,
                prefix_len: net.prefix_len(),
                gateway: first_host(net),
                seed: self.rng.next_u64(),
                v6: None,
            },
            self.now,
        );
        let h = host.with_client(self.rng.next_u64());
        let Attachment::External { can_reach } = &desc.attach else {
            unreachable!()
        };
        let e = self.attach_external(&client, (spec.source, None), can_reach, Box::new(host))?;
        self.edges[e].client = Some(h);
        self.mark_embedded(e);
        let mut targets = Vec::new();
        for n in &lbd.nodes {
            let i = self.node_index(n)?;
            targets.push(ProbeTarget {
                name: n.clone(),
                ip: self.nodes[i].node.eth0(),
                ok_run: 0,
                fail_run: 0,
                healthy: spec.initially_healthy,
                pending: None,
            });
        }
        if let Some(lb) = self.router.load_balancer_mut(&lbd.name) {
            for t in &targets {
                lb.set_healthy(&t.name, t.healthy);
            }
        }
        self.prober = Some(Prober {
            spec,
            client,
            next_round: self.now,
            targets,
            events: Vec::new(),
        });
        Ok(())
    }

    /// Every probe result so far (with health flips marked).
    pub fn health_events(&self) -> &[HealthEvent] {
        self.prober.as_ref().map(|p| &p.events[..]).unwrap_or(&[])
    }

    /// (target, healthy, weight) of the load balancer's targets now.
    pub fn lb_targets(&self) -> Vec<(String, bool, u32)> {
        self.router
            .load_balancers()
            .iter()
            .flat_map(|lb| lb.targets.iter())
            .map(|t| (t.name.clone(), t.healthy, t.weight))
            .collect()
    }

    /// Collect finished probes and start a round when due.
    pub(super) fn probe_tick(&mut self) {
        let Some(mut pr) = self.prober.take() else {
            return;
        };
        let now = self.now;
        let lb_name = self.lb.as_ref().map(|l| l.name.clone()).unwrap_or_default();
        for t in &mut pr.targets {
            let Some(id) = t.pending else { continue };
            // Taken: the probe's client keeps no outcome (one probe per target per round).
            let Some(out) = self.request_client(id).and_then(|c| c.take_outcome(id)) else {
                continue;
            };
            t.pending = None;
            let ok = out.status == Some(200);
            let weight = out
                .header("X-Load-Balancing-Endpoint-Weight")
                .and_then(|v| v.trim().parse::<u32>().ok());
            let before = t.healthy;
            if ok {
                t.ok_run += 1;
                t.fail_run = 0;
                if !t.healthy && t.ok_run >= pr.spec.healthy_threshold {
                    t.healthy = true;
                }
            } else {
                t.fail_run += 1;
                t.ok_run = 0;
                if t.healthy && t.fail_run >= pr.spec.unhealthy_threshold {
                    t.healthy = false;
                }
            }
            if let Some(lb) = self.router.load_balancer_mut(&lb_name) {
                lb.set_healthy(&t.name, t.healthy);
                if pr.spec.weighted && ok {
                    if let Some(w) = weight {
                        lb.set_weight(&t.name, w);
                    }
                }
            }
            pr.events.push(HealthEvent {
                at: now,
                target: t.name.clone(),
                status: out.status,
                weight,
                healthy: t.healthy,
                changed: before != t.healthy,
            });
        }
        if now >= pr.next_round {
            let (port, path) = self.health_port.clone();
            for i in 0..pr.targets.len() {
                if pr.targets[i].pending.is_some() {
                    continue;
                }
                let opts = RequestOpts {
                    path: path.clone(),
                    connect_timeout: Some(pr.spec.timeout),
                    max_time: Some(pr.spec.timeout),
                    host: None,
                };
                let dst = SocketAddrV4::new(pr.targets[i].ip, port);
                if let Ok(id) = self.start_request(&pr.client, dst, opts) {
                    pr.targets[i].pending = Some(id);
                }
            }
            let step = pr.spec.interval.max(Duration::from_millis(1));
            while pr.next_round <= now {
                pr.next_round += step;
            }
        }
        self.prober = Some(pr);
    }
}
