//! `lab up --datapath-threads 2` (issue 11, "Cores"): every TUN device gets two queues, the
//! kernel spreads flows over them and two threads forward them. The lab must behave exactly
//! as with one thread (Local keeps the client's address, Cluster masquerades), carry bulk
//! traffic of several flows at once, and both threads must carry some of it.
//!
//! Needs root, nginx, curl, iperf3 and /dev/net/tun; skips with the reason when something is
//! missing, except with CI=true, where it fails. Run machine-wide one at a time:
//! `flock /tmp/nplab-real.lock cargo test -p lab --test datapath_threads`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn in_client(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", "nplab-cl-client"])
        .args(args)
        .output()
        .expect("run in the client namespace")
}

/// CPU time (utime + stime, clock ticks) of each thread of `pid` named `nplab-dp*`.
fn datapath_cpu(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if !comm.starts_with("nplab-dp") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the command: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.push((comm, ticks(14) + ticks(15)));
    }
    out.sort();
    out
}

/// CPU ticks each `nplab-dp*` thread of `pid` used while `during` ran (threads in name order).
fn ticks_during<T>(pid: u32, during: impl FnOnce() -> T) -> (Vec<u64>, T) {
    let before = datapath_cpu(pid);
    let r = during();
    let after = datapath_cpu(pid);
    assert_eq!(after.len(), 2, "datapath threads {after:?}");
    let used = after
        .iter()
        .zip(&before)
        .map(|((_, a), (_, b))| a.saturating_sub(*b))
        .collect();
    (used, r)
}

/// The HTTP status of `GET url` from the client namespace (curl's `%{http_code}`), with
/// curl's stderr for the failure message.
fn http_code(url: &str) -> (String, String) {
    let o = in_client(&[
        "curl",
        "-sS",
        "--connect-timeout",
        "3",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ]);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The TUN device of a pod the path does not use (web-w2 on worker2) is deleted under the
/// lab: its queues answer POLLERR from then on, and the threads must stop polling them (not
/// spin on poll(2)) while the rest of the lab goes on serving.
fn device_gone_is_not_a_busy_loop(pid: u32, url: &str) {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let ns = list
        .split_whitespace()
        .find(|w| w.starts_with("nplab-pod-web-w2"))
        .unwrap_or_else(|| panic!("no web-w2 namespace in:\n{list}"));
    let del = Command::new("ip")
        .args(["-n", ns, "link", "del", "eth0"])
        .status()
        .unwrap();
    assert!(del.success(), "ip -n {ns} link del eth0");
    std::thread::sleep(Duration::from_millis(500));
    let (used, ()) = ticks_during(pid, || std::thread::sleep(Duration::from_secs(1)));
    eprintln!("CPU ticks per datapath thread in the second after the device went: {used:?}");
    // A thread spinning on poll(2) burns about 100 ticks a second.
    assert!(
        used.iter().all(|&t| t < 30),
        "busy loop after the device went: {used:?}"
    );
    let (code, err) = http_code(url);
    assert_eq!(code, "200", "the lab stopped serving: {err}");
}

#[test]
fn two_datapath_threads_forward_like_one() {
    let missing = common::real_missing(&["nginx", "curl", "ip", "iperf3"]);
    if !common::run_or_skip("lab up --datapath-threads 2", &missing) {
        return;
    }
    for (cfg, node, want_client) in [
        // Local through the pod's node: nginx sees the client's own address.
        ("kernel-ref-local", "10.151.30.12", "203.0.113.10"),
        // Cluster through the master: masqueraded to the master's address.
        ("kernel-ref", "10.151.30.11", "10.151.30.11"),
    ] {
        let (up, printed, _) = common::lab_up(&[
            cfg,
            "--datapath-threads",
            "2",
            "--exec",
            "web-w1=iperf3 -s -p 5201",
        ]);
        let text = printed.join("\n");
        assert!(
            text.contains("2 datapath threads"),
            "{cfg}: no ready line with 2 datapath threads:\n{text}"
        );
        // Twenty connections (twenty source ports: spread over both queues by flow hash).
        let url = format!("http://{node}:32761/");
        for i in 0..20 {
            let (code, err) = http_code(&url);
            assert_eq!(code, "200", "{cfg}: request {i}: {err}");
        }
        std::thread::sleep(Duration::from_millis(300));
        let logs: String = std::fs::read_dir("/run/nplab")
            .unwrap()
            .flatten()
            .filter_map(|d| std::fs::read_to_string(d.path().join("access.log")).ok())
            .collect();
        let first_words: Vec<&str> = logs
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(
            first_words.len() >= 20,
            "{cfg}: {} log lines",
            first_words.len()
        );
        assert!(
            first_words.iter().all(|w| *w == want_client),
            "{cfg}: nginx logged {first_words:?}, expected {want_client} only"
        );
        // Sixteen parallel bulk flows for 2 s (all on one queue: odds 2 in 65 536): both threads carry some.
        let (used, o) = ticks_during(up.0.id(), || {
            in_client(&[
                "iperf3",
                "-c",
                node,
                "-p",
                "32201",
                "-P",
                "16",
                "-t",
                "2",
                "--connect-timeout",
                "3000",
            ])
        });
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{cfg}: iperf3 failed:\n{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            out.contains("[SUM]"),
            "{cfg}: iperf3 -P 16 gave no sum:\n{out}"
        );
        eprintln!("{cfg}: CPU ticks of each datapath thread during iperf3 -P 16: {used:?}");
        // Each thread is busy for a good part of the 2 s when it carries a flow (ticks are
        // 1/100 s); an idle one wakes 10 times a second and spends well under 1 tick.
        assert!(
            used.iter().all(|&t| t >= 5),
            "{cfg}: CPU ticks per datapath thread during iperf3 -P 16: {used:?} (one idle?)"
        );
        if cfg == "kernel-ref-local" {
            device_gone_is_not_a_busy_loop(up.0.id(), &url);
        }
        drop(up);
        // The next lab starts only after this one is gone (same namespaces and lock).
        let st = common::lab_ok(repo(), &["down"]);
        drop(st);
    }
}

#[test]
fn impaired_links_refuse_more_than_one_datapath_thread() {
    // Checked before anything is set up: no root needed, nothing created.
    let o = Command::new(env!("CARGO_BIN_EXE_lab"))
        .current_dir(repo())
        .args(["up", "lossy-link", "--datapath-threads", "2"])
        .output()
        .expect("run lab up");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    common::assert_mentions(&err, &["lossy-link.yaml", "links", "--datapath-threads 2"]);
}
