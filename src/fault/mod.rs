//! Fault kinds: one module each, chosen by the `kind` tag of a fault definition.
//!
//! A definition (`faults/*.yaml`, or inline in an experiment) is data: a kind plus its
//! parameters, so an operator changes a target or a duration without recompiling. Every kind
//! goes through the same life cycle, driven by the runner or by `faultline inject`:
//!
//! 1. `preflight` — can we reach and act on the target at all (before any load starts);
//! 2. `prepare` — read the current state and compute the undo data, touching nothing;
//! 3. the ledger entry (undo data, deadline) is written and fsynced;
//! 4. `inject` — make the change (and arm a dead-man switch on the target where possible);
//! 5. `verify` — did it take effect? A fault that did not makes the run *invalid*;
//! 6. `restore` — idempotent, from the undo data alone (so `faultline recover` can run it in a
//!    new process after the runner was killed), then the ledger entry is marked done.

pub mod deadman;
pub mod exec;
pub mod gpu_lockout;
pub mod kube_access;
pub mod kube_target;
pub mod ledger;
pub mod load_spike;
pub mod network_partition;
pub mod owner;
pub mod params;
pub mod pod_kill;
pub mod ssh_command;

use crate::load::engine::Control;
use chrono::{DateTime, Utc};
use exec::Hosts;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A fault definition: the `kind` tag selects the module, the other keys are its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultSpec {
    GpuLockout(gpu_lockout::Params),
    SshCommand(ssh_command::Params),
    PodKill(pod_kill::Params),
    NetworkPartition(network_partition::Params),
    LoadSpike(load_spike::Params),
}

impl FaultSpec {
    /// The kind tag as written in files.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::GpuLockout(_) => "gpu-lockout",
            FaultSpec::SshCommand(_) => "ssh-command",
            FaultSpec::PodKill(_) => "pod-kill",
            FaultSpec::NetworkPartition(_) => "network-partition",
            FaultSpec::LoadSpike(_) => "load-spike",
        }
    }

    pub const KINDS: &'static [&'static str] = &[
        "gpu-lockout",
        "ssh-command",
        "pod-kill",
        "network-partition",
        "load-spike",
    ];

    /// What the fault acts on, as `scope:name` strings; two faults that share a target must not
    /// overlap in time.
    pub fn targets(&self) -> Vec<String> {
        match self {
            FaultSpec::GpuLockout(p) => p
                .targets
                .iter()
                .flat_map(|t| t.gpus.iter().map(move |g| format!("gpu:{}/{g}", t.host)))
                .collect(),
            FaultSpec::SshCommand(p) => p.hosts.iter().map(|h| format!("host:{h}")).collect(),
            FaultSpec::PodKill(p) => vec![format!("pods:{}", p.selector)],
            FaultSpec::NetworkPartition(p) => vec![format!("pods:{}", p.selector)],
            FaultSpec::LoadSpike(_) => vec!["load".to_string()],
        }
    }
}

/// Undo data: each kind's typed undo struct as JSON, so the ledger can hold it and
/// `faultline recover` can hand it back to the kind in a new process.
pub type Undo = serde_json::Value;

/// Everything a fault kind touches comes in here, so tests can hand in their own hosts.
pub struct FaultContext {
    pub run_id: String,
    pub fault_id: String,
    pub hosts: Arc<Hosts>,
    /// The knobs of the load engine this process runs (`load-spike`); `None` when it runs none
    /// (`faultline inject`), so there is no load to act on.
    pub control: Option<Arc<Control>>,
    /// The Kubernetes client and default namespace (`pod-kill`, `network-partition`).
    pub kube: Option<kube_target::KubeTarget>,
    /// When the fault is meant to be over; dead-man switches fire after it plus their margin.
    pub deadline: DateTime<Utc>,
    /// Upper bound for each remote command.
    pub command_timeout: Duration,
}

impl FaultContext {
    pub fn new(run_id: &str, fault_id: &str, hosts: Arc<Hosts>, deadline: DateTime<Utc>) -> Self {
        FaultContext {
            run_id: run_id.to_string(),
            fault_id: fault_id.to_string(),
            hosts,
            control: None,
            kube: None,
            deadline,
            command_timeout: Duration::from_secs(30),
        }
    }
}

/// The outcome of `verify` when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verification", rename_all = "kebab-case")]
pub enum Verification {
    /// The change was observed in effect.
    Verified,
    /// There is no way to observe it (e.g. an `ssh-command` without a verify command).
    NotVerifiable { reason: String },
}

/// How a fault ended up restored (recorded in the ledger's `done` record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restoration {
    /// By the process that injected it.
    Normal,
    /// By `faultline recover` (or a start) from the ledger.
    Recover,
    /// The node-side dead-man switch had already restored it.
    Deadman,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    GpuLockout(#[from] gpu_lockout::Error),
    #[error(transparent)]
    SshCommand(#[from] ssh_command::Error),
    #[error(transparent)]
    LoadSpike(#[from] load_spike::Error),
    #[error(transparent)]
    PodKill(#[from] pod_kill::Error),
    #[error(transparent)]
    NetworkPartition(#[from] network_partition::Error),
    #[error("fault {fault_id:?} ({kind}) needs a Kubernetes cluster: add a `kubernetes` section")]
    NoKubernetes {
        fault_id: String,
        kind: &'static str,
    },
    #[error("undo data of fault {fault_id:?} ({kind}) is unreadable: {source}")]
    BadUndo {
        fault_id: String,
        kind: &'static str,
        source: serde_json::Error,
    },
}

impl FaultError {
    /// A failure no retry will change: the API server refused (401, 403) or the namespace is
    /// gone. The ledger entry stays until an operator restores by hand and resolves it.
    pub fn is_permanent(&self) -> bool {
        match self {
            FaultError::PodKill(pod_kill::Error::Kube { error, .. })
            | FaultError::NetworkPartition(network_partition::Error::Kube { error, .. }) => {
                kube_target::is_permanent(error)
            }
            _ => false,
        }
    }
}

impl FaultSpec {
    /// Does this kind act through the Kubernetes API (so it needs a cluster and its ledger entry
    /// records how the cluster was reached)?
    pub fn uses_kubernetes(&self) -> bool {
        matches!(self, FaultSpec::PodKill(_) | FaultSpec::NetworkPartition(_))
    }

    /// The host names this fault acts on (for the ledger: only those are recorded).
    pub fn host_names(&self) -> Vec<String> {
        let mut v: Vec<String> = match self {
            FaultSpec::GpuLockout(p) => p.targets.iter().map(|t| t.host.clone()).collect(),
            FaultSpec::SshCommand(p) => p.hosts.clone(),
            _ => Vec::new(),
        };
        v.sort();
        v.dedup();
        v
    }

    /// Can we reach and act on the target at all? Run before any load starts; touches nothing.
    pub async fn preflight(&self, ctx: &FaultContext) -> Result<(), FaultError> {
        match self {
            FaultSpec::GpuLockout(p) => Ok(gpu_lockout::preflight(p, ctx).await?),
            FaultSpec::SshCommand(p) => Ok(ssh_command::preflight(p, ctx).await?),
            FaultSpec::LoadSpike(p) => Ok(load_spike::preflight(p, ctx).await?),
            FaultSpec::PodKill(p) => Ok(pod_kill::preflight(p, ctx, self.kube(ctx)?).await?),
            FaultSpec::NetworkPartition(p) => {
                Ok(network_partition::preflight(p, ctx, self.kube(ctx)?).await?)
            }
        }
    }

    /// Reads the current state and computes the undo data; touches nothing.
    pub async fn prepare(&self, ctx: &FaultContext) -> Result<Undo, FaultError> {
        let undo = match self {
            FaultSpec::GpuLockout(p) => to_value(gpu_lockout::prepare(p, ctx).await?),
            FaultSpec::SshCommand(p) => to_value(ssh_command::prepare(p, ctx).await?),
            FaultSpec::LoadSpike(p) => to_value(load_spike::prepare(p, ctx).await?),
            FaultSpec::PodKill(p) => to_value(pod_kill::prepare(p, ctx, self.kube(ctx)?).await?),
            FaultSpec::NetworkPartition(p) => {
                to_value(network_partition::prepare(p, ctx, self.kube(ctx)?).await?)
            }
        };
        Ok(undo)
    }

    /// Makes the change (and arms the dead-man switch where there is one). Call only after the
    /// ledger entry holding `undo` is on disk. After an error the fault may be partly in effect:
    /// call `restore`.
    pub async fn inject(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), FaultError> {
        match self {
            FaultSpec::GpuLockout(p) => {
                Ok(gpu_lockout::inject(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::SshCommand(p) => {
                Ok(ssh_command::inject(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::LoadSpike(p) => {
                Ok(load_spike::inject(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::PodKill(p) => {
                Ok(pod_kill::inject(p, ctx, self.kube(ctx)?, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::NetworkPartition(p) => {
                Ok(
                    network_partition::inject(p, ctx, self.kube(ctx)?, &self.undo(ctx, undo)?)
                        .await?,
                )
            }
        }
    }

    /// Did it take effect? An error means it did not (the run is invalid).
    pub async fn verify(
        &self,
        ctx: &FaultContext,
        undo: &Undo,
    ) -> Result<Verification, FaultError> {
        match self {
            FaultSpec::GpuLockout(p) => {
                Ok(gpu_lockout::verify(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::SshCommand(p) => {
                Ok(ssh_command::verify(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::LoadSpike(p) => {
                Ok(load_spike::verify(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::PodKill(p) => {
                Ok(pod_kill::verify(p, ctx, self.kube(ctx)?, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::NetworkPartition(p) => {
                Ok(
                    network_partition::verify(p, ctx, self.kube(ctx)?, &self.undo(ctx, undo)?)
                        .await?,
                )
            }
        }
    }

    /// Puts things back from the undo data alone; idempotent. Cancels the dead-man switch only
    /// after the restore succeeded.
    pub async fn restore(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), FaultError> {
        match self {
            FaultSpec::GpuLockout(p) => {
                Ok(gpu_lockout::restore(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::SshCommand(p) => {
                Ok(ssh_command::restore(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::LoadSpike(p) => {
                Ok(load_spike::restore(p, ctx, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::PodKill(p) => {
                Ok(pod_kill::restore(p, ctx, self.kube(ctx)?, &self.undo(ctx, undo)?).await?)
            }
            FaultSpec::NetworkPartition(p) => {
                Ok(
                    network_partition::restore(p, ctx, self.kube(ctx)?, &self.undo(ctx, undo)?)
                        .await?,
                )
            }
        }
    }

    /// [`FaultSpec::restore`], tried once if it fails permanently
    /// ([`FaultError::is_permanent`]), else up to `attempts` times with a wait that doubles from
    /// `first_wait`; `on_failure` hears each failed try (attempt number from 1). Returns how many
    /// tries it took. The runner and `faultline recover` both restore through this.
    pub async fn restore_with_retries(
        &self,
        ctx: &FaultContext,
        undo: &Undo,
        attempts: u32,
        first_wait: Duration,
        mut on_failure: impl FnMut(u32, &FaultError),
    ) -> Result<u32, FaultError> {
        let mut wait = first_wait;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.restore(ctx, undo).await {
                Ok(()) => return Ok(attempt),
                Err(e) => {
                    on_failure(attempt, &e);
                    // A refusal (403, a missing namespace) will not change by asking again.
                    if e.is_permanent() || attempt >= attempts.max(1) {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    /// When the node-side dead-man switch fires (`None`: this kind has none).
    pub fn deadman_at(&self, deadline: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let margin = match self {
            FaultSpec::GpuLockout(p) => p.deadman_margin,
            FaultSpec::SshCommand(p) if !p.deadman_margin.is_zero() => p.deadman_margin,
            _ => return None,
        };
        Some(deadline + chrono::Duration::from_std(margin).ok()?)
    }

    fn kube<'a>(&self, ctx: &'a FaultContext) -> Result<&'a kube_target::KubeTarget, FaultError> {
        ctx.kube.as_ref().ok_or(FaultError::NoKubernetes {
            fault_id: ctx.fault_id.clone(),
            kind: self.kind(),
        })
    }

    fn undo<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &FaultContext,
        undo: &Undo,
    ) -> Result<T, FaultError> {
        serde_json::from_value(undo.clone()).map_err(|source| FaultError::BadUndo {
            fault_id: ctx.fault_id.clone(),
            kind: self.kind(),
            source,
        })
    }
}

fn to_value<T: Serialize>(t: T) -> Undo {
    serde_json::to_value(t).expect("undo data serializes")
}
