//! Real-mode plumbing demo without the simulated cluster: one pod namespace running nginx and
//! one client namespace, joined by the trivial forwarder, until Ctrl-C / SIGTERM.
//!
//! ```text
//! sudo target/debug/examples/real_forwarder up      # stays up, prints hints
//! sudo ip netns exec nplab-cl-browser curl -sS http://10.244.1.16/
//! sudo target/debug/examples/real_forwarder down    # after a crash (kill -9)
//! ```

use std::net::Ipv4Addr;

use host::cleanup::{down, install_stop_handler, stop_requested, StateDir};
use host::driver::{Driver, Forwarder};
use host::lab::{ClientSpec, Lab, PodSpec, Role, UpOptions};
use host::PREFIX;

fn up() -> host::Result<()> {
    let pods = [PodSpec {
        name: "nginx-54f57cf6bf-xhs8g".into(),
        node: "ydzs-node1".into(),
        ip: Ipv4Addr::new(10, 244, 1, 16),
        prefix_len: 24,
        gateway: Ipv4Addr::new(10, 244, 1, 1),
        apps: Vec::new(),
        ipv6: None,
    }];
    let clients = [ClientSpec {
        name: "browser".into(),
        ip: Ipv4Addr::new(203, 0, 113, 11),
        prefix_len: 24,
        gateway: Ipv4Addr::new(203, 0, 113, 1),
        ipv6: None,
    }];
    install_stop_handler()?;
    let (lab, ports) = Lab::up(&pods, &clients, &UpOptions::default())?;
    if let Some(pid) = lab.stale_pid() {
        eprintln!("took over the stale lock of pid {pid} and removed its leftovers");
    }
    let mut fw = Forwarder::new();
    for p in ports {
        match p.role {
            Role::Pod { .. } => fw.add(Ipv4Addr::new(10, 244, 1, 0), 24, p.port),
            Role::Client => fw.add(Ipv4Addr::new(203, 0, 113, 0), 24, p.port),
        }
    }
    println!("up (pid {}); try:", std::process::id());
    for h in lab.hints() {
        println!("  {h}");
    }
    println!("  e.g. sudo ip netns exec nplab-cl-browser curl -sS http://10.244.1.16/");
    let mut driver = Driver::new(fw.fds());
    driver.run(&mut fw, |_| stop_requested())?;
    println!("stopping: forwarded {:?}", fw.stats());
    drop(fw);
    let rep = lab.shutdown()?;
    println!("down: {rep:?}");
    Ok(())
}

fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    let res = match cmd.as_str() {
        "up" => up(),
        "down" => down(&StateDir::default(), PREFIX).map(|r| println!("down: {r:?}")),
        _ => {
            eprintln!("usage: real_forwarder up|down");
            std::process::exit(2);
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
