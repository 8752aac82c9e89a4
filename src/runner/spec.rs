//! Experiment and fault-definition files: read, checked, and explained — before anything runs.
//!
//! SREs point faultline at production, so a bad file must be refused up front with a message
//! that names `file:line:column`, quotes the offending value and suggests the fix when one is
//! obvious ("unknown key 'durtion' … did you mean 'duration'?"). "Parse, don't validate":
//! [`raw::ExperimentSpec`] is what was read; [`Experiment`] is checked and ready, with the fault
//! timeline flattened, repeats expanded and `use:`s resolved.
//!
//! **YAML crate: `saphyr`** (the maintained YAML 1.2 successor of yaml-rust/yaml-rust2; serde_yaml
//! is deprecated). We use its *marked* tree (every node and key has a line and column) instead of
//! a serde front end such as serde_yaml_ng or serde-saphyr, because serde loses positions exactly
//! where we need them: inside the kind-tagged fault enum (serde buffers it), in values merged
//! from two files (`use` + `set`), and for semantic errors that serde never sees (unknown host,
//! overlap). So the tree is converted to a `serde_json::Value`, serde errors carry their key
//! path (`serde_path_to_error`), and every error — syntax, unknown key, wrong type, semantic — is
//! located by looking that path up in the tree ([`yaml`], [`de`]). YAML 1.2 also means `no`,
//! `on` and `off` are strings, not booleans. Duplicate keys are an error.
//!
//! Durations are humantime strings (`30s`, `2m`, `1h30m`); a bare number is refused, because
//! nobody can tell whether `30` meant seconds.

// A `SpecError` is big (a location, the value, a hint), and is only built on the once-per-run
// cold path of reading a file; boxing it everywhere would buy nothing.
#![allow(clippy::result_large_err)]

mod check;
mod de;
mod error;
mod fault;
mod limits;
mod model;
mod plan;
pub mod raw;
mod sections;
mod suggest;
mod timeline;
// The YAML tree lives outside the runner (others read YAML too); `super::yaml` keeps working.
use crate::yaml;

use std::path::Path;

pub use error::{Location, SpecError};
pub use fault::{RawDefinition, load_fault_definition, with_overrides};
pub use model::*;
pub use plan::{describe_fault, plan};
pub use suggest::closest;
pub use timeline::DEFAULT_GAP;

/// Reads and checks an experiment file (and the fault definitions it `use`s).
pub fn load_experiment(path: &Path) -> Result<Experiment, SpecError> {
    check::check(&yaml::Doc::read(path)?)
}

/// A checked file of either sort.
#[derive(Debug, Clone)]
pub enum Validated {
    Experiment(Box<Experiment>),
    FaultDefinition(FaultDefinition),
}

/// Checks a file, deciding what it is by where it lives (a `faults/` directory) or, elsewhere,
/// by content (a top-level `kind` key makes it a fault definition).
pub fn validate_file(path: &Path) -> Result<Validated, SpecError> {
    let in_faults = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "faults");
    let doc = yaml::Doc::read(path)?;
    let has_kind = doc.root.get(&[yaml::Seg::key("kind")]).is_some();
    if in_faults || has_kind {
        load_fault_definition(path).map(Validated::FaultDefinition)
    } else {
        check::check(&doc).map(|e| Validated::Experiment(Box::new(e)))
    }
}

/// A YAML text as the loader sees it, as JSON (for schema checks and tooling).
pub fn yaml_to_json(text: &str) -> Result<serde_json::Value, SpecError> {
    Ok(yaml::to_json(text)?)
}
