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

mod badges;
mod chains;
mod draw;
mod layout;
mod model;
mod rows;
mod style;

use sim::TraceEvent;

use crate::report::{Outcome, RequestResult};
use cluster::Cluster;
use draw::RowPainter;
use model::{Flow, Mark, Place, Row};
use rows::build_rows;
use style::MARGIN;

pub use rows::{hop_lines, hop_rows_json};
pub use style::xml_escape;

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
    let outcome = match (r.outcome, r.status, &r.reply) {
        (Outcome::Ok, Some(s), _) => format!("outcome: ok, HTTP {s}"),
        (Outcome::Ok, None, Some(reply)) => {
            format!("outcome: ok, UDP answer {:?}", reply.trim_end())
        }
        (o, _, _) => format!("outcome: {} after {} ms", o.as_str(), r.elapsed_ms),
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

/// The rows of the request's diagram, closed by the client's outcome badge.
fn request_rows(request: &RequestResult, hops: &[TraceEvent]) -> Vec<Row> {
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
        (Outcome::Ok, None) if request.reply.is_some() => {
            let reply = request.reply.as_deref().unwrap_or_default().trim_end();
            match request.logged_client_ip {
                Some(ip) => format!("udp: answer {reply:?}; the app saw client IP {ip}"),
                None => format!("udp: answer {reply:?}"),
            }
        }
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
    rows
}

fn render(
    cluster: &Cluster,
    number: Option<usize>,
    request: &RequestResult,
    hops: &[TraceEvent],
) -> String {
    let mut rows = request_rows(request, hops);
    let titles = title_lines(cluster, number, request);
    let header = layout::layout(cluster, &titles, hops, &rows, request.client_ip.is_ipv6());
    let columns = &header.columns;
    let crossings = draw::place_bypass_notes(&mut rows, columns);
    let width = (header.topology_right + MARGIN)
        .max(header.min_w)
        .max(720.0);
    let width = draw::rows_width(&rows, columns, width);
    let mut painter = RowPainter {
        columns,
        crossings: &crossings,
        width,
        fg: String::new(),
        y: header.header_bottom + 28.0,
    };
    for r in &rows {
        painter.row(r);
    }
    let rows_bottom = painter.y + 8.0;
    let lifelines = draw::lifelines(columns, rows_bottom);
    let (legend, height, width) = draw::legend(rows_bottom, width);
    let title = titles.first().map(String::as_str).unwrap_or("nodeport-lab");
    let layers = [
        lifelines.as_str(),
        header.boxes.as_str(),
        painter.fg.as_str(),
        legend.as_str(),
    ];
    draw::assemble(title, width, height, &layers)
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
