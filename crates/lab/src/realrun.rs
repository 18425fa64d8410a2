//! Real mode end to end: the scenario's pods become network namespaces running Debian's
//! nginx, its clients namespaces where real curl runs, each attached to the *same*
//! [`sim::World`] as embedded mode through a TUN port; the world runs on the wall clock,
//! driven by [`host::driver::Driver`]'s poll(2) loop.
//!
//! Owns: `lab scenario run --real`, `lab up`, `lab status`, `lab down`, `lab conntrack`.
//! Does not own: namespace/TUN/process plumbing ([`host`]) nor the world itself.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::control;
use crate::plan::{due_actions, expand_plan, traced_views, PlannedRequest, Progress, RunOptions};
use crate::report::{self, Mode, Outcome, RequestResult, ScenarioResult};
use crate::setup::{attachment, prepare_world_with};
use crate::supervise::Supervisor;
use cluster::{ActionKind, ClientAttach, Cluster};
use host::cleanup::{self, StateDir};
use host::curl::{CurlOutcome, CurlRequest, CurlRun};
use host::driver::Driver;
use host::lab::{ClientSpec, Ipv6Link, Lab, PodSpec, Role, UpOptions};
use host::udp::{UdpOutcome, UdpRequest, UdpRun};
use host::{netns, PREFIX};

/// Connect timeout when the plan sets none: a little above Linux's SYN retry span
/// (1+2+4+8+16+32+64 s ≈ 127 s), so the kernel's own give-up decides, as in embedded mode.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(130);

/// A running real-mode lab: processes/namespaces, the world they are attached to, the loop.
pub struct RealRun {
    pub lab: Lab,
    pub world: sim::World,
    pub driver: Driver,
    /// kubelet: apps that exit are noticed, restarted with back-off, kept out of the
    /// EndpointSlices while NotReady.
    pub supervisor: Supervisor,
    /// Access-log read offsets per pod (bytes), to read only what is new.
    offsets: Vec<(String, PathBuf, u64)>,
    /// The TUN fd of every pod and client the driver polls.
    fds: Vec<(String, RawFd)>,
    /// With [`UpOptions::queues`] > 1: the devices' queues, for [`crate::workers`] (the
    /// world's ports are then [`vswitch::queued::QueuedPort`]s and the driver is not used).
    queues: Option<crate::workers::Queues>,
}

/// Every datagram the fabric moves is a heap buffer of up to the TUN MTU (64 KiB with
/// `--mtu 65000`). glibc's defaults hand such blocks back to the kernel as soon as they are
/// freed (heap trimming above 128 KiB of free top, mmap for blocks above the dynamic
/// threshold), so the next packet page-faults fresh zeroed pages: measured ≈15 % of the
/// lab's CPU under iperf3 in page-fault handling. Keep freed memory in the process instead.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before the packet threads
    // start working (and safe at any time anyway).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// The IPv6 side of an address on node `n`'s cni0 network (its IPv6 pod /64, cni0's IPv6
/// address the gateway), as the world's node routes it.
fn cni0_v6(n: &cluster::Node, ip: Option<std::net::Ipv6Addr>) -> Option<Ipv6Link> {
    Some(Ipv6Link {
        ip: ip?,
        prefix_len: n.pod_cidr_v6?.prefix_len(),
        gateway: n.cni0_ipv6()?,
    })
}

/// What real mode needs to run `p`: its address on its node's cni0 network (both families
/// on a dual-stack node).
fn pod_spec(cluster: &Cluster, p: &cluster::Pod) -> anyhow::Result<PodSpec> {
    let n = cluster
        .node(&p.node)
        .with_context(|| format!("pod {} on unknown node {}", p.name, p.node))?;
    Ok(PodSpec {
        name: p.name.clone(),
        node: p.node.clone(),
        ip: p.ip,
        prefix_len: n.pod_cidr.prefix_len(),
        gateway: n.cni0_ip(),
        apps: p.apps.iter().map(|a| crate::app::pod_app(a, p)).collect(),
        ipv6: cni0_v6(n, p.ipv6),
    })
}

/// What real mode needs to run client `c`: its network and gateway per family, as the world
/// attaches it (an external client: its own /24 behind the router, `.1`, and with IPv6 the
/// /64 around its address, `::1`; a pod client: its node's cni0 network).
fn client_spec(cluster: &Cluster, c: &cluster::Client) -> anyhow::Result<ClientSpec> {
    let (prefix_len, gateway, ipv6) = match &c.attach {
        ClientAttach::External { .. } => {
            let v6 = c.ipv6.map(|ip| Ipv6Link {
                ip,
                prefix_len: 64,
                // The /64's first host (sim's client_net6 + first_host_v6).
                gateway: std::net::Ipv6Addr::from((u128::from(ip) & !(u128::from(u64::MAX))) | 1),
            });
            (24, gateway(c.ip, 24), v6)
        }
        ClientAttach::Pod { node } => {
            let n = cluster
                .node(node)
                .with_context(|| format!("client {} on unknown node {node}", c.name))?;
            (n.pod_cidr.prefix_len(), n.cni0_ip(), cni0_v6(n, c.ipv6))
        }
    };
    Ok(ClientSpec {
        name: c.name.clone(),
        ip: c.ip,
        prefix_len,
        gateway,
        ipv6,
    })
}

/// Namespaces, TUN ports, nginx; the world built around them (health-check warm-up first).
pub fn bring_up(
    cluster: &Cluster,
    tracing: bool,
    pcap: Option<&Path>,
    up: &UpOptions,
) -> anyhow::Result<RealRun> {
    let pods = cluster
        .pods
        .iter()
        .map(|p| pod_spec(cluster, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let clients = cluster
        .clients
        .iter()
        .map(|c| client_spec(cluster, c))
        .collect::<anyhow::Result<Vec<_>>>()?;

    tune_allocator();
    let (lab, ports) = Lab::up(&pods, &clients, up).map_err(|e| anyhow!("{e}"))?;
    let mut fds: Vec<(String, RawFd)> = Vec::new();
    let mut queues = (up.queues > 1).then(|| crate::workers::Queues {
        ex: vswitch::queued::Exchange::new(),
        ports: (0..up.queues).map(|_| Vec::new()).collect(),
    });
    let world = prepare_world_with(cluster, false, tracing, pcap, |w| {
        for mut p in ports {
            fds.push((p.name.clone(), p.port.raw_fd()));
            let port: Box<dyn vswitch::Port + Send> = match &mut queues {
                Some(q) => {
                    let fabric_side = q.ex.port(p.name.clone());
                    let all = std::iter::once(p.port).chain(std::mem::take(&mut p.queues));
                    for (k, queue) in all.enumerate() {
                        if let Some(ports) = q.ports.get_mut(k) {
                            ports.push(queue);
                        }
                    }
                    Box::new(fabric_side)
                }
                None => Box::new(p.port),
            };
            match p.role {
                Role::Pod { node } => w
                    .add_pod_port_ips(&p.name, (p.ip, p.ipv6), &node, port)
                    .map_err(|e| anyhow!("attaching pod {}: {e}", p.name))?,
                Role::Client => {
                    let c = cluster
                        .client(&p.name)
                        .with_context(|| format!("unknown client {}", p.name))?;
                    w.add_client_port_ips(&p.name, (p.ip, p.ipv6), &attachment(&c.attach), port)
                        .map_err(|e| anyhow!("attaching client {}: {e}", p.name))?
                }
            }
        }
        Ok(())
    })?;
    let supervisor = Supervisor::new(cluster, world.now(), false)?;
    // Not a port: wakes the loop when an app exits (no pod or client has this name).
    fds.push(("(sigchld)".into(), supervisor.wake_fd()));
    // The world's clock continues from where the virtual warm-up left it.
    let epoch = Instant::now()
        .checked_sub(world.now())
        .unwrap_or_else(Instant::now);
    let driver = Driver::with_epoch(fds.iter().map(|(_, fd)| *fd), epoch);
    let offsets = cluster
        .pods
        .iter()
        .flat_map(|p| {
            lab.access_logs(&p.name)
                .into_iter()
                .map(|log| (p.name.clone(), log, 0))
        })
        .collect();
    Ok(RealRun {
        lab,
        world,
        driver,
        supervisor,
        offsets,
        fds,
        queues,
    })
}

impl RealRun {
    /// Drive the world for `d` of wall time.
    pub fn run_for(&mut self, d: Duration) -> anyhow::Result<()> {
        if self.queues.is_some() {
            bail!("scenario runs drive the world on one thread (no multi-queue devices)");
        }
        let until = self.driver.now() + d;
        let (world, lab, sup) = (&mut self.world, &mut self.lab, &mut self.supervisor);
        self.driver
            .run(&mut |now| fabric(world, lab, sup, now), |now| {
                now >= until || cleanup::stop_requested()
            })
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }

    /// Starts pod `p` of `cluster` while the lab runs (namespace, TUN port, nginx) and
    /// attaches it to the world's fabric.
    pub fn add_pod(&mut self, cluster: &Cluster, p: &cluster::Pod) -> anyhow::Result<()> {
        if self.queues.is_some() {
            bail!("pods cannot be added to a lab with more than one datapath thread");
        }
        let port = self
            .lab
            .add_pod(&pod_spec(cluster, p)?)
            .map_err(|e| anyhow!("starting pod {}: {e}", p.name))?;
        let fd = port.port.raw_fd();
        self.world
            .add_pod_port_ips(&p.name, (p.ip, port.ipv6), &p.node, Box::new(port.port))
            .map_err(|e| anyhow!("attaching pod {}: {e}", p.name))?;
        self.fds.push((p.name.clone(), fd));
        self.driver.set_fds(self.fds.iter().map(|(_, fd)| *fd));
        self.supervisor.add_pod(p, self.driver.now());
        // A pod name seen before (deleted, then back) may find its old log files.
        self.offsets.retain(|(o, _, _)| *o != p.name);
        for path in self.lab.access_logs(&p.name) {
            let start = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.offsets.push((p.name.clone(), path, start));
        }
        Ok(())
    }

    /// New Services / EndpointSlices from the control plane: every node's kube-proxy syncs
    /// them, with the readiness kubelet has now (a crashed pod stays NotReady).
    pub fn set_services(
        &mut self,
        services: &[nodeport::Service],
        slices: &[nodeport::EndpointSlice],
    ) {
        let slices = self.supervisor.set_services(services, slices);
        self.world.set_services(services, &slices);
    }

    /// Deletes pod `name` while the lab runs: off the fabric, no longer polled, nginx
    /// stopped, namespace deleted. Lines it logged before stay read.
    pub fn remove_pod(&mut self, name: &str) -> anyhow::Result<()> {
        self.supervisor.remove_pod(name);
        self.world
            .remove_pod(name)
            .map_err(|e| anyhow!("deleting pod {name}: {e}"))?;
        self.fds.retain(|(n, _)| n != name);
        self.driver.set_fds(self.fds.iter().map(|(_, fd)| *fd));
        self.lab
            .remove_pod(name)
            .map_err(|e| anyhow!("stopping pod {name}: {e}"))?;
        Ok(())
    }

    /// New access-log lines of every pod since the last call: (pod, line).
    pub fn new_log_lines(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (pod, path, off) in &mut self.offsets {
            let Ok(mut f) = fs::File::open(&*path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(*off)).is_err() {
                continue;
            }
            let mut buf = String::new();
            if f.read_to_string(&mut buf).is_err() {
                continue;
            }
            // Only complete lines; a partial line is read again next time.
            let complete = buf.rfind('\n').map(|i| i + 1).unwrap_or(0);
            *off += complete as u64;
            for l in buf[..complete].lines() {
                out.push((pod.clone(), l.to_string()));
            }
        }
        out
    }
}

/// One turn of the real-mode loop: the world moves packets, kubelet does what is due.
fn fabric(
    world: &mut sim::World,
    lab: &mut Lab,
    sup: &mut Supervisor,
    now: Duration,
) -> Option<Duration> {
    let next = world.poll(now);
    let kubelet = sup.tick(lab, world, now);
    next.into_iter().chain(kubelet).min()
}

/// curl's outcome in the report's words. Linux giving up on the SYNs is reported by curl as
/// `(7) … Connection timed out` or `(28)`: both are the "hang" of the lesson.
pub(crate) fn outcome_of(
    o: &CurlOutcome,
) -> Result<(Outcome, Option<u16>, Option<String>), String> {
    match o {
        CurlOutcome::Ok(r) => Ok((Outcome::Ok, Some(r.http_code), None)),
        CurlOutcome::Timeout { stderr } => Ok((Outcome::Timeout, None, Some(stderr.clone()))),
        CurlOutcome::Refused { stderr } if stderr.contains("timed out") => {
            Ok((Outcome::Timeout, None, Some(stderr.clone())))
        }
        CurlOutcome::Refused { stderr } => Ok((Outcome::Refused, None, Some(stderr.clone()))),
        CurlOutcome::Reset { stderr } => Ok((Outcome::Reset, None, Some(stderr.clone()))),
        // (52) empty reply: the server closed the connection without answering.
        CurlOutcome::Error { code: 52, stderr } => Ok((Outcome::Reset, None, Some(stderr.clone()))),
        CurlOutcome::Error { code, stderr } => Err(format!("curl exited {code}: {stderr}")),
    }
}

/// The client address an access-log line starts with (nginx's `$remote_addr`: an IPv6
/// client without brackets, `fd00:10:151::11 - - [...]`).
pub(crate) fn first_word_ip(line: &str) -> Option<IpAddr> {
    line.split_whitespace().next()?.parse().ok()
}

/// `lab scenario run --real`.
pub fn run_real(
    cluster: &Cluster,
    opts: &RunOptions,
    progress: &mut dyn Progress,
) -> anyhow::Result<ScenarioResult> {
    cleanup::install_stop_handler().map_err(|e| anyhow!("{e}"))?;
    let traced = opts.traced_request();
    let mut rr = bring_up(
        cluster,
        traced.is_some(),
        opts.pcap.as_deref(),
        &UpOptions::default(),
    )?;
    let result = play(cluster, opts, traced, &mut rr, progress);
    let finish = rr
        .world
        .finish_captures()
        .context("writing the capture files");
    let down = rr.lab.shutdown().map_err(|e| anyhow!("tearing down: {e}"));
    let result = result?;
    if opts.pcap.is_some() {
        finish?;
    }
    down?;
    Ok(result)
}

fn play(
    cluster: &Cluster,
    opts: &RunOptions,
    traced: Option<usize>,
    rr: &mut RealRun,
    progress: &mut dyn Progress,
) -> anyhow::Result<ScenarioResult> {
    let mut next_action = 0;
    let mut requests = Vec::new();
    let mut logs: Vec<(String, Vec<String>)> = cluster
        .pods
        .iter()
        .map(|p| (p.name.clone(), Vec::new()))
        .collect();
    let mut trace = None;
    let mut all_pods = cluster.pods.clone();
    let plan = expand_plan(cluster)?;
    progress.start(plan.len());
    for (i, req) in plan.into_iter().enumerate() {
        let number = i + 1;
        run_actions(
            cluster,
            rr,
            &mut next_action,
            req.step_index,
            &mut logs,
            &mut all_pods,
        )?;
        if cleanup::stop_requested() {
            bail!("interrupted");
        }
        if traced == Some(number) {
            rr.world.clear_trace();
        }
        let result = rr.request(cluster, number, req, progress, &mut logs)?;
        if traced == Some(number) {
            // Only this request's datagrams crossed the world since the trace was cleared.
            trace = traced_views(opts, cluster, number, &result, rr.world.trace())?;
        }
        if traced.is_some() {
            rr.world.clear_trace();
        }
        progress.done(number, &result);
        requests.push(result);
    }
    run_actions(
        cluster,
        rr,
        &mut next_action,
        cluster.plan.len(),
        &mut logs,
        &mut all_pods,
    )?;
    let conntrack = opts.conntrack.then(|| {
        cluster
            .nodes
            .iter()
            .map(|n| (n.name.clone(), rr.world.conntrack(&n.name)))
            .collect()
    });
    Ok(ScenarioResult {
        // Pods started by `delete:` entries (replacements) are listed too, as in embedded mode.
        cluster: Cluster {
            pods: rr.supervisor.pods(&all_pods),
            ..cluster.clone()
        },
        mode: Mode::Real,
        requests,
        access_logs: logs,
        trace,
        conntrack,
        lb_health: Vec::new(),
        explanations: Vec::new(),
        events: rr.supervisor.events().to_vec(),
    })
}

/// The `wait:`, `scale:`, `delete:` and `crash:` entries due before plan step `upto`.
fn run_actions(
    cluster: &Cluster,
    rr: &mut RealRun,
    next: &mut usize,
    upto: usize,
    logs: &mut Vec<(String, Vec<String>)>,
    all_pods: &mut Vec<cluster::Pod>,
) -> anyhow::Result<()> {
    for a in due_actions(cluster, next, upto) {
        match &a.kind {
            ActionKind::Wait(d) => rr.run_for(*d)?,
            ActionKind::Delete(_) | ActionKind::Scale { .. } => {
                let what = if matches!(a.kind, ActionKind::Delete(_)) {
                    "delete"
                } else {
                    "scale"
                };
                let sc = a.scaled.as_ref().with_context(|| {
                    format!("plan[{}]: {what} entry was not scheduled", a.entry)
                })?;
                rr.replace_pods(cluster, sc)
                    .with_context(|| format!("plan[{}]: {what}", a.entry))?;
                for p in &sc.added {
                    logs.push((p.name.clone(), Vec::new()));
                    all_pods.push(p.clone());
                }
            }
            ActionKind::Crash(c) => {
                let pod = c.pod.as_deref().with_context(|| {
                    format!("plan[{}]: crash entry was not resolved to a pod", a.entry)
                })?;
                let now = rr.driver.now();
                rr.supervisor.crash(&mut rr.lab, pod, now)?;
            }
        }
    }
    Ok(())
}

impl RealRun {
    /// A `delete:` or `scale:` entry in real mode, in embedded mode's order: the new pods start
    /// (namespace, TUN port, nginx) and join the fabric, every kube-proxy syncs the new
    /// slices (stale UDP conntrack entries are cleared then, unless the what-if says not),
    /// then the deleted pods leave the fabric and their namespaces go.
    fn replace_pods(&mut self, cluster: &Cluster, sc: &cluster::Scaled) -> anyhow::Result<()> {
        for p in &sc.added {
            self.add_pod(cluster, p)?;
        }
        self.set_services(&cluster.services, &sc.slices);
        for r in &sc.removed {
            self.remove_pod(&r.name)?;
        }
        Ok(())
    }

    /// Plays one request: real curl in the client's namespace while the world runs, then
    /// the pod that logged it (its new access-log lines are appended to `logs`).
    pub(crate) fn request(
        &mut self,
        cluster: &Cluster,
        number: usize,
        req: PlannedRequest<'_>,
        progress: &mut dyn Progress,
        logs: &mut [(String, Vec<String>)],
    ) -> anyhow::Result<RequestResult> {
        let step = req.step;
        let _span = tracing::debug_span!("request", number, client = %step.client, dst = %req.dst)
            .entered();
        let client = cluster
            .client(&step.client)
            .with_context(|| format!("unknown client {:?}", step.client))?;
        let started = Instant::now();
        let (outcome, status, message, reply) = if crate::plan::is_udp(step) {
            progress.request(number, &req, Some(step.timeout));
            let (outcome, message, reply) = self
                .udp(&step.client, &req)
                .map_err(|e| anyhow!("request {number}: {e}"))?;
            (outcome, None, message, Some(reply))
        } else {
            let connect = step.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            let max = step.max_time.unwrap_or(connect + Duration::from_secs(60));
            let url = format!("http://{}{}", req.dst, step.path);
            let creq = CurlRequest::get(url).timeouts(connect, max);
            progress.request(number, &req, Some(connect));
            let out = self
                .curl(&step.client, &creq)
                .map_err(|e| anyhow!("request {number}: {e}"))?;
            let (outcome, status, message) =
                outcome_of(&out).map_err(|e| anyhow!("request {number}: {e}"))?;
            (outcome, status, message, None)
        };
        let elapsed = started.elapsed();
        let (pod, logged) = self.who_logged(outcome, logs)?;
        tracing::debug!(
            outcome = outcome.as_str(),
            pod = pod.as_deref().unwrap_or("-"),
            elapsed_ms = elapsed.as_millis() as u64,
            "request done"
        );
        Ok(RequestResult {
            client: client.name.clone(),
            client_ip: crate::plan::client_ip(client, req.dst.ip()),
            target: req.label,
            outcome,
            status,
            pod,
            logged_client_ip: logged,
            elapsed_ms: elapsed.as_millis() as u64,
            curl_message: message,
            reply,
        })
    }

    /// Runs curl in `client`'s namespace while the fabric runs, until it exits.
    fn curl(&mut self, client: &str, creq: &CurlRequest) -> anyhow::Result<CurlOutcome> {
        let ns = self
            .lab
            .client_ns(client)
            .with_context(|| format!("no namespace for client {client}"))?;
        let mut run = CurlRun::spawn(ns, creq).map_err(|e| anyhow!("{e}"))?;
        self.drive_until(|| run.try_finish().map_err(|e| anyhow!("{e}")))
    }

    /// Sends one UDP datagram from a real socket in `client`'s namespace and waits for the
    /// answer while the fabric runs: (outcome, error line, answer text).
    fn udp(
        &mut self,
        client: &str,
        req: &PlannedRequest<'_>,
    ) -> anyhow::Result<(Outcome, Option<String>, String)> {
        let ns = self
            .lab
            .client_ns(client)
            .with_context(|| format!("no namespace for client {client}"))?;
        let ureq = UdpRequest {
            dst: req.dst,
            payload: req.step.payload.clone(),
            timeout: req.step.timeout,
            source_port: req.step.source_port,
        };
        let mut run = UdpRun::start(ns, &ureq).map_err(|e| anyhow!("{e}"))?;
        let out = self.drive_until(|| run.try_finish().map_err(|e| anyhow!("{e}")))?;
        Ok(match out {
            UdpOutcome::Ok { reply } => (Outcome::Ok, None, reply),
            UdpOutcome::Timeout { message } => (Outcome::Timeout, Some(message), String::new()),
            UdpOutcome::Refused { message } => (Outcome::Refused, Some(message), String::new()),
        })
    }

    /// Moves packets until `done` has a value. A client finishing does not wake poll(2):
    /// wait on the TUN fds in short turns and ask `done` in between (cheap).
    fn drive_until<T>(
        &mut self,
        mut done: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let (world, lab, sup) = (&mut self.world, &mut self.lab, &mut self.supervisor);
        let mut fabric = |now| fabric(world, lab, sup, now);
        let mut next = None;
        loop {
            if cleanup::stop_requested() {
                bail!("interrupted");
            }
            next = self
                .driver
                .turn(&mut fabric, next, Duration::from_millis(2))
                .map_err(|e| anyhow!("{e}"))?;
            if let Some(o) = done()? {
                return Ok(o);
            }
        }
    }

    /// The pod that logged the request and the client address it logged. nginx writes its
    /// log line when it finalises the request, which can be a moment after curl has the
    /// response: keep the fabric running briefly until it appears.
    fn who_logged(
        &mut self,
        outcome: Outcome,
        logs: &mut [(String, Vec<String>)],
    ) -> anyhow::Result<(Option<String>, Option<IpAddr>)> {
        let grace = if outcome == Outcome::Ok {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(20)
        };
        let wait_until = Instant::now() + grace;
        let mut fresh = self.new_log_lines();
        while fresh.is_empty() && Instant::now() < wait_until {
            self.run_for(Duration::from_millis(2))?;
            fresh = self.new_log_lines();
        }
        let mut pod = None;
        let mut logged = None;
        for (p, line) in fresh {
            if let Some(ip) = first_word_ip(&line) {
                pod = Some(p.clone());
                logged = Some(ip);
            }
            if let Some(l) = logs.iter_mut().find(|(n, _)| *n == p) {
                l.1.push(line);
            }
        }
        Ok((pod, logged))
    }
}

/// Where `lab up` publishes its conntrack snapshots for `lab conntrack`.
fn conntrack_dir(state: &StateDir) -> PathBuf {
    state.root().join("conntrack")
}

fn write_snapshots(state: &StateDir, cluster: &Cluster, world: &sim::World) {
    let dir = conntrack_dir(state);
    if fs::create_dir_all(&dir).is_err() {
        return;
    }
    for n in &cluster.nodes {
        let body = world.conntrack(&n.name).join("\n");
        let (Ok(tmp), Ok(dst)) = (
            state.child_in("conntrack", &format!(".{}.tmp", n.name)),
            state.child_in("conntrack", &n.name),
        ) else {
            continue;
        };
        if fs::write(&tmp, body + "\n").is_ok() {
            let _ = fs::rename(&tmp, dst);
        }
    }
}

/// Where `lab up` publishes its pods' restart counts and readiness for `lab status`:
/// `<state>/pods`, one `name ready restarts node` line per pod.
const POD_STATUS: &str = "pods";

/// The pods' state, one `name ready restarts node` line per pod (the file's and the control
/// socket's `status` answer).
fn pod_status_body(cluster: &Cluster, sup: &Supervisor) -> String {
    sup.pods(&cluster.pods)
        .iter()
        .map(|p| format!("{} {} {} {}\n", p.name, p.ready, p.restarts, p.node))
        .collect()
}

fn write_pod_status(state: &StateDir, cluster: &Cluster, sup: &Supervisor) {
    let body = pod_status_body(cluster, sup);
    let (Ok(tmp), Ok(dst)) = (state.child(".pods.tmp"), state.child(POD_STATUS)) else {
        return;
    };
    if fs::write(&tmp, body).is_ok() {
        let _ = fs::rename(&tmp, dst);
    }
}

/// `lab status`'s pod table: asked from the running `lab up` ([`control`]), else from what
/// it published in the state directory.
fn print_pod_status(state: &StateDir, out: &mut impl Write) -> anyhow::Result<()> {
    let live = match control::ask(state.root(), &control::Query::Status) {
        Ok(Ok(body)) => Some(body),
        Ok(Err(e)) => bail!("lab up answered: {e}"),
        Err(_) => None,
    };
    let Some(body) = live.or_else(|| {
        state
            .child(POD_STATUS)
            .ok()
            .and_then(|p| fs::read_to_string(p).ok())
    }) else {
        return Ok(());
    };
    let rows: Vec<Vec<String>> = body
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [name, ready, restarts, node] = f[..] else {
                return None;
            };
            let ready = if ready == "true" { "1/1" } else { "0/1" };
            Some(vec![
                name.into(),
                ready.into(),
                restarts.into(),
                node.into(),
            ])
        })
        .collect();
    if !rows.is_empty() {
        writeln!(out, "pods:")?;
        write!(
            out,
            "{}",
            report::table(&["NAME", "READY", "RESTARTS", "NODE"], &rows)
        )?;
    }
    Ok(())
}

/// Extras of `lab up` for benchmarks: TUN MTU, extra servers in pods, files to serve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpExtras {
    /// MTU of every pod's and client's TUN (default 1500). The fabric (router, nodes) carries
    /// datagrams of any size, so all links of the lab effectively have this MTU.
    pub mtu: Option<u16>,
    /// Datapath threads, each with its own queue of every TUN device (default 1).
    pub threads: Option<u16>,
    /// (pod or deployment name, command line): started in the pod's namespace (every pod of
    /// a deployment) after nginx, stopped at teardown (and by `lab down` after a crash).
    pub exec: Vec<(String, String)>,
    /// (file name, size in bytes): a sparse file created in every pod's nginx html root.
    pub files: Vec<(String, u64)>,
}

pub use cluster::units::parse_size;

/// The pods `name` designates: the pod of that name, else every pod of that deployment.
fn pods_named<'a>(cluster: &'a Cluster, name: &str) -> Vec<&'a cluster::Pod> {
    let exact: Vec<_> = cluster.pods.iter().filter(|p| p.name == name).collect();
    if !exact.is_empty() {
        return exact;
    }
    cluster
        .pods
        .iter()
        .filter(|p| p.deployment == name)
        .collect()
}

fn create_files(
    cluster: &Cluster,
    rr: &RealRun,
    files: &[(String, u64)],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for (name, size) in files {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            bail!("--file {name:?}: a plain file name is expected");
        }
        for p in &cluster.pods {
            let Some(n) = rr.lab.nginx(&p.name) else {
                continue;
            };
            let path = n.spec().dir.join("html").join(name);
            let f =
                fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            f.set_len(*size)
                .with_context(|| format!("sizing {}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).ok();
            made.push(path);
        }
    }
    Ok(made)
}

/// `lab up <config>`: build the lab and keep it running until Ctrl-C / SIGTERM.
pub fn up(
    cluster: &Cluster,
    pcap: Option<&Path>,
    extras: &UpExtras,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    cleanup::install_stop_handler().map_err(|e| anyhow!("{e}"))?;
    let state = StateDir::default();
    for (who, cmd) in &extras.exec {
        if pods_named(cluster, who).is_empty() {
            bail!("--exec {who}=...: no pod or deployment named {who:?}");
        }
        if cmd.split_whitespace().next().is_none() {
            bail!("--exec {who}=: empty command");
        }
    }
    if let Some(n) = extras
        .threads
        .filter(|&n| n > 1 && !cluster.links.is_empty())
    {
        // A delayed datagram is released by whichever thread runs the fabric when it is due,
        // so two datagrams of one flow could be written by two threads out of order.
        return Err(cluster::LabError::invalid(
            &cluster.source.display().to_string(),
            "links",
            format!(
                "impaired links need one datapath thread (--datapath-threads {n}): a delayed \
                 datagram is released by whichever thread runs the fabric, so a flow could be \
                 reordered"
            ),
        )
        .into());
    }
    let upo = UpOptions {
        mtu: extras.mtu.unwrap_or(1500),
        queues: extras.threads.unwrap_or(1),
        ..UpOptions::default()
    };
    let mut rr = bring_up(cluster, false, pcap, &upo)?;
    create_files(cluster, &rr, &extras.files)?;
    let mut servers = Vec::new();
    for (i, (who, cmd)) in extras.exec.iter().enumerate() {
        let argv: Vec<&str> = cmd.split_whitespace().collect();
        for p in pods_named(cluster, who) {
            let s = rr
                .lab
                .spawn_in_pod(&p.name, &format!("exec{i}"), &argv)
                .map_err(|e| anyhow!("--exec {who}={cmd}: {e}"))?;
            servers.push((p.name.clone(), cmd.clone(), s));
        }
    }
    fs::write(
        state.root().join("scenario"),
        format!("{}\n{}\n", cluster.scenario, cluster.source.display()),
    )
    .ok();
    print_up_hints(cluster, &rr, &servers, extras, out)?;
    // Scripts wait for this line (the TUN links, nginx and the extra servers are up).
    writeln!(
        out,
        "ready: lab {} up (pid {}, mtu {}{})",
        cluster.scenario,
        std::process::id(),
        upo.mtu,
        match upo.queues {
            1 => String::new(),
            n => format!(", {n} datapath threads"),
        }
    )?;
    out.flush()?;
    serve(cluster, &mut rr, &state)?;
    writeln!(out, "\nstopping: tearing the lab down")?;
    for (_, _, mut s) in servers {
        let _ = s.stop(host::process::GRACE);
    }
    if pcap.is_some() {
        rr.world
            .finish_captures()
            .context("writing the capture files")?;
    }
    let rep = rr.lab.shutdown().map_err(|e| anyhow!("{e}"))?;
    writeln!(
        out,
        "removed {} namespaces, stopped {} processes",
        rep.namespaces.len(),
        rep.recorded_stopped + rep.strays_stopped
    )?;
    Ok(())
}

/// Runs the lab's fabric until Ctrl-C / SIGTERM, answering `lab status` and `lab
/// conntrack` on the control socket ([`control`]) between batches of packets. The pods'
/// state is also published every second (a few lines); the conntrack tables once at the
/// start (so `lab conntrack` knows the nodes): formatting them every second cost the packet
/// loop time in proportion to the table (tens of thousands of TIME_WAIT entries under `wrk`
/// with `Connection: close`).
fn serve(cluster: &Cluster, rr: &mut RealRun, state: &StateDir) -> anyhow::Result<()> {
    let last = Instant::now() - Duration::from_secs(2);
    let ctl = control::Control::start(state.root())
        .map_err(|e| {
            let path = state.root().join(control::SOCKET);
            eprintln!("warning: control socket {}: {e}", path.display());
        })
        .ok();
    write_snapshots(state, cluster, &rr.world);
    rr.supervisor.set_echo(true);
    let mut st = Serving {
        world: &mut rr.world,
        lab: &mut rr.lab,
        sup: &mut rr.supervisor,
        ctl,
        last,
        cluster,
        state,
    };
    if let Some(queues) = rr.queues.take() {
        let epoch = Instant::now() - rr.driver.now();
        let wake = st.sup.wake_fd();
        return crate::workers::run(queues, wake, epoch, &mut st, Serving::turn, || {
            cleanup::stop_requested()
        })
        .context("the packet loop on its datapath threads");
    }
    let mut turn = |now| st.turn(now);
    if crate::tokioloop::wanted() {
        let epoch = Instant::now() - rr.driver.now();
        let fds: Vec<RawFd> = rr.fds.iter().map(|(_, fd)| *fd).collect();
        return crate::tokioloop::run(&fds, epoch, turn, cleanup::stop_requested)
            .context("the packet loop on tokio");
    }
    rr.driver
        .run(&mut turn, |_| cleanup::stop_requested())
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// What `lab up` runs at every turn of its packet loop (one thread or several).
struct Serving<'a> {
    world: &'a mut sim::World,
    lab: &'a mut Lab,
    sup: &'a mut Supervisor,
    ctl: Option<control::Control>,
    last: Instant,
    cluster: &'a Cluster,
    state: &'a StateDir,
}

impl Serving<'_> {
    /// The fabric and kubelet, then the control socket's questions and (once a second) the
    /// pods' status file. Returns the next deadline.
    fn turn(&mut self, now: Duration) -> Option<Duration> {
        let next = fabric(self.world, self.lab, self.sup, now);
        while let Some(req) = self.ctl.as_ref().and_then(control::Control::next) {
            let text = answer(&req.query, self.cluster, self.world, self.sup);
            req.answer(text);
        }
        if self.last.elapsed() >= Duration::from_secs(1) {
            write_pod_status(self.state, self.cluster, self.sup);
            self.last = Instant::now();
        }
        next
    }
}

/// The live answer to a control-socket query.
fn answer(q: &control::Query, cluster: &Cluster, world: &sim::World, sup: &Supervisor) -> String {
    match q {
        control::Query::Status => pod_status_body(cluster, sup),
        control::Query::Conntrack(node) => {
            let nodes: Vec<&str> = match node {
                Some(n) if cluster.nodes.iter().any(|c| &c.name == n) => vec![n.as_str()],
                Some(n) => return format!("error: no node named {n:?} in this lab\n"),
                None => cluster.nodes.iter().map(|n| n.name.as_str()).collect(),
            };
            nodes
                .into_iter()
                .map(|n| conntrack_section(n, "live", &world.conntrack(n)))
                .collect()
        }
    }
}

/// One node's table as `lab conntrack` prints it.
fn conntrack_section(node: &str, age: &str, lines: &[impl AsRef<str>]) -> String {
    let mut s = format!("== {node} ({age})\n");
    let mut n = 0;
    for l in lines.iter().map(AsRef::as_ref).filter(|l| !l.is_empty()) {
        s.push_str(l);
        s.push('\n');
        n += 1;
    }
    s.push_str(&format!(
        "conntrack v1.4.7 (nodeport-lab): {n} flow entries have been shown.\n"
    ));
    s
}

/// What `lab up` prints once the lab runs: the cluster, then curl commands to try and the
/// extra servers and files.
fn print_up_hints(
    cluster: &Cluster,
    rr: &RealRun,
    servers: &[(String, String, host::process::Supervised)],
    extras: &UpExtras,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    report::print_cluster(cluster, out)?;
    writeln!(
        out,
        "\nlab {} is up (real mode). Try, from another shell:",
        cluster.scenario
    )?;
    for c in &cluster.clients {
        let Some(ns) = rr.lab.client_ns(&c.name) else {
            continue;
        };
        for step in cluster.plan.iter().filter(|s| s.client == c.name) {
            let Some(d) = cluster.destination(step) else {
                continue;
            };
            let to = SocketAddr::new(d.ip, d.port);
            let (af, curl6) = match to {
                SocketAddr::V4(_) => ("AF_INET", ""),
                SocketAddr::V6(_) => ("AF_INET6", " -g -6"),
            };
            if crate::plan::is_udp(step) {
                // No UDP client is installed by default: Python's socket module is.
                writeln!(
                    out,
                    "  sudo ip netns exec {} python3 -c 'import socket; c = socket.socket(socket.{af}, socket.SOCK_DGRAM); c.settimeout(2); c.connect((\"{}\", {})); c.send(b\"{}\"); print(c.recv(2048).decode())'",
                    ns.name(),
                    d.ip,
                    d.port,
                    step.payload.replace(['\'', '"', '\\'], "")
                )?;
            } else {
                writeln!(
                    out,
                    "  sudo ip netns exec {} curl -sS{curl6} --connect-timeout 3 http://{to}{}",
                    ns.name(),
                    step.path
                )?;
            }
        }
    }
    for h in rr.lab.hints() {
        writeln!(out, "  {h}")?;
    }
    writeln!(
        out,
        "  conntrack of a node: lab conntrack <node>   (live, from the control socket)"
    )?;
    for (pod, cmd, s) in servers {
        writeln!(out, "  exec in pod {pod}: {cmd} (pid {})", s.pid())?;
    }
    for (name, size) in &extras.files {
        writeln!(
            out,
            "  file /{name} ({size} bytes, sparse) in every pod's nginx"
        )?;
    }
    Ok(())
}

/// `lab down`: remove everything `nplab-` (idempotent; safe after kill -9).
pub fn down(out: &mut impl Write) -> anyhow::Result<()> {
    // `lab verify --kernel` leftovers first (nplab-k-, /run/nplab-k), then the lab's own.
    let k = host::kernel::down_all().map_err(|e| anyhow!("{e}"))?;
    let mut rep = cleanup::down(&StateDir::default(), PREFIX).map_err(|e| anyhow!("{e}"))?;
    rep.recorded_stopped += k.recorded_stopped;
    rep.strays_stopped += k.strays_stopped;
    rep.namespaces.splice(0..0, k.namespaces);
    let mut dirs = Vec::new();
    if k.state_removed {
        dirs.push(host::kernel::KERNEL_STATE_DIR);
    }
    if rep.state_removed {
        dirs.push(host::STATE_DIR);
    }
    if rep.namespaces.is_empty()
        && rep.recorded_stopped + rep.strays_stopped == 0
        && dirs.is_empty()
    {
        writeln!(
            out,
            "nothing to clean up: no nplab- namespaces, processes or state"
        )?;
    } else {
        writeln!(
            out,
            "stopped {} processes, deleted {} namespaces ({}){}",
            rep.recorded_stopped + rep.strays_stopped,
            rep.namespaces.len(),
            rep.namespaces.join(", "),
            if dirs.is_empty() {
                String::new()
            } else {
                format!(", removed {}", dirs.join(", "))
            }
        )?;
    }
    Ok(())
}

/// `lab status`.
pub fn status(out: &mut impl Write) -> anyhow::Result<()> {
    let state = StateDir::default();
    match cleanup::LabLock::holder(&state) {
        Some(pid) => {
            let scenario = fs::read_to_string(state.root().join("scenario")).unwrap_or_default();
            writeln!(
                out,
                "lab up is running: pid {pid}, scenario {}",
                scenario.lines().next().unwrap_or("?")
            )?;
            print_pod_status(&state, out)?;
        }
        None => writeln!(out, "no lab up is running")?,
    }
    let nss = netns::list(PREFIX).map_err(|e| anyhow!("{e}"))?;
    if nss.is_empty() {
        writeln!(out, "namespaces: none")?;
    } else {
        writeln!(out, "namespaces:")?;
        for n in nss {
            let pids = netns::Netns::open(&n)
                .map(|ns| ns.pids())
                .unwrap_or_default();
            writeln!(out, "  {n}  pids {pids:?}")?;
        }
    }
    Ok(())
}

/// `lab conntrack [node]`: the last snapshot a running `lab up` published.
pub fn conntrack(node: Option<&str>, out: &mut impl Write) -> anyhow::Result<()> {
    let state = StateDir::default();
    if cleanup::LabLock::holder(&state).is_none() {
        bail!("no lab up is running (start one with `lab up <scenario>`; after a run, use `lab scenario run <x> --conntrack`)");
    }
    match control::ask(
        state.root(),
        &control::Query::Conntrack(node.map(str::to_string)),
    ) {
        Ok(Ok(text)) => return Ok(write!(out, "{text}")?),
        Ok(Err(e)) => bail!("lab up answered: {e}"),
        Err(_) => {} // no control socket (an older lab up): its snapshot files
    }
    let dir = conntrack_dir(&state);
    let mut nodes: Vec<String> = match node {
        Some(n) => vec![n.to_string()],
        None => fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default(),
    };
    nodes.sort();
    for n in nodes {
        let p = state
            .child_in("conntrack", &n)
            .map_err(|e| anyhow!("{e}"))?;
        let body = fs::read_to_string(&p)
            .with_context(|| format!("no conntrack snapshot for node {n:?} ({})", p.display()))?;
        let age = fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map(|d| format!("{:.1}s ago", d.as_secs_f64()))
            .unwrap_or_default();
        let lines: Vec<&str> = body.lines().collect();
        write!(
            out,
            "{}",
            conntrack_section(&n, &format!("snapshot {age}"), &lines)
        )?;
    }
    Ok(())
}

/// A client network's gateway (the router's address on it): its first host.
fn gateway(ip: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    wire::first_host(ip, prefix_len).unwrap_or(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("1T").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
