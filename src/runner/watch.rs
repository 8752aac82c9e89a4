//! Watching a run: the steady-state hypothesis before each fault, stop conditions, and probes
//! recorded on the timeline (a detection probe's failure is a detection signal).

use crate::analysis::phases::Signal;
use crate::fault::exec::Hosts;
use crate::load::recorder::{LiveSecond, Progress};
use crate::runner::probes;
use crate::runner::shared::Shared;
use crate::runner::spec::{self, StopCondition};
use std::sync::Arc;
use std::time::Duration;

/// `Some(reason)` when the steady-state hypothesis does not hold right now.
pub(crate) fn steady_state_problem(shared: &Shared, ss: &spec::SteadyState) -> Option<String> {
    let p = shared
        .progress
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let now = shared.now_s();
    let secs = ss.window.as_secs().max(1);
    if let Some(max) = ss.max_error_rate
        && let Some(rate) = p.recent_error_rate(now, secs)
        && rate > max
    {
        return Some(format!(
            "error rate {:.2}% over the last {secs}s > {:.2}%",
            rate * 100.0,
            max * 100.0
        ));
    }
    if let Some(max) = ss.max_ttft_p99 {
        let limit = max.as_secs_f64() * 1000.0;
        let worst = recent_seconds(&p, now, secs)
            .filter_map(|l| l.max_ttft_ms)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        if let Some(w) = worst
            && w > limit
        {
            return Some(format!(
                "TTFT up to {w:.0} ms over the last {secs}s > {limit:.0} ms"
            ));
        }
    }
    None
}

fn recent_seconds(p: &Progress, now_s: f64, secs: u64) -> impl Iterator<Item = &LiveSecond> {
    let now = now_s as u64;
    let from = now.saturating_sub(secs);
    p.live
        .iter()
        .filter(move |l| l.second >= from && l.second < now)
}

pub(crate) async fn watch_stop_conditions(shared: &Shared, conds: &[StopCondition]) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.abort.cancelled() => return,
        }
        let p = shared
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = shared.now_s();
        for c in conds {
            let tripped = match c {
                StopCondition::ErrorRateAbove { rate, for_ } => {
                    // The error rate of the requests that finished in the last `for` seconds.
                    let secs = for_.as_secs().max(1);
                    now >= secs as f64 && p.recent_error_rate(now, secs).is_some_and(|r| r > *rate)
                }
                StopCondition::TtftP99Above { ttft, for_ } => {
                    let secs = for_.as_secs().max(1);
                    let limit = ttft.as_secs_f64() * 1000.0;
                    let seen: Vec<_> = recent_seconds(&p, now, secs).collect();
                    seen.len() as u64 >= secs
                        && seen
                            .iter()
                            .all(|l| l.max_ttft_ms.is_some_and(|t| t > limit))
                }
            };
            if tripped {
                shared.abort(format!("stop condition tripped: {}", describe_stop(c)));
                shared.restore_all().await;
                return;
            }
        }
    }
}

fn describe_stop(c: &StopCondition) -> String {
    match c {
        StopCondition::ErrorRateAbove { rate, for_ } => {
            format!(
                "error rate above {:.1}% for {}",
                rate * 100.0,
                humantime::format_duration(*for_)
            )
        }
        StopCondition::TtftP99Above { ttft, for_ } => format!(
            "TTFT above {} for {}",
            humantime::format_duration(*ttft),
            humantime::format_duration(*for_)
        ),
    }
}

pub(crate) async fn run_probe(shared: &Shared, probe: &spec::Probe, hosts: &Arc<Hosts>) {
    let http = match probes::http_client(probe) {
        Ok(c) => c,
        Err(e) => {
            // The TLS files were read and checked with the experiment; should they have changed
            // since, the probe says so once instead of failing the run.
            shared.event("probe_failed", None, format!("{}: {e}", probe.name));
            return;
        }
    };
    let mut tick = tokio::time::interval(probe.every);
    let mut last_ok: Option<bool> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.abort.cancelled() => return,
        }
        let res = probes::check(probe, hosts, shared.kube.as_ref(), &http).await;
        let ok = res.is_ok();
        if last_ok != Some(ok) {
            let detail = match &res {
                Ok(d) | Err(d) => d.clone(),
            };
            shared.event(
                if ok { "probe_ok" } else { "probe_failed" },
                None,
                format!("{}: {detail}", probe.name),
            );
            if !ok && probe.detection {
                shared
                    .signals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Signal {
                        t_s: shared.now_s(),
                        source: format!("probe {}", probe.name),
                    });
            }
        }
        last_ok = Some(ok);
    }
}
