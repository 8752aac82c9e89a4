//! After the load: each fault analysed against its own baseline and criteria, the run's
//! verdict, and the files (`result.json`, `summary.md`, the run's ledger slice, the sim's
//! ground truth).

use super::execute::{RunError, RunOptions};
use crate::analysis::baseline;
use crate::analysis::phases::{self, AnalysisConfig, FaultTiming, Recovery, Signal};
use crate::analysis::window::Window;
use crate::fault::Lifetime;
use crate::load::recorder::read_windows;
use crate::runner::result::{self, FaultResult, FaultStatus, RunResult, Status};
use crate::runner::shared::Shared;
use crate::runner::spec::Experiment;
use crate::sim;
use crate::version;

/// The analysis: each fault against its baseline and criteria, the run's verdict, the result.
pub(crate) fn conclude(
    exp: &Experiment,
    opts: &RunOptions,
    shared: &Shared,
    summary: crate::analysis::summary::Summary,
    started_at: String,
) -> Result<RunResult, RunError> {
    let windows = read_windows(&opts.out_dir.join(crate::load::recorder::WINDOWS_FILE))
        .map_err(RunError::Windows)?;
    let load_end = summary.duration_s;
    let warmup_s = exp.warmup.as_secs_f64();
    let signals = shared
        .signals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let aborted = shared
        .abort_reason
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut results = shared
        .results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    results.sort_by(|a, b| a.scheduled_at_s.total_cmp(&b.scheduled_at_s));
    analyze_faults(&mut results, exp, &windows, &signals, load_end);
    let max_lag_ms = summary
        .max_dispatch_lag_ms
        .unwrap_or_else(|| exp.load.overload.max_dispatch_lag_ms());
    let client_limited = invalidate_client_limited(&mut results, &windows, max_lag_ms);
    let was_aborted = aborted.is_some();
    let reason = aborted.or_else(|| (!client_limited.is_empty()).then(|| {
        format!(
            "invalid: the load generator was the bottleneck in {} (dispatch lag p90 above {max_lag_ms} ms); these numbers measure the client, not the cluster: lower the rate, raise max_connections (--max-connections) or send the load from more machines",
            client_limited.join(", ")
        )
    }));
    let status = if was_aborted {
        Status::Aborted
    } else if results
        .iter()
        .any(|r| matches!(r.status, FaultStatus::Invalid | FaultStatus::Skipped))
    {
        Status::Invalid
    } else if results.iter().any(|r| r.status == FaultStatus::Failed) {
        Status::Failed
    } else {
        Status::Pass
    };
    let events = shared
        .events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let result = RunResult {
        experiment: exp.name.clone(),
        run_id: opts.run_id.clone(),
        started_at,
        status,
        reason,
        warmup_s,
        load: summary,
        faults: results,
        events,
        definitions: result::definitions(),
    };
    Ok(result)
}

/// Analyses the faults in timeline order: each against its own baseline (the stretch after the
/// previous one was judged recovered, or the run's first baseline, saying why), then checks the
/// criteria. A fault that did not pass before the analysis never passes after it.
fn analyze_faults(
    results: &mut [FaultResult],
    exp: &Experiment,
    windows: &[Window],
    signals: &[Signal],
    load_end: f64,
) {
    let warmup_s = exp.warmup.as_secs_f64();
    let window_s = exp.analysis.window.as_secs_f64();
    let min_s = exp.analysis.baseline_min.as_secs_f64();
    let cfg = AnalysisConfig {
        window_s,
        recovery_windows: exp.analysis.recovery_windows as usize,
        tolerance: exp.analysis.tolerance.clone(),
    };
    let first_at = exp
        .timeline
        .first()
        .map(|f| f.at.as_secs_f64())
        .unwrap_or(load_end);
    let first = baseline::first(windows, warmup_s, first_at, min_s);
    let starts: Vec<f64> = results.iter().map(|r| r.scheduled_at_s).collect();
    let mut previous: Option<baseline::Previous> = None;
    for (i, r) in results.iter_mut().enumerate() {
        let Some(eff) = r.effective_s else {
            if r.status == FaultStatus::Invalid {
                // Inject or verify failed: it may have partly acted, so the stretch after it
                // is not known to be clean.
                previous = Some(baseline::Previous {
                    id: r.id.clone(),
                    recovered_at_s: None,
                });
            }
            continue;
        };
        // A one-shot fault whose end the runner watched for (a pod kill) ended at `cleared_s`,
        // or never did (`gave_up_s`); either way recovery counts from the injection.
        let scheduled = exp.timeline.iter().find(|f| f.id == r.id);
        let one_shot = scheduled.is_some_and(|f| f.spec.lifetime() == Lifetime::OneShot);
        // A one-shot fault with a `duration` is judged over that window (see `FaultTiming`).
        let observed_until_s = scheduled
            .filter(|f| one_shot && f.duration.is_some())
            .map(|f| f.end().as_secs_f64());
        let (cleared, ended) = match (r.cleared_s, r.gave_up_s) {
            (_, Some(gave_up)) => (gave_up, Some(false)),
            (Some(c), None) => (c, (one_shot && c > eff).then_some(true)),
            (None, None) => {
                previous = Some(baseline::Previous {
                    id: r.id.clone(),
                    recovered_at_s: None,
                });
                continue;
            }
        };
        let timing = FaultTiming {
            effective_s: eff,
            cleared_s: cleared,
            recovery_from_s: if one_shot { eff } else { cleared },
            ended,
            observed_until_s,
        };
        let mut end = starts
            .get(i + 1)
            .copied()
            .unwrap_or(load_end)
            .max(timing.during_end_s());
        if let Some(t) = exp.analysis.recovery_timeout {
            end = end.min(timing.recovery_from_s + t.as_secs_f64());
        }
        let b = baseline::for_fault(windows, &first, previous.as_ref(), eff, min_s, window_s);
        let mut a = phases::analyze(
            windows,
            &timing,
            (b.from_s, b.to_s),
            end.min(load_end),
            &cfg,
            signals,
        );
        a.baseline = Some(b);
        previous = Some(baseline::Previous {
            id: r.id.clone(),
            recovered_at_s: match a.recovery_time {
                Recovery::Recovered { after_s } => Some(timing.recovery_from_s + after_s),
                _ => None,
            },
        });
        let criteria = exp
            .timeline
            .iter()
            .find(|f| f.id == r.id)
            .and_then(|f| f.criteria.as_ref())
            .unwrap_or(&exp.criteria);
        r.checks = result::check(criteria, &a);
        if r.status == FaultStatus::Pass && r.checks.iter().any(|c| !c.passed) {
            r.status = FaultStatus::Failed;
        }
        r.analysis = Some(a);
    }
}

/// The share of a phase's requests that may be late (by more than the threshold) before the
/// phase counts as client-limited: 10%.
const PHASE_QUANTILE: f64 = 0.9;

/// Marks invalid every fault whose baseline (`pre`) or `during` phase was client-limited: the
/// dispatch-lag p90 of the phase's requests (all of them, merged) above `max_lag_ms`, i.e.
/// more than a tenth of them sent late by more than the threshold: the schedule was not
/// delivered. Windows are flagged at p99 (the warning, `summary.json`); a verdict that voids a
/// run asks for more than the scheduling hiccups a busy machine gives a sparse phase (the
/// shipped load-spike-2x on this 2-core machine, debug build, others compiling: baseline lag
/// p50 1.0 ms, p90 7.5 ms, p99 16.2 ms: delivered, with a few late requests). Returns
/// "<fault> <phase>" for each such phase.
fn invalidate_client_limited(
    results: &mut [FaultResult],
    windows: &[Window],
    max_lag_ms: f64,
) -> Vec<String> {
    let mut found = Vec::new();
    for r in results.iter_mut() {
        let Some(a) = &r.analysis else { continue };
        let mut why = Vec::new();
        for (name, p) in [("baseline", &a.pre), ("fault", &a.during)] {
            let in_phase: Vec<&Window> = windows
                .iter()
                .filter(|w| w.start_s >= p.from_s && w.start_s < p.to_s)
                .collect();
            let merged = Window::merge_range(in_phase.iter().copied(), p.from_s, p.to_s);
            let Some(p90) = merged.dispatch_lag.quantile_ms(PHASE_QUANTILE) else {
                continue;
            };
            if p90 > max_lag_ms {
                let limited = in_phase
                    .iter()
                    .filter(|w| w.client_limited(max_lag_ms))
                    .count();
                why.push(format!(
                    "{name} phase ({:.1}–{:.1} s) dispatch lag p90 {p90:.1} ms > {max_lag_ms} ms, {limited} of {} windows client-limited",
                    p.from_s,
                    p.to_s,
                    in_phase.len()
                ));
                found.push(format!("{} {name}", r.id));
            }
        }
        if !why.is_empty() {
            r.status = FaultStatus::Invalid;
            let text = format!(
                "client-limited: {}; the load generator could not keep to the schedule, so the phase measures the client, not the cluster",
                why.join("; ")
            );
            r.reason = Some(match r.reason.take() {
                Some(prev) => format!("{prev}; {text}"),
                None => text,
            });
        }
    }
    found
}

/// `sim-events.jsonl`: what really happened in the embedded sim (worker failed, router stopped
/// routing to it, ...), with `t_s` on the load's clock, to check measured times against.
pub(crate) fn write_ground_truth(
    events: &[sim::SimEvent],
    offset_s: f64,
    opts: &RunOptions,
) -> Result<(), RunError> {
    let mut text = String::new();
    for e in events {
        let mut e = e.clone();
        e.t_s -= offset_s;
        text += &serde_json::to_string(&e).expect("an event always serializes");
        text.push('\n');
    }
    let path = opts.out_dir.join("sim-events.jsonl");
    std::fs::write(&path, text).map_err(|source| RunError::Write { path, source })
}

pub(crate) fn write_outputs(result: &RunResult, opts: &RunOptions) -> Result<(), RunError> {
    let write = |name: &str, bytes: Vec<u8>| {
        let path = opts.out_dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| RunError::Write { path, source })
    };
    write(
        "result.json",
        serde_json::to_vec_pretty(&version::stamped(result, version::RESULT_SCHEMA_VERSION))
            .expect("a result always serializes"),
    )?;
    write(
        "summary.md",
        crate::report::markdown::experiment(result).into_bytes(),
    )?;
    // This run's slice of the ledger, next to its results.
    let text = std::fs::read_to_string(opts.ledger.path()).unwrap_or_default();
    let mine: String = text
        .lines()
        .filter(|l| l.contains(&format!("\"run_id\":\"{}\"", opts.run_id)))
        .map(|l| format!("{l}\n"))
        .collect();
    write("ledger.jsonl", mine.into_bytes())
}
