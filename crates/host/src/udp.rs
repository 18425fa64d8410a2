//! A real UDP client in a client namespace: one datagram from a connected socket (fixed or
//! kernel-chosen source port), then wait for the answer, like
//! `socat -T2 - UDP4:ip:port,sourceport=N` (`UDP6:[ip]:port` for an IPv6 destination: the
//! socket is of the destination's family).
//!
//! The socket is created by a helper thread that entered the namespace ([`Netns::run`]), so
//! it lives there; the lab's single-threaded loop then polls it without blocking
//! ([`UdpRun::try_finish`]) while it moves the packets. A connected UDP socket reports an ICMP
//! port unreachable as `ECONNREFUSED` (Linux `udp_err`), which is the `refused` outcome.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::{io_err, Result};

/// One datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpRequest {
    /// Where to send it (either family).
    pub dst: SocketAddr,
    /// The datagram's text.
    pub payload: String,
    /// How long to wait for the answer.
    pub timeout: Duration,
    /// Source port; `None` = one the kernel picks.
    pub source_port: Option<u16>,
}

/// How it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpOutcome {
    /// The answer's text.
    Ok {
        /// The answer.
        reply: String,
    },
    /// No answer within the timeout.
    Timeout {
        /// What the client says.
        message: String,
    },
    /// ICMP destination unreachable (`ECONNREFUSED`, `EHOSTUNREACH`, ...).
    Refused {
        /// What the client says (the socket error).
        message: String,
    },
}

/// A datagram sent; poll [`UdpRun::try_finish`] while the fabric runs.
#[derive(Debug)]
pub struct UdpRun {
    sock: UdpSocket,
    dst: SocketAddr,
    started: Instant,
    timeout: Duration,
    local_port: u16,
}

impl UdpRun {
    /// Binds and connects a socket in `ns` and sends the payload.
    pub fn start(ns: &Netns, req: &UdpRequest) -> Result<UdpRun> {
        let (dst, sport) = (req.dst, req.source_port.unwrap_or(0));
        let sock = ns.run(move || -> std::io::Result<UdpSocket> {
            let any = match dst {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let s = UdpSocket::bind(SocketAddr::new(any, sport))?;
            s.connect(dst)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })?;
        let sock = sock.map_err(io_err(format!("udp socket to {dst} from port {sport}")))?;
        let local_port = sock.local_addr().map(|a| a.port()).unwrap_or(sport);
        let run = UdpRun {
            sock,
            dst,
            started: Instant::now(),
            timeout: req.timeout,
            local_port,
        };
        if let Err(e) = run.sock.send(req.payload.as_bytes()) {
            if e.kind() != ErrorKind::WouldBlock {
                return Err(io_err(format!("udp send to {dst}"))(e));
            }
        }
        Ok(run)
    }

    /// The source port the datagram left from.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// `Some(outcome)` once the answer came, an ICMP error was reported or the time is up.
    pub fn try_finish(&mut self) -> Result<Option<UdpOutcome>> {
        let mut buf = [0u8; 65536];
        match self.sock.recv(&mut buf) {
            Ok(n) => {
                let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
                return Ok(Some(UdpOutcome::Ok { reply }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // "Connection refused (os error 111)" → the strerror part, as socat prints it.
                let text = e.to_string();
                let text = text.split(" (os error").next().unwrap_or_default();
                let message = format!("udp: {} port {}: {text}", self.dst.ip(), self.dst.port());
                return Ok(Some(UdpOutcome::Refused { message }));
            }
        }
        let waited = self.started.elapsed();
        if waited >= self.timeout {
            let message = format!(
                "udp: no answer from {} port {} after {} ms",
                self.dst.ip(),
                self.dst.port(),
                waited.as_millis()
            );
            return Ok(Some(UdpOutcome::Timeout { message }));
        }
        Ok(None)
    }
}
