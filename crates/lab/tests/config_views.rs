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
        lab::cluster::ActionKind::Scale { namespace, deployment, replicas: 1 }
            if namespace == "default" && deployment == "web"
    ));
    assert_eq!(
        c.actions[1].kind,
        lab::cluster::ActionKind::Wait(Duration::from_secs(10))
    );
    // Scaling removes the newest pod and its endpoint.
    let (pods, slices, removed) =
        lab::Cluster::scaled(&c.pods, &c.slices, "default", "web", 1).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(pods.len(), c.pods.len() - 1);
    assert!(slices
        .iter()
        .all(|s| s.endpoints.iter().all(|e| e.ip != removed[0].ip)));
}

#[test]
fn scale_errors() {
    let msg = error_of(&base("  - scale: {deployment: nope, replicas: 0}\n", ""));
    assert_mentions(&msg, &["plan[1].scale.deployment", "nope", "default/web"]);
    let msg = error_of(&base("  - scale: {deployment: web, replicas: 5}\n", ""));
    assert_mentions(&msg, &["plan[1].scale.replicas", "not supported"]);
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
