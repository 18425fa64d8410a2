//! The `kubeProxy:` knobs of a lab config reach every node's engine and its rules:
//! `masqueradeRandomFully`, `localhostNodePorts` and `conntrack.tcpBeLiberal`.

mod common;
use common::*;

/// seed-cluster with its manifest inlined (so the config can come from stdin) and `extra`
/// appended at the top level.
fn seed_cluster_with(extra: &str) -> String {
    let dir = configs_dir();
    let config = std::fs::read_to_string(dir.join("seed-cluster.yaml")).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifests/nginx-nodeport.yaml")).unwrap();
    let inline: String = manifest.lines().map(|l| format!("      {l}\n")).collect();
    let config = config.replace(
        "  - file: manifests/nginx-nodeport.yaml\n",
        &format!("  - |\n{inline}"),
    );
    assert!(config.contains("kind: Service"), "manifest inlined");
    format!("{config}{extra}")
}

fn stdout_of(args: &[&str], config: &str) -> String {
    let out = lab_with_stdin(args, config.as_bytes());
    assert!(
        out.status.success(),
        "lab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `(client sport, masqueraded sport)` of the master's conntrack entry for the browser.
fn master_ports(conntrack: &str) -> (String, String) {
    let master = conntrack
        .split("ydzs-master:")
        .nth(1)
        .expect("master table")
        .lines()
        .find(|l| l.contains("src=203.0.113.11"))
        .expect("browser flow on the master");
    let field = |k: &str, nth: usize| {
        master
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(k))
            .nth(nth)
            .unwrap()
            .to_string()
    };
    // Original tuple sport, then the reply tuple's dport (= the port after MASQUERADE).
    (field("sport=", 0), field("dport=", 1))
}

#[test]
fn random_fully_by_default_and_the_what_if_keeps_the_port() {
    let args = ["scenario", "run", "-", "--conntrack"];
    let (client, masq) = master_ports(&stdout_of(&args, &seed_cluster_with("")));
    assert_ne!(client, masq, "--random-fully picks another source port");
    let keep = seed_cluster_with("kubeProxy:\n  masqueradeRandomFully: false\n");
    let (client, masq) = master_ports(&stdout_of(&args, &keep));
    assert_eq!(client, masq, "without --random-fully a free port is kept");
}

#[test]
fn rules_follow_the_knobs() {
    let args = ["rules", "-", "ydzs-master"];
    let default = stdout_of(&args, &seed_cluster_with(""));
    assert!(default.contains("MASQUERADE --random-fully"));
    assert!(default.contains("--ctstate INVALID -j DROP"));
    assert!(default.contains("block incoming localnet connections"));
    let knobs = seed_cluster_with(
        "kubeProxy:\n  masqueradeRandomFully: false\n  localhostNodePorts: false\n  conntrack: {tcpBeLiberal: true}\n",
    );
    let changed = stdout_of(&args, &knobs);
    assert!(!changed.contains("--random-fully"), "{changed}");
    assert!(!changed.contains("--ctstate INVALID -j DROP"), "{changed}");
    assert!(!changed.contains("block incoming localnet connections"));
    let nodeports = |rules: &str| {
        rules
            .lines()
            .find(|l| l.starts_with("-A KUBE-SERVICES") && l.ends_with("-j KUBE-NODEPORTS"))
            .expect("the nodeports rule")
            .to_string()
    };
    assert!(!nodeports(&default).contains("! -d 127.0.0.0/8"));
    assert!(
        nodeports(&changed).contains("! -d 127.0.0.0/8"),
        "{changed}"
    );
}

#[test]
fn unknown_kube_proxy_field_is_an_error() {
    let bad = seed_cluster_with("kubeProxy:\n  masqueradeAll: true\n");
    let out = lab_with_stdin(&["scenario", "show", "-"], bad.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubeProxy") && err.contains("masqueradeAll"),
        "{err}"
    );
}

#[test]
fn sctp_services_get_sctp_rules() {
    let sctp = seed_cluster_with("").replace("  - protocol: TCP\n", "  - protocol: SCTP\n");
    assert!(sctp.contains("protocol: SCTP"));
    let rules = stdout_of(&["rules", "-", "ydzs-master"], &sctp);
    assert!(
        rules.contains("-A KUBE-NODEPORTS -p sctp"),
        "an SCTP NodePort: {rules}"
    );
    assert!(rules.contains("-m sctp --dport"), "{rules}");
    assert!(!rules.contains("-A KUBE-NODEPORTS -p tcp"), "{rules}");
}
