//! Access logs of the embedded apps: one entry per request or datagram an app answered, with
//! the peer address its socket saw (nginx's `$remote_addr`, agnhost's clientip), written in
//! nginx's `main` format whatever the app, so reports read every app the same way.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::WallClock;

/// One access-log entry of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub at: Duration,
    /// `$remote_addr`: the peer address the server's socket saw.
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub request: String,
    pub status: u16,
    pub body_bytes_sent: usize,
    pub user_agent: Option<String>,
    /// The line in nginx's `main` format.
    pub line: String,
}

/// What an app writes for one request (the rest comes from the clock).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `$request`, e.g. `GET / HTTP/1.1` or `UDP hostname`.
    pub request: String,
    pub status: u16,
    pub body_bytes_sent: usize,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub forwarded_for: Option<String>,
}

/// Every access-log line of a world's pods, in the order they were written: (the tag the
/// log was registered with, the entry's index in that log). Appended to, never scanned.
#[derive(Debug, Clone, Default)]
pub struct AccessJournal(Arc<Mutex<Vec<(usize, usize)>>>);

impl AccessJournal {
    pub fn len(&self) -> usize {
        self.0.lock().expect("poisoned").len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The (tag, index) pairs from position `mark` on.
    pub fn since(&self, mark: usize) -> Vec<(usize, usize)> {
        let j = self.0.lock().expect("poisoned");
        j.get(mark..).map(<[_]>::to_vec).unwrap_or_default()
    }
    fn push(&self, tag: usize, index: usize) {
        self.0.lock().expect("poisoned").push((tag, index));
    }
}

#[derive(Debug, Default)]
struct LogInner {
    entries: Vec<AccessLogEntry>,
    journal: Option<(AccessJournal, usize)>,
}

/// Shared view of a pod's access log (all its apps write here).
#[derive(Debug, Clone, Default)]
pub struct AccessLog(Arc<Mutex<LogInner>>);

impl AccessLog {
    pub fn entries(&self) -> Vec<AccessLogEntry> {
        self.0.lock().expect("poisoned").entries.clone()
    }
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("poisoned")
            .entries
            .iter()
            .map(|e| e.line.clone())
            .collect()
    }
    pub fn len(&self) -> usize {
        self.0.lock().expect("poisoned").entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Entry `i` (0 = the first line).
    pub fn get(&self, i: usize) -> Option<AccessLogEntry> {
        self.0.lock().expect("poisoned").entries.get(i).cloned()
    }
    /// `$remote_addr` of entry `i`, without copying the entry.
    pub fn remote_addr(&self, i: usize) -> Option<IpAddr> {
        self.0
            .lock()
            .expect("poisoned")
            .entries
            .get(i)
            .map(|e| e.remote_addr)
    }
    /// The latest entry.
    pub fn last(&self) -> Option<AccessLogEntry> {
        self.0.lock().expect("poisoned").entries.last().cloned()
    }
    /// Also note every new line in `journal`, tagged `tag`.
    pub fn set_journal(&self, journal: AccessJournal, tag: usize) {
        self.0.lock().expect("poisoned").journal = Some((journal, tag));
    }

    /// Write one entry (its line by [`main_line`]).
    pub(crate) fn record(&self, clock: &WallClock, now: Duration, peer: SocketAddr, a: Access) {
        let line = main_line(clock, now, peer, &a);
        self.push(AccessLogEntry {
            remote_addr: peer.ip(),
            remote_port: peer.port(),
            at: now,
            request: a.request,
            status: a.status,
            body_bytes_sent: a.body_bytes_sent,
            user_agent: a.user_agent,
            line,
        });
    }

    fn push(&self, e: AccessLogEntry) {
        let mut log = self.0.lock().expect("poisoned");
        log.entries.push(e);
        if let Some((j, tag)) = &log.journal {
            j.push(*tag, log.entries.len() - 1);
        }
    }
}

/// One line in nginx's `main` format:
/// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer"
/// "$http_user_agent" "$http_x_forwarded_for"`.
pub fn main_line(clock: &WallClock, now: Duration, peer: SocketAddr, a: &Access) -> String {
    format!(
        "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" \"{}\"",
        peer.ip(),
        clock.time_local(now),
        dash(Some(&a.request)),
        a.status,
        a.body_bytes_sent,
        dash(a.referer.as_deref()),
        dash(a.user_agent.as_deref()),
        dash(a.forwarded_for.as_deref()),
    )
}

fn dash(v: Option<&str>) -> &str {
    match v {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    }
}
