//! From hop events to datagram chains: each datagram followed through the fabric from the
//! port that sent it until it is delivered, dropped or lost; and how a datagram is named.

use nodestack::Stage;
use sim::TraceEvent;
use vswitch::{Direction, Summary};

use super::model::Flow;

/// One datagram followed through the fabric: from the edge port that sent it until it is
/// delivered, dropped or lost.
pub(super) struct Chain<'a> {
    pub(super) origin: String,
    pub(super) events: Vec<&'a TraceEvent>,
    pub(super) first: Summary,
    pub(super) cur: Summary,
    /// (node, datagram as it arrived there) while the datagram is inside a node: every
    /// hook of that node reports the arriving datagram as its `before`.
    pub(super) inside: Option<(String, Summary)>,
    pub(super) done: bool,
}

/// Same datagram (TTL aside).
pub(super) fn same(a: &Summary, b: &Summary) -> bool {
    a.tuple == b.tuple
        && a.flags == b.flags
        && a.payload_len == b.payload_len
        && a.icmp == b.icmp
        && a.inner == b.inner
}

pub(super) fn edge_of_link(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

pub(super) fn chains(hops: &[TraceEvent]) -> Vec<Chain<'_>> {
    let mut out: Vec<Chain<'_>> = Vec::new();
    for ev in hops {
        if let TraceEvent::Link(l) = ev {
            if l.dir == Direction::FromDevice {
                if let Some(s) = &l.summary {
                    out.push(Chain {
                        origin: edge_of_link(&l.link).to_string(),
                        events: vec![ev],
                        first: s.clone(),
                        cur: s.clone(),
                        inside: None,
                        done: false,
                    });
                }
                continue;
            }
        }
        let before = match ev {
            TraceEvent::Link(l) => l.summary.as_ref(),
            TraceEvent::Node(h) => h.before.as_ref(),
            TraceEvent::Router(r) => r.before.as_ref(),
            TraceEvent::Fabric(f) => f.summary.as_ref(),
        };
        let Some(before) = before else { continue };
        let node = match ev {
            TraceEvent::Node(h) => Some(h.node.as_str()),
            _ => None,
        };
        let found = out.iter_mut().rev().find(|c| {
            !c.done
                && (same(&c.cur, before)
                    || matches!((&c.inside, node), (Some((n, b)), Some(node))
                        if n == node && same(b, before)))
        });
        let chain = match found {
            Some(c) => c,
            None => {
                // A datagram the node's own stack generated (no edge port sent it).
                if let TraceEvent::Node(h) = ev {
                    if matches!(h.stage, Stage::Output | Stage::LocalOut) {
                        if let Some(a) = &h.after {
                            out.push(Chain {
                                origin: h.node.clone(),
                                events: vec![ev],
                                first: before.clone(),
                                cur: a.clone(),
                                inside: None,
                                done: false,
                            });
                        }
                    }
                }
                continue;
            }
        };
        chain.events.push(ev);
        match ev {
            TraceEvent::Link(_) => chain.done = true,
            TraceEvent::Node(h) => {
                if !matches!(&chain.inside, Some((n, _)) if *n == h.node) {
                    chain.inside = Some((h.node.clone(), before.clone()));
                }
                if let Some(a) = &h.after {
                    chain.cur = a.clone();
                }
                if matches!(h.stage, Stage::Drop | Stage::Input) {
                    chain.done = true;
                }
            }
            TraceEvent::Router(r) => {
                if let Some(a) = &r.after {
                    chain.cur = a.clone();
                }
                if r.out_iface.is_none() {
                    chain.done = true;
                }
            }
            TraceEvent::Fabric(f) => {
                chain.inside = None;
                if f.to.is_none() {
                    chain.done = true;
                }
            }
        }
    }
    out
}

pub(super) fn is_pure_syn(s: &Summary) -> bool {
    s.icmp.is_none() && s.flags == "S"
}

pub(super) fn has_rst(s: &Summary) -> bool {
    s.icmp.is_none() && s.flags.contains('R')
}

/// `SYN`, `SYN-ACK`, `RST`, … or the ICMP message.
pub(super) fn what(s: &Summary) -> String {
    if let Some((ty, code)) = s.icmp {
        return match (ty, code) {
            (3, 3) => "ICMP port unreachable".into(),
            (3, c) => format!("ICMP unreachable (code {c})"),
            (11, _) => "ICMP time exceeded".into(),
            (0, _) => "ICMP echo reply".into(),
            (8, _) => "ICMP echo request".into(),
            (t, c) => format!("ICMP type {t} code {c}"),
        };
    }
    match s.flags {
        "S" => "SYN".into(),
        "SA" => "SYN-ACK".into(),
        "R" | "RA" => "RST".into(),
        "A" => "ACK".into(),
        "" => "no flags".into(),
        f => f.to_string(),
    }
}

/// `src:sport → dst:dport` (ICMP: `src → dst`) and what the datagram is.
pub(super) fn tuple_label(s: &Summary) -> String {
    let t = &s.tuple;
    if s.icmp.is_some() {
        format!("{} → {}  {}", t.src, t.dst, what(s))
    } else {
        format!("{} → {}  {}", t.src_addr(), t.dst_addr(), what(s))
    }
}

pub(super) fn flow_of(s: &Summary, client: &str, origin: &str) -> Flow {
    if s.icmp.is_some() || has_rst(s) {
        Flow::Error
    } else if origin == client {
        Flow::Syn
    } else {
        Flow::Reply
    }
}
