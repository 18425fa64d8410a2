//! # fuzz — seeded mutation fuzzing on stable Rust
//!
//! Two targets, each a [`Harness`] driven by the same engine ([`run`]):
//!
//! - [`packets`]: mutated IPv4 TCP/UDP/ICMP datagrams (and garbage) into a
//!   [`nodestack::Node`] that has NodePort/ClusterIP/LoadBalancer services, endpoints on
//!   and off the node, and live conntrack state; replies and ICMP errors quote the flows the
//!   node NATed, from both the eth0 and the cni0 side.
//! - [`configs`]: lab configs with inline manifests, mutated as text, into
//!   [`cluster::load_cluster_from_str`].
//!
//! The engine is a plain loop: every thread has its own ChaCha8 generator seeded from
//! `(seed, thread)`, its own harness, and catches panics per input (`catch_unwind`); a
//! panicking input is written to the output directory with the panic message, and the
//! thread continues on a fresh harness. Same seed + threads + iterations = same inputs.

pub mod cli;
pub mod configs;
pub mod mutate;
pub mod packets;
pub mod wire;

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One fuzz target: makes inputs and runs them.
pub trait Harness {
    /// Short name (used in crash file names).
    const NAME: &'static str;
    /// The next input (the harness may use its own state, e.g. packets the node sent).
    fn generate(&mut self, rng: &mut ChaCha8Rng) -> Vec<u8>;
    /// Feeds one input to the code under test. A panic here is a finding.
    fn execute(&mut self, input: &[u8]);
    /// Named counters (what the inputs exercised), summed over threads in the report.
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Total inputs over all threads.
    pub iterations: u64,
    /// Base seed.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Where panicking (and slow) inputs are written.
    pub out: PathBuf,
    /// An input slower than this is saved as `slow-…` (not a crash).
    pub slow: Duration,
    /// Progress line to stderr every this many inputs per thread (0 = never).
    pub progress_every: u64,
}

/// One panicking input.
#[derive(Clone, Debug)]
pub struct Crash {
    /// Panic message and location.
    pub message: String,
    /// The saved input (None if saving failed or the per-location limit was reached).
    pub file: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Inputs executed.
    pub inputs: u64,
    /// Inputs that panicked.
    pub panics: u64,
    /// Inputs slower than [`Options::slow`].
    pub slow: u64,
    /// Distinct panics (first few inputs of each location).
    pub crashes: Vec<Crash>,
    /// Summed harness counters, in the harness's order.
    pub counters: Vec<(&'static str, u64)>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// Human report.
    pub fn render(&self, name: &str, opts: &Options) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mut s = format!(
            "{name}: {} inputs in {secs:.1} s ({:.0}/s), seed {}, {} thread(s): {} panic(s), {} slow (> {:?})\n",
            self.inputs,
            self.inputs as f64 / secs.max(1e-9),
            opts.seed,
            opts.threads,
            self.panics,
            self.slow,
            opts.slow,
        );
        for (k, v) in &self.counters {
            s.push_str(&format!("  {k:<24} {v}\n"));
        }
        for c in &self.crashes {
            let f = c.file.as_ref().map(|p| p.display().to_string());
            s.push_str(&format!(
                "  PANIC {} (input: {})\n",
                c.message,
                f.as_deref().unwrap_or("not saved")
            ));
        }
        s
    }
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the panic hook by one that records the message for the fuzz loop (and prints
/// nothing: a finding is reported once, by the loop).
fn install_quiet_hook() {
    panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string panic payload)".to_string()
        };
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg} at {at}")));
    }));
}

/// Inputs saved per distinct panic message.
const SAVE_PER_PANIC: usize = 3;

struct Shared {
    crashes: Mutex<BTreeMap<String, Vec<Option<PathBuf>>>>,
    done: AtomicU64,
    start: Instant,
}

fn save(out: &Path, file: String, input: &[u8], note: &str) -> Option<PathBuf> {
    std::fs::create_dir_all(out).ok()?;
    let p = out.join(file);
    std::fs::write(&p, input).ok()?;
    let _ = std::fs::write(p.with_extension("txt"), note);
    Some(p)
}

/// Runs `opts.iterations` inputs over `opts.threads` threads; `make(thread)` builds a
/// harness (again after each panic).
pub fn run<H, F>(opts: &Options, make: F) -> Summary
where
    H: Harness,
    F: Fn() -> H + Sync,
{
    let start = Instant::now();
    let threads = opts.threads.max(1) as u64;
    let shared = Arc::new(Shared {
        crashes: Mutex::new(BTreeMap::new()),
        done: AtomicU64::new(0),
        start,
    });
    let prev_hook = panic::take_hook();
    install_quiet_hook();
    let parts: Vec<Summary> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = opts.iterations / threads + u64::from(t < opts.iterations % threads);
                let shared = Arc::clone(&shared);
                let make = &make;
                s.spawn(move || worker::<H, F>(opts, t, n, make, &shared))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    panic::set_hook(prev_hook);
    let mut sum = Summary::default();
    for p in parts {
        sum.inputs += p.inputs;
        sum.panics += p.panics;
        sum.slow += p.slow;
        add_counters(&mut sum.counters, p.counters);
    }
    let crashes = shared.crashes.lock().map(|c| c.clone()).unwrap_or_default();
    for (message, files) in crashes {
        for file in files {
            sum.crashes.push(Crash {
                message: message.clone(),
                file,
            });
        }
    }
    sum.elapsed = start.elapsed();
    sum
}

fn worker<H: Harness, F: Fn() -> H>(
    opts: &Options,
    thread: u64,
    n: u64,
    make: &F,
    shared: &Shared,
) -> Summary {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ thread.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut h = make();
    let mut sum = Summary::default();
    let mut retired: Vec<(&'static str, u64)> = Vec::new();
    for i in 0..n {
        let input = h.generate(&mut rng);
        let t0 = Instant::now();
        let r = panic::catch_unwind(AssertUnwindSafe(|| h.execute(&input)));
        let took = t0.elapsed();
        sum.inputs += 1;
        if took > opts.slow {
            sum.slow += 1;
            let name = format!("{}-slow-s{}-t{thread}-i{i}.bin", H::NAME, opts.seed);
            save(&opts.out, name, &input, &format!("took {took:?}\n"));
        }
        if r.is_err() {
            sum.panics += 1;
            let msg = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "(unknown panic)".into());
            let mut map = shared.crashes.lock().unwrap_or_else(|e| e.into_inner());
            let files = map.entry(msg.clone()).or_default();
            if files.len() < SAVE_PER_PANIC {
                let name = format!("{}-crash-s{}-t{thread}-i{i}.bin", H::NAME, opts.seed);
                let note = format!(
                    "{msg}\nseed {} thread {thread} input {i}\nreplay: --replay <this .bin>\n",
                    opts.seed
                );
                files.push(save(&opts.out, name, &input, &note));
                eprintln!("{}: PANIC {msg}", H::NAME);
            }
            drop(map);
            add_counters(&mut retired, h.counters());
            h = make();
        }
        if opts.progress_every > 0 && (i + 1) % opts.progress_every == 0 {
            let done = shared
                .done
                .fetch_add(opts.progress_every, Ordering::Relaxed)
                + opts.progress_every;
            eprintln!(
                "{}: {done} inputs, {:.0} s",
                H::NAME,
                shared.start.elapsed().as_secs_f64()
            );
        }
    }
    add_counters(&mut retired, h.counters());
    sum.counters = retired;
    sum
}

/// Adds `more` into `into` by name, keeping the first-seen order.
fn add_counters(into: &mut Vec<(&'static str, u64)>, more: Vec<(&'static str, u64)>) {
    for (k, v) in more {
        match into.iter_mut().find(|(n, _)| *n == k) {
            Some((_, sum)) => *sum += v,
            None => into.push((k, v)),
        }
    }
}

/// Runs one saved input on a fresh harness; `Err(message)` if it panics.
pub fn replay<H: Harness>(mut h: H, input: &[u8]) -> Result<(), String> {
    let prev = panic::take_hook();
    install_quiet_hook();
    let r = panic::catch_unwind(AssertUnwindSafe(|| h.execute(input)));
    panic::set_hook(prev);
    r.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "(unknown panic)".into())
    })
}
