//! The `lab` binary: listing, showing, and exit code 2 with `error: …` for bad configs.

use std::process::Command;

fn lab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lab"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    c
}

#[test]
fn list_shows_every_scenario_with_its_lesson() {
    let out = lab().args(["scenario", "list"]).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("seed-cluster"), "{s}");
    assert!(s.contains("nginx logs the master's IP"), "{s}");
    assert!(s.lines().count() >= 11, "{s}");
}

#[test]
fn show_prints_kubectl_tables() {
    let out = lab()
        .args(["scenario", "show", "seed-cluster"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    for want in [
        "ydzs-master   Ready    control-plane",
        "kubernetes   ClusterIP   10.96.0.1",
        "NodePort",
        "/TCP",
        "ydzs-node3",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    let json = lab()
        .args(["scenario", "show", "seed-cluster", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["pods"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_config_exits_2_with_one_error_line() {
    let dir = std::env::temp_dir().join(format!("lab-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "nodes:\n  - {name: a, ip: 10.151.30.11}\nplan:\n  - {from: nobody, to: a, port: 80}\n",
    )
    .unwrap();
    let out = lab().args(["scenario", "show"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("bad.yaml: plan[0].from: unknown client \"nobody\""),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let out = lab()
        .args(["scenario", "show", "no-such-scenario"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// `lab scenario run …` with RUST_LOG and the progress delay controlled (nothing inherited
/// from the caller's environment).
fn scenario_run_env(args: &[&str], rust_log: Option<&str>) -> std::process::Output {
    let mut c = lab();
    c.args(["scenario", "run"]).args(args);
    c.env_remove("RUST_LOG").env("LAB_PROGRESS_AFTER_MS", "0");
    if let Some(v) = rust_log {
        c.env("RUST_LOG", v);
    }
    c.output().unwrap()
}

fn assert_json_stdout(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}"));
    assert_eq!(v["scenario"], "seed-cluster");
}

#[test]
fn rust_log_lab_debug_shows_spans_on_stderr_only() {
    let out = scenario_run_env(&["seed-cluster", "--json"], Some("lab=debug"));
    assert_json_stdout(&out);
    let err = String::from_utf8(out.stderr).unwrap();
    for want in [
        "load_cluster{path=", // scenario loading (cluster::config)
        "schedule{file=",     // scheduling (cluster::schedule)
        "kube-proxy sync",    // a node's services synced (nodestack)
        "scenario loaded",    // the run span's first event (lab::runner)
        "run{scenario=seed-cluster mode=\"embedded\" seed=7}",
        "request{number=1 client=browser", // each request's span (lab::runner)
        "request done outcome=\"ok\"",
    ] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
    assert!(
        !err.contains('\x1b'),
        "no colors when stderr is not a terminal:\n{err}"
    );
}

#[test]
fn rust_log_debug_also_works_and_unknown_crates_stay_quiet() {
    let out = scenario_run_env(&["seed-cluster", "--json"], Some("debug"));
    assert_json_stdout(&out);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("kube-proxy sync") && err.contains("request{number=1"),
        "{err}"
    );
    let out = scenario_run_env(&["seed-cluster", "--json"], Some("nodestack=debug"));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("kube-proxy sync"), "{err}");
    assert!(!err.contains("request{"), "only nodestack's events: {err}");
}

#[test]
fn without_rust_log_stderr_is_empty() {
    for rust_log in [None, Some(""), Some("lab=off")] {
        let out = scenario_run_env(&["seed-cluster", "--json"], rust_log);
        assert_json_stdout(&out);
        assert!(
            out.stderr.is_empty(),
            "RUST_LOG={rust_log:?}: stderr should be empty:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// stderr is a pipe here: no progress bar, even with the delay at 0 and 300 requests.
#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let out = scenario_run_env(&["local-imbalance", "--count", "300"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("requests ("), "{stdout}");
}

/// On a terminal (a pty from util-linux `script`) the bar shows done/total and the rate,
/// and `--json` on stdout stays one document when stdout is not the terminal.
#[test]
fn progress_bar_on_a_terminal() {
    let have_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_script {
        eprintln!("skipped: util-linux `script` is not installed (no pty to test with)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nplab-th5-progress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let cmd = format!(
        "{} scenario run local-imbalance --count 300 --json > {}",
        env!("CARGO_BIN_EXE_lab"),
        json.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("SHELL", "/bin/sh")
        .env_remove("RUST_LOG")
        .env("LAB_PROGRESS_AFTER_MS", "0")
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    let doc = std::fs::read(&json).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("/300 requests ("),
        "no progress bar on the pty: {tty:?}"
    );
    assert!(tty.contains("/s)"), "no rate: {tty:?}");
    let v: serde_json::Value = serde_json::from_slice(&doc).expect("stdout is one JSON document");
    assert_eq!(v["requests"].as_array().map(Vec::len), Some(300));
}
