//! Named network namespaces, bind-mounted at `/run/netns/<name>` exactly like
//! `ip netns add` does (so `ip netns exec <name> …` works on them).
//!
//! All names must start with [`PREFIX`](super::PREFIX). Creating a namespace brings its `lo`
//! up and nothing else; addresses and routes come with the TUN port
//! ([`vswitch::tun::TunPort::create`]). Nothing here touches the root namespace's links.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::{io_err, nix_err, Error, Result, PREFIX};

/// Where named namespaces live.
pub const NETNS_DIR: &str = "/run/netns";
/// Longest namespace name we generate (file name; interface names inside are `eth0`).
pub const MAX_NAME: usize = 48;

/// A named network namespace (a handle; dropping it does not delete the namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

/// `nplab-<kind>-<name>`, sanitised to `[a-z0-9.-]`, and shortened with a hash suffix when
/// longer than [`MAX_NAME`]. E.g. `ns_name("pod", "nginx-54f57cf6bf-xhs8g")` =
/// `nplab-pod-nginx-54f57cf6bf-xhs8g`.
pub fn ns_name(kind: &str, name: &str) -> String {
    let raw = format!("{PREFIX}{kind}-{name}");
    let mut s: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.len() > MAX_NAME {
        // FNV-1a of the full raw name keeps distinct long names distinct.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in raw.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        s.truncate(MAX_NAME - 9);
        s.push_str(&format!("-{:08x}", h as u32));
    }
    s
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with(PREFIX)
        && name.len() <= 255
        && !name.contains('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "namespace name {name:?} must start with {PREFIX:?} and be a plain file name"
        )))
    }
}

/// Makes `/run/netns` exist and be a shared mount point, like iproute2 does, so bind mounts
/// of namespaces made here are visible to `ip netns` everywhere.
fn prepare_netns_dir() -> Result<()> {
    fs::create_dir_all(NETNS_DIR).map_err(io_err(format!("mkdir {NETNS_DIR}")))?;
    let shared = || {
        mount(
            Some(""),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(nix_err(format!("bind-mount {NETNS_DIR} onto itself")))?;
            shared().map_err(nix_err(format!("make {NETNS_DIR} shared")))
        }
        Err(e) => Err(nix_err(format!("make {NETNS_DIR} shared"))(e)),
    }
}

fn lo_up() -> io::Result<()> {
    // SAFETY: plain syscalls with a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

impl Netns {
    /// Creates the namespace `name` (must start with `nplab-`) with `lo` up. Fails if it
    /// already exists.
    pub fn create(name: &str) -> Result<Netns> {
        check_name(name)?;
        prepare_netns_dir()?;
        let path = Path::new(NETNS_DIR).join(name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        let p2 = path.clone();
        let res = std::thread::Builder::new()
            .name("nplab-netns".into())
            .spawn(move || -> Result<()> {
                // This thread gets a fresh network namespace; it is pinned by the bind mount
                // and the thread then exits (its namespace change dies with it).
                unshare(CloneFlags::CLONE_NEWNET).map_err(nix_err("unshare(CLONE_NEWNET)"))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &p2,
                    Some("none"),
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(nix_err(format!("bind-mount netns onto {}", p2.display())))?;
                lo_up().map_err(io_err("set lo up"))?;
                Ok(())
            })
            .map_err(io_err("spawn netns thread"))?
            .join()
            .unwrap_or_else(|_| Err(Error::Process("netns thread panicked".into())));
        if let Err(e) = res {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Netns {
            name: name.to_string(),
        })
    }

    /// Deletes `name` if it exists, then creates it.
    pub fn recreate(name: &str) -> Result<Netns> {
        delete(name)?;
        Netns::create(name)
    }

    /// A handle on an existing namespace.
    pub fn open(name: &str) -> Result<Netns> {
        check_name(name)?;
        if !exists(name) {
            return Err(Error::Invalid(format!(
                "network namespace {name} does not exist"
            )));
        }
        Ok(Netns {
            name: name.to_string(),
        })
    }

    /// The namespace name (as `ip netns` shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Opens the namespace file (for `setns`).
    pub fn file(&self) -> Result<File> {
        File::open(self.path()).map_err(io_err(format!("open {}", self.path().display())))
    }

    /// Runs `f` on a helper thread that has entered this namespace (sockets it creates live
    /// there). The calling thread is untouched.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let file = self.file()?;
        std::thread::Builder::new()
            .name("nplab-in-netns".into())
            .spawn(move || -> Result<T> {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(nix_err("setns"))?;
                Ok(f())
            })
            .map_err(io_err("spawn thread"))?
            .join()
            .unwrap_or_else(|_| Err(Error::Process("netns thread panicked".into())))
    }

    /// Pids of the processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(meta) = fs::metadata(self.path()) else {
            return Vec::new();
        };
        pids_in(meta.dev(), meta.ino())
    }

    /// Deletes this namespace (idempotent).
    pub fn delete(self) -> Result<()> {
        delete(&self.name).map(|_| ())
    }
}

/// Pids of processes whose `/proc/<pid>/ns/net` is the nsfs inode (`dev`, `ino`).
pub(crate) fn pids_in(dev: u64, ino: u64) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(m) = fs::metadata(format!("/proc/{pid}/ns/net")) {
            if m.dev() == dev && m.ino() == ino {
                out.push(pid);
            }
        }
    }
    out
}

/// `true` if `/run/netns/<name>` exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Deletes namespace `name` (unmount + unlink). Returns whether it existed. Idempotent.
/// Processes still inside keep the namespace alive until they exit; stop them first.
pub fn delete(name: &str) -> Result<bool> {
    check_name(name)?;
    let path = Path::new(NETNS_DIR).join(name);
    if !path.exists() {
        return Ok(false);
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(nix_err(format!("umount {}", path.display()))(e)),
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(format!("remove {}", path.display()))(e)),
    }
}

/// Names of the existing namespaces starting with `prefix` (which must start with `nplab-`).
pub fn list(prefix: &str) -> Result<Vec<String>> {
    if !prefix.starts_with(PREFIX) {
        return Err(Error::Invalid(format!(
            "prefix {prefix:?} must start with {PREFIX:?}"
        )));
    }
    let mut out = Vec::new();
    match fs::read_dir(NETNS_DIR) {
        Ok(rd) => {
            for e in rd.flatten() {
                if let Some(n) = e.file_name().to_str() {
                    if n.starts_with(prefix) {
                        out.push(n.to_string());
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("read {NETNS_DIR}"))(e)),
    }
    out.sort();
    Ok(out)
}

/// Deletes the listed namespaces when dropped (test and error-path cleanup).
#[derive(Debug, Default)]
pub struct NetnsGuard {
    names: Vec<String>,
}

impl NetnsGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }
    /// Creates (or re-creates) `name` and remembers it for deletion.
    pub fn create(&mut self, name: &str) -> Result<Netns> {
        self.names.push(name.to_string());
        Netns::recreate(name)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for n in self.names.drain(..) {
            let _ = delete(&n);
        }
    }
}

/// The raw fd number of `f` (helper for pre_exec hooks).
pub(crate) fn raw(f: &File) -> i32 {
    f.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            ns_name("pod", "nginx-54f57cf6bf-xhs8g"),
            "nplab-pod-nginx-54f57cf6bf-xhs8g"
        );
        assert_eq!(ns_name("cl", "Browser 1"), "nplab-cl-browser-1");
        let long = ns_name("pod", &"x".repeat(100));
        assert_eq!(long.len(), MAX_NAME);
        assert_ne!(long, ns_name("pod", &"x".repeat(101)));
        assert!(check_name("nplab-a").is_ok());
        assert!(check_name("kref-a").is_err());
        assert!(check_name("nplab-../x").is_err());
        assert!(list("foo").is_err());
    }
}
