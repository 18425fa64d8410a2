//! Embedded hosts: one smoltcp `Interface` (`Medium::Ip`, queue-backed device) per pod or
//! client, running a pod's apps ([`crate::apps`]) and/or the curl-like client
//! ([`client`]). A [`Host`] is a [`vswitch::Port`], so the world treats it exactly like a
//! TUN device in real mode.
//!
//! State the world needs to read or drive (access logs, request outcomes, apps running or
//! not) is shared through [`AccessLog`], [`ClientHandle`] and [`AppsHandle`]; the host itself
//! stays behind `Box<dyn Port>`.

pub mod client;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use nodestack::device::{duration, instant, QueueDevice};
use vswitch::packet::{self, PROTO_TCP};
use vswitch::Port;

use crate::apps::Apps;
pub use crate::apps::{
    AccessJournal, AccessLog, AccessLogEntry, AppDesc, AppKind, AppsHandle, ServerInfo,
};
use crate::clock::WallClock;
use client::CurlClient;
pub use client::{
    ClientHandle, OutcomeKind, RequestId, RequestOpts, RequestOutcome, LINUX_CONNECT_TIMEOUT,
    SYN_RETRIES,
};

/// A TCP socket without delayed ACKs or Nagle (the lab's apps and client write whole
/// messages).
pub(crate) fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    s
}

/// How to build a [`Host`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Link name for traces (e.g. `ydzs-node1/cni0/nginx-…`).
    pub link: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// Seeds smoltcp (ISNs) and the client's source-port choice.
    pub seed: u64,
    /// A dual-stack host's IPv6 side (none: IPv4 only).
    pub v6: Option<HostV6>,
}

/// A host's IPv6 address, prefix length and default gateway (a link-layer-less link: no NDP,
/// the gateway is only the next hop the fabric resolves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostV6 {
    pub ip: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
}

/// A host on its own smoltcp stack.
pub struct Host {
    link: String,
    /// Its addresses: IPv4, then IPv6 on a dual-stack host.
    ips: Vec<IpAddr>,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    apps: Option<Apps>,
    client: Option<CurlClient>,
    /// The UDP side of the client (shares the curl client's handle).
    udp: Option<crate::udp::UdpClient>,
    dirty: bool,
    next_poll: Option<Duration>,
    /// Datagrams that could not be parsed when inspected (still handed to smoltcp).
    pub malformed: u64,
}

impl Host {
    pub fn new(cfg: HostConfig, now: Duration) -> Host {
        let mut dev = QueueDevice::new(1500);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = cfg.seed;
        let mut iface = Interface::new(config, &mut dev, instant(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(cfg.ip), cfg.prefix_len));
            if let Some(v6) = cfg.v6 {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(v6.ip), v6.prefix_len));
            }
        });
        let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway);
        let mut ips = vec![IpAddr::V4(cfg.ip)];
        if let Some(v6) = cfg.v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(v6.gateway);
            ips.push(IpAddr::V6(v6.ip));
        }
        Host {
            link: cfg.link,
            ips,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            apps: None,
            client: None,
            udp: None,
            dirty: true,
            next_poll: None,
            malformed: 0,
        }
    }

    /// Run nginx on :80; returns its access log.
    pub fn with_server(&mut self, info: ServerInfo, clock: WallClock) -> AccessLog {
        self.with_apps(info, clock, &[AppDesc::nginx(80)]).0
    }

    /// Run `apps` (listening at once); returns the access log they all write and the
    /// handle that stops and starts them.
    pub fn with_apps(
        &mut self,
        info: ServerInfo,
        clock: WallClock,
        apps: &[AppDesc],
    ) -> (AccessLog, AppsHandle) {
        let apps = Apps::new(info, clock, apps, &mut self.sockets);
        let out = (apps.log(), apps.handle());
        self.apps = Some(apps);
        self.dirty = true;
        out
    }

    /// The apps exit: every app socket closes, so a SYN draws an RST and a datagram an ICMP
    /// port unreachable (smoltcp answers for closed ports as Linux does).
    pub fn stop_apps(&mut self) {
        if let Some(a) = &mut self.apps {
            a.handle().set_running(false);
            a.stop(&mut self.sockets);
            self.dirty = true;
        }
    }

    /// The apps listen again.
    pub fn start_apps(&mut self) {
        if let Some(a) = &mut self.apps {
            a.handle().set_running(true);
            a.start(&mut self.sockets);
            self.dirty = true;
        }
    }

    /// Whether the apps listen (false after [`Host::stop_apps`]; true without apps).
    pub fn apps_running(&self) -> bool {
        self.apps.as_ref().is_none_or(Apps::running)
    }

    /// Run the curl-like client (on every address of the host); returns the handle to start
    /// requests and read outcomes.
    pub fn with_client(&mut self, seed: u64) -> ClientHandle {
        let (client, handle) = CurlClient::new(self.ips.clone(), seed);
        self.client = Some(client);
        let udp = crate::udp::UdpClient::new(self.ips.clone(), handle.clone(), seed);
        self.udp = Some(udp);
        handle
    }

    /// Apply a start/stop the world asked for through the [`AppsHandle`].
    fn follow_handle(&mut self) {
        if let Some(a) = &mut self.apps {
            self.dirty |= a.apply_handle(&mut self.sockets);
        }
    }

    fn service(&mut self, now: Duration) {
        let at = instant(now);
        self.follow_handle();
        for _ in 0..64 {
            self.iface.poll(at, &mut self.dev, &mut self.sockets);
            let mut changed = false;
            if let Some(apps) = &mut self.apps {
                changed |= apps.serve(now, &mut self.sockets);
            }
            if let Some(cl) = &mut self.client {
                changed |= cl.service(now, &mut self.iface, &mut self.sockets);
            }
            if let Some(u) = &mut self.udp {
                changed |= u.service(now, &mut self.sockets);
            }
            if !changed {
                break;
            }
        }
        let stack = self.iface.poll_at(at, &self.sockets).map(duration);
        let app = [
            self.client.as_ref().and_then(CurlClient::deadline),
            self.udp.as_ref().and_then(crate::udp::UdpClient::deadline),
            self.apps.as_ref().and_then(Apps::deadline),
        ];
        self.next_poll = app.into_iter().flatten().chain(stack).min();
    }
}

impl Port for Host {
    fn name(&self) -> &str {
        &self.link
    }
    fn send(&mut self, _now: Duration, pkt: &[u8]) {
        let sum = packet::summarize(pkt);
        if sum.is_err() {
            self.malformed += 1;
        }
        self.follow_handle();
        // A SYN for an app: a retransmission for a connection a server socket already
        // half-opened is left to that socket (Linux answers from the request socket;
        // smoltcp would open a second half-open connection with another ISN, and the
        // client's ACK would then draw an RST from the first), which retransmits its SYN-ACK
        // on its own timer. Otherwise enough sockets listen for every SYN in the queue.
        if let (Ok(s), Some(apps)) = (&sum, &mut self.apps) {
            if s.tuple.proto == PROTO_TCP && s.flags == "S" {
                let from = s.tuple.src_addr();
                let queued = self.dev.rx.len();
                if !apps.on_syn(&mut self.sockets, from, s.tuple.dport, queued) {
                    return;
                }
            }
        }
        if let Ok(s) = &sum {
            if let Some(c) = &mut self.client {
                c.on_icmp(s);
            }
            if let Some(u) = &mut self.udp {
                u.on_icmp(s);
            }
        }
        let mut buf = self.dev.copy_in(pkt);
        // smoltcp checks checksums: one a TUN left partial is completed on the copy.
        wire::partial::complete(&mut buf);
        self.dev.rx.push_back(buf);
        self.dirty = true;
    }
    fn recv(&mut self, now: Duration) -> Option<Vec<u8>> {
        let due = self.next_poll.is_some_and(|t| t <= now);
        let starts = self.client.as_ref().is_some_and(CurlClient::has_starts);
        let pending = self.apps.as_ref().is_some_and(Apps::change_pending);
        if self.dirty || due || starts || pending {
            self.dirty = false;
            self.service(now);
        }
        loop {
            let pkt = self.dev.tx.pop_front()?;
            let allowed = match &mut self.client {
                Some(c) => c.allow_tx(&pkt),
                None => true,
            };
            if allowed {
                return Some(pkt);
            }
        }
    }
    fn poll_at(&self) -> Option<Duration> {
        if self.dirty || self.apps.as_ref().is_some_and(Apps::change_pending) {
            return Some(Duration::ZERO);
        }
        self.next_poll
    }
}
