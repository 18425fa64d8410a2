//! Noticing that a child process exited, from a poll(2) loop: a SIGCHLD handler that sets a
//! flag and writes one byte to a non-blocking self-pipe whose read end the loop polls (the
//! classic self-pipe trick). The loop then asks each supervised child with `waitpid(WNOHANG)`
//! ([`super::process::Supervised::try_wait`]) which one it was.
//!
//! Used by real mode's kubelet: an app (nginx) that dies on its own or is killed by hand is
//! noticed at once and restarted with back-off.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::{nix_err, Result};

static EXITED: AtomicBool = AtomicBool::new(false);
/// Write end of the self-pipe (-1 until [`watch`] ran).
static WAKE_W: AtomicI32 = AtomicI32::new(-1);
/// Read end (-1 until [`watch`] ran).
static WAKE_R: AtomicI32 = AtomicI32::new(-1);
/// Serialises [`watch`] (the pipe and the handler are set up once per process).
static SETUP: Mutex<()> = Mutex::new(());

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = WAKE_W.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; errno is saved and restored around it.
        unsafe {
            let errno = *libc::__errno_location();
            let b = 1u8;
            let _ = libc::write(fd, (&b as *const u8).cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
    // After the byte: a reader that sees the flag always finds the byte to drain.
    EXITED.store(true, Ordering::SeqCst);
}

/// Installs the SIGCHLD handler (once per process) and returns the fd to poll for
/// readability: it becomes readable when a child exits.
pub fn watch() -> Result<RawFd> {
    let _setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let fd = WAKE_R.load(Ordering::SeqCst);
    if fd >= 0 {
        return Ok(fd);
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(nix_err("pipe2 for SIGCHLD"))?;
    // The pipe lives as long as the process: the handler may fire at any time.
    use std::os::fd::IntoRawFd;
    let (rd, wr) = (rd.into_raw_fd(), wr.into_raw_fd());
    WAKE_W.store(wr, Ordering::SeqCst);
    let act = SigAction::new(
        SigHandler::Handler(on_sigchld),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to atomics and calls write(2) (async-signal-safe).
    unsafe { sigaction(Signal::SIGCHLD, &act) }.map_err(nix_err("sigaction(SIGCHLD)"))?;
    WAKE_R.store(rd, Ordering::SeqCst);
    Ok(rd)
}

/// `true` when a child exited since the last call (then the self-pipe is drained). Costs
/// one atomic load when nothing exited, so the packet loop may call it on every turn.
pub fn take_exited() -> bool {
    if !EXITED.swap(false, Ordering::SeqCst) {
        return false;
    }
    let fd = WAKE_R.load(Ordering::SeqCst);
    if fd >= 0 {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a local buffer from our own non-blocking pipe.
        while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
    true
}
