//! The picture's header: the title lines and the topology of the cluster (external
//! clients, router, load balancer, node network, one box per node with its pods and client
//! pods), laid out left to right; every box gets a lifeline column.

use sim::TraceEvent;

use super::model::{Place, Row};
use super::style::{text_w, Rect, Svg, FS, GAP, HOST_W, INNER_H, LINE, MARGIN, MONO, SANS};
use cluster::{ClientAttach, Cluster};

/// A box of the topology with a lifeline.
pub(super) struct Column {
    pub(super) place: Place,
    /// Lifeline x.
    pub(super) x: f64,
    /// Where the lifeline starts.
    pub(super) y0: f64,
}

/// The drawn header and where its lifelines are.
pub(super) struct Layout {
    /// SVG elements of the title and the topology.
    pub(super) boxes: String,
    pub(super) columns: Vec<Column>,
    /// Bottom of the lowest box.
    pub(super) header_bottom: f64,
    /// Right edge of the rightmost box.
    pub(super) topology_right: f64,
    /// Width the title lines need.
    pub(super) min_w: f64,
}

/// Lays the header out while drawing it: `x` is where the next box goes.
struct Header {
    svg: Svg,
    columns: Vec<Column>,
    box_top: f64,
    header_bottom: f64,
    x: f64,
    /// Whose rules the flow walks: `iptables`, or `ip6tables` for an IPv6 request.
    tables: &'static str,
}

/// A pod or client pod inside a node box.
struct Inner {
    place: Place,
    lines: Vec<String>,
    client: bool,
}

impl Header {
    /// A box of text lines at `x` with a lifeline from its bottom; moves `x` past it and
    /// returns the lifeline's x.
    fn simple_box(&mut self, place: Place, lines: &[String], fill: &str, stroke: &str) -> f64 {
        let (x, box_top) = (self.x, self.box_top);
        let w = lines.iter().map(|l| text_w(l, FS)).fold(120.0, f64::max) + 20.0;
        let h = 12.0 + LINE * lines.len() as f64;
        let r = Rect {
            x,
            y: box_top,
            w,
            h,
        };
        self.svg.rect(&r, fill, stroke, r#"stroke-width="1.5""#);
        for (i, l) in lines.iter().enumerate() {
            let extra = if i == 0 { r#"font-weight="bold""# } else { "" };
            let y = box_top + 20.0 + LINE * i as f64;
            self.svg.text(x + 10.0, y, l, FS, "#111111", MONO, extra);
        }
        self.columns.push(Column {
            place,
            x: x + w / 2.0,
            y0: box_top + h,
        });
        self.header_bottom = self.header_bottom.max(box_top + h);
        self.x += w + GAP;
        x + w / 2.0
    }

    /// The load balancer's box (frontend, targets, health checks).
    fn lb_box(&mut self, lb: &cluster::LoadBalancer) -> f64 {
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
        self.simple_box(Place::Lb, &lines, "#e8eaf6", "#3949ab")
    }

    /// One node: its frame and header lines, the host netns box (the node's lifeline) and
    /// its pods and client pods. Returns the host box's lifeline x.
    fn node_box(
        &mut self,
        cluster: &Cluster,
        n: &cluster::Node,
        inner_top: f64,
        node_h: f64,
    ) -> f64 {
        let header = node_header(n);
        let inners = inners_of(cluster, n);
        let inner_ws: Vec<f64> = inners
            .iter()
            .map(|i| i.lines.iter().map(|l| text_w(l, FS)).fold(60.0, f64::max) + 16.0)
            .collect();
        let content_w = 12.0 + HOST_W + inner_ws.iter().map(|w| w + 10.0).sum::<f64>() + 2.0;
        let header_w = header.iter().map(|l| text_w(l, FS)).fold(0.0, f64::max) + 24.0;
        let w = content_w.max(header_w).max(190.0);
        let (x, box_top) = (self.x, self.box_top);
        let stroke = if n.masquerade { "#37474f" } else { "#c62828" };
        let frame = Rect {
            x,
            y: box_top,
            w,
            h: node_h,
        };
        self.svg
            .rect(&frame, "#fafafa", stroke, r#"stroke-width="1.8""#);
        for (i, l) in header.iter().enumerate() {
            let (extra, fill) = match i {
                0 => (r#"font-weight="bold""#, "#111111"),
                3 => ("", "#c62828"),
                _ => ("", "#333333"),
            };
            let y = box_top + 20.0 + LINE * i as f64;
            self.svg.text(x + 12.0, y, l, FS, fill, MONO, extra);
        }
        let hx = x + 12.0;
        self.host_netns(&n.name, hx, inner_top);
        let mut ix = hx + HOST_W + 10.0;
        for (inner, iw) in inners.iter().zip(&inner_ws) {
            self.inner_box(inner, ix, *iw, inner_top);
            ix += iw + 10.0;
        }
        self.header_bottom = self.header_bottom.max(box_top + node_h);
        self.x += w + GAP / 2.0;
        hx + HOST_W / 2.0
    }

    /// The host network namespace: where iptables or ip6tables (kube-proxy's rules) runs.
    fn host_netns(&mut self, node: &str, hx: f64, inner_top: f64) {
        let r = Rect {
            x: hx,
            y: inner_top,
            w: HOST_W,
            h: INNER_H,
        };
        self.svg
            .rect(&r, "#fff8e1", "#8d6e63", r#"stroke-dasharray="4 2""#);
        let (tx, brown) = (hx + 8.0, "#4e342e");
        self.svg
            .text(tx, inner_top + 17.0, "host netns", 11.0, brown, MONO, "");
        self.svg
            .text(tx, inner_top + 33.0, self.tables, 11.0, brown, MONO, "");
        self.columns.push(Column {
            place: Place::Node(node.to_string()),
            x: hx + HOST_W / 2.0,
            y0: inner_top + INNER_H,
        });
    }

    /// A pod or client pod box inside a node, with its lifeline.
    fn inner_box(&mut self, inner: &Inner, ix: f64, iw: f64, inner_top: f64) {
        let (fill, stroke) = if inner.client {
            ("#e3f2fd", "#1565c0")
        } else {
            ("#e8f5e9", "#2e7d32")
        };
        let r = Rect {
            x: ix,
            y: inner_top,
            w: iw,
            h: INNER_H,
        };
        self.svg.rect(&r, fill, stroke, "");
        for (k, l) in inner.lines.iter().enumerate() {
            let extra = if k == 0 { r#"font-weight="bold""# } else { "" };
            let y = inner_top + 17.0 + LINE * k as f64;
            self.svg.text(ix + 8.0, y, l, FS, "#111111", MONO, extra);
        }
        self.columns.push(Column {
            place: inner.place.clone(),
            x: ix + iw / 2.0,
            y0: inner_top + INNER_H,
        });
    }
}

/// A node box's header lines: name (role), eth0, cni0 and pod CIDR, masquerade off.
fn node_header(n: &cluster::Node) -> Vec<String> {
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
}

/// The pods, then the client pods, of node `n`.
fn inners_of(cluster: &Cluster, n: &cluster::Node) -> Vec<Inner> {
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
    inners
}

/// Client network label: the segments the traced datagrams crossed.
fn client_net_label(hops: &[TraceEvent]) -> String {
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
    if client_nets.is_empty() {
        "client network".to_string()
    } else {
        format!("client network {}", client_nets.join(", "))
    }
}

/// Draws the title lines from the top margin; returns (y below them, width they need).
fn draw_titles(svg: &mut Svg, titles: &[String]) -> (f64, f64) {
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
    (y, min_w)
}

/// Places the rows mention that the topology does not show (robustness).
fn extra_places(rows: &[Row], columns: &[Column]) -> Vec<Place> {
    let mut extra: Vec<Place> = Vec::new();
    for r in rows {
        let ps = match r {
            Row::Arrow { from, to, .. } => vec![from.clone(), to.clone()],
            Row::Badge { at, .. } => vec![at.clone()],
            Row::Phase { .. } => vec![],
        };
        for p in ps {
            let known = columns.iter().any(|c| c.place == p)
                || (p == Place::Lb && columns.iter().any(|c| c.place == Place::Router));
            if !known && !extra.contains(&p) {
                extra.push(p);
            }
        }
    }
    extra
}

/// Where the network bars attach.
struct Bars {
    bus_y: f64,
    box_top: f64,
    client_xs: Vec<f64>,
    router_x: f64,
    lb_x: Option<f64>,
    node_host_xs: Vec<f64>,
    nodes_right: f64,
}

/// Networks: client network bar (clients → router), node network bar (router → nodes).
fn draw_networks(svg: &mut Svg, cluster: &Cluster, b: &Bars, client_net_label: &str) {
    let (bus_y, box_top) = (b.bus_y, b.box_top);
    let net_stroke = r#"stroke-width="4" stroke-linecap="round""#;
    let drop = r#"stroke-width="2""#;
    if let Some(first) = b.client_xs.first() {
        let end = b.router_x - 18.0;
        svg.line(*first, bus_y, end, bus_y, "#90a4ae", net_stroke);
        for cx in &b.client_xs {
            svg.line(*cx, bus_y, *cx, box_top, "#90a4ae", drop);
        }
        svg.line(end, bus_y, end, box_top, "#90a4ae", drop);
        let y = bus_y - 8.0;
        svg.text(MARGIN, y, client_net_label, 11.0, "#546e7a", MONO, "");
    }
    if !cluster.nodes.is_empty() {
        let start = b.router_x + 18.0;
        let end = b.nodes_right - 10.0;
        svg.line(start, bus_y, end, bus_y, "#546e7a", net_stroke);
        svg.line(start, bus_y, start, box_top, "#546e7a", drop);
        if let Some(lx) = b.lb_x {
            svg.line(lx, bus_y, lx, box_top, "#546e7a", drop);
        }
        for hx in &b.node_host_xs {
            svg.line(*hx, bus_y, *hx, box_top, "#546e7a", drop);
        }
        let label = format!(
            "node network {} (router {})",
            cluster.node_network, cluster.router_ip
        );
        svg.text(start + 6.0, bus_y - 8.0, &label, 11.0, "#37474f", MONO, "");
    }
}

/// Draws the title and the topology; `rows` name the places that need a lifeline.
pub(super) fn layout(
    cluster: &Cluster,
    titles: &[String],
    hops: &[TraceEvent],
    rows: &[Row],
    ipv6: bool,
) -> Layout {
    let mut svg = Svg {
        body: String::new(),
    };
    let (y, min_w) = draw_titles(&mut svg, titles);
    let bus_y = y + 22.0;
    let box_top = bus_y + 28.0;
    let mut h = Header {
        svg,
        columns: Vec::new(),
        box_top,
        header_bottom: box_top,
        x: MARGIN,
        tables: if ipv6 { "ip6tables" } else { "iptables" },
    };
    let net_label = client_net_label(hops);
    let mut client_xs = Vec::new();
    for c in cluster
        .clients
        .iter()
        .filter(|c| matches!(c.attach, ClientAttach::External { .. }))
    {
        let ip = match (ipv6, c.ipv6) {
            (true, Some(v6)) => v6.to_string(),
            _ => c.ip.to_string(),
        };
        let lines = vec![c.name.clone(), ip, "external client".into()];
        client_xs.push(h.simple_box(Place::Edge(c.name.clone()), &lines, "#e3f2fd", "#1565c0"));
    }
    // Room for the client network label left of the router.
    if !client_xs.is_empty() {
        h.x = h.x.max(MARGIN + text_w(&net_label, 11.0) + 24.0);
    }
    let router_lines = vec![
        "router".to_string(),
        format!("{}", cluster.router_ip),
        "default gateway".to_string(),
    ];
    let router_x = h.simple_box(Place::Router, &router_lines, "#eceff1", "#455a64");
    let lb_x = cluster.load_balancer.as_ref().map(|lb| h.lb_box(lb));

    let header_lines = cluster
        .nodes
        .iter()
        .map(|n| node_header(n).len())
        .max()
        .unwrap_or(3);
    let inner_top = box_top + 10.0 + LINE * header_lines as f64 + 6.0;
    let node_h = inner_top - box_top + INNER_H + 12.0;
    let node_host_xs: Vec<f64> = cluster
        .nodes
        .iter()
        .map(|n| h.node_box(cluster, n, inner_top, node_h))
        .collect();
    let nodes_right = h.x - GAP / 2.0;

    h.x = h.x.max(nodes_right + GAP);
    for p in extra_places(rows, &h.columns) {
        let lines = vec![p.name(), "(not in the cluster)".into()];
        h.simple_box(p, &lines, "#f5f5f5", "#9e9e9e");
    }
    let topology_right = h.x - GAP / 2.0;
    let bars = Bars {
        bus_y,
        box_top,
        client_xs,
        router_x,
        lb_x,
        node_host_xs,
        nodes_right,
    };
    draw_networks(&mut h.svg, cluster, &bars, &net_label);
    Layout {
        boxes: h.svg.body,
        columns: h.columns,
        header_bottom: h.header_bottom,
        topology_right,
        min_w,
    }
}
