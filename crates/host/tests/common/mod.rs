#![allow(dead_code)]
//! Helpers shared by the host crate's root tests.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use host::netns::Netns;
use host::preflight::find_program;
use host::process::Supervised;
use vswitch::tun::{TunConfig, TunPort};

/// A TUN device `addr/24` in `ns`, default route via `gateway`, MTU `mtu`.
pub fn tun(ns: &Netns, addr: Ipv4Addr, gateway: Ipv4Addr, mtu: u16) -> TunPort {
    TunPort::create(
        &TunConfig::new(ns.name(), addr, 24)
            .gateway(gateway)
            .mtu(mtu),
    )
    .unwrap_or_else(|e| panic!("tun {addr} in {}: {e}", ns.name()))
}

/// `iperf3 -s -p 5201` in `ns` (root, like the benchmark harness), its pid record in
/// `state_root`; the caller stops it.
pub fn iperf3_server(ns: &Netns, state_root: &Path) -> Supervised {
    let iperf3 = find_program("iperf3").expect("iperf3");
    let mut cmd = Command::new(&iperf3);
    cmd.args(["-s", "-p", "5201", "--idle-timeout", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let record = Some(state_root.join("iperf3.proc.json"));
    Supervised::spawn(ns, "iperf3 server", cmd, record, "iperf3").expect("iperf3 server")
}

/// `iperf3 -c DST -p PORT` for 5 s with JSON output (the benchmarks' client).
pub fn iperf3_client_args<'a>(dst: &'a str, port: &'a str) -> [&'a str; 9] {
    [
        "-c",
        dst,
        "-p",
        port,
        "-t",
        "5",
        "--connect-timeout",
        "3000",
        "-J",
    ]
}

/// `(bits per second received, retransmits)` from `iperf3 -J` output (zeros if unreadable).
pub fn iperf3_result(stdout: &[u8]) -> (f64, u64) {
    let json: serde_json::Value = serde_json::from_slice(stdout).unwrap_or_default();
    let bps = json["end"]["sum_received"]["bits_per_second"].as_f64();
    let retr = json["end"]["sum_sent"]["retransmits"].as_u64();
    (bps.unwrap_or(0.0), retr.unwrap_or(0))
}
