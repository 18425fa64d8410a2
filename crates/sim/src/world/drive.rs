//! The clocks: virtual time (idle time jumps to the next deadline) and the caller's wall
//! clock ([`World::poll`]).

use std::time::Duration;

use super::World;
use crate::host::{RequestId, RequestOutcome};

impl World {
    /// The earliest deadline of any port or node (and the next health-check round).
    pub fn next_deadline(&self) -> Option<Duration> {
        let probes = self.prober.as_ref().map(|p| p.next_round);
        self.next_deadline_inner().into_iter().chain(probes).min()
    }

    pub(super) fn next_deadline_inner(&self) -> Option<Duration> {
        let nodes = self.nodes.iter().filter_map(|n| n.node.poll_at());
        self.edges_deadline().into_iter().chain(nodes).min()
    }

    /// Real-time driving: process everything due at `now` (the caller's clock; never moves
    /// backwards) and return the next deadline, if any.
    pub fn poll(&mut self, now: Duration) -> Option<Duration> {
        if now > self.now {
            self.now = now;
        }
        self.step();
        self.next_deadline()
    }

    pub(super) fn advance(&mut self, limit: Duration) -> bool {
        self.advance_with(limit, true)
    }

    pub(super) fn advance_with(&mut self, limit: Duration, probes: bool) -> bool {
        let next = if probes {
            self.next_deadline()
        } else {
            self.next_deadline_inner()
        };
        match next {
            Some(t) if t <= limit => {
                // A deadline already due that produced nothing: nudge the clock forward.
                self.now = if t > self.now {
                    t
                } else {
                    self.now + Duration::from_millis(1)
                };
                true
            }
            _ => false,
        }
    }

    /// Virtual time: run until `deadline`, jumping over idle time.
    pub fn run_until(&mut self, deadline: Duration) {
        loop {
            self.step();
            if !self.advance(deadline) {
                break;
            }
        }
        if self.now < deadline {
            self.now = deadline;
            self.step();
        }
    }

    /// Virtual time: run until nothing is in flight and no timer is pending (bounded to one
    /// virtual day from now).
    pub fn run_until_idle(&mut self) {
        let limit = self.now + Duration::from_secs(86_400);
        loop {
            self.step();
            if !self.advance_with(limit, false) {
                break;
            }
        }
    }

    /// Virtual time: run until request `id` has an outcome (then finish what is in flight
    /// at that instant, e.g. the closing handshake, without advancing time). The client
    /// hands the outcome over: [`World::outcome`] has it until the next request this call
    /// completes, so a long plan keeps no outcome per request.
    pub fn run_until_complete(&mut self, id: RequestId) -> Option<RequestOutcome> {
        let limit = self.now + Duration::from_secs(86_400);
        loop {
            self.step();
            if let Some(o) = self.take_outcome(id) {
                return Some(o);
            }
            if !self.advance(limit) {
                return self.take_outcome(id);
            }
        }
    }

    /// Virtual time: like [`World::run_until_complete`], but stop once the clock reaches
    /// `limit` (then `now() == limit`) if request `id` has no outcome by then: the caller
    /// does what is due at `limit` (a kubelet restart, a kube-proxy sync) and calls again.
    pub fn run_until_complete_or(
        &mut self,
        id: RequestId,
        limit: Duration,
    ) -> Option<RequestOutcome> {
        loop {
            self.step();
            if let Some(o) = self.take_outcome(id) {
                return Some(o);
            }
            if !self.advance(limit) {
                break;
            }
        }
        if self.now < limit {
            self.now = limit;
            self.step();
        }
        self.take_outcome(id)
    }
}
