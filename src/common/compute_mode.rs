//! GPU compute modes as `nvidia-smi` spells them: shared by the `gpu-lockout` kind (which sets
//! them on real nodes) and the sim's `nvidia-smi` (which imitates them), so neither imports the
//! other.

use serde::{Deserialize, Serialize};

/// A GPU compute mode, spelled as `nvidia-smi` spells it: `Default`, `Prohibited`,
/// `Exclusive_Process` (and the legacy `Exclusive_Thread`) in queries, upper case when set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComputeMode {
    Default,
    #[serde(rename = "Exclusive_Thread")]
    ExclusiveThread,
    Prohibited,
    #[serde(rename = "Exclusive_Process")]
    ExclusiveProcess,
}

impl ComputeMode {
    /// Reads a mode as `nvidia-smi -c` accepts it (`0`–`3`, `DEFAULT`, `PROHIBITED`,
    /// `EXCLUSIVE_PROCESS`…) or as its queries print it (`Default`, `Exclusive_Process`…).
    pub fn parse(s: &str) -> Option<ComputeMode> {
        match s
            .trim()
            .to_ascii_uppercase()
            .replace(['.', ' '], "_")
            .as_str()
        {
            "0" | "DEFAULT" => Some(ComputeMode::Default),
            "1" | "EXCLUSIVE_THREAD" => Some(ComputeMode::ExclusiveThread),
            "2" | "PROHIBITED" => Some(ComputeMode::Prohibited),
            "3" | "EXCLUSIVE_PROCESS" | "E__PROCESS" => Some(ComputeMode::ExclusiveProcess),
            _ => None,
        }
    }
    /// As printed by `--query-gpu=compute_mode`.
    pub fn query_name(self) -> &'static str {
        match self {
            ComputeMode::Default => "Default",
            ComputeMode::ExclusiveThread => "Exclusive_Thread",
            ComputeMode::Prohibited => "Prohibited",
            ComputeMode::ExclusiveProcess => "Exclusive_Process",
        }
    }
    /// As given to `-c`.
    pub fn set_name(self) -> &'static str {
        match self {
            ComputeMode::Default => "DEFAULT",
            ComputeMode::ExclusiveThread => "EXCLUSIVE_THREAD",
            ComputeMode::Prohibited => "PROHIBITED",
            ComputeMode::ExclusiveProcess => "EXCLUSIVE_PROCESS",
        }
    }
}

impl std::fmt::Display for ComputeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.query_name())
    }
}
