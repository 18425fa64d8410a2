//! A scenario built with Linux itself: the kernel reference of `lab verify --kernel`.
//!
//! Generalises `../shared/reference/kernel-ref.sh` to any lab topology. Every node, pod and
//! client is a network namespace (`nplab-k-…`); the node network is a bridge in a router
//! namespace that also routes the external clients' networks; nodes route the other nodes'
//! pod CIDRs via their node IPs (flannel host-gw) and run the kube-proxy rules they are given
//! with `iptables-restore`; pods hang off the node's `cni0` bridge and run Debian's nginx.
//!
//! ```text
//!  client ns  eth0 ──veth── c<k> ┐ cbr<m> (client net, gw .1; IPv6: its /64, gw ::1)
//!                                 │           router ns (forwarding, canReach filter)
//!  node ns    eth0 ──veth── n<i> ─┘ br0 (node network, router IP; IPv6: routerV6)
//!    cni0 (10.244.N.1; IPv6: the pod /64's ::1) ── p<j> ──veth── eth0  pod ns (nginx)
//! ```
//!
//! Dual-stack: where the spec gives IPv6 addresses, the same links carry them too. IPv6 is
//! off on every new link of these namespaces and turned on only for the links that get an
//! IPv6 address (nodes' eth0 and cni0, the router's br0 and client bridges, pods' and
//! clients' eth0), without duplicate address detection; nodes and the router forward IPv6,
//! nodes route the other nodes' IPv6 pod CIDRs via their IPv6 node addresses and load their
//! IPv6 rules with ip6tables-restore (the same backend as iptables-restore); the router's
//! canReach filter is ip6tables for IPv6 clients. Unlike the lab's L3 links, these are
//! Ethernet links, so the kernel resolves IPv6 neighbours with NDP itself.
//!
//! Cleanup is [`crate::cleanup::down`] on [`KERNEL_STATE_DIR`] / [`KERNEL_PREFIX`]: nginx
//! process records live in the state directory, so `lab down` after a `kill -9` stops them,
//! then anything left in the namespaces, then deletes the namespaces (their veths go too).

pub mod topology;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use wire::IpFamily;

use super::app::{AppsOf, PodApp, PodApps};
use super::cleanup::{down, DownReport, Held, StateDir};
use super::netns::{ns_name, Netns};
use super::preflight::find_program;
use super::{Error, Result, PREFIX};

use topology::{
    address, bridge, enable_ipv6, ip6tables_restore, iptables_load, iptables_restore, route,
    sysctls, veth, IPV6_OFF_BY_DEFAULT,
};

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
    /// The node's IPv6 side (dual-stack lab), `None` on an IPv4-only node.
    pub v6: Option<KNodeV6>,
}

/// A dual-stack node's IPv6 side: eth0's and cni0's IPv6 addresses, its IPv6 pod CIDR and
/// kube-proxy's IPv6 rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KNodeV6 {
    pub ip: Ipv6Addr,
    /// Prefix length of the IPv6 node network.
    pub prefix_len: u8,
    /// The IPv6 pod CIDR's network address and prefix length (fd00:10:244:1::, 64).
    pub pod_net: (Ipv6Addr, u8),
    /// cni0's IPv6 address (first host of the IPv6 pod CIDR).
    pub cni0: Ipv6Addr,
    /// ip6tables-save text (nat + filter) loaded with ip6tables-restore.
    pub rules: String,
}

/// A pod on a node's cni0 running its containers' apps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KPod {
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 address (in the node's IPv6 pod CIDR) on a dual-stack node.
    pub ipv6: Option<Ipv6Addr>,
    /// One per container; empty = nginx on 80.
    pub apps: Vec<PodApp>,
}

/// Where a client sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KAttach {
    /// Behind the router on `net`/`prefix_len` (gateway: the first host; an IPv6 client
    /// address sits on its /64, gateway `::1`, as the lab's router gives it). It may reach
    /// only the node addresses in `reach`, of either family (the lab router's `canReach`).
    External { prefix_len: u8, reach: Vec<IpAddr> },
    /// A pod (no server) on `node`'s cni0.
    Pod { node: String },
}

/// A client where curl runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KClient {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 address, if it has one.
    pub ipv6: Option<Ipv6Addr>,
    pub attach: KAttach,
}

/// An NLB-style load balancer without health checks, in the router: each new connection to
/// `ip:port` is DNATed to one of `targets` (node IPs) at the listener's node port, uniformly
/// at random; the client's address is kept, replies are un-DNATed by the router's conntrack.
/// With an IPv6 frontend `ipv6`, connections to it go the same way (ip6tables) to `targets6`
/// (the IPv6 addresses of the targets that have one, as the lab's load balancer picks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KLoadBalancer {
    pub ip: Ipv4Addr,
    pub targets: Vec<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub targets6: Vec<Ipv6Addr>,
    /// (frontend port, node port), TCP.
    pub listeners: Vec<(u16, u16)>,
}

impl KLoadBalancer {
    /// The frontend and targets of `family` (`None`: no frontend of that family).
    fn of(&self, family: IpFamily) -> Option<(IpAddr, Vec<IpAddr>)> {
        match family {
            IpFamily::V4 => Some((
                self.ip.into(),
                self.targets.iter().map(|&t| t.into()).collect(),
            )),
            IpFamily::V6 => Some((
                self.ipv6?.into(),
                self.targets6.iter().map(|&t| t.into()).collect(),
            )),
        }
    }
}

/// Everything [`KernelLab::up`] builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    /// The router's address on the node network (every node's default gateway).
    pub router_ip: Ipv4Addr,
    /// Its IPv6 address on the node network (the IPv6 default gateway), if the lab has one.
    pub router_ipv6: Option<Ipv6Addr>,
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
    } else if ip6tables_restore().is_none() {
        miss.push("ip6tables-restore (apt-get install -y iptables)".into());
    }
    miss
}

fn first_host(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    wire::first_host(ip, prefix).unwrap_or(ip)
}

/// The prefix length of an IPv6 client's network (the lab router's client /64).
pub const CLIENT_PREFIX_V6: u8 = 64;

/// An IPv6 client's network (its /64) and gateway (the /64's first host, `::1`).
fn client_net6(ip: Ipv6Addr) -> (Ipv6Addr, Ipv6Addr) {
    let net = u128::from(ip) & !(u128::MAX >> CLIENT_PREFIX_V6);
    (Ipv6Addr::from(net), Ipv6Addr::from(net | 1))
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
        // Loose reverse-path filtering everywhere, IPv6 off on new links unless enabled
        // (set before any interface exists, so the `default` values apply to every veth and
        // bridge created here).
        sysctls(
            &ns,
            &[
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
            ],
            &[IPV6_OFF_BY_DEFAULT],
        )?;
        Ok(ns)
    }

    fn build(&mut self, spec: &KernelSpec) -> Result<()> {
        let router = self.router(spec)?;
        let nodes = self.nodes(spec, &router)?;
        for (j, p) in spec.pods.iter().enumerate() {
            self.pod(spec, &nodes, j, p)?;
        }
        let reach = self.clients(spec, &router, &nodes)?;
        let lb = spec.load_balancer.as_ref();
        iptables_load(
            &router,
            IpFamily::V4,
            &router_rules(lb, &reach.v4, IpFamily::V4),
        )?;
        if spec.router_ipv6.is_some() || !reach.v6.is_empty() {
            let rules = router_rules(lb, &reach.v6, IpFamily::V6);
            iptables_load(&router, IpFamily::V6, &rules)?;
        }
        for (n, ns) in spec.nodes.iter().zip(&nodes) {
            let load = |family, rules: &str| {
                iptables_load(ns, family, rules)
                    .map_err(|e| Error::Process(format!("node {}: {e}", n.name)))
            };
            load(IpFamily::V4, &n.rules)?;
            if let Some(v6) = &n.v6 {
                load(IpFamily::V6, &v6.rules)?;
            }
        }
        Ok(())
    }

    /// The router: a plain switch `br0` for the node network (bridged node-to-node traffic
    /// does not cross its netfilter), forwarding for the clients.
    fn router(&mut self, spec: &KernelSpec) -> Result<Netns> {
        let router = self.ns_for("", "router")?;
        let mut keys = vec![("net/ipv4/ip_forward", "1")];
        if spec.router_ipv6.is_some() {
            keys.push(("net/ipv6/conf/all/forwarding", "1"));
        }
        sysctls(
            &router,
            &keys,
            &[
                ("net/bridge/bridge-nf-call-iptables", "0"),
                ("net/bridge/bridge-nf-call-ip6tables", "0"),
            ],
        )?;
        let node_prefix = spec.nodes.first().map(|n| n.prefix_len).unwrap_or(24);
        bridge(&router, "br0", spec.router_ip, node_prefix)?;
        if let Some(r6) = spec.router_ipv6 {
            let prefix6 = spec
                .nodes
                .iter()
                .find_map(|n| n.v6.as_ref().map(|v| v.prefix_len))
                .unwrap_or(64);
            enable_ipv6(&router, "br0")?;
            address(&router, "br0", r6, prefix6)?;
        }
        Ok(router)
    }

    /// The nodes on br0, each with cni0 and flannel host-gw routes: every other node's pod
    /// CIDR via that node's IP, per family.
    fn nodes(&mut self, spec: &KernelSpec, router: &Netns) -> Result<Vec<Netns>> {
        let mut nodes = Vec::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            let ns = self.ns_for("", &n.name)?;
            let mut keys = vec![
                ("net/ipv4/ip_forward", "1"),
                // kube-proxy sets it for NodePorts on 127.0.0.1 (localhostNodePorts).
                ("net/ipv4/conf/all/route_localnet", "1"),
            ];
            if n.v6.is_some() {
                keys.push(("net/ipv6/conf/all/forwarding", "1"));
            }
            sysctls(
                &ns,
                &keys,
                &[
                    ("net/bridge/bridge-nf-call-iptables", "1"),
                    ("net/bridge/bridge-nf-call-ip6tables", "1"),
                ],
            )?;
            veth(router, &format!("n{i}"), &ns, "eth0", Some("br0"))?;
            address(&ns, "eth0", n.ip, n.prefix_len)?;
            route(&ns, "default", spec.router_ip)?;
            bridge(&ns, "cni0", n.cni0, n.pod_net.1)?;
            if let Some(v6) = &n.v6 {
                enable_ipv6(&ns, "eth0")?;
                enable_ipv6(&ns, "cni0")?;
                address(&ns, "eth0", v6.ip, v6.prefix_len)?;
                address(&ns, "cni0", v6.cni0, v6.pod_net.1)?;
                if let Some(r6) = spec.router_ipv6 {
                    route(&ns, "default", r6)?;
                }
            }
            nodes.push(ns);
        }
        for (i, ns) in nodes.iter().enumerate() {
            for (k, o) in spec.nodes.iter().enumerate() {
                if i == k {
                    continue;
                }
                route(ns, &format!("{}/{}", o.pod_net.0, o.pod_net.1), o.ip)?;
                if let (Some(_), Some(o6)) = (&spec.nodes[i].v6, &o.v6) {
                    route(ns, &format!("{}/{}", o6.pod_net.0, o6.pod_net.1), o6.ip)?;
                }
            }
        }
        Ok(nodes)
    }

    /// Pod `j` on its node's cni0, its apps started.
    fn pod(&mut self, spec: &KernelSpec, nodes: &[Netns], j: usize, p: &KPod) -> Result<()> {
        let (i, n) = node_of(spec, &p.node)?;
        let ns = self.ns_for("pod-", &p.name)?;
        self.pod_link(&nodes[i], &format!("p{j}"), &ns, n, p.ip, p.ipv6)?;
        let who = AppsOf {
            pod: &p.name,
            node: &p.node,
            ip: p.ip,
            ipv6: p.ipv6,
            apps: &p.apps,
        };
        let mut apps = PodApps::default();
        let started = apps.start(&ns, &who, self.held.state(), None);
        self.apps.push(apps); // stopped by shutdown/drop even if the start failed
        started
    }

    /// The clients: pod clients on their node's cni0, external ones behind the router's
    /// client bridges. Returns the router's canReach rules.
    fn clients(&mut self, spec: &KernelSpec, router: &Netns, nodes: &[Netns]) -> Result<Reach> {
        let mut nets = ClientNets::default();
        let mut reach = Reach::default();
        for (k, c) in spec.clients.iter().enumerate() {
            let ns = self.ns_for("cl-", &c.name)?;
            match &c.attach {
                KAttach::Pod { node } => {
                    let (i, n) = node_of(spec, node)?;
                    self.pod_link(&nodes[i], &format!("q{k}"), &ns, n, c.ip, c.ipv6)?;
                }
                KAttach::External {
                    prefix_len,
                    reach: allowed,
                } => {
                    let m = nets.bridge_for(router, c, *prefix_len)?;
                    let br = format!("cbr{m}");
                    veth(router, &format!("c{k}"), &ns, "eth0", Some(&br))?;
                    address(&ns, "eth0", c.ip, *prefix_len)?;
                    route(&ns, "default", first_host(c.ip, *prefix_len))?;
                    reach.v4.push_str(&reach_filter(c.ip.into(), allowed));
                    if let Some(ip6) = c.ipv6 {
                        enable_ipv6(&ns, "eth0")?;
                        address(&ns, "eth0", ip6, CLIENT_PREFIX_V6)?;
                        route(&ns, "default", client_net6(ip6).1)?;
                        reach.v6.push_str(&reach_filter(ip6.into(), allowed));
                    }
                }
            }
            self.clients.push((c.name.clone(), ns));
        }
        if let Some(lb) = &spec.load_balancer {
            nets.frontends(router, lb)?;
        }
        Ok(reach)
    }

    /// A pod-like namespace on node `n`'s cni0: veth `here`/eth0, address, default route,
    /// and the same for IPv6 when it has an IPv6 address.
    fn pod_link(
        &self,
        node: &Netns,
        here: &str,
        ns: &Netns,
        n: &KNode,
        ip: Ipv4Addr,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<()> {
        veth(node, here, ns, "eth0", Some("cni0"))?;
        // Hairpin, as the CNI bridge plugin sets it: a pod reaching itself through a service.
        topology::ip(
            node,
            &["link", "set", here, "type", "bridge_slave", "hairpin", "on"],
        )?;
        address(ns, "eth0", ip, n.pod_net.1)?;
        route(ns, "default", n.cni0)?;
        if let Some(ip6) = ipv6 {
            let v6 = n.v6.as_ref().ok_or_else(|| {
                Error::Invalid(format!(
                    "{ip6} on node {}, which has no IPv6 pod CIDR",
                    n.name
                ))
            })?;
            enable_ipv6(ns, "eth0")?;
            address(ns, "eth0", ip6, v6.pod_net.1)?;
            route(ns, "default", v6.cni0)?;
        }
        Ok(())
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

/// The node of `name`, with its index.
fn node_of<'a>(spec: &'a KernelSpec, name: &str) -> Result<(usize, &'a KNode)> {
    spec.nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.name == name)
        .ok_or_else(|| Error::Invalid(format!("unknown node {name:?}")))
}

/// The router's canReach filter rules ([`reach_filter`]), per family.
#[derive(Debug, Default)]
struct Reach {
    v4: String,
    v6: String,
}

/// The router's client bridges: `cbr<m>` per IPv4 client network (`v4[m]`), carrying the
/// IPv6 client /64s of the clients on it (`v6`: network, m).
#[derive(Debug, Default)]
struct ClientNets {
    v4: Vec<(Ipv4Addr, u8)>,
    v6: Vec<(Ipv6Addr, usize)>,
}

impl ClientNets {
    /// The bridge of client `c` (created with the gateway addresses the first time a
    /// network is seen).
    fn bridge_for(&mut self, router: &Netns, c: &KClient, prefix_len: u8) -> Result<usize> {
        let net = (wire::addr::network(c.ip, prefix_len), prefix_len);
        let m = match self.v4.iter().position(|x| *x == net) {
            Some(m) => m,
            None => {
                self.v4.push(net);
                let m = self.v4.len() - 1;
                let gw = first_host(c.ip, prefix_len);
                bridge(router, &format!("cbr{m}"), gw, prefix_len)?;
                m
            }
        };
        let Some(ip6) = c.ipv6 else { return Ok(m) };
        let (net6, gw6) = client_net6(ip6);
        match self.v6.iter().find(|(n, _)| *n == net6) {
            Some((_, m6)) if *m6 == m => {}
            Some((_, m6)) => {
                return Err(Error::Invalid(format!(
                    "client {}: IPv6 network {net6}/{CLIENT_PREFIX_V6} is already behind \
                     cbr{m6}, another IPv4 client network than {}/{prefix_len}'s",
                    c.name, net.0
                )))
            }
            None => {
                let br = format!("cbr{m}");
                enable_ipv6(router, &br)?;
                address(router, &br, gw6, CLIENT_PREFIX_V6)?;
                self.v6.push((net6, m));
            }
        }
        Ok(m)
    }

    /// A load balancer frontend inside a client network is the router's address on that
    /// network's bridge (so ARP/NDP resolve it on-link), as the lab's router answers it on
    /// that segment; its DNAT happens in PREROUTING all the same.
    fn frontends(&self, router: &Netns, lb: &KLoadBalancer) -> Result<()> {
        for (m, (net, prefix)) in self.v4.iter().enumerate() {
            if wire::addr::network(lb.ip, *prefix) == *net {
                address(router, &format!("cbr{m}"), lb.ip, 32)?;
            }
        }
        for (net6, m) in &self.v6 {
            if let Some(f6) = lb.ipv6.filter(|f| client_net6(*f).0 == *net6) {
                address(router, &format!("cbr{m}"), f6, 128)?;
            }
        }
        Ok(())
    }
}

/// `/32` or `/128`: the host prefix length of `a`'s family.
fn host_bits(a: &IpAddr) -> u8 {
    if a.is_ipv6() {
        128
    } else {
        32
    }
}

/// The router's iptables-restore (or ip6tables-restore) text of `family`: the load
/// balancer's DNAT (if it has a frontend of that family) and the clients' reachability filter
/// (`reach`, from [`reach_filter`]).
fn router_rules(lb: Option<&KLoadBalancer>, reach: &str, family: IpFamily) -> String {
    let (mut nat, mut accept) = (String::new(), String::new());
    if let Some((ip, targets)) = lb.and_then(|lb| lb.of(family)) {
        let listeners = lb.map(|lb| lb.listeners.as_slice()).unwrap_or_default();
        let n = targets.len();
        let dst = format!("{ip}/{}", host_bits(&ip));
        for (port, node_port) in listeners {
            for (i, t) in targets.iter().enumerate() {
                let pick = if i + 1 < n {
                    format!(
                        "-m statistic --mode random --probability {:.11} ",
                        1.0 / (n - i) as f64
                    )
                } else {
                    String::new()
                };
                let to = std::net::SocketAddr::new(*t, *node_port);
                nat.push_str(&format!(
                    "-A PREROUTING -d {dst} -p tcp -m tcp --dport {port} -m comment --comment \"load balancer\" {pick}-j DNAT --to-destination {to}\n"
                ));
            }
        }
        // Every client may reach the load balancer (the lab router's rule too).
        accept = format!(
            "-A FORWARD -m conntrack --ctstate DNAT --ctorigdst {dst} -m comment --comment \"load balancer\" -j ACCEPT\n"
        );
    }
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{nat}COMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{accept}{reach}COMMIT\n"
    )
}

/// The router's filter rules (iptables or ip6tables, `client`'s family) for one external
/// client address: it may reach only the addresses of its family in `reach` (the lab router
/// drops everything else it sends; replies to it are not filtered).
fn reach_filter(client: IpAddr, reach: &[IpAddr]) -> String {
    let c = format!("{client}/{}", host_bits(&client));
    let mut s = String::new();
    for r in reach.iter().filter(|r| r.is_ipv6() == client.is_ipv6()) {
        s.push_str(&format!(
            "-A FORWARD -s {c} -d {r}/{} -m comment --comment \"canReach\" -j ACCEPT\n",
            host_bits(r)
        ));
    }
    s.push_str(&format!(
        "-A FORWARD -s {c} -m comment --comment \"canReach: nothing else\" -j DROP\n"
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
        let mut lb = KLoadBalancer {
            ip: ip("198.51.100.10"),
            targets: vec![ip("10.151.30.12"), ip("10.151.30.13")],
            ipv6: None,
            targets6: Vec::new(),
            listeners: vec![(80, 31305)],
        };
        assert!(!router_rules(Some(&lb), "", IpFamily::V6).contains("DNAT"));
        let rules = router_rules(Some(&lb), "", IpFamily::V4);
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
        assert!(!router_rules(None, "", IpFamily::V4).contains("DNAT"));
        // The IPv6 frontend: ip6tables DNAT to the targets' IPv6 addresses, [addr]:port.
        lb.ipv6 = Some("2001:db8:51::10".parse().unwrap());
        lb.targets6 = vec!["fd00:10:151:30::12".parse().unwrap()];
        let rules6 = router_rules(Some(&lb), "", IpFamily::V6);
        assert!(rules6.contains("-A PREROUTING -d 2001:db8:51::10/128 -p tcp -m tcp --dport 80 -m comment --comment \"load balancer\" -j DNAT --to-destination [fd00:10:151:30::12]:31305\n"), "{rules6}");
        assert!(
            rules6.contains("--ctstate DNAT --ctorigdst 2001:db8:51::10/128"),
            "{rules6}"
        );
        assert!(!rules6.contains("198.51.100.10"), "{rules6}");
        let any = |s: &str| s.parse::<IpAddr>().unwrap();
        let reach = [any("10.151.30.11"), any("fd00:10:151:30::11")];
        let r = reach_filter(any("203.0.113.11"), &reach);
        assert_eq!(
            r,
            "-A FORWARD -s 203.0.113.11/32 -d 10.151.30.11/32 -m comment --comment \"canReach\" -j ACCEPT\n\
             -A FORWARD -s 203.0.113.11/32 -m comment --comment \"canReach: nothing else\" -j DROP\n"
        );
        // The ip6tables side: the client's IPv6 address may reach the node's IPv6 address.
        let r6 = reach_filter(any("2001:db8::11"), &reach);
        assert_eq!(
            r6,
            "-A FORWARD -s 2001:db8::11/128 -d fd00:10:151:30::11/128 -m comment --comment \"canReach\" -j ACCEPT\n\
             -A FORWARD -s 2001:db8::11/128 -m comment --comment \"canReach: nothing else\" -j DROP\n"
        );
    }

    #[test]
    fn ipv6_clients_sit_on_their_64() {
        let (net, gw) = client_net6("2001:db8::11".parse().unwrap());
        assert_eq!(net, "2001:db8::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(gw, "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let (net, gw) = client_net6("2001:db8:0:7:ffff::5".parse().unwrap());
        assert_eq!(net, "2001:db8:0:7::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(gw, "2001:db8:0:7::1".parse::<Ipv6Addr>().unwrap());
    }
}
