//! Phase timings of one `lab scenario run` for benchmarks (`LAB_TIMINGS=1`, read by
//! `scripts/bench-embedded.sh`): wall and thread CPU time of loading the config, building
//! the world, playing the requests (the simulation alone), collecting the result and
//! writing the output, and the process's thread count at the end. One line on stderr:
//!
//! ```text
//! lab-timings requests=30000 threads=1 load=1.9/1.9 setup=0.4/0.4 simulate=590.2/588.0 collect=25.1/25.0 output=60.3/60.1 total=677.9/675.4
//! ```
//!
//! Each phase is `wall/cpu` in milliseconds; cpu is this thread's (CLOCK_THREAD_CPUTIME_ID),
//! so work on any other thread would show as `threads` > 1 and wall > cpu. Off (no clock
//! reads at all) unless the variable is set to a non-empty value other than `0`.

use std::time::{Duration, Instant};

use crate::plan::{PlannedRequest, Progress};
use crate::report::RequestResult;

/// `LAB_TIMINGS`: print the phase line on stderr after a run.
pub const TIMINGS_ENV: &str = "LAB_TIMINGS";

/// The clocks at the start of the current phase and the phases ended so far.
pub struct Timings {
    enabled: bool,
    wall: Instant,
    cpu: Duration,
    requests: usize,
    phases: Vec<(&'static str, Duration, Duration)>,
    start: (Instant, Duration),
}

/// This thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The `Threads:` line of /proc/self/status (0 when unreadable).
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Timings {
    /// Timings on when `LAB_TIMINGS` says so; the clocks start now.
    pub fn from_env() -> Timings {
        let enabled = std::env::var(TIMINGS_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        Timings::new(enabled)
    }

    pub fn new(enabled: bool) -> Timings {
        let (wall, cpu) = (Instant::now(), Self::cpu_if(enabled));
        Timings {
            enabled,
            wall,
            cpu,
            requests: 0,
            phases: Vec::new(),
            start: (wall, cpu),
        }
    }

    fn cpu_if(enabled: bool) -> Duration {
        if enabled {
            thread_cpu()
        } else {
            Duration::ZERO
        }
    }

    /// The phase called `name` ends now; the next one starts.
    pub fn mark(&mut self, name: &'static str) {
        if !self.enabled {
            return;
        }
        let (wall, cpu) = (Instant::now(), thread_cpu());
        self.phases
            .push((name, wall - self.wall, cpu.saturating_sub(self.cpu)));
        (self.wall, self.cpu) = (wall, cpu);
    }

    /// The phase line (see the module docs), `None` when off.
    pub fn line(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut line = format!(
            "lab-timings requests={} threads={}",
            self.requests,
            thread_count()
        );
        let total_wall = self.wall - self.start.0;
        let total_cpu = self.cpu.saturating_sub(self.start.1);
        for (name, wall, cpu) in self
            .phases
            .iter()
            .copied()
            .chain([("total", total_wall, total_cpu)])
        {
            line.push_str(&format!(" {name}={:.1}/{:.1}", ms(wall), ms(cpu)));
        }
        Some(line)
    }

    /// A [`Progress`] that ends the `setup` phase when the plan starts, `simulate` when the
    /// last request is done and `collect` when the run finishes, passing every call on.
    pub fn around<'a>(&'a mut self, inner: &'a mut dyn Progress) -> Timed<'a> {
        Timed {
            timings: self,
            inner,
            total: 0,
        }
    }
}

/// [`Timings::around`].
pub struct Timed<'a> {
    timings: &'a mut Timings,
    inner: &'a mut dyn Progress,
    total: usize,
}

impl Progress for Timed<'_> {
    fn start(&mut self, total: usize) {
        self.timings.mark("setup");
        self.total = total;
        self.inner.start(total);
    }
    fn request(&mut self, number: usize, req: &PlannedRequest<'_>, limit: Option<Duration>) {
        self.inner.request(number, req, limit);
    }
    fn done(&mut self, number: usize, result: &RequestResult) {
        self.inner.done(number, result);
        self.timings.requests = number;
        if number == self.total {
            self.timings.mark("simulate");
        }
    }
    fn finish(&mut self) {
        if self.total == 0 {
            self.timings.mark("simulate");
        }
        self.timings.mark("collect");
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_in_order_and_off_by_default() {
        let mut t = Timings::new(true);
        t.mark("load");
        let mut quiet = crate::plan::Quiet;
        {
            let mut p = t.around(&mut quiet);
            p.start(0);
            p.finish();
        }
        t.mark("output");
        let line = t.line().expect("on");
        let names: Vec<&str> = line
            .split_whitespace()
            .skip(3)
            .filter_map(|f| f.split('=').next())
            .collect();
        assert_eq!(
            names,
            ["load", "setup", "simulate", "collect", "output", "total"]
        );
        assert!(line.starts_with("lab-timings requests=0 threads="));
        let mut off = Timings::new(false);
        off.mark("load");
        assert_eq!(off.line(), None);
    }
}
