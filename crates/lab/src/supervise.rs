//! Real mode's kubelet: [`cluster::kubelet`] driven on the wall clock against real processes.
//! An app that exits (a `crash:` entry, or nginx dying on its own or killed by hand during
//! `lab up`) is noticed through SIGCHLD ([`host::childwatch`]), the pod turns NotReady, every
//! node's kube-proxy resyncs after `kubeProxy.syncDelay`, and the app is started again with
//! CrashLoopBackOff — the same model embedded mode runs on virtual time.
//!
//! Owns: the kubelet state of a real run and applying its actions to the [`Lab`] and the
//! world. The loops that call [`Supervisor::tick`] are [`crate::realrun`]'s.

use std::io::Write;
use std::os::fd::RawFd;
use std::time::Duration;

use anyhow::anyhow;

use cluster::kubelet::{Action, Kubelet, PodEvent};
use cluster::Cluster;
use host::lab::Lab;

/// The kubelet of a real run.
pub struct Supervisor {
    kubelet: Kubelet,
    services: Vec<nodeport::Service>,
    slices: Vec<nodeport::EndpointSlice>,
    /// The self-pipe that becomes readable when a child exits (poll it with the TUN fds).
    wake_fd: RawFd,
    /// Print each event on stdout as it happens (`lab up`).
    echo: bool,
    /// Events already printed.
    shown: usize,
}

impl Supervisor {
    /// Every pod running and Ready at `now`; installs the SIGCHLD watch.
    pub fn new(cluster: &Cluster, now: Duration, echo: bool) -> anyhow::Result<Self> {
        let wake_fd = host::childwatch::watch().map_err(|e| anyhow!("{e}"))?;
        let nodes = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        Ok(Supervisor {
            kubelet: Kubelet::new(&cluster.pods, nodes, cluster.kube_proxy.sync_delay, now),
            services: cluster.services.clone(),
            slices: cluster.slices.clone(),
            wake_fd,
            echo,
            shown: 0,
        })
    }

    /// The fd to poll along with the TUN fds.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_fd
    }

    /// Print events as they happen from now on.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// A `crash:` entry: the pod's app is killed now.
    pub fn crash(&mut self, lab: &mut Lab, pod: &str, now: Duration) -> anyhow::Result<()> {
        lab.crash_app(pod)
            .map_err(|e| anyhow!("crashing {pod}: {e}"))?;
        self.kubelet.crash(pod, now);
        self.show();
        Ok(())
    }

    /// Everything due at `now`: apps that exited, restarts, kube-proxy syncs. Returns when
    /// it must run next (`None`: only when a child exits). Call it from the fabric loop.
    pub fn tick(
        &mut self,
        lab: &mut Lab,
        world: &mut sim::World,
        now: Duration,
    ) -> Option<Duration> {
        if host::childwatch::take_exited() {
            for pod in lab.reap_exited_apps() {
                self.kubelet.crash(&pod, now);
            }
        }
        if self.kubelet.poll_at().is_some_and(|t| t <= now) {
            for a in self.kubelet.poll(now) {
                match a {
                    Action::StartApp { pod } => {
                        if let Err(e) = lab.restart_app(&pod) {
                            // kubelet would retry; the lab reports it and goes on.
                            tracing::warn!(%pod, "restarting the app failed: {e}");
                            eprintln!("warning: restarting the app of pod {pod} failed: {e}");
                        }
                    }
                    Action::Sync => {
                        let slices = self.kubelet.apply(&self.slices);
                        world.set_services(&self.services, &slices);
                    }
                }
            }
        }
        self.show();
        self.kubelet.poll_at()
    }

    fn show(&mut self) {
        let events = self.kubelet.events();
        if self.echo && events.len() > self.shown {
            let mut out = std::io::stdout().lock();
            for e in &events[self.shown..] {
                let _ = writeln!(out, "event: {e}");
            }
            let _ = out.flush();
        }
        self.shown = events.len();
    }

    /// The control plane changed the Services or EndpointSlices (a `delete:` entry, a
    /// PATCH): kubelet keeps them for its later syncs; returns them with the readiness
    /// kubelet has now, for every node to sync.
    pub fn set_services(
        &mut self,
        services: &[nodeport::Service],
        slices: &[nodeport::EndpointSlice],
    ) -> Vec<nodeport::EndpointSlice> {
        self.services = services.to_vec();
        self.slices = slices.to_vec();
        self.kubelet.apply(&self.slices)
    }

    /// A pod started while the lab runs (Ready once its app listens, like the others).
    pub fn add_pod(&mut self, pod: &cluster::Pod, now: Duration) {
        self.kubelet.add_pod(pod, now);
    }

    /// A pod deleted while the lab runs.
    pub fn remove_pod(&mut self, name: &str) {
        self.kubelet.remove_pod(name);
    }

    pub fn events(&self) -> &[PodEvent] {
        self.kubelet.events()
    }

    /// The pods with their restart counts and readiness as kubelet has them now.
    pub fn pods(&self, pods: &[cluster::Pod]) -> Vec<cluster::Pod> {
        self.kubelet.status_of(pods)
    }
}
