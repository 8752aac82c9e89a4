//! `gpu-lockout`: make GPUs unusable for new contexts by setting their compute mode over SSH
//! (`nvidia-smi -i N -c PROHIBITED`), optionally killing the serving process on them (a mode
//! change does not affect a context that is already running), and restore the mode that was
//! read before — never an assumed DEFAULT.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Hosts (names from the experiment's `hosts` section) and the GPU indices on each.
    pub targets: Vec<GpuTarget>,
    /// The mode to set while the fault lasts.
    #[serde(default)]
    pub mode: LockMode,
    /// Kill the processes holding these GPUs so that the lockout bites.
    #[serde(default = "yes")]
    pub kill_process: bool,
    /// The nvidia-smi command on the node.
    #[serde(default = "default_nvidia_smi")]
    pub nvidia_smi: String,
    /// The node-side dead-man switch restores the mode this long after the fault's deadline.
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub deadman_margin: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuTarget {
    pub host: String,
    pub gpus: Vec<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    #[default]
    Prohibited,
    ExclusiveProcess,
}

fn yes() -> bool {
    true
}
fn default_nvidia_smi() -> String {
    "nvidia-smi".into()
}
fn default_margin() -> Duration {
    Duration::from_secs(60)
}
