//! `PATCH /api/services/{namespace}/{name}` as edits of the loaded config's Kubernetes
//! objects: the Service's `externalTrafficPolicy` / `sessionAffinity`, and on the
//! Deployments its selector picks, `replicas` and the pin (`nodeSelector:
//! kubernetes.io/hostname` plus a `tolerations: [{operator: Exists}]`, like the blog's second
//! manifest). Also the API's error type. Every input is checked; nothing panics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use serde_json::{json, Value};

use cluster::config::{LabConfig, HOSTNAME_LABEL};
use cluster::manifest::Object;

/// Most replicas a PATCH may ask for.
pub const MAX_REPLICAS: i64 = 50;

/// An API error: HTTP status, the offending field and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub field: String,
    pub message: String,
}

impl ApiError {
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn not_found(field: &str, value: &str, known: &[String]) -> ApiError {
        ApiError {
            status: 404,
            field: field.into(),
            message: format!("unknown {field} {value:?} (known: {})", known.join(", ")),
        }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            field: String::new(),
            message: message.into(),
        }
    }
    pub fn body(&self) -> Value {
        json!({"error": self.message, "field": self.field})
    }
}

const FIELDS: [&str; 4] = [
    "externalTrafficPolicy",
    "replicas",
    "nodeName",
    "sessionAffinity",
];

/// Applies `body` to Service `ns/name` and its Deployments in `cfg`; `original` is the config
/// as loaded (unpinning restores its tolerations), `nodes` the known node names.
pub fn apply_patch(
    cfg: &mut LabConfig,
    original: &LabConfig,
    ns: &str,
    name: &str,
    body: &Value,
    nodes: &[String],
) -> Result<(), ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad("body", "expected a JSON object"))?;
    if obj.is_empty() {
        return Err(ApiError::bad("body", format!("expected one of {FIELDS:?}")));
    }
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad(
            k,
            format!("unknown field (known: {FIELDS:?})"),
        ));
    }
    let selector = edit_service(cfg, ns, name, obj)?;
    if !obj.contains_key("replicas") && !obj.contains_key("nodeName") {
        return Ok(());
    }
    let replicas = match obj.get("replicas") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|n| (0..=MAX_REPLICAS).contains(n))
                .ok_or_else(|| ApiError::bad("replicas", format!("expected 0..={MAX_REPLICAS}")))?
                as i32,
        ),
    };
    let pin = match obj.get("nodeName") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(n)) if nodes.contains(n) => Some(Some(n.clone())),
        Some(Value::String(n)) => return Err(ApiError::not_found("nodeName", n, nodes)),
        Some(_) => return Err(ApiError::bad("nodeName", "expected a node name or null")),
    };
    let mut matched = 0;
    for doc in &mut cfg.manifests {
        let (d_ns, d_name) = (doc.object.namespace(), doc.object.name());
        let Object::Deployment(d) = &mut doc.object else {
            continue;
        };
        let Some(spec) = d.spec.as_mut() else {
            continue;
        };
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if d_ns != ns
            || selector.is_empty()
            || !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            continue;
        }
        matched += 1;
        if let Some(r) = replicas {
            spec.replicas = Some(r);
        }
        if let Some(p) = &pin {
            let pod = spec.template.spec.get_or_insert_with(Default::default);
            let orig = original_tolerations(original, &d_ns, &d_name);
            pin_pods(pod, p.as_deref(), orig);
        }
    }
    if matched == 0 {
        return Err(ApiError::bad(
            "replicas",
            format!("no Deployment in {ns} matches the selector of Service {ns}/{name}"),
        ));
    }
    Ok(())
}

/// Sets the Service fields; returns its selector.
fn edit_service(
    cfg: &mut LabConfig,
    ns: &str,
    name: &str,
    obj: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let known: Vec<String> = cfg
        .manifests
        .iter()
        .filter(|d| matches!(d.object, Object::Service(_)))
        .map(|d| format!("{}/{}", d.object.namespace(), d.object.name()))
        .collect();
    let svc = cfg
        .manifests
        .iter_mut()
        .filter(|d| d.object.is_named(ns, name))
        .find_map(|d| match &mut d.object {
            Object::Service(s) => Some(s),
            _ => None,
        })
        .ok_or_else(|| ApiError::not_found("service", &format!("{ns}/{name}"), &known))?;
    let spec = svc.spec.get_or_insert_with(Default::default);
    let choice = |field: &str, allowed: &[&str]| -> Result<Option<String>, ApiError> {
        match obj.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad(field, format!("expected one of {allowed:?}"))),
        }
    };
    if let Some(p) = choice("externalTrafficPolicy", &["Cluster", "Local"])? {
        spec.external_traffic_policy = Some(p);
    }
    if let Some(a) = choice("sessionAffinity", &["None", "ClientIP"])? {
        spec.session_affinity = Some(a);
        if spec.session_affinity.as_deref() == Some("None") {
            spec.session_affinity_config = None;
        }
    }
    Ok(spec.selector.clone().unwrap_or_default())
}

/// The tolerations Deployment `ns/name` had as loaded.
fn original_tolerations(original: &LabConfig, ns: &str, name: &str) -> Option<Vec<Toleration>> {
    let mut docs = original.manifests.iter();
    docs.find_map(|doc| match &doc.object {
        _ if !doc.object.is_named(ns, name) => None,
        Object::Deployment(d) => d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.tolerations.clone()),
        _ => None,
    })
}

/// Pins the pod template to `node` (nodeSelector hostname + an Exists toleration, so a
/// NoSchedule taint such as the control plane's does not keep it off), or unpins it
/// (`None`: the hostname selector removed, the tolerations as loaded).
fn pin_pods(
    pod: &mut k8s_openapi::api::core::v1::PodSpec,
    node: Option<&str>,
    original: Option<Vec<Toleration>>,
) {
    let selector = pod.node_selector.get_or_insert_with(Default::default);
    match node {
        Some(n) => {
            selector.insert(HOSTNAME_LABEL.to_string(), n.to_string());
            let exists = Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            };
            let tol = pod.tolerations.get_or_insert_with(Vec::new);
            if !tol.contains(&exists) {
                tol.push(exists);
            }
        }
        None => {
            selector.remove(HOSTNAME_LABEL);
            pod.tolerations = original;
        }
    }
    if selector.is_empty() {
        pod.node_selector = None;
    }
}
