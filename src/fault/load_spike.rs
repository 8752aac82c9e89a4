//! `load-spike`: multiplies the load engine's arrival rate for the fault's window (2.0 = twice
//! the traffic). Lives in the runner's process, so nothing is left behind if it dies.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub multiplier: f64,
}
