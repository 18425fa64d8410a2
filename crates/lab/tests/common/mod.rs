#![allow(dead_code)]
//! Shared helpers for the lab integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use lab::{Cluster, LabError};

/// The repository's lab-configs directory.
pub fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab-configs")
}

/// The blog's cluster: tainted master + 3 workers, a browser that reaches the master.
pub const NODES: &str = r#"
nodes:
  - name: ydzs-master
    ip: 10.151.30.11
    podCIDR: 10.244.0.0/24
    labels: {node-role.kubernetes.io/control-plane: ""}
    taints:
      - {key: node-role.kubernetes.io/control-plane, effect: NoSchedule}
  - {name: ydzs-node1, ip: 10.151.30.12, podCIDR: 10.244.1.0/24}
  - {name: ydzs-node2, ip: 10.151.30.13, podCIDR: 10.244.2.0/24}
  - {name: ydzs-node3, ip: 10.151.30.14, podCIDR: 10.244.3.0/24}
clients:
  - {name: browser, ip: 203.0.113.11, canReach: [ydzs-master]}
"#;

/// A Deployment manifest (indented as a block-scalar list item).
pub fn deployment(name: &str, replicas: i32, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
{extra_spec}      containers:
      - name: nginx
        image: nginx:1.7.9
        ports:
        - containerPort: 80
          name: http
"#
    )
}

/// A ClusterIP service (does not need the NodePort allocator).
pub fn clusterip_service(name: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: {name}
{extra_spec}  ports:
  - protocol: TCP
    port: 80
    targetPort: http
"#
    )
}

/// Indent text for a `- |` block scalar under `manifests:`.
pub fn block(docs: &[String]) -> String {
    let joined = docs.join("---\n");
    let mut s = String::from("manifests:\n  - |\n");
    for l in joined.lines() {
        s.push_str("    ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

pub fn load(text: &str) -> Result<Cluster, LabError> {
    lab::load_cluster_from_str(text, &configs_dir().join("test.yaml"), None)
}

pub fn load_seed(text: &str, seed: u64) -> Result<Cluster, LabError> {
    lab::load_cluster_from_str(text, &configs_dir().join("test.yaml"), Some(seed))
}

/// Load as `lab-configs/bad.yaml` and return the error message.
pub fn error_of(text: &str) -> String {
    match lab::load_cluster_from_str(text, Path::new("lab-configs/bad.yaml"), None) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

pub fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(
            msg.contains(p),
            "error message {msg:?} should mention {p:?}"
        );
    }
}

/// Run the built `lab scenario run SCENARIO ARGS…` from the crate directory and return its
/// stdout; panics with its stderr and stdout unless it succeeds.
pub fn scenario_run(scenario: &str, args: &[&str]) -> Vec<u8> {
    let all: Vec<&str> = ["scenario", "run", scenario]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    lab_ok(Path::new(env!("CARGO_MANIFEST_DIR")), &all)
}

/// Run the built `lab ARGS…` in `dir` and return its stdout; panics with its stderr and
/// stdout unless it succeeds.
pub fn lab_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run lab");
    assert!(
        out.status.success(),
        "lab {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// For tests that need root, namespaces or programs: `true` = go on; `false` = skipped, with
/// the reason on stderr. Under CI=true a missing prerequisite panics instead: there such
/// tests must run.
pub fn run_or_skip(what: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{what}: missing {}", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: this test must run, not skip)");
    }
    eprintln!("SKIP {msg}");
    false
}

/// Whether `prog` is on PATH (or in /usr/sbin, /sbin).
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(prog).is_file()
        || Path::new("/sbin").join(prog).is_file()
}

/// What real mode lacks here: root, /dev/net/tun, and any of `progs` not installed.
pub fn real_missing(progs: &[&str]) -> Vec<String> {
    let mut m = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        m.push("root".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        m.push("/dev/net/tun".into());
    }
    for p in progs {
        if !have(p) {
            m.push((*p).to_string());
        }
    }
    m
}

/// Run the built `lab ARGS…` from the repository root with `stdin` as its standard input.
pub fn lab_with_stdin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lab"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lab");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write lab's stdin");
    child.wait_with_output().expect("wait for lab")
}

/// A running `lab up`, stopped (SIGTERM, then waited for) when dropped.
pub struct LabUp(pub std::process::Child);

impl Drop for LabUp {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the `lab up` this test started.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Starts `lab up ARGS…` from the repository root and reads its standard output up to and
/// including the `ready:` line; returns it, those lines, and the rest of the output.
#[allow(dead_code)] // not every test binary that shares this module starts a lab
pub fn lab_up(
    args: &[&str],
) -> (
    LabUp,
    Vec<String>,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let child = Command::new(env!("CARGO_BIN_EXE_lab"))
        .current_dir(configs_dir().join(".."))
        .arg("up")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start lab up");
    let mut up = LabUp(child);
    let mut lines = std::io::BufReader::new(up.0.stdout.take().expect("piped stdout")).lines();
    let mut printed = Vec::new();
    for l in lines.by_ref() {
        let l = l.expect("lab up's output");
        let ready = l.starts_with("ready: lab");
        printed.push(l);
        if ready {
            break;
        }
    }
    (up, printed, lines)
}
