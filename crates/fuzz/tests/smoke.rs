//! A bounded run of both fuzz targets in the normal test suite: no input may panic, and the
//! inputs must reach the paths the targets are for (NAT replies, ICMP errors, REJECT,
//! forwarding; configs that load and configs that are refused).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fuzz::configs::ConfigHarness;
use fuzz::packets::PacketHarness;
use fuzz::{run, Options, Summary};

/// `run` swaps the process's panic hook: one run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn opts(iterations: u64, seed: u64) -> Options {
    Options {
        iterations,
        seed,
        threads: 2,
        out: std::env::temp_dir().join(format!("nplab-fuzz-smoke-{}", std::process::id())),
        slow: Duration::from_secs(10),
        progress_every: 0,
    }
}

fn counter(s: &Summary, name: &str) -> u64 {
    s.counters
        .iter()
        .find(|(n, _)| n.trim() == name)
        .map(|&(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {name:?} in {:?}", s.counters))
}

fn no_panics(s: &Summary, name: &str, o: &Options) {
    assert_eq!(s.panics, 0, "{}", s.render(name, o));
    let _ = std::fs::remove_dir_all(&o.out);
}

#[test]
fn packets_smoke() {
    let _s = serial();
    let o = opts(20_000, 7);
    let s = run(&o, PacketHarness::new);
    eprint!("{}", s.render("packets", &o));
    assert_eq!(s.inputs, 20_000);
    for c in [
        "replies",
        "icmp errors",
        "garbage",
        "mutated",
        "bridged",
        "forwarded",
    ] {
        assert!(counter(&s, c) > 100, "{c}: {}", s.render("packets", &o));
    }
    for c in [
        "rejects (ICMP)",
        "engine drops",
        "delivered local",
        "ICMP errors out",
        "quote NAT-rewritten",
    ] {
        assert!(counter(&s, c) > 0, "{c}: {}", s.render("packets", &o));
    }
    no_panics(&s, "packets", &o);
}

#[test]
fn configs_smoke() {
    let _s = serial();
    let o = opts(2_000, 7);
    assert!(
        ConfigHarness::new().seed_count() >= 20,
        "seed corpus missing"
    );
    let s = run(&o, ConfigHarness::new);
    eprint!("{}", s.render("configs", &o));
    assert_eq!(counter(&s, "configs"), 2_000);
    assert!(counter(&s, "loaded") > 20);
    assert!(counter(&s, "rejected with an error") > 200);
    no_panics(&s, "configs", &o);
}

#[test]
fn same_seed_same_run() {
    let _s = serial();
    let o = opts(3_000, 11);
    let a = run(&o, PacketHarness::new);
    let b = run(&o, PacketHarness::new);
    assert_eq!(a.counters, b.counters);
}
