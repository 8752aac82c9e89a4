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

pub mod gpu_lockout;
pub mod load_spike;
pub mod network_partition;
pub mod pod_kill;
pub mod ssh_command;

use serde::{Deserialize, Serialize};

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
