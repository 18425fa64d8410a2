//! kubelet's side of a pod whose app fails, sans-IO: time is a parameter, effects are
//! returned as [`Action`]s for the runner (embedded world or real processes) to carry out.
//!
//! What it models (kubernetes/kubernetes, read via the search tools):
//! - The exit is noticed at the next PLEG relist (pkg/kubelet/kubelet.go
//!   `genericPlegRelistPeriod = time.Second * 1`); the pod turns NotReady then.
//! - `restartPolicy: Always` restarts the container with CrashLoopBackOff: kuberuntime's
//!   `doBackOff` (pkg/kubelet/kuberuntime/kuberuntime_manager.go) asks client-go's
//!   `flowcontrol.Backoff` (util/flowcontrol/backoff.go) `IsInBackOffSince(key,
//!   finishedAt)`; if not, it restarts at once and calls `Next`, which arms 10 s
//!   (pkg/kubelet/kubelet.go `backOffPeriod = time.Second * 10`) or doubles it, capped at
//!   `MaxContainerBackOff = 300 * time.Second`. So the first restart is immediate, a
//!   container that exits again within its window waits until `finishedAt + backoff`, and the
//!   entry expires (`hasExpired`) after 2 × the cap without a restart.
//! - Without a readinessProbe the pod is Ready as soon as the container runs. With one
//!   (pkg/kubelet/prober/worker.go): a new container's result starts at Failure, probes run
//!   every `periodSeconds` (skipped before `initialDelaySeconds`), `successThreshold`
//!   consecutive passes make it Ready, `failureThreshold` failures NotReady again. A probe
//!   passes when the running app listens on the probe's port (httpGet: the lab's HTTP apps
//!   answer every path with 200; the path is not checked).
//! - Every Ready change reaches the EndpointSlice at once and every node's kube-proxy
//!   `sync_delay` later (one pending sync carries every change made before it, like
//!   kube-proxy's `minSyncPeriod` runner).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use nodeport::EndpointSlice;

use crate::model::{Pod, ReadinessProbe};

/// kubelet's `backOffPeriod`: the first CrashLoopBackOff delay.
pub const BACKOFF_PERIOD: Duration = Duration::from_secs(10);
/// kubelet's `MaxContainerBackOff`.
pub const MAX_CONTAINER_BACKOFF: Duration = Duration::from_secs(300);
/// kubelet's `genericPlegRelistPeriod`: how soon an exit is noticed.
pub const PLEG_RELIST_PERIOD: Duration = Duration::from_secs(1);

/// What happened to a pod (the `events[]` of a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    Crash,
    Restart,
    Ready,
    NotReady,
    Sync,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Crash => "crash",
            EventKind::Restart => "restart",
            EventKind::Ready => "ready",
            EventKind::NotReady => "notready",
            EventKind::Sync => "sync",
        }
    }
}

/// One event: at `at` (run time), `kind` for `pod`; `node` is the pod's node, or for
/// `sync` the node whose kube-proxy applied the pod's new readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub at: Duration,
    pub kind: EventKind,
    pub pod: String,
    pub node: String,
}

impl fmt::Display for PodEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>8.3}s  {:<8}  {}  ({})",
            self.at.as_secs_f64(),
            self.kind.as_str(),
            self.pod,
            self.node
        )
    }
}

/// What the runner must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the pod's app again (the container restarts).
    StartApp { pod: String },
    /// Push [`Kubelet::apply`]'d EndpointSlices to every node's kube-proxy.
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Running {
        started: Duration,
    },
    /// Exited at `finished`; `restart_at` once kubelet noticed and decided.
    Exited {
        finished: Duration,
        restart_at: Option<Duration>,
    },
}

#[derive(Debug, Clone)]
struct Life {
    node: String,
    ip: Ipv4Addr,
    /// The pod's IPv6 address (its endpoints in IPv6 slices).
    ipv6: Option<std::net::Ipv6Addr>,
    tcp_ports: Vec<u16>,
    probe: Option<ReadinessProbe>,
    container: Container,
    ready: bool,
    /// Readiness as every kube-proxy last synced it.
    published: bool,
    restarts: u32,
    /// (backoff, lastUpdate) of the flowcontrol.Backoff entry.
    backoff: Option<(Duration, Duration)>,
    successes: u32,
    failures: u32,
    next_probe: Option<Duration>,
}

/// Every pod's kubelet state, the events so far and the pending kube-proxy sync.
#[derive(Debug, Clone)]
pub struct Kubelet {
    pods: BTreeMap<String, Life>,
    nodes: Vec<String>,
    sync_delay: Duration,
    pending_sync: Option<Duration>,
    events: Vec<PodEvent>,
    /// [`Kubelet::poll_at`], kept up to date by every change (a run asks it per request:
    /// scanning 10 000 pods each time cost a second at 1000 nodes).
    due: Option<Duration>,
}

impl Kubelet {
    /// The scheduled pods, running and Ready at `now` (as if up for a while); `nodes` are
    /// the nodes whose kube-proxy syncs.
    pub fn new(pods: &[Pod], nodes: Vec<String>, sync_delay: Duration, now: Duration) -> Self {
        let mut k = Kubelet {
            pods: BTreeMap::new(),
            nodes,
            sync_delay,
            pending_sync: None,
            events: Vec::new(),
            due: None,
        };
        for p in pods {
            k.add_pod(p, now);
        }
        k
    }

    /// A pod started (at construction or by a scale-up): running, Ready as scheduled
    /// (`Pod::ready`: false when its readinessProbe can never pass).
    pub fn add_pod(&mut self, p: &Pod, now: Duration) {
        let next_probe = p.readiness_probe.as_ref().map(|pr| now + pr.period);
        self.due = earliest(self.due, next_probe);
        self.pods.insert(
            p.name.clone(),
            Life {
                node: p.node.clone(),
                ip: p.ip,
                ipv6: p.ipv6,
                tcp_ports: p.tcp_ports(),
                probe: p.readiness_probe.clone(),
                container: Container::Running { started: now },
                ready: p.ready,
                published: p.ready,
                restarts: 0,
                backoff: None,
                successes: 0,
                failures: 0,
                next_probe,
            },
        );
    }

    /// A pod deleted (scale-down): kubelet forgets it.
    pub fn remove_pod(&mut self, name: &str) {
        if let Some(l) = self.pods.remove(name) {
            if pod_due(&l).is_some() && pod_due(&l) == self.due {
                self.refresh_due();
            }
        }
    }

    /// The pod's app exited at `now`. `false` when the pod is unknown or already exited.
    pub fn crash(&mut self, pod: &str, now: Duration) -> bool {
        let Some(l) = self.pods.get_mut(pod) else {
            return false;
        };
        if !matches!(l.container, Container::Running { .. }) {
            return false;
        }
        l.container = Container::Exited {
            finished: now,
            restart_at: None,
        };
        self.due = earliest(self.due, pod_due(l));
        let node = l.node.clone();
        self.event(now, EventKind::Crash, pod, &node);
        true
    }

    pub fn restarts(&self, pod: &str) -> u32 {
        self.pods.get(pod).map_or(0, |l| l.restarts)
    }

    pub fn is_ready(&self, pod: &str) -> Option<bool> {
        self.pods.get(pod).map(|l| l.ready)
    }

    /// Whether the pod's app is running (not exited and waiting for its restart).
    pub fn is_running(&self, pod: &str) -> bool {
        self.pods
            .get(pod)
            .is_some_and(|l| matches!(l.container, Container::Running { .. }))
    }

    pub fn events(&self) -> &[PodEvent] {
        &self.events
    }

    /// `pods` with kubelet's restart counts and readiness (pods it does not know as they are).
    pub fn status_of(&self, pods: &[Pod]) -> Vec<Pod> {
        pods.iter()
            .map(|p| Pod {
                restarts: self.restarts(&p.name),
                ready: self.is_ready(&p.name).unwrap_or(p.ready),
                ..p.clone()
            })
            .collect()
    }

    /// The slices as kube-proxy should see them after the last sync: endpoints of pods that
    /// were NotReady then have `ready`/`serving` false.
    pub fn apply(&self, slices: &[EndpointSlice]) -> Vec<EndpointSlice> {
        let down: Vec<std::net::IpAddr> = self
            .pods
            .values()
            .filter(|l| !l.published)
            .flat_map(|l| std::iter::once(l.ip.into()).chain(l.ipv6.map(Into::into)))
            .collect();
        let mut out = slices.to_vec();
        for s in &mut out {
            for e in &mut s.endpoints {
                if down.contains(&e.ip) {
                    e.ready = false;
                    e.serving = false;
                }
            }
        }
        out
    }

    /// The earliest time [`Kubelet::poll`] has something to do.
    pub fn poll_at(&self) -> Option<Duration> {
        self.due
    }

    fn refresh_due(&mut self) {
        self.due = self
            .pods
            .values()
            .filter_map(pod_due)
            .chain(self.pending_sync)
            .min();
    }

    /// Do everything due at `now`.
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        let names: Vec<String> = self.pods.keys().cloned().collect();
        for name in names {
            self.poll_pod(&name, now, &mut actions);
        }
        if self.pending_sync.is_some_and(|t| t <= now) {
            self.pending_sync = None;
            let changed: Vec<String> = self
                .pods
                .iter()
                .filter(|(_, l)| l.published != l.ready)
                .map(|(n, _)| n.clone())
                .collect();
            for l in self.pods.values_mut() {
                l.published = l.ready;
            }
            for node in self.nodes.clone() {
                for pod in &changed {
                    self.event(now, EventKind::Sync, pod, &node);
                }
            }
            actions.push(Action::Sync);
        }
        self.refresh_due();
        actions
    }

    fn poll_pod(&mut self, name: &str, now: Duration, actions: &mut Vec<Action>) {
        let Some(l) = self.pods.get(name) else { return };
        match l.container {
            Container::Exited {
                finished,
                restart_at: None,
            } if finished + PLEG_RELIST_PERIOD <= now => {
                self.set_ready(name, false, now);
                let l = self.pods.get_mut(name).expect("pod present");
                let in_backoff = l.backoff.is_some_and(|(backoff, last)| {
                    !expired(finished, last) && now.saturating_sub(finished) < backoff
                });
                let at = if in_backoff {
                    finished + l.backoff.map_or(Duration::ZERO, |b| b.0)
                } else {
                    now
                };
                l.container = Container::Exited {
                    finished,
                    restart_at: Some(at),
                };
                if at <= now {
                    self.restart(name, now, actions);
                }
            }
            Container::Exited {
                restart_at: Some(t),
                ..
            } if t <= now => self.restart(name, now, actions),
            _ => {}
        }
        self.probe(name, now);
    }

    /// The container starts again: `Next` on the back-off entry, restart count, app start.
    fn restart(&mut self, name: &str, now: Duration, actions: &mut Vec<Action>) {
        let Some(l) = self.pods.get_mut(name) else {
            return;
        };
        let Container::Exited { finished, .. } = l.container else {
            return;
        };
        l.backoff = Some(match l.backoff {
            Some((b, last)) if !expired(finished, last) => {
                ((b * 2).min(MAX_CONTAINER_BACKOFF), now)
            }
            _ => (BACKOFF_PERIOD, now),
        });
        l.container = Container::Running { started: now };
        l.restarts += 1;
        l.successes = 0;
        l.failures = 0;
        let (node, probe) = (l.node.clone(), l.probe.is_some());
        self.event(now, EventKind::Restart, name, &node);
        actions.push(Action::StartApp {
            pod: name.to_string(),
        });
        if !probe {
            self.set_ready(name, true, now);
        }
    }

    /// The readiness probe ticks due at `now`.
    fn probe(&mut self, name: &str, now: Duration) {
        loop {
            let Some(l) = self.pods.get_mut(name) else {
                return;
            };
            let (Some(pr), Some(t)) = (l.probe.clone(), l.next_probe) else {
                return;
            };
            if t > now {
                return;
            }
            l.next_probe = Some(t + pr.period);
            let Container::Running { started } = l.container else {
                continue;
            };
            if t.saturating_sub(started) < pr.initial_delay {
                continue;
            }
            let passes = l.tcp_ports.contains(&pr.check.port());
            let flip = if passes {
                l.successes += 1;
                l.failures = 0;
                (!l.ready && l.successes >= pr.success_threshold).then_some(true)
            } else {
                l.failures += 1;
                l.successes = 0;
                (l.ready && l.failures >= pr.failure_threshold).then_some(false)
            };
            if let Some(ready) = flip {
                self.set_ready(name, ready, t);
            }
        }
    }

    fn set_ready(&mut self, name: &str, ready: bool, now: Duration) {
        let Some(l) = self.pods.get_mut(name) else {
            return;
        };
        if l.ready == ready {
            return;
        }
        l.ready = ready;
        let node = l.node.clone();
        let kind = if ready {
            EventKind::Ready
        } else {
            EventKind::NotReady
        };
        self.event(now, kind, name, &node);
        if self.pending_sync.is_none() {
            self.pending_sync = Some(now + self.sync_delay);
        }
    }

    fn event(&mut self, at: Duration, kind: EventKind, pod: &str, node: &str) {
        self.events.push(PodEvent {
            at,
            kind,
            pod: pod.to_string(),
            node: node.to_string(),
        });
    }
}

/// client-go flowcontrol's `hasExpired`: stable after twice the maximum back-off.
fn expired(event: Duration, last_update: Duration) -> bool {
    event.saturating_sub(last_update) > MAX_CONTAINER_BACKOFF * 2
}

/// When pod `l` next needs kubelet: the relist that notices its exit, its restart, its next
/// readiness probe.
fn pod_due(l: &Life) -> Option<Duration> {
    let dead = match l.container {
        Container::Exited {
            finished,
            restart_at: None,
        } => Some(finished + PLEG_RELIST_PERIOD),
        Container::Exited {
            restart_at: Some(t),
            ..
        } => Some(t),
        Container::Running { .. } => None,
    };
    dead.into_iter().chain(l.next_probe).min()
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    a.into_iter().chain(b).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProbeCheck;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    fn pod(name: &str, probe: Option<ReadinessProbe>) -> Pod {
        Pod {
            namespace: "default".into(),
            name: name.into(),
            deployment: "web".into(),
            node: "node1".into(),
            ip: Ipv4Addr::new(10, 244, 1, 2),
            ipv6: None,
            labels: Default::default(),
            container_ports: vec![],
            apps: vec![],
            ready: true,
            restarts: 0,
            readiness_probe: probe,
        }
    }

    /// Polls at every deadline up to `until`; returns (time, action) pairs.
    fn drive(k: &mut Kubelet, until: Duration) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        while let Some(t) = k.poll_at().filter(|t| *t <= until) {
            out.extend(k.poll(t).into_iter().map(|a| (t, a)));
        }
        out
    }

    fn kinds(k: &Kubelet) -> Vec<(u64, EventKind)> {
        k.events()
            .iter()
            .map(|e| (e.at.as_millis() as u64, e.kind))
            .collect()
    }

    #[test]
    fn first_restart_is_immediate_then_back_off_doubles_to_the_cap() {
        let mut k = Kubelet::new(&[pod("a", None)], vec!["node1".into()], s(1), s(0));
        let mut restarts = Vec::new();
        let mut t = s(5);
        for _ in 0..8 {
            assert!(k.crash("a", t));
            let acts = drive(&mut k, t + s(400));
            let start = acts
                .iter()
                .find(|(_, a)| matches!(a, Action::StartApp { .. }))
                .map(|(at, _)| *at)
                .expect("restarted");
            restarts.push((start - t).as_secs());
            t = start + s(1); // crashes again a second after each start
        }
        // Noticed after the 1 s relist; then 10, 20, 40, 80, 160, 300, 300 s after the exit.
        assert_eq!(restarts, vec![1, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(k.restarts("a"), 8);
    }

    #[test]
    fn back_off_resets_after_ten_minutes_of_running() {
        let mut k = Kubelet::new(&[pod("a", None)], vec!["n".into()], s(1), s(0));
        k.crash("a", s(1));
        drive(&mut k, s(2));
        k.crash("a", s(3));
        drive(&mut k, s(20)); // restarted at 13 s (10 s back-off)
        assert_eq!(k.restarts("a"), 2);
        k.crash("a", s(13 + 601));
        let acts = drive(&mut k, s(13 + 603));
        assert!(acts.contains(&(s(13 + 602), Action::StartApp { pod: "a".into() })));
    }

    #[test]
    fn not_ready_at_notice_synced_after_the_delay_ready_again_without_probe() {
        let mut k = Kubelet::new(
            &[pod("a", None)],
            vec!["n1".into(), "n2".into()],
            s(2),
            s(0),
        );
        k.crash("a", s(10));
        let acts = drive(&mut k, s(100));
        assert_eq!(
            kinds(&k),
            vec![
                (10_000, EventKind::Crash),
                (11_000, EventKind::NotReady),
                (11_000, EventKind::Restart),
                (11_000, EventKind::Ready),
            ]
        );
        // NotReady and Ready at the same instant: the pending sync finds nothing changed.
        assert_eq!(acts.iter().filter(|(_, a)| *a == Action::Sync).count(), 1);
    }

    #[test]
    fn readiness_probe_gates_ready_after_restart() {
        let probe = ReadinessProbe {
            check: ProbeCheck::HttpGet {
                path: "/".into(),
                port: 80,
            },
            initial_delay: s(0),
            period: s(10),
            timeout: s(1),
            success_threshold: 1,
            failure_threshold: 3,
        };
        let mut k = Kubelet::new(&[pod("a", Some(probe))], vec!["n".into()], s(1), s(0));
        k.crash("a", s(12));
        drive(&mut k, s(60));
        assert_eq!(
            kinds(&k),
            vec![
                (12_000, EventKind::Crash),
                (13_000, EventKind::NotReady),
                (13_000, EventKind::Restart),
                (14_000, EventKind::Sync),
                (20_000, EventKind::Ready),
                (21_000, EventKind::Sync),
            ]
        );
        let slice = EndpointSlice {
            address_type: Default::default(),
            service: nodeport::ServiceRef {
                namespace: "default".into(),
                name: "web".into(),
            },
            ports: vec![],
            endpoints: vec![nodeport::Endpoint {
                ip: std::net::IpAddr::V4(Ipv4Addr::new(10, 244, 1, 2)),
                node_name: Some("node1".into()),
                ready: true,
                serving: true,
                terminating: false,
            }],
        };
        assert!(k.apply(std::slice::from_ref(&slice))[0].endpoints[0].ready);
    }

    #[test]
    fn probe_on_a_port_nothing_listens_on_never_passes() {
        let probe = ReadinessProbe {
            check: ProbeCheck::TcpSocket { port: 8080 },
            initial_delay: s(0),
            period: s(5),
            timeout: s(1),
            success_threshold: 1,
            failure_threshold: 3,
        };
        let mut k = Kubelet::new(&[pod("a", Some(probe))], vec!["n".into()], s(1), s(0));
        drive(&mut k, s(14));
        assert_eq!(k.is_ready("a"), Some(true)); // failures at 5 and 10 s
        drive(&mut k, s(15));
        assert_eq!(k.is_ready("a"), Some(false)); // the third, at 15 s
    }
}
