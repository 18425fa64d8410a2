//! The one error type for bad lab input. Every message names the file, the field path and
//! the offending value, e.g.
//! `lab-configs/x.yaml: plan[2].to: unknown node "ydzs-node9" (known: ydzs-master, …)`.

use std::path::Path;

/// A problem with a lab config or one of its manifests (the CLI exits with code 2).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML or a schema mismatch (unknown field, wrong type). `message` comes from
    /// the YAML parser and includes the field path and `at line L column C`.
    #[error("{file}: {message}")]
    Yaml {
        file: String,
        message: String,
        /// 1-based line/column when the parser knows it.
        line: Option<usize>,
        column: Option<usize>,
    },
    /// A semantically invalid value.
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

impl LabError {
    pub fn invalid(file: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        LabError::Invalid {
            file: file.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn yaml(file: &str, err: &serde_yaml_ng::Error) -> Self {
        let loc = err.location();
        LabError::Yaml {
            file: file.to_string(),
            message: err.to_string(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
        }
    }

    pub fn io(file: &str, source: std::io::Error) -> Self {
        LabError::Io {
            file: file.to_string(),
            source,
        }
    }
}

/// How a path is shown in messages: as given (relative paths stay relative).
pub fn display_path(p: &Path) -> String {
    p.display().to_string()
}
