//! The packet queue: datagrams emitted onto a segment are resolved to the attachment that
//! owns the next hop and delivered in FIFO order; [`World::step`] runs everything ready now.

use std::net::IpAddr;
use std::time::Duration;

use nodestack::{Egress, Iface};
use vswitch::packet;
use vswitch::Port;

use super::trace::{FabricEvent, TraceEvent};
use super::{Attach, World};

impl World {
    /// The edges a step polls at `now`, in index order (the order every step has always
    /// used): embedded edges due now, and every external port. Written into `due` (the
    /// world's reused scratch list: a step runs several times per datagram).
    fn due_edges(&self, now: Duration, due: &mut Vec<usize>) {
        due.clear();
        due.extend(
            self.wake
                .range(..=(now, usize::MAX))
                .map(|&(_, e)| e)
                .chain(self.external.iter().copied()),
        );
        due.sort_unstable();
        due.dedup();
    }

    /// Re-register embedded edge `e` under its current `poll_at` after the world touched it
    /// (a datagram in or out, a new device); a deleted edge leaves every schedule.
    pub(super) fn rewake(&mut self, e: usize) {
        let edge = &mut self.edges[e];
        if edge.gone {
            self.external.remove(&e);
        }
        let t = if edge.gone || !edge.embedded {
            None
        } else {
            edge.port.poll_at()
        };
        if edge.wake_at != t {
            if let Some(old) = edge.wake_at {
                self.wake.remove(&(old, e));
            }
            if let Some(new) = t {
                self.wake.insert((new, e));
            }
            edge.wake_at = t;
        }
    }

    /// Poll edge `e` at the next step whatever its deadline (a request was queued on it).
    pub(super) fn kick(&mut self, e: usize) {
        if let Some(old) = self.edges[e].wake_at.take() {
            self.wake.remove(&(old, e));
        }
        if self.edges[e].embedded {
            self.edges[e].wake_at = Some(self.now);
            self.wake.insert((self.now, e));
        }
    }

    /// Edge `e` is an embedded host: polled by deadline instead of on every step.
    pub(super) fn mark_embedded(&mut self, e: usize) {
        self.edges[e].embedded = true;
        self.external.remove(&e);
        self.rewake(e);
    }

    /// The earliest deadline of the edges: the first registered embedded one and every
    /// external port's own.
    pub(super) fn edges_deadline(&self) -> Option<Duration> {
        let external = self
            .external
            .iter()
            .filter_map(|&e| self.edges[e].port.poll_at());
        let embedded = self.wake.first().map(|&(t, _)| t);
        external.chain(embedded).min()
    }

    pub(super) fn emit(&mut self, from: Attach, seg: usize, next_hop: IpAddr, pkt: Vec<u8>) {
        self.capture(from, &pkt);
        let to = self.segments[seg].resolve(next_hop);
        if to.is_none() {
            self.lost += 1;
        }
        if self.tracing {
            let ev = FabricEvent {
                at: self.now,
                segment: self.segments[seg].name().to_string(),
                from: self.attach_name(from),
                to: to.map(|a| self.attach_name(a)),
                next_hop,
                summary: packet::summarize(&pkt).ok(),
            };
            self.trace.push(TraceEvent::Fabric(ev));
        }
        if let Some(a) = to {
            self.queue.push_back((a, pkt));
        }
    }

    pub(super) fn edge_egress(&mut self, e: usize, pkt: Vec<u8>) {
        let Ok(s) = packet::summarize(&pkt) else {
            self.lost += 1;
            return;
        };
        let dst = s.tuple.dst;
        let edge = &self.edges[e];
        let seg = edge.seg;
        let gateway = match dst {
            IpAddr::V4(_) => Some(IpAddr::V4(edge.gateway)),
            IpAddr::V6(_) => edge.gateway6.map(IpAddr::V6),
        };
        let on_link = self.segments[seg].on_link(dst);
        if on_link && Some(dst) != gateway {
            // Pod to pod on a cni0 bridge: br_netfilter hands it to the node's hooks.
            if let Some(&n) = self.cni_node.get(&seg) {
                if self.segments[seg].resolve(dst).is_some() {
                    if self.tracing {
                        let ev = FabricEvent {
                            at: self.now,
                            segment: self.segments[seg].name().to_string(),
                            from: self.edges[e].name.clone(),
                            to: Some(self.attach_name(Attach::Bridge(n))),
                            next_hop: dst,
                            summary: Some(s),
                        };
                        self.trace.push(TraceEvent::Fabric(ev));
                    }
                    self.queue.push_back((Attach::Bridge(n), pkt));
                } else {
                    self.emit(Attach::Edge(e), seg, dst, pkt);
                }
                return;
            }
        }
        // An IPv6 datagram from an edge without an IPv6 gateway goes nowhere off-link.
        let Some(next_hop) = (if on_link { Some(dst) } else { gateway }) else {
            self.lost += 1;
            return;
        };
        self.emit(Attach::Edge(e), seg, next_hop, pkt);
    }

    pub(super) fn deliver(&mut self, to: Attach, pkt: Vec<u8>) {
        let now = self.now;
        self.capture(to, &pkt);
        match to {
            Attach::Node(n, iface) => {
                let mut outs = std::mem::take(&mut self.egress);
                let node = &mut self.nodes[n].node;
                node.receive_into(now, iface, pkt, &mut self.rng, &mut outs);
                self.collect();
                self.emit_node(n, outs);
            }
            Attach::Bridge(n) => {
                let mut outs = std::mem::take(&mut self.egress);
                let node = &mut self.nodes[n].node;
                node.bridge_into(now, pkt, &mut self.rng, &mut outs);
                self.collect();
                self.emit_node(n, outs);
            }
            Attach::Router(i) => {
                let out = self.router.receive_owned(now, i, pkt, &mut self.rng);
                self.collect();
                if let Some(o) = out {
                    let seg = self.router_segs[o.iface];
                    self.emit(Attach::Router(o.iface), seg, o.next_hop, o.pkt);
                }
            }
            Attach::Edge(e) => {
                if !self.edges[e].gone {
                    self.edges[e].port.send_owned(now, pkt);
                    self.collect();
                    self.rewake(e);
                }
            }
        }
    }

    /// Put what node `n` transmitted on the segments of its interfaces. `outs` (emptied) is
    /// kept as the world's reused egress list.
    fn emit_node(&mut self, n: usize, mut outs: Vec<Egress>) {
        for o in outs.drain(..) {
            let seg = match o.iface {
                Iface::Eth0 => self.nodes[n].eth0_seg,
                Iface::Cni0 => self.nodes[n].cni_seg,
            };
            self.emit(Attach::Node(n, o.iface), seg, o.next_hop, o.pkt);
        }
        self.egress = outs;
    }

    /// Process everything ready at the current time. Returns whether anything moved.
    pub(super) fn step(&mut self) -> bool {
        let mut any = false;
        for _ in 0..100_000 {
            let mut progress = false;
            let now = self.now;
            self.probe_tick();
            let mut due = std::mem::take(&mut self.due);
            self.due_edges(now, &mut due);
            for &e in &due {
                while let Some(p) = self.edges[e].port.recv(now) {
                    progress = true;
                    self.collect();
                    self.edge_egress(e, p);
                }
                self.rewake(e);
            }
            self.due = due;
            for n in 0..self.nodes.len() {
                if self.nodes[n].node.poll_at().is_some_and(|t| t <= now) {
                    let mut outs = std::mem::take(&mut self.egress);
                    self.nodes[n].node.poll_into(now, &mut self.rng, &mut outs);
                    self.collect();
                    progress |= !outs.is_empty();
                    self.emit_node(n, outs);
                }
            }
            while let Some((to, pkt)) = self.queue.pop_front() {
                progress = true;
                self.deliver(to, pkt);
            }
            if !progress {
                break;
            }
            any = true;
        }
        any
    }
}
