//! `lab conntrack NODE` reads `/run/nplab/conntrack/NODE` as root: a NODE that is not a node
//! the running lab recorded exits 2, names the node, and prints nothing of any file.
//!
//! The "lab is running" case holds the real `up` lock of `/run/nplab` (root only; run it
//! under `flock /tmp/nplab-real.lock`). Without root it prints why and skips, except with
//! CI=true, where it fails. If another `lab up` holds the lock it skips (outside CI).

use std::fs;
use std::process::{Command, Output};

use host::{LabLock, StateDir};

fn lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .output()
        .expect("run lab")
}

fn refuses(node: &str) -> String {
    let out = lab(&["conntrack", node]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{node:?}: {stderr}");
    assert!(stdout.is_empty(), "{node:?} printed: {stdout}");
    assert!(stderr.contains(&format!("{node:?}")), "{stderr}");
    assert!(!stderr.contains("root:"), "{stderr}");
    stderr
}

#[test]
fn conntrack_refuses_paths_without_a_lab() {
    for bad in ["../../etc/passwd", "/etc/passwd", "..", "a/b"] {
        let e = refuses(bad);
        assert!(e.contains("lab conntrack: node:"), "{e}");
    }
}

fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("conntrack test cannot run under CI=true: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

#[test]
fn conntrack_with_a_running_lab_reads_only_recorded_nodes() {
    if !nix_is_root() {
        return skip("needs root (the lab's lock lives in /run/nplab)");
    }
    let state = StateDir::default();
    let lock = match LabLock::acquire(&state) {
        Ok(l) => l,
        Err(e) => return skip(&format!("a lab is running here: {e}")),
    };
    let dir = state.root().join("conntrack");
    fs::create_dir_all(&dir).unwrap();
    let snap = dir.join("ydzs-node1");
    fs::write(
        &snap,
        "tcp      6 86399 ESTABLISHED src=203.0.113.11 dst=10.151.30.11\n",
    )
    .unwrap();
    let cleanup = || {
        let _ = fs::remove_file(&snap);
        let _ = fs::remove_dir(&dir);
    };
    let results = std::panic::catch_unwind(|| {
        let e = refuses("../../etc/passwd");
        assert!(e.contains("not a single file name"), "{e}");
        let e = refuses("ydzs-node9");
        assert!(e.contains("known: ydzs-node1"), "{e}");
        refuses(".ydzs-node1.tmp");
        let ok = lab(&["conntrack", "ydzs-node1"]);
        let stdout = String::from_utf8_lossy(&ok.stdout);
        assert!(ok.status.success(), "{ok:?}");
        assert!(stdout.starts_with("== ydzs-node1 (snapshot"), "{stdout}");
        assert!(stdout.contains("src=203.0.113.11"), "{stdout}");
    });
    cleanup();
    drop(lock);
    if let Err(p) = results {
        std::panic::resume_unwind(p);
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
