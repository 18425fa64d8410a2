//! Processes the lab starts inside its namespaces, and stopping them by pid.
//!
//! A command enters its namespace with `setns` in a `pre_exec` hook (between fork and exec,
//! so the lab's own threads never move), drops to its [`Identity`] if it has one (client
//! tools run as `nobody`) and starts its own session, so a Ctrl-C on the lab's
//! terminal reaches the lab, which then stops its children in order. Each long-running child
//! can leave a *process record* (JSON: pid, start time, tag) in the state dir; `down()` stops
//! a recorded pid only when `/proc/<pid>` still shows the same start time and the tag in its
//! cmdline, so a recycled pid is never killed. Never `pkill`/`killall`.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::identity::Identity;
use super::netns::{raw, Netns};
use super::{io_err, Error, Result};

/// Default grace period between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// What the lab remembers about a process it started (file `<label>.proc.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// The process id.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
    pub start_time: u64,
    /// A string that must occur in `/proc/<pid>/cmdline` (e.g. the config path).
    pub tag: String,
    /// The namespace it was started in.
    pub netns: String,
    /// Human label, e.g. `nginx nginx-54f57cf6bf-xhs8g`.
    pub label: String,
}

/// Start time (field 22 of `/proc/<pid>/stat`), `None` if the process is gone.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and ')' — fields after the last ')' are fixed.
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn state_char(pid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// `true` while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(state_char(pid), Some(c) if c != 'Z' && c != 'X')
}

/// `/proc/<pid>/cmdline` with NULs as spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let b = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&b)
            .replace('\0', " ")
            .trim_end()
            .to_string(),
    )
}

impl ProcRecord {
    /// `true` if `pid` is still the very process this record describes.
    pub fn matches_live(&self) -> bool {
        alive(self.pid)
            && start_time(self.pid) == Some(self.start_time)
            && cmdline(self.pid).is_some_and(|c| c.contains(&self.tag))
    }
    /// Reads a record file.
    pub fn load(path: &Path) -> Result<ProcRecord> {
        let s = fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
        serde_json::from_str(&s)
            .map_err(|e| Error::Invalid(format!("bad process record {}: {e}", path.display())))
    }
    fn save(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(io_err(format!("mkdir {}", d.display())))?;
        }
        let s = serde_json::to_string_pretty(self).expect("record serialises");
        fs::write(path, s).map_err(io_err(format!("write {}", path.display())))
    }
}

/// Sends SIGTERM to `pid`, waits up to `grace` for it to go, then SIGKILL. Returns `true` if
/// it had to be killed with SIGKILL. The caller must have verified `pid` is ours.
pub fn terminate_pid(pid: i32, grace: Duration) -> bool {
    if !alive(pid) {
        return false;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Stops the process of a record file if (and only if) it is still the recorded process;
/// removes the record. Returns whether a process was stopped.
pub fn stop_recorded(record_path: &Path, grace: Duration) -> Result<bool> {
    let rec = match ProcRecord::load(record_path) {
        Ok(r) => r,
        Err(_) => {
            let _ = fs::remove_file(record_path);
            return Ok(false);
        }
    };
    let stopped = if rec.matches_live() {
        terminate_pid(rec.pid, grace);
        true
    } else {
        false
    };
    let _ = fs::remove_file(record_path);
    Ok(stopped)
}

/// Makes `cmd` enter `ns` (setns in pre_exec), drop to `user` (after setns, which needs
/// root) and start a new session; spawns it.
pub fn spawn_in(ns: &Netns, cmd: &mut Command, user: Option<&Identity>) -> Result<Child> {
    let file = ns.file()?;
    let fd = raw(&file);
    let user = user.cloned();
    // SAFETY: the hook only makes async-signal-safe syscalls (setns, close_range,
    // setgroups, setgid, setuid, setsid); `user` was resolved before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // What the lab starts inherits none of its descriptors (TUN devices, the state
            // lock, a caller's flock): every fd above stderr closes at exec. Best effort
            // (close_range needs Linux 5.11); stdio was set up before this hook runs.
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if let Some(u) = &user {
                u.drop_privileges()?;
            }
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(io_err(format!(
        "start {:?} in {}",
        cmd.get_program(),
        ns.name()
    )))?;
    drop(file);
    tracing::debug!(program = ?cmd.get_program(), netns = ns.name(), pid = child.id(), "process started");
    Ok(child)
}

/// A child process started and supervised by the lab; stopped (SIGTERM, then SIGKILL after
/// the grace period) on [`Supervised::stop`] or drop.
#[derive(Debug)]
pub struct Supervised {
    label: String,
    child: Child,
    record: Option<PathBuf>,
    status: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `cmd` in `ns` as root (nginx's master: it binds port 80 and runs its workers
    /// as the config's `user`). With `record = Some(path)`, writes a [`ProcRecord`] there
    /// (`tag` must occur in the process's cmdline; used by `down()` after a crash).
    pub fn spawn(
        ns: &Netns,
        label: &str,
        cmd: Command,
        record: Option<PathBuf>,
        tag: &str,
    ) -> Result<Supervised> {
        Supervised::spawn_as(ns, label, cmd, record, tag, None)
    }

    /// [`Supervised::spawn`] running as `user` (`None`: as the lab, root).
    pub fn spawn_as(
        ns: &Netns,
        label: &str,
        mut cmd: Command,
        record: Option<PathBuf>,
        tag: &str,
        user: Option<&Identity>,
    ) -> Result<Supervised> {
        let child = spawn_in(ns, &mut cmd, user)?;
        let pid = child.id() as i32;
        let mut s = Supervised {
            label: label.to_string(),
            child,
            record: None,
            status: None,
        };
        if let Some(path) = record {
            let rec = ProcRecord {
                pid,
                start_time: start_time(pid).unwrap_or(0),
                tag: tag.to_string(),
                netns: ns.name().to_string(),
                label: label.to_string(),
            };
            rec.save(&path)?;
            s.record = Some(path);
        }
        Ok(s)
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    /// The label given at spawn.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// `true` while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }
    /// Kills it at once (SIGKILL: the app crashes) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.stop(Duration::ZERO).map(|_| ())
    }
    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(io_err(format!("wait for {}", self.label)))?;
            if let Some(status) = self.status {
                tracing::debug!(label = %self.label, pid = self.pid(), %status, "process exited");
            }
        }
        Ok(self.status)
    }
    /// SIGTERM, wait up to `grace`, SIGKILL; reaps the child and removes its record.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            self.remove_record();
            return Ok(s);
        }
        let pid = Pid::from_raw(self.pid());
        tracing::debug!(label = %self.label, pid = self.pid(), "stopping process (SIGTERM)");
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(s) = self.try_wait()? {
                self.remove_record();
                return Ok(s);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let s = self
            .child
            .wait()
            .map_err(io_err(format!("wait for {}", self.label)))?;
        self.status = Some(s);
        self.remove_record();
        Ok(s)
    }
    fn remove_record(&mut self) {
        if let Some(p) = self.record.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.stop(GRACE);
    }
}

/// A short-lived command running in a namespace with captured output (e.g. curl, iperf3
/// client), killed at its deadline. Poll it with [`Running::try_finish`] from an event loop,
/// or block with [`Running::wait`].
#[derive(Debug)]
pub struct Running {
    program: String,
    child: Child,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
    deadline: Instant,
}

impl Running {
    /// Starts `program args…` in `ns` as `nobody` (a client tool:
    /// [`Identity::unprivileged`]); it is killed (SIGKILL) once `timeout` has passed.
    pub fn spawn<S: AsRef<OsStr>>(
        ns: &Netns,
        program: &str,
        args: &[S],
        timeout: Duration,
    ) -> Result<Running> {
        Running::spawn_as(ns, program, args, timeout, Some(&Identity::unprivileged()?))
    }

    /// [`Running::spawn`] as `user` (`None`: as the lab, root).
    pub fn spawn_as<S: AsRef<OsStr>>(
        ns: &Netns,
        program: &str,
        args: &[S],
        timeout: Duration,
        user: Option<&Identity>,
    ) -> Result<Running> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_in(ns, &mut cmd, user)?;
        let reader = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let out = child.stdout.take().map(|o| reader(Box::new(o)));
        let err = child.stderr.take().map(|e| reader(Box::new(e)));
        Ok(Running {
            program: program.to_string(),
            child,
            out,
            err,
            deadline: Instant::now() + timeout,
        })
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `Some(output)` once the command has exited (or was killed at its deadline).
    pub fn try_finish(&mut self) -> Result<Option<Output>> {
        let status = match self
            .child
            .try_wait()
            .map_err(io_err(format!("wait for {}", self.program)))?
        {
            Some(s) => s,
            None if Instant::now() >= self.deadline => {
                let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
                self.child
                    .wait()
                    .map_err(io_err(format!("wait for {}", self.program)))?
            }
            None => return Ok(None),
        };
        tracing::debug!(program = %self.program, pid = self.pid(), %status, "process exited");
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        Ok(Some(Output {
            status,
            stdout: join(self.out.take()),
            stderr: join(self.err.take()),
        }))
    }

    /// Blocks until the command exits (or its deadline kills it).
    pub fn wait(mut self) -> Result<Output> {
        loop {
            if let Some(o) = self.try_finish()? {
                return Ok(o);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `program args…` in `ns` as `nobody` to completion with captured output; killed
/// after `timeout`.
pub fn run_in<S: AsRef<OsStr>>(
    ns: &Netns,
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<Output> {
    Running::spawn(ns, program, args, timeout)?.wait()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_and_cmdline() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert!(alive(me));
        assert!(cmdline(me).is_some());
        let rec = ProcRecord {
            pid: me,
            start_time: start_time(me).unwrap(),
            tag: String::new(),
            netns: "nplab-x".into(),
            label: "me".into(),
        };
        assert!(rec.matches_live());
        let other = ProcRecord {
            start_time: rec.start_time + 1,
            ..rec.clone()
        };
        assert!(!other.matches_live());
    }
}
