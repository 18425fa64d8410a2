//! The real-mode packet loop on tokio instead of `host::driver::Driver`'s poll(2): for the
//! measurement the design asks for (does the packet loop belong on the runtime?). Selected
//! with `LAB_LOOP=tokio` in the environment of `lab up`; the default stays the dedicated
//! thread with poll(2) (README, "Real mode vs the kernel", has the A/B figures).
//!
//! Same contract as the driver: wake on any readable fd (TUN ports, the supervisor's
//! SIGCHLD fd) or at the fabric's deadline (at most [`host::driver::MAX_IDLE`] apart), call
//! the fabric, which drains every port until `EAGAIN`. tokio's readiness is edge-style
//! (cleared by the reader), so every fd's readiness is cleared before each fabric call:
//! whatever arrives after that sets it again.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use host::driver::MAX_IDLE;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Runs `fabric` (now since `epoch` → next deadline) until `stop()` on a current-thread
/// tokio runtime on this thread.
pub fn run(
    fds: &[RawFd],
    epoch: Instant,
    mut fabric: impl FnMut(Duration) -> Option<Duration>,
    mut stop: impl FnMut() -> bool,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(async {
        let afds = fds
            .iter()
            // SAFETY: the fds are the RealRun's TUN ports and the supervisor's wake fd,
            // which stay open (same descriptions) for the whole loop; the AsyncFds are
            // dropped when it ends.
            .map(|&fd| {
                unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    .map_err(io::Error::from)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut next = fabric(epoch.elapsed());
        while !stop() {
            let wait = next
                .map(|d| d.saturating_sub(epoch.elapsed()))
                .unwrap_or(MAX_IDLE)
                .min(MAX_IDLE);
            if !wait.is_zero() {
                let any =
                    futures_util::future::select_all(afds.iter().map(|f| f.readable().boxed()));
                let _ = tokio::time::timeout(wait, any).await;
            }
            for f in &afds {
                if let Some(Ok(mut g)) = f.readable().now_or_never() {
                    g.clear_ready();
                }
            }
            next = fabric(epoch.elapsed());
        }
        Ok(())
    })
}

/// `true` when `LAB_LOOP=tokio` asks for this loop.
pub fn wanted() -> bool {
    std::env::var("LAB_LOOP").as_deref() == Ok("tokio")
}
