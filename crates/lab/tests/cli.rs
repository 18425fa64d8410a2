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
