//! TUN adapter: a TUN device inside a network namespace as a [`crate::Port`].
//!
//! Real mode puts every pod and every client in its own network namespace whose only
//! interface is a TUN device owned by the lab process; [`TunPort`] is that device seen from
//! the fabric. Packets are raw IPv4 datagrams (`tun` 0.8 always sets `IFF_NO_PI`).
//!
//! Offloads (default on, [`TunConfig::offload`]): the device is opened with `IFF_VNET_HDR`
//! and `TUNSETOFFLOAD` (`TUN_F_CSUM | TSO4 | TSO6 | TSO_ECN | USO4 | USO6`, falling back to
//! the set without USO (kernels before 6.2), then `TUN_F_CSUM`, then none, where the kernel
//! refuses). Reads then return TCP and UDP superpackets of up to 64 KiB and writes may hand
//! the kernel TCP superpackets: one syscall per 64 KiB instead of per 1.5 KiB at MTU 1500.
//! What happens to the `virtio_net_hdr` at each end is [`crate::gso`]'s: partial checksums
//! stay partial from the TUN that read them to the TUN that writes them (`wire::partial`),
//! TCP superpackets longer than the MTU are written as TSO (or cut into segments in
//! userspace when the device has no TSO). A UDP superpacket (USO) is cut into its datagrams
//! at the read ([`crate::uso`]): the port returns them one by one from [`Port::recv`] /
//! [`TunPort::recv_into`] before it reads the device again ([`TunPort::pending`]); UDP is
//! written per datagram (no USO on write).
//!
//! Creation follows the measured recipe (`shared/design/tun-and-smoltcp-notes.md`): on a
//! short-lived helper thread, remember `/proc/thread-self/ns/net`, `setns` into
//! `/run/netns/<ns>`, disable IPv6 for links created from now on (no `fe80::`, no router
//! solicitations), create the TUN with address/netmask/MTU/up, set its txqueuelen (default
//! 5000: the default 500 dropped on TX under load), add the default route via the gateway,
//! and `setns` back. The calling thread never changes namespace, so this is safe to call from
//! any thread, including one that runs an async runtime.
//!
//! The device fd is non-blocking: [`Port::recv`] returns `None` when nothing is queued, so a
//! driver polls [`TunPort::raw_fd`] with poll(2) and then drains every ready port. If the
//! device is destroyed under the port (`ip -n <ns> link del eth0`) the fd answers `EBADFD`
//! (os error 77) forever: the port is then marked dead ([`TunPort::dead_reason`]), drops
//! everything, and never panics.
//!
//! Lifetime: the TUN fd was opened inside the namespace, and the kernel's tun socket holds a
//! reference on that namespace. Removing `/run/netns/<ns>` while the port is open therefore
//! does not destroy the namespace or the device; they go away when the port is dropped (or
//! the lab dies). The device is not persistent: it disappears with its last fd.
//!
//! Linux only; needs `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` (root).

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::tuntx::{self, TxSide};
use crate::uso::{self, UsoQueue};
use crate::{gso, Port};

/// Where network namespaces created by `ip netns add` (and by the lab) are bind-mounted.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Errors from [`TunPort::create`].
#[derive(Debug)]
pub struct TunError {
    /// Which step failed (e.g. "setns into /run/netns/nplab-pod-x").
    pub step: String,
    /// The underlying error.
    pub source: io::Error,
}

impl fmt::Display for TunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TUN setup failed: {}: {}", self.step, self.source)
    }
}

impl std::error::Error for TunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn step_err(step: impl Into<String>) -> impl FnOnce(io::Error) -> TunError {
    let step = step.into();
    move |source| TunError { step, source }
}

/// How to build one TUN port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunConfig {
    /// Name of the network namespace (a file under [`NETNS_RUN_DIR`]), e.g. `nplab-pod-x`.
    pub netns: String,
    /// Interface name inside the namespace (default `eth0`; at most 15 bytes).
    pub ifname: String,
    /// The namespace's address on this interface.
    pub address: Ipv4Addr,
    /// Prefix length of the connected subnet (e.g. 24).
    pub prefix_len: u8,
    /// Default gateway (`default via <gw> dev <ifname>`); `None` = no default route.
    pub gateway: Option<Ipv4Addr>,
    /// Link MTU (default 1500; larger values are fine for benchmarks, up to 65535).
    pub mtu: u16,
    /// Transmit queue length (default 5000).
    pub txqueuelen: u32,
    /// [`Port::name`] of the port (default `<netns>/<ifname>`).
    pub port_name: Option<String>,
    /// Open with `IFF_VNET_HDR` and enable checksum/TSO offloads (default `true`).
    pub offload: bool,
    /// Write through the process-wide TX thread (default `false`: writes happen in the
    /// caller's `send`). See the `tuntx` module.
    pub tx_thread: bool,
    /// With offloads: keep partial checksums partial through the fabric (default `true`;
    /// `false` completes them on read, the behaviour before [`wire::partial`]).
    pub keep_partial: bool,
    /// IPv6 on this link too (default `None`: the device has no IPv6 at all). See
    /// [`crate::tun6`].
    pub ipv6: Option<crate::tun6::Ipv6Setup>,
    /// Queues of the device (default 1). More than one creates it with `IFF_MULTI_QUEUE`
    /// ([`crate::tunmq`]); [`TunPort::create_queues`] returns a port per queue.
    pub queues: u16,
}

impl TunConfig {
    /// A config with the defaults: `eth0`, MTU 1500, txqueuelen 5000, no gateway.
    pub fn new(netns: impl Into<String>, address: Ipv4Addr, prefix_len: u8) -> Self {
        TunConfig {
            netns: netns.into(),
            ifname: "eth0".into(),
            address,
            prefix_len,
            gateway: None,
            mtu: 1500,
            txqueuelen: 5000,
            port_name: None,
            offload: true,
            tx_thread: false,
            keep_partial: true,
            ipv6: None,
            queues: 1,
        }
    }
    /// Adds an IPv6 address (and a default route via `gateway`) to the link.
    pub fn ipv6(mut self, address: Ipv6Addr, prefix_len: u8, gateway: Option<Ipv6Addr>) -> Self {
        self.ipv6 = Some(crate::tun6::Ipv6Setup {
            address,
            prefix_len,
            gateway,
        });
        self
    }
    /// Routes writes through the TX thread (or not).
    pub fn tx_thread(mut self, on: bool) -> Self {
        self.tx_thread = on;
        self
    }
    /// Keeps partial checksums partial (or completes them on read).
    pub fn keep_partial(mut self, on: bool) -> Self {
        self.keep_partial = on;
        self
    }
    /// Enables or disables the offloads (`IFF_VNET_HDR` + `TUNSETOFFLOAD`).
    pub fn offload(mut self, on: bool) -> Self {
        self.offload = on;
        self
    }
    /// Sets the default gateway.
    pub fn gateway(mut self, gw: Ipv4Addr) -> Self {
        self.gateway = Some(gw);
        self
    }
    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u16) -> Self {
        self.mtu = mtu;
        self
    }
    /// Sets the interface name inside the namespace.
    pub fn ifname(mut self, name: impl Into<String>) -> Self {
        self.ifname = name.into();
        self
    }
    /// Sets the transmit queue length.
    pub fn queues(mut self, n: u16) -> Self {
        self.queues = n.max(1);
        self
    }
    /// Sets the transmit queue length.
    pub fn txqueuelen(mut self, len: u32) -> Self {
        self.txqueuelen = len;
        self
    }
    /// Sets the [`Port::name`].
    pub fn port_name(mut self, name: impl Into<String>) -> Self {
        self.port_name = Some(name.into());
        self
    }
    fn netmask(&self) -> Ipv4Addr {
        let bits = u32::from(self.prefix_len.min(32));
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        Ipv4Addr::from(mask)
    }
}

/// Counters of one TUN port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunStats {
    /// IPv4 packets read from the device (handed to the fabric).
    pub rx_packets: u64,
    /// Bytes of those packets.
    pub rx_bytes: u64,
    /// Packets read but dropped because they were neither IPv4 nor IPv6 (version nibble).
    pub rx_dropped_not_ipv4: u64,
    /// Packets read but dropped because the IPv4 header was malformed or truncated.
    pub rx_dropped_malformed: u64,
    /// Read errors other than "nothing queued" (EAGAIN).
    pub rx_errors: u64,
    /// Packets written to the device.
    pub tx_packets: u64,
    /// Bytes of those packets.
    pub tx_bytes: u64,
    /// Packets the fabric delivered that could not be written (device busy, error, dead port).
    pub tx_dropped: u64,
    /// Reads that were TSO superpackets (longer than the MTU).
    pub rx_superpackets: u64,
    /// Reads dropped because their `virtio_net_hdr` was unusable ([`crate::gso::IngressError`]).
    pub rx_dropped_offload: u64,
    /// Writes handed to the kernel as TSO superpackets.
    pub tx_superpackets: u64,
    /// Datagrams longer than the MTU cut into segments here (device without TSO).
    pub tx_segmented: u64,
    /// Reads whose partial checksum was kept partial through the fabric ([`wire::partial`]).
    pub rx_partial: u64,
    /// Datagrams of at most the MTU written with a partial checksum (`NEEDS_CSUM`, no GSO).
    pub tx_partial: u64,
    /// Reads that were UDP superpackets (USO, `GSO_UDP_L4`), each cut into its datagrams
    /// ([`crate::uso`]; the datagrams count in `rx_packets`).
    pub rx_uso: u64,
    /// Datagrams those reads were cut into.
    pub rx_uso_datagrams: u64,
}

/// A TUN device in a network namespace, as a fabric [`Port`].
pub struct TunPort {
    /// The write half, with the TUN fd alone: the `tun::Device` (and its control socket,
    /// which would pin the namespace and keep it alive after deletion) is dismantled after
    /// configuration. Shared with datagrams queued for the TX thread.
    tx: Arc<TxSide>,
    /// Writes go through the TX thread.
    tx_thread: bool,
    /// [`TunConfig::keep_partial`].
    keep_partial: bool,
    ifname: String,
    address: Ipv4Addr,
    /// Reused read buffer (small packets are copied out of it, superpackets taken whole).
    buf: Vec<u8>,
    /// Scratch for userspace segmentation.
    seg: Vec<u8>,
    /// Datagrams of the last USO read not yet returned.
    uso: UsoQueue,
    /// Read-side counters (the write side's are [`TxSide::counters`]).
    stats: TunStats,
}

/// Offload sets tried in order with `TUNSETOFFLOAD` (first the kernel accepts wins).
const OFFLOAD_SETS: [libc::c_uint; 4] = [
    // + UDP superpackets of both families (uso.rs cuts them at the read). `TUN_F_USO4` 0x20
    // and `TUN_F_USO6` 0x40 (include/uapi/linux/if_tun.h, Linux 6.2+); drivers/net/tun.c
    // `set_offload` takes them only together and answers EINVAL where it does not know them.
    libc::TUN_F_CSUM
        | libc::TUN_F_TSO4
        | libc::TUN_F_TSO6
        | libc::TUN_F_TSO_ECN
        | libc::TUN_F_USO4
        | libc::TUN_F_USO6,
    // TCP superpackets of both families (gso.rs carries TCPV4 and TCPV6).
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN,
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO_ECN,
    libc::TUN_F_CSUM,
];

/// Largest datagram a read can return: an IPv6 superpacket (40-byte header + a 65 535-byte
/// payload; IPv4's total length stops at 65 535).
const MAX_DATAGRAM: usize = 40 + 65_535;
/// Reads up to this size are copied out of the reused buffer; longer ones take it.
const COPY_BELOW: usize = 4096;

impl fmt::Debug for TunPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunPort")
            .field("name", &self.tx.name)
            .field("fd", &self.tx.dev.as_raw_fd())
            .field("address", &self.address)
            .field("mtu", &self.tx.mtu)
            .field("dead", &self.tx.dead.get())
            .finish()
    }
}

/// What [`TunPort::recv_into`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvOutcome {
    /// An IPv4 packet of this many bytes is at the start of the buffer.
    Packet(usize),
    /// Nothing queued (EAGAIN), or the port is dead.
    Empty,
    /// A packet was read and dropped (not IPv4 / malformed / read error); call again.
    Dropped,
}

impl TunPort {
    /// Creates the TUN device inside `cfg.netns` (which must exist under [`NETNS_RUN_DIR`])
    /// and configures address, netmask, MTU, up, txqueuelen and the default route.
    ///
    /// Runs the namespace dance on a helper thread; the caller's thread is untouched.
    pub fn create(cfg: &TunConfig) -> Result<TunPort, TunError> {
        let cfg = TunConfig {
            queues: 1,
            ..cfg.clone()
        };
        let mut ports = TunPort::create_queues(&cfg)?;
        ports.pop().ok_or_else(|| TunError {
            step: "create TUN".into(),
            source: io::Error::other("no queue"),
        })
    }

    /// [`TunPort::create`] for a device with `cfg.queues` queues: one port per queue, each
    /// with its own fd (reads see the flows the kernel put on that queue; writes from any of
    /// them reach the namespace). All share the name, address and offloads.
    pub fn create_queues(cfg: &TunConfig) -> Result<Vec<TunPort>, TunError> {
        if cfg.ifname.is_empty() || cfg.ifname.len() > 15 {
            return Err(TunError {
                step: format!("interface name {:?}", cfg.ifname),
                source: io::Error::new(io::ErrorKind::InvalidInput, "must be 1..=15 bytes"),
            });
        }
        if cfg.netns.is_empty() || cfg.netns.contains('/') || cfg.netns.starts_with('.') {
            return Err(TunError {
                step: format!("namespace name {:?}", cfg.netns),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name"),
            });
        }
        let cfg2 = cfg.clone();
        let fds = std::thread::Builder::new()
            .name("nplab-tun-setup".into())
            .spawn(move || create_in_netns(&cfg2))
            .map_err(step_err("spawn setup thread"))?
            .join()
            .map_err(|_| TunError {
                step: "setup thread".into(),
                source: io::Error::other("panicked"),
            })??;
        let mut offloads = None;
        let name = cfg
            .port_name
            .clone()
            .unwrap_or_else(|| format!("{}/{}", cfg.netns, cfg.ifname));
        let mut ports = Vec::with_capacity(fds.len());
        for dev in fds {
            set_nonblock(&dev).map_err(step_err("set O_NONBLOCK"))?;
            // The offloads are the device's: set once (through the first queue).
            let offloads = match offloads {
                Some(o) => o,
                None if cfg.offload => {
                    *offloads.insert(enable_offloads(&dev).map_err(step_err("TUNSETOFFLOAD"))?)
                }
                None => *offloads.insert(0),
            };
            ports.push(TunPort {
                tx: Arc::new(TxSide {
                    dev,
                    name: name.clone(),
                    netns: cfg.netns.clone(),
                    mtu: cfg.mtu,
                    vnet: cfg.offload,
                    offloads,
                    counters: Default::default(),
                    dead: Default::default(),
                }),
                tx_thread: cfg.tx_thread,
                keep_partial: cfg.keep_partial,
                ifname: cfg.ifname.clone(),
                address: cfg.address,
                buf: Vec::new(),
                seg: Vec::new(),
                uso: UsoQueue::new(),
                stats: TunStats::default(),
            });
        }
        Ok(ports)
    }

    /// The device fd, for poll(2)/epoll (readable = at least one packet queued).
    pub fn raw_fd(&self) -> RawFd {
        self.tx.dev.as_raw_fd()
    }
    /// The namespace this port lives in.
    pub fn netns(&self) -> &str {
        &self.tx.netns
    }
    /// The interface name inside the namespace.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    /// The namespace's address on this link.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }
    /// The link MTU.
    pub fn mtu(&self) -> u16 {
        self.tx.mtu
    }
    /// The `TUN_F_*` offloads in effect (0 = none: plain datagrams of at most the MTU).
    pub fn offloads(&self) -> u32 {
        self.tx.offloads
    }
    /// Room a read needs: a superpacket with offloads, else the MTU plus slack (so an
    /// oversize read is detectable).
    pub fn read_capacity(&self) -> usize {
        let gso = libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_USO4 | libc::TUN_F_USO6;
        if self.tx.offloads & gso != 0 {
            MAX_DATAGRAM
        } else {
            usize::from(self.tx.mtu).max(576) + 64
        }
    }
    /// Counters (the write side's as of now: the TX thread may still be writing).
    pub fn stats(&self) -> TunStats {
        let c = &self.tx.counters;
        TunStats {
            tx_packets: c.packets.load(Relaxed),
            tx_bytes: c.bytes.load(Relaxed),
            tx_dropped: c.dropped.load(Relaxed),
            tx_superpackets: c.superpackets.load(Relaxed),
            tx_segmented: c.segmented.load(Relaxed),
            tx_partial: c.partial.load(Relaxed),
            ..self.stats.clone()
        }
    }
    /// `true` once the device is gone (namespace deleted: EBADFD). Fatal for this port only.
    pub fn is_dead(&self) -> bool {
        self.tx.dead.get().is_some()
    }
    /// Why the port died, if it did.
    pub fn dead_reason(&self) -> Option<&str> {
        self.tx.dead.get().map(String::as_str)
    }

    /// Reads one packet into `buf` (which should hold at least [`TunPort::read_capacity`]
    /// bytes). Non-blocking. With offloads the `virtio_net_hdr` is consumed here: a partial
    /// checksum is kept partial or completed ([`crate::gso::ingress`]), a UDP superpacket is
    /// cut into its datagrams ([`crate::uso`]). Datagrams still queued from the last USO
    /// read come first, without a syscall.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> RecvOutcome {
        if let Some(r) = self.uso.pop_into(buf) {
            return match r {
                Ok((len, ing)) => self.accept_uso(&buf[..len], ing),
                Err(_) => {
                    self.stats.rx_dropped_offload += 1;
                    RecvOutcome::Dropped
                }
            };
        }
        // SAFETY: `buf` is valid for writes of its length.
        unsafe { self.recv_raw(buf.as_mut_ptr(), buf.len()) }
    }

    /// Datagrams of the last UDP superpacket read ([`crate::uso`]) not yet returned. They
    /// are returned before the device is read again, so a loop that waits in poll(2) for
    /// [`TunPort::raw_fd`] must drain the port (call until empty) first: the fd does not
    /// become readable for them.
    pub fn pending(&self) -> usize {
        self.uso.pending()
    }

    /// Counts a datagram of a USO read and checks it like any read.
    fn accept_uso(&mut self, pkt: &[u8], ing: gso::Ingress) -> RecvOutcome {
        self.stats.rx_uso_datagrams += 1;
        self.accept(pkt, ing)
    }

    /// Counts a datagram handed to the caller (`ing`: what happened to its checksum) after
    /// checking its IP header.
    fn accept(&mut self, pkt: &[u8], ing: gso::Ingress) -> RecvOutcome {
        if ing == gso::Ingress::KeptPartial {
            self.stats.rx_partial += 1;
        }
        match check_ipv4(pkt) {
            Ok(len) => {
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += len as u64;
                if len > usize::from(self.tx.mtu) {
                    self.stats.rx_superpackets += 1;
                }
                RecvOutcome::Packet(len)
            }
            Err(Invalid::NotIpv4) => {
                self.stats.rx_dropped_not_ipv4 += 1;
                RecvOutcome::Dropped
            }
            Err(Invalid::Malformed) => {
                self.stats.rx_dropped_malformed += 1;
                RecvOutcome::Dropped
            }
        }
    }

    /// [`TunPort::recv_into`] on raw memory (possibly uninitialised: only the kernel writes
    /// it, and only the returned length is then initialised).
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `cap` bytes.
    unsafe fn recv_raw(&mut self, ptr: *mut u8, cap: usize) -> RecvOutcome {
        if self.is_dead() {
            return RecvOutcome::Empty;
        }
        let mut hdr = [0u8; gso::VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: ptr.cast(),
                iov_len: cap,
            },
        ];
        let (iov, skip) = if self.tx.vnet {
            (&iov[..], hdr.len())
        } else {
            (&iov[1..], 0)
        };
        // SAFETY: every iovec points to memory valid for writes of its length.
        let rc = unsafe {
            libc::readv(
                self.tx.dev.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
            )
        };
        if rc < 0 {
            return self.read_error(io::Error::last_os_error());
        }
        let n = (rc as usize).saturating_sub(skip);
        if n == 0 {
            return RecvOutcome::Empty;
        }
        // SAFETY: the kernel initialised the first `n` bytes at `ptr` (n <= cap).
        let pkt = unsafe { std::slice::from_raw_parts_mut(ptr, n) };
        if !self.tx.vnet {
            return self.accept(pkt, gso::Ingress::Complete);
        }
        let h = gso::VnetHdr::parse(&hdr);
        if uso::is_uso(&h) {
            // The first datagram is cut in place, the others queued.
            return match self.uso.take(&h, pkt, self.keep_partial) {
                Ok((len, ing)) => {
                    self.stats.rx_uso += 1;
                    self.accept_uso(&pkt[..len], ing)
                }
                Err(_) => {
                    self.stats.rx_dropped_offload += 1;
                    RecvOutcome::Dropped
                }
            };
        }
        match gso::ingress(&h, pkt, self.keep_partial) {
            Ok(ing) => self.accept(pkt, ing),
            Err(_) => {
                self.stats.rx_dropped_offload += 1;
                RecvOutcome::Dropped
            }
        }
    }

    fn read_error(&mut self, e: io::Error) -> RecvOutcome {
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => RecvOutcome::Empty,
            Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::EBADF) => {
                self.tx.mark_dead("read", &e);
                RecvOutcome::Empty
            }
            _ => {
                self.stats.rx_errors += 1;
                RecvOutcome::Dropped
            }
        }
    }

    /// The next packet as an owned buffer, without zero-filling or copying a superpacket:
    /// it is read straight into a buffer from [`crate::bufpool`] that becomes the packet;
    /// small packets are copied out of the reused buffer into a pooled one. Datagrams
    /// queued from the last USO read come first (each in a pooled buffer of its own).
    pub fn recv_owned(&mut self) -> Option<Vec<u8>> {
        let cap = self.read_capacity();
        loop {
            match self.uso.pop_vec() {
                Some(Ok((mut v, ing))) => match self.accept_uso(&v, ing) {
                    RecvOutcome::Packet(n) => {
                        v.truncate(n);
                        return Some(v);
                    }
                    _ => continue,
                },
                Some(Err(_)) => {
                    self.stats.rx_dropped_offload += 1;
                    continue;
                }
                None => {}
            }
            if self.buf.capacity() < cap {
                self.buf = crate::bufpool::take(cap);
            }
            let ptr = self.buf.as_mut_ptr();
            // SAFETY: the buffer's allocation holds `cap` bytes.
            match unsafe { self.recv_raw(ptr, cap) } {
                RecvOutcome::Packet(n) if n < COPY_BELOW => {
                    // SAFETY: the kernel initialised the first n bytes.
                    let pkt = unsafe { std::slice::from_raw_parts(ptr, n) };
                    return Some(crate::bufpool::copy_of(pkt));
                }
                RecvOutcome::Packet(n) => {
                    let mut v = std::mem::take(&mut self.buf);
                    // SAFETY: the first n <= capacity bytes were initialised by the kernel.
                    unsafe { v.set_len(n) };
                    return Some(v);
                }
                RecvOutcome::Empty => return None,
                RecvOutcome::Dropped => continue,
            }
        }
    }

    /// Writes one packet to the device (towards the namespace), or queues a copy for the
    /// TX thread ([`TunConfig::tx_thread`]). Returns `false` if it was dropped (and counted).
    /// A datagram longer than the MTU goes as a TSO superpacket when the device has TSO, else
    /// cut into segments here ([`crate::gso`]).
    pub fn send_packet(&mut self, pkt: &[u8]) -> bool {
        if self.tx_thread {
            tuntx::enqueue(&self.tx, pkt.to_vec(), &mut self.seg)
        } else {
            self.tx.send(pkt, &mut self.seg)
        }
    }

    /// [`TunPort::send_packet`] on a buffer the caller lets it edit (a partial checksum is
    /// finished in place instead of on a copy).
    pub fn send_in_place(&mut self, pkt: &mut [u8]) -> bool {
        if self.tx_thread {
            tuntx::enqueue(&self.tx, pkt.to_vec(), &mut self.seg)
        } else {
            self.tx.send_mut(pkt, &mut self.seg)
        }
    }

    /// [`TunPort::send_packet`] taking the datagram by value: queued without a copy; its
    /// buffer goes back to [`crate::bufpool`] once written.
    pub fn send_owned(&mut self, mut pkt: Vec<u8>) -> bool {
        if self.tx_thread {
            tuntx::enqueue(&self.tx, pkt, &mut self.seg)
        } else {
            let ok = self.tx.send_mut(&mut pkt, &mut self.seg);
            crate::bufpool::give(pkt);
            ok
        }
    }
}

enum Invalid {
    NotIpv4,
    Malformed,
}

/// Validates an IPv4 or IPv6 header; returns the datagram length (the IPv4 total length;
/// IPv6: the 40-byte header + payload length).
fn check_ipv4(pkt: &[u8]) -> Result<usize, Invalid> {
    let first = *pkt.first().ok_or(Invalid::Malformed)?;
    if first >> 4 == 6 {
        let payload = pkt.get(4..6).ok_or(Invalid::Malformed)?;
        let total = 40 + usize::from(u16::from_be_bytes([payload[0], payload[1]]));
        return if total > pkt.len() {
            Err(Invalid::Malformed)
        } else {
            Ok(total)
        };
    }
    if first >> 4 != 4 {
        return Err(Invalid::NotIpv4);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl {
        return Err(Invalid::Malformed);
    }
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if total < ihl || total > pkt.len() {
        return Err(Invalid::Malformed);
    }
    Ok(total)
}

impl AsRawFd for TunPort {
    fn as_raw_fd(&self) -> RawFd {
        self.tx.dev.as_raw_fd()
    }
}

impl AsFd for TunPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is owned by `self.dev` and stays open as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.tx.dev.as_raw_fd()) }
    }
}

impl Port for TunPort {
    fn name(&self) -> &str {
        &self.tx.name
    }

    fn send(&mut self, _now: Duration, pkt: &[u8]) {
        self.send_packet(pkt);
    }

    fn send_owned(&mut self, _now: Duration, pkt: Vec<u8>) {
        self.send_owned(pkt);
    }

    fn recv(&mut self, _now: Duration) -> Option<Vec<u8>> {
        self.recv_owned()
    }
}

// ------------------------------------------------------------------ namespace dance

fn set_nonblock(f: &File) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a valid fd.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `TUNSETOFFLOAD` with the first of [`OFFLOAD_SETS`] the kernel accepts (EINVAL = a flag
/// it does not know); 0 if it accepts none. Returns the set in effect.
fn enable_offloads(f: &File) -> io::Result<u32> {
    for set in OFFLOAD_SETS {
        // SAFETY: TUNSETOFFLOAD takes the flags by value on a valid TUN fd.
        let rc = unsafe {
            libc::ioctl(
                f.as_raw_fd(),
                libc::TUNSETOFFLOAD as _,
                set as libc::c_ulong,
            )
        };
        if rc == 0 {
            return Ok(set);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    Ok(0)
}

fn setns_file(f: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Runs on the helper thread.
fn create_in_netns(cfg: &TunConfig) -> Result<Vec<File>, TunError> {
    let home = File::open("/proc/thread-self/ns/net").map_err(step_err("open own netns"))?;
    let target_path = format!("{NETNS_RUN_DIR}/{}", cfg.netns);
    let target = File::open(&target_path).map_err(step_err(format!("open {target_path}")))?;
    setns_file(&target).map_err(step_err(format!("setns into {target_path}")))?;
    let res = configure_inside(cfg);
    // Always go back, even on error (the thread ends anyway, but keep it clean).
    let back = setns_file(&home).map_err(step_err("setns back to the original namespace"));
    let dev = res?;
    back?;
    Ok(dev)
}

fn configure_inside(cfg: &TunConfig) -> Result<Vec<File>, TunError> {
    // Before the link exists: no IPv6 on it (no fe80::, no router solicitations).
    match std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", b"1") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {} // kernel without IPv6
        Err(e) => return Err(step_err("disable IPv6 (conf/default/disable_ipv6)")(e)),
    }
    let ctl = ctl_socket().map_err(step_err("control socket"))?;
    let fds = if cfg.queues > 1 {
        let fds = crate::tunmq::open_queues(&cfg.ifname, cfg.queues, cfg.offload).map_err(
            step_err(format!(
                "create TUN {} ({} queues) in {}",
                cfg.ifname, cfg.queues, cfg.netns
            )),
        )?;
        crate::tunmq::configure(&ctl, &cfg.ifname, cfg.address, cfg.netmask(), cfg.mtu)
            .map_err(step_err(format!("configure {}", cfg.ifname)))?;
        fds
    } else {
        vec![create_single(cfg)?]
    };
    set_txqueuelen(&ctl, &cfg.ifname, cfg.txqueuelen)
        .map_err(step_err(format!("set txqueuelen {}", cfg.txqueuelen)))?;
    if let Some(gw) = cfg.gateway {
        add_default_route(&ctl, &cfg.ifname, gw).map_err(step_err(format!(
            "add default route via {gw} dev {}",
            cfg.ifname
        )))?;
    }
    if let Some(v6) = &cfg.ipv6 {
        crate::tun6::configure(&cfg.ifname, v6).map_err(step_err(format!(
            "add {}/{} to {}",
            v6.address, v6.prefix_len, cfg.ifname
        )))?;
    }
    Ok(fds)
}

/// A single-queue device through the `tun` crate (address, netmask, MTU, up), as its fd.
fn create_single(cfg: &TunConfig) -> Result<File, TunError> {
    let mut tc = tun::Configuration::default();
    let vnet = cfg.offload;
    tc.platform_config(|p| {
        p.vnet_hdr(vnet);
    });
    tc.tun_name(&cfg.ifname)
        .address(cfg.address)
        .netmask(cfg.netmask())
        .mtu(cfg.mtu)
        .up();
    let dev = tun::create(&tc).map_err(|e| TunError {
        step: format!("create TUN {} in {}", cfg.ifname, cfg.netns),
        source: io::Error::other(e.to_string()),
    })?;
    // SAFETY: `into_raw_fd` hands over sole ownership of the TUN fd.
    Ok(unsafe { File::from_raw_fd(dev.into_raw_fd()) })
}

fn ctl_socket() -> io::Result<File> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fresh fd; File closes it on drop.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub(crate) fn ifreq_for(ifname: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    req
}

fn set_txqueuelen(ctl: &File, ifname: &str, len: u32) -> io::Result<()> {
    let mut req = ifreq_for(ifname);
    // ifr_qlen shares the union with ifr_metric.
    req.ifr_ifru.ifru_metric = len.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: valid fd and a properly initialised ifreq.
    let rc = unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFTXQLEN as _, &mut req) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) on Linux.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// `ip route add default via <gw> dev <ifname>` through the SIOCADDRT ioctl (no netlink
/// crate, no async runtime, no subprocess).
fn add_default_route(ctl: &File, ifname: &str, gw: Ipv4Addr) -> io::Result<()> {
    let mut dev = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?
        .into_bytes_with_nul();
    // SAFETY: `rtentry` is plain data (integers, sockaddrs, raw pointers); all-zero is a
    // valid value (null pointers, no route) that the fields below complete.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_v4(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_v4(gw);
    rt.rt_genmask = sockaddr_v4(Ipv4Addr::UNSPECIFIED);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    rt.rt_dev = dev.as_mut_ptr() as *mut libc::c_char;
    // SAFETY: valid fd; `rt` is libc's `struct rtentry` and `dev` outlives the call.
    let rc = unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCADDRT as _, &mut rt) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmask_from_prefix() {
        let c = TunConfig::new("x", Ipv4Addr::new(10, 244, 1, 16), 24);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(
            TunConfig::new("x", Ipv4Addr::LOCALHOST, 0).netmask(),
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            TunConfig::new("x", Ipv4Addr::LOCALHOST, 32).netmask(),
            Ipv4Addr::BROADCAST
        );
    }

    #[test]
    fn ipv4_filter() {
        let mut p = [0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        assert!(matches!(check_ipv4(&p), Ok(28)));
        // trailing bytes beyond total length are ignored
        p[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert!(matches!(check_ipv4(&p), Ok(20)));
        p[0] = 0x50;
        assert!(matches!(check_ipv4(&p), Err(Invalid::NotIpv4)));
        // IPv6: 40-byte header + payload length; trailing bytes ignored, truncation refused.
        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[5] = 8;
        assert!(matches!(check_ipv4(&v6), Ok(48)));
        v6[5] = 4;
        assert!(matches!(check_ipv4(&v6), Ok(44)));
        v6[5] = 9;
        assert!(matches!(check_ipv4(&v6), Err(Invalid::Malformed)));
        assert!(matches!(check_ipv4(&v6[..5]), Err(Invalid::Malformed)));
        p[0] = 0x44;
        assert!(matches!(check_ipv4(&p), Err(Invalid::Malformed)));
        p[0] = 0x45;
        p[2..4].copy_from_slice(&60u16.to_be_bytes());
        assert!(matches!(check_ipv4(&p), Err(Invalid::Malformed)));
        assert!(matches!(check_ipv4(&[]), Err(Invalid::Malformed)));
    }
}
