//! The node's routing table with a longest-prefix-match index.
//!
//! Owns the `ip route` entries in insertion order (what `Node::routes` shows) and their
//! [`PrefixIndex`], so a lookup costs one hash probe per distinct prefix length (a handful)
//! instead of a scan over every route (one per other node).

use std::net::IpAddr;

use vswitch::prefix::PrefixIndex;

use crate::node::Route;

/// Routes plus their lookup index.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    index: PrefixIndex,
}

impl RouteTable {
    pub(crate) fn push(&mut self, r: Route) {
        self.index.insert(r.dest, self.routes.len());
        self.routes.push(r);
    }

    pub(crate) fn as_slice(&self) -> &[Route] {
        &self.routes
    }

    /// Longest-prefix match.
    pub(crate) fn lookup(&self, dst: IpAddr) -> Option<&Route> {
        self.index.lookup(dst).map(|i| &self.routes[i])
    }
}
