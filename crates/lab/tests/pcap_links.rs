//! `lab scenario run X --pcap DIR`: one pcap file per link, read back with tcpdump.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn tcpdump(file: &Path) -> Option<Vec<String>> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(file)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tcpdump -r {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lab-pcap-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Minimal pcap reader (no dependency; either byte order): (link type, records).
fn read_pcap(file: &Path) -> (u32, Vec<Vec<u8>>) {
    let b = std::fs::read(file).unwrap();
    let be = match b[..4] {
        [0xa1, 0xb2, 0xc3, 0xd4] => true,
        [0xd4, 0xc3, 0xb2, 0xa1] => false,
        _ => panic!("{}: not a µs pcap file", file.display()),
    };
    let word = |o: usize| {
        let w: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if be {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let linktype = word(20);
    let mut recs = Vec::new();
    let mut o = 24;
    while o + 16 <= b.len() {
        let incl = word(o + 8) as usize;
        recs.push(b[o + 16..o + 16 + incl].to_vec());
        o += 16 + incl;
    }
    (linktype, recs)
}

#[test]
fn seed_cluster_pcap_per_link() {
    let dir = temp_dir("seed");
    let out = common::scenario_run("seed-cluster", &["--json", "--pcap", dir.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON unchanged");
    let np = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nginx")
        .and_then(|s| s["ports"][0]["node_port"].as_u64())
        .expect("nginx nodePort")
        .to_string();
    let pod = v["requests"][0]["pod"].as_str().unwrap().to_string();

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in [
        "browser.pcap",
        "ydzs-master-eth0.pcap",
        "ydzs-master-cni0.pcap",
        "ydzs-node2-cni0.pcap",
        "router-node-network.pcap",
        &format!("pod-{pod}.pcap"),
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // Without tcpdump: parse the files ourselves (LINKTYPE_RAW, IPv4 records).
    let (lt, recs) = read_pcap(&dir.join("browser.pcap"));
    assert_eq!(lt, 101, "LINKTYPE_RAW");
    assert!(!recs.is_empty() && recs.iter().all(|r| r[0] >> 4 == 4));

    let Some(browser) = tcpdump(&dir.join("browser.pcap")) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tcpdump is missing (CI installs it)");
        }
        eprintln!("SKIP tcpdump checks: tcpdump not found");
        return;
    };
    assert!(
        browser[0].contains("IP 203.0.113.11.")
            && browser[0].contains(&format!("> 10.151.30.11.{np}: Flags [S]")),
        "{browser:?}"
    );
    let eth0 = tcpdump(&dir.join("ydzs-master-eth0.pcap")).unwrap();
    let dnat_snat = eth0
        .iter()
        .find(|l| {
            l.contains("IP 10.151.30.11.")
                && l.contains(" > 10.244.")
                && l.contains(".80: Flags [S]")
        })
        .unwrap_or_else(|| panic!("no DNAT+SNAT SYN on the master's eth0: {eth0:?}"));
    assert!(dnat_snat.contains("IP 10.151.30.11."), "{dnat_snat}");
    let podcap = tcpdump(&dir.join(format!("pod-{pod}.pcap"))).unwrap();
    assert!(
        podcap[0].contains("IP 10.151.30.11.") && podcap[0].contains(".80: Flags [S]"),
        "the pod sees the master as the source: {podcap:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The blog over IPv6 (issue 10): the same LINKTYPE_RAW files carry IPv6 datagrams; the
/// master's eth0 shows the SYN after DNAT and MASQUERADE with its IPv6 addresses.
#[test]
fn seed_cluster_v6_pcap_carries_ipv6() {
    let dir = temp_dir("seed-v6");
    common::scenario_run(
        "seed-cluster-v6",
        &["--json", "--pcap", dir.to_str().unwrap()],
    );
    let (lt, recs) = read_pcap(&dir.join("browser.pcap"));
    assert_eq!(lt, 101, "LINKTYPE_RAW");
    assert!(!recs.is_empty() && recs.iter().all(|r| r[0] >> 4 == 6));
    let (_, eth0) = read_pcap(&dir.join("ydzs-master-eth0.pcap"));
    // IPv6 source at bytes 8..24, destination at 24..40.
    let masq: [u8; 16] = "fd00:10:151:30::11"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let pods = [0xfd, 0x00, 0x00, 0x10, 0x02, 0x44]; // fd00:10:244::/48
    assert!(
        eth0.iter()
            .any(|r| r[0] >> 4 == 6 && r[8..24] == masq && r[24..30] == pods),
        "no masqueraded IPv6 datagram towards a pod on the master's eth0"
    );
    if let Some(browser) = tcpdump(&dir.join("browser.pcap")) {
        assert!(
            browser[0].contains("IP6 2001:db8::11.")
                && browser[0].contains("> fd00:10:151:30::11."),
            "{browser:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
