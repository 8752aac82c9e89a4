//! Running SLA validation: sustained load at one rate, then every check (and goodput, from
//! the per-request records) against the limits; or, with `find`, a bisection over rate of
//! short trials for the highest rate that still meets the SLA.
//!
//! Goodput is computed from `requests.jsonl` rather than from histograms because it is a
//! per-request property (did *this* request meet every limit?), which percentiles cannot give.

use crate::analysis::sla::{self, Bisection, SlaLimits, SlaResult, Trial};
use crate::analysis::summary::Summary;
use crate::load::client::{Client, ClientConfig, ClientError};
use crate::load::engine::{self, Control, EngineConfig, EngineError};
use crate::load::record::RequestRecord;
use crate::load::recorder::{Progress, REQUESTS_FILE};
use crate::load::schedule::{ArrivalProcess, RateShape, Schedule};
use crate::load::workload::Workload;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SLA_FILE: &str = "sla.json";

#[derive(Debug, thiserror::Error)]
pub enum SlaRunError {
    #[error(transparent)]
    Limits(#[from] sla::SlaError),
    #[error("invalid rate '{0}': must be positive")]
    BadRate(f64),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot read {path}: {message}")]
    Records { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The bisection of `--find`.
#[derive(Clone, Debug)]
pub struct FindPlan {
    pub from: f64,
    pub to: f64,
    /// Stop when the gap between passing and failing rates is below this fraction.
    pub precision: f64,
    pub max_trials: usize,
    pub trial_duration: Duration,
}

pub struct SlaPlan {
    pub rate: f64,
    pub duration: Duration,
    pub arrival: ArrivalProcess,
    pub workload: Workload,
    pub seed: u64,
    pub window_s: f64,
    pub limits: SlaLimits,
    pub find: Option<FindPlan>,
    /// The connection pool and the dispatch-lag threshold of every trial.
    pub overload: crate::load::pool::Overload,
    /// `sla.json` goes here; the sustained run's files too, trials under `trials/`.
    pub out_dir: PathBuf,
}

/// Progress for a display: which run (`None` = the sustained run, `Some(i)` = trial i) at
/// which rate, and the engine's counters.
pub struct SlaTick<'a> {
    pub trial: Option<usize>,
    pub rate: f64,
    pub now_s: f64,
    pub total_s: f64,
    pub progress: &'a Progress,
}

/// Runs the validation (with `find`: the search, then no separate sustained run — the result's
/// rate, checks and summary are those of the highest passing trial, or of the lowest failing
/// one when none passed) and writes `sla.json`.
pub async fn run(
    plan: SlaPlan,
    client_cfg: &ClientConfig,
    control: Arc<Control>,
    mut on_tick: impl FnMut(SlaTick<'_>),
) -> Result<SlaResult, SlaRunError> {
    plan.limits.check()?;
    let result = match &plan.find {
        None => {
            if !(plan.rate.is_finite() && plan.rate > 0.0) {
                return Err(SlaRunError::BadRate(plan.rate));
            }
            let (summary, checks) = one_run(
                &plan,
                client_cfg,
                &control,
                plan.rate,
                plan.duration,
                &plan.out_dir,
                |now_s, progress| {
                    on_tick(SlaTick {
                        trial: None,
                        rate: plan.rate,
                        now_s,
                        total_s: plan.duration.as_secs_f64(),
                        progress,
                    })
                },
            )
            .await?;
            let failed = sla::failed_metrics(&checks);
            SlaResult {
                rate: plan.rate,
                duration_s: plan.duration.as_secs_f64(),
                limits: plan.limits.clone(),
                passed: failed.is_empty(),
                failed_metrics: failed,
                checks,
                summary,
                trials: vec![],
                max_rate_meeting_sla: None,
                search_end: None,
                lowest_failing_rate: None,
            }
        }
        Some(find) => {
            let mut bisect = Bisection::new(find.from, find.to, find.precision, find.max_trials)?;
            let mut trials: Vec<(Trial, Summary)> = vec![];
            while let Some(rate) = bisect.next() {
                if control.is_stopped() {
                    break;
                }
                let i = trials.len();
                let dir = plan.out_dir.join("trials").join(format!("{i:02}-{rate}"));
                let (summary, checks) = one_run(
                    &plan,
                    client_cfg,
                    &control,
                    rate,
                    find.trial_duration,
                    &dir,
                    |now_s, progress| {
                        on_tick(SlaTick {
                            trial: Some(i),
                            rate,
                            now_s,
                            total_s: find.trial_duration.as_secs_f64(),
                            progress,
                        })
                    },
                )
                .await?;
                let failed = sla::failed_metrics(&checks);
                bisect.record(rate, failed.is_empty());
                let trial = Trial {
                    rate,
                    duration_s: find.trial_duration.as_secs_f64(),
                    passed: failed.is_empty(),
                    failed_metrics: failed,
                    checks,
                    out_dir: dir.display().to_string(),
                };
                trials.push((trial, summary));
            }
            let best = bisect.best();
            // The trial that stands for the result: the best passing one, else the lowest.
            let pick = trials
                .iter()
                .filter(|(t, _)| Some(t.rate) == best)
                .chain(trials.iter().min_by(|a, b| a.0.rate.total_cmp(&b.0.rate)))
                .next()
                .cloned();
            let Some((chosen, summary)) = pick else {
                return Err(SlaRunError::BadRate(find.from));
            };
            SlaResult {
                rate: chosen.rate,
                duration_s: chosen.duration_s,
                limits: plan.limits.clone(),
                checks: chosen.checks,
                passed: best.is_some(),
                failed_metrics: chosen.failed_metrics,
                summary,
                trials: trials.into_iter().map(|(t, _)| t).collect(),
                max_rate_meeting_sla: best,
                search_end: Some(bisect.end()),
                lowest_failing_rate: bisect.lowest_failing(),
            }
        }
    };
    let path = plan.out_dir.join(SLA_FILE);
    super::ramp::write_json(&path, &result)
        .map_err(|source| SlaRunError::Write { path, source })?;
    Ok(result)
}

async fn one_run(
    plan: &SlaPlan,
    client_cfg: &ClientConfig,
    control: &Arc<Control>,
    rate: f64,
    duration: Duration,
    dir: &Path,
    on_tick: impl FnMut(f64, &Progress),
) -> Result<(Summary, Vec<sla::Check>), SlaRunError> {
    let out = engine::run(
        EngineConfig {
            schedule: Schedule::Open {
                shape: RateShape::Fixed(rate),
                process: plan.arrival,
                duration,
                max_in_flight: None,
            },
            workload: plan.workload.clone(),
            seed: plan.seed,
            window_s: plan.window_s,
            out_dir: dir.to_path_buf(),
            overload: plan.overload.clone(),
        },
        Client::new(client_cfg.clone(), Instant::now())?,
        control.clone(),
        on_tick,
    )
    .await?;
    let goodput = match plan.limits.goodput_min {
        Some(_) => {
            let records = read_records(&dir.join(REQUESTS_FILE))?;
            sla::goodput(&plan.limits, &records)
        }
        None => None,
    };
    let checks = sla::evaluate(&plan.limits, &out.summary, goodput);
    Ok((out.summary, checks))
}

/// Every record of a `requests.jsonl`.
pub fn read_records(path: &Path) -> Result<Vec<RequestRecord>, SlaRunError> {
    let err = |message: String| SlaRunError::Records {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut out = vec![];
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| err(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| err(format!("line {}: {e}", n + 1)))?);
    }
    Ok(out)
}
