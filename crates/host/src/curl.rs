//! Real `curl` in a client namespace, with its exit code mapped to the lab's outcomes.

use std::time::Duration;

use super::netns::Netns;
use super::preflight::find_program;
use super::process::Running;
use super::{Error, Result};

/// Marker line that separates the body from curl's `-w` output.
const MARK: &str = "__nplab_curl__";

/// One request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurlRequest {
    /// Full URL, e.g. `http://10.151.30.11:32761/`.
    pub url: String,
    /// `--connect-timeout` (default 3 s).
    pub connect_timeout: Duration,
    /// `-m` total time limit (default 5 s).
    pub max_time: Duration,
    /// Extra arguments passed before the URL (e.g. `-H`, `Connection: close`).
    pub extra_args: Vec<String>,
}

impl CurlRequest {
    /// A GET of `url` with the default timeouts.
    pub fn get(url: impl Into<String>) -> Self {
        CurlRequest {
            url: url.into(),
            connect_timeout: Duration::from_secs(3),
            max_time: Duration::from_secs(5),
            extra_args: Vec::new(),
        }
    }
    /// Sets both timeouts.
    pub fn timeouts(mut self, connect: Duration, max: Duration) -> Self {
        self.connect_timeout = connect;
        self.max_time = max;
        self
    }
    /// `true` if the URL's host is an IPv6 literal (`http://[fd00::1]:80/`).
    pub fn is_ipv6(&self) -> bool {
        self.url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.starts_with('['))
    }
    /// The argument vector (without the program name). An IPv6 URL adds `-g` (`--globoff`:
    /// the brackets are the address's, not a URL glob) and `-6`.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "-sS".to_string(),
            "--connect-timeout".into(),
            secs(self.connect_timeout),
            "-m".into(),
            secs(self.max_time),
            "-w".into(),
            format!(
                "\n{MARK} %{{remote_ip}} %{{remote_port}} %{{http_code}} %{{time_total}} %{{local_ip}} %{{local_port}}\n"
            ),
        ];
        if self.is_ipv6() {
            a.extend(["-g".to_string(), "-6".to_string()]);
        }
        a.extend(self.extra_args.iter().cloned());
        a.push(self.url.clone());
        a
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// A completed HTTP exchange (curl exit code 0).
#[derive(Clone, Debug, PartialEq)]
pub struct CurlResponse {
    /// HTTP status code.
    pub http_code: u16,
    /// `%{remote_ip}`.
    pub remote_ip: String,
    /// `%{remote_port}`.
    pub remote_port: u16,
    /// `%{local_ip}`.
    pub local_ip: String,
    /// `%{local_port}`.
    pub local_port: u16,
    /// `%{time_total}` in seconds.
    pub time_total: f64,
    /// Response body.
    pub body: String,
}

/// What happened, by curl's exit code.
#[derive(Clone, Debug, PartialEq)]
pub enum CurlOutcome {
    /// Exit 0.
    Ok(CurlResponse),
    /// Exit 28: operation timed out.
    Timeout {
        /// curl's stderr.
        stderr: String,
    },
    /// Exit 7: failed to connect (refused / unreachable).
    Refused {
        /// curl's stderr.
        stderr: String,
    },
    /// Exit 56: failure receiving data (connection reset).
    Reset {
        /// curl's stderr.
        stderr: String,
    },
    /// Any other exit code (or killed: code -1).
    Error {
        /// Exit code.
        code: i32,
        /// curl's stderr.
        stderr: String,
    },
}

impl CurlOutcome {
    /// Short name: ok / timeout / refused / reset / error.
    pub fn kind(&self) -> &'static str {
        match self {
            CurlOutcome::Ok(_) => "ok",
            CurlOutcome::Timeout { .. } => "timeout",
            CurlOutcome::Refused { .. } => "refused",
            CurlOutcome::Reset { .. } => "reset",
            CurlOutcome::Error { .. } => "error",
        }
    }
}

/// Maps an exit code + output to an outcome.
pub fn outcome(code: i32, stdout: &str, stderr: &str) -> CurlOutcome {
    let stderr = stderr.trim_end().to_string();
    match code {
        0 => match parse_ok(stdout) {
            Some(r) => CurlOutcome::Ok(r),
            None => CurlOutcome::Error {
                code,
                stderr: format!("unparseable curl output: {stdout:?}"),
            },
        },
        28 => CurlOutcome::Timeout { stderr },
        7 => CurlOutcome::Refused { stderr },
        56 => CurlOutcome::Reset { stderr },
        _ => CurlOutcome::Error { code, stderr },
    }
}

fn parse_ok(stdout: &str) -> Option<CurlResponse> {
    let pos = stdout.rfind(&format!("\n{MARK} "))?;
    let body = stdout[..pos].to_string();
    let line = stdout[pos + 1..].lines().next()?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 7 {
        return None;
    }
    Some(CurlResponse {
        remote_ip: f[1].to_string(),
        remote_port: f[2].parse().unwrap_or(0),
        http_code: f[3].parse().ok()?,
        time_total: f[4].parse().unwrap_or(0.0),
        local_ip: f[5].to_string(),
        local_port: f[6].parse().unwrap_or(0),
        body,
    })
}

/// Runs curl in `ns` and waits for it (bounded by `max_time` + 5 s even if curl misbehaves).
/// The packets must be moved meanwhile by another thread; from a single-threaded event loop
/// use [`CurlRun`].
pub fn curl(ns: &Netns, req: &CurlRequest) -> Result<CurlOutcome> {
    let mut run = CurlRun::spawn(ns, req)?;
    loop {
        if let Some(o) = run.try_finish()? {
            return Ok(o);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A curl started in the background (for event loops): poll [`CurlRun::try_finish`].
#[derive(Debug)]
pub struct CurlRun {
    run: Running,
}

impl CurlRun {
    /// Starts curl in `ns`.
    pub fn spawn(ns: &Netns, req: &CurlRequest) -> Result<CurlRun> {
        let prog = find_program("curl")
            .ok_or_else(|| Error::Preflight("curl not found (apt-get install -y curl)".into()))?;
        let run = Running::spawn(
            ns,
            &prog.display().to_string(),
            &req.args(),
            req.max_time + Duration::from_secs(5),
        )?;
        Ok(CurlRun { run })
    }
    /// `Some(outcome)` once curl has exited.
    pub fn try_finish(&mut self) -> Result<Option<CurlOutcome>> {
        Ok(self.run.try_finish()?.map(|out| {
            outcome(
                out.status.code().unwrap_or(-1),
                &String::from_utf8_lossy(&out.stdout),
                &String::from_utf8_lossy(&out.stderr),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_exit_codes() {
        let out = format!(
            "pod x on n (10.244.1.16)\n\n{MARK} 10.244.1.16 80 200 0.001234 203.0.113.11 40312\n"
        );
        match outcome(0, &out, "") {
            CurlOutcome::Ok(r) => {
                assert_eq!(r.http_code, 200);
                assert_eq!(r.remote_ip, "10.244.1.16");
                assert_eq!(r.remote_port, 80);
                assert_eq!(r.local_port, 40312);
                assert_eq!(r.body, "pod x on n (10.244.1.16)\n");
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(outcome(28, "", "curl: (28) x\n").kind(), "timeout");
        assert_eq!(outcome(7, "", "").kind(), "refused");
        assert_eq!(outcome(56, "", "").kind(), "reset");
        assert_eq!(
            outcome(6, "", "curl: (6) no\n"),
            CurlOutcome::Error {
                code: 6,
                stderr: "curl: (6) no".into()
            }
        );
        let a = CurlRequest::get("http://1.2.3.4/").args();
        assert_eq!(
            &a[..5],
            &["-sS", "--connect-timeout", "3.000", "-m", "5.000"]
        );
        assert_eq!(a.last().unwrap(), "http://1.2.3.4/");
        assert!(!a.contains(&"-g".to_string()) && !a.contains(&"-6".to_string()));
        let v6 = CurlRequest::get("http://[fd00:10:151::11]:30080/").args();
        let n = v6.len();
        assert_eq!(
            &v6[n - 3..],
            &["-g", "-6", "http://[fd00:10:151::11]:30080/"]
        );
    }

    #[test]
    fn parses_ipv6_addresses_of_the_write_out_line() {
        let out = format!(
            "pod x on n (10.244.1.16)\n\n{MARK} fd00:10:151::11 30080 200 0.002 fd00:10:151::ff:11 40312\n"
        );
        let CurlOutcome::Ok(r) = outcome(0, &out, "") else {
            panic!("not ok");
        };
        assert_eq!(r.remote_ip, "fd00:10:151::11");
        assert_eq!(r.local_ip, "fd00:10:151::ff:11");
        assert_eq!((r.remote_port, r.local_port), (30080, 40312));
    }
}
