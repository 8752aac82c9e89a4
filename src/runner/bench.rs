//! The benchmark pipeline: warm-up → single-request baseline → ramp → SLA validation at the
//! recommended point → cost, all into one folder.
//!
//! It is the article's `automated_benchmark.sh` as one command, because the phases depend on
//! each other (the SLA rate comes from the ramp, the cost from the measured throughput) and a
//! newcomer should get a full performance profile from one line. Warm-up results are discarded
//! (first requests pay for connections, caches and lazy initialisation); the baseline is one
//! closed-loop user — the best latency the cluster can give, the yardstick for everything after.
//!
//! Profiles fix the phase lengths: `quick` (default, ≈ 2–3 min against the embedded sim),
//! `production` (the article's plan, ≈ 54 min) and the hidden `smoke` (seconds, for tests).

use crate::analysis::cost::{self, CostTable};
use crate::analysis::saturation::{Criteria, RampResult, Reason, Step};
use crate::analysis::sla::{SlaLimits, SlaResult};
use crate::analysis::summary::Summary;
use crate::load::client::{Client, ClientConfig, ClientError};
use crate::load::engine::{self, Control, EngineConfig, EngineError};
use crate::load::recorder::Progress;
use crate::load::schedule::{ArrivalProcess, RateShape, Schedule};
use crate::load::workload::Workload;
use crate::runner::ramp::{self, RampError, RampEvent, RampPlan};
use crate::runner::sla::{self as sla_run, SlaPlan, SlaRunError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub const BENCH_FILE: &str = "bench.json";

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown profile '{0}' (known: quick, production)")]
    UnknownProfile(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{phase}: {source}")]
    Engine {
        phase: &'static str,
        source: EngineError,
    },
    #[error(transparent)]
    Ramp(#[from] RampError),
    #[error(transparent)]
    Sla(#[from] SlaRunError),
    #[error(transparent)]
    Cost(#[from] cost::CostError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

mod profile;
pub use profile::Profile;

/// How to price the GPUs; `assumed` marks a default rather than the user's numbers.
#[derive(Clone, Debug)]
pub struct Pricing {
    pub gpus: u32,
    pub price_per_gpu_hour: f64,
    pub assumed: bool,
}

pub struct BenchPlan {
    pub profile: Profile,
    pub workload: Workload,
    pub arrival: ArrivalProcess,
    pub seed: u64,
    pub window_s: f64,
    pub criteria: Criteria,
    pub fraction: f64,
    pub limits: SlaLimits,
    pub pricing: Option<Pricing>,
    pub prometheus: Option<String>,
    pub out_dir: PathBuf,
    /// The connection pool and the dispatch-lag threshold of every phase.
    pub overload: crate::load::pool::Overload,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    pub name: String,
    pub seconds: f64,
}

/// `bench.json`: the index of the folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub profile: String,
    pub phases: Vec<PhaseTime>,
    pub baseline: Summary,
    pub ramp: String,
    pub sla: String,
    pub cost: Option<String>,
    pub bottleneck: Option<serde_json::Value>,
    /// Assumptions a reader must know (a default GPU price, a skipped phase, ...).
    pub notes: Vec<String>,
}

/// What the pipeline reports as it goes.
pub enum BenchEvent<'a> {
    PhaseStarted {
        name: &'static str,
    },
    /// `what` says where in the phase (e.g. "step 2/6 at 20 req/s").
    Tick {
        phase: &'static str,
        what: &'a str,
        now_s: f64,
        total_s: f64,
        progress: &'a Progress,
    },
    RampStepDone {
        what: &'a str,
        step: &'a Step,
        saturated: Option<Reason>,
    },
    PhaseDone {
        name: &'static str,
        seconds: f64,
    },
}

/// Everything the pipeline produced, for the command's summary.
pub struct BenchOutput {
    pub result: BenchResult,
    pub ramp: RampResult,
    pub sla: Option<SlaResult>,
    pub cost: Option<CostTable>,
}

/// Which component saturated first during the ramp, from Prometheus (when one was given):
/// writes `bottleneck.json` into `dir` and returns the report for `bench.json`. A Prometheus
/// that cannot be asked is a note, not a failed bench: the load numbers stand on their own.
pub async fn after_ramp(
    window: crate::analysis::bottleneck::Window,
    prometheus: Option<&str>,
    tls: &crate::tls::TlsOptions,
    dir: &std::path::Path,
    notes: &mut Vec<String>,
) -> Option<serde_json::Value> {
    use crate::analysis::bottleneck;
    let url = prometheus?;
    match bottleneck::analyze(url, tls, window, &bottleneck::default_signals()).await {
        Ok(report) => {
            if let Err(e) = report.write(dir) {
                notes.push(format!("bottleneck analysis not written: {e}"));
            }
            serde_json::to_value(&report).ok()
        }
        Err(e) => {
            notes.push(format!("no bottleneck analysis: {e}"));
            None
        }
    }
}

pub async fn run(
    plan: BenchPlan,
    client_cfg: &ClientConfig,
    control: Arc<Control>,
    mut on_event: impl FnMut(BenchEvent<'_>),
) -> Result<BenchOutput, BenchError> {
    let p = plan.profile.clone();
    let mut phases = vec![];
    let mut notes = vec![];
    let mut timed = |name: &'static str, started: Instant, on: &mut dyn FnMut(BenchEvent<'_>)| {
        let seconds = started.elapsed().as_secs_f64();
        on(BenchEvent::PhaseDone { name, seconds });
        phases.push(PhaseTime {
            name: name.into(),
            seconds,
        });
    };

    // 1. Warm-up, discarded.
    on_event(BenchEvent::PhaseStarted { name: "warm-up" });
    let t = Instant::now();
    let warm_dir = std::env::temp_dir().join(format!("faultline-warmup-{}", std::process::id()));
    let open = |rate: f64, duration| Schedule::Open {
        shape: RateShape::Fixed(rate),
        process: plan.arrival,
        duration,
        max_in_flight: None,
    };
    engine_phase(
        "warm-up",
        open(p.warmup_rate, p.warmup),
        &plan,
        client_cfg,
        &control,
        warm_dir.clone(),
        &mut on_event,
    )
    .await?;
    let _ = std::fs::remove_dir_all(&warm_dir);
    timed("warm-up", t, &mut on_event);

    // 2. Baseline: one closed-loop user.
    on_event(BenchEvent::PhaseStarted { name: "baseline" });
    let t = Instant::now();
    let baseline = engine_phase(
        "baseline",
        Schedule::Closed {
            users: 1,
            duration: p.baseline,
        },
        &plan,
        client_cfg,
        &control,
        plan.out_dir.join("baseline"),
        &mut on_event,
    )
    .await?;
    timed("baseline", t, &mut on_event);

    // 3. Ramp.
    on_event(BenchEvent::PhaseStarted { name: "ramp" });
    let ramp_started = chrono::Utc::now();
    let t = Instant::now();
    let ramp_plan = RampPlan {
        loads: ramp::rate_steps(p.ramp_from, p.ramp_to, p.ramp_step)?,
        step_duration: p.step_duration,
        arrival: plan.arrival,
        workload: plan.workload.clone(),
        seed: plan.seed,
        window_s: plan.window_s,
        criteria: plan.criteria.clone(),
        fraction: plan.fraction,
        early_stop: true,
        overload: plan.overload.clone(),
        out_dir: plan.out_dir.join("ramp"),
    };
    let step_s = p.step_duration.as_secs_f64();
    let mut what = String::new();
    let ramp = ramp::run(ramp_plan, client_cfg, control.clone(), |ev| match ev {
        RampEvent::StepStarted { index, of, load } => {
            what = format!("step {}/{of} at {load}", index + 1);
        }
        RampEvent::Tick {
            now_s, progress, ..
        } => on_event(BenchEvent::Tick {
            phase: "ramp",
            what: &what,
            now_s,
            total_s: step_s,
            progress,
        }),
        RampEvent::StepDone {
            step, saturated, ..
        } => on_event(BenchEvent::RampStepDone {
            what: &what,
            step,
            saturated,
        }),
    })
    .await?;
    timed("ramp", t, &mut on_event);
    let ramp_window = crate::analysis::bottleneck::Window {
        start: ramp_started,
        end: chrono::Utc::now(),
    };
    let bottleneck = after_ramp(
        ramp_window,
        plan.prometheus.as_deref(),
        &client_cfg.tls,
        &plan.out_dir,
        &mut notes,
    )
    .await;
    if ramp.recommended_is_extrapolated {
        notes.push(format!(
            "the ramp never saturated up to {} req/s; the SLA rate is {:.0}% of the highest tested rate",
            p.ramp_to,
            plan.fraction * 100.0
        ));
    }

    // 4. SLA at the recommended operating point.
    on_event(BenchEvent::PhaseStarted { name: "sla" });
    let t = Instant::now();
    let sla_rate = ramp.recommended_rate;
    let sla = if sla_rate > 0.0 && !control.is_stopped() {
        let what = format!("{sla_rate:.2} req/s");
        let total_s = p.sla.as_secs_f64();
        Some(
            sla_run::run(
                SlaPlan {
                    rate: sla_rate,
                    duration: p.sla,
                    arrival: plan.arrival,
                    workload: plan.workload.clone(),
                    seed: plan.seed,
                    window_s: plan.window_s,
                    limits: plan.limits.clone(),
                    find: None,
                    overload: plan.overload.clone(),
                    out_dir: plan.out_dir.join("sla"),
                },
                client_cfg,
                control.clone(),
                |tick| {
                    on_event(BenchEvent::Tick {
                        phase: "sla",
                        what: &what,
                        now_s: tick.now_s,
                        total_s,
                        progress: tick.progress,
                    })
                },
            )
            .await?,
        )
    } else {
        notes.push("SLA validation skipped: no positive recommended rate".into());
        None
    };
    timed("sla", t, &mut on_event);

    // 5. Cost: flat out at max throughput, and at the throughput measured at the SLA rate.
    let cost = match &plan.pricing {
        Some(pr) => {
            if pr.assumed {
                notes.push(format!(
                    "cost assumes {} GPU(s) (the sim preset's) at a default {:.2}/GPU-hour; pass --gpus and --price",
                    pr.gpus, pr.price_per_gpu_hour
                ));
            }
            let mut rows = vec![];
            if ramp.max_throughput.output_tok_s > 0.0 {
                rows.push(cost::cost_row(
                    "max throughput (flat out)",
                    pr.gpus,
                    pr.price_per_gpu_hour,
                    ramp.max_throughput.output_tok_s,
                    None,
                )?);
            }
            if let Some(s) = sla.as_ref().filter(|s| s.summary.output_tok_s > 0.0) {
                rows.push(cost::cost_row(
                    &format!("at the recommended {:.2} req/s (measured)", s.rate),
                    pr.gpus,
                    pr.price_per_gpu_hour,
                    s.summary.output_tok_s,
                    None,
                )?);
            }
            Some(CostTable { rows })
        }
        None => None,
    };
    let werr = |path: PathBuf| move |source| BenchError::Write { path, source };
    if let Some(c) = &cost {
        let path = plan.out_dir.join("cost.json");
        ramp::write_json(&path, c).map_err(werr(path.clone()))?;
    }
    let result = BenchResult {
        profile: p.name.into(),
        phases,
        baseline,
        ramp: format!("ramp/{}", ramp::RAMP_FILE),
        sla: format!("sla/{}", sla_run::SLA_FILE),
        cost: cost.as_ref().map(|_| "cost.json".into()),
        bottleneck,
        notes,
    };
    let path = plan.out_dir.join(BENCH_FILE);
    ramp::write_json(&path, &result).map_err(werr(path.clone()))?;
    Ok(BenchOutput {
        result,
        ramp,
        sla,
        cost,
    })
}

async fn engine_phase(
    phase: &'static str,
    schedule: Schedule,
    plan: &BenchPlan,
    client_cfg: &ClientConfig,
    control: &Arc<Control>,
    out_dir: PathBuf,
    on_event: &mut impl FnMut(BenchEvent<'_>),
) -> Result<Summary, BenchError> {
    let total_s = schedule.duration().as_secs_f64();
    let out = engine::run(
        EngineConfig {
            schedule,
            workload: plan.workload.clone(),
            seed: plan.seed,
            window_s: plan.window_s,
            out_dir,
            overload: plan.overload.clone(),
        },
        Client::new(client_cfg.clone(), Instant::now())?,
        control.clone(),
        |now_s, progress| {
            on_event(BenchEvent::Tick {
                phase,
                what: "",
                now_s,
                total_s,
                progress,
            })
        },
    )
    .await
    .map_err(|source| BenchError::Engine { phase, source })?;
    Ok(out.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_prometheus_there_is_no_bottleneck_and_no_note() {
        let now = chrono::Utc::now();
        let window = crate::analysis::bottleneck::Window {
            start: now - chrono::Duration::seconds(60),
            end: now,
        };
        let mut notes = vec![];
        let dir = std::env::temp_dir();
        assert_eq!(
            after_ramp(window, None, &Default::default(), &dir, &mut notes).await,
            None
        );
        assert!(notes.is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_gives_signals_in_error_and_no_primary() {
        let now = chrono::Utc::now();
        let window = crate::analysis::bottleneck::Window {
            start: now - chrono::Duration::seconds(60),
            end: now,
        };
        let mut notes = vec![];
        let dir = tempfile_dir();
        let got = after_ramp(
            window,
            Some("http://127.0.0.1:9"),
            &Default::default(),
            &dir,
            &mut notes,
        )
        .await
        .expect("a report, with every signal in error");
        assert!(got["primary"].is_null(), "{got}");
        let signals = got["signals"].as_array().unwrap();
        assert!(!signals.is_empty());
        assert!(signals.iter().all(|s| s["status"] == "error"), "{got}");
        assert!(dir.join("bottleneck.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("faultline-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
