//! The node's own TCP servers on its smoltcp stack: healthCheckNodePort and kube-proxy's
//! `:10256`. Each port has a small pool of listening sockets (smoltcp has no backlog).

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use nodeport::HealthResponse;

/// What a listening port answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// healthCheckNodePort: `Proxier::service_health` of the service owning the port.
    ServiceHealth,
    /// kube-proxy's `/healthz`, `/livez`.
    ProxyHealth,
}

#[derive(Debug)]
pub struct Listener {
    pub port: u16,
    pub handler: Handler,
    pub sockets: Vec<(SocketHandle, Vec<u8>, bool)>,
}

pub const POOL: usize = 4;

pub fn new_socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 4096]),
        tcp::SocketBuffer::new(vec![0; 8192]),
    );
    s.set_ack_delay(None);
    s
}

impl Listener {
    pub fn open(port: u16, handler: Handler, sockets: &mut SocketSet<'static>) -> Listener {
        let mut l = Listener {
            port,
            handler,
            sockets: Vec::new(),
        };
        for _ in 0..POOL {
            let mut s = new_socket();
            let _ = s.listen(port);
            l.sockets.push((sockets.add(s), Vec::new(), false));
        }
        l
    }

    /// Serve what can be served; `answer(path)` builds the response.
    pub fn serve(
        &mut self,
        sockets: &mut SocketSet<'static>,
        mut answer: impl FnMut(&str) -> HealthResponse,
    ) -> bool {
        let mut changed = false;
        for (h, buf, answered) in &mut self.sockets {
            if sockets.get::<tcp::Socket>(*h).state() == tcp::State::TimeWait {
                // Don't let TIME-WAIT hold the port's listener: recycle the socket.
                sockets.remove(*h);
                let mut s = new_socket();
                let _ = s.listen(self.port);
                *h = sockets.add(s);
                buf.clear();
                *answered = false;
                continue;
            }
            let s = sockets.get_mut::<tcp::Socket>(*h);
            if !s.is_open() {
                buf.clear();
                *answered = false;
                let _ = s.listen(self.port);
                continue;
            }
            if s.can_recv() {
                let _ = s.recv(|d| {
                    buf.extend_from_slice(d);
                    (d.len(), ())
                });
            }
            if *answered || buf.is_empty() {
                continue;
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let path = req.path.unwrap_or("/").to_string();
                    let resp = answer(&path);
                    let bytes = serialize(&resp);
                    let _ = s.send_slice(&bytes);
                    s.close();
                    *answered = true;
                    changed = true;
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => {
                    let bytes = serialize(&HealthResponse {
                        status: 400,
                        headers: vec![],
                        body: String::new(),
                    });
                    let _ = s.send_slice(&bytes);
                    s.close();
                    *answered = true;
                    changed = true;
                }
            }
        }
        changed
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "",
    }
}

pub fn serialize(r: &HealthResponse) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    out.push_str(&r.body);
    out.into_bytes()
}
