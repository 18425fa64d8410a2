//! The live lab behind `lab serve`: the edited lab config, the cluster built from it and the
//! world running it (embedded, or the real-mode lab of [`super::real`]), plus the requests
//! sent so far and the links captured for pcap downloads.
//!
//! A Service change edits the Service/Deployment objects of the loaded config and rebuilds
//! the cluster with the same scheduling → EndpointSlice code as a config file
//! ([`cluster::schedule::build_cluster`]). The running world is then brought to it as the
//! cluster would (like a `scale:` plan entry): pods that appear start first, every node's
//! kube-proxy syncs the new Services and EndpointSlices ([`sim::World::set_services`]),
//! then pods that went away are deleted (in real mode: pod namespaces with their nginx
//! started and stopped while the lab runs). Conntrack, access logs, captures and the
//! request history stay. Only when the change would readdress a client (a pod client's
//! address follows the Deployment pods of its node) is the embedded world rebuilt
//! (`"reset": true` in the answer); real mode refuses that change (409).

use std::time::Duration;

use serde_json::{json, Value};

use super::edit::{apply_patch, ApiError};
use super::pcap::Captures;
use super::real::{RealBackend, Sent};
use crate::report::{self, RequestResult};
use cluster::config::LabConfig;
use cluster::{ClientAttach, Cluster, PlanStep, Target};

/// Requests one POST may send.
pub const MAX_COUNT: u64 = 100;
/// curl `--connect-timeout` when the request names none (seconds).
pub const DEFAULT_CONNECT_TIMEOUT: f64 = 3.0;

/// What runs the cluster.
enum Backend {
    /// The embedded world on its virtual clock; `mark` is its access-journal position.
    Embedded { world: Box<sim::World>, mark: usize },
    /// The real-mode lab.
    Real(Box<RealBackend>),
}

/// See the module docs.
pub struct LiveLab {
    original: LabConfig,
    cfg: LabConfig,
    cluster: Cluster,
    backend: Backend,
    captures: Captures,
    requests: Vec<Value>,
    diagrams: Vec<String>,
    /// Configuration generation (bumped by every applied PATCH).
    generation: u64,
}

impl LiveLab {
    /// Embedded mode.
    pub fn new(cfg: LabConfig) -> anyhow::Result<LiveLab> {
        let cluster = cluster::schedule::build_cluster(cfg.clone())?;
        let world = new_world(&cluster)?;
        LiveLab::with(
            cfg,
            cluster,
            Backend::Embedded {
                world: Box::new(world),
                mark: 0,
            },
        )
    }

    /// Real mode: brings the lab up (root; see [`RealBackend::up`]). Tear it down with
    /// [`LiveLab::shutdown`].
    pub fn new_real(cfg: LabConfig) -> anyhow::Result<LiveLab> {
        let cluster = cluster::schedule::build_cluster(cfg.clone())?;
        // Ctrl-C / SIGTERM while the namespaces come up: noted, and the lab is torn down
        // once up instead of the process dying half-way (the server's own signal handling
        // comes later and chains to this one).
        host::cleanup::install_stop_handler().map_err(|e| anyhow::anyhow!("{e}"))?;
        let real = RealBackend::up(&cluster)?;
        if host::cleanup::stop_requested() {
            let down = real.shutdown()?;
            anyhow::bail!("interrupted while the lab came up ({down})");
        }
        LiveLab::with(cfg, cluster, Backend::Real(Box::new(real)))
    }

    fn with(cfg: LabConfig, cluster: Cluster, mut backend: Backend) -> anyhow::Result<LiveLab> {
        let captures = Captures::start(backend.world_mut())?;
        Ok(LiveLab {
            original: cfg.clone(),
            cfg,
            cluster,
            backend,
            captures,
            requests: Vec::new(),
            diagrams: Vec::new(),
            generation: 0,
        })
    }

    /// `"embedded"` or `"real"`.
    pub fn mode(&self) -> &'static str {
        match self.backend {
            Backend::Embedded { .. } => "embedded",
            Backend::Real(_) => "real",
        }
    }

    /// Real mode: drives the fabric for `d` (the server's pump thread calls it between API
    /// calls); embedded mode: nothing to do. `false` once it cannot run any more.
    pub fn pump(&mut self, d: Duration) -> bool {
        match &mut self.backend {
            Backend::Embedded { .. } => false,
            Backend::Real(r) => match r.run_for(d) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("lab serve: the fabric stopped: {e:#}");
                    false
                }
            },
        }
    }

    /// Real mode: tears the lab down and says what was removed; embedded: `None`.
    pub fn shutdown(self) -> anyhow::Result<Option<String>> {
        match self.backend {
            Backend::Embedded { .. } => Ok(None),
            Backend::Real(r) => r.shutdown().map(Some),
        }
    }

    fn world(&self) -> &sim::World {
        self.backend.world()
    }

    /// `GET /api/pcap/{link}`: the link's capture so far.
    pub fn pcap(&self, link: &str) -> Result<Vec<u8>, ApiError> {
        self.captures
            .file(link)
            .ok_or_else(|| ApiError::not_found("link", link, &self.captures.names()))
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// `GET /api/state`: the `--json` field names (nodes, services, pods) plus clients, the
    /// load balancer, access logs and the virtual clock.
    pub fn state(&self) -> Value {
        let c = &self.cluster;
        let mut v = report::cluster_json(c);
        v["scenario"] = c.scenario.clone().into();
        v["mode"] = self.mode().into();
        v["description"] = c.description.clone().into();
        v["generation"] = self.generation.into();
        v["virtual_time_ms"] = match self.backend {
            Backend::Embedded { .. } => (self.world().now().as_millis() as u64).into(),
            Backend::Real(_) => Value::Null,
        };
        v["links"] = self.captures.json();
        if let Some(services) = v["services"].as_array_mut() {
            for (s, j) in c.services.iter().zip(services.iter_mut()) {
                j["session_affinity"] = match s.session_affinity {
                    nodeport::SessionAffinity::None => "None",
                    _ => "ClientIP",
                }
                .into();
                j["replicas"] = self.pods_of(s).len().into();
            }
        }
        v["clients"] = c
            .clients
            .iter()
            .map(|cl| match &cl.attach {
                ClientAttach::External { can_reach } => json!({
                    "name": cl.name, "ip": cl.ip.to_string(), "kind": "external",
                    "can_reach": can_reach,
                }),
                ClientAttach::Pod { node } => json!({
                    "name": cl.name, "ip": cl.ip.to_string(), "kind": "pod", "node": node,
                }),
            })
            .collect();
        v["load_balancer"] = c
            .load_balancer
            .as_ref()
            .map(|lb| json!({"name": lb.name, "ip": lb.ip.to_string(), "nodes": lb.nodes}))
            .unwrap_or(Value::Null);
        v["access_logs"] = c
            .pods
            .iter()
            .map(|p| (p.name.clone(), json!(self.access_log(&p.name))))
            .collect::<serde_json::Map<_, _>>()
            .into();
        v["plan_requests"] = c
            .plan
            .iter()
            .map(|s| u64::from(s.count))
            .sum::<u64>()
            .into();
        v
    }

    /// The pods backing a service (endpoints of its slices).
    fn pods_of(&self, s: &nodeport::Service) -> Vec<&cluster::Pod> {
        let ips: Vec<_> = self
            .cluster
            .slices
            .iter()
            .filter(|sl| sl.service.namespace == s.namespace && sl.service.name == s.name)
            .flat_map(|sl| sl.endpoints.iter().map(|e| e.ip))
            .collect();
        self.cluster
            .pods
            .iter()
            .filter(|p| ips.contains(&p.ip.into()))
            .collect()
    }

    /// `POST /api/requests`: validates the body, sends the requests one after the other on
    /// the virtual clock; `emit` gets every event (request, hop, log).
    pub fn send(&mut self, body: &Value, emit: &mut dyn FnMut(Value)) -> Result<Value, ApiError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::bad("body", "expected a JSON object"))?;
        for k in obj.keys() {
            if !["client", "target", "service", "count", "connectTimeout"].contains(&k.as_str()) {
                return Err(ApiError::bad(k, "unknown field"));
            }
        }
        let step = self.step_of(obj)?;
        let dst = self
            .cluster
            .destination(&step)
            .ok_or_else(|| ApiError::bad("service", "the target has no port for this service"))?;
        let std::net::IpAddr::V4(ip) = dst.ip else {
            return Err(ApiError::bad(
                "target",
                "IPv6 requests are not served by `lab serve`",
            ));
        };
        let addr = std::net::SocketAddrV4::new(ip, dst.port);
        let mut out = Vec::new();
        for _ in 0..step.count {
            out.push(self.one(&step, addr, &dst.label, emit)?);
        }
        Ok(json!({ "requests": out }))
    }

    /// The plan step a request body describes (names checked against the cluster's).
    fn step_of(&self, obj: &serde_json::Map<String, Value>) -> Result<PlanStep, ApiError> {
        let text = |f: &str| -> Result<Option<&str>, ApiError> {
            match obj.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(ApiError::bad(f, "expected a string")),
            }
        };
        let client = text("client")?.ok_or_else(|| ApiError::bad("client", "required"))?;
        if self.cluster.client(client).is_none() {
            return Err(ApiError::not_found("client", client, &self.client_names()));
        }
        let target = text("target")?.ok_or_else(|| ApiError::bad("target", "required"))?;
        let target = self.target_of(target)?;
        let service = match text("service")? {
            Some(s) => {
                if self.cluster.service(s).is_none() {
                    let known: Vec<String> = self.service_names();
                    return Err(ApiError::not_found("service", s, &known));
                }
                s.to_string()
            }
            None => self
                .default_service()
                .ok_or_else(|| ApiError::bad("service", "the lab has no NodePort service"))?,
        };
        let count = match obj.get("count") {
            None | Some(Value::Null) => 1,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_COUNT).contains(n))
                .ok_or_else(|| ApiError::bad("count", format!("expected 1..={MAX_COUNT}")))?,
        };
        let secs = match obj.get("connectTimeout") {
            None | Some(Value::Null) => DEFAULT_CONNECT_TIMEOUT,
            Some(v) => v
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 300.0)
                .ok_or_else(|| ApiError::bad("connectTimeout", "expected seconds in (0, 300]"))?,
        };
        Ok(PlanStep {
            client: client.to_string(),
            target,
            family: nodeport::IpFamily::V4,
            service: Some(service),
            port: None,
            port_name: None,
            service_port: None,
            count: count as u32,
            path: "/".into(),
            connect_timeout: Some(Duration::from_secs_f64(secs)),
            max_time: None,
            protocol: nodeport::Protocol::Tcp,
            payload: cluster::DEFAULT_UDP_PAYLOAD.into(),
            timeout: cluster::DEFAULT_UDP_TIMEOUT,
            source_port: None,
        })
    }

    fn target_of(&self, target: &str) -> Result<Target, ApiError> {
        if self.cluster.node(target).is_some() {
            return Ok(Target::Node(target.to_string()));
        }
        match &self.cluster.load_balancer {
            Some(lb) if target == lb.name || target == "lb" => Ok(Target::LoadBalancer),
            _ => {
                let mut known: Vec<String> =
                    self.cluster.nodes.iter().map(|n| n.name.clone()).collect();
                known.extend(self.cluster.load_balancer.iter().map(|l| l.name.clone()));
                Err(ApiError::not_found("target", target, &known))
            }
        }
    }

    fn client_names(&self) -> Vec<String> {
        self.cluster
            .clients
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    fn service_names(&self) -> Vec<String> {
        self.cluster
            .services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect()
    }

    /// The first service with a NodePort (the plan's, usually).
    fn default_service(&self) -> Option<String> {
        let from_plan = self.cluster.plan.iter().find_map(|s| s.service.clone());
        from_plan.or_else(|| {
            self.cluster
                .services
                .iter()
                .find(|s| s.ports.iter().any(|p| p.node_port.is_some()))
                .map(|s| format!("{}/{}", s.namespace, s.name))
        })
    }

    /// One request (embedded: on the virtual clock; real: real curl): result, hops,
    /// explanation, diagram.
    fn one(
        &mut self,
        step: &PlanStep,
        dst: std::net::SocketAddrV4,
        label: &str,
        emit: &mut dyn FnMut(Value),
    ) -> Result<Value, ApiError> {
        let number = self.requests.len() + 1;
        let cluster = &self.cluster;
        let (sent, started) = match &mut self.backend {
            Backend::Embedded { world, mark } => {
                let started = world.now().as_millis() as u64;
                let sent = embedded_request(world, mark, cluster, step, dst, label, number)?;
                (sent, Some(started))
            }
            Backend::Real(r) => {
                let sent = r
                    .request(cluster, number, step, dst, label)
                    .map_err(|e| ApiError::internal(format!("{e:#}")))?;
                (sent, None)
            }
        };
        let Sent {
            result,
            hops,
            log_line,
        } = sent;
        let mut v = report::request_json(&result);
        let explanation = crate::explain::explain(&self.cluster, &result, &hops);
        let rows = crate::diagram::hop_rows_json(&hops, Some(&result.client));
        for (i, row) in rows.iter().enumerate() {
            emit(json!({"type": "hop", "request": number, "index": i, "hop": row}));
        }
        v["number"] = number.into();
        v["status"] = result.status.into();
        v["curl_message"] = result.curl_message.clone().into();
        v["started_ms"] = started.into();
        v["explanation"] = explanation.into();
        v["log_line"] = log_line.clone().into();
        v["hops"] = rows.into();
        if let (Some(pod), Some(line)) = (&result.pod, &log_line) {
            emit(json!({"type": "log", "request": number, "pod": pod, "line": line}));
        }
        emit(json!({"type": "request", "request": v.clone()}));
        self.diagrams.push(crate::diagram::render_svg_numbered(
            &self.cluster,
            number,
            &result,
            &hops,
        ));
        self.requests.push(v.clone());
        Ok(v)
    }

    /// The `--diagram` SVG of request `number` (1-based).
    pub fn diagram(&self, number: usize) -> Option<&str> {
        number
            .checked_sub(1)
            .and_then(|i| self.diagrams.get(i))
            .map(String::as_str)
    }

    /// Every request sent so far.
    pub fn requests(&self) -> &[Value] {
        &self.requests
    }

    /// `PATCH /api/services/{namespace}/{name}`: edit, rebuild the cluster, bring the
    /// running world to it (see the module docs). The new state, with `"reset": true` when
    /// the embedded world had to be rebuilt.
    pub fn patch(&mut self, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
        let nodes: Vec<String> = self.cluster.nodes.iter().map(|n| n.name.clone()).collect();
        let mut cfg = self.cfg.clone();
        apply_patch(&mut cfg, &self.original, ns, name, body, &nodes)?;
        let cluster = cluster::schedule::build_cluster(cfg.clone())
            .map_err(|e| ApiError::bad("body", e.to_string()))?;
        let reset = self.resync(&cluster)?;
        self.cfg = cfg;
        self.cluster = cluster;
        self.generation += 1;
        let mut state = self.state();
        state["reset"] = reset.into();
        Ok(state)
    }

    /// Brings the running world from `self.cluster` to `new` in a `scale:` entry's order
    /// (see the runner): pods that appear start, every kube-proxy syncs the new Services
    /// and EndpointSlices, then pods that went away are deleted. `true` when the embedded
    /// world was rebuilt instead (a client moved). A pod that fails to start in real mode
    /// leaves the pods changed so far in place (the answer is a 500 naming it).
    fn resync(&mut self, new: &Cluster) -> Result<bool, ApiError> {
        let old = &self.cluster;
        let added: Vec<&cluster::Pod> = new.pods.iter().filter(|p| !old.pods.contains(p)).collect();
        let removed: Vec<&cluster::Pod> =
            old.pods.iter().filter(|p| !new.pods.contains(p)).collect();
        let clients_moved = old.clients != new.clients;
        match &mut self.backend {
            Backend::Real(_) if clients_moved => {
                return Err(ApiError {
                    status: 409,
                    field: "body".into(),
                    message: "real mode cannot apply this change while the lab runs: it would \
                              readdress a pod client (its address follows the Deployment pods \
                              of its node). Stop `lab serve --real` and edit the scenario, or \
                              use embedded mode"
                        .into(),
                });
            }
            Backend::Embedded { .. } if clients_moved => {
                let mut world = new_world(new).map_err(|e| ApiError::internal(format!("{e:#}")))?;
                let captures = Captures::start(&mut world)
                    .map_err(|e| ApiError::internal(format!("capturing: {e}")))?;
                self.backend = Backend::Embedded {
                    world: Box::new(world),
                    mark: 0,
                };
                self.captures = captures;
                return Ok(true);
            }
            _ => {}
        }
        let (early, late) = removal_order(&added, &removed);
        for r in early {
            self.backend.remove_pod(&r.name)?;
        }
        for p in &added {
            self.backend.add_pod(new, p)?;
            self.captures
                .add_pod(self.backend.world_mut(), &p.name)
                .map_err(|e| ApiError::internal(format!("capturing pod {}: {e}", p.name)))?;
        }
        match &mut self.backend {
            Backend::Embedded { world, .. } => world.set_services(&new.services, &new.slices),
            Backend::Real(r) => r.set_services(&new.services, &new.slices),
        }
        for r in late {
            self.backend.remove_pod(&r.name)?;
        }
        Ok(false)
    }

    /// `GET /api/conntrack/{node}`.
    pub fn conntrack(&self, node: &str) -> Result<Value, ApiError> {
        self.check_node(node)?;
        Ok(json!({"node": node, "entries": self.world().conntrack(node)}))
    }

    /// `GET /api/rules/{node}`: `lab rules` for the live cluster.
    pub fn rules(&self, node: &str) -> Result<String, ApiError> {
        self.check_node(node)?;
        crate::rules::node_rules(&self.cluster, node).map_err(|e| ApiError::internal(e.to_string()))
    }

    fn check_node(&self, node: &str) -> Result<(), ApiError> {
        if self.cluster.node(node).is_none() {
            let known: Vec<String> = self.cluster.nodes.iter().map(|n| n.name.clone()).collect();
            return Err(ApiError::not_found("node", node, &known));
        }
        Ok(())
    }

    /// `POST /api/plan`: the scenario's plan on a fresh world of the live cluster; the
    /// per-pod shares of `--json` plus the requests.
    pub fn run_plan(&self) -> Result<Value, ApiError> {
        if self.cluster.plan.is_empty() {
            return Err(ApiError::bad("plan", "the scenario has no plan"));
        }
        let r = crate::runner::run(&self.cluster, &crate::runner::RunOptions::default())
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        Ok(report::to_json(&r))
    }
}

/// The embedded world of a cluster with tracing on (every request is drawn).
fn new_world(cluster: &Cluster) -> anyhow::Result<sim::World> {
    let mut world = crate::setup::prepare_world(cluster, true, None)?;
    world.clear_trace();
    Ok(world)
}

impl Backend {
    fn world(&self) -> &sim::World {
        match self {
            Backend::Embedded { world, .. } => world,
            Backend::Real(r) => r.world(),
        }
    }
    fn world_mut(&mut self) -> &mut sim::World {
        match self {
            Backend::Embedded { world, .. } => world,
            Backend::Real(r) => r.world_mut(),
        }
    }
}

impl LiveLab {
    /// Pod `pod`'s access log (embedded: the world's; real: the lines read from nginx's
    /// access log file so far).
    fn access_log(&self, pod: &str) -> Vec<String> {
        match &self.backend {
            Backend::Embedded { world, .. } => world.access_log(pod),
            Backend::Real(r) => r.access_log(pod),
        }
    }
}

/// One embedded request on the virtual clock; `mark` is the access journal's position.
fn embedded_request(
    world: &mut sim::World,
    mark: &mut usize,
    cluster: &Cluster,
    step: &PlanStep,
    dst: std::net::SocketAddrV4,
    label: &str,
    number: usize,
) -> Result<Sent, ApiError> {
    let ropts = crate::plan::request_opts(step);
    let id = world
        .start_request(&step.client, dst, ropts)
        .map_err(|e| ApiError::bad("client", e.to_string()))?;
    let out = world
        .run_until_complete(id)
        .ok_or_else(|| ApiError::internal(format!("request {number} never finished")))?;
    world.poll(world.now());
    let logged = world.access_entries_since(*mark).into_iter().last();
    *mark = world.access_mark();
    let hops = world.trace_for(id);
    world.clear_trace();
    let client = cluster
        .client(&step.client)
        .ok_or_else(|| ApiError::bad("client", "unknown client"))?;
    let result = RequestResult {
        client: client.name.clone(),
        client_ip: client.ip.into(),
        target: label.to_string(),
        outcome: crate::runner::outcome_of(out.kind),
        status: out.status,
        pod: logged.as_ref().map(|(p, _)| p.clone()),
        logged_client_ip: logged.as_ref().map(|(_, e)| e.remote_addr),
        elapsed_ms: out.elapsed.as_millis() as u64,
        curl_message: (!out.message.is_empty()).then(|| out.message.clone()),
        reply: None,
    };
    Ok(Sent {
        result,
        hops,
        log_line: logged.map(|(_, e)| e.line),
    })
}

/// Removed pods split into those to delete before the added pods start (an added pod
/// takes their name or address) and those deleted after the sync.
fn removal_order<'p>(
    added: &[&cluster::Pod],
    removed: &[&'p cluster::Pod],
) -> (Vec<&'p cluster::Pod>, Vec<&'p cluster::Pod>) {
    let clashes = |r: &cluster::Pod| added.iter().any(|a| a.name == r.name || a.ip == r.ip);
    removed.iter().partition(|r| clashes(r))
}

impl Backend {
    fn add_pod(&mut self, cluster: &Cluster, p: &cluster::Pod) -> Result<(), ApiError> {
        match self {
            Backend::Embedded { world, .. } => {
                let desc = crate::setup::pod_desc(p);
                world
                    .add_pod(&desc)
                    .map_err(|e| ApiError::internal(e.to_string()))
            }
            Backend::Real(r) => r
                .add_pod(cluster, p)
                .map_err(|e| ApiError::internal(format!("{e:#}"))),
        }
    }

    fn remove_pod(&mut self, name: &str) -> Result<(), ApiError> {
        match self {
            Backend::Embedded { world, .. } => world
                .remove_pod(name)
                .map_err(|e| ApiError::internal(e.to_string())),
            Backend::Real(r) => r
                .remove_pod(name)
                .map_err(|e| ApiError::internal(format!("{e:#}"))),
        }
    }
}
