//! Per-fault analysis: the pre / during / recovery phases, detection and recovery times, and
//! the impact against `pre`, exactly as defined in DESIGN.md.
//!
//! Everything is computed from windows keyed by *intended* start, so a request belongs to the
//! phase in which it was meant to start, whatever happened to it afterwards.

use super::baseline::Baseline;
use super::hist::Percentiles;
use super::window::Window;
use serde::{Deserialize, Serialize};

/// When a fault acted, in seconds from the start of the load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultTiming {
    /// The fault took effect: its inject began (whatever it changes changes after this; the
    /// verify that confirmed it came later), as the clearing is the start of its restore.
    pub effective_s: f64,
    /// The fault was cleared (its restore began; for one-shot faults such as a pod kill, the moment the
    /// replacements were Ready, or the effective time when that was not observed).
    pub cleared_s: f64,
    /// Recovery is measured from here: the clearing, or the injection for one-shot faults.
    pub recovery_from_s: f64,
    /// For a one-shot fault whose end is watched for (a pod kill: its replacements Ready):
    /// `Some(true)` when it ended at `cleared_s`, and the system has not recovered before then;
    /// `Some(false)` when it had not ended by `cleared_s` (the watch gave up there): not
    /// recovered, whatever the windows say. `None`: nothing to watch, the windows decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<bool>,
    /// A one-shot fault given a `duration`: the end of that observation window. The `during`
    /// phase runs to the later of it and `cleared_s`, so a pod kill is judged over the minute the
    /// user asked for, while its recovery still counts from the injection and not before
    /// `cleared_s` (the replacements Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_until_s: Option<f64>,
}

impl FaultTiming {
    /// Where the `during` phase ends: the clearing, or a one-shot fault's observation window
    /// if that ends later.
    pub fn during_end_s(&self) -> f64 {
        self.observed_until_s
            .map_or(self.cleared_s, |u| u.max(self.cleared_s))
    }
}

/// Tolerances of the baseline band (how far a window may be from `pre` and still count as
/// recovered).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tolerance {
    /// Absolute error-rate increase allowed (0.01 = one percentage point).
    pub error_rate: f64,
    /// Relative TTFT p50 increase allowed (0.25 = +25%).
    pub ttft_p50: f64,
    /// Relative TTFT p99 increase allowed.
    pub ttft_p99: f64,
    /// Relative throughput decrease allowed.
    pub throughput: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            error_rate: 0.01,
            ttft_p50: 0.25,
            ttft_p99: 0.5,
            throughput: 0.15,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnalysisConfig {
    pub window_s: f64,
    /// Consecutive windows that, taken together, must be in the band to count as recovered.
    pub recovery_windows: usize,
    pub tolerance: Tolerance,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            window_s: 1.0,
            recovery_windows: 5,
            tolerance: Tolerance::default(),
        }
    }
}

/// A time at which something other than the client noticed the fault (a probe, the pod
/// leaving Ready, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Signal {
    pub t_s: f64,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseStats {
    pub from_s: f64,
    pub to_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub output_tok_s: f64,
    pub ttft_ms: Percentiles,
    pub itl_ms: Percentiles,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Detection {
    /// Seconds from the fault's effective time to the first signal, and which signal.
    Detected { after_s: f64, signal: String },
    /// Requests kept failing until the fault was cleared: the system never routed around it.
    NotDetected,
    /// No client-visible failure and no probe signal: nothing to detect from.
    NoSignal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Recovery {
    /// Seconds from `recovery_from_s` to the first window from which N consecutive windows,
    /// taken together, are in the baseline band.
    Recovered { after_s: f64 },
    /// Not back in the band within this many seconds (to the end of the observation).
    NotRecovered { within_s: f64 },
    /// `pre` had no data to define a band with.
    NoBaseline,
}

/// Change of `during` against `pre`. Relative changes are fractions (+0.45 = +45%); `None`
/// when either side has no data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Impact {
    pub error_rate_during: Option<f64>,
    pub throughput_change: Option<f64>,
    pub ttft_p50_change: Option<f64>,
    pub ttft_p99_change: Option<f64>,
    pub itl_p99_change: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultAnalysis {
    /// Which stretch `pre` is and why (absent in results written before per-fault baselines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    pub pre: PhaseStats,
    pub during: PhaseStats,
    pub recovery: PhaseStats,
    pub detection: Detection,
    pub recovery_time: Recovery,
    pub impact: Impact,
}

fn phase(windows: &[Window], from_s: f64, to_s: f64) -> (PhaseStats, Window) {
    let w = Window::merge_range(windows, from_s, to_s);
    let len = (to_s - from_s).max(0.0);
    let stats = PhaseStats {
        from_s,
        to_s,
        requests: w.requests,
        errors: w.errors,
        error_rate: w.error_rate(),
        output_tok_s: if len > 0.0 {
            w.output_tokens as f64 / len
        } else {
            0.0
        },
        ttft_ms: w.ttft.percentiles(),
        itl_ms: w.itl.percentiles(),
    };
    (stats, w)
}

fn rel(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    match (after, before) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b - 1.0),
        _ => None,
    }
}

/// Is this window inside the baseline band around `pre`?
fn in_band(w: &Window, pre: &PhaseStats, tol: &Tolerance) -> bool {
    if w.requests == 0 {
        return false;
    }
    let err_ok = w.error_rate().unwrap_or(0.0) <= pre.error_rate.unwrap_or(0.0) + tol.error_rate;
    let within = |v: Option<f64>, base: Option<f64>, t: f64| match (v, base) {
        (Some(v), Some(b)) => v <= b * (1.0 + t),
        (None, _) => true,
        (Some(_), None) => true,
    };
    let ttft_ok = within(w.ttft.quantile_ms(0.5), pre.ttft_ms.p50, tol.ttft_p50)
        && within(w.ttft.quantile_ms(0.99), pre.ttft_ms.p99, tol.ttft_p99);
    let tput = if w.len_s > 0.0 {
        w.output_tokens as f64 / w.len_s
    } else {
        0.0
    };
    let tput_ok = tput >= pre.output_tok_s * (1.0 - tol.throughput);
    err_ok && ttft_ok && tput_ok
}

/// Analyzes one fault. `pre` is its baseline range (for every fault of a run: from the end of
/// warm-up to the first fault, the one stretch no fault has touched); `end_s` is where its
/// observation ends (the next fault, or the end of the load).
pub fn analyze(
    windows: &[Window],
    timing: &FaultTiming,
    pre: (f64, f64),
    end_s: f64,
    cfg: &AnalysisConfig,
    signals: &[Signal],
) -> FaultAnalysis {
    // Phase boundaries snap down to window boundaries, so that every window lands in exactly
    // one phase: the window in which the fault took effect belongs to `during`.
    let snap = |t: f64| (t / cfg.window_s).floor() * cfg.window_s;
    let (pre, _) = phase(windows, snap(pre.0), snap(pre.1));
    let (during, _) = phase(
        windows,
        snap(timing.effective_s),
        snap(timing.during_end_s()),
    );
    let (recovery, _) = phase(windows, snap(timing.during_end_s()), end_s);
    let detection = detect(windows, timing, &pre, cfg, signals);
    let recovery_time = recover(windows, timing, end_s, &pre, cfg);
    let impact = Impact {
        error_rate_during: during.error_rate,
        throughput_change: rel(Some(during.output_tok_s), Some(pre.output_tok_s)),
        ttft_p50_change: rel(during.ttft_ms.p50, pre.ttft_ms.p50),
        ttft_p99_change: rel(during.ttft_ms.p99, pre.ttft_ms.p99),
        itl_p99_change: rel(during.itl_ms.p99, pre.itl_ms.p99),
    };
    FaultAnalysis {
        baseline: None,
        pre,
        during,
        recovery,
        detection,
        recovery_time,
        impact,
    }
}

/// The earliest of: a probe signal after the fault took effect; the client-side moment new
/// requests stopped failing while the fault was still active.
fn detect(
    windows: &[Window],
    t: &FaultTiming,
    pre: &PhaseStats,
    cfg: &AnalysisConfig,
    signals: &[Signal],
) -> Detection {
    let probe = signals
        .iter()
        .filter(|s| s.t_s >= t.effective_s)
        .min_by(|a, b| a.t_s.total_cmp(&b.t_s))
        .map(|s| (s.t_s - t.effective_s, s.source.clone()));
    let limit = pre.error_rate.unwrap_or(0.0) + cfg.tolerance.error_rate;
    // Only windows that lie wholly inside the fault's active time: a request that succeeded
    // after the restore began says nothing about the system routing around the fault.
    let during: Vec<&Window> = windows
        .iter()
        .filter(|w| {
            w.start_s + w.len_s > t.effective_s && w.start_s + w.len_s <= t.during_end_s() + 1e-9
        })
        .collect();
    let failing = |w: &Window| w.error_rate().is_some_and(|r| r > limit);
    let client = match during.iter().rposition(|w| failing(w)) {
        None => None,
        Some(last) if last + 1 < during.len() => {
            // New requests stopped failing at the end of the last failing window, and the
            // fault was still active afterwards.
            let w = during[last];
            Some((
                (w.start_s + w.len_s).max(t.effective_s) - t.effective_s,
                "client: requests stopped failing".to_string(),
            ))
        }
        Some(_) => {
            if probe.is_none() {
                return Detection::NotDetected;
            }
            None
        }
    };
    match (probe, client) {
        (Some(p), Some(c)) => {
            let (after_s, signal) = if p.0 <= c.0 { p } else { c };
            Detection::Detected { after_s, signal }
        }
        (Some((after_s, signal)), None) | (None, Some((after_s, signal))) => {
            Detection::Detected { after_s, signal }
        }
        (None, None) => Detection::NoSignal,
    }
}

fn recover(
    windows: &[Window],
    t: &FaultTiming,
    end_s: f64,
    pre: &PhaseStats,
    cfg: &AnalysisConfig,
) -> Recovery {
    if t.ended == Some(false) {
        return Recovery::NotRecovered {
            within_s: t.cleared_s - t.recovery_from_s,
        };
    }
    if pre.requests == 0 {
        return Recovery::NoBaseline;
    }
    // Recovered when both are true: the fault ended, and the windows are back in the band.
    let not_before_s = match t.ended {
        Some(true) => t.cleared_s - t.recovery_from_s,
        _ => 0.0,
    };
    if t.recovery_from_s + not_before_s > end_s + 1e-9 {
        return Recovery::NotRecovered {
            within_s: end_s - t.recovery_from_s,
        };
    }
    let after: Vec<&Window> = windows
        .iter()
        .filter(|w| w.start_s >= t.recovery_from_s - 1e-9 && w.start_s + w.len_s <= end_s + 1e-9)
        .collect();
    // The N windows from a candidate start are judged together (their histograms merged), so
    // that a low request rate's per-window noise (one slow request is a window's p99) neither
    // hides a recovery nor fakes one.
    let n = cfg.recovery_windows.max(1);
    for k in 0..after.len().saturating_sub(n - 1) {
        let block = &after[k..k + n];
        let mut merged = Window {
            start_s: block[0].start_s,
            len_s: block.iter().map(|w| w.len_s).sum(),
            ..Window::default()
        };
        for w in block {
            merged.merge(w);
        }
        if block.iter().all(|w| w.requests > 0) && in_band(&merged, pre, &cfg.tolerance) {
            return Recovery::Recovered {
                after_s: (block[0].start_s - t.recovery_from_s).max(not_before_s),
            };
        }
    }
    Recovery::NotRecovered {
        within_s: end_s - t.recovery_from_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Outcome, RequestRecord, TokenSource};

    /// One window with `n` requests, `bad` of them failed, TTFT `ttft_ms`, 10 tokens each.
    fn window(i: u64, n: u64, bad: u64, ttft_ms: u64) -> Window {
        let mut w = Window::new(i, 1.0);
        for k in 0..n {
            let ok = k >= bad;
            w.record(&RequestRecord {
                id: k,
                class: "chat".into(),
                intended_s: i as f64 + k as f64 / n as f64,
                dispatch_lag_us: 10,
                ttft_us: ok.then_some(ttft_ms * 1000),
                e2e_us: ttft_ms * 2000,
                itl_count: 0,
                itl_mean_us: 0,
                itl_max_us: 0,
                output_tokens: if ok { 10 } else { 0 },
                token_source: TokenSource::Usage,
                input_tokens: 5,
                finish_reason: None,
                outcome: if ok {
                    Outcome::Ok
                } else {
                    Outcome::HttpStatus { code: 503 }
                },
                error: None,
            });
        }
        w
    }

    /// 0–30 s healthy; fault at 30 s: 3 s of 30% errors, then routed around (slower); cleared
    /// at 50 s; back to normal from 54 s.
    fn scenario() -> Vec<Window> {
        (0..80)
            .map(|i| match i {
                0..30 => window(i, 20, 0, 100),
                30..33 => window(i, 20, 6, 150),
                33..54 => window(i, 20, 0, 300),
                _ => window(i, 20, 0, 100),
            })
            .collect()
    }

    fn timing() -> FaultTiming {
        FaultTiming {
            effective_s: 30.0,
            cleared_s: 50.0,
            recovery_from_s: 50.0,
            ended: None,
            observed_until_s: None,
        }
    }

    #[test]
    fn client_side_detection_is_when_new_requests_stop_failing() {
        let a = analyze(
            &scenario(),
            &timing(),
            (10.0, 30.0),
            80.0,
            &AnalysisConfig::default(),
            &[],
        );
        assert_eq!(
            a.detection,
            Detection::Detected {
                after_s: 3.0,
                signal: "client: requests stopped failing".into()
            }
        );
    }

    #[test]
    fn an_earlier_probe_signal_wins_and_is_named() {
        let probe = [Signal {
            t_s: 31.5,
            source: "probe health".into(),
        }];
        let a = analyze(
            &scenario(),
            &timing(),
            (10.0, 30.0),
            80.0,
            &AnalysisConfig::default(),
            &probe,
        );
        assert_eq!(
            a.detection,
            Detection::Detected {
                after_s: 1.5,
                signal: "probe health".into()
            }
        );
    }

    #[test]
    fn recovery_is_the_first_of_n_consecutive_windows_back_in_band() {
        let a = analyze(
            &scenario(),
            &timing(),
            (10.0, 30.0),
            80.0,
            &AnalysisConfig::default(),
            &[],
        );
        assert_eq!(a.recovery_time, Recovery::Recovered { after_s: 4.0 });
    }

    #[test]
    fn not_recovered_within_the_observation_is_a_value() {
        let a = analyze(
            &scenario(),
            &timing(),
            (10.0, 30.0),
            56.0,
            &AnalysisConfig::default(),
            &[],
        );
        assert_eq!(a.recovery_time, Recovery::NotRecovered { within_s: 6.0 });
    }

    #[test]
    fn failures_until_the_fault_clears_mean_not_detected() {
        let ws: Vec<Window> = (0..60)
            .map(|i| {
                if (30..50).contains(&i) {
                    window(i, 20, 5, 100)
                } else {
                    window(i, 20, 0, 100)
                }
            })
            .collect();
        let a = analyze(
            &ws,
            &timing(),
            (10.0, 30.0),
            60.0,
            &AnalysisConfig::default(),
            &[],
        );
        assert_eq!(a.detection, Detection::NotDetected);
    }

    #[test]
    fn successes_after_the_restore_began_are_not_detection() {
        // Failing until the restore at 50.5 s; window 50 succeeds, but it ends after the
        // restore began, so it does not show the system routing around the fault.
        let ws: Vec<Window> = (0..60)
            .map(|i| {
                if (30..50).contains(&i) {
                    window(i, 20, 5, 100)
                } else {
                    window(i, 20, 0, 100)
                }
            })
            .collect();
        let t = FaultTiming {
            effective_s: 30.0,
            cleared_s: 50.5,
            recovery_from_s: 50.5,
            ended: None,
            observed_until_s: None,
        };
        let a = analyze(&ws, &t, (10.0, 30.0), 60.0, &AnalysisConfig::default(), &[]);
        assert_eq!(a.detection, Detection::NotDetected);
    }

    /// A pod kill at 30 s: windows back in the band from 33 s.
    fn one_shot(ended: Option<bool>, cleared_s: f64) -> FaultAnalysis {
        let ws: Vec<Window> = (0..80)
            .map(|i| match i {
                30..33 => window(i, 20, 6, 100),
                _ => window(i, 20, 0, 100),
            })
            .collect();
        let t = FaultTiming {
            effective_s: 30.0,
            cleared_s,
            recovery_from_s: 30.0,
            ended,
            observed_until_s: None,
        };
        analyze(&ws, &t, (10.0, 30.0), 80.0, &AnalysisConfig::default(), &[])
    }

    #[test]
    fn a_one_shot_fault_recovers_at_the_later_of_its_end_and_the_windows() {
        // Windows back at 33 s, replacements Ready at 41.5 s: recovered after 11.5 s.
        assert_eq!(
            one_shot(Some(true), 41.5).recovery_time,
            Recovery::Recovered { after_s: 11.5 }
        );
        // Ready at 31 s, windows back at 33 s: the windows decide.
        assert_eq!(
            one_shot(Some(true), 31.0).recovery_time,
            Recovery::Recovered { after_s: 3.0 }
        );
        assert_eq!(
            one_shot(None, 30.0).recovery_time,
            Recovery::Recovered { after_s: 3.0 }
        );
    }

    /// The same pod kill observed for a 20 s window: `during` is the window (the 3 failing
    /// windows among 20), recovery still counts from the kill.
    #[test]
    fn a_one_shot_fault_with_a_window_is_judged_over_it_and_recovers_from_the_kill() {
        let ws: Vec<Window> = (0..80)
            .map(|i| match i {
                30..33 => window(i, 20, 6, 100),
                _ => window(i, 20, 0, 100),
            })
            .collect();
        let t = FaultTiming {
            effective_s: 30.0,
            cleared_s: 34.5,
            recovery_from_s: 30.0,
            ended: Some(true),
            observed_until_s: Some(50.0),
        };
        assert_eq!(t.during_end_s(), 50.0);
        let a = analyze(&ws, &t, (10.0, 30.0), 80.0, &AnalysisConfig::default(), &[]);
        assert_eq!((a.during.from_s, a.during.to_s), (30.0, 50.0));
        assert_eq!((a.during.requests, a.during.errors), (400, 18));
        assert_eq!(a.recovery_time, Recovery::Recovered { after_s: 4.5 });
    }

    #[test]
    fn a_one_shot_fault_that_never_ended_is_not_recovered_though_the_windows_are() {
        assert_eq!(
            one_shot(Some(false), 55.0).recovery_time,
            Recovery::NotRecovered { within_s: 25.0 }
        );
    }

    #[test]
    fn phases_split_requests_by_intended_start_and_impact_is_against_pre() {
        let a = analyze(
            &scenario(),
            &timing(),
            (10.0, 30.0),
            80.0,
            &AnalysisConfig::default(),
            &[],
        );
        assert_eq!(a.pre.requests, 20 * 20);
        assert_eq!(a.during.requests, 20 * 20);
        assert_eq!(a.during.errors, 18);
        assert_eq!(a.recovery.requests, 30 * 20);
        assert_eq!(a.impact.error_rate_during, Some(18.0 / 400.0));
        // pre: 200 tok/s; during: (400 - 18) × 10 / 20 s = 191 tok/s.
        let t = a.impact.throughput_change.unwrap();
        assert!((t - (191.0 / 200.0 - 1.0)).abs() < 1e-9, "{t}");
        assert!(
            a.impact.ttft_p50_change.unwrap() > 1.9,
            "300 ms against 100 ms"
        );
    }
}
