//! Multi-queue TUN devices (`IFF_MULTI_QUEUE`): one device, several fds, each a queue.
//!
//! The `tun` crate (0.8) creates single-queue devices only (it refuses `queues > 1`), so a
//! device with more queues is created here with the kernel ABI (`drivers/net/tun.c`,
//! `tun_set_iff`): every `open("/dev/net/tun")` + `TUNSETIFF` with the same name and
//! `IFF_MULTI_QUEUE` attaches one more queue to the device (all with the same flags), and the
//! link is then configured like the single-queue one (address, netmask, MTU, up) with the
//! classic `SIOCSIF*` ioctls.
//!
//! What the queues are for: the kernel spreads the namespace's outgoing packets over them by
//! flow (`tun_select_queue` → `tun_automq_select_queue`: a symmetric flow hash, and the queue
//! a flow's packets were last written from), so one datapath thread per queue sees whole
//! flows, both directions, and the threads can run side by side.
//!
//! Must be called inside the target namespace (the TUN code's setup thread does that).

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd};

/// Opens `n` queues of a new multi-queue TUN device `ifname` (flags: `IFF_TUN | IFF_NO_PI |
/// IFF_MULTI_QUEUE`, plus `IFF_VNET_HDR` when `vnet`).
pub(crate) fn open_queues(ifname: &str, n: u16, vnet: bool) -> io::Result<Vec<File>> {
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    (0..n.max(1))
        .map(|_| {
            // SAFETY: plain open(2) of a device node with a NUL-terminated path.
            let fd =
                unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: we own the fresh fd; File closes it on drop (also on the error below).
            let f = unsafe { File::from_raw_fd(fd) };
            let mut req = super::tun::ifreq_for(ifname);
            req.ifr_ifru.ifru_flags = flags as libc::c_short;
            // SAFETY: TUNSETIFF on a /dev/net/tun fd with a properly initialised ifreq.
            let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f)
        })
        .collect()
}

/// `ip addr add <address>/<netmask> dev <ifname>; ip link set <ifname> mtu <mtu> up`.
pub(crate) fn configure(
    ctl: &File,
    ifname: &str,
    address: Ipv4Addr,
    netmask: Ipv4Addr,
    mtu: u16,
) -> io::Result<()> {
    let set = |req: &mut libc::ifreq, op: libc::Ioctl| {
        // SAFETY: valid socket fd and a properly initialised ifreq for `op`.
        let rc = unsafe { libc::ioctl(ctl.as_raw_fd(), op as _, req as *mut libc::ifreq) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let mut req = super::tun::ifreq_for(ifname);
    req.ifr_ifru.ifru_addr = super::tun::sockaddr_v4(address);
    set(&mut req, libc::SIOCSIFADDR)?;
    let mut req = super::tun::ifreq_for(ifname);
    req.ifr_ifru.ifru_netmask = super::tun::sockaddr_v4(netmask);
    set(&mut req, libc::SIOCSIFNETMASK)?;
    let mut req = super::tun::ifreq_for(ifname);
    req.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
    set(&mut req, libc::SIOCSIFMTU)?;
    let mut req = super::tun::ifreq_for(ifname);
    set(&mut req, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    set(&mut req, libc::SIOCSIFFLAGS)
}
