//! UDP end to end (issue 8 point 3): `protocol: UDP` plan entries, the `delete:` action, the
//! `kubeProxy.conntrackCleanup` what-if and the scenarios udp-nodeport, udp-stale-conntrack
//! and udp-stale-conntrack-nocleanup, checked from `lab scenario run --json` in embedded mode
//! and, as root, in real mode (real sockets in namespaces; CI=true must not skip).

mod common;

use serde_json::Value;

fn run_json(scenario: &str, extra: &[&str]) -> Value {
    let stdout = common::scenario_run(scenario, &[&["--json"], extra].concat());
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "{scenario}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

fn requests(v: &Value) -> &Vec<Value> {
    v["requests"].as_array().expect("requests array")
}

fn pod_ip(v: &Value, pod: &str) -> String {
    v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pod)
        .unwrap_or_else(|| panic!("pod {pod} not in pods"))["ip"]
        .as_str()
        .unwrap()
        .to_string()
}

/// (outcome, pod, reply) of each request.
fn outcomes(v: &Value) -> Vec<(String, Option<String>, String)> {
    requests(v)
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["pod"].as_str().map(str::to_string),
                r["reply"]
                    .as_str()
                    .unwrap_or("<no reply field>")
                    .to_string(),
            )
        })
        .collect()
}

/// udp-stale-conntrack: the first datagrams are answered by the pod (netexec's `hostname`
/// answer is its name); after the delete, the cleanup lets the very next datagram from the
/// same source port reach the replacement, a pod with another name and IP.
fn check_stale_with_cleanup(v: &Value) {
    let o = outcomes(v);
    assert_eq!(o.len(), 6, "{o:?}");
    let first = o[0].1.clone().expect("request 1 answered by a pod");
    for (i, (outcome, pod, reply)) in o.iter().enumerate() {
        assert_eq!(outcome, "ok", "request {}: {o:?}", i + 1);
        let pod = pod.as_deref().expect("answered by a pod");
        assert_eq!(reply, pod, "netexec answers `hostname` with its pod name");
        if i < 3 {
            assert_eq!(pod, first, "before the delete: the original pod");
        } else {
            assert_ne!(pod, first, "after the delete: the replacement");
        }
    }
    let (old, new) = (o[0].1.as_deref().unwrap(), o[3].1.as_deref().unwrap());
    assert_ne!(
        pod_ip(v, old),
        pod_ip(v, new),
        "the replacement has a new IP"
    );
    assert_eq!(
        v["pods"].as_array().unwrap().len(),
        2,
        "old and new pod listed"
    );
}

/// udp-stale-conntrack-nocleanup: answered, then blackholed (the stale entry DNATs to the
/// deleted pod: no answer, no ICMP), then after the entry expired the replacement answers.
fn check_stale_without_cleanup(v: &Value) {
    let o = outcomes(v);
    let kinds: Vec<&str> = o.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["ok", "ok", "timeout", "timeout", "ok", "ok"],
        "{o:?}"
    );
    let (old, new) = (o[0].1.clone().unwrap(), o[4].1.clone().unwrap());
    assert_eq!(o[1].1.as_deref(), Some(old.as_str()));
    assert_ne!(old, new, "after expiry: the replacement");
    assert_eq!(o[5].1.as_deref(), Some(new.as_str()));
    assert!(
        o[2].1.is_none() && o[3].1.is_none(),
        "nobody logged the lost datagrams"
    );
    assert_eq!(o[2].2, "", "no answer text for a timeout");
}

/// udp-nodeport: Cluster via the master masquerades (netexec's `clientip` shows the master's
/// address), Local via a node with a pod keeps the browser's address and port, Local via the
/// master (no local pod) drops the datagram.
fn check_nodeport(v: &Value) {
    let r = requests(v);
    assert_eq!(r.len(), 5);
    for q in &r[..2] {
        assert_eq!(q["outcome"], "ok", "{q}");
        assert_eq!(q["logged_client_ip"], "10.151.30.11", "{q}");
        assert!(
            q["reply"].as_str().unwrap().starts_with("10.151.30.11:"),
            "{q}"
        );
        assert!(q["target"].as_str().unwrap().ends_with(":30081/udp"), "{q}");
    }
    for q in &r[2..4] {
        assert_eq!(q["outcome"], "ok", "{q}");
        assert_eq!(q["logged_client_ip"], "203.0.113.11", "{q}");
        assert_eq!(q["reply"], "203.0.113.11:40001", "{q}");
        let pod = q["pod"].as_str().unwrap();
        let node = v["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pod)
            .unwrap()["node"]
            .clone();
        assert_eq!(node, "ydzs-node1", "Local: the node's own pod");
    }
    assert_eq!(r[4]["outcome"], "timeout", "{}", r[4]);
    assert!(r[4]["pod"].is_null());
}

#[test]
fn udp_stale_conntrack_recovers_with_cleanup() {
    check_stale_with_cleanup(&run_json("udp-stale-conntrack", &[]));
}

#[test]
fn udp_stale_conntrack_blackholes_without_cleanup() {
    check_stale_without_cleanup(&run_json("udp-stale-conntrack-nocleanup", &[]));
}

#[test]
fn udp_nodeport_cluster_vs_local() {
    check_nodeport(&run_json("udp-nodeport", &[]));
}

/// The same plan with `conntrackCleanup: false` set on the cleanup scenario blackholes too:
/// the knob, not the plan's timing, makes the difference.
#[test]
fn conntrack_cleanup_knob_alone_makes_the_difference() {
    let dir = common::configs_dir();
    let text = std::fs::read_to_string(dir.join("udp-stale-conntrack.yaml")).unwrap();
    // From stdin, `file:` manifests are relative to the current directory (the repository).
    let off = text
        .replace(
            "manifests:\n",
            "kubeProxy: {conntrackCleanup: false}\nmanifests:\n",
        )
        .replace("file: manifests/", "file: lab-configs/manifests/");
    let out = common::lab_with_stdin(&["scenario", "run", "-", "--json"], off.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = outcomes(&v);
    let kinds: Vec<&str> = o.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(kinds[..3], ["ok", "ok", "ok"], "{o:?}");
    assert_eq!(kinds[3..], ["timeout", "timeout", "timeout"], "{o:?}");
}

/// A UDP Service without endpoints: kube-proxy's REJECT answers ICMP port unreachable, the
/// client reports `refused` at once (a connected socket's ECONNREFUSED).
#[test]
fn udp_to_a_service_without_endpoints_is_refused() {
    let text = format!(
        "# a UDP service selecting nothing\n{}\n{}plan:\n  - {{from: browser, to: ydzs-master, protocol: UDP, payload: hostname}}\n",
        common::NODES,
        common::block(&[r#"apiVersion: v1
kind: Service
metadata:
  name: nothing
spec:
  type: NodePort
  selector: {app: nothing}
  ports:
  - {port: 53, targetPort: 53, protocol: UDP, nodePort: 30053}
"#
        .to_string()])
    );
    let out = common::lab_with_stdin(&["scenario", "run", "-", "--json"], text.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &requests(&v)[0];
    assert_eq!(r["outcome"], "refused", "{r}");
    assert_eq!(r["reply"], "", "{r}");
    assert!(r["elapsed_ms"].as_u64().unwrap() < 100, "{r}");
}

// ----- real mode ---------------------------------------------------------------------------

/// Real mode, serialized machine-wide by the caller (`flock /tmp/nplab-real.lock cargo
/// test`) and within this binary by one test running all three scenarios in turn.
#[test]
fn udp_scenarios_in_real_mode() {
    if !common::run_or_skip("UDP real mode", &common::real_missing(&["ip", "nginx"])) {
        return;
    }
    let v = run_json("udp-stale-conntrack", &["--real"]);
    assert_eq!(v["mode"], "real");
    check_stale_with_cleanup(&v);
    let v = run_json("udp-nodeport", &["--real"]);
    check_nodeport(&v);
    let v = run_json("udp-stale-conntrack-nocleanup", &["--real"]);
    check_stale_without_cleanup(&v);
}

// ----- the delete: action as scheduled -----------------------------------------------------

/// `delete:` as the scheduler computes it: the named (or the Deployment's oldest) pod goes, a
/// replacement with a fresh name and address comes, and the EndpointSlices follow.
#[test]
fn delete_replaces_one_pod_and_its_endpoint() {
    let base = format!(
        "# delete test\n{}\n{}",
        common::NODES,
        common::block(&[
            common::deployment("web", 2, ""),
            r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"#
            .to_string()
        ])
    );
    let c = common::load(&format!(
        "{base}plan:\n  - {{from: browser, to: ydzs-master}}\n  - delete: {{deployment: web}}\n"
    ))
    .unwrap();
    let a = &c.actions[0];
    assert_eq!(a.before, 1);
    let sc = a.scaled.as_ref().expect("scheduled");
    let (old, new) = (&sc.removed[0], &sc.added[0]);
    assert_eq!((sc.removed.len(), sc.added.len()), (1, 1));
    assert_eq!(old.name, c.pods[0].name, "the oldest pod of the Deployment");
    assert_ne!(new.name, old.name);
    assert_ne!(new.ip, old.ip);
    assert!(new.name.starts_with("web-"), "{}", new.name);
    let ips: Vec<_> = sc
        .slices
        .iter()
        .flat_map(|s| s.endpoints.iter().map(|e| e.ip))
        .collect();
    assert!(
        ips.contains(&new.ip.into()) && !ips.contains(&old.ip.into()),
        "{ips:?}"
    );
    assert_eq!(sc.pods.len(), 2, "still two replicas");
    // By name: the other pod.
    let other = &c.pods[1].name;
    let c2 = common::load(&format!(
        "{base}plan:\n  - {{from: browser, to: ydzs-master}}\n  - delete: {{pod: {other}}}\n"
    ))
    .unwrap();
    let sc2 = c2.actions[0].scaled.as_ref().unwrap();
    assert_eq!(&sc2.removed[0].name, other);
    // A second delete of the same Deployment deletes the next oldest (the first replacement
    // is the newest).
    let c3 = common::load(&format!(
        "{base}plan:\n  - delete: {{deployment: web}}\n  - delete: {{deployment: web}}\n  - {{from: browser, to: ydzs-master}}\n"
    ))
    .unwrap();
    let (d1, d2) = (
        c3.actions[0].scaled.as_ref().unwrap(),
        c3.actions[1].scaled.as_ref().unwrap(),
    );
    assert_eq!(d1.removed[0].name, c3.pods[0].name);
    assert_eq!(d2.removed[0].name, c3.pods[1].name);
}
