//! Can real mode run here? Root, `/dev/net/tun`, and the programs it starts.

use std::path::{Path, PathBuf};

use super::{Error, Result};

/// What a real-mode run needs besides root and `/dev/net/tun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// nginx (pods).
    pub nginx: bool,
    /// curl (clients).
    pub curl: bool,
    /// iperf3 (benchmarks only).
    pub iperf3: bool,
}

impl Default for Needs {
    fn default() -> Self {
        Needs {
            nginx: true,
            curl: true,
            iperf3: false,
        }
    }
}

/// Finds `name` in `$PATH`, then in /usr/sbin, /usr/bin, /sbin, /bin.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The list of what is missing (empty = real mode can run).
pub fn missing(needs: Needs) -> Vec<String> {
    let mut miss = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        miss.push("root privileges (run it with sudo)".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        miss.push("/dev/net/tun (TUN support: modprobe tun)".to_string());
    }
    for (want, prog, pkg) in [
        (needs.nginx, "nginx", "nginx-light"),
        (needs.curl, "curl", "curl"),
        (needs.iperf3, "iperf3", "iperf3"),
    ] {
        if want && find_program(prog).is_none() {
            miss.push(format!("{prog} (apt-get install -y {pkg})"));
        }
    }
    miss
}

/// `Ok(())` if real mode can run; otherwise an error naming exactly what is missing and
/// pointing to embedded mode.
pub fn preflight(needs: Needs) -> Result<()> {
    let miss = missing(needs);
    if miss.is_empty() {
        return Ok(());
    }
    Err(Error::Preflight(format!(
        "real mode cannot run here; missing: {}.\n\
         Embedded mode needs none of this: `cargo run -- scenario run <name>` (without --real).",
        miss.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_missing_and_embedded_mode() {
        assert!(find_program("sh").is_some());
        assert!(find_program("nplab-no-such-program").is_none());
        let m = missing(Needs::default());
        if let Err(e) = preflight(Needs::default()) {
            let s = e.to_string();
            for x in &m {
                assert!(s.contains(x.as_str()));
            }
            assert!(s.contains("cargo run -- scenario run <name>"));
        } else {
            assert!(m.is_empty());
        }
    }
}
