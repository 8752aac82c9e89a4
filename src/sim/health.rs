//! The router's health checks: the only way a failed or cut-off worker leaves the rotation and a
//! recovered one rejoins it.
//!
//! Why: a real router learns about a dead backend only from its checks, so between a crash and
//! the `health_check_failures`-th failed check (at `health_check_interval`) it keeps sending
//! requests there, and users see them fail. That window is what faultline's detection time
//! measures, so the sim reproduces it instead of rerouting the instant a worker dies. A check
//! passes when the worker is `running`, reachable and its process not stopped; one pass puts a removed worker back.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::cluster::{Cluster, Worker};
use super::control::WorkerState;

/// Checks every worker each `health_check_interval` until the sim stops.
pub(crate) async fn run(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(cluster.config.health_check_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for w in &cluster.workers {
            check(&cluster, w);
        }
    }
}

/// One health check of one worker; records `router_removed` / `router_added` on a change.
fn check(cluster: &Cluster, w: &Worker) {
    let cut_off = w.is_cut_off();
    let change = {
        let mut core = w.core();
        let life = &mut core.life;
        let failure = if cut_off {
            Some("health check timed out (cut off)")
        } else if w.is_paused() {
            Some("health check timed out (process stopped)")
        } else if life.state != WorkerState::Running {
            Some("health check refused (worker down)")
        } else {
            None
        };
        match failure {
            None => {
                life.failed_checks = 0;
                (!life.routed).then(|| {
                    life.routed = true;
                    ("router_added", "health check passed".to_string())
                })
            }
            Some(why) => {
                life.failed_checks = life.failed_checks.saturating_add(1);
                let failures = life.failed_checks;
                (life.routed && failures >= cluster.config.health_check_failures).then(|| {
                    life.routed = false;
                    ("router_removed", format!("{why}, {failures} in a row"))
                })
            }
        }
    };
    if let Some((kind, detail)) = change {
        cluster.events.record(kind, Some(w.id), &detail);
    }
}
