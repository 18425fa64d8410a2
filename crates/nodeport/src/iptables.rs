//! kube-proxy's rules as text: what iptables mode programs on one node.
//!
//! Owns the translation of the model the engine runs ([`Service`]s, [`EndpointSlice`]s, the
//! node's [`ProxyConfig`]) into the nat and filter tables that upstream
//! `pkg/proxy/iptables/proxier.go` `syncProxyRules` / `writeServiceToEndpointRules` write,
//! plus the jump rules it installs with `EnsureRule` (`iptablesJumpChains`,
//! `iptablesKubeletJumpChains`). It decides nothing at packet time; it shares the endpoint
//! selection ([`topology::port_endpoints`], [`topology::categorize`]) and the chain names
//! ([`crate::chains`]) with the engine, so every chain a trace walks exists here.
//!
//! Two renderings ([`RulesFormat`]): what `iptables-save` prints once the rules are loaded
//! (addresses with `/32`, `-p` before the matches, `MARK --set-xmark`, `--probability` as the
//! kernel's 31-bit fixed point reads back, `-m recent` with its defaults), and kube-proxy's
//! own `iptables-restore` input (the form of `proxier_test.go`'s expected dumps).
//!
//! IPv6: kube-proxy runs one proxier per family and programs ip6tables like iptables;
//! [`ip6tables_save`] / [`render_family`] give that family's text: only its ClusterIP,
//! external/LB IPs, source ranges and EndpointSlices (`addressType`), its cluster CIDR, `/128`
//! host prefixes, `[addr]:port` DNAT targets, `! -d ::1/128` on the NodePorts jump and no
//! localnet (127.0.0.0/8, KUBE-FIREWALL) rules: localhost NodePorts are IPv4 only.
//!
//! Not generated: nfacct matches (kube-proxy omits them when the counters cannot be created),
//! large-cluster mode (comments dropped above 1000 endpoints), the mangle canary chain.

use crate::model::IpFamily;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::chains::{
    port_proto_hash, service_port_name, KUBE_EXTERNAL_SERVICES, KUBE_MARK_MASQ, KUBE_NODEPORTS,
    KUBE_POSTROUTING, KUBE_SERVICES, MASQ_MARK,
};
use crate::model::{
    addrs_of, nets_of, Endpoint, EndpointSlice, ProxyConfig, Service, ServicePort, ServiceType,
    SessionAffinity, TrafficPolicy,
};
use crate::topology;

/// filter KUBE-FORWARD.
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
/// filter KUBE-PROXY-FIREWALL (loadBalancerSourceRanges DROPs).
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// filter KUBE-FIREWALL (kubelet's copy: the localhost NodePort martian guard).
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";

/// How [`render`] prints the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesFormat {
    /// `iptables-save` of a node after kube-proxy synced: nat then filter, built-in chains
    /// with their jump rules, each chain's rules together, kernel-normalised arguments.
    IptablesSave,
    /// kube-proxy's `iptables-restore` input: filter then nat, its own chain and rule order
    /// and argument spelling, without the jump rules from the built-in chains.
    KubeProxy,
}

/// The `iptables-save` text of `config`'s node ([`RulesFormat::IptablesSave`]).
pub fn iptables_save(
    config: &ProxyConfig,
    services: &[Service],
    slices: &[EndpointSlice],
) -> String {
    render(config, services, slices, RulesFormat::IptablesSave)
}

/// The `ip6tables-save` text of `config`'s node: the IPv6 proxier's rules.
pub fn ip6tables_save(
    config: &ProxyConfig,
    services: &[Service],
    slices: &[EndpointSlice],
) -> String {
    render_family(
        config,
        services,
        slices,
        RulesFormat::IptablesSave,
        IpFamily::V6,
    )
}

/// The rules kube-proxy's IPv4 proxier programs on `config`'s node for these services and
/// slices.
pub fn render(
    config: &ProxyConfig,
    services: &[Service],
    slices: &[EndpointSlice],
    format: RulesFormat,
) -> String {
    render_family(config, services, slices, format, IpFamily::V4)
}

/// The rules the proxier of `family` programs (iptables for IPv4, ip6tables for IPv6).
pub fn render_family(
    config: &ProxyConfig,
    services: &[Service],
    slices: &[EndpointSlice],
    format: RulesFormat,
    family: IpFamily,
) -> String {
    let t = build(config, services, slices, family);
    let mut out = String::new();
    match format {
        RulesFormat::IptablesSave => {
            t.nat.write_save(&mut out);
            t.filter.write_save(&mut out);
        }
        RulesFormat::KubeProxy => {
            t.filter.write_restore(&mut out);
            t.nat.write_restore(&mut out);
        }
    }
    out
}

/// kube-proxy's `computeProbability(n)`: `fmt.Sprintf("%0.10f", 1.0/float64(n))`.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n.max(1) as f64)
}

/// What `iptables-save` prints for `--probability p`: xt_statistic stores
/// `lround(p * 2^31)`, libxt_statistic prints it back with `%.11f`.
pub fn saved_probability(p: &str) -> String {
    let v: f64 = p.parse().unwrap_or(1.0);
    let fixed = (v * 2_147_483_648.0).round().clamp(0.0, u32::MAX as f64);
    format!("{:.11}", fixed / 2_147_483_648.0)
}

/// One table being built: its chains in creation order and its rules in write order.
struct Table {
    name: &'static str,
    builtins: &'static [&'static str],
    chains: Vec<String>,
    /// (chain, kube-proxy arguments after `-A chain`).
    rules: Vec<(String, String)>,
    /// Rules in built-in chains (kube-proxy's `EnsureRule` jumps), final order.
    jumps: Vec<(String, String)>,
    /// An ip6tables table (REJECT's default differs).
    v6: bool,
}

impl Table {
    fn new(name: &'static str, builtins: &'static [&'static str]) -> Self {
        Table {
            name,
            builtins,
            chains: Vec::new(),
            rules: Vec::new(),
            jumps: Vec::new(),
            v6: false,
        }
    }

    fn chain(&mut self, name: &str) {
        if !self.chains.iter().any(|c| c == name) {
            self.chains.push(name.to_string());
        }
    }

    fn rule(&mut self, chain: &str, args: String) {
        self.rules.push((chain.to_string(), args));
    }

    /// `EnsureRule(Prepend, …)`: the jump goes before the chain's earlier jumps.
    fn prepend_jump(&mut self, builtin: &str, args: String) {
        let at = self
            .jumps
            .iter()
            .position(|(c, _)| c == builtin)
            .unwrap_or(self.jumps.len());
        self.jumps.insert(at, (builtin.to_string(), args));
    }

    fn write_restore(&self, out: &mut String) {
        let _ = writeln!(out, "*{}", self.name);
        for c in &self.chains {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for (c, a) in &self.rules {
            let _ = writeln!(out, "{}", format!("-A {c} {a}").trim_end());
        }
        let _ = writeln!(out, "COMMIT");
    }

    /// iptables-save order: built-ins, then kube-proxy's chains (nat: KUBE-MARK-MASQ and
    /// KUBE-POSTROUTING after the service chains); every chain's rules together.
    fn write_save(&self, out: &mut String) {
        let _ = writeln!(out, "*{}", self.name);
        for b in self.builtins {
            let _ = writeln!(out, ":{b} ACCEPT [0:0]");
        }
        let tail = [KUBE_MARK_MASQ, KUBE_POSTROUTING];
        let mut order: Vec<&String> = self.chains.iter().collect();
        if self.name == "nat" {
            order.sort_by_key(|c| tail.iter().position(|t| t == c));
        }
        for c in &order {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for b in self.builtins {
            for (_, a) in self.jumps.iter().filter(|(c, _)| c == b) {
                let _ = writeln!(out, "-A {b}{}", save_args(a, self.v6));
            }
        }
        for c in order {
            for (_, a) in self.rules.iter().filter(|(rc, _)| rc == c) {
                let _ = writeln!(out, "-A {c}{}", save_args(a, self.v6));
            }
        }
        let _ = writeln!(out, "COMMIT");
    }
}

struct Tables {
    nat: Table,
    filter: Table,
}

/// Split kube-proxy arguments on spaces outside double quotes (quotes kept).
fn tokens(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in args.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// libxtables `xtables_save_string`: bare when only `[A-Za-z0-9_-]`, else double-quoted.
fn save_string(s: &str) -> String {
    let s = s.trim_matches('"');
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// An address as iptables-save prints it: with its host prefix (`/32`, `/128` for IPv6).
fn with_prefix(addr: &str) -> String {
    if addr.contains('/') {
        addr.to_string()
    } else if addr.contains(':') {
        format!("{addr}/128")
    } else {
        format!("{addr}/32")
    }
}

/// One match (`-m name opts…`) as iptables-save prints it.
fn save_match(name: &str, opts: &[String]) -> String {
    let mut s = format!(" -m {name}");
    match name {
        "comment" => {
            if let Some(c) = opts.iter().skip_while(|o| *o != "--comment").nth(1) {
                let _ = write!(s, " --comment {}", save_string(c));
            }
        }
        "statistic" => {
            let mut it = opts.iter();
            while let Some(o) = it.next() {
                match (o.as_str(), it.clone().next()) {
                    ("--probability", Some(p)) => {
                        let _ = write!(s, " --probability {}", saved_probability(p));
                        it.next();
                    }
                    _ => {
                        let _ = write!(s, " {o}");
                    }
                }
            }
        }
        "recent" => {
            let has = |f: &str| opts.iter().any(|o| o == f);
            let val = |f: &str| opts.iter().skip_while(|o| *o != f).nth(1).cloned();
            for f in ["--set", "--rcheck", "--update", "--remove"] {
                if has(f) {
                    let _ = write!(s, " {f}");
                }
            }
            if let Some(v) = val("--seconds") {
                let _ = write!(s, " --seconds {v}");
            }
            if has("--reap") {
                s.push_str(" --reap");
            }
            if let Some(v) = val("--name") {
                let _ = write!(s, " --name {v}");
            }
            s.push_str(" --mask 255.255.255.255 --rsource");
        }
        _ => {
            for o in opts {
                let _ = write!(s, " {o}");
            }
        }
    }
    s
}

/// The target (`-j NAME opts…`) as iptables-save prints it.
fn save_target(name: &str, opts: &[String], v6: bool) -> String {
    let val = |f: &str| opts.iter().skip_while(|o| *o != f).nth(1).cloned();
    match name {
        "MARK" => {
            if let Some(m) = val("--or-mark") {
                format!(" -j MARK --set-xmark {m}/{m}")
            } else if let Some(m) = val("--xor-mark") {
                format!(" -j MARK --set-xmark {m}/0x0")
            } else {
                format!(" -j MARK {}", opts.join(" "))
            }
        }
        // ip6tables' REJECT defaults to icmp6-port-unreachable (ip6t_REJECT).
        "REJECT" if opts.is_empty() && v6 => {
            " -j REJECT --reject-with icmp6-port-unreachable".into()
        }
        "REJECT" if opts.is_empty() => " -j REJECT --reject-with icmp-port-unreachable".into(),
        _ if opts.is_empty() => format!(" -j {name}"),
        _ => format!(" -j {name} {}", opts.join(" ")),
    }
}

/// kube-proxy's argument list for one rule, in iptables-save's normal form:
/// `[! ]-s`, `[! ]-d`, `-p`, then the matches in order, then the target.
fn save_args(args: &str, v6: bool) -> String {
    let toks = tokens(args);
    let (mut src, mut dst, mut proto) = (String::new(), String::new(), String::new());
    let mut matches: Vec<(String, Vec<String>)> = Vec::new();
    let mut target: Option<(String, Vec<String>)> = None;
    let mut neg = false;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].as_str();
        let next = toks.get(i + 1).cloned().unwrap_or_default();
        if let Some((_, opts)) = target.as_mut() {
            opts.push(t.to_string());
            i += 1;
            continue;
        }
        let bang = if neg { "! " } else { "" };
        match t {
            "!" => {
                neg = true;
                i += 1;
                continue;
            }
            "-s" => src = format!(" {bang}-s {}", with_prefix(&next)),
            "-d" => dst = format!(" {bang}-d {}", with_prefix(&next)),
            "-p" => proto = format!(" -p {next}"),
            "-m" => matches.push((next, Vec::new())),
            "-j" => target = Some((next, Vec::new())),
            _ => {
                if let Some((_, opts)) = matches.last_mut() {
                    if neg {
                        opts.push("!".into());
                    }
                    opts.push(t.to_string());
                }
                neg = false;
                i += 1;
                continue;
            }
        }
        neg = false;
        i += 2;
    }
    let mut s = format!("{src}{dst}{proto}");
    for (name, opts) in &matches {
        s.push_str(&save_match(name, opts));
    }
    if let Some((name, opts)) = &target {
        s.push_str(&save_target(name, opts, v6));
    }
    s
}

/// `iptablesJumpChains` + `iptablesKubeletJumpChains`, each `EnsureRule(Prepend, …)`.
/// Kubelet's KUBE-FIREWALL (the localnet guard) exists for IPv4 only.
fn jumps(nat: &mut Table, filter: &mut Table, family: IpFamily) {
    const NEW: &str = "-m conntrack --ctstate NEW ";
    let list: [(&str, &str, &str, &str, &str); 14] = [
        (
            "filter",
            KUBE_EXTERNAL_SERVICES,
            "INPUT",
            "kubernetes externally-visible service portals",
            NEW,
        ),
        (
            "filter",
            KUBE_EXTERNAL_SERVICES,
            "FORWARD",
            "kubernetes externally-visible service portals",
            NEW,
        ),
        (
            "filter",
            KUBE_NODEPORTS,
            "INPUT",
            "kubernetes health check service ports",
            "",
        ),
        (
            "filter",
            KUBE_SERVICES,
            "FORWARD",
            "kubernetes service portals",
            NEW,
        ),
        (
            "filter",
            KUBE_SERVICES,
            "OUTPUT",
            "kubernetes service portals",
            NEW,
        ),
        (
            "filter",
            KUBE_FORWARD,
            "FORWARD",
            "kubernetes forwarding rules",
            "",
        ),
        (
            "filter",
            KUBE_PROXY_FIREWALL,
            "INPUT",
            "kubernetes load balancer firewall",
            NEW,
        ),
        (
            "filter",
            KUBE_PROXY_FIREWALL,
            "OUTPUT",
            "kubernetes load balancer firewall",
            NEW,
        ),
        (
            "filter",
            KUBE_PROXY_FIREWALL,
            "FORWARD",
            "kubernetes load balancer firewall",
            NEW,
        ),
        (
            "nat",
            KUBE_SERVICES,
            "OUTPUT",
            "kubernetes service portals",
            "",
        ),
        (
            "nat",
            KUBE_SERVICES,
            "PREROUTING",
            "kubernetes service portals",
            "",
        ),
        (
            "nat",
            KUBE_POSTROUTING,
            "POSTROUTING",
            "kubernetes postrouting rules",
            "",
        ),
        ("filter", KUBE_FIREWALL, "INPUT", "", ""),
        ("filter", KUBE_FIREWALL, "OUTPUT", "", ""),
    ];
    for (table, dst, src, comment, extra) in list {
        if dst == KUBE_FIREWALL && family == IpFamily::V6 {
            continue;
        }
        let comment = if comment.is_empty() {
            String::new()
        } else {
            format!("-m comment --comment \"{comment}\" ")
        };
        let t = if table == "nat" {
            &mut *nat
        } else {
            &mut *filter
        };
        t.chain(dst);
        t.prepend_jump(src, format!("{extra}{comment}-j {dst}"));
    }
}

/// Everything `syncProxyRules` writes outside the per-service loop, before it.
fn prologue(c: &ProxyConfig, family: IpFamily, nat: &mut Table, filter: &mut Table) {
    for ch in [
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_NODEPORTS,
        KUBE_PROXY_FIREWALL,
    ] {
        filter.chain(ch);
    }
    for ch in [
        KUBE_SERVICES,
        KUBE_NODEPORTS,
        KUBE_POSTROUTING,
        KUBE_MARK_MASQ,
    ] {
        nat.chain(ch);
    }
    let m = format!("{MASQ_MARK:#x}");
    nat.rule(
        KUBE_POSTROUTING,
        format!("-m mark ! --mark {m}/{m} -j RETURN"),
    );
    nat.rule(KUBE_POSTROUTING, format!("-j MARK --xor-mark {m}"));
    if c.masquerade_enabled {
        let fully = if c.masquerade_random_fully {
            " --random-fully"
        } else {
            ""
        };
        nat.rule(
            KUBE_POSTROUTING,
            format!("-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{fully}"),
        );
    } else {
        nat.rule(
            KUBE_POSTROUTING,
            "-m comment --comment \"lab what-if: masquerade disabled\" -j RETURN".into(),
        );
    }
    nat.rule(KUBE_MARK_MASQ, format!("-j MARK --or-mark {m}"));
    // proxier.go: `if !isIPv6 && proxier.localhostNodePorts`.
    if family == IpFamily::V4 && c.localhost_node_ports_effective() {
        filter.chain(KUBE_FIREWALL);
        filter.rule(
            KUBE_FIREWALL,
            "-m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP".into(),
        );
    }
}

/// Everything `syncProxyRules` writes after the per-service loop.
fn epilogue(c: &ProxyConfig, family: IpFamily, nat: &mut Table, filter: &mut Table) {
    let np = "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
    let ranges = c.node_port_ranges(family);
    if ranges.is_empty() {
        // "Block localhost nodePorts if they are not supported. (For IPv6 they never work,
        // and for IPv4 they only work if we previously set `route_localnet`.)"
        let lo = if family == IpFamily::V6 {
            " ! -d ::1/128"
        } else if c.localhost_node_ports_effective() {
            ""
        } else {
            " ! -d 127.0.0.0/8"
        };
        nat.rule(
            KUBE_SERVICES,
            format!("{np} -m addrtype --dst-type LOCAL{lo} -j {KUBE_NODEPORTS}"),
        );
    } else {
        let lo_ok = family == IpFamily::V4 && c.localhost_node_ports_effective();
        let mut ips: Vec<IpAddr> = c
            .node_addresses
            .iter()
            .copied()
            .filter(|ip| ranges.iter().any(|n| n.contains(ip)))
            .collect();
        if lo_ok {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        for ip in ips {
            nat.rule(KUBE_SERVICES, format!("{np} -d {ip} -j {KUBE_NODEPORTS}"));
        }
    }
    let m = format!("{MASQ_MARK:#x}");
    if !c.conntrack_tcp_be_liberal {
        filter.rule(
            KUBE_FORWARD,
            "-m conntrack --ctstate INVALID -j DROP".into(),
        );
    }
    filter.rule(
        KUBE_FORWARD,
        format!(
            "-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {m}/{m} -j ACCEPT"
        ),
    );
    filter.rule(
        KUBE_FORWARD,
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".into(),
    );
}

/// One service port's view: names, endpoints and which chains exist (syncProxyRules' locals).
struct PortView<'a> {
    svc: &'a Service,
    sp: &'a ServicePort,
    spn: String,
    proto: &'static str,
    family: IpFamily,
    cluster_ip: IpAddr,
    /// The Service's external IPs, LB IPs and source ranges of this family (kube-proxy's
    /// per-family `newBaseServiceInfo` filters them).
    external_ips: Vec<IpAddr>,
    lb_ips: Vec<IpAddr>,
    lb_ranges: Vec<ipnet::IpNet>,
    svc_chain: String,
    svl_chain: String,
    ext_chain: String,
    fw_chain: String,
    eps: Vec<(Endpoint, SocketAddr, String)>,
    cluster: Vec<usize>,
    local: Vec<usize>,
    has_endpoints: bool,
}

impl<'a> PortView<'a> {
    fn new(
        c: &ProxyConfig,
        svc: &'a Service,
        sp: &'a ServicePort,
        cluster_ip: IpAddr,
        slices: &[EndpointSlice],
    ) -> Self {
        let spn = service_port_name(&svc.namespace, &svc.name, &sp.name);
        let proto = sp.protocol.as_lower();
        let hash = port_proto_hash(&spn, proto);
        let found = topology::port_endpoints(slices, &svc.service_ref(), sp);
        let endpoints: Vec<Endpoint> = found.iter().map(|(e, _)| e.clone()).collect();
        let cat = topology::categorize(&endpoints, &c.node_name);
        let itp_local = svc.internal_traffic_policy == TrafficPolicy::Local;
        // UsesClusterEndpoints / UsesLocalEndpoints (pkg/proxy/serviceport.go).
        let uses_cluster = !itp_local || svc.externally_accessible();
        let uses_local = itp_local || svc.external_policy_local();
        let eps = found
            .into_iter()
            .map(|(e, a)| {
                let sep = crate::chains::endpoint_chain_name(&spn, proto, &a.to_string());
                (e, a, sep)
            })
            .collect();
        let family = IpFamily::of(cluster_ip);
        PortView {
            svc,
            sp,
            proto,
            family,
            cluster_ip,
            external_ips: addrs_of(&svc.external_ips, family),
            lb_ips: addrs_of(&svc.load_balancer_ips, family),
            lb_ranges: nets_of(&svc.load_balancer_source_ranges, family),
            svc_chain: format!("KUBE-SVC-{hash}"),
            svl_chain: format!("KUBE-SVL-{hash}"),
            ext_chain: format!("KUBE-EXT-{hash}"),
            fw_chain: format!("KUBE-FW-{hash}"),
            eps,
            cluster: if uses_cluster {
                cat.cluster
            } else {
                Vec::new()
            },
            local: if uses_local { cat.local } else { Vec::new() },
            has_endpoints: cat.has_any,
            spn,
        }
    }

    /// `-m comment --comment <comment> -m tcp -p tcp -d <ip> --dport <port>` (`comment`
    /// already quoted).
    fn dst_match(&self, comment: &str, ip: IpAddr) -> String {
        let (p, port) = (self.proto, self.sp.port);
        format!("-m comment --comment {comment} -m {p} -p {p} -d {ip} --dport {port}")
    }

    /// [`PortView::dst_match`] with the comment `"<spn> <what>"`.
    fn frontend(&self, what: &str, ip: IpAddr) -> String {
        self.dst_match(&format!("\"{} {what}\"", self.spn), ip)
    }
}

/// syncProxyRules' per-port decisions: which chains receive internal/external traffic and
/// what the filter table does when they have no endpoints.
struct Policy<'v> {
    internal_chain: &'v str,
    has_internal: bool,
    external_policy_chain: &'v str,
    has_external: bool,
    uses_ext: bool,
    uses_fw: bool,
    /// `"<spn> has no endpoints"` (REJECT) or `"<spn> has no local endpoints"` (DROP).
    filter_comment: String,
    filter_target: &'static str,
}

impl<'v> Policy<'v> {
    fn of(v: &'v PortView) -> Self {
        let svc = v.svc;
        let itp_local = svc.internal_traffic_policy == TrafficPolicy::Local;
        let etp_local = svc.external_policy_local();
        let pick = |local: bool| if local { &v.svl_chain } else { &v.svc_chain };
        let (filter_comment, filter_target) = if v.has_endpoints {
            (format!("\"{} has no local endpoints\"", v.spn), "DROP")
        } else {
            (format!("\"{} has no endpoints\"", v.spn), "REJECT")
        };
        Policy {
            internal_chain: pick(itp_local),
            has_internal: v.has_endpoints && !(itp_local && v.local.is_empty()),
            external_policy_chain: pick(etp_local),
            has_external: v.has_endpoints && !(etp_local && v.local.is_empty()),
            uses_ext: v.has_endpoints && svc.externally_accessible(),
            uses_fw: v.has_endpoints && !v.lb_ips.is_empty() && !v.lb_ranges.is_empty(),
            filter_comment,
            filter_target,
        }
    }

    /// The filter rule for `ip:port` without (local) endpoints, in `chain`.
    fn filter_rule(&self, v: &PortView, chain: &str, ip: IpAddr, filter: &mut Table) {
        let m = v.dst_match(&self.filter_comment, ip);
        filter.rule(chain, format!("{m} -j {}", self.filter_target));
    }
}

/// The frontends of one service port: the KUBE-SERVICES / KUBE-NODEPORTS jumps and the
/// filter-table REJECT/DROP/ACCEPT rules (the first half of syncProxyRules' service loop).
fn frontend_rules(v: &PortView, pol: &Policy, nat: &mut Table, filter: &mut Table) {
    let svc = v.svc;
    let (p, spn) = (v.proto, v.spn.as_str());
    if pol.has_internal {
        let m = v.frontend("cluster IP", v.cluster_ip);
        nat.rule(KUBE_SERVICES, format!("{m} -j {}", pol.internal_chain));
    } else {
        pol.filter_rule(v, KUBE_SERVICES, v.cluster_ip, filter);
    }
    for ip in &v.external_ips {
        if v.has_endpoints {
            let m = v.frontend("external IP", *ip);
            nat.rule(KUBE_SERVICES, format!("{m} -j {}", v.ext_chain));
        }
        if !pol.has_external {
            pol.filter_rule(v, KUBE_EXTERNAL_SERVICES, *ip, filter);
        }
    }
    let lb_chain = if pol.uses_fw {
        &v.fw_chain
    } else {
        &v.ext_chain
    };
    for ip in &v.lb_ips {
        if v.has_endpoints {
            let m = v.frontend("loadbalancer IP", *ip);
            nat.rule(KUBE_SERVICES, format!("{m} -j {lb_chain}"));
        }
        if pol.uses_fw {
            let comment = format!("\"{spn} traffic not accepted by {}\"", v.fw_chain);
            let m = v.dst_match(&comment, *ip);
            filter.rule(KUBE_PROXY_FIREWALL, format!("{m} -j DROP"));
        }
    }
    if !pol.has_external {
        for ip in &v.lb_ips {
            pol.filter_rule(v, KUBE_EXTERNAL_SERVICES, *ip, filter);
        }
    }
    let node_port =
        v.sp.node_port
            .filter(|_| matches!(svc.type_, ServiceType::NodePort | ServiceType::LoadBalancer));
    if let Some(np) = node_port {
        if v.has_endpoints {
            let ext = &v.ext_chain;
            nat.rule(
                KUBE_NODEPORTS,
                format!("-m comment --comment {spn} -m {p} -p {p} --dport {np} -j {ext}"),
            );
        }
        if !pol.has_external {
            let (comment, target) = (&pol.filter_comment, pol.filter_target);
            filter.rule(
                KUBE_EXTERNAL_SERVICES,
                format!("-m comment --comment {comment} -m addrtype --dst-type LOCAL -m {p} -p {p} --dport {np} -j {target}"),
            );
        }
    }
    if let Some(hc) = svc
        .health_check_node_port
        .filter(|_| svc.needs_health_check())
    {
        filter.rule(
            KUBE_NODEPORTS,
            format!("-m comment --comment \"{spn} health check node port\" -m tcp -p tcp --dport {hc} -j ACCEPT"),
        );
    }
}

/// One service port (the body of syncProxyRules' service loop): frontends, then the
/// KUBE-SVC/SVL/EXT/FW/SEP chains.
fn service_port(c: &ProxyConfig, v: &PortView, nat: &mut Table, filter: &mut Table) {
    let pol = Policy::of(v);
    frontend_rules(v, &pol, nat, filter);
    if pol.has_internal {
        let args = v.frontend("cluster IP", v.cluster_ip);
        if c.masquerade_all {
            nat.rule(pol.internal_chain, format!("{args} -j {KUBE_MARK_MASQ}"));
        } else if let Some(cidr) = c.cluster_cidr(v.family) {
            nat.rule(
                pol.internal_chain,
                format!("{args} ! -s {cidr} -j {KUBE_MARK_MASQ}"),
            );
        }
    }
    if pol.uses_ext {
        external_chain(c, v, pol.external_policy_chain, pol.has_external, nat);
    }
    if pol.uses_fw {
        firewall_chain(c, v, nat);
    }
    if !v.cluster.is_empty() {
        nat.chain(&v.svc_chain);
        endpoint_rules(v, &v.svc_chain, &v.cluster, nat);
    }
    if !v.local.is_empty() {
        nat.chain(&v.svl_chain);
        endpoint_rules(v, &v.svl_chain, &v.local, nat);
    }
    sep_chains(v, nat);
}

/// KUBE-EXT-<hash>: masquerade or short-circuit, then the external policy chain.
fn external_chain(
    c: &ProxyConfig,
    v: &PortView,
    policy_chain: &str,
    has_external: bool,
    nat: &mut Table,
) {
    let (ext, spn) = (&v.ext_chain, &v.spn);
    nat.chain(ext);
    if !v.svc.external_policy_local() {
        nat.rule(
            ext,
            format!("-m comment --comment \"masquerade traffic for {spn} external destinations\" -j {KUBE_MARK_MASQ}"),
        );
    } else {
        if let Some(cidr) = c.cluster_cidr(v.family) {
            nat.rule(
                ext,
                format!("-m comment --comment \"pod traffic for {spn} external destinations\" -s {cidr} -j {}", v.svc_chain),
            );
        }
        nat.rule(
            ext,
            format!("-m comment --comment \"masquerade LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"),
        );
        nat.rule(
            ext,
            format!("-m comment --comment \"route LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {}", v.svc_chain),
        );
    }
    if has_external {
        nat.rule(ext, format!("-j {policy_chain}"));
    }
}

/// KUBE-FW-<hash> (loadBalancerSourceRanges): allowed sources jump to KUBE-EXT; the rest
/// fall off the chain un-DNATed and KUBE-PROXY-FIREWALL drops them.
fn firewall_chain(c: &ProxyConfig, v: &PortView, nat: &mut Table) {
    let (fw, spn) = (&v.fw_chain, &v.spn);
    nat.chain(fw);
    let args = format!("-m comment --comment \"{spn} loadbalancer IP\"");
    let node_ip = c.node_address(v.family);
    let mut allow_from_node = false;
    for cidr in &v.lb_ranges {
        nat.rule(fw, format!("{args} -s {cidr} -j {}", v.ext_chain));
        allow_from_node |= node_ip.is_some_and(|ip| cidr.contains(&ip));
    }
    if allow_from_node {
        for ip in &v.lb_ips {
            nat.rule(fw, format!("{args} -s {ip} -j {}", v.ext_chain));
        }
    }
    nat.rule(
        fw,
        format!("-m comment --comment \"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL\""),
    );
}

/// `writeServiceToEndpointRules`: affinity checks first, then the probability ladder.
fn endpoint_rules(v: &PortView, chain: &str, pool: &[usize], nat: &mut Table) {
    if let SessionAffinity::ClientIp { timeout } = v.svc.session_affinity {
        for &i in pool {
            let (_, addr, sep) = &v.eps[i];
            nat.rule(
                chain,
                format!(
                    "-m comment --comment \"{} -> {addr}\" -m recent --name {sep} --rcheck --seconds {} --reap -j {sep}",
                    v.spn,
                    timeout.as_secs()
                ),
            );
        }
    }
    let n = pool.len();
    for (k, &i) in pool.iter().enumerate() {
        let (_, addr, sep) = &v.eps[i];
        let stat = if k + 1 < n {
            format!(
                " -m statistic --mode random --probability {}",
                probability(n - k)
            )
        } else {
            String::new()
        };
        nat.rule(
            chain,
            format!(
                "-m comment --comment \"{} -> {addr}\"{stat} -j {sep}",
                v.spn
            ),
        );
    }
}

/// KUBE-SEP-<hash> for every endpoint reachable from this node: hairpin mark, then DNAT.
fn sep_chains(v: &PortView, nat: &mut Table) {
    let mut reachable: Vec<usize> = v.cluster.iter().chain(&v.local).copied().collect();
    reachable.sort_unstable();
    reachable.dedup();
    let p = v.proto;
    for i in reachable {
        let (e, addr, sep) = &v.eps[i];
        nat.chain(sep);
        let comment = format!("-m comment --comment {}", v.spn);
        nat.rule(sep, format!("{comment} -s {} -j {KUBE_MARK_MASQ}", e.ip));
        let recent = if matches!(v.svc.session_affinity, SessionAffinity::ClientIp { .. }) {
            format!(" -m recent --name {sep} --set")
        } else {
            String::new()
        };
        nat.rule(
            sep,
            format!("{comment}{recent} -m {p} -p {p} -j DNAT --to-destination {addr}"),
        );
    }
}

/// The tables of `family`'s proxier: Services with a ClusterIP of that family, the
/// EndpointSlices whose `addressType` is that family.
fn build(
    c: &ProxyConfig,
    services: &[Service],
    slices: &[EndpointSlice],
    family: IpFamily,
) -> Tables {
    let mut nat = Table::new("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]);
    let mut filter = Table::new("filter", &["INPUT", "FORWARD", "OUTPUT"]);
    nat.v6 = family == IpFamily::V6;
    filter.v6 = nat.v6;
    prologue(c, family, &mut nat, &mut filter);
    let slices: Vec<EndpointSlice> = slices
        .iter()
        .filter(|s| s.address_type == family)
        .cloned()
        .collect();
    for svc in services {
        // Headless services (and those without this family) get no rules.
        let Some(cluster_ip) = svc.cluster_ip_of(family) else {
            continue;
        };
        for sp in &svc.ports {
            let v = PortView::new(c, svc, sp, cluster_ip, &slices);
            service_port(c, &v, &mut nat, &mut filter);
        }
    }
    epilogue(c, family, &mut nat, &mut filter);
    jumps(&mut nat, &mut filter, family);
    Tables { nat, filter }
}
