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

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::cleanup::StateDir;
use super::netns::Netns;
use super::nginx::{Nginx, NginxSpec};
use super::process::{Supervised, GRACE};
use super::{io_err, Error, Result};

/// What a pod's container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodApp {
    /// Debian's nginx on these TCP ports.
    Nginx { ports: Vec<u16> },
    /// The lab's own app server: `<lab> app <args…>` ([`AppProc`]).
    Lab { args: Vec<String> },
}

/// The pod whose apps [`PodApps::start`] starts.
#[derive(Clone, Copy, Debug)]
pub struct AppsOf<'a> {
    pub pod: &'a str,
    pub node: &'a str,
    pub ip: Ipv4Addr,
    /// Its IPv6 address (dual-stack lab): nginx also listens on `[::]`.
    pub ipv6: Option<Ipv6Addr>,
    /// One per container; empty = nginx on 80.
    pub apps: &'a [PodApp],
}

/// The app processes of one pod: one nginx for all its nginx containers (listening on all
/// their ports), one [`AppProc`] per other container.
#[derive(Debug, Default)]
pub struct PodApps {
    nginx: Option<Nginx>,
    procs: Vec<AppProc>,
}

impl PodApps {
    /// Starts the pod's apps in `ns` (after stopping whatever still runs); `exe` runs the
    /// [`PodApp::Lab`] ones (`None`: this process's executable).
    pub fn start(
        &mut self,
        ns: &Netns,
        of: &AppsOf,
        state: &StateDir,
        exe: Option<&Path>,
    ) -> Result<()> {
        self.stop();
        let default = [PodApp::Nginx { ports: vec![80] }];
        let apps = if of.apps.is_empty() {
            &default[..]
        } else {
            of.apps
        };
        let mut nginx_ports = Vec::new();
        for a in apps {
            if let PodApp::Nginx { ports } = a {
                nginx_ports.extend(ports.iter().copied());
            }
        }
        if apps.iter().any(|a| matches!(a, PodApp::Nginx { .. })) {
            let mut spec = NginxSpec::new(of.pod, of.node, of.ip, state)?;
            spec.ports = nginx_ports;
            spec.ipv6 = of.ipv6;
            self.nginx = Some(Nginx::start(ns, &spec)?);
        }
        for (i, app) in apps.iter().enumerate() {
            let PodApp::Lab { args } = app else { continue };
            let exe = match exe {
                Some(e) => e.to_path_buf(),
                None => std::env::current_exe()
                    .map_err(io_err("find the lab's own executable".to_string()))?,
            };
            let spec = AppProcSpec::new(of.pod, &format!("app{i}"), exe, args.clone(), state)?;
            self.procs.push(AppProc::start(ns, &spec)?);
        }
        Ok(())
    }

    /// Stops every app process (the containers exit).
    pub fn stop(&mut self) {
        if let Some(n) = self.nginx.take() {
            let _ = n.stop();
        }
        for a in self.procs.drain(..) {
            let _ = a.stop();
        }
    }

    /// `true` while there are apps and every one of their processes runs.
    pub fn running(&mut self) -> bool {
        let any = self.nginx.is_some() || !self.procs.is_empty();
        any && self.nginx.as_mut().is_none_or(Nginx::running)
            && self.procs.iter_mut().all(AppProc::running)
    }

    /// `true` if the pod has app processes (started, crashed or not).
    pub fn is_empty(&self) -> bool {
        self.nginx.is_none() && self.procs.is_empty()
    }

    /// Kills every app process at once (SIGKILL: the containers crash) and reaps them.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(n) = &mut self.nginx {
            n.kill()?;
        }
        for a in &mut self.procs {
            a.kill()?;
        }
        Ok(())
    }

    /// Starts the exited apps again with the same files (kubelet restarting the
    /// containers): access logs keep their lines. Returns nginx's new pid, else the first
    /// app's.
    pub fn restart(&mut self, ns: &Netns) -> Result<Option<i32>> {
        if let Some(old) = self.nginx.take() {
            self.nginx = Some(old.restart(ns)?);
        }
        for a in &mut self.procs {
            if !a.running() {
                let spec = a.spec.clone();
                let _ = a.kill();
                *a = AppProc::start(ns, &spec)?;
            }
        }
        Ok(self.pids().first().copied())
    }

    /// The pod's nginx, if it runs one.
    pub fn nginx(&self) -> Option<&Nginx> {
        self.nginx.as_ref()
    }

    /// The access logs (nginx's first).
    pub fn access_logs(&self) -> Vec<PathBuf> {
        let nginx = self.nginx.iter().map(|n| n.spec().access_log());
        nginx
            .chain(self.procs.iter().map(|a| a.spec().access_log()))
            .collect()
    }

    /// The pids (nginx's master first).
    pub fn pids(&self) -> Vec<i32> {
        let nginx = self.nginx.iter().map(Nginx::pid);
        nginx.chain(self.procs.iter().map(AppProc::pid)).collect()
    }
}

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
        self.proc.running()
    }
    /// Kills it at once (SIGKILL: the app crashes) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.proc.kill()
    }
    /// Stops it (SIGTERM, SIGKILL after the grace period).
    pub fn stop(mut self) -> Result<()> {
        self.proc.stop(GRACE).map(|_| ())
    }
}
