//! What was read: the experiment file's shape, as serde sees it. Nothing here is checked beyond
//! types and key names; [`super::check`] turns an [`ExperimentSpec`] into an
//! [`Experiment`](super::Experiment). Sections that are "one of" (target, probe kind, stop
//! condition) are structs of options rather than serde enums so that a wrong key gets "unknown
//! key … did you mean" instead of serde's "data did not match any variant".

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::duration::Dur;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub target: TargetSpec,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSpec>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesSpec>,
    pub load: LoadSpec,
    #[serde(default)]
    pub warmup: Option<Dur>,
    #[serde(default)]
    pub sequence: Sequence,
    /// Pause between faults in `sequence: serial`.
    #[serde(default)]
    pub gap: Option<Dur>,
    /// Where `use:` finds definitions; default `faults/` beside the experiments directory.
    #[serde(default)]
    pub faults_dir: Option<PathBuf>,
    #[serde(default)]
    pub faults: Vec<FaultEntrySpec>,
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
    #[serde(default)]
    pub steady_state: Option<SteadyStateSpec>,
    #[serde(default)]
    pub stop_conditions: Vec<StopConditionSpec>,
    #[serde(default)]
    pub criteria: Option<CriteriaSpec>,
    #[serde(default)]
    pub analysis: Option<AnalysisSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The embedded sim: `{preset: NAME, <SimConfig field>: value, ...}`.
    #[serde(default)]
    pub sim: Option<Map<String, Value>>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub api: Option<Api>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How to speak TLS to an `https://` endpoint (paths relative to the file).
    #[serde(default)]
    pub tls: Option<TlsOptions>,
}

/// `tls:` keys are read straight into the TLS module's own type, the one the flags become.
pub use crate::tls::TlsOptions;

/// The API is parsed straight into the client's own type.
pub use crate::load::client::Api;

/// Hosts are parsed straight into the fault layer's own type (it is what the ledger records).
pub use crate::fault::exec::{HostSpec, SshSpec};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// A path, or `sim` for the embedded sim's API; default: the usual kubeconfig lookup.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub arrival: Option<String>,
    #[serde(default)]
    pub burstiness: Option<f64>,
    #[serde(default)]
    pub ramp_to: Option<f64>,
    #[serde(default)]
    pub steps: Option<String>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    #[serde(default)]
    pub trace: Option<PathBuf>,
    #[serde(default)]
    pub workload: Option<String>,
    #[serde(default)]
    pub corpus: Option<PathBuf>,
    #[serde(default)]
    pub duration: Option<Dur>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Connection pool: requests in flight at most (`--max-connections`; default from the rate
    /// and the timeout).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_connections: Option<usize>,
    /// A window whose dispatch-lag p99 is above this is client-limited, and a baseline or fault
    /// phase whose dispatch-lag p99 is above it makes the run invalid (`--max-dispatch-lag`;
    /// default 10ms).
    #[serde(default)]
    pub max_dispatch_lag: Option<Dur>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sequence {
    /// Every fault at its own `at`.
    #[default]
    Parallel,
    /// Each fault starts `gap` after the previous one ended; `at` is ignored after the first.
    Serial,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultEntrySpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// Kept as a value: it is merged and kind-dispatched in [`super::timeline`]. In the schema:
    /// a fault definition (the same types as `schemas/fault.schema.json`).
    #[serde(default)]
    #[schemars(with = "Option<crate::fault::FaultSpec>")]
    pub fault: Option<Map<String, Value>>,
    #[serde(default)]
    pub set: Option<Map<String, Value>>,
    #[serde(default)]
    pub at: Option<Dur>,
    #[serde(default)]
    pub duration: Option<Dur>,
    #[serde(default)]
    pub repeat: Option<RepeatSpec>,
    /// Replaces the experiment's sign-off criteria for this fault (e.g. no detection limit for
    /// a load spike, which is not a failure to detect).
    #[serde(default)]
    pub criteria: Option<CriteriaSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatSpec {
    pub times: u32,
    #[serde(default)]
    pub every: Option<Dur>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    pub name: String,
    #[serde(default)]
    pub every: Option<Dur>,
    #[serde(default)]
    pub detection: bool,
    #[serde(default)]
    pub http: Option<HttpProbe>,
    #[serde(default)]
    pub prometheus: Option<PrometheusProbe>,
    #[serde(default)]
    pub kube_ready: Option<KubeReadyProbe>,
    #[serde(default)]
    pub command: Option<CommandProbe>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub url: String,
    #[serde(default = "ok_status")]
    pub expect_status: u16,
    /// For an `https://` URL; paths relative to the experiment file.
    #[serde(default)]
    pub tls: TlsOptions,
}

impl PrometheusProbe {
    /// The Prometheus to ask: `$url_env` when it is set and not empty, else `url`.
    pub fn url(&self) -> String {
        self.url_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| self.url.clone())
    }
}

fn ok_status() -> u16 {
    200
}

#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProbe {
    pub url: String,
    /// An environment variable whose value, when set and not empty at run time, replaces `url`
    /// (so a shipped experiment names a default and each machine points it at its Prometheus).
    #[serde(default)]
    pub url_env: Option<String>,
    pub query: String,
    /// Fails when the query's value is above it; without it, fails when the query is empty.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// For an `https://` Prometheus; paths relative to the experiment file.
    #[serde(default)]
    pub tls: TlsOptions,
}

#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeReadyProbe {
    pub selector: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandProbe {
    pub host: String,
    pub run: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SteadyStateSpec {
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    #[serde(default)]
    pub max_ttft_p99: Option<Dur>,
    #[serde(default)]
    pub window: Option<Dur>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopConditionSpec {
    #[serde(default)]
    pub error_rate_above: Option<f64>,
    #[serde(default)]
    pub ttft_p99_above: Option<Dur>,
    #[serde(rename = "for")]
    pub for_: Dur,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CriteriaSpec {
    #[serde(default)]
    pub max_detection: Option<Dur>,
    #[serde(default)]
    pub max_recovery: Option<Dur>,
    #[serde(default)]
    pub max_error_rate_during: Option<f64>,
    #[serde(default)]
    pub max_ttft_p99_increase: Option<f64>,
    #[serde(default = "yes")]
    pub must_recover: bool,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    #[serde(default)]
    pub window: Option<Dur>,
    #[serde(default)]
    pub recovery_windows: Option<u32>,
    #[serde(default)]
    pub tolerance: Option<ToleranceSpec>,
    #[serde(default)]
    pub recovery_timeout: Option<Dur>,
    #[serde(default)]
    pub baseline_min: Option<Dur>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToleranceSpec {
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub ttft_p50: Option<f64>,
    #[serde(default)]
    pub ttft_p99: Option<f64>,
    #[serde(default)]
    pub throughput: Option<f64>,
}

fn yes() -> bool {
    true
}
