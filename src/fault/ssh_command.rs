//! `ssh-command`: generic inject / restore / verify shell commands on hosts (tc netem delay,
//! an iptables partition of a node, killing a process), with the same ledger and dead-man
//! discipline as every other kind.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Hosts (names from the experiment's `hosts` section) to run the commands on.
    pub hosts: Vec<String>,
    /// Makes the change. Must exit 0.
    pub inject: String,
    /// Undoes it. Must be idempotent (it may run more than once) and exit 0.
    pub restore: String,
    /// Exits 0 when the change is in effect. Without it the fault is "not verified".
    #[serde(default)]
    pub verify: Option<String>,
    /// Arm a detached timer on each host that runs `restore` after the deadline plus this
    /// margin, unless cancelled by a normal restore. `0s` disables it.
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub deadman_margin: Duration,
}

fn default_margin() -> Duration {
    Duration::from_secs(60)
}
