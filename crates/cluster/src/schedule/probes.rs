//! A Deployment's pod template, as kubelet runs it: `restartPolicy` and the containers'
//! `readinessProbe`, checked the way the apiserver validates them
//! (kubernetes/kubernetes pkg/apis/core/validation: `validateProbe`,
//! `validateHandler`) and defaulted the way it defaults them (pkg/apis/core/v1/defaults.go
//! `SetDefaults_Probe`: timeoutSeconds 1, periodSeconds 10, successThreshold 1,
//! failureThreshold 3).

use std::time::Duration;

use k8s_openapi::api::core::v1::{PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nodeport::Protocol;

use super::check_port;
use crate::error::LabError;
use crate::manifest::ManifestDoc;
use crate::model::{ProbeCheck, ReadinessProbe};

/// `restartPolicy` must be `Always` in a Deployment's template (the apiserver's
/// `ValidatePodTemplateSpecForReplicaSet`); then the first container's readinessProbe that
/// declares one.
pub(super) fn readiness_probe(
    doc: &ManifestDoc,
    pspec: &PodSpec,
    ports: &[(String, u16, Protocol)],
) -> Result<Option<ReadinessProbe>, LabError> {
    if let Some(rp) = pspec.restart_policy.as_deref() {
        if rp != "Always" {
            return Err(doc.err(
                "spec.template.spec.restartPolicy",
                format!("Unsupported value: {rp:?}: supported values: \"Always\""),
            ));
        }
    }
    let mut first = None;
    for (ci, c) in pspec.containers.iter().enumerate() {
        let Some(p) = &c.readiness_probe else {
            continue;
        };
        let field = format!("spec.template.spec.containers[{ci}].readinessProbe");
        let probe = convert(doc, &field, p, ports)?;
        first.get_or_insert(probe);
    }
    Ok(first)
}

fn convert(
    doc: &ManifestDoc,
    field: &str,
    p: &Probe,
    ports: &[(String, u16, Protocol)],
) -> Result<ReadinessProbe, LabError> {
    let handlers = [
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.exec.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => return Err(doc.err(field, "Required value: must specify a handler type")),
        1 => {}
        _ => return Err(doc.err(field, "Forbidden: may not specify more than 1 handler type")),
    }
    let check = if let Some(h) = &p.http_get {
        let path = h.path.clone().unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(doc.err(
                &format!("{field}.httpGet.path"),
                format!("{path:?} must start with '/' and contain no spaces"),
            ));
        }
        if let Some(s) = h.scheme.as_deref().filter(|s| *s != "HTTP") {
            return Err(doc.err(
                &format!("{field}.httpGet.scheme"),
                format!("{s:?} is not supported by the lab (HTTP only)"),
            ));
        }
        let port = probe_port(doc, &format!("{field}.httpGet.port"), &h.port, ports)?;
        ProbeCheck::HttpGet { path, port }
    } else if let Some(t) = &p.tcp_socket {
        let port = probe_port(doc, &format!("{field}.tcpSocket.port"), &t.port, ports)?;
        ProbeCheck::TcpSocket { port }
    } else {
        return Err(doc.err(
            field,
            "exec and grpc probes are not supported by the lab (use httpGet or tcpSocket)",
        ));
    };
    let secs = |name: &str, v: Option<i32>, default: i32, min: i32| -> Result<u32, LabError> {
        let v = v.unwrap_or(default);
        if v < min {
            return Err(doc.err(
                &format!("{field}.{name}"),
                format!("Invalid value: {v}: must be greater than or equal to {min}"),
            ));
        }
        Ok(v as u32)
    };
    let dur = |s: u32| Duration::from_secs(u64::from(s));
    Ok(ReadinessProbe {
        check,
        initial_delay: dur(secs("initialDelaySeconds", p.initial_delay_seconds, 0, 0)?),
        period: dur(secs("periodSeconds", p.period_seconds, 10, 1)?),
        timeout: dur(secs("timeoutSeconds", p.timeout_seconds, 1, 1)?),
        success_threshold: secs("successThreshold", p.success_threshold, 1, 1)?,
        failure_threshold: secs("failureThreshold", p.failure_threshold, 3, 1)?,
    })
}

/// A probe's `port`: a number in 1..=65535 or the name of a container port (an IANA_SVC_NAME
/// the containers declare; kubelet's `findPortByName`).
fn probe_port(
    doc: &ManifestDoc,
    field: &str,
    port: &IntOrString,
    ports: &[(String, u16, Protocol)],
) -> Result<u16, LabError> {
    match port {
        IntOrString::Int(v) => check_port(doc, field, *v),
        IntOrString::String(name) => ports
            .iter()
            .find(|(n, _, _)| !n.is_empty() && n == name)
            .map(|(_, p, _)| *p)
            .ok_or_else(|| {
                doc.err(
                    field,
                    format!("{name:?} names no port of the pod's containers"),
                )
            }),
    }
}
