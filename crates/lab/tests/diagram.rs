//! `--diagram`: the SVG of one traced request, parsed and rasterized with resvg.

mod common;
use common::*;

use lab::plan::expand_plan;
use lab::setup::world_spec;
use lab::{Cluster, Outcome, RequestResult};

/// Every request of a shipped scenario's plan, each with its structured hop events, from a
/// world built and driven the way the embedded runner drives it (`world_spec` → `World`,
/// one request at a time; the pod whose access log grew answered it).
fn run_plan(scenario: &str) -> (Cluster, Vec<(RequestResult, Vec<sim::TraceEvent>)>) {
    let path = configs_dir().join(format!("{scenario}.yaml"));
    let cluster = lab::load_cluster(&path, None).unwrap();
    let mut world = sim::World::new(world_spec(&cluster, true, true)).unwrap();
    world.set_services(&cluster.services, &cluster.slices);
    let pods: Vec<String> = cluster.pods.iter().map(|p| p.name.clone()).collect();
    let mut seen = vec![0; pods.len()];
    let mut out = Vec::new();
    for req in expand_plan(&cluster).unwrap() {
        let step = req.step;
        let client = cluster.client(&step.client).unwrap();
        let opts = sim::RequestOpts {
            path: step.path.clone(),
            connect_timeout: step.connect_timeout,
            max_time: step.max_time,
            host: None,
        };
        let id = world.start_request(&step.client, req.dst, opts).unwrap();
        let done = world.run_until_complete(id).unwrap();
        world.poll(world.now());
        let (mut pod, mut logged) = (None, None);
        for (k, name) in pods.iter().enumerate() {
            let entries = world.access_entries(name);
            if entries.len() > seen[k] {
                pod = Some(name.clone());
                logged = entries.last().map(|e| e.remote_addr);
                seen[k] = entries.len();
            }
        }
        let result = RequestResult {
            client: client.name.clone(),
            client_ip: client.ip.into(),
            target: req.label,
            outcome: match done.kind {
                sim::OutcomeKind::Ok => Outcome::Ok,
                sim::OutcomeKind::Timeout => Outcome::Timeout,
                sim::OutcomeKind::Refused => Outcome::Refused,
                _ => Outcome::Reset,
            },
            status: done.status,
            pod,
            logged_client_ip: logged,
            elapsed_ms: done.elapsed.as_millis() as u64,
            curl_message: (!done.message.is_empty()).then(|| done.message.clone()),
            reply: None,
        };
        out.push((result, world.trace_for(id)));
        world.clear_trace();
    }
    (cluster, out)
}

/// Request `number` (1-based) of a shipped scenario and its hop events.
fn traced(scenario: &str, number: usize) -> (Cluster, RequestResult, Vec<sim::TraceEvent>) {
    let (cluster, mut all) = run_plan(scenario);
    let (request, hops) = all.swap_remove(number - 1);
    assert!(!hops.is_empty(), "{scenario} #{number}: no hop events");
    (cluster, request, hops)
}

/// Parse with usvg (system fonts, so text is shaped) and render; returns the pixmap.
fn rasterize(svg: &str) -> resvg::tiny_skia::Pixmap {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opt).expect("valid SVG");
    let size = tree.size().to_int_size();
    assert!(size.width() >= 600 && size.height() >= 400, "{size:?}");
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap
}

/// Share of pixels that are not (near) white.
fn ink(p: &resvg::tiny_skia::Pixmap) -> f64 {
    let px = p.pixels();
    let dark = px
        .iter()
        .filter(|c| c.alpha() > 0 && (c.red() < 200 || c.green() < 200 || c.blue() < 200))
        .count();
    dark as f64 / px.len() as f64
}

fn render_checked(scenario: &str, number: usize) -> (Cluster, RequestResult, String) {
    let (cluster, request, hops) = traced(scenario, number);
    let svg = lab::diagram::render_svg_numbered(&cluster, number, &request, &hops);
    let pixmap = rasterize(&svg);
    let ink = ink(&pixmap);
    assert!(ink > 0.01 && ink < 0.6, "{scenario}: {ink}");
    // Every node and pod of the topology is on the picture.
    for n in &cluster.nodes {
        assert!(svg.contains(&n.name), "{scenario}: node {}", n.name);
        assert!(
            svg.contains(&format!("eth0 {}/", n.ip)),
            "{scenario}: {}",
            n.ip
        );
        assert!(svg.contains(&n.pod_cidr.to_string()));
    }
    for p in &cluster.pods {
        assert!(svg.contains(&p.name), "{scenario}: pod {}", p.name);
        assert!(
            svg.contains(&format!("pod {}", p.ip)),
            "{scenario}: {}",
            p.ip
        );
    }
    for c in &cluster.clients {
        assert!(svg.contains(&c.name) && svg.contains(&c.ip.to_string()));
    }
    assert!(svg.contains(&format!("{scenario} — request #{number}")));
    (cluster, request, svg)
}

/// Count of `<text …>tag</text>` badges.
fn badges(svg: &str, tag: &str) -> usize {
    svg.matches(&format!(">{tag}</text>")).count()
}

#[test]
fn seed_cluster_shows_dnat_masquerade_and_the_logged_master_ip() {
    let (_, request, svg) = render_checked("seed-cluster", 1);
    assert_eq!(request.outcome, Outcome::Ok);
    assert_eq!(badges(&svg, "DNAT"), 1, "{svg}");
    assert_eq!(badges(&svg, "SNAT (MASQUERADE)"), 1);
    assert_eq!(badges(&svg, "un-SNAT"), 1);
    assert_eq!(badges(&svg, "un-DNAT"), 1);
    assert_eq!(badges(&svg, "DROP"), 0);
    // MASQUERADE to the master's address, and the hop after it carries that source.
    assert!(svg.contains("source 203.0.113.11:"));
    assert!(svg.contains("→ 10.151.30.11:"));
    assert!(svg.contains("10.151.30.11:"));
    assert!(
        svg.contains("nginx logged client IP 10.151.30.11 (not the client&apos;s 203.0.113.11)")
    );
    // SYN and reply arrows, numbered 1..=8: client, router, master, node2, pod and back.
    assert!(
        svg.contains(">8</text>") && !svg.contains(">9</text>"),
        "{svg}"
    );
    assert!(svg.contains(">OK</text>"));

    std::fs::write("/tmp/seed-cluster.svg", &svg).unwrap();
    rasterize(&svg).save_png("/tmp/seed-cluster.png").unwrap();
}

#[test]
fn seed_local_ends_in_a_drop() {
    let (_, request, svg) = render_checked("seed-local", 1);
    assert_eq!(request.outcome, Outcome::Timeout);
    assert_eq!(badges(&svg, "DROP"), 1, "{svg}");
    assert!(svg.contains("default/nginx has no local endpoints"));
    assert_eq!(badges(&svg, "DNAT"), 0);
    assert_eq!(badges(&svg, "RETRANSMIT"), 1);
    assert_eq!(badges(&svg, "TIMEOUT"), 1);
    std::fs::write("/tmp/seed-local.svg", &svg).unwrap();
    rasterize(&svg).save_png("/tmp/seed-local.png").unwrap();
}

#[test]
fn local_imbalance_draws_the_load_balancer() {
    let (cluster, request, svg) = render_checked("local-imbalance", 1);
    let lb = cluster.load_balancer.as_ref().unwrap();
    assert_eq!(request.outcome, Outcome::Ok);
    assert!(svg.contains(&format!("frontend {}", lb.ip)));
    assert_eq!(badges(&svg, "LB DNAT"), 1, "{svg}");
    assert_eq!(badges(&svg, "LB un-DNAT"), 1);
    assert_eq!(badges(&svg, "DNAT"), 1);
    assert_eq!(badges(&svg, "SNAT (MASQUERADE)"), 0);
    // Local keeps the client IP.
    assert!(svg.contains(&format!(
        "nginx logged client IP {} (the real client)",
        request.client_ip
    )));
    std::fs::write("/tmp/local-imbalance.svg", &svg).unwrap();
    rasterize(&svg)
        .save_png("/tmp/local-imbalance.png")
        .unwrap();
}

#[test]
fn pod_to_nodeport_shows_the_asymmetric_return() {
    let (_, ok, svg) = render_checked("pod-to-nodeport", 1);
    assert!(svg.contains("client pod "));
    if ok.outcome == Outcome::Ok {
        assert_eq!(badges(&svg, "BYPASSED"), 0, "{svg}");
    }
    // The first request that failed: node3's reply goes straight back towards the client
    // pod, and node1's KUBE-FORWARD drops it as conntrack INVALID before it gets there.
    let (_, all) = run_plan("pod-to-nodeport");
    let failed = all
        .iter()
        .position(|(r, _)| r.outcome != Outcome::Ok)
        .expect("pod-to-nodeport: some request fails")
        + 1;
    let (_, request, svg) = render_checked("pod-to-nodeport", failed);
    assert_ne!(request.outcome, Outcome::Ok);
    assert_eq!(badges(&svg, "DNAT"), 1, "{svg}");
    assert_eq!(badges(&svg, "BYPASSED"), 1, "{svg}");
    assert_eq!(badges(&svg, "DROP"), 1, "{svg}");
    assert_eq!(badges(&svg, "UNEXPECTED"), 0, "{svg}");
    assert_eq!(badges(&svg, "un-DNAT"), 0);
    std::fs::write("/tmp/pod-to-nodeport.svg", &svg).unwrap();
    rasterize(&svg)
        .save_png("/tmp/pod-to-nodeport.png")
        .unwrap();
}

#[test]
fn no_masquerade_reply_bypasses_the_master() {
    let (_, request, svg) = render_checked("no-masquerade", 1);
    assert_ne!(request.outcome, Outcome::Ok);
    assert!(svg.contains("masquerade: OFF"));
    assert_eq!(badges(&svg, "DNAT"), 1);
    assert_eq!(badges(&svg, "SNAT (MASQUERADE)"), 0);
    assert_eq!(badges(&svg, "BYPASSED"), 1, "{svg}");
    assert_eq!(badges(&svg, "UNEXPECTED"), 1, "{svg}");
    // The browser's RST is dropped by the router.
    assert_eq!(badges(&svg, "DROP"), 1, "{svg}");
    std::fs::write("/tmp/no-masquerade.svg", &svg).unwrap();
    rasterize(&svg).save_png("/tmp/no-masquerade.png").unwrap();
}

#[test]
fn no_endpoints_is_rejected() {
    let (_, request, svg) = render_checked("no-endpoints", 1);
    assert_eq!(request.outcome, Outcome::Refused);
    assert_eq!(badges(&svg, "REJECT"), 1, "{svg}");
    assert_eq!(badges(&svg, "REFUSED"), 2, "{svg}");
}

#[test]
fn every_shipped_scenario_renders() {
    for e in std::fs::read_dir(configs_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let name = p.file_stem().unwrap().to_str().unwrap().to_string();
        let (_, _, svg) = render_checked(&name, 1);
        assert!(svg.contains(">1</text>"), "{name}: no numbered arrow");
    }
}

#[test]
fn text_is_escaped_and_hop_lines_follow_the_picture() {
    let (mut cluster, request, hops) = traced("seed-cluster", 1);
    cluster.description = "a <b> & \"c\" 'd'".into();
    let svg = lab::diagram::render_svg(&cluster, &request, &hops);
    assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;"));
    assert!(svg.contains("traced request"));
    rasterize(&svg);
    let lines = lab::diagram::hop_lines(&hops);
    assert!(
        lines[0].starts_with("— SYN: browser 203.0.113.11:"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[SNAT (MASQUERADE)] at ydzs-master")),
        "{lines:#?}"
    );
    let arrows = lines
        .iter()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(arrows, 8, "{lines:#?}");

    // No hops (tracing off): still a valid picture of the topology.
    let svg = lab::diagram::render_svg(&cluster, &request, &[]);
    assert!(svg.contains("no hop events"));
    rasterize(&svg);
}
