//! `result.json`: what an experiment run found, fault by fault, and the verdict. The schema is
//! `schemas/result.schema.json`; the terminal table and `summary.md` are rendered from this.

use crate::analysis::phases::{Detection, FaultAnalysis, Recovery};
use crate::analysis::summary::Summary;
use crate::fault::Verification;
use crate::runner::spec::Criteria;
use serde::{Deserialize, Serialize};

/// How a run ended. Exit codes: pass 0, failed 1, invalid 2, aborted 3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every fault took effect and met the criteria.
    Pass,
    /// A criterion failed or the system did not recover.
    Failed,
    /// The run cannot say anything: a fault did not take effect, was skipped because the system
    /// was unhealthy before it, or the run hit an error.
    Invalid,
    /// A stop condition or a signal ended the run early; everything was restored.
    Aborted,
}

impl Status {
    pub fn exit_code(&self) -> u8 {
        match self {
            Status::Pass => 0,
            Status::Failed => 1,
            Status::Invalid => 2,
            Status::Aborted => 3,
        }
    }
}

/// Something that happened during the run, on the load's clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    pub t_s: f64,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub detail: String,
}

/// One criterion checked against one fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub name: String,
    pub limit: String,
    pub actual: String,
    pub passed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultStatus {
    Pass,
    Failed,
    /// Did not take effect (verify failed), or could not be injected.
    Invalid,
    /// Not injected: the steady-state hypothesis did not hold before it.
    Skipped,
    /// The run was aborted before or during it.
    Aborted,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultResult {
    pub id: String,
    pub kind: String,
    /// Human description of what was done.
    pub action: String,
    pub status: FaultStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub scheduled_at_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleared_s: Option<f64>,
    /// A one-shot fault whose end never came (a pod kill whose replacements were not all Ready
    /// within the criteria's time): when the runner stopped waiting. It has no `cleared_s`, and
    /// it is not recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<FaultAnalysis>,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunResult {
    pub experiment: String,
    pub run_id: String,
    pub started_at: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub warmup_s: f64,
    pub load: Summary,
    pub faults: Vec<FaultResult>,
    pub events: Vec<Event>,
    /// The definitions behind the numbers, printed with every report.
    pub definitions: Vec<String>,
}

pub fn definitions() -> Vec<String> {
    [
        "phases: pre (the fault's baseline) = the stretch from the previous fault's recovery (the end of warm-up, for the first fault) to this fault, less the requests' end-to-end p99 (so requests in flight when it hit are not the baseline); a stretch shorter than analysis.baseline_min, or after a fault that did not recover, falls back to the run's first baseline and says why; during = fault effective (its inject began; verified afterwards) to cleared (its restore began); recovery = cleared to the next fault or the end. A request belongs to the phase in which it was intended to start.",
        "detection: from the fault's effective time to the first signal that the system noticed it: a detection probe, or (client-side) the end of the last window in which new requests were failing while the fault was still active.",
        "recovery: from the clearing (the injection, for one-shot faults) to the first window from which N consecutive windows, taken together, are back in the baseline band (error rate, TTFT p50/p99 and throughput within tolerance of pre); for a pod kill, no earlier than its replacements were Ready, and not recovered at all if they were not Ready within the criteria's max_recovery.",
        "impact: during against pre; relative changes in percent.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn secs(v: f64) -> String {
    format!("{v:.1}s")
}

/// Checks one analysed fault against the criteria.
pub fn check(criteria: &Criteria, a: &FaultAnalysis) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(max) = criteria.max_detection {
        let (actual, passed) = match &a.detection {
            Detection::Detected { after_s, signal } => (
                format!("{} ({signal})", secs(*after_s)),
                *after_s <= max.as_secs_f64(),
            ),
            Detection::NotDetected => ("not detected".to_string(), false),
            // Nothing visible to detect: the criterion does not apply.
            Detection::NoSignal => ("no failure to detect".to_string(), true),
        };
        checks.push(Check {
            name: "detection".into(),
            limit: format!("≤ {}", secs(max.as_secs_f64())),
            actual,
            passed,
        });
    }
    let recovered = match &a.recovery_time {
        Recovery::Recovered { after_s } => Some(*after_s),
        _ => None,
    };
    let rec_actual = match &a.recovery_time {
        Recovery::Recovered { after_s } => secs(*after_s),
        Recovery::NotRecovered { within_s } => format!("not recovered within {}", secs(*within_s)),
        Recovery::NoBaseline => "no baseline".to_string(),
    };
    if let Some(max) = criteria.max_recovery {
        checks.push(Check {
            name: "recovery".into(),
            limit: format!("≤ {}", secs(max.as_secs_f64())),
            actual: rec_actual.clone(),
            passed: recovered.is_some_and(|r| r <= max.as_secs_f64()),
        });
    } else if criteria.must_recover {
        checks.push(Check {
            name: "recovered".into(),
            limit: "must recover".into(),
            actual: rec_actual,
            passed: recovered.is_some(),
        });
    }
    if let Some(max) = criteria.max_error_rate_during {
        let er = a.impact.error_rate_during;
        checks.push(Check {
            name: "error rate during".into(),
            limit: format!("≤ {:.2}%", max * 100.0),
            actual: er
                .map(|e| format!("{:.2}%", e * 100.0))
                .unwrap_or_else(|| "no requests".into()),
            passed: er.is_some_and(|e| e <= max),
        });
    }
    if let Some(max) = criteria.max_ttft_p99_increase {
        let inc = a.impact.ttft_p99_change;
        checks.push(Check {
            name: "TTFT p99 increase".into(),
            limit: format!("≤ +{:.0}%", max * 100.0),
            actual: inc
                .map(|i| format!("{:+.0}%", i * 100.0))
                .unwrap_or_else(|| "no data".into()),
            passed: inc.is_some_and(|i| i <= max),
        });
    }
    checks
}
