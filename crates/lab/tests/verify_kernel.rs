//! `lab verify <scenario> --kernel` on every shipped scenario it applies to: the lab and the
//! Linux kernel (namespaces, veth, bridges, host-gw routes, `lab rules` loaded with
//! iptables-restore, real nginx and curl) agree step by step; the scenarios it does not apply
//! to are refused with exit 2; a kernel programmed with the wrong rules is caught (exit 1
//! semantics); Ctrl-C and `kill -9` + `lab down` leave nothing behind.
//!
//! Needs root, ip, nginx, curl and iptables-restore. Locally a missing prerequisite skips with
//! the reason; with `CI=true` it fails instead. Run it machine-wide serialised:
//! `flock /tmp/nplab-real.lock cargo test -p lab --test verify_kernel`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// The kernel topology has one name space and one state dir: one run at a time.
static KERNEL: Mutex<()> = Mutex::new(());

/// The shipped scenarios the README lists as covered (the rest must be refused).
const APPLICABLE: [&str; 13] = [
    "cluster-local-pod",
    "kernel-ref",
    "kernel-ref-local",
    "local-imbalance",
    "local-imbalance-cluster",
    "no-endpoints",
    "no-masquerade",
    "pod-to-nodeport",
    "seed-cluster",
    "seed-local",
    "seed-local-pinned",
    "session-affinity",
    "targetport-8080",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prerequisites() -> bool {
    common::run_or_skip("lab verify --kernel", &host::kernel::missing())
}

fn lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .current_dir(repo())
        .args(args)
        .output()
        .expect("run lab")
}

fn kernel_namespaces() -> Vec<String> {
    host::netns::list(host::kernel::KERNEL_PREFIX).unwrap_or_default()
}

fn assert_clean() {
    assert!(
        kernel_namespaces().is_empty(),
        "namespaces left behind: {:?}",
        kernel_namespaces()
    );
    assert!(
        !Path::new(host::kernel::KERNEL_STATE_DIR).exists(),
        "{} left behind",
        host::kernel::KERNEL_STATE_DIR
    );
}

fn shipped() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("lab-configs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_applicable_scenario_agrees_with_the_kernel() {
    if !prerequisites() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ran = 0;
    for name in shipped() {
        let args = ["verify", &name, "--kernel", "--json", "--count", "10"];
        let mut out = lab(&args);
        if out.status.code() == Some(1) {
            // A step with mixed outcomes (pod-to-nodeport: ok only when node2 picks its own
            // pod) can show one outcome in all 10 kernel requests by chance (about 2 % of
            // runs); a real difference shows again on a second, independent draw.
            eprintln!(
                "{name}: differed on the first draw, drawing again:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
            out = lab(&args);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !APPLICABLE.contains(&name.as_str()) {
            assert_eq!(out.status.code(), Some(2), "{name}: {stderr}{stdout}");
            assert!(stderr.contains("does not apply"), "{name}: {stderr}");
            eprintln!("{name}: not applicable ({})", stderr.trim());
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{name}:\n{stdout}\n{stderr}");
        let v: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}):\n{stdout}"));
        assert_eq!(v["agree"], true, "{name}: {stdout}");
        let steps = v["steps"].as_array().unwrap();
        assert!(!steps.is_empty(), "{name}: no steps");
        for s in steps {
            assert_eq!(s["agree"], true, "{name}: {s}");
            assert!(s["requests"].as_u64().unwrap() >= 1, "{name}: {s}");
            assert_eq!(
                s["lab_requests"].as_array().unwrap().len(),
                s["kernel_requests"].as_array().unwrap().len(),
                "{name}: {s}"
            );
        }
        assert_clean();
        eprintln!("{name}: {} steps agree", steps.len());
        ran += 1;
    }
    assert_eq!(ran, APPLICABLE.len(), "a listed scenario is missing");
}

#[test]
fn the_table_is_side_by_side() {
    if !prerequisites() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let out = lab(&["verify", "seed-cluster", "--kernel"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for h in [
        "LAB OUTCOME",
        "KERNEL OUTCOME",
        "LAB PODS",
        "KERNEL CLIENT IP",
    ] {
        assert!(text.contains(h), "{h}: {text}");
    }
    // Policy Cluster via the master: both log the master's address.
    let row = text.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert_eq!(row.matches("10.151.30.11").count(), 3, "{row}");
    assert!(row.ends_with("agree"), "{row}");
    assert!(text.contains("all 1 steps agree"), "{text}");
    assert_clean();
}

#[test]
fn wrong_rules_are_caught() {
    if !prerequisites() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    // seed-cluster's cluster, but every node programmed with seed-local's rules (policy
    // Local, no pod on the master): the kernel drops the SYN the lab answers.
    let load = |n: &str| {
        cluster::load_cluster(&repo().join(format!("lab-configs/{n}.yaml")), None).unwrap()
    };
    let (good, local) = (load("seed-cluster"), load("seed-local"));
    let v = lab::verify::verify_with(&good, &Default::default(), &|_, node| {
        lab::verify::node_rules(&local, node)
    })
    .unwrap();
    assert!(!v.agrees(), "{}", lab::verify::render(&v));
    let row = &v.steps[0];
    assert_eq!(row.lab[0].outcome, "ok");
    assert_eq!(row.kernel[0].outcome, "timeout");
    assert!(
        row.differences.iter().any(|d| d.contains("outcomes")),
        "{:?}",
        row.differences
    );
    assert_clean();
}

/// Waits until the kernel topology has nginx running (pod namespaces with processes).
fn wait_for_pods(child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = kernel_namespaces()
            .iter()
            .filter(|n| n.contains("-pod-"))
            .filter_map(|n| host::netns::Netns::open(n).ok())
            .any(|ns| !ns.pids().is_empty());
        if busy {
            return;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("lab verify exited early: {s}");
        }
        assert!(
            Instant::now() < deadline,
            "the kernel topology never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_verify(scenario: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .current_dir(repo())
        .args(["verify", scenario, "--kernel"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lab verify")
}

#[test]
fn ctrl_c_and_kill_9_leave_nothing_behind() {
    if !prerequisites() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    // Ctrl-C (SIGINT) while the plan runs: the command tears everything down itself.
    let mut child = spawn_verify("pod-to-nodeport");
    wait_for_pods(&mut child);
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean();

    // kill -9: namespaces and nginx stay until `lab down`.
    let mut child = spawn_verify("pod-to-nodeport");
    wait_for_pods(&mut child);
    // The pods' servers (a process seen by wait_for_pods may have been a short-lived one of
    // the start-up): wait for them a few seconds, and never leave the child running.
    let deadline = Instant::now() + Duration::from_secs(10);
    let nginx: Vec<i32> = loop {
        let pids: Vec<i32> = kernel_namespaces()
            .iter()
            .filter(|n| n.contains("-pod-"))
            .filter_map(|n| host::netns::Netns::open(n).ok())
            .flat_map(|ns| ns.pids())
            .collect();
        if !pids.is_empty() || Instant::now() >= deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if nginx.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        let _ = lab(&["down"]);
        panic!("no process in the kernel topology's pod namespaces");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!kernel_namespaces().is_empty(), "kill -9 cannot clean up");
    let out = lab(&["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nplab-k-"), "{text}");
    assert_clean();
    for p in nginx {
        assert!(!host::process::alive(p), "nginx {p} still runs");
    }
}

/// Bad input is refused before anything is built (no root needed): exit 2 with the reason.
#[test]
fn bad_input_exits_2() {
    for (args, needle) in [
        (vec!["verify", "seed-cluster"], "--kernel"),
        (
            vec![
                "verify",
                "seed-cluster",
                "--kernel",
                "--connect-timeout",
                "0",
            ],
            "--connect-timeout",
        ),
        (
            vec!["verify", "no-such-scenario", "--kernel"],
            "unknown scenario",
        ),
        (vec!["verify", "lossy-link", "--kernel"], "does not apply"),
    ] {
        let out = lab(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
