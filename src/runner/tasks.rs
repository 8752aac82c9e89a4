//! The tasks a run is made of while the load goes: the load itself, the fault timeline with
//! probes and stop conditions, the signal watch and the progress display.

use super::execute::RunOptions;
use crate::fault::exec::Hosts;
use crate::load::client::Client;
use crate::load::engine::{self, EngineConfig};
use crate::runner::drive::drive_fault;
use crate::runner::live::{self, Observer};
use crate::runner::shared::Shared;
use crate::runner::spec::Experiment;
use crate::runner::watch::{run_probe, watch_stop_conditions};
use std::sync::Arc;
use std::time::Duration;

/// Ctrl-C / SIGTERM: stop, restore, end as aborted.
pub(crate) fn spawn_signal_watch(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => shared.abort("interrupted (Ctrl-C)".into()),
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => shared.abort("terminated (SIGTERM)".into()),
        }
    })
}

/// The load, as its own task.
pub(crate) fn spawn_load(
    shared: Arc<Shared>,
    exp: &Experiment,
    client: Client,
    opts: &RunOptions,
) -> tokio::task::JoinHandle<Result<engine::RunOutput, engine::EngineError>> {
    let cfg = EngineConfig {
        schedule: exp.load.schedule.clone(),
        workload: exp.load.workload.clone(),
        seed: exp.load.seed.unwrap_or_else(rand::random),
        window_s: exp.analysis.window.as_secs_f64(),
        out_dir: opts.out_dir.clone(),
        overload: crate::load::pool::Overload {
            // The embedded sim holds the server end of every connection in this process.
            embedded_server: matches!(exp.target, crate::runner::spec::Target::Sim { .. }),
            ..exp.load.overload.clone()
        },
    };
    tokio::spawn(async move {
        engine::run(cfg, client, shared.control.clone(), move |_, p| {
            *shared.progress.lock().unwrap_or_else(|e| e.into_inner()) = p.clone();
        })
        .await
    })
}

/// The progress display: a [`live::snapshot`] about twice a second.
pub(crate) fn spawn_observer(
    shared: Arc<Shared>,
    exp: &Experiment,
    observe: Observer,
) -> tokio::task::JoinHandle<()> {
    let total_s = exp.load.schedule.duration().as_secs_f64();
    let warmup_s = exp.warmup.as_secs_f64();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
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
            let mut faults = shared
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            faults.sort_by(|a, b| a.scheduled_at_s.total_cmp(&b.scheduled_at_s));
            observe(&live::snapshot(
                shared.now_s(),
                total_s,
                warmup_s,
                &p,
                &faults,
            ));
        }
    })
}

/// The body: faults, probes, stop conditions. Runs in its own task so that a panic in it
/// still reaches the restore after it.
pub(crate) fn spawn_body(
    shared: Arc<Shared>,
    exp: &Experiment,
    hosts: Arc<Hosts>,
    run_id: &str,
) -> tokio::task::JoinHandle<()> {
    let exp = exp.clone();
    let run_id = run_id.to_string();
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for f in exp.timeline.clone() {
            let shared = shared.clone();
            let exp = exp.clone();
            let hosts = hosts.clone();
            let run_id = run_id.clone();
            tasks.push(tokio::spawn(async move {
                drive_fault(&shared, &exp, &f, hosts, &run_id).await;
            }));
        }
        for p in exp.probes.clone() {
            let shared = shared.clone();
            let hosts = hosts.clone();
            tokio::spawn(async move { run_probe(&shared, &p, &hosts).await });
        }
        if !exp.stop_conditions.is_empty() {
            let shared = shared.clone();
            let conds = exp.stop_conditions.clone();
            tokio::spawn(async move { watch_stop_conditions(&shared, &conds).await });
        }
        for t in tasks {
            if let Err(e) = t.await
                && e.is_panic()
            {
                shared.abort("a fault task panicked".into());
            }
        }
    })
}
