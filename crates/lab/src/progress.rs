//! The progress bar of long runs (stderr, only on a terminal): requests done/total, elapsed
//! time and rate; in real mode also the current request and the time until curl gives up
//! connecting.
//!
//! A [`Bar`] is a [`Progress`] the runners call at every request. It stays hidden for the
//! first [`SHOW_AFTER`] (short runs print nothing), and is never created when stderr is not
//! a terminal (pipes, CI logs), so `--json` on stdout and captured stderr stay clean.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::plan::{PlannedRequest, Progress};
use crate::report::RequestResult;

/// Runs shorter than this show no bar.
pub const SHOW_AFTER: Duration = Duration::from_secs(2);

/// `LAB_PROGRESS_AFTER_MS`: overrides [`SHOW_AFTER`] (tests use 0 to see the bar at once).
const SHOW_AFTER_ENV: &str = "LAB_PROGRESS_AFTER_MS";

/// The bar on stderr, once the run is older than the delay.
pub struct Bar {
    bar: Option<ProgressBar>,
    show_after: Duration,
    /// When the current request's curl gives up (real mode), for the countdown.
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Bar {
    /// A bar on stderr if stderr is a terminal; otherwise one that shows nothing.
    pub fn for_stderr() -> Bar {
        let show_after = std::env::var(SHOW_AFTER_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(SHOW_AFTER);
        Bar {
            bar: None,
            show_after,
            deadline: Arc::new(Mutex::new(None)),
        }
    }

    fn enabled() -> bool {
        std::io::stderr().is_terminal()
    }

    fn style(&self) -> ProgressStyle {
        let deadline = Arc::clone(&self.deadline);
        let template = "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} requests ({rate}/s){msg}{countdown}";
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}", s.per_sec());
            })
            .with_key(
                "countdown",
                move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let left = deadline
                        .lock()
                        .ok()
                        .and_then(|d| *d)
                        .map(|d| d.saturating_duration_since(Instant::now()));
                    if let Some(left) = left {
                        let _ = write!(w, ", connect timeout in {} s", left.as_secs());
                    }
                },
            )
    }

    /// Reveals the bar on stderr once the run is `show_after` old, from a timer thread (a
    /// hanging real-mode request makes no calls for up to two minutes).
    fn show_later(&self, bar: &ProgressBar) {
        if self.show_after.is_zero() {
            reveal(bar);
            return;
        }
        let weak = bar.downgrade();
        let delay = self.show_after;
        let spawned = std::thread::Builder::new()
            .name("lab-progress".into())
            .spawn(move || {
                std::thread::sleep(delay);
                if let Some(bar) = weak.upgrade().filter(|b| !b.is_finished()) {
                    reveal(&bar);
                }
            });
        if spawned.is_err() {
            tracing::debug!("no progress timer thread: the bar stays hidden");
        }
    }
}

/// Shows `bar` on stderr and draws it at once (the steady tick would first draw a quarter of a
/// second later, after a fast run has already ended).
fn reveal(bar: &ProgressBar) {
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.tick();
}

impl Progress for Bar {
    fn start(&mut self, total: usize) {
        if !Self::enabled() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
        bar.set_style(self.style());
        bar.enable_steady_tick(Duration::from_millis(250));
        self.show_later(&bar);
        self.bar = Some(bar);
    }

    fn request(&mut self, number: usize, req: &PlannedRequest<'_>, limit: Option<Duration>) {
        let Some(bar) = &self.bar else { return };
        if let Ok(mut d) = self.deadline.lock() {
            *d = limit.map(|l| Instant::now() + l);
        }
        if limit.is_some() {
            // Real mode: which request is waiting (embedded requests take no wall time).
            bar.set_message(format!(" · #{number} {} → {}", req.step.client, req.label));
        }
    }

    fn done(&mut self, _number: usize, _result: &RequestResult) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = None;
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
