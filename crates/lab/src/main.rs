//! `lab` — the nodeport-lab command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cluster::{leading_comment, load_cluster};
use lab::progress::Bar;
use lab::report;
use lab::runner::{self, RunOptions};
use lab::LabError;

#[derive(Parser)]
#[command(
    name = "lab",
    version,
    about = "Kubernetes NodePort source-IP behaviour, reproduced in one process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scenarios: lab-configs/*.yaml.
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
    /// Bring a scenario's cluster up in real mode (root) and keep it running until Ctrl-C:
    /// pods are namespaces running nginx, clients namespaces where you run curl yourself.
    Up(UpArgs),
    /// A pod app of real mode (agnhost netexec/serve-hostname, generic HTTP), started by
    /// the lab in a pod namespace.
    #[command(hide = true)]
    App {
        #[command(subcommand)]
        app: lab::app::AppCommand,
    },
    /// Compare the lab with the Linux kernel: build the scenario with network namespaces,
    /// veth pairs, a router namespace, host-gw routes and the rules of `lab rules` loaded with
    /// iptables-restore (root), run its plan with real nginx and curl, and print lab vs
    /// kernel per plan step. Exit 0 only if every step agrees (1 if any differs).
    Verify {
        /// Scenario name (file stem in lab-configs/) or a path to a config file.
        scenario: String,
        /// Compare with the Linux kernel (the only reference so far; required).
        #[arg(long)]
        kernel: bool,
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
        /// Override the config's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Run at most N requests of each plan entry.
        #[arg(long, value_name = "N")]
        count: Option<u32>,
        /// curl --connect-timeout (seconds) for plan entries that set none, on both sides
        /// (default 3).
        #[arg(long, value_name = "SECS")]
        connect_timeout: Option<f64>,
    },
    /// Remove everything a lab left behind (nplab- namespaces, its processes, /run/nplab).
    /// Idempotent; safe after kill -9.
    Down,
    /// Show whether a `lab up` runs, and the nplab- namespaces with their processes.
    Status,
    /// Print the `iptables-save` text kube-proxy (iptables mode) would program on a
    /// scenario's node (every node when omitted), generated from the model the lab runs.
    Rules {
        /// Scenario name (file stem in lab-configs/) or a path to a config file.
        scenario: String,
        /// Node name; all nodes when omitted.
        node: Option<String>,
        /// Override the config's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Serve the lab live in a browser on 127.0.0.1 (embedded mode): send requests by
    /// clicking, change the Service, watch hops, logs and conntrack. Ctrl-C stops.
    Serve {
        /// Scenario name (file stem in lab-configs/) or a path to a config file.
        scenario: String,
        /// TCP port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Open the page with xdg-open.
        #[arg(long)]
        open: bool,
        /// Real mode (root): the lab of `lab up`, torn down when the server stops.
        #[arg(long)]
        real: bool,
        /// Override the config's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Print node conntrack tables of the running `lab up` (`conntrack -L` style).
    Conntrack {
        /// Node name; all nodes when omitted.
        node: Option<String>,
    },
}

#[derive(Subcommand)]
enum ScenarioCommand {
    /// List the scenarios with the first line of their lesson.
    List,
    /// Write a deterministic scale config to stdout (README: "Generated scale configs"), e.g.
    /// `lab scenario gen --nodes 100 --services 100 --replicas 10 --requests 1000 | lab scenario run -`.
    Gen(GenArgs),
    /// Print the cluster a scenario builds (nodes, services, pods, clients, plan) without running.
    Show {
        /// Scenario name (file stem in lab-configs/), a path to a config file, or `-` (stdin).
        scenario: String,
        /// Override the config's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// One JSON document (nodes, services, pods) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario's traffic plan and report what each client and pod saw.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Scenario name (file stem in lab-configs/) or a path to a config file.
    scenario: String,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Capture every link into DIR while the lab is up (written at Ctrl-C).
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
    /// MTU of the pods' and clients' TUN links (default 1500; up to 65535). The lab's own
    /// fabric carries any size, so this is the MTU of every path (benchmarks: 9000, 65000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(576..))]
    mtu: Option<u16>,
    /// Datapath threads (default 1): with N > 1 every TUN device gets N queues
    /// (IFF_MULTI_QUEUE), the kernel spreads flows over them, and thread k reads, forwards
    /// and writes the flows of queue k (the fabric itself runs under one lock). See README
    /// ("Datapath threads") for when it pays.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    datapath_threads: Option<u16>,
    /// Start CMD (split on spaces, no shell) in the namespace of pod POD (or every pod of
    /// deployment POD) once nginx runs, e.g. `--exec 'web-w1=iperf3 -s -p 5201'`;
    /// stopped with the lab. Repeatable.
    #[arg(long, value_name = "POD=CMD")]
    exec: Vec<String>,
    /// Create a sparse file NAME of SIZE (K/M/G) in every pod's nginx html root, e.g.
    /// `--file 1g.bin=1G` (GET /1g.bin). Repeatable.
    #[arg(long, value_name = "NAME=SIZE")]
    file: Vec<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario name (file stem in lab-configs/), a path to a config file, or `-` (stdin).
    scenario: String,
    /// One JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// Trace the first request hop by hop.
    #[arg(long)]
    trace: bool,
    /// Trace request number K (1-based; implies --trace).
    #[arg(long, value_name = "K")]
    trace_request: Option<usize>,
    /// Override the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Real mode: network namespaces, TUN, nginx and curl (root).
    #[arg(long)]
    real: bool,
    /// Print every node's conntrack table (`conntrack -L` style) after the run.
    #[arg(long)]
    conntrack: bool,
    /// Capture every link into DIR, one pcap file per link (`tcpdump -nn -r DIR/browser.pcap`).
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
    /// Draw the traced request (the first, or --trace-request K) as an SVG flow diagram.
    #[arg(long, value_name = "FILE.svg")]
    diagram: Option<PathBuf>,
    /// Run at most N requests of each plan entry (quick real-mode runs).
    #[arg(long, value_name = "N")]
    count: Option<u32>,
    /// curl --connect-timeout (seconds) for plan entries that set none (default: Linux's
    /// SYN retry span, ~127 s — free in embedded mode, real waiting with --real).
    #[arg(long, value_name = "SECS")]
    connect_timeout: Option<f64>,
    /// Explain every request in plain words, derived from its hop trace (embedded mode).
    #[arg(long)]
    explain: bool,
}

/// `./lab-configs`, else the repository's (relative to this crate).
fn configs_dir() -> PathBuf {
    let here = PathBuf::from("lab-configs");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab-configs")
}

/// A scenario name or a path to a config.
fn resolve(scenario: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(scenario);
    if p.is_file() {
        return Ok(p);
    }
    let dir = configs_dir();
    let candidate = dir.join(format!("{scenario}.yaml"));
    if candidate.is_file() {
        return Ok(candidate);
    }
    let known = list_configs(&dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect::<Vec<_>>();
    Err(anyhow::Error::new(LabError::invalid(
        &dir.display().to_string(),
        "scenario",
        format!(
            "unknown scenario {scenario:?} (known: {})",
            known.join(", ")
        ),
    )))
}

#[derive(clap::Args)]
struct GenArgs {
    #[arg(long, value_name = "N")]
    nodes: u32,
    /// NodePort Services, each with its own Deployment.
    #[arg(long, value_name = "S")]
    services: u32,
    /// Pods per Deployment.
    #[arg(long, value_name = "R")]
    replicas: u32,
    /// Requests in the plan, spread over the Services and nodes.
    #[arg(long, value_name = "Q")]
    requests: u64,
    /// externalTrafficPolicy: Cluster, Local or mixed (even Services Cluster, odd Local).
    #[arg(long, default_value = "Cluster")]
    policy: cluster::gen::GenPolicy,
    /// The config's seed (scheduling, allocation) and the plan's node choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl GenArgs {
    fn spec(&self) -> cluster::gen::GenSpec {
        cluster::gen::GenSpec {
            nodes: self.nodes,
            services: self.services,
            replicas: self.replicas,
            requests: self.requests,
            policy: self.policy,
            seed: self.seed,
        }
    }
}

/// Load a scenario by name or path; `-` reads the config from stdin (relative manifest
/// files are then relative to the current directory).
fn load(scenario: &str, seed: Option<u64>) -> anyhow::Result<cluster::Cluster> {
    if scenario == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(|e| LabError::io("<stdin>", e))?;
        return Ok(cluster::load_cluster_from_str(
            &text,
            Path::new("<stdin>"),
            seed,
        )?);
    }
    Ok(load_cluster(&resolve(scenario)?, seed)?)
}

fn list_configs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    Ok(v)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Scenario { command } => match command {
            ScenarioCommand::List => scenario_list(&mut out)?,
            ScenarioCommand::Gen(args) => {
                out.write_all(cluster::gen::scale_config(&args.spec())?.as_bytes())?;
            }
            ScenarioCommand::Show {
                scenario,
                seed,
                json,
            } => scenario_show(&scenario, seed, json, &mut out)?,
            ScenarioCommand::Run(args) => scenario_run(args, &mut out)?,
        },
        Command::Up(args) => up(args, &mut out)?,
        Command::App { app } => lab::app::main(app)?,
        Command::Verify {
            scenario,
            kernel,
            json,
            seed,
            count,
            connect_timeout,
        } => {
            let cluster = load(&scenario, seed)?;
            let args = lab::verify::VerifyArgs {
                kernel,
                json,
                count,
                connect_timeout,
            };
            lab::verify::command(&cluster, &args, &mut out)?;
        }
        Command::Rules {
            scenario,
            node,
            seed,
        } => {
            let cluster = load(&scenario, seed)?;
            write!(
                out,
                "{}",
                lab::rules::rules_text(&cluster, node.as_deref())?
            )?;
        }
        Command::Serve {
            scenario,
            port,
            open,
            real,
            seed,
        } => {
            let path = resolve(&scenario)?;
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| LabError::io(&file, e))?;
            let cfg = cluster::config::parse_config(&text, &path, seed)?;
            drop(out);
            let live = if real {
                lab::serve::live::LiveLab::new_real(cfg)?
            } else {
                lab::serve::live::LiveLab::new(cfg)?
            };
            lab::serve::serve(live, port, open)?;
        }
        Command::Down => lab::realrun::down(&mut out)?,
        Command::Status => lab::realrun::status(&mut out)?,
        Command::Conntrack { node } => {
            if let Some(n) = node.as_deref() {
                check_conntrack_node(n)?;
            }
            lab::realrun::conntrack(node.as_deref(), &mut out)?
        }
    }
    Ok(())
}

/// `lab scenario list`.
fn scenario_list(out: &mut impl Write) -> anyhow::Result<()> {
    let dir = configs_dir();
    let files = list_configs(&dir).with_context(|| format!("listing {}", dir.display()))?;
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lesson = leading_comment(&text);
            vec![
                p.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                lesson.lines().next().unwrap_or("").to_string(),
            ]
        })
        .collect();
    write!(out, "{}", report::table(&["SCENARIO", "LESSON"], &rows))?;
    Ok(())
}

/// Services whose targetPort no app of their pods listens on (stderr).
fn print_port_warnings(c: &cluster::Cluster) {
    for w in cluster::apps::port_warnings(c) {
        eprintln!("warning: {w}");
    }
}

/// `lab scenario show`.
fn scenario_show(
    scenario: &str,
    seed: Option<u64>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let cluster = load(scenario, seed)?;
    print_port_warnings(&cluster);
    if json {
        let mut v = report::cluster_json(&cluster);
        v["scenario"] = cluster.scenario.clone().into();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        report::print_cluster(&cluster, out)?;
    }
    Ok(())
}

/// `lab scenario run`: the plan played in the mode asked for, the result on stdout, a
/// progress bar on stderr when it is a terminal and the run is long.
fn scenario_run(a: RunArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(s) = a.connect_timeout.filter(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(anyhow::Error::new(LabError::invalid(
            "command line",
            "--connect-timeout",
            format!("{s} is not a positive number of seconds"),
        )));
    }
    let mut timings = lab::timings::Timings::from_env();
    let mut cluster = load(&a.scenario, a.seed)?;
    timings.mark("load");
    print_port_warnings(&cluster);
    for step in &mut cluster.plan {
        if let Some(n) = a.count {
            step.count = step.count.min(n);
        }
        if step.connect_timeout.is_none() {
            step.connect_timeout = a.connect_timeout.map(std::time::Duration::from_secs_f64);
        }
    }
    let opts = RunOptions {
        json: a.json,
        trace: a.trace_request.or(if a.trace { Some(1) } else { None }),
        real: a.real,
        conntrack: a.conntrack,
        pcap: a.pcap,
        diagram: a.diagram,
        explain: a.explain,
    };
    let mut bar = Bar::for_stderr();
    let result = runner::run_with(&cluster, &opts, &mut timings.around(&mut bar))
        .with_context(|| format!("running scenario {}", cluster.scenario))?;
    if a.json {
        report::write_json(&result, out)?;
    } else {
        report::print_human(&result, out)?;
    }
    out.flush()?;
    timings.mark("output");
    if let Some(line) = timings.line() {
        eprintln!("{line}");
    }
    Ok(())
}

/// `lab up`.
fn up(a: UpArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let path = resolve(&a.scenario)?;
    let cluster = load_cluster(&path, a.seed)?;
    let split = |flag: &str, v: &str| -> anyhow::Result<(String, String)> {
        let (a, b) = v
            .split_once('=')
            .with_context(|| format!("{flag} {v:?}: expected NAME=VALUE"))?;
        Ok((a.trim().to_string(), b.trim().to_string()))
    };
    let mut extras = lab::realrun::UpExtras {
        mtu: a.mtu,
        threads: a.datapath_threads,
        ..Default::default()
    };
    for e in &a.exec {
        extras.exec.push(split("--exec", e)?);
    }
    for f in &a.file {
        let (name, size) = split("--file", f)?;
        let bytes = lab::realrun::parse_size(&size)
            .map_err(|e| LabError::invalid("command line", "--file", e.to_string()))?;
        extras.files.push((name, bytes));
    }
    lab::realrun::up(&cluster, a.pcap.as_deref(), &extras, out)
}

/// The workspace's crates whose events `lab=LEVEL` in RUST_LOG turns on too.
const WORKSPACE_CRATES: [&str; 6] = ["cluster", "nodeport", "vswitch", "nodestack", "sim", "host"];

/// RUST_LOG with every `lab` / `lab=LEVEL` directive also applied to the workspace's
/// crates, so `RUST_LOG=lab=debug` shows scenario loading and scheduling (cluster), syncs
/// (nodestack) and real-mode processes (host) as well as the runner's spans.
fn expand_lab_directives(rust_log: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for d in rust_log.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        out.push(d.to_string());
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (t, Some(l)),
            None => (d, None),
        };
        if target == "lab" {
            out.extend(WORKSPACE_CRATES.iter().map(|c| match level {
                Some(l) => format!("{c}={l}"),
                None => c.to_string(),
            }));
        }
    }
    out.join(",")
}

/// Diagnostics for developers: `RUST_LOG=lab=debug` (or `debug`, `sim=trace`, …) writes
/// tracing spans and events to stderr. Off when RUST_LOG is unset or empty, so normal runs
/// print nothing extra.
fn init_tracing() {
    let Some(rust_log) = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return;
    };
    let directives = expand_lab_directives(&rust_log);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("warning: RUST_LOG={rust_log:?}: {e}; logging off");
        tracing_subscriber::EnvFilter::new("off")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .init();
}

/// `lab conntrack NODE` reads `<state>/conntrack/NODE` as root, so NODE must be a single
/// file name and, while a lab runs, one of the nodes it recorded; else exit 2 naming it.
fn check_conntrack_node(node: &str) -> anyhow::Result<()> {
    let state = host::StateDir::default();
    let checked = if host::LabLock::holder(&state).is_some() {
        state.recorded_child("conntrack", node).map(drop)
    } else {
        host::safe_component(node)
    };
    checked.map_err(|e| LabError::invalid("lab conntrack", "node", e.to_string()).into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `lab … | head`: a closed stdout is not an error of the lab.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            if let Some(le) = e.downcast_ref::<LabError>() {
                eprintln!("error: {le}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::expand_lab_directives;

    #[test]
    fn lab_directives_cover_the_workspace_crates() {
        assert_eq!(
            expand_lab_directives("lab=debug"),
            "lab=debug,cluster=debug,nodeport=debug,vswitch=debug,nodestack=debug,sim=debug,host=debug"
        );
        assert_eq!(
            expand_lab_directives("warn, lab ,lab::runner=trace"),
            "warn,lab,cluster,nodeport,vswitch,nodestack,sim,host,lab::runner=trace"
        );
        assert_eq!(expand_lab_directives("debug"), "debug");
        assert_eq!(expand_lab_directives("labx=debug"), "labx=debug");
    }
}
