//! The live lab behind `lab serve`: the edited lab config, the cluster built from it and the
//! embedded world running it, plus the requests sent so far.
//!
//! A Service change edits the Service/Deployment objects of the loaded config and rebuilds
//! the cluster with the same scheduling → EndpointSlice code as a config file
//! ([`cluster::schedule::build_cluster`]), then rebuilds the world from it
//! ([`crate::setup::prepare_world`]: every node's kube-proxy synced with `set_services`).
//! Rebuilding the world (rather than adding/removing pods in place) keeps one code path;
//! it forgets conntrack entries and access logs, like a fresh cluster.

use std::time::Duration;

use serde_json::{json, Value};

use super::edit::{apply_patch, ApiError};
use crate::report::{self, RequestResult};
use cluster::config::LabConfig;
use cluster::{ClientAttach, Cluster, PlanStep, Target};

/// Requests one POST may send.
pub const MAX_COUNT: u64 = 100;
/// curl `--connect-timeout` when the request names none (seconds).
pub const DEFAULT_CONNECT_TIMEOUT: f64 = 3.0;

/// See the module docs.
pub struct LiveLab {
    original: LabConfig,
    cfg: LabConfig,
    cluster: Cluster,
    world: sim::World,
    mark: usize,
    requests: Vec<Value>,
    diagrams: Vec<String>,
    /// Configuration generation (bumped by every applied PATCH).
    generation: u64,
}

impl LiveLab {
    pub fn new(cfg: LabConfig) -> anyhow::Result<LiveLab> {
        let cluster = cluster::schedule::build_cluster(cfg.clone())?;
        let world = new_world(&cluster)?;
        Ok(LiveLab {
            original: cfg.clone(),
            cfg,
            cluster,
            world,
            mark: 0,
            requests: Vec::new(),
            diagrams: Vec::new(),
            generation: 0,
        })
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
        v["mode"] = "embedded".into();
        v["description"] = c.description.clone().into();
        v["generation"] = self.generation.into();
        v["virtual_time_ms"] = (self.world.now().as_millis() as u64).into();
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
            .map(|p| (p.name.clone(), json!(self.world.access_log(&p.name))))
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
            .filter(|p| ips.contains(&p.ip))
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
        let addr = std::net::SocketAddrV4::new(dst.ip, dst.port);
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

    /// One request on the virtual clock: result, hops, explanation, diagram.
    fn one(
        &mut self,
        step: &PlanStep,
        dst: std::net::SocketAddrV4,
        label: &str,
        emit: &mut dyn FnMut(Value),
    ) -> Result<Value, ApiError> {
        let number = self.requests.len() + 1;
        let ropts = crate::plan::request_opts(step);
        let world = &mut self.world;
        let started = world.now();
        let id = world
            .start_request(&step.client, dst, ropts)
            .map_err(|e| ApiError::bad("client", e.to_string()))?;
        let out = world
            .run_until_complete(id)
            .ok_or_else(|| ApiError::internal(format!("request {number} never finished")))?;
        world.poll(world.now());
        let logged = world.access_entries_since(self.mark).into_iter().last();
        self.mark = world.access_mark();
        let hops = world.trace_for(id);
        world.clear_trace();
        let client = self
            .cluster
            .client(&step.client)
            .ok_or_else(|| ApiError::bad("client", "unknown client"))?;
        let result = RequestResult {
            client: client.name.clone(),
            client_ip: client.ip,
            target: label.to_string(),
            outcome: crate::runner::outcome_of(out.kind),
            status: out.status,
            pod: logged.as_ref().map(|(p, _)| p.clone()),
            logged_client_ip: logged.as_ref().map(|(_, e)| e.remote_addr),
            elapsed_ms: out.elapsed.as_millis() as u64,
            curl_message: (!out.message.is_empty()).then(|| out.message.clone()),
            reply: None,
        };
        let mut v = report::request_json(&result);
        let explanation = crate::explain::explain(&self.cluster, &result, &hops);
        let rows = crate::diagram::hop_rows_json(&hops, Some(&result.client));
        for (i, row) in rows.iter().enumerate() {
            emit(json!({"type": "hop", "request": number, "index": i, "hop": row}));
        }
        v["number"] = number.into();
        v["status"] = result.status.into();
        v["curl_message"] = result.curl_message.clone().into();
        v["started_ms"] = (started.as_millis() as u64).into();
        v["explanation"] = explanation.into();
        v["log_line"] = logged.as_ref().map(|(_, e)| e.line.clone()).into();
        v["hops"] = rows.into();
        if let Some((pod, e)) = &logged {
            emit(json!({"type": "log", "request": number, "pod": pod, "line": e.line}));
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

    /// `PATCH /api/services/{namespace}/{name}`: edit, rebuild, resync (see the module docs).
    pub fn patch(&mut self, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
        let nodes: Vec<String> = self.cluster.nodes.iter().map(|n| n.name.clone()).collect();
        let mut cfg = self.cfg.clone();
        apply_patch(&mut cfg, &self.original, ns, name, body, &nodes)?;
        let cluster = cluster::schedule::build_cluster(cfg.clone())
            .map_err(|e| ApiError::bad("body", e.to_string()))?;
        let world = new_world(&cluster).map_err(|e| ApiError::internal(format!("{e:#}")))?;
        self.cfg = cfg;
        self.cluster = cluster;
        self.world = world;
        self.mark = 0;
        self.generation += 1;
        Ok(self.state())
    }

    /// `GET /api/conntrack/{node}`.
    pub fn conntrack(&self, node: &str) -> Result<Value, ApiError> {
        self.check_node(node)?;
        Ok(json!({"node": node, "entries": self.world.conntrack(node)}))
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
