//! The lab's own app servers as pod processes: `<lab> app <model> …` (agnhost netexec and
//! serve-hostname, the HTTP server of any other image), started in the pod's namespace like
//! nginx. The process binds its sockets as root (ports below 1024 included), writes a ready
//! file, then drops to `nobody`; it logs in nginx's `main` format to
//! `<state>/<pod>/<label>.access.log`, so the runner reads the logged client address the
//! same way as nginx's.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cleanup::StateDir;
use super::netns::Netns;
use super::process::{Supervised, GRACE};
use super::{io_err, Error, Result};

/// What one pod app process runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppProcSpec {
    /// Pod name.
    pub pod: String,
    /// Names its files (`app0`, `app1`, … per container).
    pub label: String,
    /// The lab binary.
    pub exe: PathBuf,
    /// Arguments after `app` (e.g. `netexec --http-port 8080 --udp-port 8081 --pod …`).
    pub args: Vec<String>,
    /// The pod's state directory.
    pub dir: PathBuf,
}

impl AppProcSpec {
    /// A spec with the pod's state in [`StateDir::pod_dir`].
    pub fn new(
        pod: &str,
        label: &str,
        exe: PathBuf,
        args: Vec<String>,
        state: &StateDir,
    ) -> Result<Self> {
        super::cleanup::safe_component(label)?;
        Ok(AppProcSpec {
            pod: pod.into(),
            label: label.into(),
            exe,
            args,
            dir: state.pod_dir(pod)?,
        })
    }
    /// `<dir>/<label>.access.log`.
    pub fn access_log(&self) -> PathBuf {
        self.dir.join(format!("{}.access.log", self.label))
    }
    /// `<dir>/<label>.ready` (written once every socket is bound).
    pub fn ready_file(&self) -> PathBuf {
        self.dir.join(format!("{}.ready", self.label))
    }
    /// `<dir>/<label>.error.log` (the process's stderr).
    pub fn error_log(&self) -> PathBuf {
        self.dir.join(format!("{}.error.log", self.label))
    }
    /// `<dir>/<label>.proc.json` (the lab's process record).
    pub fn record_file(&self) -> PathBuf {
        self.dir.join(format!("{}.proc.json", self.label))
    }
    /// The full argument list after the program.
    pub fn argv(&self) -> Vec<String> {
        let mut v = vec!["app".to_string()];
        v.extend(self.args.iter().cloned());
        v.push("--log".into());
        v.push(self.access_log().display().to_string());
        v.push("--ready".into());
        v.push(self.ready_file().display().to_string());
        v
    }
}

/// A running app process.
#[derive(Debug)]
pub struct AppProc {
    spec: AppProcSpec,
    proc: Supervised,
}

impl AppProc {
    /// Starts the app in `ns`; returns once it has bound its sockets (its ready file
    /// exists), or an error with its stderr.
    pub fn start(ns: &Netns, spec: &AppProcSpec) -> Result<AppProc> {
        fs::create_dir_all(&spec.dir).map_err(io_err(format!("mkdir {}", spec.dir.display())))?;
        let _ = fs::remove_file(spec.ready_file());
        let err = fs::File::create(spec.error_log())
            .map_err(io_err(format!("create {}", spec.error_log().display())))?;
        let mut cmd = Command::new(&spec.exe);
        cmd.args(spec.argv())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        let tag = spec.access_log().display().to_string();
        let label = format!("{} {}", spec.label, spec.pod);
        let mut proc = Supervised::spawn(ns, &label, cmd, Some(spec.record_file()), &tag)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let failed = |what: String| {
            let log = fs::read_to_string(spec.error_log()).unwrap_or_default();
            Error::Process(format!(
                "app {} of pod {} {what}; {}:\n{}",
                spec.label,
                spec.pod,
                spec.error_log().display(),
                log.trim_end()
            ))
        };
        loop {
            if let Some(status) = proc.try_wait()? {
                return Err(failed(format!("exited at start ({status})")));
            }
            if spec.ready_file().exists() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = proc.stop(GRACE);
                return Err(failed("was not ready within 5 s".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(AppProc {
            spec: spec.clone(),
            proc,
        })
    }

    pub fn spec(&self) -> &AppProcSpec {
        &self.spec
    }
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }
    /// `true` while it runs.
    pub fn running(&mut self) -> bool {
        matches!(self.proc.try_wait(), Ok(None))
    }
    /// Stops it (SIGTERM, SIGKILL after the grace period).
    pub fn stop(mut self) -> Result<()> {
        self.proc.stop(GRACE).map(|_| ())
    }
}
