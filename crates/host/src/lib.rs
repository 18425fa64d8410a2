//! Real mode plumbing: network namespaces, TUN ports, real nginx/curl processes, cleanup.
//!
//! In real mode every pod is a Linux network namespace (`nplab-pod-…`) running Debian's nginx
//! and every client a namespace (`nplab-cl-…`) where real `curl` runs. The only interface of
//! each namespace is a TUN device owned by the lab process ([`vswitch::tun::TunPort`]), so
//! every packet crosses the lab's simulated nodes. Nothing here touches the root namespace's
//! addresses or routes; every namespace, state file and process the lab creates is named or
//! recorded with the `nplab-` prefix / under [`STATE_DIR`], and [`cleanup::down`] removes them.
//!
//! - [`preflight`]: root, `/dev/net/tun`, nginx, curl present? (else: use embedded mode)
//! - [`netns`]: create/delete/list named namespaces at `/run/netns/nplab-*`
//! - [`process`]: commands entered into a namespace, supervised children, stop by pid
//! - [`nginx`], [`curl`]: the pod server and the client
//! - [`app`]: the lab's own pod app servers (`lab app …`: agnhost models, generic HTTP)
//! - [`identity`]: who they run as (curl as `nobody`, nginx workers as `www-data`)
//! - [`cleanup`]: state dir, the `up` lock, `down()`, the Ctrl-C/SIGTERM flag
//! - [`childwatch`]: SIGCHLD as a pollable fd (an app that exits is noticed at once)
//! - [`driver`]: the poll(2) loop that moves packets between TUN ports and the fabric
//! - [`kernel`]: the same topology built with Linux itself (veth, bridges, routes,
//!   iptables-restore) for `lab verify --kernel`
//! - [`lab`]: `up` in one call ([`Lab`]): lock, namespaces, TUN ports, nginx
//!
//! Driving the simulated cluster (see `tests/real_world.rs` for the complete version):
//!
//! ```text
//! let (lab, ports) = Lab::up(&pods, &clients, &UpOptions::default())?;   // root only
//! let fds: Vec<RawFd> = ports.iter().map(|p| p.port.raw_fd()).collect();
//! for p in ports {
//!     match p.role {
//!         Role::Pod { node } => world.add_pod_port(&p.name, p.ip, &node, Box::new(p.port))?,
//!         Role::Client => world.add_client_port(&p.name, p.ip, &attach, Box::new(p.port))?,
//!     }
//! }
//! cleanup::install_stop_handler()?;
//! Driver::new(fds).run(&mut |now| world.poll(now), |_| cleanup::stop_requested())?;
//! lab.shutdown()?;                         // or `down(&StateDir::default(), PREFIX)` after a crash
//! ```
//!
//! Requests from the lab itself while the loop runs: start a [`CurlRun`] and poll it from the
//! driver's stop closure (single thread), or run the driver on its own thread.
//!
//! This module tree only depends on external crates (no `crate::` paths), so integration
//! tests can include it directly.

pub mod app;
pub mod childwatch;
pub mod cleanup;
pub mod curl;
pub mod driver;
pub mod identity;
pub mod kernel;
pub mod lab;
pub mod netns;
pub mod nginx;
pub mod preflight;
pub mod process;
pub mod udp;

use std::io;

/// Prefix of every namespace (and state entry) the lab creates.
pub const PREFIX: &str = "nplab-";
/// Default lab state directory (configs, logs, pid files, the `up` lock).
pub const STATE_DIR: &str = "/run/nplab";

/// Errors of real mode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Real mode cannot run on this machine (message says what is missing).
    #[error("{0}")]
    Preflight(String),
    /// Another `lab up` holds the lock.
    #[error(
        "another `lab up` is running (pid {pid}, lock {lock}); stop it first: Ctrl-C in its terminal, or `kill {pid}`"
    )]
    Locked {
        /// Pid of the running lab.
        pid: i32,
        /// Path of the lock file.
        lock: String,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// TUN creation failed.
    #[error(transparent)]
    Tun(#[from] vswitch::tun::TunError),
    /// A started process failed (message includes its stderr/log excerpt).
    #[error("{0}")]
    Process(String),
    /// Invalid argument (bad name, missing prefix, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of real mode.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub(crate) fn nix_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        source: io::Error::from(e),
    }
}

pub use cleanup::{down, safe_component, DownReport, LabLock, StateDir};
pub use curl::{curl, CurlOutcome, CurlRequest, CurlResponse, CurlRun};
pub use driver::{Driver, DriverStats, Fabric, Forwarder};
pub use identity::Identity;
pub use lab::{ClientSpec, EdgePort, Ipv6Link, Lab, PodSpec, Role, UpOptions};
pub use netns::Netns;
pub use nginx::{Nginx, NginxSpec};
pub use preflight::{preflight, Needs};
pub use process::{Running, Supervised};
