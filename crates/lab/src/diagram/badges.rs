//! Badges: what a node or the router did to a datagram (NAT rewrites, DROP, REJECT, the
//! load balancer's DNAT) and how the client judged the reply it got.

use nodeport::RewriteKind;
use nodestack::HopEvent;
use nodestack::Stage;
use vswitch::RouterEvent;
use vswitch::Summary;

use super::chains::{has_rst, what};
use super::model::{Mark, Place, Row};

/// The badges of one node hook: its NAT rewrites, a DROP/REJECT/INPUT verdict and a
/// conntrack INVALID state.
pub(super) fn node_badges(h: &HopEvent, rows: &mut Vec<Row>) {
    let at = Place::Node(h.node.clone());
    let masquerade = h
        .walk
        .steps
        .iter()
        .any(|s| s.target.starts_with("MASQUERADE"));
    for r in &h.rewrites {
        let (mark, tag) = match r.kind {
            RewriteKind::Dnat => (Mark::Dnat, "DNAT"),
            RewriteKind::Snat if masquerade => (Mark::Snat, "SNAT (MASQUERADE)"),
            RewriteKind::Snat => (Mark::Snat, "SNAT"),
            RewriteKind::UnSnat => (Mark::UnNat, "un-SNAT"),
            RewriteKind::UnDnat => (Mark::UnNat, "un-DNAT"),
            RewriteKind::IcmpInner => (Mark::UnNat, "un-NAT (ICMP payload)"),
        };
        let what = match r.kind {
            RewriteKind::Dnat => "destination",
            RewriteKind::Snat => "source",
            RewriteKind::UnSnat => "destination restored",
            RewriteKind::UnDnat => "source restored",
            RewriteKind::IcmpInner => "quoted header",
        };
        rows.push(Row::Badge {
            at: at.clone(),
            mark,
            tag: tag.into(),
            text: format!("{what} {} → {}", r.before, r.after),
        });
    }
    let verdict = |prefix: &str| {
        h.verdict
            .strip_prefix(prefix)
            .unwrap_or(&h.verdict)
            .to_string()
    };
    match h.stage {
        Stage::Drop => rows.push(Row::Badge {
            at: at.clone(),
            mark: Mark::Drop,
            tag: "DROP".into(),
            text: verdict("drop: "),
        }),
        Stage::Reject => rows.push(Row::Badge {
            at: at.clone(),
            mark: Mark::Reject,
            tag: "REJECT".into(),
            text: verdict("reject: "),
        }),
        Stage::Input => rows.push(Row::Badge {
            at: at.clone(),
            mark: Mark::Note,
            tag: "INPUT".into(),
            text: "delivered to the node's own stack".into(),
        }),
        _ => {}
    }
    if h.ct_state == Some("INVALID") {
        rows.push(Row::Badge {
            at,
            mark: Mark::Note,
            tag: "ct INVALID".into(),
            text: "conntrack has no entry for this datagram".into(),
        });
    }
}

/// The badges of one router hop: the load balancer's DNAT / un-DNAT (the hop before is
/// redrawn as going to the LB, and `lb_pending` makes the next hop leave from it), or a
/// DROP. `rows` are the rows so far.
pub(super) fn router_badges(r: &RouterEvent, lb_pending: &mut bool, rows: &mut Vec<Row>) {
    let lb = r.action.starts_with("LB ") || r.action.starts_with("drop: LB ");
    let at = if lb { Place::Lb } else { Place::Router };
    if r.action.starts_with("LB ") {
        // The frontend lives on the router: draw the hop as going to the LB.
        if let Some(Row::Arrow { to, .. }) = rows
            .iter_mut()
            .rev()
            .find(|row| matches!(row, Row::Arrow { .. }))
        {
            if *to == Place::Router {
                *to = Place::Lb;
            }
        }
        *lb_pending = true;
        // "LB nlb DNAT a → b" / "LB nlb un-DNAT a → b"
        let rest: Vec<&str> = r.action.splitn(4, ' ').collect();
        let (kind, detail) = match rest.as_slice() {
            [_, _, kind, detail] => (*kind, *detail),
            _ => ("", r.action.as_str()),
        };
        let (mark, tag, what) = if kind == "DNAT" {
            (Mark::Dnat, "LB DNAT", "destination")
        } else if kind.starts_with("un-") {
            (Mark::UnNat, "LB un-DNAT", "source restored")
        } else {
            (Mark::Note, "LB", "")
        };
        rows.push(Row::Badge {
            at,
            mark,
            tag: tag.into(),
            text: format!("{what} {detail}").trim().to_string(),
        });
    } else if r.out_iface.is_none() {
        let text = r.action.strip_prefix("drop: ").unwrap_or(&r.action);
        rows.push(Row::Badge {
            at,
            mark: Mark::Drop,
            tag: "DROP".into(),
            text: text.to_string(),
        });
    }
}

/// What the client makes of the reply `s` to the SYN it sent to `dialled`.
pub(super) fn client_verdict(client: &str, s: &Summary, dialled: &vswitch::FlowTuple) -> Row {
    let at = Place::Edge(client.to_string());
    let expected = s.tuple.src == dialled.dst && s.tuple.sport == dialled.dport;
    let (mark, tag, text) = if s.icmp.is_some() {
        (
            Mark::Reject,
            "REFUSED",
            format!("{} from {}: connection refused", what(s), s.tuple.src),
        )
    } else if has_rst(s) {
        (
            Mark::Reject,
            "REFUSED",
            format!(
                "RST from {}:{}: connection refused",
                s.tuple.src, s.tuple.sport
            ),
        )
    } else if !expected {
        (
            Mark::Warn,
            "UNEXPECTED",
            format!(
                "{} from {}:{}, but {client} dialled {}:{}: not its connection",
                what(s),
                s.tuple.src,
                s.tuple.sport,
                dialled.dst,
                dialled.dport
            ),
        )
    } else {
        (
            Mark::Ok,
            "OK",
            format!(
                "{} from {}:{}: connection established",
                what(s),
                s.tuple.src,
                s.tuple.sport
            ),
        )
    };
    Row::Badge {
        at,
        mark,
        tag: tag.into(),
        text,
    }
}
