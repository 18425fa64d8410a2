//! The kernel topology's plumbing: `ip` (iproute2) commands, sysctls and `iptables-restore`,
//! each run inside one of the lab's own namespaces (`ip -n <ns> …`, or a child that entered
//! the namespace with `setns`). Nothing here touches the root namespace: every veth pair is
//! created *from* a lab namespace with its peer moved straight into another lab namespace.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use std::process::{Command, Stdio};
use wire::IpFamily;

use super::super::netns::Netns;
use super::super::preflight::find_program;
use super::super::process::spawn_in;
use super::super::{io_err, Error, Result};

/// Longest interface name Linux accepts (IFNAMSIZ 16 minus the NUL).
pub const IFNAMSIZ_MAX: usize = 15;

/// The (iptables-restore, ip6tables-restore) binaries tried, in order (kube-proxy on Debian
/// uses the nft ones). Both families come from the same pair, so IPv4 and IPv6 rules go to
/// the same backend (nf_tables or legacy), as one kube-proxy binary programs them.
pub const IPTABLES_RESTORE: [(&str, &str); 3] = [
    ("iptables-nft-restore", "ip6tables-nft-restore"),
    ("iptables-restore", "ip6tables-restore"),
    ("iptables-legacy-restore", "ip6tables-legacy-restore"),
];

/// The restore binary of `family`, from the first pair whose iptables-restore is found.
pub fn restore_program(family: IpFamily) -> Option<PathBuf> {
    let (v4, v6) = IPTABLES_RESTORE
        .iter()
        .find(|(v4, _)| find_program(v4).is_some())?;
    match family {
        IpFamily::V4 => find_program(v4),
        IpFamily::V6 => find_program(v6),
    }
}

/// The first iptables-restore found on this machine.
pub fn iptables_restore() -> Option<PathBuf> {
    restore_program(IpFamily::V4)
}

/// The ip6tables-restore of the same backend as [`iptables_restore`].
pub fn ip6tables_restore() -> Option<PathBuf> {
    restore_program(IpFamily::V6)
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
    address(ns, name, addr, prefix)?;
    ip(ns, &["link", "set", name, "up"])
}

/// `addr/prefix` on `dev` in `ns`. An IPv6 address is added `nodad` (usable at once; the
/// lab's links have no duplicates to detect) on a link [`enable_ipv6`] has enabled.
pub fn address(ns: &Netns, dev: &str, addr: impl Into<IpAddr>, prefix: u8) -> Result<()> {
    let addr = addr.into();
    let cidr = format!("{addr}/{prefix}");
    let mut args = vec!["addr", "add", &cidr, "dev", dev];
    if addr.is_ipv6() {
        args.push("nodad");
    }
    ip(ns, &args)
}

/// Turns IPv6 on for `dev` in `ns` (namespaces start with it off for new links, see
/// [`IPV6_OFF_BY_DEFAULT`]): no duplicate address detection (its link-local address, which
/// neighbour discovery needs when the link forwards, is usable at once), no router
/// advertisements accepted (routes are static, as in the lab).
pub fn enable_ipv6(ns: &Netns, dev: &str) -> Result<()> {
    check_ifname(dev)?;
    let keys: Vec<(String, &str)> = [
        ("accept_dad", "0"),
        ("accept_ra", "0"),
        ("disable_ipv6", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("net/ipv6/conf/{dev}/{k}"), v))
    .collect();
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    sysctls(ns, &keys, &[])
}

/// Set on every kernel namespace before it has links: IPv6 stays off on each new link
/// unless [`enable_ipv6`] turns it on (optional: a host booted with `ipv6.disable=1` has no
/// `net/ipv6`, and IPv4-only scenarios do not need it).
pub const IPV6_OFF_BY_DEFAULT: (&str, &str) = ("net/ipv6/conf/default/disable_ipv6", "1");

/// `ip route add <dest> via <gw>` in `ns` (`dest` may be `default`; the family is `via`'s:
/// `default` via an IPv6 gateway is the IPv6 default route).
pub fn route(ns: &Netns, dest: &str, via: impl Into<IpAddr>) -> Result<()> {
    let via = via.into();
    let family = if via.is_ipv6() { "-6" } else { "-4" };
    ip(ns, &[family, "route", "add", dest, "via", &via.to_string()])
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

/// Loads `rules` (iptables-save text of `family`) into `ns` with iptables-restore or
/// ip6tables-restore (full replace of the tables it names). The error carries the program's
/// message and the failing line.
pub fn iptables_load(ns: &Netns, family: IpFamily, rules: &str) -> Result<()> {
    let name = match family {
        IpFamily::V4 => "iptables-restore",
        IpFamily::V6 => "ip6tables-restore",
    };
    let prog = restore_program(family).ok_or_else(|| {
        Error::Preflight(format!("{name} not found (apt-get install -y iptables)"))
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

    #[test]
    fn both_families_restore_with_one_backend() {
        // Same pair: a v6 binary is only ever taken next to its own v4 one.
        if let (Some(v4), Some(v6)) = (iptables_restore(), ip6tables_restore()) {
            let v4 = v4.file_name().unwrap().to_string_lossy().into_owned();
            let v6 = v6.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                IPTABLES_RESTORE.contains(&(v4.as_str(), v6.as_str())),
                "{v4} {v6}"
            );
        }
    }
}
