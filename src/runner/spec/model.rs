//! What is ready to run: an [`Experiment`] holds only checked values (parsed schedule and
//! workload, resolved sim config, hosts that exist, a flat time-sorted fault timeline), so the
//! runner never re-validates and never meets a half-valid file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::fault::FaultSpec;
use crate::load::schedule::Schedule;
use crate::load::workload::Workload;
use crate::sim::SimConfig;

use super::error::Location;
pub use super::raw::{
    Api, CommandProbe, HostSpec as Host, HttpProbe, KubeReadyProbe, PrometheusProbe, Sequence,
    SshSpec, TlsOptions,
};

#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub description: Option<String>,
    /// The file it was read from.
    pub source: PathBuf,
    pub target: Target,
    pub hosts: BTreeMap<String, Host>,
    pub kubernetes: Option<Kubernetes>,
    pub load: Load,
    /// Discarded from the baseline; no fault may start inside it.
    pub warmup: Duration,
    pub sequence: Sequence,
    /// Every fault occurrence, repeats expanded, `use`s resolved, sorted by `at`.
    pub timeline: Vec<ScheduledFault>,
    pub probes: Vec<Probe>,
    pub steady_state: Option<SteadyState>,
    pub stop_conditions: Vec<StopCondition>,
    pub criteria: Criteria,
    pub analysis: Analysis,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The embedded simulated cluster, with the preset's config and the file's overrides applied.
    Sim {
        preset: String,
        config: SimConfig,
        api: Api,
        timeout: Option<Duration>,
    },
    Endpoint {
        url: String,
        model: String,
        api: Api,
        timeout: Option<Duration>,
        /// Name of the environment variable holding the API key (read at run time).
        api_key_env: Option<String>,
        headers: BTreeMap<String, String>,
        /// Paths resolved against the experiment file and checked.
        tls: TlsOptions,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kubeconfig {
    /// The usual lookup (`$KUBECONFIG`, `~/.kube/config`, in-cluster).
    Default,
    /// The embedded sim's Kubernetes-compatible API.
    Sim,
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubernetes {
    pub kubeconfig: Kubeconfig,
    pub context: Option<String>,
    /// `None`: the context's namespace (in-cluster: the service account's), else `default`.
    pub namespace: Option<String>,
}

impl Kubernetes {
    /// How to reach the cluster (`None` for the embedded sim, whose kubeconfig exists only once
    /// the run starts it). Reads no file and opens no connection.
    pub fn resolve(
        &self,
    ) -> Option<
        Result<crate::fault::kube_target::KubeSpec, crate::fault::kube_target::KubeTargetError>,
    > {
        use crate::fault::kube_target::KubeSpec;
        let (ctx, ns) = (self.context.as_deref(), self.namespace.as_deref());
        match &self.kubeconfig {
            Kubeconfig::Sim => None,
            Kubeconfig::Path(p) => Some(Ok(KubeSpec::explicit(p, ctx, ns))),
            Kubeconfig::Default => Some(KubeSpec::infer(ctx, ns)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Load {
    pub schedule: Schedule,
    pub workload: Workload,
    pub seed: Option<u64>,
    /// The connection pool and the dispatch-lag threshold (`embedded_server` is set when the
    /// run starts the sim).
    pub overload: crate::load::pool::Overload,
}

/// One occurrence of a fault on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledFault {
    /// Unique in the experiment; repeats get `#2`, `#3`… appended.
    pub id: String,
    pub spec: FaultSpec,
    /// Offset from the load's start.
    pub at: Duration,
    /// The fault's window; `None` for one-shot kinds (pod-kill) given without one.
    pub duration: Option<Duration>,
    /// This fault's own sign-off criteria, replacing the experiment's.
    pub criteria: Option<Criteria>,
    pub source: FaultSource,
}

impl ScheduledFault {
    /// When the fault is cleared (its injection time for one-shot faults).
    pub fn end(&self) -> Duration {
        self.at + self.duration.unwrap_or_default()
    }
}

/// Where a timeline entry came from, for messages and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSource {
    /// The `faults:` entry in the experiment file.
    pub entry: Location,
    /// `use:`d definition: its name and file.
    pub definition: Option<(String, PathBuf)>,
    /// 1 for the first occurrence, 2… for repeats.
    pub occurrence: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub name: String,
    pub every: Duration,
    /// Its first failure after a fault's injection counts as detection.
    pub detection: bool,
    pub check: ProbeCheck,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeCheck {
    Http(HttpProbe),
    Prometheus(PrometheusProbe),
    KubeReady(KubeReadyProbe),
    Command(CommandProbe),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SteadyState {
    pub max_error_rate: Option<f64>,
    pub max_ttft_p99: Option<Duration>,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StopCondition {
    ErrorRateAbove { rate: f64, for_: Duration },
    TtftP99Above { ttft: Duration, for_: Duration },
}

/// Sign-off criteria; an empty one passes every run that recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    pub max_detection: Option<Duration>,
    pub max_recovery: Option<Duration>,
    pub max_error_rate_during: Option<f64>,
    /// Relative: 0.5 = TTFT p99 during the fault may be at most 1.5× the baseline's.
    pub max_ttft_p99_increase: Option<f64>,
    pub must_recover: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub window: Duration,
    /// Consecutive in-band windows that count as recovered.
    pub recovery_windows: u32,
    pub tolerance: Tolerance,
    /// `None`: until the end of the load.
    pub recovery_timeout: Option<Duration>,
    /// The shortest stretch before a fault (after the previous one recovered) that serves as its
    /// baseline; a shorter one falls back to the run's first baseline.
    pub baseline_min: Duration,
}

/// The baseline band: error rate absolute, the others relative to `pre`.
pub use crate::analysis::phases::Tolerance;

/// A fault definition file (`faults/*.yaml`): a kind, its parameters, a name and a description.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultDefinition {
    /// The `name` key, or the file stem.
    pub name: String,
    pub description: Option<String>,
    pub spec: FaultSpec,
    pub source: PathBuf,
}
