//! Running an experiment: target up, preflight, load, the fault timeline, probes and stop
//! conditions, then the analysis. Every fault is written to the ledger before it is injected
//! and restored on every exit path: its own end, a stop condition, an error, Ctrl-C/SIGTERM, or
//! a panic in the run (the body runs in its own task; whatever it leaves active is restored).

use super::conclude::{conclude, write_ground_truth, write_outputs};
use super::setup::{bind_to_sim, claim_and_preflight, connect_cluster, host_spec, start_target};
use super::tasks::{spawn_body, spawn_load, spawn_observer, spawn_signal_watch};
use crate::fault::exec::Hosts;
use crate::fault::ledger::Ledger;
use crate::load::client::Client;
use crate::load::engine::Control;
use crate::load::recorder::Progress;
use crate::runner::live::Observer;
use crate::runner::result::RunResult;
use crate::runner::shared::Shared;
use crate::runner::spec::Experiment;
use chrono::Utc;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the ledger {path} holds {count} fault(s) that were never restored ({ids}); run `faultline recover` first (a fault undone by hand: `faultline ledger resolve ID --reason \"...\"`)"
    )]
    LedgerNotClean {
        path: PathBuf,
        count: usize,
        ids: String,
    },
    #[error(transparent)]
    Ledger(#[from] crate::fault::ledger::LedgerError),
    #[error(transparent)]
    Owner(#[from] crate::fault::owner::OwnerError),
    #[error("cannot start the embedded sim: {0}")]
    Sim(#[from] crate::sim::SimError),
    #[error(transparent)]
    Client(#[from] crate::load::client::ClientError),
    /// Not a `source`: the fault's error is in the message once, not again as its cause.
    #[error("preflight of fault {id:?} failed: {error}")]
    Preflight {
        id: String,
        error: Box<crate::fault::FaultError>,
    },
    #[error(transparent)]
    Engine(#[from] crate::load::engine::EngineError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach the Kubernetes cluster: {0}")]
    Kube(String),
    #[error(transparent)]
    Access(#[from] crate::fault::kube_access::AccessError),
    #[error("cannot read the recorded windows: {0}")]
    Windows(String),
    #[error("the run panicked: {0}")]
    Panicked(String),
}

pub struct RunOptions {
    pub out_dir: PathBuf,
    pub ledger: Ledger,
    pub run_id: String,
    /// The faultline binary the embedded sim's `nvidia-smi` wrapper calls (default: this
    /// executable; tests point it at the built binary).
    pub faultline_bin: Option<PathBuf>,
}

/// Runs the experiment and writes `result.json`, `summary.md` and the run's ledger slice next to
/// the load's files in `opts.out_dir`.
pub async fn run(exp: &Experiment, opts: &RunOptions) -> Result<RunResult, RunError> {
    run_observed(exp, opts, None).await
}

/// [`run`], handing `observer` a [`LiveStatus`](crate::runner::live::LiveStatus) about twice a
/// second while the load goes (a progress display).
///
/// The phases, in order: a clean ledger; the target up and reachable; the cluster; every
/// target claimed, every permission asked, every fault preflighted — all before any load; then
/// the load, the faults, probes and stop conditions as tasks; then, whatever happened, every
/// fault restored; then the analysis and the files.
pub async fn run_observed(
    exp: &Experiment,
    opts: &RunOptions,
    observer: Option<Observer>,
) -> Result<RunResult, RunError> {
    ensure_ledger_clean(opts)?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| RunError::Write {
        path: opts.out_dir.clone(),
        source,
    })?;
    let started_at = Utc::now().to_rfc3339();

    let (sim, client_cfg) = start_target(exp, opts).await?;
    let bound;
    let exp = match &sim {
        Some(s) => {
            bound = bind_to_sim(exp, s.state_dir());
            &bound
        }
        None => exp,
    };
    let hosts = Arc::new(Hosts::new(
        exp.hosts
            .iter()
            .map(|(k, v)| (k.clone(), host_spec(v)))
            .collect(),
    ));
    let (kube, kube_api) = connect_cluster(exp, sim.as_ref(), opts).await?;
    let control = Arc::new(Control::default());
    let _ownership = claim_and_preflight(exp, opts, &hosts, &kube, &control).await?;

    let client = Client::new(client_cfg, Instant::now())?;
    // The sim's clock started earlier; its events are converted to the load's clock. Both clocks
    // count from an `Instant`, so the offset is their exact difference. (Reading the sim's clock
    // here instead put every event early by the time since the load's clock started: building
    // the client, and whatever time this thread spent descheduled on a busy machine.)
    let sim_offset_s = sim.as_ref().map(|s| {
        client
            .run_start()
            .saturating_duration_since(s.control().epoch())
            .as_secs_f64()
    });
    let shared = Arc::new(Shared {
        start: client.run_start(),
        control: control.clone(),
        progress: Mutex::new(Progress::default()),
        events: Mutex::new(Vec::new()),
        active: tokio::sync::Mutex::new(Vec::new()),
        results: Mutex::new(Vec::new()),
        signals: Mutex::new(Vec::new()),
        abort: CancellationToken::new(),
        abort_reason: Mutex::new(None),
        ledger: opts.ledger.clone(),
        kube: kube.clone(),
    });
    if let Some(k) = &kube {
        shared.event("kubernetes", None, k.describe());
    }
    shared.event(
        "load_start",
        None,
        format!("load against {}", client.endpoint()),
    );

    let signals_task = spawn_signal_watch(shared.clone());
    let engine_task = spawn_load(shared.clone(), exp, client, opts);
    let observer_task = observer.map(|observe| spawn_observer(shared.clone(), exp, observe));
    let body = spawn_body(shared.clone(), exp, hosts, &opts.run_id);

    let body_result = body.await;
    let engine_result = engine_task.await;
    if let Some(t) = observer_task {
        t.abort();
    }
    // Whatever happened, nothing stays injected.
    shared.abort.cancel();
    shared.restore_all().await;
    signals_task.abort();
    if let Some(api) = kube_api {
        api.shutdown().await;
    }
    if let (Some(s), Some(offset)) = (sim, sim_offset_s) {
        write_ground_truth(&s.control().events(), offset, opts)?;
        s.shutdown().await;
    }
    if let Err(e) = body_result
        && e.is_panic()
    {
        return Err(RunError::Panicked(format!("{e}")));
    }
    let out = match engine_result {
        Ok(r) => r?,
        Err(e) => return Err(RunError::Panicked(format!("{e}"))),
    };
    let result = conclude(exp, opts, &shared, out.summary, started_at)?;
    write_outputs(&result, opts)?;
    Ok(result)
}

/// A run starts only on a clean ledger: a fault left by an earlier run is restored first.
fn ensure_ledger_clean(opts: &RunOptions) -> Result<(), RunError> {
    let outstanding = opts.ledger.outstanding()?;
    if outstanding.is_empty() {
        return Ok(());
    }
    Err(RunError::LedgerNotClean {
        path: opts.ledger.path().to_path_buf(),
        count: outstanding.len(),
        ids: outstanding
            .iter()
            .map(|e| format!("{}/{}", e.run_id, e.fault_id))
            .collect::<Vec<_>>()
            .join(", "),
    })
}
