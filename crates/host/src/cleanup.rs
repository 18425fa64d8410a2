//! Lab state directory, the `up` lock, `down()`, and the Ctrl-C/SIGTERM flag.
//!
//! State lives under `/run/nplab` (tests use their own directory): one subdirectory per pod
//! (config, logs, pid file, process record) and `lab.lock`, which holds the pid of the running
//! `up`. The lock is an `flock` on that file, so it is released by the kernel when the lab dies
//! (even by `kill -9`): a lock file whose pid is dead is stale and is taken over.
//!
//! [`down`] is idempotent and safe after a crash: it stops the processes named by the process
//! records (only if `/proc` still shows the same process), then any process left inside an
//! `nplab-` namespace (workers, curl, benchmarks the lab started there), deletes the
//! namespaces, and removes the state directory.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

use super::netns;
use super::process::{alive, stop_recorded, GRACE};
use super::{io_err, nix_err, Error, Result, PREFIX, STATE_DIR};

/// The lab's state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl Default for StateDir {
    fn default() -> Self {
        StateDir::new(STATE_DIR)
    }
}

impl StateDir {
    /// A state directory at `root` (its last component must start with `nplab`, so `down`
    /// can never remove anything else).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }
    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `<root>/lab.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lab.lock")
    }
    /// `<root>/<name>`: the one place the lab builds paths in its state directory. `name`
    /// must be a single safe component ([`safe_component`]), so no name from a config, a
    /// manifest or the command line can make the lab write or read outside `root`.
    pub fn child(&self, name: &str) -> Result<PathBuf> {
        safe_component(name)?;
        Ok(self.root.join(name))
    }
    /// `<root>/<dir>/<name>`, both checked like [`StateDir::child`] (e.g. the conntrack
    /// snapshot of a node: `<root>/conntrack/<node>`).
    pub fn child_in(&self, dir: &str, name: &str) -> Result<PathBuf> {
        safe_component(name)?;
        Ok(self.child(dir)?.join(name))
    }
    /// The names the lab recorded in `<root>/<dir>/` (its files, without `.`-hidden
    /// temporaries), sorted; empty when there is no such directory.
    pub fn recorded(&self, dir: &str) -> Vec<String> {
        let Ok(d) = self.child(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
    /// `<root>/<dir>/<name>` for a `name` the lab recorded there ([`StateDir::recorded`]);
    /// any other name is refused with an error naming it and the recorded ones.
    pub fn recorded_child(&self, dir: &str, name: &str) -> Result<PathBuf> {
        let path = self.child_in(dir, name)?;
        let known = self.recorded(dir);
        if known.iter().any(|k| k == name) {
            Ok(path)
        } else {
            Err(Error::Invalid(format!(
                "{name:?} is not one the running lab recorded in {} (known: {})",
                self.root.join(dir).display(),
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
    /// `<root>/<pod>` (nginx config, logs, pid file of that pod); see [`StateDir::child`].
    pub fn pod_dir(&self, pod: &str) -> Result<PathBuf> {
        self.child(pod)
    }
    /// Creates the directory (mode 0755 whatever the umask: nginx's workers, which do not
    /// run as root, must traverse it to their pod's docroot).
    pub fn ensure(&self) -> Result<()> {
        self.check()?;
        fs::create_dir_all(&self.root).map_err(io_err(format!("mkdir {}", self.root.display())))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod 0755 {}", self.root.display())))
    }
    fn check(&self) -> Result<()> {
        let ok = self
            .root
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("nplab"));
        if ok && self.root.is_absolute() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "state dir {} must be absolute and its name start with \"nplab\"",
                self.root.display()
            )))
        }
    }
}

/// Longest file name Linux accepts (NAME_MAX).
const NAME_MAX: usize = 255;

/// Checks that `name` is one plain path component: not empty, not `.` or `..`, no `/`, no
/// NUL, at most 255 bytes. Everything the lab names in its state directory (pods, nodes,
/// process records) goes through this.
pub fn safe_component(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is a relative directory")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else if name.len() > NAME_MAX {
        Some("is longer than 255 bytes")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::Invalid(format!(
            "name {name:?} {why}: not a single file name in the lab's state directory"
        ))),
    }
}

fn flock_nb(f: &File) -> std::io::Result<bool> {
    // SAFETY: plain syscall on a valid fd.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn read_pid(f: &mut File) -> Option<i32> {
    let mut s = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Held while a lab `up` runs; released (and the file removed) on drop.
#[derive(Debug)]
pub struct LabLock {
    file: File,
    path: PathBuf,
    stale_pid: Option<i32>,
}

impl LabLock {
    /// Takes the lock or fails with [`Error::Locked`] naming the running lab's pid.
    pub fn acquire(state: &StateDir) -> Result<LabLock> {
        state.ensure()?;
        let path = state.lock_path();
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err(format!("open {}", path.display())))?;
            let got = flock_nb(&file).map_err(io_err(format!("flock {}", path.display())))?;
            let pid = read_pid(&mut file);
            if !got {
                return Err(Error::Locked {
                    pid: pid.unwrap_or(0),
                    lock: path.display().to_string(),
                });
            }
            // The file may have been removed by the previous holder between open and flock.
            let same = match (fs::metadata(&path), file.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let me = std::process::id() as i32;
            let stale_pid = pid.filter(|&p| p != me);
            if let Some(p) = stale_pid {
                if alive(p) {
                    // Alive but not holding the lock: a recycled pid; still stale.
                    tracing::debug!(
                        "lock {} names live pid {p} without holding it",
                        path.display()
                    );
                }
            }
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| writeln!(file, "{me}"))
                .map_err(io_err(format!("write {}", path.display())))?;
            return Ok(LabLock {
                file,
                path,
                stale_pid,
            });
        }
    }

    /// Pid found in a stale lock file we took over (the previous lab was killed), if any.
    pub fn stale_pid(&self) -> Option<i32> {
        self.stale_pid
    }

    /// Pid of a *running* lab holding the lock of `state`, if any (other than this process).
    pub fn holder(state: &StateDir) -> Option<i32> {
        let mut f = File::open(state.lock_path()).ok()?;
        let pid = read_pid(&mut f);
        match flock_nb(&f) {
            Ok(true) => None, // nobody holds it (our probe lock is dropped with `f`)
            _ => pid.filter(|&p| p != std::process::id() as i32),
        }
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        // Remove while still holding the lock; the fd closes after. The state dir goes too
        // if nothing else is left in it.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.flush();
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// A running lab's hold on its state: the lock, and what to clean when it stops. Releasing it
/// (explicitly, or on drop) runs [`down`] once for its state dir and namespace prefix, then
/// frees the lock. Owners declare it as their last field, so their processes stop first.
#[derive(Debug)]
pub struct Held {
    state: StateDir,
    prefix: String,
    lock: Option<LabLock>,
}

impl Held {
    /// Takes the lock of `state` and removes what a killed run with `prefix` left behind.
    pub fn acquire(state: &StateDir, prefix: &str) -> Result<Held> {
        let lock = LabLock::acquire(state)?;
        down(state, prefix)?;
        state.ensure()?;
        Ok(Held {
            state: state.clone(),
            prefix: prefix.to_string(),
            lock: Some(lock),
        })
    }
    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }
    /// Pid found in a stale lock file taken over (the previous lab was killed), if any.
    pub fn stale_pid(&self) -> Option<i32> {
        self.lock.as_ref().and_then(LabLock::stale_pid)
    }
    /// Runs [`down`] (the first time only) and frees the lock.
    pub fn release(&mut self) -> Result<DownReport> {
        let rep = if self.lock.is_some() {
            down(&self.state, &self.prefix)
        } else {
            Ok(DownReport::default())
        };
        self.lock = None;
        rep
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            eprintln!("nplab: cleanup failed: {e} (run `lab down`)");
        }
    }
}

/// What [`down`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Recorded processes stopped (nginx, servers).
    pub recorded_stopped: usize,
    /// Other processes stopped because they were inside an `nplab-` namespace.
    pub strays_stopped: usize,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Whether the state directory existed and was removed.
    pub state_removed: bool,
}

fn record_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((d, depth)) = dirs.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < 2 {
                dirs.push((p, depth + 1));
            } else if ft.is_file() && p.to_string_lossy().ends_with(".proc.json") {
                out.push(p);
            }
        }
    }
    out
}

/// Removes everything the lab created whose namespace name starts with `prefix` (normally
/// [`PREFIX`]) and the state directory `state`. Idempotent; safe after `kill -9`. Refuses
/// (with [`Error::Locked`]) while another process holds the `up` lock.
pub fn down(state: &StateDir, prefix: &str) -> Result<DownReport> {
    state.check()?;
    if !prefix.starts_with(PREFIX) {
        return Err(Error::Invalid(format!(
            "prefix {prefix:?} must start with {PREFIX:?}"
        )));
    }
    if let Some(pid) = LabLock::holder(state) {
        return Err(Error::Locked {
            pid,
            lock: state.lock_path().display().to_string(),
        });
    }
    let mut rep = DownReport::default();
    // 1. Processes we recorded (verified by start time + cmdline before signalling).
    for rec in record_files(state.root()) {
        if stop_recorded(&rec, GRACE)? {
            rep.recorded_stopped += 1;
        }
    }
    // 2. Anything still inside our namespaces (workers, curl, iperf3 started by the lab).
    let names = netns::list(prefix)?;
    let me = std::process::id() as i32;
    let mut strays = Vec::new();
    for n in &names {
        if let Ok(ns) = netns::Netns::open(n) {
            strays.extend(ns.pids().into_iter().filter(|&p| p != me));
        }
    }
    for &p in &strays {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    while strays.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in &strays {
        if alive(p) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    rep.strays_stopped = strays.len();
    // 3. Namespaces.
    for n in names {
        if netns::delete(&n)? {
            rep.namespaces.push(n);
        }
    }
    // 4. State directory; the lock file stays while this process holds it (`up` cleaning
    //    leftovers, or its own shutdown) and goes with the LabLock.
    if let Ok(rd) = fs::read_dir(state.root()) {
        let lock = state.lock_path();
        for e in rd.flatten() {
            let p = e.path();
            if p == lock {
                continue;
            }
            let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(io_err(format!("remove {}", p.display())))?;
        }
        let lock_free = match File::open(&lock) {
            Ok(f) => flock_nb(&f).unwrap_or(false),
            Err(_) => true,
        };
        if lock_free {
            let _ = fs::remove_file(&lock);
            fs::remove_dir(state.root())
                .map_err(io_err(format!("remove {}", state.root().display())))?;
            rep.state_removed = true;
        }
    }
    Ok(rep)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs SIGINT/SIGTERM handlers that set the stop flag (no SA_RESTART, so a blocking
/// poll(2) returns EINTR at once). The `up` loop polls [`stop_requested`] and then runs its
/// orderly shutdown (stop processes, `down`).
pub fn install_stop_handler() -> Result<()> {
    let act = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(sig, &act) }.map_err(nix_err(format!("sigaction({sig})")))?;
    }
    Ok(())
}

/// `true` once SIGINT or SIGTERM arrived (after [`install_stop_handler`]) or
/// [`request_stop`] was called.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sets the stop flag programmatically.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Clears the stop flag (for a new run in the same process).
pub fn reset_stop() {
    STOP.store(false, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recorded_names_are_known() {
        let root = std::env::temp_dir().join(format!("nplab-rec-{}", std::process::id()));
        let s = StateDir::new(&root);
        let dir = root.join("conntrack");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ydzs-node1"), "x").unwrap();
        fs::write(dir.join(".ydzs-node2.tmp"), "x").unwrap();
        assert_eq!(s.recorded("conntrack"), ["ydzs-node1"]);
        assert_eq!(
            s.recorded_child("conntrack", "ydzs-node1").unwrap(),
            dir.join("ydzs-node1")
        );
        for bad in ["ydzs-node2", ".ydzs-node2.tmp", "../../etc/passwd", ""] {
            let e = s.recorded_child("conntrack", bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(s.recorded("nothing-here").is_empty());
        assert!(s.recorded("../..").is_empty());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn state_dir_must_be_ours() {
        assert!(StateDir::new("/").check().is_err());
        assert!(StateDir::new("/run").check().is_err());
        assert!(StateDir::new("nplab").check().is_err());
        assert!(StateDir::new("/run/nplab").check().is_ok());
        assert!(down(&StateDir::new("/tmp"), PREFIX).is_err());
        assert!(down(&StateDir::new("/tmp/nplab-x"), "kref-").is_err());
    }

    #[test]
    fn children_stay_inside_the_state_dir() {
        let s = StateDir::new("/run/nplab");
        assert_eq!(
            s.child("nginx-54f57cf6bf-xhs8g").unwrap(),
            Path::new("/run/nplab/nginx-54f57cf6bf-xhs8g")
        );
        assert_eq!(s.child("..x").unwrap(), Path::new("/run/nplab/..x"));
        let long = "x".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "../evil",
            "../../etc/passwd",
            "a/b",
            "/etc",
            "a\0b",
            &long,
        ] {
            let e = s.child(bad).unwrap_err().to_string();
            assert!(e.contains("not a single file name"), "{bad:?}: {e}");
            assert!(s.pod_dir(bad).is_err(), "{bad:?}");
        }
        assert!(s.child_in("conntrack", "../x").is_err());
        assert!(s.child_in("..", "x").is_err());
        assert_eq!(
            s.child_in("conntrack", "ydzs-node1").unwrap(),
            Path::new("/run/nplab/conntrack/ydzs-node1")
        );
        // Whatever is accepted is a direct child of the root.
        for ok in ["a", "nginx-x", "...", "a.b", "-", "x".repeat(255).as_str()] {
            assert_eq!(s.child(ok).unwrap().parent(), Some(s.root()), "{ok:?}");
        }
    }
}
