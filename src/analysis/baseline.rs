//! Which stretch of windows a fault is compared with.
//!
//! One baseline taken before the first fault of a game day is a few seconds of traffic an hour
//! before the last fault, and its p99 is one or two requests. So each fault is compared with the
//! stretch just before it: from the moment the previous fault was judged recovered to this
//! fault's effective time, less the time a request takes (requests still in flight when the fault
//! hit are ones it broke, not the healthy baseline). A stretch shorter than the minimum, or with
//! no requests, or after a fault that never recovered, is no baseline: the fault falls back to
//! the run's first one and says why.

use super::window::Window;
use serde::{Deserialize, Serialize};

/// The baseline a fault was judged against, as recorded in `result.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Baseline {
    pub from_s: f64,
    pub to_s: f64,
    /// Windows whose intended start lies in `[from_s, to_s)`.
    pub windows: u64,
    pub requests: u64,
    /// `true` when the stretch before the fault could not be used and the run's first baseline
    /// (warm-up to the first fault) was used instead.
    pub fell_back: bool,
    /// Why it fell back, or what is wrong with it (a first baseline shorter than the minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The fault before this one, as the analysis judged it.
#[derive(Clone, Debug, PartialEq)]
pub struct Previous {
    pub id: String,
    /// When it was judged recovered (the start of the first run of in-band windows); `None`
    /// when it was not (or was not analysed).
    pub recovered_at_s: Option<f64>,
}

/// `at_s` less the requests' end-to-end p99 over `[from_s, at_s)` (at most half the stretch),
/// so that requests in flight when the fault hit are not counted as healthy.
pub fn guarded_end(windows: &[Window], from_s: f64, at_s: f64) -> f64 {
    let before = Window::merge_range(windows, from_s, at_s);
    let guard = before.e2e.quantile_ms(0.99).unwrap_or(0.0) / 1000.0;
    (at_s - guard.min((at_s - from_s) / 2.0)).max(from_s)
}

fn count(windows: &[Window], from_s: f64, to_s: f64) -> (u64, u64) {
    let snap = |t: f64, w: &Window| (t / w.len_s.max(1e-9)).floor() * w.len_s;
    windows
        .iter()
        .filter(|w| w.start_s >= snap(from_s, w) && w.start_s < snap(to_s, w))
        .fold((0, 0), |(n, r), w| (n + 1, r + w.requests))
}

/// The run's first baseline: from the end of warm-up to the first fault (guarded).
pub fn first(windows: &[Window], warmup_s: f64, first_at_s: f64, min_s: f64) -> Baseline {
    let to_s = guarded_end(windows, warmup_s, first_at_s);
    let (n, requests) = count(windows, warmup_s, to_s);
    let len = to_s - warmup_s;
    let reason = (len + 1e-9 < min_s).then(|| {
        format!(
            "only {len:.1} s between the warm-up and the first fault (baseline_min {min_s:.0} s); \
             there is no other baseline to use"
        )
    });
    Baseline {
        from_s: warmup_s,
        to_s,
        windows: n,
        requests,
        fell_back: false,
        reason,
    }
}

/// The baseline of a fault effective at `at_s`: the stretch after `previous` recovered, or
/// `first` with the reason why not.
pub fn for_fault(
    windows: &[Window],
    first: &Baseline,
    previous: Option<&Previous>,
    at_s: f64,
    min_s: f64,
    window_s: f64,
) -> Baseline {
    let Some(prev) = previous else {
        return first.clone();
    };
    let fall_back = |why: String| Baseline {
        fell_back: true,
        reason: Some(why),
        ..first.clone()
    };
    let Some(recovered) = prev.recovered_at_s else {
        return fall_back(format!(
            "the previous fault {} was not judged recovered, so no stretch before this one is clean",
            prev.id
        ));
    };
    // Whole windows only: the first one that starts at or after the recovery.
    let from_s = (recovered / window_s - 1e-9).ceil() * window_s;
    let to_s = guarded_end(windows, from_s, at_s);
    let len = to_s - from_s;
    if len + 1e-9 < min_s {
        return fall_back(format!(
            "only {:.1} s between the recovery of {} (at {from_s:.1} s) and this fault \
             (baseline_min {min_s:.0} s)",
            len.max(0.0),
            prev.id
        ));
    }
    let (n, requests) = count(windows, from_s, to_s);
    if requests == 0 {
        return fall_back(format!(
            "no requests between the recovery of {} (at {from_s:.1} s) and this fault",
            prev.id
        ));
    }
    Baseline {
        from_s,
        to_s,
        windows: n,
        requests,
        fell_back: false,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(n: u64, requests: u64) -> Vec<Window> {
        (0..n)
            .map(|i| Window {
                requests,
                ok: requests,
                ..Window::new(i, 1.0)
            })
            .collect()
    }

    #[test]
    fn the_stretch_after_the_previous_recovery_is_the_baseline() {
        let ws = windows(200, 10);
        let first = first(&ws, 10.0, 40.0, 20.0);
        assert_eq!((first.from_s, first.to_s, first.windows), (10.0, 40.0, 30));
        assert_eq!(first.reason, None);
        let prev = Previous {
            id: "a".into(),
            recovered_at_s: Some(70.4),
        };
        let b = for_fault(&ws, &first, Some(&prev), 100.0, 20.0, 1.0);
        assert_eq!(
            b,
            Baseline {
                from_s: 71.0,
                to_s: 100.0,
                windows: 29,
                requests: 290,
                fell_back: false,
                reason: None
            }
        );
    }

    #[test]
    fn a_fault_too_close_after_the_previous_recovery_falls_back_and_says_why() {
        let ws = windows(200, 10);
        let first = first(&ws, 10.0, 40.0, 20.0);
        let prev = Previous {
            id: "a".into(),
            recovered_at_s: Some(85.0),
        };
        let b = for_fault(&ws, &first, Some(&prev), 100.0, 20.0, 1.0);
        assert!(b.fell_back);
        assert_eq!((b.from_s, b.to_s, b.requests), (10.0, 40.0, 300));
        assert_eq!(
            b.reason.as_deref(),
            Some(
                "only 15.0 s between the recovery of a (at 85.0 s) and this fault (baseline_min 20 s)"
            )
        );
    }

    #[test]
    fn a_previous_fault_that_never_recovered_means_the_first_baseline() {
        let ws = windows(200, 10);
        let first = first(&ws, 10.0, 40.0, 20.0);
        let prev = Previous {
            id: "kill".into(),
            recovered_at_s: None,
        };
        let b = for_fault(&ws, &first, Some(&prev), 150.0, 20.0, 1.0);
        assert!(b.fell_back);
        assert!(b.reason.unwrap().contains("kill was not judged recovered"));
    }

    #[test]
    fn a_short_first_baseline_says_so() {
        let ws = windows(60, 10);
        let b = first(&ws, 3.0, 8.0, 20.0);
        assert!(!b.fell_back);
        assert_eq!((b.windows, b.requests), (5, 50));
        assert!(
            b.reason
                .unwrap()
                .starts_with("only 5.0 s between the warm-up")
        );
    }
}
