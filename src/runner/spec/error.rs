//! One error enum for everything that can be wrong with a spec file, each located at
//! `file:line:column` and quoting the offending value. Validation collects as many problems as
//! it can ([`SpecError::Many`]) so an operator fixes a file in one round, not ten.

use std::path::PathBuf;

pub use crate::yaml::Location;
use crate::yaml::YamlError;

fn hint(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!("; did you mean '{s}'?"))
        .unwrap_or_default()
}

fn listing(prefix: &str, items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({prefix}: {})", items.join(", "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: invalid YAML: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: unknown key '{key}' in {context}{}", hint(suggestion))]
    UnknownKey {
        at: Location,
        key: String,
        context: String,
        suggestion: Option<String>,
    },
    #[error("{at}: missing key '{key}' in {context}")]
    MissingKey {
        at: Location,
        key: String,
        context: String,
    },
    #[error("{at}: invalid value {value} for '{key}': {message}")]
    WrongType {
        at: Location,
        key: String,
        value: String,
        message: String,
    },
    #[error("{at}: invalid duration '{value}' for '{key}': {reason}{}",
        suggestion.as_ref().map(|s| format!("; try {s}")).unwrap_or_default())]
    BadDuration {
        at: Location,
        key: String,
        value: String,
        reason: String,
        suggestion: Option<String>,
    },
    #[error("{at}: unknown fault kind '{kind}'{} (known: {})", hint(suggestion), known.join(", "))]
    UnknownKind {
        at: Location,
        kind: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error("{at}: unknown fault definition '{name}' in {}{}{}", dir.display(), hint(suggestion), listing("available", available))]
    UnknownDefinition {
        at: Location,
        name: String,
        dir: PathBuf,
        suggestion: Option<String>,
        available: Vec<String>,
    },
    #[error("{at}: unknown host '{host}' in {used_by}{}{}", hint(suggestion), if known.is_empty() { " (the experiment has no 'hosts' section)".to_string() } else { listing("hosts", known) })]
    UnknownHost {
        at: Location,
        host: String,
        /// What refers to it, e.g. `fault 'gpu-1' (experiments/x.yaml:12:5)`.
        used_by: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error("{at}: {what} needs a 'kubernetes' section (kubeconfig, context, namespace)")]
    NoKubernetes { at: Location, what: String },
    #[error("{at}: fault '{id}' ({window}) overlaps fault '{other}' ({other_window}) on {target}")]
    Overlap {
        at: Location,
        id: String,
        window: String,
        other: String,
        other_window: String,
        target: String,
    },
    #[error("{at}: fault '{id}' {problem}")]
    OutsideLoad {
        at: Location,
        id: String,
        problem: String,
    },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<SpecError>),
}

impl SpecError {
    /// Every single problem, flattened.
    pub fn problems(&self) -> Vec<&SpecError> {
        match self {
            SpecError::Many(v) => v.iter().flat_map(SpecError::problems).collect(),
            e => vec![e],
        }
    }

    /// One error from many (none → `Ok`).
    pub fn collect(mut errors: Vec<SpecError>) -> Result<(), SpecError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(SpecError::Many(errors)),
        }
    }

    pub(crate) fn invalid(at: Location, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            at,
            message: message.into(),
        }
    }
}

impl From<YamlError> for SpecError {
    fn from(e: YamlError) -> SpecError {
        match e {
            YamlError::Io { path, source } => SpecError::Io { path, source },
            YamlError::Syntax { at, message } => SpecError::Syntax { at, message },
        }
    }
}
