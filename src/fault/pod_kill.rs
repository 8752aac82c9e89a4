//! `pod-kill`: delete pods selected by namespace + label selector through the Kubernetes API.
//! Nothing to restore: recovery is the controller recreating them, watched until Ready.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Namespace; default: the experiment's kubernetes namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector, e.g. `app=vllm,role=worker`.
    pub selector: String,
    /// How many of the matching pods to delete.
    #[serde(default)]
    pub mode: KillMode,
    /// Grace period for the deletion; default: the pod's own.
    #[serde(default, with = "humantime_serde")]
    pub grace_period: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum KillMode {
    #[default]
    One,
    Count(u32),
    Percent(f64),
    All,
}
