//! The sequence part drawn under the header: phase titles, numbered arrows and badges on
//! the lifelines, the legend, and the assembled SVG document.

use std::fmt::Write as _;

use super::layout::Column;
use super::model::{Flow, Mark, Place, Row};
use super::style::{
    flow_color, flow_name, mark_colors, text_w, xml_escape, FS, MARGIN, MONO, ROW_ARROW, ROW_BADGE,
    ROW_PHASE, SANS,
};

/// Lifeline x of a place (the load balancer falls back to the router's).
pub(super) fn col_x(columns: &[Column], p: &Place) -> Option<f64> {
    columns
        .iter()
        .find(|c| c.place == *p)
        .or_else(|| {
            (*p == Place::Lb)
                .then(|| columns.iter().find(|c| c.place == Place::Router))
                .flatten()
        })
        .map(|c| c.x)
}

/// A reply that bypasses the place that translated the SYN: put the note right under the
/// first arrow of the reply that jumps over that place's lifeline, and return the crossings
/// to ring: (arrow number, lifeline x).
pub(super) fn place_bypass_notes(rows: &mut Vec<Row>, columns: &[Column]) -> Vec<(usize, f64)> {
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
        let Some(cx) = col_x(columns, at) else {
            continue;
        };
        let phase_start = rows[..i]
            .iter()
            .rposition(|r| matches!(r, Row::Phase { .. }))
            .unwrap_or(0);
        let crossing = (phase_start..i).find_map(|j| match &rows[j] {
            Row::Arrow { n, from, to, .. } => {
                let (a, b) = (col_x(columns, from)?, col_x(columns, to)?);
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
    crossings
}

/// The width the rows need, at least `width`.
pub(super) fn rows_width(rows: &[Row], columns: &[Column], mut width: f64) -> f64 {
    for r in rows {
        match r {
            Row::Arrow { label, .. } => {
                width = width.max(text_w(label, FS) + 24.0 + 2.0 * MARGIN);
            }
            Row::Badge { at, tag, text, .. } => {
                let cx = col_x(columns, at).unwrap_or(MARGIN);
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
    width
}

/// Draws the rows into one SVG fragment from `y` down.
pub(super) struct RowPainter<'a> {
    pub(super) columns: &'a [Column],
    pub(super) crossings: &'a [(usize, f64)],
    pub(super) width: f64,
    pub(super) fg: String,
    pub(super) y: f64,
}

impl RowPainter<'_> {
    pub(super) fn row(&mut self, r: &Row) {
        match r {
            Row::Phase { title, flow } => self.phase(title, *flow),
            Row::Arrow {
                n,
                from,
                to,
                label,
                flow,
            } => {
                let (Some(x1), Some(x2)) = (col_x(self.columns, from), col_x(self.columns, to))
                else {
                    return;
                };
                self.arrow(*n, x1, x2, *flow);
                self.arrow_label(*n, x1, x2, label, *flow);
                self.y += ROW_ARROW;
            }
            Row::Badge {
                at,
                mark,
                tag,
                text,
            } => {
                let Some(cx) = col_x(self.columns, at) else {
                    return;
                };
                self.badge(cx, *mark, tag, text);
            }
        }
    }

    fn phase(&mut self, title: &str, flow: Flow) {
        let (fg, y, width) = (&mut self.fg, self.y, self.width);
        let c = flow_color(flow);
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
        self.y += ROW_PHASE;
    }

    /// The arrow itself (a loop when both ends are the same lifeline), ringed where it
    /// crosses a bypassed lifeline.
    fn arrow(&mut self, n: usize, x1: f64, x2: f64, flow: Flow) {
        let (fg, y) = (&mut self.fg, self.y);
        let c = flow_color(flow);
        let ly = y + 26.0;
        if (x1 - x2).abs() < 1.0 {
            let _ = writeln!(
                fg,
                r#"<path d="M {:.1} {:.1} h 34 v 12 h -30" fill="none" stroke="{c}" stroke-width="2.2" marker-end="url(#ah-{})"/>"#,
                x1 + 3.0,
                ly - 6.0,
                flow_name(flow)
            );
            return;
        }
        let dir = if x2 > x1 { 1.0 } else { -1.0 };
        let _ = writeln!(
            fg,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2.2" marker-end="url(#ah-{})"/>"#,
            x1 + dir * 4.0,
            x2 - dir * 6.0,
            flow_name(flow)
        );
        let _ = writeln!(
            fg,
            r#"<circle cx="{x1:.1}" cy="{ly:.1}" r="3.5" fill="{c}"/>"#
        );
        for (_, cx) in self.crossings.iter().filter(|(k, _)| *k == n) {
            let _ = writeln!(
                fg,
                r##"<circle cx="{cx:.1}" cy="{ly:.1}" r="7" fill="none" stroke="#f9a825" stroke-width="3"/>"##
            );
        }
    }

    /// Label above the arrow: number badge + tuple.
    fn arrow_label(&mut self, n: usize, x1: f64, x2: f64, label: &str, flow: Flow) {
        let (fg, y, width) = (&mut self.fg, self.y, self.width);
        let c = flow_color(flow);
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
    }

    /// A badge on lifeline `cx`: the tag on its color, the detail text beside it (right if
    /// it fits, else left).
    fn badge(&mut self, cx: f64, mark: Mark, tag: &str, text: &str) {
        let (fg, y, width) = (&mut self.fg, self.y, self.width);
        let (fill, on, dark) = mark_colors(mark);
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
        self.y += ROW_BADGE;
    }
}

/// Lifelines from each box down to `rows_bottom` (drawn under the rows).
pub(super) fn lifelines(columns: &[Column], rows_bottom: f64) -> String {
    let mut lifelines = String::new();
    for c in columns {
        let _ = writeln!(
            lifelines,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{rows_bottom:.1}" stroke="#9e9e9e" stroke-width="1.2" stroke-dasharray="5 4"/>"##,
            c.y0,
            x = c.x
        );
    }
    lifelines
}

const LEGEND: [(Option<Flow>, Option<Mark>, &str); 11] = [
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

/// The legend below the rows, wrapped to `width`; returns (SVG, the picture's height, its
/// final width).
pub(super) fn legend(rows_bottom: f64, mut width: f64) -> (String, f64, f64) {
    let mut legend = String::new();
    let mut ly = rows_bottom + 24.0;
    let _ = writeln!(
        legend,
        r##"<text x="{MARGIN:.1}" y="{:.1}" font-family="{SANS}" font-size="13" font-weight="bold" fill="#111111">Legend</text>"##,
        ly
    );
    ly += 12.0;
    let mut lx = MARGIN;
    for (flow, mark, text) in LEGEND {
        let ring = if mark == Some(Mark::Warn) { 22.0 } else { 0.0 };
        let w = 40.0 + text_w(text, 11.0) + 18.0 + ring;
        if lx + w > width - MARGIN {
            lx = MARGIN;
            ly += 22.0;
        }
        legend_item(&mut legend, lx, ly + 9.0, flow, mark, text);
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
    (legend, height, width)
}

/// One legend entry at (`lx`, `cy`): an arrow or a badge swatch (a ring for warnings), and
/// its text.
fn legend_item(
    legend: &mut String,
    lx: f64,
    cy: f64,
    flow: Option<Flow>,
    mark: Option<Mark>,
    text: &str,
) {
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
}

/// The SVG document: header line, title, arrowhead markers, white background, then the
/// layers in drawing order.
pub(super) fn assemble(title: &str, width: f64, height: f64, layers: &[&str]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}">"#,
        w = width.ceil(),
        h = height.ceil()
    );
    let _ = writeln!(out, "<title>{}</title>", xml_escape(title));
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
    for l in layers {
        out.push_str(l);
    }
    out.push_str("</svg>\n");
    out
}
