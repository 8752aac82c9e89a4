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
pub mod gpu_degrade;
pub mod gpu_lockout;
pub mod kind;
pub mod kube_access;
pub mod kube_target;
pub mod ledger;
pub mod load_spike;
pub mod network_delay;
pub mod network_partition;
pub mod node_drain;
pub mod owner;
pub mod params;
pub mod pod_kill;
pub mod process_pause;
pub mod registry;
pub mod schema;
pub mod ssh_command;

use crate::load::engine::Control;
use chrono::{DateTime, Utc};
use exec::Hosts;
pub use kind::{
    ApiUse, DescribeCx, FaultKind, HostRef, Lifetime, Mark, Problem, Reach, SimBinding, Target,
};
pub use registry::{Decoder, FaultError, FaultSpec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Undo data: each kind's typed undo struct as JSON, so the ledger can hold it and
/// `faultline recover` can hand it back to the kind in a new process.
pub type Undo = serde_json::Value;

/// Everything a fault kind touches comes in here, so tests can hand in their own hosts.
#[derive(Clone)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// A Kubernetes fault kind was handed a context without a cluster.
#[derive(Debug, thiserror::Error)]
#[error("fault {fault_id:?} needs a Kubernetes cluster: add a `kubernetes` section")]
pub struct NoKubernetes {
    pub fault_id: String,
}

impl FaultContext {
    /// The Kubernetes client, for kinds whose reach says `kubernetes` (the dispatch refuses
    /// such a fault without one before calling the kind).
    pub fn kube(&self) -> Result<&kube_target::KubeTarget, NoKubernetes> {
        self.kube.as_ref().ok_or_else(|| NoKubernetes {
            fault_id: self.fault_id.clone(),
        })
    }
}
