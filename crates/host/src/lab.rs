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

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use vswitch::tun::{TunConfig, TunPort};

use super::cleanup::{DownReport, Held, StateDir};
use super::curl::{curl, CurlOutcome, CurlRequest};
use super::identity::Identity;
use super::netns::{ns_name, Netns};
use super::nginx::{Nginx, NginxSpec};
use super::preflight::{find_program, preflight, Needs};
use super::process::Supervised;
use super::{Error, Result, PREFIX};

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
    /// Start nginx in every pod (default true).
    pub nginx: bool,
    /// TUN writes on the TX thread (`vswitch::tun::TunConfig::tx_thread`). Default false:
    /// measured slower at MTU 1500 (iperf3 about the same, wrk keep-alive 30-40 % lower: the
    /// hand-over wakes the TX thread for most small datagrams).
    pub tx_thread: bool,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            state: StateDir::default(),
            prefix: PREFIX.to_string(),
            mtu: 1500,
            nginx: true,
            tx_thread: false,
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
    /// Pod (with node) or client.
    pub role: Role,
    /// The port.
    pub port: TunPort,
}

#[derive(Debug)]
struct RunningPod {
    spec: PodSpec,
    ns: Netns,
    nginx: Option<Nginx>,
}

/// The real-mode processes and namespaces of one `up`; torn down by
/// [`Lab::shutdown`] or on drop.
#[derive(Debug)]
pub struct Lab {
    pods: Vec<RunningPod>,
    clients: Vec<(ClientSpec, Netns)>,
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
        preflight(Needs {
            nginx: opts.nginx && !pods.is_empty(),
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
            held,
        };
        let mut ports = Vec::new();
        let strip = |n: String| n.trim_start_matches(PREFIX).to_string();
        for p in pods {
            let ns = Netns::create(&format!(
                "{}{}",
                opts.prefix,
                strip(ns_name("pod", &p.name))
            ))?;
            let port = TunPort::create(
                &TunConfig::new(ns.name(), p.ip, p.prefix_len)
                    .gateway(p.gateway)
                    .mtu(opts.mtu)
                    .tx_thread(opts.tx_thread)
                    .port_name(format!("{}/cni0/{}", p.node, p.name)),
            )?;
            let nginx = if opts.nginx {
                let spec = NginxSpec::new(&p.name, &p.node, p.ip, &opts.state)?;
                Some(Nginx::start(&ns, &spec)?)
            } else {
                None
            };
            ports.push(EdgePort {
                name: p.name.clone(),
                ip: p.ip,
                role: Role::Pod {
                    node: p.node.clone(),
                },
                port,
            });
            lab.pods.push(RunningPod {
                spec: p.clone(),
                ns,
                nginx,
            });
        }
        for c in clients {
            let ns = Netns::create(&format!("{}{}", opts.prefix, strip(ns_name("cl", &c.name))))?;
            let port = TunPort::create(
                &TunConfig::new(ns.name(), c.ip, c.prefix_len)
                    .gateway(c.gateway)
                    .mtu(opts.mtu)
                    .tx_thread(opts.tx_thread)
                    .port_name(c.name.clone()),
            )?;
            ports.push(EdgePort {
                name: c.name.clone(),
                ip: c.ip,
                role: Role::Client,
                port,
            });
            lab.clients.push((c.clone(), ns));
        }
        Ok((lab, ports))
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
            .and_then(|p| p.nginx.as_ref())
    }
    /// Pod `name`'s access log content (empty if none).
    pub fn access_log(&self, pod: &str) -> String {
        self.nginx(pod).map(Nginx::access_log).unwrap_or_default()
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
            let log = p
                .nginx
                .as_ref()
                .map(|n| n.spec().access_log().display().to_string())
                .unwrap_or_else(|| "-".into());
            h.push(format!(
                "pod {} ({} on {}): sudo ip netns exec {} ss -tn; access log {}",
                p.spec.name,
                p.spec.ip,
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
            if let Some(n) = p.nginx.take() {
                let _ = n.stop();
            }
        }
        self.pods.clear();
        self.clients.clear();
        self.held.release()
    }
}
