//! The request API (curl-like GETs from embedded clients) and the pods' access logs.

use std::net::SocketAddr;

use super::{Edge, EdgeKind, RequestMeta, SimError, World};
use crate::host::{
    AccessLog, AccessLogEntry, ClientHandle, RequestId, RequestOpts, RequestOutcome,
};
use crate::udp::UdpOpts;
use vswitch::packet::{PROTO_TCP, PROTO_UDP};

impl World {
    /// Start a curl-like GET from `client` to `dst` (IPv4, or IPv6 from a client with an
    /// IPv6 address). Run the clock to make progress.
    pub fn start_request(
        &mut self,
        client: &str,
        dst: impl Into<SocketAddr>,
        opts: RequestOpts,
    ) -> Result<RequestId, SimError> {
        let dst = dst.into();
        let (e, handle, id) = self.new_request(client, dst, PROTO_TCP)?;
        handle.start(id, dst, opts, self.now);
        self.kick(e);
        Ok(id)
    }

    /// Send one UDP datagram from `client` to `dst` and wait for the answer (outcome `Ok`
    /// with the answer as body, `Timeout` or `Refused`). Run the clock to make progress.
    pub fn start_udp(
        &mut self,
        client: &str,
        dst: impl Into<SocketAddr>,
        opts: UdpOpts,
    ) -> Result<RequestId, SimError> {
        let dst = dst.into();
        let (e, handle, id) = self.new_request(client, dst, PROTO_UDP)?;
        handle.start_udp(id, dst, opts, self.now);
        self.kick(e);
        Ok(id)
    }

    /// A new request id from an embedded client (its edge and handle).
    fn new_request(
        &mut self,
        client: &str,
        dst: SocketAddr,
        proto: u8,
    ) -> Result<(usize, ClientHandle, RequestId), SimError> {
        let e = self
            .edge_index
            .get(client)
            .copied()
            .filter(|&e| self.edges[e].kind == EdgeKind::Client)
            .ok_or_else(|| SimError::UnknownClient(client.to_string()))?;
        let handle = self.edges[e]
            .client
            .clone()
            .ok_or_else(|| SimError::NotEmbedded(client.to_string()))?;
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.requests.insert(
            id,
            RequestMeta {
                client: e,
                dst,
                started: self.now,
                proto,
            },
        );
        Ok((e, handle, id))
    }

    /// `start_request` + `run_until_complete`.
    pub fn request(
        &mut self,
        client: &str,
        dst: impl Into<SocketAddr>,
        opts: RequestOpts,
    ) -> Result<RequestOutcome, SimError> {
        let id = self.start_request(client, dst, opts)?;
        self.run_until_complete(id).ok_or(SimError::NoOutcome(id.0))
    }

    /// The outcome of a request, once it ended: until [`World::run_until_complete`] took
    /// it, or while it is the last one that did.
    pub fn outcome(&self, id: RequestId) -> Option<RequestOutcome> {
        match &self.done {
            Some((d, o)) if *d == id => Some(o.clone()),
            _ => self.request_client(id)?.outcome(id),
        }
    }

    /// The client that runs request `id`.
    pub(super) fn request_client(&self, id: RequestId) -> Option<&ClientHandle> {
        let m = self.requests.get(&id)?;
        self.edges[m.client].client.as_ref()
    }

    /// Request `id`'s outcome taken from its client, once it ended; the world keeps it as
    /// the last finished request.
    pub(super) fn take_outcome(&mut self, id: RequestId) -> Option<RequestOutcome> {
        if let Some((d, o)) = &self.done {
            if *d == id {
                return Some(o.clone());
            }
        }
        let out = self.request_client(id)?.take_outcome(id)?;
        self.done = Some((id, out.clone()));
        Some(out)
    }

    // ----- observation -------------------------------------------------------------------

    pub(super) fn pod_edge(&self, pod: &str) -> Result<&Edge, SimError> {
        self.edge_index
            .get(pod)
            .map(|&e| &self.edges[e])
            .filter(|e| matches!(e.kind, EdgeKind::Pod { .. }))
            .ok_or_else(|| SimError::UnknownPod(pod.to_string()))
    }

    /// The access log of an embedded pod.
    fn pod_log(&self, pod: &str) -> Option<&AccessLog> {
        self.pod_edge(pod).ok()?.access_log.as_ref()
    }

    /// The pod's access log lines (nginx `main` format). Empty for external ports.
    pub fn access_log(&self, pod: &str) -> Vec<String> {
        self.pod_log(pod).map(|l| l.lines()).unwrap_or_default()
    }

    /// Structured access log entries (with `remote_addr`).
    pub fn access_entries(&self, pod: &str) -> Vec<AccessLogEntry> {
        self.pod_log(pod).map(|l| l.entries()).unwrap_or_default()
    }

    /// How many lines the pod's access log has (0 for external ports and unknown pods).
    pub fn access_log_len(&self, pod: &str) -> usize {
        self.pod_log(pod).map_or(0, |l| l.len())
    }

    /// The pod's latest access-log entry.
    pub fn last_access_entry(&self, pod: &str) -> Option<AccessLogEntry> {
        self.pod_log(pod)?.last()
    }

    /// A mark in the world-wide access journal (every line any embedded pod logged, in
    /// order); pass it to [`World::access_entries_since`].
    pub fn access_mark(&self) -> usize {
        self.journal.len()
    }

    /// (pod, entry) of every access-log line written since `mark`, in the order they were
    /// logged: what a request did to the logs, without scanning every pod.
    pub fn access_entries_since(&self, mark: usize) -> Vec<(String, AccessLogEntry)> {
        self.journal
            .since(mark)
            .into_iter()
            .filter_map(|(e, i)| {
                let edge = &self.edges[e];
                let entry = edge.access_log.as_ref()?.get(i)?;
                Some((edge.name.clone(), entry))
            })
            .collect()
    }

    /// (pod, `$remote_addr`) of every access-log line written since `mark`, in the order
    /// they were logged: [`World::access_entries_since`] without copying the entries (the
    /// runner asks once per request).
    pub fn access_peers_since(&self, mark: usize) -> Vec<(&str, std::net::IpAddr)> {
        self.journal
            .since(mark)
            .into_iter()
            .filter_map(|(e, i)| {
                let edge = &self.edges[e];
                let addr = edge.access_log.as_ref()?.remote_addr(i)?;
                Some((edge.name.as_str(), addr))
            })
            .collect()
    }

    /// Names of the pods (edges running or standing in for servers), in attachment order.
    pub fn pods(&self) -> Vec<String> {
        self.edges
            .iter()
            .filter(|e| matches!(e.kind, EdgeKind::Pod { .. }))
            .map(|e| e.name.clone())
            .collect()
    }
}
