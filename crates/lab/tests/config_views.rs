//! Config fields for links, plan `scale:`/`wait:` entries: parsing and their errors.

mod common;
use common::*;

use std::time::Duration;

fn base(plan: &str, extra: &str) -> String {
    format!(
        "{NODES}{extra}{}plan:\n  - {{from: browser, to: ydzs-master, port: 80}}\n{plan}",
        block(&[deployment("web", 2, ""), clusterip_service("web", "")])
    )
}

#[test]
fn links_parse_with_units() {
    let c = load(&base(
        "",
        "links:\n  - {link: browser, delay: 50ms, jitter: 10ms, loss: 0.2, rate: 10mbit}\n  - {link: web, rate: 512kbit}\n",
    ))
    .unwrap();
    assert_eq!(c.links.len(), 2);
    let l = &c.links[0];
    assert_eq!(
        (l.delay, l.jitter, l.loss, l.rate),
        (
            Duration::from_millis(50),
            Duration::from_millis(10),
            0.2,
            Some(10_000_000)
        )
    );
    assert_eq!(c.links[1].rate, Some(512_000));
    assert_eq!(c.links[1].delay, Duration::ZERO);
}

#[test]
fn link_errors_name_field_and_value() {
    let msg = error_of(&base("", "links:\n  - {link: nobody, delay: 5ms}\n"));
    assert_mentions(&msg, &["links[0].link", "\"nobody\"", "browser"]);
    let msg = error_of(&base("", "links:\n  - {link: browser, loss: 1.5}\n"));
    assert_mentions(&msg, &["links[0].loss", "1.5"]);
    let msg = error_of(&base("", "links:\n  - {link: browser, rate: fast}\n"));
    assert_mentions(&msg, &["links[0].rate", "fast", "10mbit"]);
    let msg = error_of(&base("", "links:\n  - {link: browser, delay: soon}\n"));
    assert_mentions(&msg, &["links[0].delay", "soon"]);
    let msg = error_of(&base("", "links:\n  - {link: browser, bandwidth: 1}\n"));
    assert_mentions(&msg, &["bandwidth"]);
}

#[test]
fn scale_and_wait_entries() {
    let c = load(&base(
        "  - scale: {deployment: web, replicas: 1}\n  - wait: 10s\n  - {from: browser, to: ydzs-master, port: 80, count: 2}\n",
        "",
    ))
    .unwrap();
    assert_eq!(c.plan.len(), 2);
    assert_eq!(c.actions.len(), 2);
    assert_eq!((c.actions[0].before, c.actions[0].entry), (1, 1));
    assert!(matches!(
        &c.actions[0].kind,
        cluster::ActionKind::Scale { namespace, deployment, replicas: 1 }
            if namespace == "default" && deployment == "web"
    ));
    assert_eq!(
        c.actions[1].kind,
        cluster::ActionKind::Wait(Duration::from_secs(10))
    );
    // Scaling removes the newest pod and its endpoint.
    let sc = c.actions[0].scaled.as_ref().unwrap();
    assert_eq!(sc.removed.len(), 1);
    assert!(sc.added.is_empty());
    assert_eq!(sc.removed[0].name, c.pods[1].name);
    assert_eq!(sc.pods.len(), c.pods.len() - 1);
    assert!(sc
        .slices
        .iter()
        .all(|s| s.endpoints.iter().all(|e| e.ip != sc.removed[0].ip)));
    assert!(c.actions[1].scaled.is_none());
}

#[test]
fn scale_errors() {
    let msg = error_of(&base("  - scale: {deployment: nope, replicas: 0}\n", ""));
    assert_mentions(&msg, &["plan[1].scale.deployment", "nope", "default/web"]);
    // Scaling up needs an eligible node (web-pinned can only go to the tainted master).
    let cfg = format!(
        "{NODES}{}plan:\n  - {{from: browser, to: ydzs-master, port: 80}}\n  - scale: {{deployment: pinned, replicas: 1}}\n",
        block(&[deployment(
            "pinned",
            0,
            "      nodeSelector: {kubernetes.io/hostname: ydzs-master}\n"
        )])
    );
    let msg = error_of(&cfg);
    assert_mentions(
        &msg,
        &[
            "plan[1].scale.replicas",
            "no eligible node",
            "default/pinned",
        ],
    );
    let msg = error_of(&base("  - scale: {deployment: web, replicas: -1}\n", ""));
    assert_mentions(&msg, &["plan[1].scale.replicas", "-1"]);
    let msg = error_of(&base(
        "  - {scale: {deployment: web, replicas: 0}, from: browser}\n",
        "",
    ));
    assert_mentions(&msg, &["plan[1]", "no request fields"]);
    let msg = error_of(&base("  - wait: forever\n", ""));
    assert_mentions(&msg, &["plan[1].wait", "forever"]);
    let msg = error_of(&base("  - {to: ydzs-master}\n", ""));
    assert_mentions(&msg, &["plan[1].from", "missing"]);
}

#[test]
fn scale_up_places_new_replicas_like_the_scheduler() {
    let c = load(&base(
        "  - scale: {deployment: web, replicas: 5}\n  - scale: {deployment: web, replicas: 4}\n",
        "",
    ))
    .unwrap();
    let up = c.actions[0].scaled.as_ref().unwrap();
    assert_eq!(up.added.len(), 3);
    assert!(up.removed.is_empty());
    // 2 + 3 = 5 pods over the 3 untainted workers: least loaded first (2/2/1).
    let mut per_node = std::collections::BTreeMap::new();
    for p in &up.pods {
        *per_node.entry(p.node.as_str()).or_insert(0) += 1;
        assert!(p.name.starts_with("web-"));
    }
    assert!(!per_node.contains_key("ydzs-master"), "{per_node:?}");
    let mut counts: Vec<i32> = per_node.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [1, 2, 2], "{per_node:?}");
    // New addresses are fresh, names unique, every pod has an endpoint.
    let ips: std::collections::BTreeSet<_> = up.pods.iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), 5);
    let eps: usize = up.slices.iter().map(|s| s.endpoints.len()).sum();
    assert_eq!(eps, 5);
    // Then down to 4: the newest pod goes.
    let down = c.actions[1].scaled.as_ref().unwrap();
    assert_eq!(down.removed, vec![up.added[2].clone()]);
    assert_eq!(down.pods.len(), 4);
}
