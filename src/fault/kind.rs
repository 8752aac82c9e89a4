//! The one interface every fault kind implements, so that what a kind *is* lives in its own
//! module and nowhere else.
//!
//! Before this trait, a kind was spread over eight files and a dozen hand-written `match`es,
//! several ending in `_ =>` arms the compiler never pointed to. The dangerous one returned no
//! hosts for a kind it did not know, so the ledger of a new SSH kind named no hosts and
//! `faultline recover` after a SIGKILL could not reach the node. Now:
//!
//! - every question about a kind is a method here, and the ones that decide what is touched
//!   ([`FaultKind::reach`]) have no default: a kind cannot compile without answering them;
//! - the context the life-cycle methods receive holds *only* the hosts the reach names
//!   ([`super::FaultSpec`] scopes it before each call), so a kind that forgets a host in its
//!   reach cannot reach that host at all — it fails in its first test instead of leaving the
//!   ledger incomplete;
//! - the registry (`registry.rs`) is one line per kind, and the `kind` tag written in files is
//!   the registry variant's name in kebab case, written nowhere else.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kube_target::KubeTarget;
use super::{FaultContext, Verification};

/// Everything one fault acts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Reach {
    /// What it changes; two faults that share a target must not overlap in time, and two
    /// processes may not hold faults on the same one (`owner.rs`).
    pub targets: Vec<Target>,
    /// The hosts (names from the experiment's `hosts` section) it runs commands on, each with
    /// the key path in the parameters that names it, for error positions. The ledger records
    /// exactly these; the context holds only these.
    pub hosts: Vec<HostRef>,
    /// What it does through the Kubernetes API (empty: nothing). Checked against the
    /// credentials before anything starts (`kube_access.rs`); the fault then needs a
    /// `kubernetes` section ([`FaultContext::kube`]).
    pub kube: Vec<ApiUse>,
    /// Acts on the load this process generates (so `faultline inject`, which generates none,
    /// refuses it).
    pub load: bool,
}

/// One thing a fault changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A GPU on a host, as named (index, UUID or bus id), through a given `nvidia-smi`.
    Gpu {
        host: String,
        gpu: String,
        nvidia_smi: String,
    },
    /// A whole host.
    Host(String),
    /// The pods a selector picks, in a namespace (`None`: the default one).
    Pods {
        namespace: Option<String>,
        selector: String,
    },
    /// A Kubernetes node.
    Node(String),
    /// The load this process generates.
    Load,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Gpu { host, gpu, .. } => write!(f, "gpu:{host}/{gpu}"),
            Target::Host(h) => write!(f, "host:{h}"),
            Target::Pods { selector, .. } => write!(f, "pods:{selector}"),
            Target::Node(n) => write!(f, "node:{n}"),
            Target::Load => f.write_str("load"),
        }
    }
}

/// Verbs on one Kubernetes resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiUse {
    pub verbs: &'static [&'static str],
    /// API group (`""`: core).
    pub group: &'static str,
    pub resource: &'static str,
    /// A namespace (`Some(None)`: the experiment's default one), or `None`: cluster-scoped.
    pub namespace: Option<Option<String>>,
}

impl Reach {
    /// Acts through the Kubernetes API.
    pub fn kubernetes(&self) -> bool {
        !self.kube.is_empty()
    }

    /// The host names, sorted and without repeats.
    pub fn host_names(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.hosts.iter().map(|h| h.name.clone()).collect();
        set.into_iter().collect()
    }
}

/// A host named in a fault's parameters, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct HostRef {
    pub name: String,
    /// Key path inside the definition, e.g. `["targets", "0", "host"]`.
    pub path: Vec<String>,
}

impl HostRef {
    pub fn new(name: &str, path: &[&str]) -> Self {
        HostRef {
            name: name.to_string(),
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// How a fault ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// In effect for the entry's `duration` (required), then restored.
    Held,
    /// Acts once (a pod deleted); `duration` is optional, and the fault has cleared when
    /// [`FaultKind::wait_cleared`] says so.
    OneShot,
}

/// What `describe` may need from the experiment around the fault.
#[derive(Clone, Debug, Default)]
pub struct DescribeCx {
    /// The namespace a Kubernetes fault without its own acts in, in words.
    pub namespace: String,
}

/// The embedded sim, for [`FaultKind::bind_to_sim`].
#[derive(Clone, Debug)]
pub struct SimBinding {
    /// The sim's state directory; its stand-ins are named in `common::sim_names`.
    pub state_dir: PathBuf,
    /// Hosts of the experiment that are `local` (the sim's stand-ins run on them).
    pub local_hosts: BTreeSet<String>,
}

impl SimBinding {
    /// The `nvidia-smi` command to use on `hosts`: `faultline nvidia-smi` on hosts that are all
    /// local means the sim's GPUs, so it becomes the sim's wrapper (which knows its state
    /// directory, so that the ledger holds a command `faultline recover` can run from any
    /// process); `None`: keep the command as written.
    pub fn nvidia_smi<'a>(
        &self,
        mut hosts: impl Iterator<Item = &'a String>,
        command: &str,
    ) -> Option<String> {
        (command.trim() == "faultline nvidia-smi" && hosts.all(|h| self.local_hosts.contains(h)))
            .then(|| {
                let path = crate::common::sim_names::nvidia_smi(&self.state_dir);
                super::exec::shell_quote(&path.to_string_lossy())
            })
    }

    /// The process pattern to use on `host`: `faultline sim-worker N` on a local host means the
    /// sim's worker N, so it becomes the exact pattern of that worker's process (its name holds
    /// the sim's state directory, so no other sim's worker matches); `None`: keep the pattern.
    pub fn worker_process(&self, host: &str, pattern: &str) -> Option<String> {
        let id = pattern.trim().strip_prefix("faultline sim-worker ")?;
        let id: usize = id.trim().parse().ok()?;
        self.local_hosts
            .contains(host)
            .then(|| crate::common::sim_names::worker_process_pattern(&self.state_dir, id))
    }
}

/// One problem with a definition's parameters: the key path inside it (e.g.
/// `["targets", "0", "gpus"]`), the value as written, and what is wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub path: Vec<String>,
    pub value: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: &[&str], value: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.iter().map(|s| s.to_string()).collect(),
            value: value.into(),
            message: message.into(),
        }
    }
}

/// A change a kind leaves marked on the target itself (a NetworkPolicy labelled with its run
/// and fault and annotated with a deadline), found without the ledger: `faultline status
/// --kubeconfig` lists them and `faultline recover --kubeconfig` undoes the expired ones — the
/// target-side dead-man switch, for when the ledger that named them is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The kind that left it (its registry tag).
    pub kind: &'static str,
    /// What it is, for people (`NetworkPolicy prod/faultline-…`).
    pub what: String,
    pub namespace: Option<String>,
    pub name: String,
    pub run_id: Option<String>,
    pub fault_id: Option<String>,
    /// Its deadline, if readable (a mark without one is listed but never undone by a sweep).
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// A fault kind: its parameters type implements this, and one registry line makes it known.
///
/// The life-cycle methods are written as plain `async fn` in the impl block.
pub trait FaultKind:
    Clone + Debug + PartialEq + Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static
{
    /// What `restore` needs, computed by `prepare`; kept as JSON in the ledger, so `faultline
    /// recover` in a new process restores from it alone.
    type Undo: Serialize + DeserializeOwned + Send + Sync;
    /// The module's own error enum.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Value checks serde cannot express (empty: fine).
    fn problems(&self) -> Vec<Problem>;
    /// Everything this fault acts on. No default: see the module docs.
    fn reach(&self) -> Reach;
    /// What it does, in words, without kind or id (`plan`, the report).
    fn describe(&self, cx: &DescribeCx) -> String;
    /// How it ends, for `plan`, appended to `describe`; `end` is when (`t=1m30s`), `None` for a
    /// one-shot fault without a duration.
    fn describe_end(&self, end: Option<&str>) -> String;
    fn lifetime(&self) -> Lifetime;
    /// How long after the fault's deadline the node-side dead-man switch restores on its own;
    /// `None`: this kind (or this definition) has none.
    fn deadman_margin(&self) -> Option<Duration>;
    /// Against the embedded sim, rewrite parameters that name a sim stand-in.
    fn bind_to_sim(&mut self, sim: &SimBinding);
    /// A failure no retry will change (a 403, a namespace that is gone): the ledger entry stays
    /// until an operator restores by hand.
    fn is_permanent(error: &Self::Error) -> bool;
    /// A complete, valid definition, for the tests that go over every registered kind.
    fn example() -> Self;

    /// Can we reach and act on the target at all? Touches nothing.
    fn preflight(&self, ctx: &FaultContext)
    -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Reads the current state and computes the undo data; touches nothing.
    fn prepare(
        &self,
        ctx: &FaultContext,
    ) -> impl Future<Output = Result<Self::Undo, Self::Error>> + Send;
    /// Makes the change (and arms the dead-man switch); called only after the ledger entry
    /// holding `undo` is on disk.
    fn inject(
        &self,
        ctx: &FaultContext,
        undo: &Self::Undo,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Did it take effect? An error means it did not (the run is invalid).
    fn verify(
        &self,
        ctx: &FaultContext,
        undo: &Self::Undo,
    ) -> impl Future<Output = Result<Verification, Self::Error>> + Send;
    /// Puts things back from the undo data alone; idempotent.
    fn restore(
        &self,
        ctx: &FaultContext,
        undo: &Self::Undo,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The Kubernetes permissions [`FaultKind::marks`] and [`FaultKind::clear_mark`] use
    /// (empty: the kind leaves no marks). `namespace: Some(None)` means the namespace swept,
    /// `None` a cluster-scoped resource.
    fn mark_access() -> Vec<ApiUse> {
        Vec::new()
    }
    /// The marks this kind left on the cluster (in `namespace`, or all).
    fn marks(
        _kube: &KubeTarget,
        _namespace: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Mark>, Self::Error>> + Send {
        async { Ok(Vec::new()) }
    }
    /// Undoes what `mark` marks; already gone is fine.
    fn clear_mark(
        _kube: &KubeTarget,
        _mark: &Mark,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// A one-shot fault: wait up to `limit` until the system is back (pod-kill: as many pods
    /// Ready as before). `Ok(Some(text))`: cleared now; `Ok(None)`: nothing to watch.
    fn wait_cleared(
        &self,
        _ctx: &FaultContext,
        _undo: &Self::Undo,
        _limit: Duration,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send {
        async { Ok(None) }
    }
}
