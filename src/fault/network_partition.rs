//! `network-partition`: a deny-all NetworkPolicy on the selected pods, uniquely named and
//! labelled with the run and fault ids, annotated with its deadline; restore deletes exactly
//! that policy, by name.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Namespace; default: the experiment's kubernetes namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector of the pods to cut off, e.g. `app=vllm,worker=1`.
    pub selector: String,
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
    #[default]
    Both,
}
