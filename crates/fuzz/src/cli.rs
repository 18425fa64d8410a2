//! The command line shared by `fuzz-packets` and `fuzz-configs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::{replay, run, Harness, Options};

/// Seeded mutation fuzzing (stable Rust). Prints the counts and every panic; panicking
/// inputs are saved to OUT. Exit status 1 if anything panicked.
#[derive(Parser, Debug)]
pub struct Args {
    /// Inputs to run (over all threads).
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub iterations: u64,
    /// Base seed (thread t uses seed ^ t·φ).
    #[arg(short, long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads.
    #[arg(short = 'j', long, default_value_t = 1)]
    pub threads: usize,
    /// Directory for panicking and slow inputs.
    #[arg(long, default_value = "target/fuzz-findings")]
    pub out: PathBuf,
    /// Inputs slower than this many milliseconds are saved as `slow-…`.
    #[arg(long, default_value_t = 1000)]
    pub slow_ms: u64,
    /// Progress line every N inputs per thread (0 = none).
    #[arg(long, default_value_t = 0)]
    pub progress: u64,
    /// Run one saved input (a `.bin` from OUT) on a fresh harness instead of fuzzing.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

/// `main` of a fuzz binary for harness `H`.
pub fn main<H: Harness, F: Fn() -> H + Sync>(make: F) -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.replay {
        let input = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        return match replay(make(), &input) {
            Ok(()) => {
                println!("{}: {} does not panic", H::NAME, file.display());
                ExitCode::SUCCESS
            }
            Err(msg) => {
                println!("{}: {} panics: {msg}", H::NAME, file.display());
                ExitCode::FAILURE
            }
        };
    }
    let opts = Options {
        iterations: args.iterations,
        seed: args.seed,
        threads: args.threads.max(1),
        out: args.out.clone(),
        slow: Duration::from_millis(args.slow_ms),
        progress_every: args.progress,
    };
    let sum = run(&opts, make);
    print!("{}", sum.render(H::NAME, &opts));
    if sum.panics == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
