//! State shared by an experiment run's tasks (load, fault drivers, probes, stop conditions):
//! the clock, the events, the faults in effect, and the one place that restores them.

use crate::analysis::phases::Signal;
use crate::fault::kube_target::KubeTarget;
use crate::fault::ledger::Ledger;
use crate::fault::{FaultContext, FaultSpec, Restoration, Undo};
use crate::load::engine::Control;
use crate::load::recorder::Progress;
use crate::runner::result::{Event, FaultResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A fault that is (or may be) in effect, with what is needed to restore it.
pub(crate) struct Active {
    pub(crate) id: String,
    pub(crate) spec: FaultSpec,
    pub(crate) ctx: Arc<FaultContext>,
    pub(crate) undo: Undo,
}

/// Shared between the run's tasks.
pub(crate) struct Shared {
    pub(crate) start: Instant,
    pub(crate) control: Arc<Control>,
    pub(crate) progress: Mutex<Progress>,
    pub(crate) events: Mutex<Vec<Event>>,
    pub(crate) active: tokio::sync::Mutex<Vec<Active>>,
    pub(crate) results: Mutex<Vec<FaultResult>>,
    pub(crate) signals: Mutex<Vec<Signal>>,
    pub(crate) abort: CancellationToken,
    pub(crate) abort_reason: Mutex<Option<String>>,
    pub(crate) ledger: Ledger,
    pub(crate) kube: Option<KubeTarget>,
}

impl Shared {
    pub(crate) fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
    pub(crate) fn event(&self, kind: &str, fault: Option<&str>, detail: impl Into<String>) {
        let e = Event {
            t_s: self.now_s(),
            kind: kind.into(),
            fault: fault.map(str::to_string),
            detail: detail.into(),
        };
        tracing::info!(t_s = e.t_s, kind, fault, detail = %e.detail, "event");
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
    }
    pub(crate) fn abort(&self, reason: String) {
        let mut r = self.abort_reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            self.event("abort", None, reason.clone());
            *r = Some(reason);
        }
        self.control.stop();
        self.abort.cancel();
    }
    pub(crate) fn set_result(&self, r: FaultResult) {
        let mut all = self.results.lock().unwrap_or_else(|e| e.into_inner());
        match all.iter_mut().find(|x| x.id == r.id) {
            Some(x) => *x = r,
            None => all.push(r),
        }
    }

    /// Restores one active fault (if it still is) and marks it done in the ledger.
    pub(crate) async fn restore(&self, id: &str) -> Result<(), String> {
        self.restore_noting(id, None).await
    }

    /// [`Shared::restore`] after a failed inject: the ledger entry is closed with `inject_error`.
    pub(crate) async fn restore_noting(
        &self,
        id: &str,
        inject_error: Option<&str>,
    ) -> Result<(), String> {
        let mut active = self.active.lock().await;
        let Some(pos) = active.iter().position(|a| a.id == id) else {
            return Ok(());
        };
        let a = &active[pos];
        let tried = a
            .spec
            .restore_with_retries(&a.ctx, &a.undo, 4, Duration::from_millis(500), |n, e| {
                if !e.is_permanent() {
                    self.event("restore_failed", Some(id), format!("attempt {n}: {e}"));
                }
            })
            .await;
        match tried {
            Ok(_) => {
                let done = match inject_error {
                    Some(err) => self.ledger.record_failed_inject(&a.ctx.run_id, &a.id, err),
                    None => self
                        .ledger
                        .record_done(&a.ctx.run_id, &a.id, Restoration::Normal),
                };
                if let Err(e) = done {
                    tracing::error!("cannot mark {id} done in the ledger: {e}");
                }
                self.event("restored", Some(id), format!("{} restored", a.spec.kind()));
                active.remove(pos);
                Ok(())
            }
            Err(e) if e.is_permanent() => {
                // Said once; no later retry. The ledger entry stays for the operator.
                let text = format!(
                    "permanent: {e}; not retried. The ledger entry stays: undo it by hand, then \
                     `faultline ledger resolve {}/{id} --reason \"...\"`",
                    a.ctx.run_id
                );
                self.event("restore_failed", Some(id), text.clone());
                active.remove(pos);
                Err(text)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub(crate) async fn restore_all(&self) {
        let ids: Vec<String> = self
            .active
            .lock()
            .await
            .iter()
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            if let Err(e) = self.restore(&id).await {
                tracing::error!(
                    "fault {id} could not be restored ({e}); it stays in the ledger for `faultline recover`"
                );
            }
        }
    }
}
