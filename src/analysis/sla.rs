//! SLA checks: does a sustained run meet the latency and error limits a service promised?
//!
//! The aggregate checks compare the run's percentiles with the limits, as the article does
//! (TTFT p99, ITL p99, error rate, optionally e2e p99). Aggregates can hide that a *share* of
//! users got a bad experience, so there is also **goodput**: the share of requests that met
//! every per-request limit. A request is *good* when its outcome is ok, its TTFT ≤ the TTFT
//! limit, its e2e ≤ the e2e limit (when one is set) and its **mean** inter-token latency ≤ the
//! ITL limit. Mean, not max: the ITL limit is a p99 over all gaps, and a single slow gap (one
//! scheduler hiccup in a 500-token answer) would make a request "bad" far more strictly than the
//! aggregate check judges the run; the per-request mean is the request's streaming speed (what
//! DistServe calls TPOT), which is what a reader of the stream notices. Requests with no gaps
//! (one token) pass the ITL part.
//!
//! A metric with no data (no request produced a TTFT, ...) is a FAIL with `actual: null`:
//! "nothing measured" must never read as "0 ms, passed".
//!
//! `--find` searches the highest rate meeting the SLA by bisection: [`Bisection`] holds the
//! highest passing and lowest failing rates and proposes the next trial.

use crate::analysis::summary::Summary;
use crate::record::RequestRecord;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SlaError {
    #[error("invalid value '{value}' for {name}: {reason}")]
    Invalid {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
}

/// The promised limits. Latencies in milliseconds, rates as fractions (0.001 = 0.1%).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlaLimits {
    pub ttft_p99_ms: f64,
    pub itl_p99_ms: f64,
    pub max_error_rate: f64,
    pub e2e_p99_ms: Option<f64>,
    /// Lowest acceptable share of good requests; `None` = goodput is not checked.
    pub goodput_min: Option<f64>,
}

impl SlaLimits {
    pub fn check(&self) -> Result<(), SlaError> {
        let bad = |name, value, reason| {
            Err(SlaError::Invalid {
                name,
                value,
                reason,
            })
        };
        for (name, v) in [
            ("--ttft-p99", self.ttft_p99_ms),
            ("--itl-p99", self.itl_p99_ms),
            ("--e2e-p99", self.e2e_p99_ms.unwrap_or(1.0)),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(name, v, "must be a positive duration");
            }
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return bad("--max-error-rate", self.max_error_rate, "must be in [0, 1]");
        }
        if let Some(g) = self.goodput_min
            && !(0.0..=1.0).contains(&g)
        {
            return bad("--goodput-min", g, "must be in [0, 1]");
        }
        Ok(())
    }

    /// Whether one request met every per-request limit (see the module docs).
    pub fn is_good(&self, r: &RequestRecord) -> bool {
        let ms = |us: u64| us as f64 / 1000.0;
        r.outcome.is_ok()
            && r.ttft_us.is_some_and(|t| ms(t) <= self.ttft_p99_ms)
            && (r.itl_count == 0 || ms(r.itl_mean_us) <= self.itl_p99_ms)
            && self.e2e_p99_ms.is_none_or(|l| ms(r.e2e_us) <= l)
    }
}

/// The share of `records` that met every per-request limit; `None` when there were none.
pub fn goodput<'a>(
    limits: &SlaLimits,
    records: impl IntoIterator<Item = &'a RequestRecord>,
) -> Option<f64> {
    let (mut n, mut good) = (0u64, 0u64);
    for r in records {
        n += 1;
        good += u64::from(limits.is_good(r));
    }
    (n > 0).then(|| good as f64 / n as f64)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `ttft_p99_ms`, `itl_p99_ms`, `error_rate`, `e2e_p99_ms` or `goodput`.
    pub metric: String,
    pub limit: f64,
    pub actual: Option<f64>,
    pub passed: bool,
}

/// Every configured check against a run's summary and goodput.
pub fn evaluate(limits: &SlaLimits, summary: &Summary, goodput: Option<f64>) -> Vec<Check> {
    let at_most = |metric: &str, limit: f64, actual: Option<f64>| Check {
        metric: metric.into(),
        limit,
        actual,
        passed: actual.is_some_and(|a| a <= limit),
    };
    let mut checks = vec![
        at_most("ttft_p99_ms", limits.ttft_p99_ms, summary.ttft_ms.p99),
        at_most("itl_p99_ms", limits.itl_p99_ms, summary.itl_ms.p99),
        at_most("error_rate", limits.max_error_rate, summary.error_rate),
    ];
    if let Some(l) = limits.e2e_p99_ms {
        checks.push(at_most("e2e_p99_ms", l, summary.e2e_ms.p99));
    }
    if let Some(min) = limits.goodput_min {
        checks.push(Check {
            metric: "goodput".into(),
            limit: min,
            actual: goodput,
            passed: goodput.is_some_and(|g| g >= min),
        });
    }
    checks
}

pub fn failed_metrics(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.metric.clone())
        .collect()
}

/// One trial of `--find`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub rate: f64,
    pub duration_s: f64,
    pub passed: bool,
    pub failed_metrics: Vec<String>,
    pub checks: Vec<Check>,
    pub out_dir: String,
}

/// `sla.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlaResult {
    pub rate: f64,
    pub duration_s: f64,
    pub limits: SlaLimits,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub failed_metrics: Vec<String>,
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<Trial>,
    pub max_rate_meeting_sla: Option<f64>,
    /// How the `--find` search ended; `None` for a fixed-rate run (and files written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_end: Option<SearchEnd>,
    /// The lowest rate of the search that failed; `None` when none failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_failing_rate: Option<f64>,
}

/// How a `--find` search ended. It matters for reading the answer: "the highest rate meeting
/// the SLA" is only a limit when a failing rate bounds it; when the whole range passed it is a
/// floor ("at least"), and a user who reads it as the limit would plan capacity on a number
/// nobody measured.
impl SlaResult {
    /// The `--find` answer in words ("at least …" when the whole range passed), or `None` for
    /// a fixed-rate run. Files written before `search_end` was recorded read as bracketed.
    pub fn find_answer(&self) -> Option<String> {
        let end = match (self.search_end, self.max_rate_meeting_sla) {
            (Some(end), _) => end,
            (None, Some(_)) => SearchEnd::Bracketed,
            (None, None) => return None,
        };
        Some(end.describe(self.max_rate_meeting_sla, self.lowest_failing_rate))
    }

    /// A fixed-rate result with these checks (for tests of the readers).
    #[cfg(test)]
    pub(crate) fn example(rate: f64, checks: Vec<Check>) -> SlaResult {
        SlaResult {
            rate,
            duration_s: 30.0,
            limits: SlaLimits {
                ttft_p99_ms: 500.0,
                itl_p99_ms: 50.0,
                max_error_rate: 0.01,
                e2e_p99_ms: None,
                goodput_min: None,
            },
            passed: checks.iter().all(|c| c.passed),
            failed_metrics: failed_metrics(&checks),
            checks,
            summary: Summary::new(&super::window::Window::default(), 30.0, Some(rate)),
            trials: vec![],
            max_rate_meeting_sla: None,
            search_end: None,
            lowest_failing_rate: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchEnd {
    /// A passing and a failing rate within the precision: the limit lies between them.
    Bracketed,
    /// The top of the range passed: the limit is at least there, no failing rate was found.
    WholeRangePassed,
    /// The bottom of the range failed: no rate in the range meets the SLA.
    NonePassed,
    /// The trial budget ran out before the bracket narrowed to the precision.
    BudgetExhausted,
    /// Stopped (Ctrl-C) before the search ended.
    Interrupted,
}

impl SearchEnd {
    /// The answer in words, for the terminal and the reports.
    pub fn describe(self, best: Option<f64>, lowest_failing: Option<f64>) -> String {
        let r = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} req/s"));
        match self {
            SearchEnd::Bracketed => r(best),
            SearchEnd::WholeRangePassed => format!(
                "at least {}: every rate searched passed, up to the top of the range; \
                 raise --find-to to find where the SLA stops holding",
                r(best)
            ),
            SearchEnd::NonePassed => format!(
                "none: the lowest rate searched ({}) already failed",
                r(lowest_failing)
            ),
            SearchEnd::BudgetExhausted => format!(
                "{} (the limit lies below {}; the trial budget ran out before the precision \
                 was reached, raise --max-trials to narrow it)",
                r(best),
                r(lowest_failing)
            ),
            SearchEnd::Interrupted => format!("{} so far (the search was interrupted)", r(best)),
        }
    }
}

/// Bisection over rate for the highest rate that meets the SLA. The search first tries both
/// ends (`from` failing means no rate in range meets it; `to` passing means the answer is at
/// least `to`), then halves the gap until it is within `precision` (relative to the passing
/// rate) or `max_trials` ran.
#[derive(Clone, Debug)]
pub struct Bisection {
    from: f64,
    to: f64,
    precision: f64,
    max_trials: usize,
    pass: Option<f64>,
    fail: Option<f64>,
    trials: usize,
}

impl Bisection {
    pub fn new(from: f64, to: f64, precision: f64, max_trials: usize) -> Result<Self, SlaError> {
        if !(from.is_finite() && from > 0.0) {
            return Err(SlaError::Invalid {
                name: "--find-from",
                value: from,
                reason: "must be positive",
            });
        }
        if !(to.is_finite() && to > from) {
            return Err(SlaError::Invalid {
                name: "--find-to",
                value: to,
                reason: "must be above --find-from",
            });
        }
        if !(precision > 0.0 && precision < 1.0) {
            return Err(SlaError::Invalid {
                name: "--precision",
                value: precision,
                reason: "must be in (0, 1), a fraction of the rate",
            });
        }
        if max_trials < 2 {
            return Err(SlaError::Invalid {
                name: "--max-trials",
                value: max_trials as f64,
                reason: "must be at least 2 (the search tries both ends of the range first)",
            });
        }
        Ok(Bisection {
            from,
            to,
            precision,
            max_trials,
            pass: None,
            fail: None,
            trials: 0,
        })
    }

    /// The next rate to try, or `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        if self.trials >= self.max_trials {
            return None;
        }
        self.wanted()
    }

    /// The rate the search would try next with an unlimited budget.
    fn wanted(&self) -> Option<f64> {
        match (self.pass, self.fail) {
            (None, None) => Some(self.from),
            (None, Some(_)) => None, // the lowest rate already failed
            (Some(p), None) if p >= self.to => None,
            (Some(_), None) => Some(self.to),
            (Some(p), Some(f)) if (f - p) / p <= self.precision => None,
            (Some(p), Some(f)) => Some((p + f) / 2.0),
        }
    }

    pub fn record(&mut self, rate: f64, passed: bool) {
        self.trials += 1;
        if passed {
            self.pass = Some(self.pass.map_or(rate, |p| p.max(rate)));
        } else {
            self.fail = Some(self.fail.map_or(rate, |f| f.min(rate)));
        }
    }

    /// The highest rate that passed.
    pub fn best(&self) -> Option<f64> {
        self.pass
    }

    /// The lowest rate that failed.
    pub fn lowest_failing(&self) -> Option<f64> {
        self.fail
    }

    /// How the search ended (or would end, were it stopped now).
    pub fn end(&self) -> SearchEnd {
        match (self.wanted(), self.pass, self.fail) {
            (Some(_), _, _) if self.trials >= self.max_trials => SearchEnd::BudgetExhausted,
            (Some(_), _, _) => SearchEnd::Interrupted,
            (None, _, Some(_)) if self.pass.is_none() => SearchEnd::NonePassed,
            (None, Some(_), None) => SearchEnd::WholeRangePassed,
            (None, _, _) => SearchEnd::Bracketed,
        }
    }
}

#[cfg(test)]
#[path = "sla_tests.rs"]
mod tests;
