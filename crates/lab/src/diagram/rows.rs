//! The sequence part of the diagram as rows: the SYN, the reply and the client's RST as
//! phases, each made of numbered arrows (segment deliveries) and badges.

use nodestack::Stage;
use sim::{FabricEvent, TraceEvent};
use vswitch::{Direction, FlowTuple, Summary};

use super::badges::{client_verdict, node_badges, router_badges};
use super::chains::{
    chains, edge_of_link, flow_of, has_rst, is_pure_syn, tuple_label, what, Chain,
};
use super::model::{Flow, Mark, Place, Row};

/// Rows of one phase (the events of one datagram).
fn phase_rows(events: &[&TraceEvent], flow: Flow, n: &mut usize, rows: &mut Vec<Row>) {
    let mut lb_pending = false;
    for ev in events {
        match ev {
            TraceEvent::Link(_) => {}
            TraceEvent::Fabric(f) => fabric_row(f, flow, &mut lb_pending, n, rows),
            TraceEvent::Node(h) => node_badges(h, rows),
            TraceEvent::Router(r) => router_badges(r, &mut lb_pending, rows),
        }
    }
}

/// A delivery on a segment: a numbered arrow, or a LOST badge when nobody owns the next hop.
fn fabric_row(
    f: &FabricEvent,
    flow: Flow,
    lb_pending: &mut bool,
    n: &mut usize,
    rows: &mut Vec<Row>,
) {
    let mut from = Place::of_attachment(&f.from);
    if *lb_pending && from == Place::Router {
        from = Place::Lb;
        *lb_pending = false;
    }
    match &f.to {
        Some(to) => {
            *n += 1;
            let label = f.summary.as_ref().map(tuple_label).unwrap_or_default();
            let arrow_flow = match &f.summary {
                Some(s) if s.icmp.is_some() || has_rst(s) => Flow::Error,
                _ => flow,
            };
            rows.push(Row::Arrow {
                n: *n,
                from,
                to: Place::of_attachment(to),
                label,
                flow: arrow_flow,
            });
        }
        None => rows.push(Row::Badge {
            at: from,
            mark: Mark::Lost,
            tag: "LOST".into(),
            text: format!(
                "nobody owns next hop {} on {}: the datagram is lost",
                f.next_hop, f.segment
            ),
        }),
    }
}

/// The traced SYN: its chain, who sent it and the tuple it was sent with.
struct Syn<'c, 'a> {
    chains: &'c [Chain<'a>],
    index: usize,
    client: String,
    dialled: FlowTuple,
}

/// The reply to the SYN: a REJECT's ICMP error (the rest of the SYN's chain) or the first
/// chain after the SYN's that the client did not send.
struct Reply<'a> {
    events: Vec<&'a TraceEvent>,
    first: Summary,
    origin: String,
    /// Index of the reply's chain, if it has one.
    chain: Option<usize>,
}

impl<'a> Reply<'a> {
    fn find(
        syn: &Syn<'_, 'a>,
        reject_events: &[&'a TraceEvent],
        rejecter: Option<&TraceEvent>,
    ) -> Option<Self> {
        let chains = syn.chains;
        let chain = chains[syn.index + 1..]
            .iter()
            .position(|c| c.origin != syn.client)
            .map(|i| syn.index + 1 + i);
        if !reject_events.is_empty() {
            let first = match reject_events.first() {
                Some(TraceEvent::Fabric(f)) => f.summary.clone()?,
                _ => return None,
            };
            let origin = match rejecter {
                Some(TraceEvent::Node(h)) => h.node.clone(),
                _ => String::new(),
            };
            return Some(Reply {
                events: reject_events.to_vec(),
                first,
                origin,
                chain,
            });
        }
        let i = chain?;
        Some(Reply {
            events: chains[i].events.clone(),
            first: chains[i].first.clone(),
            origin: chains[i].origin.clone(),
            chain,
        })
    }
}

/// The rows of the diagram: phases, numbered arrows and badges.
pub(super) fn build_rows(hops: &[TraceEvent], client_hint: Option<&str>) -> Vec<Row> {
    let chains = chains(hops);
    let mut rows = Vec::new();
    let Some(syn_i) = chains
        .iter()
        .position(|c| is_pure_syn(&c.first) && client_hint.is_none_or(|name| c.origin == name))
    else {
        return rows;
    };
    let first_syn = &chains[syn_i];
    let syn = Syn {
        chains: &chains,
        index: syn_i,
        client: first_syn.origin.clone(),
        dialled: first_syn.first.tuple,
    };
    let (client, dialled) = (&syn.client, syn.dialled);
    let mut n = 0;

    // Phase 1: the SYN (split at a REJECT: the ICMP error is the reply).
    let split = first_syn
        .events
        .iter()
        .position(|e| matches!(e, TraceEvent::Node(h) if h.stage == Stage::Reject));
    let (syn_events, reject_events) = match split {
        Some(i) => (&first_syn.events[..=i], &first_syn.events[i + 1..]),
        None => (&first_syn.events[..], &first_syn.events[..0]),
    };
    rows.push(Row::Phase {
        title: format!(
            "SYN: {client} {}:{} → {}:{}",
            dialled.src, dialled.sport, dialled.dst, dialled.dport
        ),
        flow: Flow::Syn,
    });
    let syn_start = rows.len();
    phase_rows(syn_events, Flow::Syn, &mut n, &mut rows);
    let natting = translating_places(&rows[syn_start..]);

    // Phase 2: the reply.
    let reply = Reply::find(&syn, reject_events, split.map(|i| first_syn.events[i]));
    let mut answer_from = syn_i + 1;
    if let Some(reply) = &reply {
        reply_rows(reply, &syn, &natting, &mut n, &mut rows);
        if let Some(i) = reply.chain {
            answer_from = i + 1;
        }
    } else if !first_syn.done || syn_events.len() > 1 {
        rows.push(Row::Badge {
            at: Place::Edge(client.clone()),
            mark: Mark::Warn,
            tag: "NO REPLY".into(),
            text: "nothing comes back to the client".into(),
        });
    }

    // Phase 3: the client's RST, if it answered the reply with one.
    if reply.is_some() {
        client_rst_rows(
            &chains[answer_from.min(chains.len())..],
            client,
            &mut n,
            &mut rows,
        );
    }
    retransmissions(&syn, &mut rows);
    rows
}

/// Places that translated the SYN (DNAT or SNAT badges), in order, once each.
fn translating_places(rows: &[Row]) -> Vec<Place> {
    rows.iter()
        .filter_map(|r| match r {
            Row::Badge {
                at,
                mark: Mark::Dnat | Mark::Snat,
                ..
            } => Some(at.clone()),
            _ => None,
        })
        .fold(Vec::new(), |mut v, p| {
            if !v.contains(&p) {
                v.push(p);
            }
            v
        })
}

/// The reply phase: its arrows and badges, a BYPASSED warning for each place that
/// translated the SYN but never sees the reply, and the client's verdict.
fn reply_rows(
    reply: &Reply<'_>,
    syn: &Syn<'_, '_>,
    natting: &[Place],
    n: &mut usize,
    rows: &mut Vec<Row>,
) {
    let client = &syn.client;
    rows.push(Row::Phase {
        title: format!("Reply: {} from {}", what(&reply.first), reply.origin),
        flow: flow_of(&reply.first, client, &reply.origin),
    });
    let start = rows.len();
    phase_rows(&reply.events, Flow::Reply, n, rows);
    let visited: Vec<Place> = rows[start..]
        .iter()
        .flat_map(|r| match r {
            Row::Arrow { from, to, .. } => vec![from.clone(), to.clone()],
            Row::Badge { at, .. } => vec![at.clone()],
            _ => vec![],
        })
        .collect();
    let reached_client = matches!(reply.events.last(), Some(TraceEvent::Link(l))
        if l.dir == Direction::ToDevice && edge_of_link(&l.link) == client);
    if visited
        .iter()
        .any(|p| matches!(p, Place::Node(_) | Place::Lb))
    {
        for p in natting {
            if !visited.contains(p) {
                rows.push(Row::Badge {
                    at: p.clone(),
                    mark: Mark::Warn,
                    tag: "BYPASSED".into(),
                    text: format!(
                        "the reply never passes {} (which translated the SYN): no un-NAT",
                        p.name()
                    ),
                });
            }
        }
    }
    if reached_client {
        if let Some(TraceEvent::Link(l)) = reply.events.last() {
            if let Some(s) = &l.summary {
                rows.push(client_verdict(client, s, &syn.dialled));
            }
        }
    }
}

/// Phase 3: the first chain the client sends after the reply, if it is a RST.
fn client_rst_rows(after_reply: &[Chain<'_>], client: &str, n: &mut usize, rows: &mut Vec<Row>) {
    if let Some(c) = after_reply.iter().find(|c| c.origin == client) {
        if has_rst(&c.first) {
            rows.push(Row::Phase {
                title: format!("{client} answers: RST"),
                flow: Flow::Error,
            });
            phase_rows(&c.events, Flow::Error, n, rows);
        }
    }
}

/// A note when the client sent the SYN more than once.
fn retransmissions(syn: &Syn<'_, '_>, rows: &mut Vec<Row>) {
    let syns = syn
        .chains
        .iter()
        .filter(|c| c.origin == syn.client && is_pure_syn(&c.first) && c.first.tuple == syn.dialled)
        .count();
    if syns > 1 {
        rows.push(Row::Badge {
            at: Place::Edge(syn.client.clone()),
            mark: Mark::Note,
            tag: "RETRANSMIT".into(),
            text: format!("the SYN was sent {syns} times in all (first attempt drawn)"),
        });
    }
}

/// The diagram's hop list as text: one line per numbered arrow and per badge, phases as
/// headings (what the picture shows, for terminals and logs).
pub fn hop_lines(hops: &[TraceEvent]) -> Vec<String> {
    build_rows(hops, None)
        .into_iter()
        .map(|r| match r {
            Row::Phase { title, .. } => format!("— {title}"),
            Row::Arrow {
                n, from, to, label, ..
            } => format!("{n:>3}. {} → {}: {label}", from.name(), to.name()),
            Row::Badge { at, tag, text, .. } => format!("     [{tag}] at {}: {text}", at.name()),
        })
        .collect()
}

/// The diagram's rows as JSON for `lab serve` (the same arrows and badges as the picture):
/// `{"kind":"phase","title","flow"}`, `{"kind":"arrow","n","from","to","label","flow"}`,
/// `{"kind":"badge","at","tag","mark","text"}`; rows of `client`'s connection when it has any.
pub fn hop_rows_json(hops: &[TraceEvent], client: Option<&str>) -> Vec<serde_json::Value> {
    let mut rows = build_rows(hops, client);
    if rows.is_empty() {
        rows = build_rows(hops, None);
    }
    let lower = |d: String| d.to_lowercase();
    rows.into_iter()
        .map(|r| match r {
            Row::Phase { title, flow } => serde_json::json!({
                "kind": "phase", "title": title, "flow": lower(format!("{flow:?}")),
            }),
            Row::Arrow {
                n,
                from,
                to,
                label,
                flow,
            } => serde_json::json!({
                "kind": "arrow", "n": n, "from": from.name(), "to": to.name(),
                "label": label, "flow": lower(format!("{flow:?}")),
            }),
            Row::Badge {
                at,
                mark,
                tag,
                text,
            } => serde_json::json!({
                "kind": "badge", "at": at.name(), "tag": tag,
                "mark": lower(format!("{mark:?}")), "text": text,
            }),
        })
        .collect()
}
