//! SVG building blocks: sizes, fonts, colors, escaping and the element writer.

use std::fmt::Write as _;

use super::model::{Flow, Mark};

pub(super) const MARGIN: f64 = 24.0;
pub(super) const FS: f64 = 12.0;
/// Advance of one DejaVu Sans Mono / Menlo / Consolas character at `FS` (0.602 em), plus
/// slack.
pub(super) const CW: f64 = 7.4;
pub(super) const MONO: &str = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace";
pub(super) const SANS: &str = "DejaVu Sans, Helvetica, Arial, Liberation Sans, sans-serif";
pub(super) const GAP: f64 = 40.0;
pub(super) const LINE: f64 = 16.0;
pub(super) const INNER_H: f64 = 42.0;
pub(super) const HOST_W: f64 = 96.0;
pub(super) const ROW_ARROW: f64 = 36.0;
pub(super) const ROW_BADGE: f64 = 28.0;
pub(super) const ROW_PHASE: f64 = 32.0;

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

pub(super) fn text_w(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * (CW / FS)
}

pub(super) fn flow_color(f: Flow) -> &'static str {
    match f {
        Flow::Syn => "#1565c0",
        Flow::Reply => "#2e7d32",
        Flow::Error => "#6d4c41",
    }
}

pub(super) fn flow_name(f: Flow) -> &'static str {
    match f {
        Flow::Syn => "syn",
        Flow::Reply => "reply",
        Flow::Error => "error",
    }
}

/// (fill, text on fill, detail text color)
pub(super) fn mark_colors(m: Mark) -> (&'static str, &'static str, &'static str) {
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

pub(super) struct Rect {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) w: f64,
    pub(super) h: f64,
}

pub(super) struct Svg {
    pub(super) body: String,
}

impl Svg {
    pub(super) fn rect(&mut self, r: &Rect, fill: &str, stroke: &str, extra: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6" fill="{fill}" stroke="{stroke}" {extra}/>"#,
            r.x, r.y, r.w, r.h
        );
    }
    #[allow(clippy::too_many_arguments)]
    pub(super) fn text(
        &mut self,
        x: f64,
        y: f64,
        s: &str,
        size: f64,
        fill: &str,
        font: &str,
        extra: &str,
    ) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-family="{font}" font-size="{size}" fill="{fill}" {extra}>{}</text>"#,
            xml_escape(s)
        );
    }
    pub(super) fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, extra: &str) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" {extra}/>"#
        );
    }
}
