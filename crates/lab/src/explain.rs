//! A request's story in plain words, derived from its hop events: which node kube-proxy ran
//! on, whether it had a local endpoint, which pod DNAT chose, whether MASQUERADE rewrote the
//! source (and so which address nginx logs), or why the SYN was dropped or rejected.
//!
//! Used by `lab scenario run --explain` and `lab serve`. Pure: cluster + result + hops in,
//! text out.

use nodeport::RewriteKind;
use nodestack::{HopEvent, Stage};
use sim::TraceEvent;

use crate::report::{Outcome, RequestResult};
use cluster::Cluster;

/// The explanation of one request (see the module docs).
pub fn explain(cluster: &Cluster, r: &RequestResult, hops: &[TraceEvent]) -> String {
    let node_hops: Vec<&HopEvent> = hops
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Node(h) => Some(h),
            _ => None,
        })
        .collect();
    let mut parts: Vec<String> = Vec::new();
    if let Some(lb) = lb_sentence(hops) {
        parts.push(lb);
    }
    let dnat = node_hops.iter().find_map(|h| {
        h.rewrites
            .iter()
            .find(|w| w.kind == RewriteKind::Dnat)
            .map(|w| (h, w))
    });
    let stop = node_hops
        .iter()
        .find(|h| matches!(h.stage, Stage::Drop | Stage::Reject));
    let router_drop = router_drop_sentence(hops, r);
    match (dnat, stop, &router_drop) {
        // A UDP datagram reusing an earlier one's 5-tuple: no rule was walked.
        (Some((h, w)), _, _) if h.walk.steps.is_empty() => {
            let to = w.after.ip();
            let pod = cluster
                .pods
                .iter()
                .find(|p| std::net::IpAddr::V4(p.ip) == to);
            parts.push(format!(
                "Same 5-tuple as an earlier packet: {}'s conntrack entry, not the rules, DNATs it to {}{to}{}.",
                h.node,
                pod.map(|p| format!("{} (", p.name)).unwrap_or_default(),
                if pod.is_some() { ")" } else { "" },
            ));
        }
        (Some((h, w)), _, _) => parts.push(dnat_sentence(cluster, h, wire::v4(w.after.ip()))),
        (None, Some(h), _) => parts.push(stop_sentence(h, r)),
        (None, None, Some(s)) => parts.push(s.clone()),
        (None, None, None) => {}
    }
    if let Some(s) = snat_sentence(&node_hops) {
        parts.push(s);
    } else if r.outcome == Outcome::Ok {
        if let Some(ip) = r.logged_client_ip {
            parts.push(format!(
                "No node rewrote the source on the way, so nginx logs {ip}{}.",
                if ip == r.client_ip {
                    ", the client's real address"
                } else {
                    ""
                }
            ));
        }
    }
    if r.reply.is_some() && r.outcome == Outcome::Timeout && dnat.is_some() {
        parts.push(format!(
            "No answer reached {} within {:.1} s: the datagram went where nobody answers.",
            r.client,
            r.elapsed_ms as f64 / 1000.0
        ));
    }
    let told = dnat.is_some() || stop.is_some() || router_drop.is_some();
    if parts.is_empty() || (!told && r.outcome != Outcome::Ok) {
        parts.push(outcome_sentence(r));
    }
    parts.join(" ")
}

/// "The load balancer sent it to …" from the router's LB DNAT.
fn lb_sentence(hops: &[TraceEvent]) -> Option<String> {
    hops.iter().find_map(|e| match e {
        TraceEvent::Router(ev) if ev.action.starts_with("LB ") && ev.action.contains(" DNAT ") => {
            let after = ev.after.as_ref()?;
            Some(format!(
                "The load balancer forwarded the connection to {}:{}.",
                after.tuple.dst, after.tuple.dport
            ))
        }
        _ => None,
    })
}

/// The router (or the LB) dropped the SYN: why, and what the client saw.
fn router_drop_sentence(hops: &[TraceEvent], r: &RequestResult) -> Option<String> {
    let reason = hops.iter().find_map(|e| match e {
        TraceEvent::Router(ev) if ev.out_iface.is_none() => ev.action.strip_prefix("drop: "),
        _ => None,
    })?;
    Some(format!(
        "The router drops the SYN ({reason}), so no node sees it; curl {}.",
        match r.outcome {
            Outcome::Timeout => format!(
                "retries until its connect timeout ({:.1} s)",
                r.elapsed_ms as f64 / 1000.0
            ),
            o => format!("ends with {}", o.as_str()),
        }
    ))
}

/// Which pod DNAT chose, and why that one could be chosen (the service's policy and
/// whether the node had an endpoint of its own).
fn dnat_sentence(cluster: &Cluster, h: &HopEvent, pod_ip: std::net::Ipv4Addr) -> String {
    let Some(pod) = cluster.pods.iter().find(|p| p.ip == pod_ip) else {
        return format!(
            "kube-proxy on {} DNATed the connection to {pod_ip}.",
            h.node
        );
    };
    let slices: Vec<_> = cluster
        .slices
        .iter()
        .filter(|s| s.endpoints.iter().any(|e| e.ip == pod_ip))
        .collect();
    let local = slices.iter().any(|s| {
        s.endpoints
            .iter()
            .any(|e| e.node_name.as_deref() == Some(h.node.as_str()))
    });
    let service_of = |s: &&nodeport::EndpointSlice| {
        cluster
            .services
            .iter()
            .find(|v| v.namespace == s.service.namespace && v.name == s.service.name)
    };
    // With several Services in front of the pod, the one whose (node) port was dialled.
    let dialled = h
        .rewrites
        .iter()
        .find(|w| w.kind == RewriteKind::Dnat)
        .map(|w| w.before.port());
    let svc = slices
        .iter()
        .filter_map(&service_of)
        .find(|v| {
            v.ports
                .iter()
                .any(|p| Some(p.port) == dialled || p.node_port.is_some() && p.node_port == dialled)
        })
        .or_else(|| slices.first().and_then(service_of));
    let policy_local =
        svc.is_some_and(|v| v.external_traffic_policy == nodeport::TrafficPolicy::Local);
    match (pod.node == h.node, local, policy_local) {
        (true, _, true) => format!(
            "{} has a local endpoint and the policy is Local, so DNAT chose {} on {} itself.",
            h.node, pod.name, pod.node
        ),
        (true, _, false) => format!(
            "kube-proxy on {} (externalTrafficPolicy: Cluster, any endpoint) DNATed to {}, which runs on {} itself.",
            h.node, pod.name, pod.node
        ),
        (false, true, _) => format!(
            "kube-proxy on {} (externalTrafficPolicy: Cluster, any endpoint) DNATed to {} on {}, although {} has an endpoint of its own.",
            h.node, pod.name, pod.node, h.node
        ),
        (false, false, _) => format!(
            "{} has no local endpoint, so DNAT chose {} on {}.",
            h.node, pod.name, pod.node
        ),
    }
}

/// Why the SYN went no further.
fn stop_sentence(h: &HopEvent, r: &RequestResult) -> String {
    let reason = h
        .verdict
        .strip_prefix("drop: ")
        .or_else(|| h.verdict.strip_prefix("reject: "))
        .unwrap_or(&h.verdict);
    let local = reason.contains("no local endpoints");
    // A UDP request's first packet is a datagram, not a SYN, and its client is not curl.
    let (pkt, client) = if r.reply.is_some() {
        ("datagram", "the UDP client")
    } else {
        ("SYN", "curl")
    };
    let what = match (h.stage, local) {
        (Stage::Drop, true) => {
            let svc = reason.split_whitespace().next().unwrap_or("the service");
            format!(
                "{} has no local endpoint for {svc} (externalTrafficPolicy: Local), so kube-proxy drops the {pkt}",
                h.node
            )
        }
        (Stage::Drop, false) => format!("{} drops the {pkt} ({reason})", h.node),
        _ => format!("kube-proxy on {} rejects the {pkt} ({reason})", h.node),
    };
    let then = match (r.outcome, r.reply.is_some()) {
        (Outcome::Timeout, false) => format!(
            "; curl retries until its connect timeout ({:.1} s).",
            r.elapsed_ms as f64 / 1000.0
        ),
        (Outcome::Timeout, true) => format!(
            "; no answer comes and {client} gives up after {:.1} s.",
            r.elapsed_ms as f64 / 1000.0
        ),
        (Outcome::Refused, _) => format!(", so {client} reports connection refused."),
        (o, _) => format!("; {client}: {}.", o.as_str()),
    };
    format!("{what}{then}")
}

/// MASQUERADE (or SNAT) on the SYN's way: the interface and the new source.
fn snat_sentence(hops: &[&HopEvent]) -> Option<String> {
    hops.iter().find_map(|h| {
        let w = h.rewrites.iter().find(|w| w.kind == RewriteKind::Snat)?;
        if h.walk.steps.is_empty() {
            return Some(format!(
                "Its conntrack entry also rewrote the source to {}, as for the flow's first packet.",
                w.after.ip()
            ));
        }
        let iface = h
            .iface_out
            .map(|i| i.to_string())
            .unwrap_or_else(|| "its interface".into());
        let masq = h.walk.steps.iter().any(|s| s.target.starts_with("MASQUERADE"));
        Some(format!(
            "The packet leaves {} through {iface}, so {} rewrote the source to {}, and nginx logs that address.",
            h.node,
            if masq { "MASQUERADE" } else { "SNAT" },
            w.after.ip()
        ))
    })
}

/// When the hops say nothing kube-proxy did.
fn outcome_sentence(r: &RequestResult) -> String {
    match r.outcome {
        Outcome::Ok => format!("{} got an answer from {}.", r.client, r.target),
        Outcome::Timeout => format!(
            "No answer reached {}; curl gave up after {:.1} s (connect timeout).",
            r.client,
            r.elapsed_ms as f64 / 1000.0
        ),
        Outcome::Refused => format!("{} was refused (TCP RST or ICMP unreachable).", r.target),
        o => format!("The connection ended: {}.", o.as_str()),
    }
}
