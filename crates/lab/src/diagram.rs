//! `--diagram FILE.svg`: one traced request as a picture.
//!
//! The top of the picture is the topology of the [`Cluster`]: external clients on the left,
//! the router and the optional load balancer, the node network, and every node as a box
//! (eth0 IP, cni0 IP, pod CIDR) with its pods and client pods inside. From every one of those
//! a lifeline runs down, and below them the request is drawn as a sequence diagram: one
//! numbered arrow per segment delivery of the first SYN, of the reply (SYN-ACK, RST or ICMP
//! error) and of the client's RST if it answered with one, each labelled with the
//! `src:sport → dst:dport` the datagram carried on that segment. Colored badges on the
//! lifelines mark where the datagram was rewritten (DNAT, SNAT/MASQUERADE, un-NAT, the load
//! balancer's DNAT) or ended (DROP, REJECT, lost), and notes point out a reply that bypassed
//! the node (or load balancer) that translated the SYN, and a reply from an unexpected
//! source.
//!
//! Everything is derived from the cluster and the hop events ([`sim::TraceEvent`]); the SVG
//! is built as a string (no rendering dependency), self-contained (no scripts, no external
//! fonts or images) and uses fixed sizes computed from the node and pod counts.

use std::fmt::Write as _;

use nodeport::RewriteKind;
use nodestack::Stage;
use sim::TraceEvent;
use vswitch::{Direction, Summary};

use crate::report::{Outcome, RequestResult};
use cluster::{ClientAttach, Cluster};

// ---------------------------------------------------------------------------------------
// from hop events to rows
// ---------------------------------------------------------------------------------------

/// Where on the picture something happens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Router,
    Lb,
    Node(String),
    /// A pod or a client (external or pod client), by name.
    Edge(String),
}

impl Place {
    /// From a fabric attachment name: `router/<iface>`, `<node>/eth0`, `<node>/cni0`,
    /// `<node>/cni0 bridge`, or an edge port's name.
    fn of_attachment(name: &str) -> Place {
        if name.starts_with("router/") {
            return Place::Router;
        }
        match name.split_once('/') {
            Some((node, _)) => Place::Node(node.to_string()),
            None => Place::Edge(name.to_string()),
        }
    }

    fn name(&self) -> String {
        match self {
            Place::Router => "router".into(),
            Place::Lb => "load balancer".into(),
            Place::Node(n) | Place::Edge(n) => n.clone(),
        }
    }
}

/// Which datagram an arrow carries (its color).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Syn,
    Reply,
    Error,
}

/// Badge kinds (their colors and tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Dnat,
    Snat,
    UnNat,
    Drop,
    Reject,
    Lost,
    Note,
    Warn,
    Ok,
}

#[derive(Debug, Clone)]
enum Row {
    Phase {
        title: String,
        flow: Flow,
    },
    Arrow {
        n: usize,
        from: Place,
        to: Place,
        label: String,
        flow: Flow,
    },
    Badge {
        at: Place,
        mark: Mark,
        tag: String,
        text: String,
    },
}

/// One datagram followed through the fabric: from the edge port that sent it until it is
/// delivered, dropped or lost.
struct Chain<'a> {
    origin: String,
    events: Vec<&'a TraceEvent>,
    first: Summary,
    cur: Summary,
    /// (node, datagram as it arrived there) while the datagram is inside a node: every
    /// hook of that node reports the arriving datagram as its `before`.
    inside: Option<(String, Summary)>,
    done: bool,
}

/// Same datagram (TTL aside).
fn same(a: &Summary, b: &Summary) -> bool {
    a.tuple == b.tuple
        && a.flags == b.flags
        && a.payload_len == b.payload_len
        && a.icmp == b.icmp
        && a.inner == b.inner
}

fn edge_of_link(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

fn chains(hops: &[TraceEvent]) -> Vec<Chain<'_>> {
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

fn is_pure_syn(s: &Summary) -> bool {
    s.icmp.is_none() && s.flags == "S"
}

fn has_rst(s: &Summary) -> bool {
    s.icmp.is_none() && s.flags.contains('R')
}

/// `SYN`, `SYN-ACK`, `RST`, … or the ICMP message.
fn what(s: &Summary) -> String {
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
    match s.flags.as_str() {
        "S" => "SYN".into(),
        "SA" => "SYN-ACK".into(),
        "R" | "RA" => "RST".into(),
        "A" => "ACK".into(),
        "" => "no flags".into(),
        f => f.to_string(),
    }
}

/// `src:sport → dst:dport` (ICMP: `src → dst`) and what the datagram is.
fn tuple_label(s: &Summary) -> String {
    let t = &s.tuple;
    if s.icmp.is_some() {
        format!("{} → {}  {}", t.src, t.dst, what(s))
    } else {
        format!("{}:{} → {}:{}  {}", t.src, t.sport, t.dst, t.dport, what(s))
    }
}

fn flow_of(s: &Summary, client: &str, origin: &str) -> Flow {
    if s.icmp.is_some() || has_rst(s) {
        Flow::Error
    } else if origin == client {
        Flow::Syn
    } else {
        Flow::Reply
    }
}

/// Rows of one phase (the events of one datagram).
fn phase_rows(events: &[&TraceEvent], flow: Flow, n: &mut usize, rows: &mut Vec<Row>) {
    let mut lb_pending = false;
    for ev in events {
        match ev {
            TraceEvent::Link(_) => {}
            TraceEvent::Fabric(f) => {
                let mut from = Place::of_attachment(&f.from);
                if lb_pending && from == Place::Router {
                    from = Place::Lb;
                    lb_pending = false;
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
            TraceEvent::Node(h) => {
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
                match h.stage {
                    Stage::Drop => rows.push(Row::Badge {
                        at: at.clone(),
                        mark: Mark::Drop,
                        tag: "DROP".into(),
                        text: h
                            .verdict
                            .strip_prefix("drop: ")
                            .unwrap_or(&h.verdict)
                            .to_string(),
                    }),
                    Stage::Reject => rows.push(Row::Badge {
                        at: at.clone(),
                        mark: Mark::Reject,
                        tag: "REJECT".into(),
                        text: h
                            .verdict
                            .strip_prefix("reject: ")
                            .unwrap_or(&h.verdict)
                            .to_string(),
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
            TraceEvent::Router(r) => {
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
                    lb_pending = true;
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
        }
    }
}

/// The rows of the diagram: phases, numbered arrows and badges.
fn build_rows(hops: &[TraceEvent], client_hint: Option<&str>) -> Vec<Row> {
    let chains = chains(hops);
    let mut rows = Vec::new();
    let Some(syn_i) = chains
        .iter()
        .position(|c| is_pure_syn(&c.first) && client_hint.is_none_or(|name| c.origin == name))
    else {
        return rows;
    };
    let syn = &chains[syn_i];
    let client = syn.origin.clone();
    let dialled = syn.first.tuple;
    let mut n = 0;

    // Phase 1: the SYN (split at a REJECT: the ICMP error is the reply).
    let split = syn
        .events
        .iter()
        .position(|e| matches!(e, TraceEvent::Node(h) if h.stage == Stage::Reject));
    let (syn_events, reject_events) = match split {
        Some(i) => (&syn.events[..=i], &syn.events[i + 1..]),
        None => (&syn.events[..], &syn.events[..0]),
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
    // Places that translated the SYN.
    let natting: Vec<Place> = rows[syn_start..]
        .iter()
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
        });

    // Phase 2: the reply.
    let reply_chain = chains[syn_i + 1..]
        .iter()
        .position(|c| c.origin != client)
        .map(|i| syn_i + 1 + i);
    let (reply_events, reply_first): (Vec<&TraceEvent>, Option<Summary>) =
        if !reject_events.is_empty() {
            let first = match reject_events.first() {
                Some(TraceEvent::Fabric(f)) => f.summary.clone(),
                _ => None,
            };
            (reject_events.to_vec(), first)
        } else if let Some(i) = reply_chain {
            (chains[i].events.clone(), Some(chains[i].first.clone()))
        } else {
            (Vec::new(), None)
        };
    let mut answer_from = syn_i + 1;
    if let Some(first) = &reply_first {
        let origin = match reply_chain {
            Some(i) if reject_events.is_empty() => chains[i].origin.clone(),
            _ => match split.map(|i| syn.events[i]) {
                Some(TraceEvent::Node(h)) => h.node.clone(),
                _ => String::new(),
            },
        };
        rows.push(Row::Phase {
            title: format!("Reply: {} from {origin}", what(first)),
            flow: flow_of(first, &client, &origin),
        });
        let start = rows.len();
        phase_rows(&reply_events, Flow::Reply, &mut n, &mut rows);
        let visited: Vec<Place> = rows[start..]
            .iter()
            .flat_map(|r| match r {
                Row::Arrow { from, to, .. } => vec![from.clone(), to.clone()],
                Row::Badge { at, .. } => vec![at.clone()],
                _ => vec![],
            })
            .collect();
        let reached_client = matches!(reply_events.last(), Some(TraceEvent::Link(l))
            if l.dir == Direction::ToDevice && edge_of_link(&l.link) == client);
        if visited
            .iter()
            .any(|p| matches!(p, Place::Node(_) | Place::Lb))
        {
            for p in &natting {
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
            if let Some(TraceEvent::Link(l)) = reply_events.last() {
                if let Some(s) = &l.summary {
                    rows.push(client_verdict(&client, s, &dialled));
                }
            }
        }
        if let Some(i) = reply_chain {
            answer_from = i + 1;
        }
    } else if !syn.done || syn_events.len() > 1 {
        rows.push(Row::Badge {
            at: Place::Edge(client.clone()),
            mark: Mark::Warn,
            tag: "NO REPLY".into(),
            text: "nothing comes back to the client".into(),
        });
    }

    // Phase 3: the client's RST, if it answered the reply with one.
    if reply_first.is_some() {
        if let Some(c) = chains[answer_from.min(chains.len())..]
            .iter()
            .find(|c| c.origin == client)
        {
            if has_rst(&c.first) {
                rows.push(Row::Phase {
                    title: format!("{client} answers: RST"),
                    flow: Flow::Error,
                });
                phase_rows(&c.events, Flow::Error, &mut n, &mut rows);
            }
        }
    }

    // SYN retransmissions.
    let syns = chains
        .iter()
        .filter(|c| c.origin == client && is_pure_syn(&c.first) && c.first.tuple == dialled)
        .count();
    if syns > 1 {
        rows.push(Row::Badge {
            at: Place::Edge(client.clone()),
            mark: Mark::Note,
            tag: "RETRANSMIT".into(),
            text: format!("the SYN was sent {syns} times in all (first attempt drawn)"),
        });
    }
    rows
}

fn client_verdict(client: &str, s: &Summary, dialled: &vswitch::FlowTuple) -> Row {
    let at = Place::Edge(client.to_string());
    let expected = s.tuple.src == dialled.dst && s.tuple.sport == dialled.dport;
    if s.icmp.is_some() {
        Row::Badge {
            at,
            mark: Mark::Reject,
            tag: "REFUSED".into(),
            text: format!("{} from {}: connection refused", what(s), s.tuple.src),
        }
    } else if has_rst(s) {
        Row::Badge {
            at,
            mark: Mark::Reject,
            tag: "REFUSED".into(),
            text: format!(
                "RST from {}:{}: connection refused",
                s.tuple.src, s.tuple.sport
            ),
        }
    } else if !expected {
        Row::Badge {
            at,
            mark: Mark::Warn,
            tag: "UNEXPECTED".into(),
            text: format!(
                "{} from {}:{}, but {client} dialled {}:{}: not its connection",
                what(s),
                s.tuple.src,
                s.tuple.sport,
                dialled.dst,
                dialled.dport
            ),
        }
    } else {
        Row::Badge {
            at,
            mark: Mark::Ok,
            tag: "OK".into(),
            text: format!(
                "{} from {}:{}: connection established",
                what(s),
                s.tuple.src,
                s.tuple.sport
            ),
        }
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

// ---------------------------------------------------------------------------------------
// SVG
// ---------------------------------------------------------------------------------------

const MARGIN: f64 = 24.0;
const FS: f64 = 12.0;
/// Advance of one DejaVu Sans Mono / Menlo / Consolas character at `FS` (0.602 em), plus
/// slack.
const CW: f64 = 7.4;
const MONO: &str = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace";
const SANS: &str = "DejaVu Sans, Helvetica, Arial, Liberation Sans, sans-serif";
const GAP: f64 = 40.0;
const LINE: f64 = 16.0;
const INNER_H: f64 = 42.0;
const HOST_W: f64 = 96.0;
const ROW_ARROW: f64 = 36.0;
const ROW_BADGE: f64 = 28.0;
const ROW_PHASE: f64 = 32.0;

/// Escape text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn text_w(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * (CW / FS)
}

fn flow_color(f: Flow) -> &'static str {
    match f {
        Flow::Syn => "#1565c0",
        Flow::Reply => "#2e7d32",
        Flow::Error => "#6d4c41",
    }
}

fn flow_name(f: Flow) -> &'static str {
    match f {
        Flow::Syn => "syn",
        Flow::Reply => "reply",
        Flow::Error => "error",
    }
}

/// (fill, text on fill, detail text color)
fn mark_colors(m: Mark) -> (&'static str, &'static str, &'static str) {
    match m {
        Mark::Dnat => ("#ef6c00", "#ffffff", "#a84300"),
        Mark::Snat => ("#8e24aa", "#ffffff", "#6a1b7a"),
        Mark::UnNat => ("#00897b", "#ffffff", "#00695c"),
        Mark::Drop => ("#c62828", "#ffffff", "#b71c1c"),
        Mark::Reject => ("#ad1457", "#ffffff", "#880e4f"),
        Mark::Lost => ("#c62828", "#ffffff", "#b71c1c"),
        Mark::Note => ("#757575", "#ffffff", "#424242"),
        Mark::Warn => ("#f9a825", "#000000", "#7a5200"),
        Mark::Ok => ("#2e7d32", "#ffffff", "#1b5e20"),
    }
}

/// A box of the topology with a lifeline.
struct Column {
    place: Place,
    /// Lifeline x.
    x: f64,
    /// Where the lifeline starts.
    y0: f64,
}

struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

struct Svg {
    body: String,
}

impl Svg {
    fn rect(&mut self, r: &Rect, fill: &str, stroke: &str, extra: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6" fill="{fill}" stroke="{stroke}" {extra}/>"#,
            r.x, r.y, r.w, r.h
        );
    }
    #[allow(clippy::too_many_arguments)]
    fn text(&mut self, x: f64, y: f64, s: &str, size: f64, fill: &str, font: &str, extra: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-family="{font}" font-size="{size}" fill="{fill}" {extra}>{}</text>"#,
            xml_escape(s)
        );
    }
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, extra: &str) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" {extra}/>"#
        );
    }
}

/// The title lines: scenario, request number, outcome, logged client IP.
fn title_lines(cluster: &Cluster, number: Option<usize>, r: &RequestResult) -> Vec<String> {
    let req = match number {
        Some(n) => format!("request #{n}"),
        None => "traced request".to_string(),
    };
    let mut lines = vec![format!(
        "{} — {req}: {} {} → {}",
        cluster.scenario, r.client, r.client_ip, r.target
    )];
    let outcome = match (r.outcome, r.status) {
        (Outcome::Ok, Some(s)) => format!("outcome: ok, HTTP {s}"),
        (o, _) => format!("outcome: {} after {} ms", o.as_str(), r.elapsed_ms),
    };
    let pod = match &r.pod {
        Some(p) => format!("answered by {p}"),
        None => "no pod answered".into(),
    };
    let logged = match r.logged_client_ip {
        Some(ip) if ip == r.client_ip => format!("nginx logged client IP {ip} (the real client)"),
        Some(ip) => format!(
            "nginx logged client IP {ip} (not the client's {})",
            r.client_ip
        ),
        None => "nginx logged nothing".into(),
    };
    lines.push(format!("{outcome} · {pod} · {logged}"));
    if let Some(m) = &r.curl_message {
        lines.push(m.clone());
    }
    if let Some(first) = cluster
        .description
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
    {
        lines.push(first.to_string());
    }
    lines
}

/// Render the diagram of one request (see the module docs). `request` is the result of the
/// request whose hop events (`World::trace_for`) are `hops`; the title says "traced
/// request" (use [`render_svg_numbered`] to show its number in the plan).
pub fn render_svg(cluster: &Cluster, request: &RequestResult, hops: &[TraceEvent]) -> String {
    render(cluster, None, request, hops)
}

/// [`render_svg`] with the request's 1-based number in the plan in the title.
pub fn render_svg_numbered(
    cluster: &Cluster,
    number: usize,
    request: &RequestResult,
    hops: &[TraceEvent],
) -> String {
    render(cluster, Some(number), request, hops)
}

fn render(
    cluster: &Cluster,
    number: Option<usize>,
    request: &RequestResult,
    hops: &[TraceEvent],
) -> String {
    let mut rows = build_rows(hops, Some(&request.client));
    if rows.is_empty() {
        rows = build_rows(hops, None);
    }
    // Outcome as the client saw it.
    let outcome_text = match (request.outcome, request.status) {
        (Outcome::Ok, Some(s)) => match request.logged_client_ip {
            Some(ip) => format!("curl: HTTP {s}; nginx logged client IP {ip}"),
            None => format!("curl: HTTP {s}"),
        },
        _ => request
            .curl_message
            .clone()
            .unwrap_or_else(|| format!("curl: {}", request.outcome.as_str())),
    };
    rows.push(Row::Badge {
        at: Place::Edge(request.client.clone()),
        mark: if request.outcome == Outcome::Ok {
            Mark::Ok
        } else {
            Mark::Drop
        },
        tag: request.outcome.as_str().to_uppercase(),
        text: outcome_text,
    });
    if hops.is_empty() {
        rows.insert(
            0,
            Row::Phase {
                title: "no hop events were recorded for this request (tracing off?)".into(),
                flow: Flow::Error,
            },
        );
    }

    let mut svg = Svg {
        body: String::new(),
    };

    // ----- title ----------------------------------------------------------------------
    let titles = title_lines(cluster, number, request);
    let mut y = MARGIN + 18.0;
    let mut min_w: f64 = 0.0;
    for (i, t) in titles.iter().enumerate() {
        let (size, fill, extra) = match i {
            0 => (18.0, "#111111", r#"font-weight="bold""#),
            1 => (13.0, "#222222", ""),
            _ => (12.0, "#555555", r#"font-style="italic""#),
        };
        svg.text(MARGIN, y, t, size, fill, SANS, extra);
        min_w = min_w.max(MARGIN * 2.0 + t.chars().count() as f64 * size * 0.62);
        y += if i == 0 { 24.0 } else { 18.0 };
    }
    let bus_y = y + 22.0;
    let box_top = bus_y + 28.0;

    // ----- topology -------------------------------------------------------------------
    let mut columns: Vec<Column> = Vec::new();
    let mut boxes = String::new();
    let mut x = MARGIN;
    let mut header_bottom = box_top;

    // Client network label(s): the segments the traced datagrams crossed.
    let mut client_nets: Vec<String> = hops
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Fabric(f) if f.segment.starts_with("clients ") => {
                Some(f.segment.trim_start_matches("clients ").to_string())
            }
            _ => None,
        })
        .collect();
    client_nets.dedup();
    client_nets.sort();
    client_nets.dedup();
    let client_net_label = if client_nets.is_empty() {
        "client network".to_string()
    } else {
        format!("client network {}", client_nets.join(", "))
    };

    let externals: Vec<_> = cluster
        .clients
        .iter()
        .filter(|c| matches!(c.attach, ClientAttach::External { .. }))
        .collect();
    let simple_box = |svg: &mut Svg,
                      x: f64,
                      place: Place,
                      lines: &[String],
                      fill: &str,
                      stroke: &str,
                      columns: &mut Vec<Column>|
     -> (f64, f64) {
        let w = lines.iter().map(|l| text_w(l, FS)).fold(120.0, f64::max) + 20.0;
        let h = 12.0 + LINE * lines.len() as f64;
        svg.rect(
            &Rect {
                x,
                y: box_top,
                w,
                h,
            },
            fill,
            stroke,
            r#"stroke-width="1.5""#,
        );
        for (i, l) in lines.iter().enumerate() {
            let extra = if i == 0 { r#"font-weight="bold""# } else { "" };
            svg.text(
                x + 10.0,
                box_top + 20.0 + LINE * i as f64,
                l,
                FS,
                "#111111",
                MONO,
                extra,
            );
        }
        columns.push(Column {
            place,
            x: x + w / 2.0,
            y0: box_top + h,
        });
        (w, h)
    };

    let mut client_xs = Vec::new();
    for c in &externals {
        let lines = vec![c.name.clone(), c.ip.to_string(), "external client".into()];
        let (w, h) = simple_box(
            &mut svg,
            x,
            Place::Edge(c.name.clone()),
            &lines,
            "#e3f2fd",
            "#1565c0",
            &mut columns,
        );
        client_xs.push(x + w / 2.0);
        header_bottom = header_bottom.max(box_top + h);
        x += w + GAP;
    }
    // Room for the client network label left of the router.
    if !externals.is_empty() {
        x = x.max(MARGIN + text_w(&client_net_label, 11.0) + 24.0);
    }

    let router_lines = vec![
        "router".to_string(),
        format!("{}", cluster.router_ip),
        "default gateway".to_string(),
    ];
    let (rw, rh) = simple_box(
        &mut svg,
        x,
        Place::Router,
        &router_lines,
        "#eceff1",
        "#455a64",
        &mut columns,
    );
    let router_x = x + rw / 2.0;
    header_bottom = header_bottom.max(box_top + rh);
    x += rw + GAP;

    let mut lb_x = None;
    if let Some(lb) = &cluster.load_balancer {
        let mut lines = vec![
            format!("load balancer {}", lb.name),
            format!("frontend {}", lb.ip),
            "keeps the client IP".to_string(),
        ];
        let mut targets = String::from("targets:");
        for n in &lb.nodes {
            if text_w(&targets, FS) + text_w(n, FS) > 220.0 {
                lines.push(std::mem::replace(&mut targets, "  ".into()));
            }
            targets.push(' ');
            targets.push_str(n);
        }
        lines.push(targets);
        if let Some(hc) = &lb.health_check {
            lines.push(format!("health checks every {:?}", hc.interval));
        }
        let (w, h) = simple_box(
            &mut svg,
            x,
            Place::Lb,
            &lines,
            "#e8eaf6",
            "#3949ab",
            &mut columns,
        );
        lb_x = Some(x + w / 2.0);
        header_bottom = header_bottom.max(box_top + h);
        x += w + GAP;
    }

    // Nodes.
    struct Inner {
        place: Place,
        lines: Vec<String>,
        client: bool,
    }
    let node_header = |n: &cluster::Node| -> Vec<String> {
        let mut h = vec![
            if n.role() == "control-plane" {
                format!("{} (control-plane)", n.name)
            } else {
                n.name.clone()
            },
            format!("eth0 {}/{}", n.ip, n.prefix_len),
            format!("cni0 {}  podCIDR {}", n.cni0_ip(), n.pod_cidr),
        ];
        if !n.masquerade {
            h.push("masquerade: OFF (lab what-if)".into());
        }
        h
    };
    let header_lines = cluster
        .nodes
        .iter()
        .map(|n| node_header(n).len())
        .max()
        .unwrap_or(3);
    let inner_top = box_top + 10.0 + LINE * header_lines as f64 + 6.0;
    let node_h = inner_top - box_top + INNER_H + 12.0;
    let first_node_x = x;
    let mut node_host_xs = Vec::new();
    for n in &cluster.nodes {
        let header = node_header(n);
        let mut inners: Vec<Inner> = cluster
            .pods
            .iter()
            .filter(|p| p.node == n.name)
            .map(|p| Inner {
                place: Place::Edge(p.name.clone()),
                lines: vec![p.name.clone(), format!("pod {}", p.ip)],
                client: false,
            })
            .collect();
        inners.extend(
            cluster
                .clients
                .iter()
                .filter(|c| matches!(&c.attach, ClientAttach::Pod { node } if *node == n.name))
                .map(|c| Inner {
                    place: Place::Edge(c.name.clone()),
                    lines: vec![c.name.clone(), format!("client pod {}", c.ip)],
                    client: true,
                }),
        );
        let inner_ws: Vec<f64> = inners
            .iter()
            .map(|i| i.lines.iter().map(|l| text_w(l, FS)).fold(60.0, f64::max) + 16.0)
            .collect();
        let content_w = 12.0 + HOST_W + inner_ws.iter().map(|w| w + 10.0).sum::<f64>() + 2.0;
        let header_w = header.iter().map(|l| text_w(l, FS)).fold(0.0, f64::max) + 24.0;
        let w = content_w.max(header_w).max(190.0);
        let stroke = if n.masquerade { "#37474f" } else { "#c62828" };
        svg.rect(
            &Rect {
                x,
                y: box_top,
                w,
                h: node_h,
            },
            "#fafafa",
            stroke,
            r#"stroke-width="1.8""#,
        );
        for (i, l) in header.iter().enumerate() {
            let (extra, fill) = match i {
                0 => (r#"font-weight="bold""#, "#111111"),
                3 => ("", "#c62828"),
                _ => ("", "#333333"),
            };
            svg.text(
                x + 12.0,
                box_top + 20.0 + LINE * i as f64,
                l,
                FS,
                fill,
                MONO,
                extra,
            );
        }
        // The host network namespace: where iptables (kube-proxy's rules) runs.
        let hx = x + 12.0;
        svg.rect(
            &Rect {
                x: hx,
                y: inner_top,
                w: HOST_W,
                h: INNER_H,
            },
            "#fff8e1",
            "#8d6e63",
            r#"stroke-dasharray="4 2""#,
        );
        svg.text(
            hx + 8.0,
            inner_top + 17.0,
            "host netns",
            11.0,
            "#4e342e",
            MONO,
            "",
        );
        svg.text(
            hx + 8.0,
            inner_top + 33.0,
            "iptables",
            11.0,
            "#4e342e",
            MONO,
            "",
        );
        columns.push(Column {
            place: Place::Node(n.name.clone()),
            x: hx + HOST_W / 2.0,
            y0: inner_top + INNER_H,
        });
        node_host_xs.push(hx + HOST_W / 2.0);
        let mut ix = hx + HOST_W + 10.0;
        for (inner, iw) in inners.iter().zip(&inner_ws) {
            let (fill, stroke) = if inner.client {
                ("#e3f2fd", "#1565c0")
            } else {
                ("#e8f5e9", "#2e7d32")
            };
            svg.rect(
                &Rect {
                    x: ix,
                    y: inner_top,
                    w: *iw,
                    h: INNER_H,
                },
                fill,
                stroke,
                "",
            );
            for (k, l) in inner.lines.iter().enumerate() {
                let extra = if k == 0 { r#"font-weight="bold""# } else { "" };
                svg.text(
                    ix + 8.0,
                    inner_top + 17.0 + LINE * k as f64,
                    l,
                    FS,
                    "#111111",
                    MONO,
                    extra,
                );
            }
            columns.push(Column {
                place: inner.place.clone(),
                x: ix + iw / 2.0,
                y0: inner_top + INNER_H,
            });
            ix += iw + 10.0;
        }
        header_bottom = header_bottom.max(box_top + node_h);
        x += w + GAP / 2.0;
    }
    let nodes_right = x - GAP / 2.0;

    // Places the hops mention that the topology does not show (robustness).
    let mut extra_places: Vec<Place> = Vec::new();
    for r in &rows {
        let ps = match r {
            Row::Arrow { from, to, .. } => vec![from.clone(), to.clone()],
            Row::Badge { at, .. } => vec![at.clone()],
            Row::Phase { .. } => vec![],
        };
        for p in ps {
            let known = columns.iter().any(|c| c.place == p)
                || (p == Place::Lb && columns.iter().any(|c| c.place == Place::Router));
            if !known && !extra_places.contains(&p) {
                extra_places.push(p);
            }
        }
    }
    x = x.max(nodes_right + GAP);
    for p in extra_places {
        let lines = vec![p.name(), "(not in the cluster)".into()];
        let (w, h) = simple_box(&mut svg, x, p, &lines, "#f5f5f5", "#9e9e9e", &mut columns);
        header_bottom = header_bottom.max(box_top + h);
        x += w + GAP;
    }
    let topology_right = x - GAP / 2.0;

    // Networks: client network bar (clients → router), node network bar (router → nodes).
    let net_stroke = r#"stroke-width="4" stroke-linecap="round""#;
    if let (Some(first), Some(_)) = (client_xs.first(), client_xs.last()) {
        let end = router_x - 18.0;
        svg.line(*first, bus_y, end, bus_y, "#90a4ae", net_stroke);
        for cx in &client_xs {
            svg.line(*cx, bus_y, *cx, box_top, "#90a4ae", r#"stroke-width="2""#);
        }
        svg.line(end, bus_y, end, box_top, "#90a4ae", r#"stroke-width="2""#);
        svg.text(
            MARGIN,
            bus_y - 8.0,
            &client_net_label,
            11.0,
            "#546e7a",
            MONO,
            "",
        );
    }
    if !cluster.nodes.is_empty() {
        let start = router_x + 18.0;
        let end = nodes_right - 10.0;
        svg.line(start, bus_y, end, bus_y, "#546e7a", net_stroke);
        svg.line(
            start,
            bus_y,
            start,
            box_top,
            "#546e7a",
            r#"stroke-width="2""#,
        );
        if let Some(lx) = lb_x {
            svg.line(lx, bus_y, lx, box_top, "#546e7a", r#"stroke-width="2""#);
        }
        for hx in &node_host_xs {
            svg.line(*hx, bus_y, *hx, box_top, "#546e7a", r#"stroke-width="2""#);
        }
        let label = format!(
            "node network {} (router {})",
            cluster.node_network, cluster.router_ip
        );
        svg.text(start + 6.0, bus_y - 8.0, &label, 11.0, "#37474f", MONO, "");
        let _ = first_node_x;
    }
    boxes.push_str(&svg.body);
    svg.body.clear();

    let col_x = |p: &Place| -> Option<f64> {
        columns
            .iter()
            .find(|c| c.place == *p)
            .or_else(|| {
                (*p == Place::Lb)
                    .then(|| columns.iter().find(|c| c.place == Place::Router))
                    .flatten()
            })
            .map(|c| c.x)
    };

    // A reply that bypasses the place that translated the SYN: put the note right under the
    // first arrow of the reply that jumps over that place's lifeline, and ring the crossing.
    let mut crossings: Vec<(usize, f64)> = Vec::new();
    let bypass: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Row::Badge { tag, .. } if tag == "BYPASSED"))
        .map(|(i, _)| i)
        .collect();
    for i in bypass {
        let Row::Badge { at, .. } = &rows[i] else {
            continue;
        };
        let Some(cx) = col_x(at) else { continue };
        let phase_start = rows[..i]
            .iter()
            .rposition(|r| matches!(r, Row::Phase { .. }))
            .unwrap_or(0);
        let crossing = (phase_start..i).find_map(|j| match &rows[j] {
            Row::Arrow { n, from, to, .. } => {
                let (a, b) = (col_x(from)?, col_x(to)?);
                (a.min(b) + 1.0 < cx && cx < a.max(b) - 1.0).then_some((j, *n))
            }
            _ => None,
        });
        if let Some((j, n)) = crossing {
            crossings.push((n, cx));
            let badge = rows.remove(i);
            rows.insert(j + 1, badge);
        }
    }

    // ----- width --------------------------------------------------------------------
    let mut width = (topology_right + MARGIN).max(min_w).max(720.0);
    for r in &rows {
        match r {
            Row::Arrow { label, .. } => {
                width = width.max(text_w(label, FS) + 24.0 + 2.0 * MARGIN);
            }
            Row::Badge { at, tag, text, .. } => {
                let cx = col_x(at).unwrap_or(MARGIN);
                let tw = text_w(tag, 11.0) + 14.0;
                let dw = text_w(text, FS);
                let right = cx + tw / 2.0 + 8.0 + dw + MARGIN;
                let left = cx - tw / 2.0 - 8.0 - dw;
                if right > width && left < MARGIN {
                    width = right;
                }
            }
            Row::Phase { title, .. } => {
                width = width.max(text_w(title, 13.0) + 2.0 * MARGIN + 20.0);
            }
        }
    }

    // ----- rows ---------------------------------------------------------------------
    let mut y = header_bottom + 28.0;
    let rows_top = y;
    let mut fg = String::new();
    for r in &rows {
        match r {
            Row::Phase { title, flow } => {
                let c = flow_color(*flow);
                let ty = y + 20.0;
                let _ = writeln!(
                    fg,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="1" stroke-opacity="0.5"/>"#,
                    MARGIN,
                    y + 6.0,
                    width - MARGIN,
                    y + 6.0
                );
                let tw = text_w(title, 13.0) + 12.0;
                let _ = writeln!(
                    fg,
                    r##"<rect x="{:.1}" y="{:.1}" width="{tw:.1}" height="18" fill="#ffffff" fill-opacity="0.92"/>"##,
                    MARGIN - 4.0,
                    ty - 13.0
                );
                let _ = writeln!(
                    fg,
                    r#"<text x="{MARGIN:.1}" y="{ty:.1}" font-family="{SANS}" font-size="13" font-weight="bold" fill="{c}">{}</text>"#,
                    xml_escape(title)
                );
                y += ROW_PHASE;
            }
            Row::Arrow {
                n,
                from,
                to,
                label,
                flow,
            } => {
                let (Some(x1), Some(x2)) = (col_x(from), col_x(to)) else {
                    continue;
                };
                let c = flow_color(*flow);
                let ly = y + 26.0;
                if (x1 - x2).abs() < 1.0 {
                    let _ = writeln!(
                        fg,
                        r#"<path d="M {:.1} {:.1} h 34 v 12 h -30" fill="none" stroke="{c}" stroke-width="2.2" marker-end="url(#ah-{})"/>"#,
                        x1 + 3.0,
                        ly - 6.0,
                        flow_name(*flow)
                    );
                } else {
                    let dir = if x2 > x1 { 1.0 } else { -1.0 };
                    let _ = writeln!(
                        fg,
                        r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2.2" marker-end="url(#ah-{})"/>"#,
                        x1 + dir * 4.0,
                        x2 - dir * 6.0,
                        flow_name(*flow)
                    );
                    let _ = writeln!(
                        fg,
                        r#"<circle cx="{x1:.1}" cy="{ly:.1}" r="3.5" fill="{c}"/>"#
                    );
                    for (_, cx) in crossings.iter().filter(|(k, _)| k == n) {
                        let _ = writeln!(
                            fg,
                            r##"<circle cx="{cx:.1}" cy="{ly:.1}" r="7" fill="none" stroke="#f9a825" stroke-width="3"/>"##
                        );
                    }
                }
                // Label above the arrow: number badge + tuple.
                let lw = 24.0 + text_w(label, FS);
                let mid = (x1 + x2) / 2.0;
                let lx = (mid - lw / 2.0).clamp(MARGIN, (width - MARGIN - lw).max(MARGIN));
                let ty = y + 14.0;
                let _ = writeln!(
                    fg,
                    r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="18" rx="3" fill="#ffffff" fill-opacity="0.92"/>"##,
                    lx - 2.0,
                    ty - 13.0,
                    lw + 4.0
                );
                let _ = writeln!(
                    fg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="9" fill="{c}"/>"#,
                    lx + 9.0,
                    ty - 4.0
                );
                let _ = writeln!(
                    fg,
                    r##"<text x="{:.1}" y="{:.1}" font-family="{SANS}" font-size="11" font-weight="bold" fill="#ffffff" text-anchor="middle">{n}</text>"##,
                    lx + 9.0,
                    ty
                );
                let _ = writeln!(
                    fg,
                    r#"<text x="{:.1}" y="{ty:.1}" font-family="{MONO}" font-size="{FS}" fill="{c}">{}</text>"#,
                    lx + 24.0,
                    xml_escape(label)
                );
                y += ROW_ARROW;
            }
            Row::Badge {
                at,
                mark,
                tag,
                text,
            } => {
                let Some(cx) = col_x(at) else { continue };
                let (fill, on, dark) = mark_colors(*mark);
                let tw = text_w(tag, 11.0) + 14.0;
                let dw = text_w(text, FS);
                let by = y + 5.0;
                let tx = cx - tw / 2.0;
                let _ = writeln!(
                    fg,
                    r#"<rect x="{tx:.1}" y="{by:.1}" width="{tw:.1}" height="18" rx="4" fill="{fill}"/>"#
                );
                let _ = writeln!(
                    fg,
                    r#"<text x="{cx:.1}" y="{:.1}" font-family="{MONO}" font-size="11" font-weight="bold" fill="{on}" text-anchor="middle">{}</text>"#,
                    by + 13.0,
                    xml_escape(tag)
                );
                let right = cx + tw / 2.0 + 8.0;
                let dx = if right + dw <= width - MARGIN {
                    right
                } else {
                    (cx - tw / 2.0 - 8.0 - dw).max(MARGIN)
                };
                let _ = writeln!(
                    fg,
                    r##"<rect x="{:.1}" y="{by:.1}" width="{:.1}" height="18" fill="#ffffff" fill-opacity="0.92"/>"##,
                    dx - 2.0,
                    dw + 4.0
                );
                let _ = writeln!(
                    fg,
                    r#"<text x="{dx:.1}" y="{:.1}" font-family="{MONO}" font-size="{FS}" fill="{dark}">{}</text>"#,
                    by + 13.0,
                    xml_escape(text)
                );
                y += ROW_BADGE;
            }
        }
    }
    let rows_bottom = y + 8.0;

    // Lifelines (drawn under the rows).
    let mut lifelines = String::new();
    for c in &columns {
        let _ = writeln!(
            lifelines,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{rows_bottom:.1}" stroke="#9e9e9e" stroke-width="1.2" stroke-dasharray="5 4"/>"##,
            c.y0,
            x = c.x
        );
    }
    let _ = rows_top;

    // ----- legend -------------------------------------------------------------------
    let mut legend = String::new();
    let mut ly = rows_bottom + 24.0;
    let _ = writeln!(
        legend,
        r##"<text x="{MARGIN:.1}" y="{:.1}" font-family="{SANS}" font-size="13" font-weight="bold" fill="#111111">Legend</text>"##,
        ly
    );
    ly += 12.0;
    let mut lx = MARGIN;
    let items: Vec<(Option<Flow>, Option<Mark>, &str)> = vec![
        (Some(Flow::Syn), None, "client → server (SYN)"),
        (Some(Flow::Reply), None, "server → client (reply)"),
        (Some(Flow::Error), None, "RST / ICMP error"),
        (None, Some(Mark::Dnat), "DNAT: destination rewritten"),
        (
            None,
            Some(Mark::Snat),
            "SNAT / MASQUERADE: source rewritten",
        ),
        (None, Some(Mark::UnNat), "un-NAT: conntrack reverses NAT"),
        (None, Some(Mark::Drop), "DROP / lost"),
        (None, Some(Mark::Reject), "REJECT / refused"),
        (
            None,
            Some(Mark::Warn),
            "warning (ring: a reply jumping over the NAT)",
        ),
        (None, Some(Mark::Note), "note"),
        (None, Some(Mark::Ok), "success"),
    ];
    for (flow, mark, text) in items {
        let ring = if mark == Some(Mark::Warn) { 22.0 } else { 0.0 };
        let w = 40.0 + text_w(text, 11.0) + 18.0 + ring;
        if lx + w > width - MARGIN {
            lx = MARGIN;
            ly += 22.0;
        }
        let cy = ly + 9.0;
        if let Some(f) = flow {
            let c = flow_color(f);
            let _ = writeln!(
                legend,
                r#"<line x1="{lx:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="{c}" stroke-width="2.2" marker-end="url(#ah-{})"/>"#,
                lx + 30.0,
                flow_name(f)
            );
        }
        if let Some(m) = mark {
            let (fill, _, _) = mark_colors(m);
            if m == Mark::Warn {
                let _ = writeln!(
                    legend,
                    r#"<circle cx="{:.1}" cy="{cy:.1}" r="7" fill="none" stroke="{fill}" stroke-width="3"/>"#,
                    lx + text_w(text, 11.0) + 52.0
                );
            }
            let _ = writeln!(
                legend,
                r#"<rect x="{lx:.1}" y="{:.1}" width="32" height="14" rx="4" fill="{fill}"/>"#,
                cy - 7.0
            );
        }
        let _ = writeln!(
            legend,
            r##"<text x="{:.1}" y="{:.1}" font-family="{SANS}" font-size="11" fill="#333333">{}</text>"##,
            lx + 40.0,
            cy + 4.0,
            xml_escape(text)
        );
        lx += w;
    }
    ly += 22.0;
    let note = "Numbered arrows: each delivery on a network segment, in order, with the addresses the datagram carried there. Dashed lines: lifelines of each box.";
    let _ = writeln!(
        legend,
        r##"<text x="{MARGIN:.1}" y="{:.1}" font-family="{SANS}" font-size="11" fill="#555555">{}</text>"##,
        ly + 8.0,
        xml_escape(note)
    );
    width = width.max(MARGIN * 2.0 + note.chars().count() as f64 * 11.0 * 0.58);
    let height = ly + 8.0 + MARGIN;

    // ----- assemble -----------------------------------------------------------------
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}">"#,
        w = width.ceil(),
        h = height.ceil()
    );
    let _ = writeln!(
        out,
        "<title>{}</title>",
        xml_escape(titles.first().map(String::as_str).unwrap_or("nodeport-lab"))
    );
    out.push_str("<defs>\n");
    for f in [Flow::Syn, Flow::Reply, Flow::Error] {
        let _ = writeln!(
            out,
            r#"<marker id="ah-{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M 0 0 L 10 5 L 0 10 z" fill="{}"/></marker>"#,
            flow_name(f),
            flow_color(f)
        );
    }
    out.push_str("</defs>\n");
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{:.0}" height="{:.0}" fill="#ffffff"/>"##,
        width.ceil(),
        height.ceil()
    );
    out.push_str(&lifelines);
    out.push_str(&boxes);
    out.push_str(&fg);
    out.push_str(&legend);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_xml() {
        assert_eq!(
            xml_escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
    }

    #[test]
    fn attachment_names() {
        assert_eq!(Place::of_attachment("router/node-network"), Place::Router);
        assert_eq!(
            Place::of_attachment("ydzs-node2/cni0 bridge"),
            Place::Node("ydzs-node2".into())
        );
        assert_eq!(
            Place::of_attachment("browser"),
            Place::Edge("browser".into())
        );
    }
}
