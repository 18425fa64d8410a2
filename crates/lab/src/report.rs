//! Output: kubectl-like tables of a [`Cluster`], and the results of a scenario run
//! ([`ScenarioResult`]) as human text ([`print_human`]) or one JSON document ([`to_json`]).
//!
//! Owns the result types the runner fills in and every byte the user sees; computes nothing
//! about packets.

use std::fmt;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{json, Value};

use cluster::Cluster;

/// Which workloads ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Embedded,
    Real,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Real => "real",
        }
    }
}

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// An HTTP response arrived (any status).
    Ok,
    /// No answer within the connect/overall timeout (curl exit 28).
    Timeout,
    /// RST or ICMP port unreachable to the SYN (curl exit 7).
    Refused,
    /// The connection was reset after it was established (curl exit 56).
    Reset,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
        }
    }
}

/// One request of the traffic plan (a `count: N` step gives N of these, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestResult {
    /// Client name (`browser`).
    pub client: String,
    pub client_ip: std::net::IpAddr,
    /// What was dialled, human form: `ydzs-master 10.151.30.11:32761`,
    /// `lb 198.51.100.10:80`, `10.96.12.34:80`.
    pub target: String,
    pub outcome: Outcome,
    /// HTTP status when `outcome` is `Ok`.
    pub status: Option<u16>,
    /// The pod that answered (its access log has the line), if any.
    pub pod: Option<String>,
    /// The client address nginx logged (`$remote_addr`), if a pod answered.
    pub logged_client_ip: Option<std::net::IpAddr>,
    /// Elapsed (virtual time in embedded mode) until the client finished.
    pub elapsed_ms: u64,
    /// curl's error line for failures, e.g.
    /// `curl: (28) Connection timed out after 10001 milliseconds` (for UDP, the client's:
    /// `udp: no answer from 10.151.30.11 port 30053 after 2000 ms`).
    pub curl_message: Option<String>,
    /// UDP requests: the answer's text (empty when none came); `None` for HTTP over TCP.
    pub reply: Option<String>,
}

/// Everything a run produced. The runner fills this in; [`print_human`] / [`to_json`] show it.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// The cluster that ran (owned copy).
    pub cluster: Cluster,
    pub mode: Mode,
    /// In plan order.
    pub requests: Vec<RequestResult>,
    /// Each deployment pod's access log in nginx `main` format (pods without lines may be
    /// omitted or given an empty list).
    pub access_logs: Vec<(String, Vec<String>)>,
    /// `--trace`: the hop-by-hop lines of the traced request.
    pub trace: Option<Vec<String>>,
    /// Conntrack tables per node (node name, entries), when collected.
    pub conntrack: Option<Vec<(String, Vec<String>)>>,
    /// LB health checking, when on: each health flip of a target and the final target
    /// states, as printable lines (human output only).
    pub lb_health: Vec<String>,
    /// `--explain`: one plain-words explanation per request, in plan order (empty when not
    /// asked for).
    pub explanations: Vec<String>,
    /// kubelet's pod events in time order (`crash:` entries, or an app that died in real
    /// mode): crash, notready, restart, ready, and each node's kube-proxy sync.
    pub events: Vec<cluster::kubelet::PodEvent>,
}

/// Requests answered by one pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodShare {
    pub pod: String,
    pub node: String,
    pub requests: u64,
    /// `requests` / requests answered by any pod (0 when none were answered).
    pub share: f64,
}

/// Per-pod counts for every deployment pod of the cluster (pods that got nothing are
/// included with 0), in the cluster's pod order.
pub fn per_pod(result: &ScenarioResult) -> Vec<PodShare> {
    let answered = result.requests.iter().filter(|r| r.pod.is_some()).count() as u64;
    // Counted once by pod name (not one scan of all requests per pod).
    let mut counts: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for pod in result.requests.iter().filter_map(|r| r.pod.as_deref()) {
        *counts.entry(pod).or_default() += 1;
    }
    result
        .cluster
        .pods
        .iter()
        .map(|p| {
            let n = counts.get(p.name.as_str()).copied().unwrap_or(0);
            PodShare {
                pod: p.name.clone(),
                node: p.node.clone(),
                requests: n,
                share: if answered == 0 {
                    0.0
                } else {
                    n as f64 / answered as f64
                },
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// tables
// ---------------------------------------------------------------------------------------

/// Left-aligned columns separated by 3 spaces, like kubectl.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i < last {
                let pad = widths[i] - c.chars().count() + 3;
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

const AGE: &str = "5m";
const NODE_AGE: &str = "10d";
const KUBE_VERSION: &str = "v1.33.0";

/// `kubectl get nodes -o wide` (the first columns).
pub fn get_nodes(c: &Cluster) -> String {
    let rows: Vec<Vec<String>> = c
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                "Ready".into(),
                n.role().into(),
                NODE_AGE.into(),
                KUBE_VERSION.into(),
                n.ip.to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"],
        &rows,
    )
}

/// `PORT(S)` of a service: `80:32761/TCP`, `443/TCP`, comma-separated.
pub fn ports_column(s: &nodeport::Service) -> String {
    s.ports
        .iter()
        .map(|p| match p.node_port {
            Some(np) => format!("{}:{}/{}", p.port, np, p.protocol),
            None => format!("{}/{}", p.port, p.protocol),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn type_name(t: nodeport::ServiceType) -> &'static str {
    match t {
        nodeport::ServiceType::ClusterIp => "ClusterIP",
        nodeport::ServiceType::NodePort => "NodePort",
        nodeport::ServiceType::LoadBalancer => "LoadBalancer",
    }
}

pub fn policy_name(p: nodeport::TrafficPolicy) -> &'static str {
    match p {
        nodeport::TrafficPolicy::Cluster => "Cluster",
        nodeport::TrafficPolicy::Local => "Local",
    }
}

fn external_ip_column(s: &nodeport::Service) -> String {
    let mut ips: Vec<String> = s.load_balancer_ips.iter().map(|i| i.to_string()).collect();
    ips.extend(s.external_ips.iter().map(|i| i.to_string()));
    if !ips.is_empty() {
        ips.join(",")
    } else if s.type_ == nodeport::ServiceType::LoadBalancer {
        "<pending>".into()
    } else {
        "<none>".into()
    }
}

fn multi_namespace(c: &Cluster) -> bool {
    c.services.iter().any(|s| s.namespace != "default")
        || c.pods.iter().any(|p| p.namespace != "default")
}

/// `kubectl get svc` (with a NAMESPACE column when not everything is in `default`).
pub fn get_svc(c: &Cluster) -> String {
    let ns = multi_namespace(c);
    let rows: Vec<Vec<String>> = c
        .services
        .iter()
        .map(|s| {
            let mut r = Vec::new();
            if ns {
                r.push(s.namespace.clone());
            }
            r.extend([
                s.name.clone(),
                type_name(s.type_).into(),
                s.cluster_ip()
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "None".into()),
                external_ip_column(s),
                ports_column(s),
                AGE.into(),
            ]);
            r
        })
        .collect();
    let mut h = vec![
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ];
    if ns {
        h.insert(0, "NAMESPACE");
    }
    table(&h, &rows)
}

/// `kubectl get pods -o wide` (deployment pods, then client pods).
pub fn get_pods_wide(c: &Cluster) -> String {
    let ns = multi_namespace(c);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for p in &c.pods {
        let mut r = Vec::new();
        if ns {
            r.push(p.namespace.clone());
        }
        r.extend([
            p.name.clone(),
            if p.ready { "1/1" } else { "0/1" }.into(),
            "Running".into(),
            p.restarts.to_string(),
            AGE.into(),
            p.ip.to_string(),
            p.node.clone(),
        ]);
        rows.push(r);
    }
    for cl in &c.clients {
        if let cluster::ClientAttach::Pod { node } = &cl.attach {
            let mut r = Vec::new();
            if ns {
                r.push("default".into());
            }
            r.extend([
                cl.name.clone(),
                "1/1".into(),
                "Running".into(),
                "0".into(),
                AGE.into(),
                cl.ip.to_string(),
                node.clone(),
            ]);
            rows.push(r);
        }
    }
    let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"];
    if ns {
        h.insert(0, "NAMESPACE");
    }
    table(&h, &rows)
}

/// Per pod: the app model of each container and where it listens.
pub fn apps_table(c: &Cluster) -> String {
    let rows: Vec<Vec<String>> = c
        .pods
        .iter()
        .map(|p| {
            let apps: Vec<String> = p.apps.iter().map(ToString::to_string).collect();
            vec![p.name.clone(), apps.join("; ")]
        })
        .collect();
    table(&["POD", "APP"], &rows)
}

/// Per service: policies, affinity, healthCheckNodePort and the endpoints (ip:port on node).
pub fn service_details(c: &Cluster) -> String {
    let rows: Vec<Vec<String>> = c
        .services
        .iter()
        .filter(|s| !(s.namespace == "default" && s.name == "kubernetes"))
        .map(|s| {
            let affinity = match s.session_affinity {
                nodeport::SessionAffinity::None => "None".to_string(),
                nodeport::SessionAffinity::ClientIp { timeout } => {
                    format!("ClientIP {}s", timeout.as_secs())
                }
            };
            let mut eps = Vec::new();
            for slice in c.slices_of(s) {
                let port = slice.ports.first().map(|p| p.port);
                for e in &slice.endpoints {
                    let at = e.node_name.as_deref().unwrap_or("?");
                    match port {
                        Some(p) => eps.push(format!("{}@{at}", std::net::SocketAddr::new(e.ip, p))),
                        None => eps.push(format!("{}@{at}", e.ip)),
                    }
                }
            }
            vec![
                format!("{}/{}", s.namespace, s.name),
                policy_name(s.external_traffic_policy).into(),
                policy_name(s.internal_traffic_policy).into(),
                affinity,
                s.health_check_node_port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                if eps.is_empty() {
                    "<none>".into()
                } else {
                    eps.join(", ")
                },
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "EXTERNAL-POLICY",
            "INTERNAL-POLICY",
            "AFFINITY",
            "HEALTH-CHECK-PORT",
            "ENDPOINTS",
        ],
        &rows,
    )
}

/// The lab around the cluster: clients and the load balancer.
pub fn lab_summary(c: &Cluster) -> String {
    let mut rows = Vec::new();
    for cl in &c.clients {
        let where_ = match &cl.attach {
            cluster::ClientAttach::External { can_reach } => {
                let lb = if c.load_balancer.is_some() {
                    " + load balancer"
                } else {
                    ""
                };
                if can_reach.is_empty() {
                    format!("external; reaches load balancer only{}", "")
                } else {
                    format!("external; reaches {}{lb}", can_reach.join(", "))
                }
            }
            cluster::ClientAttach::Pod { node } => format!("pod on {node}"),
        };
        rows.push(vec![
            "client".into(),
            cl.name.clone(),
            cl.ip.to_string(),
            where_,
        ]);
    }
    if let Some(lb) = &c.load_balancer {
        let hc = match &lb.health_check {
            Some(h) => format!(
                "; health check every {:?}, {}/{}",
                h.interval, h.healthy_threshold, h.unhealthy_threshold
            ),
            None => String::new(),
        };
        let w = if lb.weighted { "; weighted" } else { "" };
        rows.push(vec![
            "loadBalancer".into(),
            lb.name.clone(),
            lb.ip.to_string(),
            format!("→ {}{hc}{w}", lb.nodes.join(", ")),
        ]);
    }
    rows.push(vec![
        "router".into(),
        "router".into(),
        c.router_ip.to_string(),
        format!(
            "node network {}, clusterCIDR {}",
            c.node_network, c.cluster_cidr
        ),
    ]);
    table(&["KIND", "NAME", "IP", "WHERE"], &rows)
}

/// The plan in words.
pub fn plan_summary(c: &Cluster) -> String {
    let action_row = |a: &cluster::PlanAction| -> Vec<String> {
        let what = match &a.kind {
            cluster::ActionKind::Scale {
                namespace,
                deployment,
                replicas,
            } => format!("scale {namespace}/{deployment} to {replicas}"),
            cluster::ActionKind::Wait(d) => format!("wait {} s", d.as_secs_f64()),
            cluster::ActionKind::Crash(cr) => format!(
                "crash {}/{}",
                cr.namespace,
                cr.pod.as_deref().unwrap_or("?")
            ),
            cluster::ActionKind::Delete(target) => format!("delete {target} (replaced)"),
        };
        vec![
            "-".into(),
            what,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, step_row) in c
        .plan
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut to = match &s.target {
                cluster::Target::Node(n) => n.clone(),
                cluster::Target::LoadBalancer => "loadBalancer".into(),
                cluster::Target::Address(ip) => ip.to_string(),
            };
            if s.family == nodeport::IpFamily::V6
                && !matches!(s.target, cluster::Target::Address(_))
            {
                to.push_str(" (IPv6)");
            }
            let svc = match (&s.service, s.port) {
                (Some(sv), Some(p)) => format!("{sv} port {p}"),
                (Some(sv), None) => sv.clone(),
                (None, Some(p)) => format!("port {p}"),
                (None, None) => "-".into(),
            };
            vec![
                (i + 1).to_string(),
                s.client.clone(),
                to,
                svc,
                s.count.to_string(),
                // HTTP path, or what a UDP step sends (and from which port, if fixed).
                match (s.protocol, s.source_port) {
                    (nodeport::Protocol::Udp, Some(sp)) => {
                        format!("UDP {:?} from port {sp}", s.payload)
                    }
                    (nodeport::Protocol::Udp, None) => format!("UDP {:?}", s.payload),
                    _ => s.path.clone(),
                },
            ]
        })
        .enumerate()
    {
        rows.extend(c.actions.iter().filter(|a| a.before == i).map(action_row));
        rows.push(step_row);
    }
    rows.extend(
        c.actions
            .iter()
            .filter(|a| a.before >= c.plan.len())
            .map(action_row),
    );
    table(&["STEP", "FROM", "TO", "SERVICE", "COUNT", "PATH"], &rows)
}

/// How both views open: `scenario NAME (about), seed N`, the description, then the nodes
/// (as `nodes_cmd` shows them), services and pods.
fn print_overview(
    c: &Cluster,
    about: impl fmt::Display,
    nodes_cmd: &str,
    w: &mut impl Write,
) -> io::Result<()> {
    writeln!(w, "scenario {} ({about}), seed {}", c.scenario, c.seed)?;
    if !c.description.is_empty() {
        writeln!(w)?;
        for l in c.description.lines() {
            writeln!(w, "  {l}")?;
        }
    }
    writeln!(w, "\n$ {nodes_cmd}\n{}", get_nodes(c))?;
    writeln!(w, "$ kubectl get svc\n{}", get_svc(c))?;
    writeln!(w, "$ kubectl get pods -o wide\n{}", get_pods_wide(c))
}

/// The description plus every table, for `lab scenario show`.
pub fn print_cluster(c: &Cluster, w: &mut impl Write) -> io::Result<()> {
    print_overview(c, c.source.display(), "kubectl get nodes", w)?;
    writeln!(w, "service details:\n{}", service_details(c))?;
    writeln!(
        w,
        "apps (from each container's image and args):\n{}",
        apps_table(c)
    )?;
    for warning in cluster::apps::port_warnings(c) {
        writeln!(w, "warning: {warning}")?;
    }
    writeln!(w, "lab:\n{}", lab_summary(c))?;
    if let Some(t) = ipv6_summary(c) {
        writeln!(w, "ipv6 (dual-stack lab):\n{t}")?;
        writeln!(w, "ip families:\n{}", families_table(c))?;
    }
    if !c.plan.is_empty() {
        writeln!(w, "plan:\n{}", plan_summary(c))?;
    }
    Ok(())
}

/// The IPv6 half of a dual-stack lab: node, pod, client, LB and router addresses (`None` in
/// an IPv4-only lab, whose `scenario show` stays as it was).
pub fn ipv6_summary(c: &Cluster) -> Option<String> {
    let cidr = c.cluster_cidr_v6?;
    let opt = |a: Option<std::net::Ipv6Addr>| a.map_or_else(|| "<none>".into(), |a| a.to_string());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for n in &c.nodes {
        let pods = n
            .pod_cidr_v6
            .map_or_else(|| "no IPv6 pods".into(), |p| format!("podCIDR {p}"));
        rows.push(vec!["node".into(), n.name.clone(), opt(n.ipv6), pods]);
    }
    for p in &c.pods {
        rows.push(vec![
            "pod".into(),
            p.name.clone(),
            opt(p.ipv6),
            format!("on {}", p.node),
        ]);
    }
    for cl in &c.clients {
        rows.push(vec![
            "client".into(),
            cl.name.clone(),
            opt(cl.ipv6),
            String::new(),
        ]);
    }
    if let Some(lb) = &c.load_balancer {
        rows.push(vec![
            "loadBalancer".into(),
            lb.name.clone(),
            opt(lb.ipv6),
            String::new(),
        ]);
    }
    let net = c
        .node_network_v6
        .map_or_else(|| "<none>".into(), |n| n.to_string());
    rows.push(vec![
        "router".into(),
        "router".into(),
        opt(c.router_ipv6),
        format!("node network {net}, clusterCIDR {cidr}"),
    ]);
    Some(table(&["KIND", "NAME", "IPV6", "WHERE"], &rows))
}

/// Per Service: `ipFamilyPolicy`, `ipFamilies` and `clusterIPs` (as `kubectl get svc -o
/// yaml` has them).
pub fn families_table(c: &Cluster) -> String {
    let rows: Vec<Vec<String>> = c
        .services
        .iter()
        .map(|s| {
            let fams: Vec<&str> = s.ip_families.iter().map(|f| f.as_str()).collect();
            let ips: Vec<String> = s.cluster_ips.iter().map(ToString::to_string).collect();
            vec![
                format!("{}/{}", s.namespace, s.name),
                s.ip_family_policy.as_str().into(),
                fams.join(","),
                ips.join(","),
            ]
        })
        .collect();
    table(
        &["SERVICE", "IP-FAMILY-POLICY", "IP-FAMILIES", "CLUSTER-IPS"],
        &rows,
    )
}

fn elapsed(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn outcome_cell(r: &RequestResult) -> String {
    match (r.outcome, r.status) {
        (Outcome::Ok, Some(s)) => format!("ok {s}"),
        (Outcome::Ok, None) if r.reply.is_some() => {
            format!("ok {:?}", r.reply.as_deref().unwrap_or_default().trim_end())
        }
        (o, _) => o.as_str().to_string(),
    }
}

/// Above this many requests the request table is grouped (identical rows counted).
pub const REQUEST_ROWS_MAX: usize = 20;
/// Access log lines shown per pod in human output.
pub const LOG_LINES_MAX: usize = 5;

/// Human-readable result: cluster tables, requests, access logs, per-pod shares, trace and
/// conntrack.
pub fn print_human(r: &ScenarioResult, w: &mut impl Write) -> io::Result<()> {
    let c = &r.cluster;
    let mode = format!("{} mode", r.mode.as_str());
    print_overview(c, mode, "kubectl get nodes -o wide", w)?;
    writeln!(w, "requests:")?;
    if r.requests.len() <= REQUEST_ROWS_MAX {
        print_request_rows(&r.requests, w)?;
    } else {
        print_request_groups(&r.requests, w)?;
    }
    print_access_logs(r, w)?;
    if r.requests.len() > 1 {
        print_shares(r, w)?;
    }
    print_diagnostics(r, w)
}

fn dash(o: &Option<String>) -> String {
    o.clone().unwrap_or_else(|| "-".into())
}

fn ip_or_dash(o: &Option<std::net::IpAddr>) -> String {
    o.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
}

/// One row per request.
fn print_request_rows(requests: &[RequestResult], w: &mut impl Write) -> io::Result<()> {
    let rows: Vec<Vec<String>> = requests
        .iter()
        .enumerate()
        .map(|(i, q)| {
            vec![
                (i + 1).to_string(),
                format!("{} {}", q.client, q.client_ip),
                q.target.clone(),
                outcome_cell(q),
                dash(&q.pod),
                ip_or_dash(&q.logged_client_ip),
                elapsed(q.elapsed_ms),
                q.curl_message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let headers = [
        "#",
        "CLIENT",
        "TARGET",
        "OUTCOME",
        "POD",
        "NGINX LOGGED",
        "TIME",
        "CURL",
    ];
    write!(w, "{}", table(&headers, &rows))
}

/// Identical (client, target, outcome, pod, logged ip) rows counted, with their average
/// time, and the first failure's curl message.
fn print_request_groups(requests: &[RequestResult], w: &mut impl Write) -> io::Result<()> {
    let mut groups: Vec<(Vec<String>, u64, u64)> = Vec::new();
    for q in requests {
        let key = vec![
            format!("{} {}", q.client, q.client_ip),
            q.target.clone(),
            outcome_cell(q),
            dash(&q.pod),
            ip_or_dash(&q.logged_client_ip),
        ];
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, n, t)) => {
                *n += 1;
                *t += q.elapsed_ms;
            }
            None => groups.push((key, 1, q.elapsed_ms)),
        }
    }
    let rows: Vec<Vec<String>> = groups
        .into_iter()
        .map(|(mut k, n, t)| {
            k.insert(0, n.to_string());
            k.push(elapsed(t / n));
            k
        })
        .collect();
    let headers = [
        "COUNT",
        "CLIENT",
        "TARGET",
        "OUTCOME",
        "POD",
        "NGINX LOGGED",
        "AVG TIME",
    ];
    write!(w, "{}", table(&headers, &rows))?;
    let failures: Vec<&String> = requests
        .iter()
        .filter_map(|q| q.curl_message.as_ref())
        .collect();
    if let Some(first) = failures.first() {
        writeln!(w, "({} failed; first: {first})", failures.len())?;
    }
    Ok(())
}

/// Each pod's access log, at most [`LOG_LINES_MAX`] lines.
fn print_access_logs(r: &ScenarioResult, w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "\naccess logs:")?;
    for (pod, lines) in &r.access_logs {
        let node = r
            .cluster
            .pod(pod)
            .map(|p| format!(" ({} on {})", p.ip, p.node))
            .unwrap_or_default();
        writeln!(w, "==> {pod}{node} <==")?;
        if lines.is_empty() {
            writeln!(w, "  (no requests)")?;
        }
        for l in lines.iter().take(LOG_LINES_MAX) {
            writeln!(w, "  {l}")?;
        }
        if lines.len() > LOG_LINES_MAX {
            writeln!(w, "  … {} more lines", lines.len() - LOG_LINES_MAX)?;
        }
    }
    Ok(())
}

/// Requests per pod and their share of the answered ones.
fn print_shares(r: &ScenarioResult, w: &mut impl Write) -> io::Result<()> {
    let shares = per_pod(r);
    let answered: u64 = shares.iter().map(|s| s.requests).sum();
    writeln!(
        w,
        "\nper pod ({answered} of {} requests answered):",
        r.requests.len()
    )?;
    let rows: Vec<Vec<String>> = shares
        .iter()
        .map(|s| {
            vec![
                s.pod.clone(),
                s.node.clone(),
                s.requests.to_string(),
                format!("{:.1} %", s.share * 100.0),
            ]
        })
        .collect();
    write!(w, "{}", table(&["POD", "NODE", "REQUESTS", "SHARE"], &rows))
}

/// LB health checks, the trace and the conntrack tables, when the run collected them.
fn print_diagnostics(r: &ScenarioResult, w: &mut impl Write) -> io::Result<()> {
    if !r.events.is_empty() {
        writeln!(w, "\npod events (run time, kind, pod, node):")?;
        for e in &r.events {
            writeln!(w, "  {e}")?;
        }
    }
    if !r.lb_health.is_empty() {
        writeln!(w, "\nload balancer health checks:")?;
        for l in &r.lb_health {
            writeln!(w, "  {l}")?;
        }
    }
    if !r.explanations.is_empty() {
        writeln!(w, "\nexplanations:")?;
        for (i, e) in r.explanations.iter().enumerate() {
            writeln!(w, "  #{}: {e}", i + 1)?;
        }
    }
    if let Some(trace) = &r.trace {
        writeln!(w, "\ntrace:")?;
        for l in trace {
            writeln!(w, "{l}")?;
        }
    }
    if let Some(ct) = &r.conntrack {
        writeln!(w, "\nconntrack:")?;
        for (node, entries) in ct {
            writeln!(w, "{node}:")?;
            for e in entries {
                writeln!(w, "  {e}")?;
            }
        }
    }
    Ok(())
}

/// `nodes`, `services` and `pods` of the JSON document. IPv6 fields appear only where
/// there is something IPv6 (a node's or pod's IPv6 address, a Service with an IPv6 family),
/// so an IPv4-only lab's document is unchanged.
pub fn cluster_json(c: &Cluster) -> Value {
    json!({
        "nodes": c.nodes.iter().map(|n| {
            let mut v = json!({
                "name": n.name, "ip": n.ip.to_string(), "pod_cidr": n.pod_cidr.to_string(),
            });
            put(&mut v, "ipv6", n.ipv6.map(|a| a.to_string()));
            put(&mut v, "pod_cidr_v6", n.pod_cidr_v6.map(|a| a.to_string()));
            v
        }).collect::<Vec<_>>(),
        "services": c.services.iter().map(service_json).collect::<Vec<_>>(),
        "pods": c.pods.iter().map(|p| {
            let mut v = json!({
                "name": p.name, "ip": p.ip.to_string(), "node": p.node, "restarts": p.restarts,
                "apps": p.apps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            put(&mut v, "ipv6", p.ipv6.map(|a| a.to_string()));
            v
        }).collect::<Vec<_>>(),
        "warnings": cluster::apps::port_warnings(c),
    })
}

/// One Service of [`cluster_json`]: `cluster_ips`, `ip_families` and `ip_family_policy`
/// only when the Service has an IPv6 family.
fn service_json(s: &nodeport::Service) -> Value {
    let mut v = json!({
        "namespace": s.namespace,
        "name": s.name,
        "type": type_name(s.type_),
        "cluster_ip": s.cluster_ip().map(|i| i.to_string()),
        "external_traffic_policy": policy_name(s.external_traffic_policy),
        "ports": s.ports.iter().map(|p| json!({
            "port": p.port, "target_port": p.target_port, "node_port": p.node_port,
            "protocol": p.protocol.to_string(),
        })).collect::<Vec<_>>(),
    });
    if s.ip_families.contains(&nodeport::IpFamily::V6) {
        let ips: Vec<String> = s.cluster_ips.iter().map(ToString::to_string).collect();
        let fams: Vec<&str> = s.ip_families.iter().map(|f| f.as_str()).collect();
        put(&mut v, "cluster_ips", Some(json!(ips)));
        put(&mut v, "ip_families", Some(json!(fams)));
        put(
            &mut v,
            "ip_family_policy",
            Some(s.ip_family_policy.as_str()),
        );
    }
    v
}

/// Adds `key` to the object `v` when `value` is `Some`.
fn put(v: &mut Value, key: &str, value: Option<impl Into<Value>>) {
    if let (Some(obj), Some(x)) = (v.as_object_mut(), value) {
        obj.insert(key.to_string(), x.into());
    }
}

/// `events[]`: `{time (seconds of run time), kind, pod, node}`.
pub fn events_json(events: &[cluster::kubelet::PodEvent]) -> Value {
    events
        .iter()
        .map(|e| {
            json!({
                "time": e.at.as_secs_f64(), "kind": e.kind.as_str(), "pod": e.pod, "node": e.node,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

/// One request in the `--json` schema. Fields in name order: [`JsonDoc`] is written
/// straight to the output in field order and must match what a [`Value`] (sorted keys)
/// prints.
#[derive(Serialize)]
struct RequestJson<'a> {
    client: &'a str,
    client_ip: std::net::IpAddr,
    elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a str>,
    logged_client_ip: Option<std::net::IpAddr>,
    outcome: &'static str,
    pod: Option<&'a str>,
    /// UDP requests also carry the answer's text (TCP requests' JSON has no such field).
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a str>,
    target: &'a str,
}

impl<'a> RequestJson<'a> {
    fn new(q: &'a RequestResult, explanation: Option<&'a str>) -> Self {
        RequestJson {
            client: &q.client,
            client_ip: q.client_ip,
            elapsed_ms: q.elapsed_ms,
            explanation,
            logged_client_ip: q.logged_client_ip,
            outcome: q.outcome.as_str(),
            pod: q.pod.as_deref(),
            reply: q.reply.as_deref(),
            target: &q.target,
        }
    }
}

/// One request in the `--json` schema.
pub fn request_json(q: &RequestResult) -> Value {
    serde_json::to_value(RequestJson::new(q, None)).unwrap_or(Value::Null)
}

/// The requests of a result with their explanations, serialized one by one (no
/// intermediate [`Value`] per request: 30 000 of them cost more than the simulation's
/// slowest stage).
struct RequestsJson<'a>(&'a ScenarioResult);

impl Serialize for RequestsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        ser.collect_seq(
            r.requests
                .iter()
                .enumerate()
                .map(|(i, q)| RequestJson::new(q, r.explanations.get(i).map(String::as_str))),
        )
    }
}

/// The one JSON document of `--json`:
/// `{scenario, mode, nodes, services, pods, warnings, requests, per_pod, events}` (field
/// names are stable), in name order so that writing it ([`write_json`]) prints what [`to_json`]'s sorted
/// [`Value`] prints.
#[derive(Serialize)]
struct JsonDoc<'a> {
    events: Value,
    mode: &'static str,
    nodes: Value,
    per_pod: Value,
    pods: Value,
    requests: RequestsJson<'a>,
    scenario: &'a str,
    services: Value,
    warnings: Value,
}

impl<'a> JsonDoc<'a> {
    fn new(r: &'a ScenarioResult) -> Self {
        let mut c = cluster_json(&r.cluster);
        let mut take = |k: &str| c.get_mut(k).map(Value::take).unwrap_or(Value::Null);
        JsonDoc {
            events: events_json(&r.events),
            mode: r.mode.as_str(),
            nodes: take("nodes"),
            per_pod: per_pod(r)
                .iter()
                .map(|s| json!({"pod": s.pod, "node": s.node, "requests": s.requests, "share": s.share}))
                .collect(),
            pods: take("pods"),
            requests: RequestsJson(r),
            scenario: &r.cluster.scenario,
            services: take("services"),
            warnings: take("warnings"),
        }
    }
}

/// The one JSON document of `--json`:
/// `{scenario, mode, nodes, services, pods, warnings, requests, per_pod, events}` (field
/// names are stable; `pods[].apps`, `pods[].restarts`, `warnings` and `events` came with
/// issue 8).
pub fn to_json(r: &ScenarioResult) -> Value {
    serde_json::to_value(JsonDoc::new(r)).unwrap_or(Value::Null)
}

/// [`to_json`] pretty-printed to `out` as it is serialized, and a newline: the same bytes
/// as `to_string_pretty(&to_json(r))`, without building the document first.
pub fn write_json(r: &ScenarioResult, out: &mut impl Write) -> io::Result<()> {
    let mut w = io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer_pretty(&mut w, &JsonDoc::new(r))?;
    w.write_all(b"\n")?;
    w.flush()
}
