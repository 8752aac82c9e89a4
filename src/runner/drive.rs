//! One fault's life during a run: wait for its time, check the steady state, prepare, write the
//! ledger, inject, verify, hold, restore.

use crate::fault::exec::Hosts;
use crate::fault::ledger::Entry;
use crate::fault::{FaultContext, Lifetime};
use crate::runner::result::{FaultResult, FaultStatus};
use crate::runner::shared::{Active, Shared};
use crate::runner::spec::{self, Experiment, ScheduledFault};
use crate::runner::watch::steady_state_problem;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

pub(crate) async fn sleep_until_or_abort(shared: &Shared, at_s: f64) -> bool {
    let at = shared.start + Duration::from_secs_f64(at_s.max(0.0));
    tokio::select! {
        _ = tokio::time::sleep_until(at.into()) => true,
        _ = shared.abort.cancelled() => false,
    }
}

/// One fault's life: wait, check steady state, prepare, ledger, inject, verify, wait, restore.
/// The result is published as it goes (the progress display reads it) and once more at the end,
/// whichever way the life ended.
pub(crate) async fn drive_fault(
    shared: &Shared,
    exp: &Experiment,
    f: &ScheduledFault,
    hosts: Arc<Hosts>,
    run_id: &str,
) {
    let mut r = FaultResult {
        id: f.id.clone(),
        kind: f.spec.kind().to_string(),
        action: spec::describe_fault(f, exp),
        status: FaultStatus::Aborted,
        reason: None,
        scheduled_at_s: f.at.as_secs_f64(),
        effective_s: None,
        cleared_s: None,
        gave_up_s: None,
        verification: None,
        analysis: None,
        checks: vec![],
    };
    shared.set_result(r.clone());
    live(shared, exp, f, hosts, run_id, &mut r).await;
    shared.set_result(r);
}

/// Ends a fault's life early: its status and why.
fn stop(r: &mut FaultResult, status: FaultStatus, reason: impl Into<String>) {
    r.status = status;
    r.reason = Some(reason.into());
}

async fn live(
    shared: &Shared,
    exp: &Experiment,
    f: &ScheduledFault,
    hosts: Arc<Hosts>,
    run_id: &str,
    r: &mut FaultResult,
) {
    if !sleep_until_or_abort(shared, f.at.as_secs_f64()).await {
        r.reason = Some("the run was aborted before this fault".into());
        return;
    }
    if let Some(ss) = &exp.steady_state
        && let Some(problem) = steady_state_problem(shared, ss)
    {
        shared.event(
            "skipped",
            Some(&f.id),
            format!("steady state does not hold: {problem}"),
        );
        return stop(
            r,
            FaultStatus::Skipped,
            format!("not injected: the system was not in its steady state ({problem})"),
        );
    }
    let window = f.duration.unwrap_or(Duration::from_secs(60));
    let mut ctx = FaultContext::new(
        run_id,
        &f.id,
        hosts,
        Utc::now() + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero()),
    );
    ctx.control = Some(shared.control.clone());
    ctx.kube = shared.kube.clone();
    let ctx = Arc::new(ctx);
    let undo = match f.spec.prepare(&ctx).await {
        Ok(u) => u,
        Err(e) => {
            shared.event("inject_failed", Some(&f.id), e.to_string());
            return stop(r, FaultStatus::Invalid, format!("prepare failed: {e}"));
        }
    };
    // On disk before anything changes.
    let entry = match Entry::new(&ctx, &f.spec, &undo) {
        Ok(e) => e,
        Err(e) => {
            return stop(
                r,
                FaultStatus::Invalid,
                format!("cannot describe the fault for the ledger: {e}"),
            );
        }
    };
    if let Err(e) = shared.ledger.record_inject(&entry) {
        return stop(
            r,
            FaultStatus::Invalid,
            format!("not injected: the ledger could not be written: {e}"),
        );
    }
    shared.active.lock().await.push(Active {
        id: f.id.clone(),
        spec: f.spec.clone(),
        ctx: ctx.clone(),
        undo: undo.clone(),
    });
    // The fault is effective from the moment its inject begins: whatever it changes (a mode
    // set, a process killed, a pod deleted) happens after this, at a moment only the fault kind
    // knows, and the verify that follows only confirms it. Timing it at the end of the verify
    // instead left out of `during` the requests the fault broke while the inject and verify
    // commands ran (seconds, over ssh on a busy machine), and put the system's detection of it
    // before the fault's "effective" time.
    let injecting_s = shared.now_s();
    shared.event("inject", Some(&f.id), r.action.clone());
    if let Err(e) = f.spec.inject(&ctx, &undo).await {
        // The original error is what the user needs; the restore that follows puts back what
        // may have partly happened, cancels the dead-man timer and closes the ledger entry.
        let err = e.to_string();
        shared.event("inject_failed", Some(&f.id), err.clone());
        let reason = match shared.restore_noting(&f.id, Some(&err)).await {
            Ok(()) => format!("inject failed (nothing left behind): {err}"),
            Err(re) => format!(
                "inject failed: {err}; the restore after it failed too, left for `faultline recover`: {re}"
            ),
        };
        return stop(r, FaultStatus::Invalid, reason);
    }
    match f.spec.verify(&ctx, &undo).await {
        Ok(v) => {
            r.effective_s = Some(injecting_s);
            shared.event("verified", Some(&f.id), format!("{v:?}"));
            r.verification = Some(v);
        }
        Err(e) => {
            shared.event("verify_failed", Some(&f.id), e.to_string());
            let _ = shared.restore(&f.id).await;
            return stop(
                r,
                FaultStatus::Invalid,
                format!("the fault did not take effect: {e}"),
            );
        }
    }
    r.status = FaultStatus::Pass;
    shared.set_result(r.clone());
    match f.spec.lifetime() {
        Lifetime::Held => hold_and_restore(shared, f, r).await,
        Lifetime::OneShot => {
            // Nothing to hold: restore bookkeeping right away.
            if let Err(e) = shared.restore(&f.id).await {
                stop(
                    r,
                    FaultStatus::Invalid,
                    format!("restore failed, left for `faultline recover`: {e}"),
                );
            }
            let eff = r.effective_s.unwrap_or(injecting_s);
            wait_one_shot_cleared(shared, exp, f, &ctx, &undo, eff, r).await;
        }
    }
}

/// A held fault: in effect until its end, then restored. It clears when its restore begins
/// (the first thing a restore does is undo the change; cancelling dead-man timers and
/// bookkeeping come after).
async fn hold_and_restore(shared: &Shared, f: &ScheduledFault, r: &mut FaultResult) {
    let completed = sleep_until_or_abort(shared, f.end().as_secs_f64()).await;
    let restore_started = shared.now_s();
    match shared.restore(&f.id).await {
        Ok(()) => r.cleared_s = Some(restore_started),
        Err(e) => {
            stop(
                r,
                FaultStatus::Invalid,
                format!("restore failed, left for `faultline recover`: {e}"),
            );
        }
    }
    if !completed {
        stop(
            r,
            FaultStatus::Aborted,
            "the run was aborted during this fault",
        );
    }
}

/// A one-shot fault (a pod kill) clears when the kind says so (the replacements are Ready); the
/// wait runs from the injection and is as long as the criteria allow, and until it ends the
/// cluster has not recovered, whatever the windows say. When the entry gives a `duration`, the
/// fault's life also lasts that observation window (the analysis judges the `during` phase over
/// it), so the next serial fault starts after both.
async fn wait_one_shot_cleared(
    shared: &Shared,
    exp: &Experiment,
    f: &ScheduledFault,
    ctx: &FaultContext,
    undo: &crate::fault::Undo,
    eff: f64,
    r: &mut FaultResult,
) {
    let window_end = f.duration.map(|_| f.end().as_secs_f64());
    let limit_s = ready_limit_s(exp, f, shared.now_s(), eff);
    let waited = Duration::from_secs_f64((eff + limit_s - shared.now_s()).max(0.0));
    let cleared = async {
        let res = f.spec.wait_cleared(ctx, undo, waited).await;
        if let Ok(Some(what)) = &res {
            shared.event("cleared", Some(&f.id), what.clone());
        }
        (res, shared.now_s())
    };
    let window = async {
        if let Some(end) = window_end {
            let at = shared.start + Duration::from_secs_f64(end);
            tokio::time::sleep_until(at.into()).await;
        }
    };
    tokio::select! {
        ((res, at), ()) = async { tokio::join!(cleared, window) } => match res {
            Ok(None) => r.cleared_s = Some(eff),
            Ok(Some(_)) => r.cleared_s = Some(at),
            Err(e) => {
                shared.event("not_cleared", Some(&f.id), e.to_string());
                r.cleared_s = None;
                r.gave_up_s = Some(at);
                if r.status == FaultStatus::Pass {
                    r.status = FaultStatus::Failed;
                    r.reason = Some(format!("not recovered within {limit_s:.1}s: {e}"));
                }
            }
        },
        _ = shared.abort.cancelled() => {
            r.cleared_s = None;
            r.status = FaultStatus::Aborted;
            r.reason = Some("the run was aborted while waiting for the fault to clear".into());
        }
    }
}

/// How long after the injection a one-shot fault may take to clear: the criteria's
/// `max_recovery` (the fault's own, else the experiment's), else `analysis.recovery_timeout`,
/// and never past the end of the load.
fn ready_limit_s(exp: &Experiment, f: &ScheduledFault, now_s: f64, eff_s: f64) -> f64 {
    let criteria = f.criteria.as_ref().unwrap_or(&exp.criteria);
    let load_left = exp.load.schedule.duration().as_secs_f64() - now_s;
    let mut limit = (now_s - eff_s) + load_left.max(0.0);
    for t in [criteria.max_recovery, exp.analysis.recovery_timeout]
        .into_iter()
        .flatten()
    {
        limit = limit.min(t.as_secs_f64());
    }
    limit
}
