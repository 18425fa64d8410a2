//! Every bad input gives one clear error naming the file, the field path and the value.

mod common;
use common::*;

#[test]
fn unknown_node_in_plan() {
    let cfg = format!(
        "{NODES}{}plan:\n  - {{from: browser, to: ydzs-node9, port: 80}}\n",
        block(&[deployment("web", 1, ""), clusterip_service("web", "")])
    );
    let msg = error_of(&cfg);
    assert_mentions(
        &msg,
        &[
            "lab-configs/bad.yaml",
            "plan[0].to",
            "\"ydzs-node9\"",
            "known: ydzs-master, ydzs-node1",
        ],
    );
}

#[test]
fn unknown_node_in_client_reach_and_lb() {
    let cfg = NODES.replace(
        "canReach: [ydzs-master]",
        "canReach: [ydzs-master, ydzs-nodeX]",
    );
    assert_mentions(
        &error_of(&cfg),
        &[
            "lab-configs/bad.yaml",
            "clients[0].canReach[1]",
            "\"ydzs-nodeX\"",
        ],
    );
    let cfg = format!("{NODES}loadBalancer: {{ip: 198.51.100.10, nodes: [ydzs-node1, nope]}}\n");
    assert_mentions(&error_of(&cfg), &["loadBalancer.nodes[1]", "\"nope\""]);
    let cfg = format!("{NODES}  - {{name: probe, node: ydzs-node7}}\n");
    assert_mentions(&error_of(&cfg), &["clients[1].node", "\"ydzs-node7\""]);
}

#[test]
fn unknown_client_in_plan() {
    let cfg = format!("{NODES}plan:\n  - {{from: phone, to: ydzs-master, port: 80}}\n");
    assert_mentions(
        &error_of(&cfg),
        &["plan[0].from", "\"phone\"", "known: browser"],
    );
}

#[test]
fn overlapping_pod_cidrs() {
    let cfg = NODES.replace("podCIDR: 10.244.2.0/24", "podCIDR: 10.244.1.0/25");
    assert_mentions(
        &error_of(&cfg),
        &[
            "lab-configs/bad.yaml",
            "nodes[2].podCIDR",
            "10.244.1.0/25",
            "overlaps",
            "ydzs-node1",
        ],
    );
}

#[test]
fn pod_cidr_overlapping_node_network() {
    let cfg = format!(
        "clusterCIDR: 10.0.0.0/8\n{}",
        NODES.replace("podCIDR: 10.244.3.0/24", "podCIDR: 10.151.30.0/24")
    );
    assert_mentions(
        &error_of(&cfg),
        &[
            "clusterCIDR",
            "10.0.0.0/8",
            "overlaps nodeNetwork 10.151.30.0/24",
        ],
    );
    let cfg = NODES.replace("podCIDR: 10.244.3.0/24", "podCIDR: 10.151.30.0/24");
    assert_mentions(&error_of(&cfg), &["nodes[3].podCIDR", "10.151.30.0/24"]);
}

#[test]
fn client_ip_inside_cluster_cidr() {
    let cfg = NODES.replace("ip: 203.0.113.11", "ip: 10.244.1.7");
    assert_mentions(
        &error_of(&cfg),
        &["clients[0].ip", "10.244.1.7", "clusterCIDR"],
    );
}

#[test]
fn duplicate_names_and_ips() {
    let cfg = NODES.replace("name: ydzs-node2", "name: ydzs-node1");
    assert_mentions(
        &error_of(&cfg),
        &["nodes[2].name", "duplicate node name \"ydzs-node1\""],
    );
    let cfg = NODES.replace("ip: 10.151.30.13", "ip: 10.151.30.12");
    assert_mentions(
        &error_of(&cfg),
        &[
            "nodes[2].ip",
            "duplicate address 10.151.30.12",
            "node ydzs-node1",
        ],
    );
    let cfg = format!("{NODES}  - {{name: browser, ip: 203.0.113.12}}\n");
    assert_mentions(
        &error_of(&cfg),
        &["clients[1].name", "duplicate client name \"browser\""],
    );
}

#[test]
fn malformed_yaml_has_location() {
    let cfg = format!("{NODES}plan:\n  - from: browser\n   to: [oops\n");
    let msg = error_of(&cfg);
    assert_mentions(&msg, &["lab-configs/bad.yaml", "line "]);
    assert!(msg.contains("column"), "{msg}");
}

#[test]
fn unknown_field_in_lab_config() {
    let cfg = NODES.replace(
        "podCIDR: 10.244.1.0/24",
        "podCIDR: 10.244.1.0/24, podCidr: x",
    );
    assert_mentions(
        &error_of(&cfg),
        &[
            "lab-configs/bad.yaml",
            "nodes[1]",
            "unknown field `podCidr`",
            "line",
        ],
    );
    let cfg = format!("{NODES}nodez: []\n");
    assert_mentions(&error_of(&cfg), &["unknown field `nodez`"]);
}

#[test]
fn unknown_kind() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n".to_string();
    let cfg = format!("{NODES}{}", block(&[deployment("web", 1, ""), cm]));
    assert_mentions(
        &error_of(&cfg),
        &[
            "lab-configs/bad.yaml",
            "manifests[0] document 2",
            "kind",
            "\"ConfigMap\"",
            "Deployment",
        ],
    );
}

#[test]
fn service_port_out_of_range() {
    let svc = clusterip_service("web", "").replace("port: 80\n", "port: 70000\n");
    let cfg = format!("{NODES}{}", block(&[deployment("web", 1, ""), svc]));
    assert_mentions(
        &error_of(&cfg),
        &[
            "lab-configs/bad.yaml",
            "Service default/web",
            "spec.ports[0].port",
            "70000",
        ],
    );
    let svc = clusterip_service("web", "").replace("port: 80\n", "port: 0\n");
    let cfg = format!("{NODES}{}", block(&[deployment("web", 1, ""), svc]));
    assert_mentions(
        &error_of(&cfg),
        &["spec.ports[0].port", "0 is out of range"],
    );
}

#[test]
fn target_port_out_of_range() {
    let svc = clusterip_service("web", "").replace("targetPort: http", "targetPort: 65536");
    let cfg = format!("{NODES}{}", block(&[deployment("web", 1, ""), svc]));
    assert_mentions(&error_of(&cfg), &["spec.ports[0].targetPort", "65536"]);
}

#[test]
fn node_port_outside_range() {
    let svc = clusterip_service("web", "  type: NodePort\n")
        .replace("targetPort: http", "targetPort: 80\n    nodePort: 40000");
    let cfg = format!("{NODES}{}", block(&[deployment("web", 1, ""), svc]));
    assert_mentions(
        &error_of(&cfg),
        &[
            "lab-configs/bad.yaml",
            "spec.ports[0].nodePort",
            "40000",
            "30000-32767",
        ],
    );
}

#[test]
fn container_port_out_of_range() {
    let d = deployment("web", 1, "").replace("containerPort: 80", "containerPort: 0");
    let cfg = format!("{NODES}{}", block(&[d]));
    assert_mentions(
        &error_of(&cfg),
        &[
            "Deployment default/web",
            "containers[0].ports[0].containerPort",
            "0",
        ],
    );
}

#[test]
fn plan_port_out_of_range() {
    let cfg = format!("{NODES}plan:\n  - {{from: browser, to: ydzs-master, port: 65536}}\n");
    assert_mentions(&error_of(&cfg), &["plan[0].port", "65536"]);
}

#[test]
fn plan_unknown_service() {
    let cfg = format!(
        "{NODES}{}plan:\n  - {{from: browser, to: 10.96.0.1, service: default/nope}}\n",
        block(&[deployment("web", 1, ""), clusterip_service("web", "")])
    );
    assert_mentions(
        &error_of(&cfg),
        &["plan[0].service", "\"default/nope\"", "known: default/web"],
    );
}

#[test]
fn missing_manifest_file() {
    let cfg = format!("{NODES}manifests:\n  - file: manifests/does-not-exist.yaml\n");
    assert_mentions(
        &error_of(&cfg),
        &[
            "lab-configs/bad.yaml",
            "manifests[0].file",
            "does-not-exist.yaml",
        ],
    );
}

#[test]
fn bad_duration_and_taint_effect() {
    let cfg = format!(
        "{NODES}plan:\n  - {{from: browser, to: ydzs-master, port: 80, connectTimeout: soon}}\n"
    );
    assert_mentions(&error_of(&cfg), &["plan[0].connectTimeout", "\"soon\""]);
    let cfg = NODES.replace("effect: NoSchedule", "effect: Never");
    assert_mentions(&error_of(&cfg), &["nodes[0].taints[0].effect", "\"Never\""]);
}

#[test]
fn no_eligible_node_names_deployment_and_reason() {
    let d = deployment(
        "web",
        2,
        "      nodeSelector:\n        kubernetes.io/hostname: ydzs-node9\n",
    );
    let cfg = format!("{NODES}{}", block(&[d]));
    let msg = error_of(&cfg);
    assert_mentions(
        &msg,
        &[
            "lab-configs/bad.yaml",
            "no eligible node",
            "default/web",
            "nodeSelector kubernetes.io/hostname=ydzs-node9",
            "0/4 nodes",
        ],
    );
}

#[test]
fn no_eligible_node_because_of_taint() {
    let only_master = r#"
nodes:
  - name: ydzs-master
    ip: 10.151.30.11
    taints:
      - {key: node-role.kubernetes.io/control-plane, effect: NoSchedule}
"#;
    let cfg = format!("{only_master}{}", block(&[deployment("web", 1, "")]));
    assert_mentions(
        &error_of(&cfg),
        &[
            "no eligible node",
            "default/web",
            "untolerated taint",
            "node-role.kubernetes.io/control-plane",
        ],
    );
}

#[test]
fn unknown_yaml_error_is_not_a_panic_for_garbage() {
    for text in ["", "[]", "nodes: 3", ":\n:", "nodes:\n  - name: a\n"] {
        let _ = error_of(text);
    }
}

#[test]
fn duplicate_explicit_node_port() {
    let svc = |name: &str| {
        clusterip_service(name, "  type: NodePort\n")
            .replace("targetPort: http", "targetPort: 80\n    nodePort: 30080")
    };
    let cfg = format!(
        "{NODES}{}",
        block(&[deployment("web", 1, ""), svc("web"), svc("api")])
    );
    assert_mentions(
        &error_of(&cfg),
        &[
            "Service default/api",
            "spec.ports[0].nodePort",
            "30080",
            "default/web",
        ],
    );
}

#[test]
fn lb_target_needs_a_node_port_service() {
    let cfg = format!(
        "{NODES}loadBalancer: {{ip: 198.51.100.10}}\n{}plan:\n  - {{from: browser, to: loadBalancer}}\n",
        block(&[deployment("web", 1, ""), clusterip_service("web", "")])
    );
    assert_mentions(&error_of(&cfg), &["plan[0].to", "default/web", "ClusterIP"]);
}

#[test]
fn manifest_type_error_has_field_path_and_line() {
    let d = deployment("web", 1, "").replace("replicas: 1", "replicas: three");
    let msg = error_of(&format!("{NODES}{}", block(&[d])));
    assert_mentions(
        &msg,
        &[
            "lab-configs/bad.yaml",
            "manifests[0] document 1 (Deployment)",
            "spec.replicas",
            "\"three\"",
            "line 6",
        ],
    );
}

// --- the bad-config corpus, through the `lab` binary ----------------------------------------

fn lab_bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lab"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    c
}

/// What a refused config must look like: exit code 2, nothing on stdout, exactly one line on
/// stderr (`error: …`) that contains `expect`, and no panic.
fn assert_refused(args: &[&str], expect: &str) {
    let out = lab_bin().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let what = format!("lab {}: stderr {stderr:?}", args.join(" "));
    assert_eq!(out.status.code(), Some(2), "{what}");
    assert!(!stderr.contains("panicked"), "{what}");
    assert_eq!(lines.len(), 1, "{what}");
    assert!(lines[0].starts_with("error: "), "{what}");
    assert!(
        lines[0].contains(expect),
        "{what}\nexpected to contain {expect:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: stdout {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `tests/bad-configs/*.yaml`: each file starts with `# expect: <part of the error line>`;
/// the binary (debug or release, whichever `cargo test` built) refuses every one.
#[test]
fn bad_config_corpus() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/bad-configs");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "only {} bad configs", files.len());
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let head = String::from_utf8_lossy(&bytes);
        let expect = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` first line", path.display()));
        let rel = format!(
            "tests/bad-configs/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        assert_refused(&["scenario", "show", &rel], &format!("error: {rel}: "));
        assert_refused(&["scenario", "show", &rel], expect);
    }
}

/// A Deployment named `../evil` is refused in real mode too, before anything needs root: the
/// real mode loads the same config first.
#[test]
fn evil_deployment_name_refused_in_both_modes() {
    let rel = "tests/bad-configs/deployment-name-path.yaml";
    let expect = "metadata.name: \"../evil\" is not a valid Deployment name";
    assert_refused(&["scenario", "run", rel], expect);
    assert_refused(&["scenario", "run", rel, "--real", "--count", "1"], expect);
}

/// `-` reads the config from stdin, and a bad one there is refused the same way.
#[test]
fn stdin_config_is_checked_like_a_file() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/bad-configs/node-name-dotdot.yaml"
    ))
    .unwrap();
    let out = lab_with_stdin(&["scenario", "show", "-"], text.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("<stdin>: nodes[1].name: \"..\" is not a valid node name"),
        "{stderr}"
    );
}
