//! The diagram's vocabulary: places (lifelines), flows (arrow colors), marks (badge kinds)
//! and the rows the sequence part is made of.

/// Where on the picture something happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
    Router,
    Lb,
    Node(String),
    /// A pod or a client (external or pod client), by name.
    Edge(String),
}

impl Place {
    /// From a fabric attachment name: `router/<iface>`, `<node>/eth0`, `<node>/cni0`,
    /// `<node>/cni0 bridge`, or an edge port's name.
    pub(super) fn of_attachment(name: &str) -> Place {
        if name.starts_with("router/") {
            return Place::Router;
        }
        match name.split_once('/') {
            Some((node, _)) => Place::Node(node.to_string()),
            None => Place::Edge(name.to_string()),
        }
    }

    pub(super) fn name(&self) -> String {
        match self {
            Place::Router => "router".into(),
            Place::Lb => "load balancer".into(),
            Place::Node(n) | Place::Edge(n) => n.clone(),
        }
    }
}

/// Which datagram an arrow carries (its color).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Syn,
    Reply,
    Error,
}

/// Badge kinds (their colors and tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mark {
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
pub(super) enum Row {
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
