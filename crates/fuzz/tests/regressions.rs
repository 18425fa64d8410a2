//! Every input the fuzzers found a panic with (`tests/regressions/`: `*.yaml` configs,
//! `*.bin` packet inputs in the `fuzz-packets` format) replays without panicking, and the
//! configs are refused with the error that names the problem.

use std::path::{Path, PathBuf};

use fuzz::configs::ConfigHarness;
use fuzz::packets::PacketHarness;
use fuzz::replay;

fn inputs(ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn config_findings_do_not_panic() {
    let files = inputs("yaml");
    assert!(!files.is_empty());
    for f in files {
        let input = std::fs::read(&f).unwrap();
        replay(ConfigHarness::with_seeds(Vec::new()), &input)
            .unwrap_or_else(|m| panic!("{} panics: {m}", f.display()));
    }
}

#[test]
fn packet_findings_do_not_panic() {
    for f in inputs("bin") {
        let input = std::fs::read(&f).unwrap();
        replay(PacketHarness::new(), &input)
            .unwrap_or_else(|m| panic!("{} panics: {m}", f.display()));
    }
}

#[test]
fn broadcast_node_network_without_router_is_an_error() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions/router-default-overflow.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let Err(e) = cluster::load_cluster_from_str(&text, &f, None) else {
        panic!("no router address in 255.255.255.255/32: must be an error");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("router") && msg.contains("255.255.255.255/32"),
        "{msg}"
    );
}
