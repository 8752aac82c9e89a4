//! Running a ramp: load steps of rising rate (or user count) against one target, each a
//! separate run of the one load engine, until the cluster saturates.
//!
//! One engine run per step (rather than one run with a stepped schedule) gives each step its
//! own folder, its own exact summary and a clean boundary: requests of step N are all judged in
//! step N, however long they take. The target (sim or endpoint) stays up across steps, so what
//! is measured is the cluster under rising load, not its start-up.
//!
//! Early stop: once a step saturates, one more step confirms it and the ramp ends — a ramp is
//! for finding the limit, not for holding a broken cluster past it (`early_stop: false` runs
//! every step, for a full latency–throughput curve).

use crate::analysis::saturation::{self, Criteria, RampResult, Reason, Step};
use crate::load::client::{Client, ClientConfig, ClientError};
use crate::load::engine::{self, Control, EngineConfig, EngineError};
use crate::load::recorder::Progress;
use crate::load::schedule::{ArrivalProcess, RateShape, Schedule};
use crate::load::workload::Workload;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const RAMP_FILE: &str = "ramp.json";

#[derive(Debug, thiserror::Error)]
pub enum RampError {
    #[error("a ramp needs at least one step")]
    NoSteps,
    #[error("invalid step load '{0}': rates and user counts must be positive")]
    BadLoad(String),
    #[error("invalid fraction '{0}': must be in (0, 1]")]
    BadFraction(f64),
    #[error(transparent)]
    Criteria(#[from] saturation::SaturationError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("step {step}: {source}")]
    Engine { step: usize, source: EngineError },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The load of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepLoad {
    /// Open loop at this many requests per second.
    Rate(f64),
    /// Closed loop with this many users.
    Users(u64),
}

impl StepLoad {
    /// `NN-<rate>` / `NN-c<users>`: the step's folder name under `steps/`.
    fn dir_name(&self, i: usize) -> String {
        match self {
            StepLoad::Rate(r) => format!("{i:02}-{r}"),
            StepLoad::Users(u) => format!("{i:02}-c{u}"),
        }
    }
}

impl std::fmt::Display for StepLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepLoad::Rate(r) => write!(f, "{r} req/s"),
            StepLoad::Users(u) => write!(f, "{u} users"),
        }
    }
}

/// Rates `from, from+step, …` up to `to` inclusive (with a little slack for float steps).
pub fn rate_steps(from: f64, to: f64, step: f64) -> Result<Vec<StepLoad>, RampError> {
    if !(from > 0.0 && step > 0.0 && to >= from && from.is_finite() && to.is_finite()) {
        return Err(RampError::BadLoad(format!("{from}..{to} step {step}")));
    }
    // Counted before any is built: `--step 0.000000001` over 1..1e9 overflowed the capacity.
    let count = ((to - from) / step + 1e-9).floor() + 1.0;
    if count.is_nan()
        || count > crate::limits::MAX_RAMP_STEPS as f64
        || to > crate::limits::MAX_RATE
    {
        return Err(RampError::BadLoad(format!(
            "{from}..{to} step {step} is {count:e} steps (at most {} steps, rates up to {} req/s)",
            crate::limits::MAX_RAMP_STEPS,
            crate::limits::MAX_RATE
        )));
    }
    let n = count as usize - 1;
    Ok((0..=n)
        .map(|i| StepLoad::Rate(((from + i as f64 * step) * 1e6).round() / 1e6))
        .collect())
}

pub struct RampPlan {
    pub loads: Vec<StepLoad>,
    pub step_duration: Duration,
    pub arrival: ArrivalProcess,
    pub workload: Workload,
    pub seed: u64,
    pub window_s: f64,
    pub criteria: Criteria,
    pub fraction: f64,
    pub early_stop: bool,
    /// The connection pool and the dispatch-lag threshold of every step.
    pub overload: crate::load::pool::Overload,
    /// `ramp.json` and `steps/` go here.
    pub out_dir: PathBuf,
}

/// What the ramp reports as it goes, for a progress display.
pub enum RampEvent<'a> {
    StepStarted {
        index: usize,
        of: usize,
        load: StepLoad,
    },
    Tick {
        index: usize,
        now_s: f64,
        progress: &'a Progress,
    },
    StepDone {
        index: usize,
        step: &'a Step,
        saturated: Option<Reason>,
    },
}

/// Runs the ramp against `client_cfg` and writes `ramp.json`. `control` stops it (between or
/// within steps); the steps run so far are still analysed and written.
pub async fn run(
    plan: RampPlan,
    client_cfg: &ClientConfig,
    control: Arc<Control>,
    mut on_event: impl FnMut(RampEvent<'_>),
) -> Result<RampResult, RampError> {
    if plan.loads.is_empty() {
        return Err(RampError::NoSteps);
    }
    plan.criteria.check()?;
    if !(plan.fraction > 0.0 && plan.fraction <= 1.0) {
        return Err(RampError::BadFraction(plan.fraction));
    }
    for load in &plan.loads {
        match *load {
            StepLoad::Rate(r) if !(r.is_finite() && r > 0.0) => {
                return Err(RampError::BadLoad(r.to_string()));
            }
            StepLoad::Users(0) => return Err(RampError::BadLoad("0 users".into())),
            _ => {}
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut saturated_at = None;
    let mut stopped_early = false;
    for (i, load) in plan.loads.iter().enumerate() {
        if control.is_stopped() {
            stopped_early = true;
            break;
        }
        if plan.early_stop && saturation::should_stop(saturated_at, steps.len()) {
            stopped_early = true;
            break;
        }
        on_event(RampEvent::StepStarted {
            index: i,
            of: plan.loads.len(),
            load: *load,
        });
        let schedule = match *load {
            StepLoad::Rate(r) => Schedule::Open {
                shape: RateShape::Fixed(r),
                process: plan.arrival,
                duration: plan.step_duration,
                max_in_flight: None,
            },
            StepLoad::Users(u) => Schedule::Closed {
                users: u as usize,
                duration: plan.step_duration,
            },
        };
        let dir = plan.out_dir.join("steps").join(load.dir_name(i));
        let out = engine::run(
            EngineConfig {
                schedule,
                workload: plan.workload.clone(),
                seed: plan.seed.wrapping_add(i as u64),
                window_s: plan.window_s,
                out_dir: dir.clone(),
                overload: plan.overload.clone(),
            },
            Client::new(client_cfg.clone(), Instant::now())?,
            control.clone(),
            |now_s, progress| {
                on_event(RampEvent::Tick {
                    index: i,
                    now_s,
                    progress,
                })
            },
        )
        .await
        .map_err(|source| RampError::Engine { step: i, source })?;
        steps.push(Step {
            rate: match load {
                StepLoad::Rate(r) => Some(*r),
                StepLoad::Users(_) => None,
            },
            concurrency: match load {
                StepLoad::Users(u) => Some(*u),
                StepLoad::Rate(_) => None,
            },
            summary: out.summary,
            out_dir: dir.display().to_string(),
        });
        // A step the client could not deliver says nothing about the cluster (see
        // `saturation`): it is never the saturation point, and the ramp stops there when early
        // stopping is on (higher steps would only measure the client harder).
        let client_limited = steps[i].summary.client_limited;
        let verdict = if client_limited {
            None
        } else {
            saturation::check_step(&plan.criteria, &steps, i).map(|(r, _)| r)
        };
        if saturated_at.is_none() && verdict.is_some() {
            saturated_at = Some(i);
        }
        on_event(RampEvent::StepDone {
            index: i,
            step: &steps[i],
            saturated: verdict,
        });
        if out.stopped_early || (client_limited && plan.early_stop) {
            stopped_early = true;
            break;
        }
    }
    let result = saturation::analyze(steps, plan.criteria, plan.fraction, stopped_early);
    let path = plan.out_dir.join(RAMP_FILE);
    write_json(&path, &result).map_err(|source| RampError::Write { path, source })?;
    Ok(result)
}

/// Writes `value` as pretty JSON, creating the folder.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        path,
        serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_steps_include_both_ends() {
        let r = rate_steps(5.0, 60.0, 5.0).unwrap();
        assert_eq!(r.len(), 12);
        assert_eq!(r[11], StepLoad::Rate(60.0));
        assert_eq!(rate_steps(0.5, 1.0, 0.1).unwrap().len(), 6);
    }

    #[test]
    fn rate_steps_refuse_a_backwards_range() {
        assert!(rate_steps(10.0, 5.0, 1.0).is_err());
        assert!(rate_steps(1.0, 5.0, 0.0).is_err());
    }

    #[test]
    fn rate_steps_are_counted_before_they_are_built() {
        // Issue 9: this panicked with a capacity overflow.
        let e = rate_steps(1.0, 1e9, 1e-9).unwrap_err().to_string();
        assert!(e.contains("at most 10000 steps"), "{e}");
        assert!(rate_steps(1.0, 1e12, 1e11).is_err());
        assert_eq!(rate_steps(1.0, 10_000.0, 1.0).unwrap().len(), 10_000);
    }

    #[test]
    fn step_folders_sort_in_run_order() {
        assert_eq!(StepLoad::Rate(7.5).dir_name(3), "03-7.5");
        assert_eq!(StepLoad::Users(8).dir_name(12), "12-c8");
    }
}
