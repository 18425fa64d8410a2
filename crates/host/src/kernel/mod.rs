//! A scenario built with Linux itself: the kernel reference of `lab verify --kernel`.
//!
//! Generalises `../shared/reference/kernel-ref.sh` to any lab topology. Every node, pod and
//! client is a network namespace (`nplab-k-…`); the node network is a bridge in a router
//! namespace that also routes the external clients' networks; nodes route the other nodes'
//! pod CIDRs via their node IPs (flannel host-gw) and run the kube-proxy rules they are given
//! with `iptables-restore`; pods hang off the node's `cni0` bridge and run Debian's nginx.
//!
//! ```text
//!  client ns  eth0 ──veth── c<k> ┐ cbr<m> (client net, gw .1)
//!                                 │           router ns (ip_forward, canReach filter)
//!  node ns    eth0 ──veth── n<i> ─┘ br0 (node network, router IP)
//!    cni0 (10.244.N.1) ── p<j> ──veth── eth0  pod ns (nginx)
//! ```
//!
//! Cleanup is [`crate::cleanup::down`] on [`KERNEL_STATE_DIR`] / [`KERNEL_PREFIX`]: nginx
//! process records live in the state directory, so `lab down` after a `kill -9` stops them,
//! then anything left in the namespaces, then deletes the namespaces (their veths go too).

pub mod topology;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::app::{AppsOf, PodApp, PodApps};
use super::cleanup::{down, DownReport, Held, StateDir};
use super::netns::{ns_name, Netns};
use super::preflight::find_program;
use super::{Error, Result, PREFIX};

use topology::{address, bridge, iptables_load, iptables_restore, route, sysctls, veth};

/// Prefix of every namespace the kernel topology creates.
pub const KERNEL_PREFIX: &str = "nplab-k-";
/// State directory of the kernel topology (nginx configs, logs, process records, lock).
pub const KERNEL_STATE_DIR: &str = "/run/nplab-k";

/// A node: its namespace gets `eth0` on the node network and a `cni0` bridge for its pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KNode {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Prefix length of the node network.
    pub prefix_len: u8,
    /// The pod CIDR's network address and prefix length (10.244.1.0, 24).
    pub pod_net: (Ipv4Addr, u8),
    /// The cni0 address (first host of the pod CIDR).
    pub cni0: Ipv4Addr,
    /// iptables-save text (nat + filter) loaded into the node's namespace.
    pub rules: String,
}

/// A pod on a node's cni0 running its containers' apps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KPod {
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
    /// One per container; empty = nginx on 80.
    pub apps: Vec<PodApp>,
}

/// Where a client sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KAttach {
    /// Behind the router on `net`/`prefix_len` (gateway: the first host). It may reach only
    /// the node addresses in `reach` (the lab router's `canReach`).
    External {
        prefix_len: u8,
        reach: Vec<Ipv4Addr>,
    },
    /// A pod (no server) on `node`'s cni0.
    Pod { node: String },
}

/// A client where curl runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KClient {
    pub name: String,
    pub ip: Ipv4Addr,
    pub attach: KAttach,
}

/// An NLB-style load balancer without health checks, in the router: each new connection to
/// `ip:port` is DNATed to one of `targets` (node IPs) at the listener's node port, uniformly
/// at random; the client's address is kept, replies are un-DNATed by the router's conntrack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KLoadBalancer {
    pub ip: Ipv4Addr,
    pub targets: Vec<Ipv4Addr>,
    /// (frontend port, node port), TCP.
    pub listeners: Vec<(u16, u16)>,
}

/// Everything [`KernelLab::up`] builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    /// The router's address on the node network (every node's default gateway).
    pub router_ip: Ipv4Addr,
    pub nodes: Vec<KNode>,
    pub pods: Vec<KPod>,
    pub clients: Vec<KClient>,
    pub load_balancer: Option<KLoadBalancer>,
}

/// Where the kernel topology lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    pub state: StateDir,
    /// Namespace prefix (default [`KERNEL_PREFIX`]; must start with `nplab-`).
    pub prefix: String,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            state: StateDir::new(KERNEL_STATE_DIR),
            prefix: KERNEL_PREFIX.to_string(),
        }
    }
}

/// `lab down` for the kernel topology: stops the recorded nginx processes (only if `/proc`
/// still shows the same process), anything left in an `nplab-k-` namespace, deletes those
/// namespaces and `/run/nplab-k`. Idempotent; safe after `kill -9`; refuses while a
/// `lab verify --kernel` runs.
pub fn down_all() -> Result<DownReport> {
    let o = KernelOptions::default();
    down(&o.state, &o.prefix)
}

/// What the kernel topology needs that is missing here (empty = it can run).
pub fn missing() -> Vec<String> {
    let mut miss = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        miss.push("root privileges (run it with sudo)".to_string());
    }
    for (prog, pkg) in [
        ("ip", "iproute2"),
        ("nginx", "nginx-light"),
        ("curl", "curl"),
    ] {
        if find_program(prog).is_none() {
            miss.push(format!("{prog} (apt-get install -y {pkg})"));
        }
    }
    if iptables_restore().is_none() {
        miss.push("iptables-restore (apt-get install -y iptables)".into());
    }
    miss
}

fn first_host(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    wire::first_host(ip, prefix).unwrap_or(ip)
}

/// New access-log lines of each pod since the last read (complete lines only).
#[derive(Debug, Default)]
pub struct LogTail {
    files: Vec<(String, PathBuf, u64)>,
}

impl LogTail {
    /// Follows `path` as the log of `pod`, from its current end.
    pub fn follow(&mut self, pod: &str, path: PathBuf) {
        let end = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.files.push((pod.to_string(), path, end));
    }
    /// (pod, line) for every complete line appended since the last call.
    pub fn new_lines(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (pod, path, off) in &mut self.files {
            let Ok(mut f) = File::open(&*path) else {
                continue;
            };
            let mut buf = String::new();
            if f.seek(SeekFrom::Start(*off)).is_err() || f.read_to_string(&mut buf).is_err() {
                continue;
            }
            let complete = buf.rfind('\n').map(|i| i + 1).unwrap_or(0);
            *off += complete as u64;
            out.extend(
                buf[..complete]
                    .lines()
                    .map(|l| (pod.clone(), l.to_string())),
            );
        }
        out
    }
}

/// The running kernel topology; torn down by [`KernelLab::shutdown`] or on drop.
#[derive(Debug)]
pub struct KernelLab {
    prefix: String,
    /// The pods and their apps (same order).
    pods: Vec<KPod>,
    apps: Vec<PodApps>,
    clients: Vec<(String, Netns)>,
    namespaces: Vec<String>,
    // Last: `down` runs and the lock is released after nginx has stopped.
    held: Held,
}

impl KernelLab {
    /// Builds everything: lock, leftovers of a killed run removed, namespaces, links,
    /// addresses, routes, sysctls, the nodes' rules, nginx in every pod.
    pub fn up(spec: &KernelSpec, opts: &KernelOptions) -> Result<KernelLab> {
        let miss = missing();
        if !miss.is_empty() {
            return Err(Error::Preflight(format!(
                "the kernel topology cannot be built here; missing: {}",
                miss.join(", ")
            )));
        }
        if !opts.prefix.starts_with(PREFIX) {
            return Err(Error::Invalid(format!(
                "prefix {:?} must start with {PREFIX:?}",
                opts.prefix
            )));
        }
        let mut lab = KernelLab {
            prefix: opts.prefix.clone(),
            pods: spec.pods.clone(),
            apps: Vec::new(),
            clients: Vec::new(),
            namespaces: Vec::new(),
            held: Held::acquire(&opts.state, &opts.prefix)?,
        };
        lab.build(spec)?;
        Ok(lab)
    }

    /// Creates `<prefix><kind><name>` (sanitised like every lab namespace name).
    fn ns_for(&mut self, kind: &str, name: &str) -> Result<Netns> {
        let short = ns_name("k", &format!("{kind}{name}"));
        let full = format!("{}{}", self.prefix, short.trim_start_matches("nplab-k-"));
        if self.namespaces.contains(&full) {
            return Err(Error::Invalid(format!(
                "two {kind} objects map to namespace {full}"
            )));
        }
        let ns = Netns::create(&full)?;
        self.namespaces.push(full);
        // Loose reverse-path filtering everywhere (set before any interface exists, so the
        // `default` value applies to every veth created here).
        sysctls(
            &ns,
            &[
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
            ],
            &[],
        )?;
        Ok(ns)
    }

    fn build(&mut self, spec: &KernelSpec) -> Result<()> {
        let router = self.ns_for("", "router")?;
        // A plain switch: bridged node-to-node traffic does not cross the router's netfilter.
        sysctls(
            &router,
            &[("net/ipv4/ip_forward", "1")],
            &[("net/bridge/bridge-nf-call-iptables", "0")],
        )?;
        let node_prefix = spec.nodes.first().map(|n| n.prefix_len).unwrap_or(24);
        bridge(&router, "br0", spec.router_ip, node_prefix)?;
        let mut nodes = Vec::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            let ns = self.ns_for("", &n.name)?;
            sysctls(
                &ns,
                &[
                    ("net/ipv4/ip_forward", "1"),
                    // kube-proxy sets it for NodePorts on 127.0.0.1 (localhostNodePorts).
                    ("net/ipv4/conf/all/route_localnet", "1"),
                ],
                &[("net/bridge/bridge-nf-call-iptables", "1")],
            )?;
            veth(&router, &format!("n{i}"), &ns, "eth0", Some("br0"))?;
            address(&ns, "eth0", n.ip, n.prefix_len)?;
            route(&ns, "default", spec.router_ip)?;
            bridge(&ns, "cni0", n.cni0, n.pod_net.1)?;
            nodes.push(ns);
        }
        // flannel host-gw: every other node's pod CIDR via that node's IP.
        for (i, ns) in nodes.iter().enumerate() {
            for (k, o) in spec.nodes.iter().enumerate() {
                if i != k {
                    let dest = format!("{}/{}", o.pod_net.0, o.pod_net.1);
                    route(ns, &dest, o.ip)?;
                }
            }
        }
        let node_of = |name: &str| -> Result<(usize, &KNode)> {
            spec.nodes
                .iter()
                .enumerate()
                .find(|(_, n)| n.name == name)
                .ok_or_else(|| Error::Invalid(format!("unknown node {name:?}")))
        };
        for (j, p) in spec.pods.iter().enumerate() {
            let (i, n) = node_of(&p.node)?;
            let ns = self.ns_for("pod-", &p.name)?;
            self.pod_link(&nodes[i], &format!("p{j}"), &ns, n, p.ip)?;
            let who = AppsOf {
                pod: &p.name,
                node: &p.node,
                ip: p.ip,
                // `verify --kernel` builds IPv4 links only.
                ipv6: None,
                apps: &p.apps,
            };
            let mut apps = PodApps::default();
            let started = apps.start(&ns, &who, self.held.state(), None);
            self.apps.push(apps); // stopped by shutdown/drop even if the start failed
            started?;
        }
        let mut client_nets: Vec<(Ipv4Addr, u8)> = Vec::new();
        let mut reach_rules = String::new();
        for (k, c) in spec.clients.iter().enumerate() {
            let ns = self.ns_for("cl-", &c.name)?;
            match &c.attach {
                KAttach::Pod { node } => {
                    let (i, n) = node_of(node)?;
                    self.pod_link(&nodes[i], &format!("q{k}"), &ns, n, c.ip)?;
                }
                KAttach::External { prefix_len, reach } => {
                    let net = (wire::addr::network(c.ip, *prefix_len), *prefix_len);
                    let m = match client_nets.iter().position(|x| *x == net) {
                        Some(m) => m,
                        None => {
                            client_nets.push(net);
                            let m = client_nets.len() - 1;
                            let gw = first_host(c.ip, *prefix_len);
                            bridge(&router, &format!("cbr{m}"), gw, *prefix_len)?;
                            m
                        }
                    };
                    veth(
                        &router,
                        &format!("c{k}"),
                        &ns,
                        "eth0",
                        Some(&format!("cbr{m}")),
                    )?;
                    address(&ns, "eth0", c.ip, *prefix_len)?;
                    route(&ns, "default", first_host(c.ip, *prefix_len))?;
                    reach_rules.push_str(&reach_filter(c.ip, reach));
                }
            }
            self.clients.push((c.name.clone(), ns));
        }
        iptables_load(
            &router,
            &router_rules(spec.load_balancer.as_ref(), &reach_rules),
        )?;
        for (n, ns) in spec.nodes.iter().zip(&nodes) {
            iptables_load(ns, &n.rules)
                .map_err(|e| Error::Process(format!("node {}: {e}", n.name)))?;
        }
        Ok(())
    }

    /// A pod-like namespace on node `n`'s cni0: veth `here`/eth0, address, default route.
    fn pod_link(
        &self,
        node: &Netns,
        here: &str,
        ns: &Netns,
        n: &KNode,
        ip: Ipv4Addr,
    ) -> Result<()> {
        veth(node, here, ns, "eth0", Some("cni0"))?;
        // Hairpin, as the CNI bridge plugin sets it: a pod reaching itself through a service.
        topology::ip(
            node,
            &["link", "set", here, "type", "bridge_slave", "hairpin", "on"],
        )?;
        address(ns, "eth0", ip, n.pod_net.1)?;
        route(ns, "default", n.cni0)
    }

    /// The namespace of client `name`.
    pub fn client_ns(&self, name: &str) -> Option<&Netns> {
        self.clients
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ns)| ns)
    }

    /// A tail on every pod's access log, from now on.
    pub fn log_tail(&self) -> LogTail {
        let mut t = LogTail::default();
        for (p, apps) in self.pods.iter().zip(&self.apps) {
            for log in apps.access_logs() {
                t.follow(&p.name, log);
            }
        }
        t
    }

    /// The namespaces created, in order (router, nodes, pods, clients).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Stops nginx, deletes the namespaces and the state dir, releases the lock.
    pub fn shutdown(mut self) -> Result<DownReport> {
        for a in &mut self.apps {
            a.stop();
        }
        self.held.release()
    }
}

/// The router's iptables-restore text: the load balancer's DNAT (if any) and the clients'
/// reachability filter (`reach`, from [`reach_filter`]).
fn router_rules(lb: Option<&KLoadBalancer>, reach: &str) -> String {
    let (mut nat, mut accept) = (String::new(), String::new());
    if let Some(lb) = lb {
        let n = lb.targets.len();
        for (port, node_port) in &lb.listeners {
            for (i, t) in lb.targets.iter().enumerate() {
                let pick = if i + 1 < n {
                    format!(
                        "-m statistic --mode random --probability {:.11} ",
                        1.0 / (n - i) as f64
                    )
                } else {
                    String::new()
                };
                nat.push_str(&format!(
                    "-A PREROUTING -d {}/32 -p tcp -m tcp --dport {port} -m comment --comment \"load balancer\" {pick}-j DNAT --to-destination {t}:{node_port}\n",
                    lb.ip
                ));
            }
        }
        // Every client may reach the load balancer (the lab router's rule too).
        accept = format!(
            "-A FORWARD -m conntrack --ctstate DNAT --ctorigdst {}/32 -m comment --comment \"load balancer\" -j ACCEPT\n",
            lb.ip
        );
    }
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{nat}COMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{accept}{reach}COMMIT\n"
    )
}

/// The router's filter rules for one external client: it may reach only `reach` (the lab
/// router drops everything else it sends; replies to it are not filtered).
fn reach_filter(client: Ipv4Addr, reach: &[Ipv4Addr]) -> String {
    let mut s = String::new();
    for r in reach {
        s.push_str(&format!(
            "-A FORWARD -s {client}/32 -d {r}/32 -m comment --comment \"canReach\" -j ACCEPT\n"
        ));
    }
    s.push_str(&format!(
        "-A FORWARD -s {client}/32 -m comment --comment \"canReach: nothing else\" -j DROP\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_reach_rules() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(first_host(ip("203.0.113.11"), 24), ip("203.0.113.1"));
        assert_eq!(wire::addr::network(ip("10.244.1.16"), 24), ip("10.244.1.0"));
        assert_eq!(wire::addr::network(ip("10.244.1.16"), 0), ip("0.0.0.0"));
        let lb = KLoadBalancer {
            ip: ip("198.51.100.10"),
            targets: vec![ip("10.151.30.12"), ip("10.151.30.13")],
            listeners: vec![(80, 31305)],
        };
        let rules = router_rules(Some(&lb), "");
        assert!(rules.contains("-A PREROUTING -d 198.51.100.10/32 -p tcp -m tcp --dport 80 -m comment --comment \"load balancer\" -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.151.30.12:31305\n"), "{rules}");
        assert!(
            rules.contains(
                "--comment \"load balancer\" -j DNAT --to-destination 10.151.30.13:31305\n"
            ),
            "{rules}"
        );
        assert!(
            rules.contains("--ctstate DNAT --ctorigdst 198.51.100.10/32"),
            "{rules}"
        );
        assert!(!router_rules(None, "").contains("DNAT"));
        let r = reach_filter(ip("203.0.113.11"), &[ip("10.151.30.11")]);
        assert_eq!(
            r,
            "-A FORWARD -s 203.0.113.11/32 -d 10.151.30.11/32 -m comment --comment \"canReach\" -j ACCEPT\n\
             -A FORWARD -s 203.0.113.11/32 -m comment --comment \"canReach: nothing else\" -j DROP\n"
        );
    }
}
