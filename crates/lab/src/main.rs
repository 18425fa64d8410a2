//! `lab` — the nodeport-lab command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cluster::{leading_comment, load_cluster};
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
    Up {
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
        /// Start CMD (split on spaces, no shell) in the namespace of pod POD (or every pod of
        /// deployment POD) once nginx runs, e.g. `--exec 'web-w1=iperf3 -s -p 5201'`;
        /// stopped with the lab. Repeatable.
        #[arg(long, value_name = "POD=CMD")]
        exec: Vec<String>,
        /// Create a sparse file NAME of SIZE (K/M/G) in every pod's nginx html root, e.g.
        /// `--file 1g.bin=1G` (GET /1g.bin). Repeatable.
        #[arg(long, value_name = "NAME=SIZE")]
        file: Vec<String>,
    },
    /// Remove everything a lab left behind (nplab- namespaces, its processes, /run/nplab).
    /// Idempotent; safe after kill -9.
    Down,
    /// Show whether a `lab up` runs, and the nplab- namespaces with their processes.
    Status,
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
    Run {
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
    },
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
            ScenarioCommand::List => {
                let dir = configs_dir();
                let files =
                    list_configs(&dir).with_context(|| format!("listing {}", dir.display()))?;
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
            }
            ScenarioCommand::Gen(args) => {
                out.write_all(cluster::gen::scale_config(&args.spec())?.as_bytes())?;
            }
            ScenarioCommand::Show {
                scenario,
                seed,
                json,
            } => {
                let cluster = load(&scenario, seed)?;
                if json {
                    let mut v = report::cluster_json(&cluster);
                    v["scenario"] = cluster.scenario.clone().into();
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                } else {
                    report::print_cluster(&cluster, &mut out)?;
                }
            }
            ScenarioCommand::Run {
                scenario,
                json,
                trace,
                trace_request,
                seed,
                real,
                conntrack,
                pcap,
                diagram,
                count,
                connect_timeout,
            } => {
                if let Some(s) = connect_timeout.filter(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(anyhow::Error::new(LabError::invalid(
                        "command line",
                        "--connect-timeout",
                        format!("{s} is not a positive number of seconds"),
                    )));
                }
                let mut cluster = load(&scenario, seed)?;
                for step in &mut cluster.plan {
                    if let Some(n) = count {
                        step.count = step.count.min(n);
                    }
                    if step.connect_timeout.is_none() {
                        step.connect_timeout =
                            connect_timeout.map(std::time::Duration::from_secs_f64);
                    }
                }
                let opts = RunOptions {
                    json,
                    trace: trace_request.or(if trace { Some(1) } else { None }),
                    real,
                    conntrack,
                    pcap,
                    diagram,
                };
                let result = runner::run(&cluster, &opts)
                    .with_context(|| format!("running scenario {}", cluster.scenario))?;
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&report::to_json(&result))?
                    )?;
                } else {
                    report::print_human(&result, &mut out)?;
                }
            }
        },
        Command::Up {
            scenario,
            seed,
            pcap,
            mtu,
            exec,
            file,
        } => {
            let path = resolve(&scenario)?;
            let cluster = load_cluster(&path, seed)?;
            let split = |flag: &str, v: &str| -> anyhow::Result<(String, String)> {
                let (a, b) = v
                    .split_once('=')
                    .with_context(|| format!("{flag} {v:?}: expected NAME=VALUE"))?;
                Ok((a.trim().to_string(), b.trim().to_string()))
            };
            let mut extras = lab::realrun::UpExtras {
                mtu,
                ..Default::default()
            };
            for e in &exec {
                extras.exec.push(split("--exec", e)?);
            }
            for f in &file {
                let (name, size) = split("--file", f)?;
                let bytes = lab::realrun::parse_size(&size)
                    .map_err(|e| LabError::invalid("command line", "--file", e.to_string()))?;
                extras.files.push((name, bytes));
            }
            lab::realrun::up(&cluster, pcap.as_deref(), &extras, &mut out)?;
        }
        Command::Down => lab::realrun::down(&mut out)?,
        Command::Status => lab::realrun::status(&mut out)?,
        Command::Conntrack { node } => lab::realrun::conntrack(node.as_deref(), &mut out)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
