//! `lab rules`: the generated `iptables-save` text against the lab's own traces and against
//! the Linux kernel's iptables.
//!
//! - `traced_chains_exist_in_the_rules`: every chain a `--trace` walk prints on a node is a
//!   chain of that node's rules (every shipped scenario; request 1, and the first request of
//!   every plan entry where the plan is small).
//! - `iptables_restore_accepts_the_rules` (root): in a scratch namespace `nplab-tr-<pid>`,
//!   `iptables-restore --test` accepts every node's text of every shipped scenario, and a
//!   real `iptables-restore` + `iptables-save` gives back the same chains and rules (so the
//!   text is what `iptables-save` prints, not merely loadable). Skips with a reason when not
//!   root; fails instead under CI=true.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use lab::runner::{self, RunOptions};
use lab::{load_cluster, rules};

fn scenarios() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::configs_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "lab-configs/ not found");
    v
}

/// Chains declared in one node's text (`:NAME …` lines), per table.
fn declared(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// `KUBE-…` names in a trace's `nat:`/`filter:` walk lines, with the node whose event they
/// belong to (the second word of the event line above them).
fn traced_chains(lines: &[String], nodes: &[String]) -> Vec<(String, String)> {
    let mut node: Option<String> = None;
    let mut out = Vec::new();
    for l in lines.iter().flat_map(|e| e.lines()) {
        let t = l.trim_start();
        if t.starts_with("nat:") || t.starts_with("filter:") {
            let Some(n) = &node else { continue };
            for w in t.split(|c: char| c.is_whitespace()) {
                if w.starts_with("KUBE-") {
                    out.push((n.clone(), w.to_string()));
                }
            }
        } else if l.len() - t.len() < 6 {
            node = t
                .split_whitespace()
                .nth(1)
                .filter(|w| nodes.iter().any(|n| n == w))
                .map(String::from);
        }
    }
    out
}

#[test]
fn traced_chains_exist_in_the_rules() {
    let mut checked = 0;
    for path in scenarios() {
        let cluster = load_cluster(&path, None).unwrap();
        let nodes = rules::node_names(&cluster);
        let per_node: BTreeMap<String, BTreeSet<String>> = nodes
            .iter()
            .map(|n| {
                // Both families' rules: an IPv6 flow walks the ip6tables chains.
                let v4 = rules::node_rules(&cluster, n).unwrap();
                let v6 = rules::node_rules_v6(&cluster, n)
                    .unwrap()
                    .unwrap_or_default();
                (n.clone(), declared(&(v4 + &v6)))
            })
            .collect();
        let plan = lab::plan::expand_plan(&cluster).unwrap();
        let mut picks = vec![1];
        if plan.len() <= 60 {
            for (i, r) in plan.iter().enumerate() {
                if i == 0 || plan[i - 1].step_index != r.step_index {
                    picks.push(i + 1);
                }
            }
        }
        picks.dedup();
        // `lab rules` shows the rules the cluster starts with: requests after a `scale:` or
        // `delete:` entry meet other endpoints (other KUBE-SEP chains).
        let changed_at = cluster
            .actions
            .iter()
            .find(|a| !matches!(a.kind, cluster::ActionKind::Wait(_)))
            .map_or(usize::MAX, |a| a.before);
        picks.retain(|k| plan.get(k - 1).is_some_and(|r| r.step_index < changed_at));
        for k in picks {
            let opts = RunOptions {
                trace: Some(k),
                ..Default::default()
            };
            let result = runner::run(&cluster, &opts).unwrap();
            let lines = result.trace.unwrap_or_default();
            for (node, chain) in traced_chains(&lines, &nodes) {
                assert!(
                    per_node[&node].contains(&chain),
                    "{}: request {k}: {chain} traced on {node} but not in `lab rules {} {node}`",
                    path.display(),
                    cluster.scenario
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} traced chains checked");
}

#[test]
fn rules_text_heads_every_node_and_rejects_unknown_nodes() {
    let path = common::configs_dir().join("seed-cluster.yaml");
    let cluster = load_cluster(&path, None).unwrap();
    let all = rules::rules_text(&cluster, None).unwrap();
    for n in rules::node_names(&cluster) {
        assert!(all.contains(&format!("# node {n} (")), "no heading for {n}");
    }
    assert_eq!(all.matches("*nat\n").count(), cluster.nodes.len());
    let one = rules::rules_text(&cluster, Some("ydzs-master")).unwrap();
    assert!(one.contains("-j MASQUERADE"));
    let err = rules::rules_text(&cluster, Some("nope")).unwrap_err();
    assert!(err.to_string().contains("unknown node \"nope\""), "{err}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Deletes the scratch namespace however the test ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn in_ns(ns: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip netns exec");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// (table, chain) → rules in order; comment lines and counters ignored.
fn chains_and_rules(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut table = String::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(c) = l.strip_prefix(':') {
            let c = c.split_whitespace().next().unwrap_or_default();
            out.entry((table.clone(), c.to_string())).or_default();
        } else if let Some(r) = l.strip_prefix("-A ") {
            let c = r.split_whitespace().next().unwrap_or_default();
            out.entry((table.clone(), c.to_string()))
                .or_default()
                .push(l.to_string());
        }
    }
    out
}

#[test]
fn iptables_restore_accepts_the_rules() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: this test must run as root"
        );
        eprintln!("skipped: iptables_restore_accepts_the_rules needs root (ip netns, iptables)");
        return;
    }
    let ns = Netns(format!("nplab-tr-{}", std::process::id()));
    let status = Command::new("ip").args(["netns", "add", &ns.0]).status();
    assert!(status.is_ok_and(|s| s.success()), "ip netns add {}", ns.0);
    let mut nodes = 0;
    for path in scenarios() {
        let cluster = load_cluster(&path, None).unwrap();
        for node in rules::node_names(&cluster) {
            let text = rules::node_rules(&cluster, &node).unwrap();
            let (ok, msg) = in_ns(&ns.0, &["iptables-restore", "--test"], &text);
            assert!(
                ok,
                "{} {node}: iptables-restore --test: {msg}\n{text}",
                path.display()
            );
            let (ok, msg) = in_ns(&ns.0, &["iptables-restore"], &text);
            assert!(ok, "{} {node}: iptables-restore: {msg}", path.display());
            let (ok, saved) = in_ns(&ns.0, &["iptables-save"], "");
            assert!(ok, "iptables-save: {saved}");
            assert_eq!(
                chains_and_rules(&saved),
                chains_and_rules(&text),
                "{} {node}: iptables-save differs from `lab rules`",
                path.display()
            );
            nodes += 1;
        }
    }
    assert!(nodes >= 20, "only {nodes} node rule sets loaded");
}

fn lb_config(ranges: &str) -> String {
    let service = format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: {ranges}
  selector: {{app: web}}
  ports:
  - {{protocol: TCP, port: 80, targetPort: 80}}
"#
    );
    format!(
        r#"seed: 7
nodes:
  - {{name: n1, ip: 10.151.30.12, podCIDR: 10.244.1.0/24}}
clients:
  - {{name: users, ip: 203.0.113.20, canReach: []}}
loadBalancer: {{name: nlb, ip: 198.51.100.10, nodes: [n1]}}
{}plan:
  - {{from: users, to: loadBalancer, service: default/web, count: 1}}
"#,
        common::block(&[common::deployment("web", 1, ""), service])
    )
}

/// `spec.loadBalancerSourceRanges` from the manifest reaches the rules: KUBE-FW-<hash> with
/// the range (whitespace trimmed, as kube-proxy does), KUBE-PROXY-FIREWALL's DROP for the LB
/// IP; a bad CIDR names the field.
#[test]
fn load_balancer_source_ranges_from_the_manifest() {
    let cluster = common::load(&lb_config(r#"["203.0.113.0/25", " 10.0.0.0/8"]"#)).unwrap();
    let text = rules::node_rules(&cluster, "n1").unwrap();
    let fw = text
        .lines()
        .find(|l| l.starts_with(":KUBE-FW-"))
        .expect("a KUBE-FW chain")
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches(':')
        .to_string();
    for want in [
        format!("-A {fw} -s 203.0.113.0/25 "),
        format!("-A {fw} -s 10.0.0.0/8 "),
        // 10.0.0.0/8 holds the node IP: the LB IP is an allowed source too.
        format!("-A {fw} -s 198.51.100.10/32 "),
        format!("-A KUBE-SERVICES -d 198.51.100.10/32 -p tcp -m comment --comment \"default/web loadbalancer IP\" -m tcp --dport 80 -j {fw}"),
        format!("-A KUBE-PROXY-FIREWALL -d 198.51.100.10/32 -p tcp -m comment --comment \"default/web traffic not accepted by {fw}\""),
    ] {
        assert!(text.contains(&want), "missing {want:?}\n{text}");
    }
    let err = common::load(&lb_config(r#"["nope"]"#)).unwrap_err();
    assert!(
        err.to_string().contains("loadBalancerSourceRanges[0]"),
        "{err}"
    );
}
