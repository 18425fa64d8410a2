//! `up` in one call: lock, leftovers of a crashed run removed, one namespace + TUN port per
//! pod and client, nginx started in every pod. The caller attaches the returned ports to its
//! fabric (the sim `World`) and drives them with [`super::driver::Driver`].
//!
//! ```text
//! let (lab, ports) = Lab::up(&pods, &clients, &UpOptions::default())?;
//! let fds: Vec<_> = ports.iter().map(|p| p.port.raw_fd()).collect();
//! for p in ports { match p.role { Role::Pod { node } => world.add_pod_port(&p.name, p.ip, &node, Box::new(p.port))?, … } }
//! install_stop_handler()?;
//! Driver::new(fds).run(&mut |now| world.poll(now), |_| stop_requested())?;
//! lab.shutdown()?;
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use vswitch::tun::{TunConfig, TunPort};

pub use super::app::PodApp;
use super::app::{AppsOf, PodApps};
use super::cleanup::{DownReport, Held, StateDir};
use super::curl::{curl, CurlOutcome, CurlRequest};
use super::identity::Identity;
use super::netns::{ns_name, Netns};
use super::nginx::Nginx;
use super::preflight::{find_program, preflight, Needs};
use super::process::Supervised;
use super::{Error, Result, PREFIX};

/// The IPv6 side of a pod's or client's link (dual-stack labs, issue 10): its address on
/// the link's prefix and the default gateway (the node's cni0 / the router), put on its TUN
/// with [`TunConfig::ipv6`] (that link only gets IPv6; no link-local, no RA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Link {
    /// Its IPv6 address.
    pub ip: Ipv6Addr,
    /// Prefix length of the link (64 for a node's pod /64).
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: Ipv6Addr,
}

/// A pod to run for real.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSpec {
    /// Pod name (`nginx-54f57cf6bf-xhs8g`).
    pub name: String,
    /// Node name (`ydzs-node1`).
    pub node: String,
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// Prefix length of the node's pod CIDR (24).
    pub prefix_len: u8,
    /// The node's cni0 address (default gateway of the pod).
    pub gateway: Ipv4Addr,
    /// The app of each container; empty = nginx on 80.
    pub apps: Vec<PodApp>,
    /// Its IPv6 address in a dual-stack lab (`None`: IPv4 only).
    pub ipv6: Option<Ipv6Link>,
}

/// A client to run for real.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSpec {
    /// Client name (`browser`).
    pub name: String,
    /// Client IP.
    pub ip: Ipv4Addr,
    /// Prefix length of its network.
    pub prefix_len: u8,
    /// Its default gateway (the router's address on that network).
    pub gateway: Ipv4Addr,
    /// Its IPv6 address in a dual-stack lab (`None`: IPv4 only).
    pub ipv6: Option<Ipv6Link>,
}

/// Options of [`Lab::up`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpOptions {
    /// State directory (default `/run/nplab`).
    pub state: StateDir,
    /// Namespace prefix (default `nplab-`; tests use `nplab-t…-`).
    pub prefix: String,
    /// TUN MTU (default 1500).
    pub mtu: u16,
    /// Start the apps (nginx, the lab's own servers) in every pod (default true).
    pub nginx: bool,
    /// The binary run for [`PodApp::Lab`] apps (`None`: this process's executable).
    pub app_exe: Option<PathBuf>,
    /// TUN writes on the TX thread (`vswitch::tun::TunConfig::tx_thread`). Default false:
    /// measured slower at MTU 1500 (iperf3 about the same, wrk keep-alive 30-40 % lower: the
    /// hand-over wakes the TX thread for most small datagrams).
    pub tx_thread: bool,
    /// Queues of every TUN device (default 1; more = `IFF_MULTI_QUEUE`, one per datapath
    /// thread: [`EdgePort::queues`] holds the others).
    pub queues: u16,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            state: StateDir::default(),
            prefix: PREFIX.to_string(),
            mtu: 1500,
            nginx: true,
            app_exe: None,
            tx_thread: false,
            queues: 1,
        }
    }
}

/// What an edge port stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A pod on `node`'s cni0.
    Pod {
        /// The node.
        node: String,
    },
    /// A client.
    Client,
}

/// A TUN port to attach to the fabric.
#[derive(Debug)]
pub struct EdgePort {
    /// Pod or client name.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its IPv6 address, if its link has one.
    pub ipv6: Option<Ipv6Addr>,
    /// Pod (with node) or client.
    pub role: Role,
    /// The port (the device's first queue).
    pub port: TunPort,
    /// The device's other queues ([`UpOptions::queues`] - 1 of them).
    pub queues: Vec<TunPort>,
}

#[derive(Debug)]
struct RunningPod {
    spec: PodSpec,
    ns: Netns,
    apps: PodApps,
    /// The app exited (crashed or killed) and was not started again yet.
    app_down: bool,
}

impl RunningPod {
    fn start_apps(&mut self, opts: &UpOptions) -> Result<()> {
        let p = &self.spec;
        let who = AppsOf {
            pod: &p.name,
            node: &p.node,
            ip: p.ip,
            ipv6: p.ipv6.map(|l| l.ip),
            apps: &p.apps,
        };
        self.apps
            .start(&self.ns, &who, &opts.state, opts.app_exe.as_deref())
    }
    /// What a container runtime does when the container's main process dies: the rest of
    /// its processes die with it (here: nginx workers the master left behind in the pod's
    /// namespace; other programs started there, e.g. `lab up --exec`, stay).
    fn kill_leftovers(&self) {
        for pid in self.ns.pids() {
            if super::process::cmdline(pid).is_some_and(|c| c.starts_with("nginx")) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// `cfg` with the link's IPv6 address and default route, if it has one.
fn with_ipv6(cfg: TunConfig, v6: Option<Ipv6Link>) -> TunConfig {
    match v6 {
        Some(l) => cfg.ipv6(l.ip, l.prefix_len, Some(l.gateway)),
        None => cfg,
    }
}

/// The device of `cfg`: its first queue and the others.
fn create_queues(cfg: &TunConfig) -> Result<(TunPort, Vec<TunPort>)> {
    let mut ports = TunPort::create_queues(cfg)?.into_iter();
    let first = ports
        .next()
        .ok_or_else(|| Error::Invalid(format!("TUN in {}: the kernel gave no queue", cfg.netns)))?;
    Ok((first, ports.collect()))
}

/// The real-mode processes and namespaces of one `up`; torn down by
/// [`Lab::shutdown`] or on drop.
#[derive(Debug)]
pub struct Lab {
    pods: Vec<RunningPod>,
    clients: Vec<(ClientSpec, Netns)>,
    /// As given to [`Lab::up`] (pods added later use them too).
    opts: UpOptions,
    // Last: `down` runs and the lock is released after everything else is gone.
    held: Held,
}

impl Lab {
    /// Preflight, lock, clean leftovers, create namespaces/ports, start nginx.
    pub fn up(
        pods: &[PodSpec],
        clients: &[ClientSpec],
        opts: &UpOptions,
    ) -> Result<(Lab, Vec<EdgePort>)> {
        let nginx_apps = pods
            .iter()
            .any(|p| p.apps.is_empty() || p.apps.iter().any(|a| matches!(a, PodApp::Nginx { .. })));
        preflight(Needs {
            nginx: opts.nginx && nginx_apps,
            curl: !clients.is_empty(),
            iperf3: false,
        })?;
        // Every name that becomes a path must stay in the state dir: refuse before creating
        // anything.
        for p in pods {
            opts.state.pod_dir(&p.name)?;
        }
        // Leftovers of a killed run (namespaces, processes, state) go once we hold the lock.
        let held = Held::acquire(&opts.state, &opts.prefix)?;
        let mut lab = Lab {
            pods: Vec::new(),
            clients: Vec::new(),
            opts: opts.clone(),
            held,
        };
        let mut ports = Vec::new();
        let strip = |n: String| n.trim_start_matches(PREFIX).to_string();
        for p in pods {
            ports.push(lab.start_pod(p)?);
        }
        for c in clients {
            let ns = Netns::create(&format!("{}{}", opts.prefix, strip(ns_name("cl", &c.name))))?;
            let cfg = TunConfig::new(ns.name(), c.ip, c.prefix_len)
                .gateway(c.gateway)
                .mtu(opts.mtu)
                .tx_thread(opts.tx_thread)
                .port_name(c.name.clone())
                .queues(opts.queues);
            let (port, queues) = create_queues(&with_ipv6(cfg, c.ipv6))?;
            ports.push(EdgePort {
                name: c.name.clone(),
                ip: c.ip,
                ipv6: c.ipv6.map(|l| l.ip),
                role: Role::Client,
                port,
                queues,
            });
            lab.clients.push((c.clone(), ns));
        }
        Ok((lab, ports))
    }

    /// One pod: its namespace, TUN port and nginx.
    fn start_pod(&mut self, p: &PodSpec) -> Result<EdgePort> {
        let opts = &self.opts;
        let ns = Netns::create(&format!(
            "{}{}",
            opts.prefix,
            ns_name("pod", &p.name).trim_start_matches(PREFIX)
        ))?;
        let cfg = TunConfig::new(ns.name(), p.ip, p.prefix_len)
            .gateway(p.gateway)
            .mtu(opts.mtu)
            .tx_thread(opts.tx_thread)
            .port_name(format!("{}/cni0/{}", p.node, p.name))
            .queues(opts.queues);
        let (port, queues) = create_queues(&with_ipv6(cfg, p.ipv6))?;
        let mut pod = RunningPod {
            spec: p.clone(),
            ns,
            apps: PodApps::default(),
            app_down: false,
        };
        let started = if opts.nginx {
            pod.start_apps(opts)
        } else {
            Ok(())
        };
        // Pushed first: a failed start still stops what did start (shutdown / drop).
        self.pods.push(pod);
        started?;
        Ok(EdgePort {
            name: p.name.clone(),
            ip: p.ip,
            ipv6: p.ipv6.map(|l| l.ip),
            role: Role::Pod {
                node: p.node.clone(),
            },
            port,
            queues,
        })
    }

    /// A pod started while the lab runs (a ReplicaSet's replacement): namespace, TUN port
    /// and apps like the pods of `up`. The caller attaches the port to its fabric.
    pub fn add_pod(&mut self, p: &PodSpec) -> Result<EdgePort> {
        self.opts.state.pod_dir(&p.name)?;
        if self.pods.iter().any(|r| r.spec.name == p.name) {
            return Err(Error::Invalid(format!("pod {} already runs", p.name)));
        }
        self.start_pod(p)
    }

    /// A deleted pod: its apps stopped, namespace deleted (its TUN device goes when the
    /// fabric drops the port's fd).
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        let i = self
            .pods
            .iter()
            .position(|p| p.spec.name == name)
            .ok_or_else(|| Error::Invalid(format!("no real pod {name}")))?;
        let mut p = self.pods.remove(i);
        p.apps.stop();
        p.ns.delete()
    }

    /// Pid of a previous lab whose stale lock was taken over (it had been killed).
    pub fn stale_pid(&self) -> Option<i32> {
        self.held.stale_pid()
    }
    /// The namespace of pod `name`.
    pub fn pod_ns(&self, name: &str) -> Option<&Netns> {
        self.pods
            .iter()
            .find(|p| p.spec.name == name)
            .map(|p| &p.ns)
    }
    /// The namespace of client `name`.
    pub fn client_ns(&self, name: &str) -> Option<&Netns> {
        self.clients
            .iter()
            .find(|(c, _)| c.name == name)
            .map(|(_, n)| n)
    }
    /// The nginx of pod `name`.
    pub fn nginx(&self, pod: &str) -> Option<&Nginx> {
        self.pods
            .iter()
            .find(|p| p.spec.name == pod)
            .and_then(|p| p.apps.nginx())
    }
    /// Pods whose app (nginx master) exited on its own or was killed by hand since it last
    /// started, each reported once; its leftover processes are killed (the container is
    /// gone). Cheap (`waitpid(WNOHANG)` per pod): call it when [`super::childwatch`] says a
    /// child exited.
    pub fn reap_exited_apps(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &mut self.pods {
            let exited = !p.app_down && !p.apps.is_empty() && !p.apps.running();
            if exited {
                p.app_down = true;
                p.kill_leftovers();
                out.push(p.spec.name.clone());
            }
        }
        out
    }

    /// A `crash:` entry: pod `name`'s app dies now (SIGKILL, reaped, leftovers killed).
    pub fn crash_app(&mut self, name: &str) -> Result<()> {
        let p = self.pod_mut(name)?;
        p.apps.kill()?;
        p.app_down = true;
        p.kill_leftovers();
        Ok(())
    }

    /// kubelet restarts pod `name`'s container: its app starts again (same files, the
    /// access log keeps its lines). Returns the new pid.
    pub fn restart_app(&mut self, name: &str) -> Result<Option<i32>> {
        let p = self.pod_mut(name)?;
        p.kill_leftovers();
        let pid = p.apps.restart(&p.ns)?;
        p.app_down = false;
        Ok(pid)
    }

    /// Pod `name`'s access log content (empty if none).
    pub fn access_log(&self, pod: &str) -> String {
        self.access_logs(pod)
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }
    /// The access log files of pod `name`'s apps (nginx's, then the lab's own apps').
    pub fn access_logs(&self, pod: &str) -> Vec<PathBuf> {
        self.pods
            .iter()
            .find(|p| p.spec.name == pod)
            .map(|p| p.apps.access_logs())
            .unwrap_or_default()
    }
    fn pod_mut(&mut self, pod: &str) -> Result<&mut RunningPod> {
        self.pods
            .iter_mut()
            .find(|p| p.spec.name == pod)
            .ok_or_else(|| Error::Invalid(format!("no real pod {pod}")))
    }
    /// Stops pod `name`'s apps (as if its containers exited): its ports then refuse.
    pub fn stop_apps(&mut self, pod: &str) -> Result<()> {
        self.pod_mut(pod)?.apps.stop();
        Ok(())
    }
    /// Starts pod `name`'s apps again (after [`Lab::stop_apps`] or a crash: whatever still
    /// runs is stopped first); returns once they listen.
    pub fn start_apps(&mut self, pod: &str) -> Result<()> {
        let opts = self.opts.clone();
        let p = self.pod_mut(pod)?;
        p.apps.stop();
        p.app_down = false;
        p.start_apps(&opts)
    }
    /// `false` once an app process of pod `name` has exited (crashed or killed), and after
    /// [`Lab::stop_apps`].
    pub fn apps_running(&mut self, pod: &str) -> bool {
        self.pod_mut(pod).is_ok_and(|p| p.apps.running())
    }
    /// Pids of pod `name`'s app processes (nginx's master first).
    pub fn app_pids(&self, pod: &str) -> Vec<i32> {
        self.pods
            .iter()
            .find(|p| p.spec.name == pod)
            .map(|p| p.apps.pids())
            .unwrap_or_default()
    }
    /// Runs curl from client `name` (blocking; packets must be moved by another thread —
    /// from a single-threaded loop use [`super::curl::CurlRun`] with [`Self::client_ns`]).
    pub fn curl(&self, client: &str, req: &CurlRequest) -> Result<CurlOutcome> {
        let ns = self
            .client_ns(client)
            .ok_or_else(|| Error::Invalid(format!("no real client {client}")))?;
        curl(ns, req)
    }
    /// Starts an extra server in pod `pod`'s namespace (e.g. `["iperf3", "-s", "-p", "5201"]`),
    /// supervised by the caller and recorded under the pod's state dir so `down` stops it
    /// after a crash. `label` names the record (`<state>/<pod>/<label>.proc.json`).
    pub fn spawn_in_pod(&self, pod: &str, label: &str, argv: &[&str]) -> Result<Supervised> {
        let ns = self
            .pod_ns(pod)
            .ok_or_else(|| Error::Invalid(format!("no real pod {pod}")))?;
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| Error::Invalid("empty command".into()))?;
        let path = find_program(prog).ok_or_else(|| {
            Error::Preflight(format!("{prog} not found (install it with apt-get)"))
        })?;
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let dir = self.held.state().pod_dir(pod)?;
        let record = format!("{label}.proc.json");
        super::cleanup::safe_component(&record)?;
        std::fs::create_dir_all(&dir).map_err(super::io_err(format!("mkdir {}", dir.display())))?;
        Supervised::spawn_as(
            ns,
            &format!("{label} {pod}"),
            cmd,
            Some(dir.join(record)),
            prog,
            Some(&Identity::unprivileged()?),
        )
    }

    /// Human hints: how to poke at the running lab from another shell.
    pub fn hints(&self) -> Vec<String> {
        let mut h = Vec::new();
        for (c, ns) in &self.clients {
            h.push(format!(
                "client {}: sudo ip netns exec {} curl -sS --connect-timeout 3 -m 5 http://<node-ip>:<nodePort>/",
                c.name,
                ns.name()
            ));
        }
        for p in &self.pods {
            let logs: Vec<String> = self
                .access_logs(&p.spec.name)
                .iter()
                .map(|l| l.display().to_string())
                .collect();
            let log = if logs.is_empty() {
                "-".to_string()
            } else {
                logs.join(", ")
            };
            let addrs = match &p.spec.ipv6 {
                Some(v6) => format!("{}, {}", p.spec.ip, v6.ip),
                None => p.spec.ip.to_string(),
            };
            h.push(format!(
                "pod {} ({} on {}): sudo ip netns exec {} ss -tn; access log {}",
                p.spec.name,
                addrs,
                p.spec.node,
                p.ns.name(),
                log
            ));
        }
        h.push("stop: Ctrl-C here, or `lab down` after a crash".into());
        h
    }

    /// Stops nginx, deletes the namespaces and the state dir, releases the lock.
    pub fn shutdown(mut self) -> Result<DownReport> {
        for p in &mut self.pods {
            p.apps.stop();
        }
        self.pods.clear();
        self.clients.clear();
        self.held.release()
    }
}
