//! The kernel topology's plumbing: `ip` (iproute2) commands, sysctls and `iptables-restore`,
//! each run inside one of the lab's own namespaces (`ip -n <ns> …`, or a child that entered
//! the namespace with `setns`). Nothing here touches the root namespace: every veth pair is
//! created *from* a lab namespace with its peer moved straight into another lab namespace.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::super::netns::Netns;
use super::super::preflight::find_program;
use super::super::process::spawn_in;
use super::super::{io_err, Error, Result};

/// Longest interface name Linux accepts (IFNAMSIZ 16 minus the NUL).
pub const IFNAMSIZ_MAX: usize = 15;

/// The iptables-restore binaries tried, in order (kube-proxy on Debian uses the nft one).
pub const IPTABLES_RESTORE: [&str; 3] = [
    "iptables-nft-restore",
    "iptables-restore",
    "iptables-legacy-restore",
];

/// The first iptables-restore found on this machine.
pub fn iptables_restore() -> Option<PathBuf> {
    IPTABLES_RESTORE.iter().find_map(|p| find_program(p))
}

fn ip_program() -> Result<PathBuf> {
    find_program("ip")
        .ok_or_else(|| Error::Preflight("ip not found (apt-get install -y iproute2)".into()))
}

/// Runs `ip -n <ns> <args…>`; the error names the namespace, the command and ip's stderr.
pub fn ip(ns: &Netns, args: &[&str]) -> Result<()> {
    let out = Command::new(ip_program()?)
        .arg("-n")
        .arg(ns.name())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!(
            "run ip -n {} {}",
            ns.name(),
            args.join(" ")
        )))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Process(format!(
        "ip -n {} {} failed ({}): {}",
        ns.name(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    )))
}

/// Checks an interface name against IFNAMSIZ.
pub fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX {
        return Err(Error::Invalid(format!(
            "interface name {name:?} must be 1..={IFNAMSIZ_MAX} bytes (IFNAMSIZ)"
        )));
    }
    Ok(())
}

/// A veth pair: `here` stays in `a` (and is enslaved to bridge `master`, if given),
/// `there` is created directly in `b`. Both ends are brought up.
pub fn veth(a: &Netns, here: &str, b: &Netns, there: &str, master: Option<&str>) -> Result<()> {
    check_ifname(here)?;
    check_ifname(there)?;
    let peer_ns = b.name();
    ip(
        a,
        &[
            "link", "add", here, "type", "veth", "peer", "name", there, "netns", peer_ns,
        ],
    )?;
    if let Some(br) = master {
        ip(a, &["link", "set", here, "master", br])?;
    }
    ip(a, &["link", "set", here, "up"])?;
    ip(b, &["link", "set", there, "up"])
}

/// A bridge `name` in `ns` with `addr/prefix`, up.
pub fn bridge(ns: &Netns, name: &str, addr: Ipv4Addr, prefix: u8) -> Result<()> {
    check_ifname(name)?;
    ip(ns, &["link", "add", name, "type", "bridge"])?;
    ip(
        ns,
        &["addr", "add", &format!("{addr}/{prefix}"), "dev", name],
    )?;
    ip(ns, &["link", "set", name, "up"])
}

/// `addr/prefix` on `dev` in `ns`.
pub fn address(ns: &Netns, dev: &str, addr: Ipv4Addr, prefix: u8) -> Result<()> {
    ip(
        ns,
        &["addr", "add", &format!("{addr}/{prefix}"), "dev", dev],
    )
}

/// `ip route add <dest> via <gw>` in `ns` (`dest` may be `default`).
pub fn route(ns: &Netns, dest: &str, via: Ipv4Addr) -> Result<()> {
    ip(ns, &["route", "add", dest, "via", &via.to_string()])
}

/// Writes sysctls (`net/ipv4/ip_forward` style keys, relative to `/proc/sys`) from a thread
/// that entered `ns`: `/proc/sys/net` shows the namespace of the thread that opens it.
/// Keys in `optional` may be missing (e.g. `net/bridge/…` without br_netfilter).
pub fn sysctls(ns: &Netns, keys: &[(&str, &str)], optional: &[(&str, &str)]) -> Result<()> {
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, x)| (k.to_string(), x.to_string()))
            .collect()
    };
    let (keys, optional) = (owned(keys), owned(optional));
    let name = ns.name().to_string();
    ns.run(move || -> Result<()> {
        for (k, v) in &keys {
            let p = format!("/proc/sys/{k}");
            fs::write(&p, v).map_err(io_err(format!("{name}: write {v} to {p}")))?;
        }
        for (k, v) in &optional {
            let _ = fs::write(format!("/proc/sys/{k}"), v);
        }
        Ok(())
    })?
}

/// Loads `rules` (iptables-save text) into `ns` with iptables-restore (full replace of the
/// tables it names). The error carries iptables-restore's message and the failing line.
pub fn iptables_load(ns: &Netns, rules: &str) -> Result<()> {
    let prog = iptables_restore().ok_or_else(|| {
        Error::Preflight("iptables-restore not found (apt-get install -y iptables)".into())
    })?;
    let mut cmd = Command::new(&prog);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_in(ns, &mut cmd, None)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes()).map_err(io_err(format!(
            "{}: write rules to {}",
            ns.name(),
            prog.display()
        )))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err(format!("wait for {}", prog.display())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Process(format!(
        "{} in {} rejected the rules ({}): {}",
        prog.display(),
        ns.name(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_respect_ifnamsiz() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("p123456789abcde").is_ok());
        assert!(check_ifname("p123456789abcdef").is_err());
        assert!(check_ifname("").is_err());
    }
}
