//! Kubernetes manifests: multi-document YAML parsed into real `k8s-openapi` objects.
//!
//! Owns: splitting documents, dispatching on `kind`, remembering where each object came from
//! (for error messages). Does not interpret the objects (that is [`crate::schedule`]).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde::Deserialize;

use crate::error::LabError;
use crate::names;

/// A supported Kubernetes object.
#[derive(Debug, Clone)]
pub enum Object {
    Deployment(Box<Deployment>),
    Service(Box<Service>),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
        }
    }
    /// `metadata.namespace` (default `default`).
    pub fn namespace(&self) -> String {
        let ns = match self {
            Object::Deployment(d) => d.metadata.namespace.clone(),
            Object::Service(s) => s.metadata.namespace.clone(),
        };
        ns.filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string())
    }
    /// Whether this is the object `ns/name` (namespace defaulted as in [`Object::namespace`]).
    pub fn is_named(&self, ns: &str, name: &str) -> bool {
        self.name() == name && self.namespace() == ns
    }
    pub fn name(&self) -> String {
        match self {
            Object::Deployment(d) => d.metadata.name.clone(),
            Object::Service(s) => s.metadata.name.clone(),
        }
        .unwrap_or_default()
    }
}

/// Where a document came from: the file shown in messages and the prefix of the field path
/// (`manifests[1] document 2` for inline manifests, `document 2` for manifest files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: String,
}

/// One parsed document.
#[derive(Debug, Clone)]
pub struct ManifestDoc {
    pub origin: Origin,
    pub object: Object,
}

impl ManifestDoc {
    /// An error about `field` of this object:
    /// `<file>: <document> (Service default/nginx): <field>: <message>`.
    pub fn err(&self, field: &str, message: impl Into<String>) -> LabError {
        LabError::invalid(
            &self.origin.file,
            format!(
                "{} ({} {}/{}): {}",
                self.origin.document,
                self.object.kind(),
                self.object.namespace(),
                self.object.name(),
                field
            ),
            message,
        )
    }
}

/// Parse a (multi-document) manifest text. `file` is shown in messages, `prefix` is the
/// field-path prefix (e.g. `manifests[0]`; empty for a manifest file of its own).
pub fn parse_documents(text: &str, file: &str, prefix: &str) -> Result<Vec<ManifestDoc>, LabError> {
    // Line numbers of an inline manifest count from the start of its block.
    let lines_note = if prefix.is_empty() {
        String::new()
    } else {
        format!(" (line numbers within {prefix})")
    };
    let yaml_err = |document: &str, e: serde_yaml_ng::Error| LabError::Yaml {
        file: file.to_string(),
        message: format!("{document}: {e}{lines_note}"),
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
    };
    let doc_name = |i: usize| {
        if prefix.is_empty() {
            format!("document {}", i + 1)
        } else {
            format!("{prefix} document {}", i + 1)
        }
    };
    // Pass 1: syntax and `kind`/`apiVersion` of every document.
    let mut kinds = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = doc_name(i);
        let value = serde_yaml_ng::Value::deserialize(de).map_err(|e| yaml_err(&document, e))?;
        if value.is_null() {
            kinds.push(None); // empty document (e.g. a trailing `---`)
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .map(str::to_string);
        let api = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("")
            .to_string();
        let bad =
            |field: &str, msg: String| LabError::invalid(file, format!("{document}: {field}"), msg);
        match kind.as_deref() {
            Some("Deployment") if api != "apps/v1" => {
                return Err(bad(
                    "apiVersion",
                    format!("{api:?} is not supported for kind Deployment (use \"apps/v1\")"),
                ))
            }
            Some("Service") if api != "v1" => {
                return Err(bad(
                    "apiVersion",
                    format!("{api:?} is not supported for kind Service (use \"v1\")"),
                ))
            }
            Some("Deployment") | Some("Service") => {}
            Some(other) => {
                return Err(bad(
                    "kind",
                    format!(
                        "unsupported kind {other:?} (supported: Deployment (apps/v1), Service (v1))"
                    ),
                ))
            }
            None => {
                return Err(bad(
                    "kind",
                    "missing (supported: Deployment (apps/v1), Service (v1))".to_string(),
                ))
            }
        }
        kinds.push(kind);
    }
    // Pass 2: typed deserialization straight from the text, so errors carry the field path
    // and line/column.
    let mut out = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = doc_name(i);
        let object = match kinds.get(i).cloned().flatten().as_deref() {
            Some("Deployment") => Object::Deployment(Box::new(
                Deployment::deserialize(de)
                    .map_err(|e| yaml_err(&format!("{document} (Deployment)"), e))?,
            )),
            Some("Service") => Object::Service(Box::new(
                Service::deserialize(de)
                    .map_err(|e| yaml_err(&format!("{document} (Service)"), e))?,
            )),
            _ => continue,
        };
        let doc = ManifestDoc {
            origin: Origin {
                file: file.to_string(),
                document,
            },
            object,
        };
        check_metadata(&doc)?;
        out.push(doc);
    }
    Ok(out)
}

/// `metadata` as the apiserver validates it: the name (Deployment: DNS-1123 subdomain,
/// `ValidateDeploymentName`; Service: DNS-1035 label, `ValidateServiceName`), the namespace
/// (DNS-1123 label) and the labels (qualified-name keys, label values).
fn check_metadata(doc: &ManifestDoc) -> Result<(), LabError> {
    let name = doc.object.name();
    if name.is_empty() {
        return Err(doc.err("metadata.name", "missing"));
    }
    let kind = doc.object.kind();
    let rule = match doc.object {
        Object::Deployment(_) => names::dns1123_subdomain(&name),
        Object::Service(_) => names::dns1035_label(&name),
    };
    rule.map_err(|e| {
        doc.err(
            "metadata.name",
            format!("{name:?} is not a valid {kind} name: {e}"),
        )
    })?;
    let ns = doc.object.namespace();
    names::dns1123_label(&ns).map_err(|e| {
        doc.err(
            "metadata.namespace",
            format!("{ns:?} is not a valid namespace: {e}"),
        )
    })?;
    let labels = match &doc.object {
        Object::Deployment(d) => d.metadata.labels.as_ref(),
        Object::Service(s) => s.metadata.labels.as_ref(),
    };
    if let Some(labels) = labels {
        crate::config::check_labels(labels)
            .map_err(|(k, msg)| doc.err(&format!("metadata.labels.{k}"), msg))?;
    }
    Ok(())
}
