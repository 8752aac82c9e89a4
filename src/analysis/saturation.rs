//! The saturation point of a ramp: where adding load stops buying throughput and starts costing
//! latency or errors.
//!
//! A ramp is a list of load steps, each summarised like any other run. The saturation point is
//! the *first* step at which one of three criteria fires (DESIGN.md, "saturation point"):
//! TTFT p99 above k× the low-load baseline (users feel the queue), the error rate above a limit
//! (the cluster refuses work), or output tokens/s that stopped rising while the offered load
//! still rose (more load, no more work done). Each criterion can be switched off, and the result
//! says which one fired and with which numbers, because "saturated at 40 req/s" is only
//! actionable when you know whether latency, errors or throughput told you so.
//!
//! The recommended operating point is a stated fraction of the saturation rate (headroom for
//! spikes). If nothing saturated, the highest tested rate stands in and the result says so
//! (`recommended_is_extrapolated`): the true limit is somewhere above, the recommendation is
//! merely safe.
//!
//! A step whose load the client could not deliver (`client_limited`: dispatch-lag p99 above
//! `--max-dispatch-lag` in some window) measures the client, not the cluster, so the
//! saturation point is only looked for in the steps *before* the first client-limited one; a
//! ramp that saturated nothing before the client gave out says so (`client_limited_from`), and
//! its recommendation is extrapolated from the last clean step.
//!
//! Everything here is pure (step summaries in, verdict out) so it is tested on synthetic steps;
//! `runner::ramp` runs the steps and `ramp.json` is this module's [`RampResult`], read by the
//! report generator.

use crate::analysis::summary::Summary;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SaturationError {
    #[error("invalid value '{value}' for {name}: {reason}")]
    Invalid {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
}

/// Which criteria are on, and their thresholds. `None` switches a criterion off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Criteria {
    /// TTFT p99 may grow to k × baseline before the step counts as saturated.
    pub ttft_k: Option<f64>,
    /// Baseline TTFT p99 (ms) given by the user; `None` = the first step's p99.
    pub baseline_ttft_p99_ms: Option<f64>,
    /// Highest acceptable error rate (0..1).
    pub max_error_rate: Option<f64>,
    /// Throughput counts as flat when output tok/s grew by less than this fraction over the
    /// previous step while the offered load grew.
    pub plateau: Option<f64>,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            ttft_k: Some(2.0),
            baseline_ttft_p99_ms: None,
            max_error_rate: Some(0.01),
            plateau: Some(0.05),
        }
    }
}

impl Criteria {
    pub fn check(&self) -> Result<(), SaturationError> {
        let bad = |name, value, reason| {
            Err(SaturationError::Invalid {
                name,
                value,
                reason,
            })
        };
        if let Some(k) = self.ttft_k
            && !(k.is_finite() && k > 1.0)
        {
            return bad("--k", k, "must be a number above 1");
        }
        if let Some(b) = self.baseline_ttft_p99_ms
            && !(b.is_finite() && b > 0.0)
        {
            return bad("--baseline-ttft-p99", b, "must be positive");
        }
        if let Some(e) = self.max_error_rate
            && !(0.0..1.0).contains(&e)
        {
            return bad("--max-error-rate", e, "must be in [0, 1)");
        }
        if let Some(p) = self.plateau
            && !(p.is_finite() && p > 0.0)
        {
            return bad("--plateau", p, "must be positive");
        }
        Ok(())
    }
}

/// One step of the ramp as run: either an open-loop rate or a closed-loop user count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub rate: Option<f64>,
    pub concurrency: Option<u64>,
    pub summary: Summary,
    pub out_dir: String,
}

impl Step {
    /// The load offered: the target rate, or the user count for closed loops.
    fn offered(&self) -> f64 {
        self.rate
            .or(self.concurrency.map(|c| c as f64))
            .unwrap_or(0.0)
    }
    /// The request rate this step stands for: the target rate, or what a closed loop achieved.
    pub fn effective_rate(&self) -> f64 {
        self.rate.unwrap_or(self.summary.achieved_rate)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    TtftP99,
    ErrorRate,
    ThroughputPlateau,
}

impl Reason {
    /// As written in `ramp.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TtftP99 => "ttft_p99",
            Reason::ErrorRate => "error_rate",
            Reason::ThroughputPlateau => "throughput_plateau",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// Index into `steps`.
    pub step: usize,
    pub rate: f64,
    pub reason: Reason,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaxThroughput {
    pub rate: f64,
    pub output_tok_s: f64,
}

/// `ramp.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RampResult {
    pub steps: Vec<Step>,
    pub baseline_ttft_p99_ms: Option<f64>,
    pub saturation: Option<Saturation>,
    pub max_throughput: MaxThroughput,
    pub recommended_rate: f64,
    pub fraction: f64,
    pub recommended_is_extrapolated: bool,
    pub stopped_early: bool,
    pub criteria: Criteria,
    /// The first step the client could not deliver (client-limited): it and the steps after it
    /// are left out of the saturation search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_limited_from: Option<ClientLimitedStep>,
}

/// The first client-limited step of a ramp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientLimitedStep {
    /// Index into `steps`.
    pub step: usize,
    pub rate: f64,
    /// Share of the step's windows that were client-limited.
    pub share: Option<f64>,
}

/// The first step whose summary says the client could not keep to its schedule.
pub fn first_client_limited(steps: &[Step]) -> Option<usize> {
    steps.iter().position(|s| s.summary.client_limited)
}

/// The baseline TTFT p99: the user's, else the first step's (if it measured any TTFT).
impl RampResult {
    /// A ramp over these steps that never saturated (for tests of the readers).
    #[cfg(test)]
    pub(crate) fn example(steps: Vec<Step>) -> RampResult {
        RampResult {
            steps,
            baseline_ttft_p99_ms: None,
            saturation: None,
            max_throughput: MaxThroughput {
                rate: 0.0,
                output_tok_s: 0.0,
            },
            recommended_rate: 0.0,
            fraction: 0.75,
            recommended_is_extrapolated: true,
            stopped_early: false,
            criteria: Criteria::default(),
            client_limited_from: None,
        }
    }
}

pub fn baseline(criteria: &Criteria, steps: &[Step]) -> Option<f64> {
    criteria
        .baseline_ttft_p99_ms
        .or_else(|| steps.first().and_then(|s| s.summary.ttft_ms.p99))
}

/// Whether step `i` is saturated, and why. The criteria are tried in a fixed order (errors,
/// latency, throughput) so the reported reason is the most severe one that fired.
pub fn check_step(criteria: &Criteria, steps: &[Step], i: usize) -> Option<(Reason, String)> {
    let cur = &steps[i];
    let s = &cur.summary;
    if let (Some(limit), Some(rate)) = (criteria.max_error_rate, s.error_rate)
        && rate > limit
    {
        return Some((
            Reason::ErrorRate,
            format!(
                "error rate {:.2}% > limit {:.2}% ({} of {} requests failed)",
                rate * 100.0,
                limit * 100.0,
                s.errors,
                s.requests
            ),
        ));
    }
    // A step where every request failed has no TTFT at all; the error criterion covers it.
    if let (Some(k), Some(base), Some(p99)) =
        (criteria.ttft_k, baseline(criteria, steps), s.ttft_ms.p99)
        && p99 > k * base
    {
        return Some((
            Reason::TtftP99,
            format!(
                "TTFT p99 {p99:.0} ms > {k} × baseline {base:.0} ms = {:.0} ms",
                k * base
            ),
        ));
    }
    if let (Some(plateau), Some(prev)) = (criteria.plateau, i.checked_sub(1).map(|j| &steps[j]))
        && cur.offered() > prev.offered()
        && prev.summary.output_tok_s > 0.0
    {
        let growth = s.output_tok_s / prev.summary.output_tok_s - 1.0;
        if growth < plateau {
            return Some((
                Reason::ThroughputPlateau,
                format!(
                    "output {:.0} tok/s vs {:.0} at the previous step ({:+.1}%, < {:.1}%) while offered load rose {:.4} → {:.4}",
                    s.output_tok_s,
                    prev.summary.output_tok_s,
                    growth * 100.0,
                    plateau * 100.0,
                    prev.offered(),
                    cur.offered()
                ),
            ));
        }
    }
    None
}

/// The first saturated step.
pub fn find_saturation(criteria: &Criteria, steps: &[Step]) -> Option<Saturation> {
    (0..steps.len()).find_map(|i| {
        check_step(criteria, steps, i).map(|(reason, detail)| Saturation {
            step: i,
            rate: steps[i].effective_rate(),
            reason,
            detail,
        })
    })
}

/// Early stop: once step `saturated_at` saturated, one more step confirms it; after that the
/// ramp stops rather than keep hammering a cluster that is already past its limit.
pub fn should_stop(saturated_at: Option<usize>, steps_done: usize) -> bool {
    saturated_at.is_some_and(|s| steps_done >= s + 2)
}

/// The verdict over the steps run. `fraction` of the saturation rate is recommended.
pub fn analyze(
    steps: Vec<Step>,
    criteria: Criteria,
    fraction: f64,
    stopped_early: bool,
) -> RampResult {
    let limited = first_client_limited(&steps);
    let clean = &steps[..limited.unwrap_or(steps.len())];
    let saturation = find_saturation(&criteria, clean);
    let max_throughput = steps
        .iter()
        .max_by(|a, b| a.summary.output_tok_s.total_cmp(&b.summary.output_tok_s))
        .map(|s| MaxThroughput {
            rate: s.effective_rate(),
            output_tok_s: s.summary.output_tok_s,
        })
        .unwrap_or(MaxThroughput {
            rate: 0.0,
            output_tok_s: 0.0,
        });
    let (base_rate, extrapolated) = match &saturation {
        Some(sat) => (sat.rate, false),
        None => (
            clean.iter().map(Step::effective_rate).fold(0.0, f64::max),
            true,
        ),
    };
    let client_limited_from = limited.map(|i| ClientLimitedStep {
        step: i,
        rate: steps[i].effective_rate(),
        share: steps[i].summary.client_limited_share,
    });
    RampResult {
        baseline_ttft_p99_ms: baseline(&criteria, &steps),
        steps,
        saturation,
        max_throughput,
        recommended_rate: base_rate * fraction,
        fraction,
        recommended_is_extrapolated: extrapolated,
        stopped_early,
        criteria,
        client_limited_from,
    }
}

#[cfg(test)]
#[path = "saturation_tests.rs"]
mod tests;
