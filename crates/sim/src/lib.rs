//! # sim — the lab's runtime
//!
//! Owns the pieces that make a cluster run in one process:
//! - [`host`]: embedded hosts on smoltcp running a pod's apps and/or the curl-like client
//!   (curl's outcomes and messages).
//! - [`apps`]: the pods' apps (nginx, agnhost netexec and serve-hostname, a generic HTTP
//!   server) on their container ports, TCP and UDP, access log in nginx's `main` format.
//! - [`udp`]: the client's UDP side: one datagram from a fixed or ephemeral source port, then
//!   the answer, a timeout or an ICMP error ([`World::start_udp`]).
//! - [`clock`]: the virtual wall clock used for `$time_local` and `Date`.
//! - [`world`]: the [`World`]: nodes ([`nodestack::Node`]), the router and load balancer
//!   ([`vswitch::Router`]), segments, and the edge ports (pods and clients, embedded or
//!   external such as TUN devices) — driven by a virtual clock (idle time jumps to the next
//!   deadline) or by the caller's wall clock through [`World::poll`].
//!
//! Not here: configuration files, Kubernetes objects, scheduling and reports (the `lab`
//! crate); kube-proxy decisions (`nodeport`); the per-node hook order (`nodestack`).
//!
//! ```no_run
//! use sim::{World, WorldSpec, NodeDesc, ClientDesc, PodDesc, Attachment, RequestOpts};
//! let spec = WorldSpec {
//!     node_network: "10.151.30.0/24".parse().unwrap(),
//!     router_ip: "10.151.30.1".parse().unwrap(),
//!     nodes: vec![NodeDesc::new("master", "10.151.30.11".parse().unwrap(), "10.244.0.0/24".parse().unwrap())],
//!     clients: vec![ClientDesc {
//!         name: "browser".into(),
//!         ip: "203.0.113.11".parse().unwrap(),
//!         attach: Attachment::External { can_reach: vec!["master".into()] },
//!         ipv6: None,
//!     }],
//!     pods: vec![PodDesc { name: "nginx-1".into(), ip: "10.244.0.5".parse().unwrap(), ipv6: None, node: "master".into(), apps: vec![] }],
//!     ..WorldSpec::default()
//! };
//! let mut world = World::new(spec).unwrap();
//! // world.set_services(&services, &slices);
//! let out = world
//!     .request("browser", "10.151.30.11:32761".parse::<std::net::SocketAddr>().unwrap(), RequestOpts::default())
//!     .unwrap();
//! println!("{out}");
//! ```

pub mod apps;
pub mod clock;
pub mod host;
pub mod udp;
pub mod world;

pub use apps::{AppDesc, AppKind, AppsHandle};
pub use clock::WallClock;
pub use host::{
    AccessJournal, AccessLog, AccessLogEntry, ClientHandle, Host, HostConfig, OutcomeKind,
    RequestId, RequestOpts, RequestOutcome, ServerInfo, LINUX_CONNECT_TIMEOUT,
};
pub use udp::UdpOpts;
pub use world::{
    Attachment, ClientDesc, FabricEvent, HealthCheckSpec, HealthEvent, LbDesc, NodeDesc, PodDesc,
    SimError, TraceEvent, World, WorldSpec,
};
