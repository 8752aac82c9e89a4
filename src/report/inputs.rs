//! Mirrors of the result files written by `faultline ramp`, `sla`, `bench` and the Prometheus
//! analyses (`ramp.json`, `sla.json`, `cost.json`, `bottleneck.json`, `bench.json`).
//!
//! Why mirrors and not the producers' own structs: those commands are built on other branches,
//! and a report must still open a folder written by an older or newer faultline. Every field is
//! `#[serde(default)]` and unknown fields are ignored, so a missing number shows as "-" in the
//! report instead of the whole report failing.

use crate::analysis::summary::Summary;
use serde::Deserialize;

/// `ramp.json`: one load step per rate (or concurrency), and where the system saturated.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ramp {
    pub steps: Vec<RampStep>,
    pub baseline_ttft_p99_ms: Option<f64>,
    pub saturation: Option<Saturation>,
    pub max_throughput: Option<MaxThroughput>,
    pub recommended_rate: Option<f64>,
    pub fraction: Option<f64>,
    pub recommended_is_extrapolated: bool,
    pub stopped_early: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RampStep {
    pub rate: Option<f64>,
    pub concurrency: Option<u64>,
    pub summary: Option<Summary>,
    pub out_dir: String,
}

impl RampStep {
    /// "12 req/s" or "8 users": what the step asked for.
    pub fn label(&self) -> String {
        match (self.rate, self.concurrency) {
            (Some(r), _) => format!("{} req/s", num(r)),
            (None, Some(c)) => format!("{c} users"),
            (None, None) => "-".into(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Saturation {
    /// Index into `steps`.
    pub step: Option<usize>,
    pub rate: Option<f64>,
    /// `ttft_p99`, `error_rate` or `throughput_plateau`.
    pub reason: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct MaxThroughput {
    pub rate: Option<f64>,
    pub output_tok_s: Option<f64>,
}

/// `sla.json`, `cost.json`, `bottleneck.json` and `bench.json` are read with the writers' own
/// types: one type per file format, so the report cannot drift from what is written.
pub use crate::analysis::bottleneck::{
    BottleneckReport as Bottleneck, SignalResult as BottleneckSignal,
};
pub use crate::analysis::cost::{CostRow, CostTable as Cost};
pub use crate::analysis::sla::{Check as SlaCheck, SlaResult as Sla};
pub use crate::runner::bench::{BenchResult as Bench, PhaseTime as BenchPhase};

/// A number without trailing zeros, to 3 significant digits below 10: 12 → "12",
/// 12.5 → "12.5", 0.1256 → "0.126", 0.001 → "0.001".
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if (v - v.round()).abs() < 1e-9 {
        return format!("{v:.0}");
    }
    if v.abs() >= 10.0 {
        return format!("{v:.1}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_json_with_missing_and_unknown_fields_still_parses() {
        let r: Ramp = serde_json::from_str(
            r#"{"steps": [{"rate": 4, "out_dir": "step-1", "extra": 1}],
                "saturation": {"step": 0, "reason": "ttft_p99"}, "new_field": true}"#,
        )
        .unwrap();
        assert_eq!(r.steps.len(), 1);
        assert!(r.steps[0].summary.is_none());
        assert_eq!(r.saturation.unwrap().reason, "ttft_p99");
        assert!(r.recommended_rate.is_none());
    }

    #[test]
    fn num_drops_trailing_zeros() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(0.1256), "0.126");
        assert_eq!(num(0.001), "0.001");
        assert_eq!(num(2.5), "2.5");
    }
}
