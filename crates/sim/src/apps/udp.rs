//! A UDP server on one port of a pod: every datagram is answered by the app's handler (from
//! the address it was sent to) and logged with the peer address the socket saw.

use std::net::SocketAddr;
use std::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;

use super::log::Access;
use super::{answer_udp, AppCtx, AppKind};

/// Datagrams buffered per direction.
const QUEUE: usize = 16;

/// The access-log entry of a datagram: `"UDP <text>"`, 200 when answered (else 400).
pub fn udp_access(text: &[u8], answer: Option<&str>, sent: bool) -> Access {
    let request = String::from_utf8_lossy(text).trim().to_string();
    Access {
        request: format!("UDP {request}"),
        status: if sent { 200 } else { 400 },
        body_bytes_sent: answer.map_or(0, str::len),
        ..Access::default()
    }
}

pub(crate) struct UdpServer {
    pub port: u16,
    kind: AppKind,
    handle: Option<SocketHandle>,
}

impl UdpServer {
    pub fn new(port: u16, kind: AppKind) -> UdpServer {
        UdpServer {
            port,
            kind,
            handle: None,
        }
    }

    pub fn start(&mut self, sockets: &mut SocketSet<'static>) {
        if self.handle.is_some() {
            return;
        }
        let buf =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; QUEUE], vec![0; 16 * 1024]);
        let mut s = udp::Socket::new(buf(), buf());
        let _ = s.bind(self.port);
        self.handle = Some(sockets.add(s));
    }

    /// Close the socket: datagrams then draw the stack's ICMP port unreachable.
    pub fn stop(&mut self, sockets: &mut SocketSet<'static>) {
        if let Some(h) = self.handle.take() {
            sockets.remove(h);
        }
    }

    pub fn serve(&mut self, now: Duration, sockets: &mut SocketSet<'static>, ctx: &AppCtx) -> bool {
        let Some(h) = self.handle else { return false };
        let s = sockets.get_mut::<udp::Socket>(h);
        let mut changed = false;
        let mut buf = [0u8; 2048];
        while let Ok((n, meta)) = s.recv_slice(&mut buf) {
            let from = SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port);
            let text = &buf[..n];
            let answer = answer_udp(self.kind, ctx.info, text, from);
            let sent = match &answer {
                Some(a) => {
                    let mut reply = udp::UdpMetadata::from(meta.endpoint);
                    reply.local_address = meta.local_address;
                    s.send_slice(a.as_bytes(), reply).is_ok()
                }
                None => false,
            };
            ctx.log.record(
                ctx.clock,
                now,
                from,
                udp_access(text, answer.as_deref(), sent),
            );
            changed = true;
        }
        changed
    }
}
