//! The connection tracking table (nf_conntrack semantics, spec §6).
//!
//! Owns flow state: each [`ConnEntry`] holds the *original* tuple (as the first packet was
//! seen) and the *reply* tuple (what a reply looks like after DNAT/SNAT), the TCP state, the
//! ASSURED/SEEN_REPLY status bits and an absolute expiry time. Both tuples index the entry, so
//! a packet in either direction finds it. NAT decisions are *not* made here: the
//! [`crate::proxier`] decides and inserts; this module stores, times out and bounds.
//!
//! Layout (memory target ≤ 128 B/entry): entries live densely in a `Vec<ConnEntry>` (96 B
//! each: two tuples whose addresses are IPv4 or IPv6); a `hashbrown::HashTable<u32>` maps both tuples to `index << 1 | direction` (two
//! 4-byte slots + control bytes per entry). Removal is `swap_remove` with the moved entry's
//! two index slots patched.

use std::time::Duration;

use hashbrown::HashTable;

use crate::Now;
use wire::{sctp_chunk, tcp_flags, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

pub use wire::Tuple;

/// An address folded to 32 bits for [`hash64`] (IPv6: the xor of its four words).
#[inline]
fn fold(a: std::net::IpAddr) -> u64 {
    match a {
        std::net::IpAddr::V4(v) => u64::from(u32::from(v)),
        std::net::IpAddr::V6(v) => {
            let x = u128::from(v);
            u64::from((x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32))
        }
    }
}

/// The table's hash of a tuple (a two-round multiply-xor mix, so both the low bucket bits
/// and the high tag bits are well mixed).
#[inline]
fn hash64(t: &Tuple) -> u64 {
    let a = (fold(t.src) << 32) | fold(t.dst);
    let b = (u64::from(t.sport) << 32) | (u64::from(t.dport) << 16) | u64::from(t.proto);
    let m = u128::from(a ^ 0x243f_6a88_85a3_08d3) * u128::from(b ^ 0x1319_8a2e_0370_7344);
    let h = (m as u64) ^ ((m >> 64) as u64);
    // Second round so both low (bucket) and high (tag) bits are well mixed.
    let m2 = u128::from(h ^ a.rotate_left(17)) * 0x9e37_79b9_7f4a_7c15;
    (m2 as u64) ^ ((m2 >> 64) as u64)
}

/// nf_conntrack's TCP states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TcpState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

impl TcpState {
    /// `conntrack -L` spelling.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }

    /// Timeout for the state (§6.3; established/close_wait as kube-proxy sets them).
    pub fn timeout(self) -> Duration {
        Duration::from_secs(match self {
            TcpState::SynSent => 120,
            TcpState::SynRecv => 60,
            TcpState::Established => 86_400,
            TcpState::FinWait => 120,
            TcpState::CloseWait => 3_600,
            TcpState::LastAck => 30,
            TcpState::TimeWait => 120,
            TcpState::Close => 10,
        })
    }

    fn from_u8(v: u8) -> Option<TcpState> {
        Some(match v {
            0 => TcpState::SynSent,
            1 => TcpState::SynRecv,
            2 => TcpState::Established,
            3 => TcpState::FinWait,
            4 => TcpState::CloseWait,
            5 => TcpState::LastAck,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            _ => return None,
        })
    }
}

/// UDP timeout before a reply is seen (`nf_conntrack_udp_timeout`).
pub const UDP_TIMEOUT: Duration = Duration::from_secs(30);
/// UDP timeout of a stream (`nf_conntrack_udp_timeout_stream`, Linux ≥ 5.0): replies seen
/// and traffic still flowing [`UDP_STREAM_AFTER`] after the first packet.
pub const UDP_STREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after its first packet a replied UDP flow must still be active to count as a
/// stream (`ct->proto.udp.stream_ts = 2 * HZ + jiffies`, nf_conntrack_proto_udp.c).
pub const UDP_STREAM_AFTER: Duration = Duration::from_secs(2);
/// SCTP timeouts (nf_conntrack_proto_sctp.c `sctp_timeouts`): COOKIE_WAIT / COOKIE_ECHOED
/// (3 s) until the association is up, ESTABLISHED (210 s), CLOSED (10 s).
///
/// The SCTP model is simplified (the first chunk of each packet drives it; no verification
/// tags, no SHUTDOWN_* / HEARTBEAT states): a flow starts in COOKIE_WAIT; a COOKIE_ECHO
/// makes it COOKIE_ECHOED; a COOKIE_ACK ESTABLISHED and ASSURED (as `sctp_conntracks`
/// does); an ABORT or SHUTDOWN_COMPLETE CLOSED; other chunks (DATA, SACK, …) leave the
/// state alone. A first packet starting with ABORT, SHUTDOWN_COMPLETE or COOKIE_ACK is
/// out of the blue and INVALID (nf_conntrack_sctp_packet, RFC 9260 §8.4).
pub const SCTP_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// SCTP ESTABLISHED timeout (`nf_conntrack_sctp_timeout_established`).
pub const SCTP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(210);
/// SCTP CLOSED timeout (`nf_conntrack_sctp_timeout_closed`).
pub const SCTP_CLOSED_TIMEOUT: Duration = Duration::from_secs(10);
/// ICMP echo timeout (`nf_conntrack_icmp_timeout`); ICMPv6 echo has the same 30 s
/// (`nf_conntrack_icmpv6_timeout`, nf_conntrack_proto_icmpv6.c `nf_ct_icmpv6_timeout`).
pub const ICMP_TIMEOUT: Duration = Duration::from_secs(30);

/// Direction of a packet relative to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Same direction as the first packet.
    Original,
    /// The other way.
    Reply,
}

const NO_TCP: u8 = 0xff;
const F_SEEN_REPLY: u8 = 1;
const F_ASSURED: u8 = 2;
const F_FIN_ORIG: u8 = 4;
const F_FIN_REPLY: u8 = 8;
/// The last TCP packet went in the reply direction (`ct->proto.tcp.last_dir`).
const F_LAST_REPLY: u8 = 16;
/// The last TCP packet was a RST (`ct->proto.tcp.last_index == TCP_RST_SET`).
const F_LAST_RST: u8 = 32;
/// SCTP: ABORT or SHUTDOWN_COMPLETE seen.
const F_SCTP_CLOSED: u8 = 64;
/// SCTP: COOKIE_ECHO seen.
const F_SCTP_ECHOED: u8 = 128;

/// One conntrack entry.
#[derive(Debug, Clone)]
pub struct ConnEntry {
    pub original: Tuple,
    pub reply: Tuple,
    /// Absolute expiry in milliseconds of [`Now`].
    expires_ms: u64,
    /// UDP: first packet + [`UDP_STREAM_AFTER`], in milliseconds modulo 2^32 (`stream_ts`,
    /// compared like the kernel's 32-bit jiffies with `time_after`), so the entry stays
    /// small with IPv6-sized tuples.
    stream_ms: u32,
    tcp: u8,
    flags: u8,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl ConnEntry {
    /// A fresh entry for a first packet (TCP: `SYN_SENT`, or `ESTABLISHED` for a mid-stream
    /// pickup), expiring per its protocol's timeout.
    pub fn new(original: Tuple, reply: Tuple, tcp_flags_first: u8, now: Now) -> ConnEntry {
        let mut e = ConnEntry {
            original,
            reply,
            expires_ms: 0,
            stream_ms: ms(now + UDP_STREAM_AFTER) as u32,
            tcp: NO_TCP,
            flags: 0,
        };
        if original.proto == PROTO_TCP {
            e.tcp = if tcp_flags_first & tcp_flags::SYN != 0 {
                TcpState::SynSent as u8
            } else {
                TcpState::Established as u8
            };
        }
        e.expires_ms = ms(now + e.timeout());
        e
    }

    /// TCP state (None for UDP/ICMP).
    pub fn tcp_state(&self) -> Option<TcpState> {
        TcpState::from_u8(self.tcp)
    }
    /// A reply was seen.
    pub fn seen_reply(&self) -> bool {
        self.flags & F_SEEN_REPLY != 0
    }
    /// `[ASSURED]`: will not be early-dropped.
    pub fn assured(&self) -> bool {
        self.flags & F_ASSURED != 0
    }
    /// Absolute expiry time.
    pub fn expires(&self) -> Now {
        Duration::from_millis(self.expires_ms)
    }
    /// Whether the entry has expired at `now`.
    pub fn is_expired(&self, now: Now) -> bool {
        ms(now) >= self.expires_ms
    }
    /// Destination NAT happened (reply source ≠ original destination).
    pub fn is_dnat(&self) -> bool {
        self.reply.src != self.original.dst || self.reply.sport != self.original.dport
    }
    /// Source NAT happened (reply destination ≠ original source).
    pub fn is_snat(&self) -> bool {
        self.reply.dst != self.original.src || self.reply.dport != self.original.sport
    }
    /// The tuple of direction `d`.
    pub fn tuple(&self, d: Dir) -> &Tuple {
        match d {
            Dir::Original => &self.original,
            Dir::Reply => &self.reply,
        }
    }

    fn timeout(&self) -> Duration {
        match self.original.proto {
            PROTO_TCP => self.tcp_state().map_or(UDP_TIMEOUT, TcpState::timeout),
            PROTO_UDP if self.assured() => UDP_STREAM_TIMEOUT,
            PROTO_UDP => UDP_TIMEOUT,
            PROTO_SCTP => match self.sctp_state() {
                "CLOSED" => SCTP_CLOSED_TIMEOUT,
                "ESTABLISHED" => SCTP_ESTABLISHED_TIMEOUT,
                _ => SCTP_HANDSHAKE_TIMEOUT,
            },
            _ => ICMP_TIMEOUT,
        }
    }

    /// Account a packet of this flow seen at `now` in direction `dir` (TCP flags for TCP):
    /// state machine, SEEN_REPLY/ASSURED bits and the timer refresh.
    pub fn on_packet(&mut self, dir: Dir, flags: u8, now: Now) {
        match self.original.proto {
            PROTO_TCP => {
                if self.syn_ignored(dir, flags) {
                    // tcp_packet(): a SYN on a closed entry that does not reopen it is
                    // ignored: no state change, no timer refresh.
                    self.note_last(dir, flags);
                    return;
                }
                self.tcp_transition(dir, flags);
            }
            PROTO_UDP => self.udp_status(now),
            PROTO_SCTP => self.sctp_status(flags),
            _ if dir == Dir::Reply && !self.seen_reply() => self.flags |= F_ASSURED,
            _ => {}
        }
        // nf_conntrack_in() sets SEEN_REPLY after the protocol handler ran.
        if dir == Dir::Reply {
            self.flags |= F_SEEN_REPLY;
        }
        self.expires_ms = ms(now + self.timeout());
    }

    /// nf_conntrack_udp_packet() (Linux ≥ 6.2): once a reply was seen, a packet more than
    /// [`UDP_STREAM_AFTER`] after the flow's first packet makes it a stream — ASSURED, with
    /// the 120 s stream timeout; before that, and without replies, the timeout stays 30 s.
    fn udp_status(&mut self, now: Now) {
        if self.seen_reply() && (ms(now) as u32).wrapping_sub(self.stream_ms) as i32 > 0 {
            self.flags |= F_ASSURED;
        }
    }

    /// SCTP (simplified, see [`SCTP_HANDSHAKE_TIMEOUT`]): `chunk` is the packet's first
    /// chunk type.
    fn sctp_status(&mut self, chunk: u8) {
        match chunk {
            sctp_chunk::ABORT | sctp_chunk::SHUTDOWN_COMPLETE => self.flags |= F_SCTP_CLOSED,
            sctp_chunk::COOKIE_ECHO => self.flags |= F_SCTP_ECHOED,
            sctp_chunk::COOKIE_ACK => self.flags |= F_ASSURED,
            _ => {}
        }
    }

    /// An SCTP first packet that cannot create an entry (out of the blue).
    pub fn sctp_ootb(chunk: u8) -> bool {
        matches!(
            chunk,
            sctp_chunk::ABORT | sctp_chunk::SHUTDOWN_COMPLETE | sctp_chunk::COOKIE_ACK
        )
    }

    /// SCTP state name as `conntrack -L` prints it (of the simplified model).
    pub fn sctp_state(&self) -> &'static str {
        if self.flags & F_SCTP_CLOSED != 0 {
            "CLOSED"
        } else if self.assured() {
            "ESTABLISHED"
        } else if self.flags & F_SCTP_ECHOED != 0 {
            "COOKIE_ECHOED"
        } else {
            "COOKIE_WAIT"
        }
    }

    /// Whether a SYN in direction `dir` kills this entry so that the packet is decided
    /// afresh (nf_conntrack_proto_tcp.c, tcp_packet(), new state SYN_SENT from TIME_WAIT or
    /// CLOSE): yes when either side began a FIN close (IP_CT_TCP_FLAG_CLOSE_INIT) or the
    /// last packet in this direction was a RST; otherwise the SYN is ignored.
    pub fn syn_reopens(&self, dir: Dir, flags: u8) -> bool {
        self.syn_on_closed(flags) && {
            let any_fin = self.flags & (F_FIN_ORIG | F_FIN_REPLY) != 0;
            let last_dir = if self.flags & F_LAST_REPLY != 0 {
                Dir::Reply
            } else {
                Dir::Original
            };
            any_fin || (last_dir == dir && self.flags & F_LAST_RST != 0)
        }
    }

    fn syn_on_closed(&self, flags: u8) -> bool {
        flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
            && matches!(self.tcp_state(), Some(TcpState::TimeWait | TcpState::Close))
    }

    fn syn_ignored(&self, dir: Dir, flags: u8) -> bool {
        self.syn_on_closed(flags) && !self.syn_reopens(dir, flags)
    }

    /// Remember the direction and RST-ness of the last TCP packet.
    fn note_last(&mut self, dir: Dir, flags: u8) {
        self.flags &= !(F_LAST_REPLY | F_LAST_RST);
        if dir == Dir::Reply {
            self.flags |= F_LAST_REPLY;
        }
        if flags & tcp_flags::RST != 0 {
            self.flags |= F_LAST_RST;
        }
    }

    /// The TCP state machine (a simplification of tcp_conntracks[][][] without window
    /// tracking).
    fn tcp_transition(&mut self, dir: Dir, flags: u8) {
        let Some(st) = self.tcp_state() else {
            return;
        };
        use tcp_flags::*;
        let (my_fin, other_fin) = match dir {
            Dir::Original => (F_FIN_ORIG, F_FIN_REPLY),
            Dir::Reply => (F_FIN_REPLY, F_FIN_ORIG),
        };
        let next = if flags & RST != 0 {
            TcpState::Close
        } else if flags & FIN != 0 {
            let already_other = self.flags & other_fin != 0;
            self.flags |= my_fin;
            match st {
                TcpState::SynSent | TcpState::SynRecv | TcpState::Established => TcpState::FinWait,
                TcpState::FinWait | TcpState::CloseWait if already_other => TcpState::LastAck,
                s => s,
            }
        } else if flags & SYN != 0 && flags & ACK != 0 {
            if dir == Dir::Reply && st == TcpState::SynSent {
                TcpState::SynRecv
            } else {
                st
            }
        } else if flags & ACK != 0 {
            match st {
                TcpState::SynRecv if dir == Dir::Original => {
                    self.flags |= F_ASSURED;
                    TcpState::Established
                }
                TcpState::Established if dir == Dir::Reply => {
                    // Picked-up flow saw the other side: assured.
                    self.flags |= F_ASSURED;
                    st
                }
                // The side that did not send the first FIN acknowledges it.
                TcpState::FinWait if self.flags & my_fin == 0 => TcpState::CloseWait,
                TcpState::LastAck => TcpState::TimeWait,
                s => s,
            }
        } else {
            st
        };
        self.tcp = next as u8;
        self.note_last(dir, flags);
    }

    /// `conntrack -L` line, e.g.
    /// `tcp      6 86399 ESTABLISHED src=… dst=… sport=… dport=… src=… … [ASSURED] mark=0 use=1`.
    pub fn format(&self, now: Now) -> String {
        let left = self.expires_ms.saturating_sub(ms(now)) / 1000;
        let (name, num) = match self.original.proto {
            PROTO_TCP => ("tcp", 6),
            PROTO_UDP => ("udp", 17),
            PROTO_ICMP => ("icmp", 1),
            PROTO_ICMPV6 => ("icmpv6", 58),
            PROTO_SCTP => ("sctp", 132),
            p => ("unknown", p),
        };
        let mut s = format!("{name:<8} {num} {left} ");
        if let Some(st) = self.tcp_state() {
            s.push_str(st.name());
            s.push(' ');
        } else if self.original.proto == PROTO_SCTP {
            s.push_str(self.sctp_state());
            s.push(' ');
        }
        let tuple = |t: &Tuple, request: bool| -> String {
            if t.proto == PROTO_ICMP || t.proto == PROTO_ICMPV6 {
                let ty = match (t.proto == PROTO_ICMPV6, request) {
                    (false, true) => 8,
                    (false, false) => 0,
                    (true, true) => 128,
                    (true, false) => 129,
                };
                format!(
                    "src={} dst={} type={ty} code=0 id={}",
                    t.src, t.dst, t.sport
                )
            } else {
                format!(
                    "src={} dst={} sport={} dport={}",
                    t.src, t.dst, t.sport, t.dport
                )
            }
        };
        s.push_str(&tuple(&self.original, true));
        if !self.seen_reply() {
            s.push_str(" [UNREPLIED]");
        }
        s.push(' ');
        s.push_str(&tuple(&self.reply, false));
        if self.assured() {
            s.push_str(" [ASSURED]");
        }
        s.push_str(" mark=0 use=1");
        s
    }
}

/// State between prerouting and postrouting of a flow's first packet.
#[derive(Debug, Clone)]
pub struct PendingFlow {
    pub original: Tuple,
    /// The reply tuple so far (after DNAT; SNAT is filled in by postrouting).
    pub reply: Tuple,
    /// TCP flags of the first packet.
    pub tcp_flags: u8,
}

/// Why an insert failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("nf_conntrack: table full, dropping packet")]
    Full,
    #[error("tuple already in use")]
    Clash,
}

/// Counters (like `conntrack -S`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    pub inserted: u64,
    /// New flows dropped because the table was full.
    pub drop_full: u64,
    /// Inserts refused because a tuple was already taken.
    pub insert_failed: u64,
    pub expired: u64,
}

/// The table.
#[derive(Debug)]
pub struct Conntrack {
    max: usize,
    entries: Vec<ConnEntry>,
    index: HashTable<u32>,
    stats: ConntrackStats,
}

#[inline]
fn slot(idx: usize, dir: Dir) -> u32 {
    ((idx as u32) << 1) | u32::from(dir == Dir::Reply)
}

impl Conntrack {
    pub fn new(max: usize) -> Self {
        Conntrack {
            max,
            entries: Vec::new(),
            index: HashTable::new(),
            stats: ConntrackStats::default(),
        }
    }
    pub fn max(&self) -> usize {
        self.max
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// `nf_conntrack_count >= nf_conntrack_max`.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max
    }
    pub fn stats(&self) -> ConntrackStats {
        self.stats
    }
    pub(crate) fn count_drop_full(&mut self) {
        self.stats.drop_full += 1;
    }
    /// Reserve room for `n` more entries (avoids rehash latency in benchmarks).
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        let entries = &self.entries;
        self.index.reserve(2 * n, |&s| {
            hash64(entries[(s >> 1) as usize].tuple(dir_of(s)))
        });
    }
    /// Heap bytes held (entries + index), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<ConnEntry>() + self.index.allocation_size()
    }
    /// All entries, `conntrack -L` order (unspecified).
    pub fn entries(&self) -> impl Iterator<Item = &ConnEntry> {
        self.entries.iter()
    }
    /// Entry by index.
    pub fn get(&self, idx: usize) -> &ConnEntry {
        &self.entries[idx]
    }
    pub(crate) fn get_mut(&mut self, idx: usize) -> &mut ConnEntry {
        &mut self.entries[idx]
    }

    /// Find the entry a packet with tuple `t` belongs to, and its direction.
    #[inline]
    pub fn lookup(&self, t: &Tuple) -> Option<(usize, Dir)> {
        let entries = &self.entries;
        self.index
            .find(hash64(t), |&s| {
                entries[(s >> 1) as usize].tuple(dir_of(s)) == t
            })
            .map(|&s| ((s >> 1) as usize, dir_of(s)))
    }

    /// Whether no entry uses `t` in either direction.
    pub fn is_free(&self, t: &Tuple) -> bool {
        self.lookup(t).is_none()
    }

    /// Confirm a new entry.
    pub fn insert(&mut self, e: ConnEntry) -> Result<usize, InsertError> {
        if self.is_full() {
            self.stats.drop_full += 1;
            return Err(InsertError::Full);
        }
        if !self.is_free(&e.original) || !self.is_free(&e.reply) {
            self.stats.insert_failed += 1;
            return Err(InsertError::Clash);
        }
        let idx = self.entries.len();
        let (ho, hr) = (hash64(&e.original), hash64(&e.reply));
        self.entries.push(e);
        let entries = &self.entries;
        let hasher = |&s: &u32| hash64(entries[(s >> 1) as usize].tuple(dir_of(s)));
        self.index
            .insert_unique(ho, slot(idx, Dir::Original), hasher);
        self.index.insert_unique(hr, slot(idx, Dir::Reply), hasher);
        self.stats.inserted += 1;
        Ok(idx)
    }

    fn unindex(&mut self, idx: usize) {
        for d in [Dir::Original, Dir::Reply] {
            let t = *self.entries[idx].tuple(d);
            let s = slot(idx, d);
            if let Ok(e) = self.index.find_entry(hash64(&t), |&x| x == s) {
                e.remove();
            }
        }
    }

    /// Remove entry `idx` (the last entry moves into its place).
    pub fn remove(&mut self, idx: usize) -> ConnEntry {
        self.unindex(idx);
        let last = self.entries.len() - 1;
        if idx != last {
            for d in [Dir::Original, Dir::Reply] {
                let t = *self.entries[last].tuple(d);
                let old = slot(last, d);
                if let Some(s) = self.index.find_mut(hash64(&t), |&x| x == old) {
                    *s = slot(idx, d);
                }
            }
        }
        self.entries.swap_remove(idx)
    }

    /// Remove every entry expired at `now`; returns how many.
    pub fn expire(&mut self, now: Now) -> usize {
        let now_ms = ms(now);
        let mut n = 0;
        let mut i = self.entries.len();
        while i > 0 {
            i -= 1;
            if now_ms >= self.entries[i].expires_ms {
                self.remove(i);
                n += 1;
            }
        }
        self.stats.expired += n as u64;
        n
    }

    /// Remove every entry (`conntrack -F`).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    /// Remove entries matching `pred` (e.g. `conntrack -D` for stale UDP flows, §6.4).
    pub fn remove_where(&mut self, mut pred: impl FnMut(&ConnEntry) -> bool) -> usize {
        let mut n = 0;
        let mut i = self.entries.len();
        while i > 0 {
            i -= 1;
            if pred(&self.entries[i]) {
                self.remove(i);
                n += 1;
            }
        }
        n
    }
}

#[inline]
fn dir_of(s: u32) -> Dir {
    if s & 1 == 0 {
        Dir::Original
    } else {
        Dir::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn t(a: u8, sp: u16, b: u8, dp: u16) -> Tuple {
        Tuple {
            proto: PROTO_TCP,
            src: IpAddr::from([10, 0, 0, a]),
            sport: sp,
            dst: IpAddr::from([10, 0, 1, b]),
            dport: dp,
        }
    }

    #[test]
    fn entry_is_compact() {
        // Two tuples of IpAddr (17 bytes each address, IPv4 or IPv6) plus timers and state;
        // the kernel's nf_conn is several times this.
        assert!(std::mem::size_of::<ConnEntry>() <= 96);
    }

    #[test]
    fn insert_lookup_remove_both_directions() {
        let mut ct = Conntrack::new(10);
        let now = Duration::ZERO;
        for i in 0..5u8 {
            let o = t(i, 1000 + u16::from(i), 1, 80);
            let r = t(9, 80, i, 2000 + u16::from(i));
            ct.insert(ConnEntry::new(o, r, tcp_flags::SYN, now))
                .unwrap();
        }
        assert_eq!(ct.lookup(&t(3, 1003, 1, 80)), Some((3, Dir::Original)));
        assert_eq!(ct.lookup(&t(9, 80, 3, 2003)), Some((3, Dir::Reply)));
        ct.remove(1);
        assert!(ct.lookup(&t(1, 1001, 1, 80)).is_none());
        // the last entry moved into slot 1 and is still found both ways
        assert_eq!(ct.lookup(&t(4, 1004, 1, 80)), Some((1, Dir::Original)));
        assert_eq!(ct.lookup(&t(9, 80, 4, 2004)), Some((1, Dir::Reply)));
        assert_eq!(ct.len(), 4);
    }

    #[test]
    fn tcp_handshake_and_close() {
        use tcp_flags::*;
        let o = t(1, 1000, 1, 80);
        let mut e = ConnEntry::new(o, o.invert(), SYN, Duration::ZERO);
        assert_eq!(e.tcp_state(), Some(TcpState::SynSent));
        e.on_packet(Dir::Reply, SYN | ACK, Duration::ZERO);
        assert_eq!(e.tcp_state(), Some(TcpState::SynRecv));
        e.on_packet(Dir::Original, ACK, Duration::ZERO);
        assert_eq!(e.tcp_state(), Some(TcpState::Established));
        assert!(e.assured());
        assert_eq!(e.expires(), Duration::from_secs(86_400));
        e.on_packet(Dir::Original, FIN | ACK, Duration::ZERO);
        assert_eq!(e.tcp_state(), Some(TcpState::FinWait));
        e.on_packet(Dir::Reply, ACK, Duration::ZERO);
        assert_eq!(e.tcp_state(), Some(TcpState::CloseWait));
        e.on_packet(Dir::Reply, FIN | ACK, Duration::ZERO);
        assert_eq!(e.tcp_state(), Some(TcpState::LastAck));
        e.on_packet(Dir::Original, ACK, Duration::ZERO);
        assert_eq!(e.tcp_state(), Some(TcpState::TimeWait));
        assert_eq!(e.expires(), Duration::from_secs(120));
    }
}
