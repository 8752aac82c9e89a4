//! What an experiment run is doing right now, for a progress display: where on the timeline it
//! is, which fault acts, and what the users of the target see (errors and TTFT of the last
//! seconds). The runner builds these snapshots; how they are shown is the caller's business.

use crate::load::recorder::Progress;
use crate::runner::result::{FaultResult, FaultStatus};
use std::sync::Arc;

/// Seconds of completions the live error rate is taken over.
pub const ERROR_RATE_SECONDS: u64 = 5;

/// One snapshot of a running experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveStatus {
    pub elapsed_s: f64,
    pub total_s: f64,
    /// `warm-up`, `baseline`, `during`, `recovery`, or `done`.
    pub phase: &'static str,
    /// The fault the phase belongs to: `id (kind)`.
    pub fault: Option<String>,
    /// Errors among the requests that completed in the last [`ERROR_RATE_SECONDS`] s.
    pub error_rate: Option<f64>,
    /// TTFT p99 of the most recently sealed window.
    pub ttft_p99_ms: Option<f64>,
    pub sent: u64,
    pub completed: u64,
    pub errors: u64,
}

/// Called with a fresh snapshot about twice a second while the run's load goes.
pub type Observer = Arc<dyn Fn(&LiveStatus) + Send + Sync>;

fn label(r: &FaultResult) -> String {
    format!("{} ({})", r.id, r.kind)
}

/// The snapshot at `now_s`, from the load's counters and the faults' results so far (in
/// timeline order).
pub fn snapshot(
    now_s: f64,
    total_s: f64,
    warmup_s: f64,
    p: &Progress,
    faults: &[FaultResult],
) -> LiveStatus {
    // A fault in effect: injected, not yet cleared (a pod kill waits here for its replacements).
    let active = faults.iter().find(|r| {
        r.effective_s.is_some()
            && r.cleared_s.is_none()
            && r.gave_up_s.is_none()
            && r.status == FaultStatus::Pass
    });
    let last_done = faults
        .iter()
        .filter(|r| r.cleared_s.is_some() || r.gave_up_s.is_some())
        .max_by(|a, b| a.scheduled_at_s.total_cmp(&b.scheduled_at_s));
    let (phase, fault) = if now_s >= total_s {
        ("done", None)
    } else if let Some(r) = active {
        ("during", Some(label(r)))
    } else if now_s < warmup_s {
        ("warm-up", None)
    } else if let Some(r) = last_done {
        ("recovery", Some(label(r)))
    } else {
        ("baseline", None)
    };
    LiveStatus {
        elapsed_s: now_s,
        total_s,
        phase,
        fault,
        error_rate: p.recent_error_rate(now_s, ERROR_RATE_SECONDS),
        ttft_p99_ms: p.last.as_ref().and_then(|w| w.ttft_p99_ms),
        sent: p.sent,
        completed: p.completed,
        errors: p.errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::recorder::LiveSecond;

    fn fault(id: &str, at: f64, eff: Option<f64>, cleared: Option<f64>) -> FaultResult {
        FaultResult {
            id: id.into(),
            kind: "pod-kill".into(),
            action: String::new(),
            status: FaultStatus::Pass,
            reason: None,
            scheduled_at_s: at,
            effective_s: eff,
            cleared_s: cleared,
            gave_up_s: None,
            verification: None,
            analysis: None,
            checks: vec![],
        }
    }

    #[test]
    fn the_phase_follows_the_timeline() {
        let mut p = Progress::default();
        for s in 0..12 {
            p.live.push_back(LiveSecond {
                second: s,
                completed: 10,
                errors: if s >= 9 { 5 } else { 0 },
                max_ttft_ms: Some(50.0),
            });
        }
        let a = fault("a", 8.0, None, None);
        let s = snapshot(3.0, 60.0, 5.0, &p, std::slice::from_ref(&a));
        assert_eq!((s.phase, s.fault.as_deref()), ("warm-up", None));
        let s = snapshot(6.0, 60.0, 5.0, &p, std::slice::from_ref(&a));
        assert_eq!(s.phase, "baseline");
        let a = fault("a", 8.0, Some(8.1), None);
        let s = snapshot(12.0, 60.0, 5.0, &p, std::slice::from_ref(&a));
        assert_eq!(
            (s.phase, s.fault.as_deref()),
            ("during", Some("a (pod-kill)"))
        );
        // Seconds 7–11: 50 completions, 15 errors.
        assert_eq!(s.error_rate, Some(0.3));
        let a = fault("a", 8.0, Some(8.1), Some(14.0));
        let s = snapshot(20.0, 60.0, 5.0, &p, std::slice::from_ref(&a));
        assert_eq!(
            (s.phase, s.fault.as_deref()),
            ("recovery", Some("a (pod-kill)"))
        );
        assert_eq!(snapshot(60.0, 60.0, 5.0, &p, &[a]).phase, "done");
    }
}
