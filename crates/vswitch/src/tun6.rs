//! IPv6 on a lab TUN device, inside its namespace: the lab's address and default route and
//! nothing else.
//!
//! The lab's links are L3 (TUN, `IFF_NOARP`): no neighbour discovery, no router
//! advertisements. So the interface gets `addr_gen_mode = none` (no fe80:: link-local, hence
//! no router solicitations or DAD probes leaking into the fabric), `accept_ra = 0`, and only
//! then IPv6 is enabled on it (`disable_ipv6 = 0`; the namespace's default stays off, so no
//! other link ever has IPv6). Address and route go through the classic ioctls on an
//! `AF_INET6` socket (`SIOCSIFADDR` with `struct in6_ifreq`, `SIOCADDRT` with
//! `struct in6_rtmsg`), like the IPv4 side does: no netlink, no subprocess.
//!
//! Runs on the thread that has entered the namespace (see `tun::create_in_netns`).

use std::fs::File;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd};

/// The IPv6 side of a TUN device: address/prefix and an optional default gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Setup {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv6Addr>,
}

/// Writes one of the interface's IPv6 sysctls (`/proc/sys/net/ipv6/conf/<if>/<key>`).
fn conf(ifname: &str, key: &str, value: &[u8]) -> io::Result<()> {
    if ifname.is_empty() || ifname.contains('/') || ifname.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{ifname}/{key}"), value)
}

fn inet6_socket() -> io::Result<File> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fresh fd; File closes it on drop.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn ifindex(ifname: &str) -> io::Result<libc::c_int> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(idx).map_err(|_| io::Error::other("interface index out of range"))
}

fn in6(a: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: a.octets(),
    }
}

/// Gives `ifname` (already up, in the current namespace) the address and route of `setup`.
pub fn configure(ifname: &str, setup: &Ipv6Setup) -> io::Result<()> {
    conf(ifname, "addr_gen_mode", b"1")?;
    conf(ifname, "accept_ra", b"0")?;
    conf(ifname, "disable_ipv6", b"0")?;
    let sock = inet6_socket()?;
    let index = ifindex(ifname)?;
    let mut req = libc::in6_ifreq {
        ifr6_addr: in6(setup.address),
        ifr6_prefixlen: u32::from(setup.prefix_len.min(128)),
        ifr6_ifindex: index,
    };
    // SAFETY: valid fd; `req` is libc's `struct in6_ifreq`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR as _, &mut req) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    if let Some(gw) = setup.gateway {
        add_default_route(&sock, index, gw)?;
    }
    Ok(())
}

/// The kernel's `struct in6_rtmsg` (include/uapi/linux/ipv6_route.h); libc's has private
/// fields.
#[repr(C)]
struct In6Rtmsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    type_: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

/// `ip -6 route add default via <gw> dev <ifindex>` (metric 1024, the kernel's default for
/// IPv6 routes).
fn add_default_route(sock: &File, ifindex: libc::c_int, gw: Ipv6Addr) -> io::Result<()> {
    let mut rt = In6Rtmsg {
        dst: in6(Ipv6Addr::UNSPECIFIED),
        src: in6(Ipv6Addr::UNSPECIFIED),
        gateway: in6(gw),
        type_: 0,
        dst_len: 0,
        src_len: 0,
        metric: 1024,
        info: 0,
        flags: u32::from(libc::RTF_UP | libc::RTF_GATEWAY),
        ifindex,
    };
    // SAFETY: valid fd; `rt` has the layout of the kernel's `struct in6_rtmsg`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &mut rt) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_cannot_leave_the_conf_dir() {
        for bad in ["", "../all", "a/b", ".", ".."] {
            let e = conf(bad, "accept_ra", b"0").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
