//! `lab scenario run --explain`: one plain-words explanation per request, from its trace.

use std::path::Path;

use lab::runner::{run, RunOptions};

fn explanations(scenario: &str, connect_timeout: Option<u64>) -> Vec<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../lab-configs/{scenario}.yaml"));
    let mut cluster = lab::load_cluster(&path, None).unwrap();
    for s in &mut cluster.plan {
        s.connect_timeout = connect_timeout.map(std::time::Duration::from_secs);
    }
    let opts = RunOptions {
        explain: true,
        ..Default::default()
    };
    let r = run(&cluster, &opts).unwrap();
    assert_eq!(r.explanations.len(), r.requests.len());
    r.explanations
}

fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in {text:?}");
}

#[test]
fn seed_cluster_says_masquerade_rewrote_the_source() {
    let e = explanations("seed-cluster", None);
    assert_has(
        &e[0],
        "ydzs-master has no local endpoint, so DNAT chose nginx-",
    );
    assert_has(
        &e[0],
        "through eth0, so MASQUERADE rewrote the source to 10.151.30.11, and nginx logs that address.",
    );
}

#[test]
fn seed_local_says_why_the_request_hangs() {
    let e = explanations("seed-local", Some(3));
    assert_eq!(
        e[0],
        "ydzs-master has no local endpoint for default/nginx (externalTrafficPolicy: Local), so kube-proxy drops the SYN; curl retries until its connect timeout (3.0 s)."
    );
}

#[test]
fn pinned_pods_keep_the_client_address() {
    let e = explanations("seed-local-pinned", None);
    assert_has(&e[0], "has a local endpoint and the policy is Local");
    assert_has(&e[0], "nginx logs 203.0.113.11, the client's real address");
}
