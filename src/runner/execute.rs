//! Running an experiment: target up, preflight, load, the fault timeline, probes and stop
//! conditions, then the analysis. Every fault is written to the ledger before it is injected
//! and restored on every exit path: its own end, a stop condition, an error, Ctrl-C/SIGTERM, or
//! a panic in the run (the body runs in its own task; whatever it leaves active is restored).

use crate::analysis::baseline;
use crate::analysis::phases::{self, AnalysisConfig, FaultTiming, Recovery, Signal};
use crate::analysis::window::Window;
use crate::fault::exec::{HostSpec, Hosts, SshSpec};
use crate::fault::kube_access;
use crate::fault::kube_target::{KubeSource, KubeSpec, KubeTarget};
use crate::fault::ledger::Ledger;
use crate::fault::owner::{self, Ownership};
use crate::fault::{FaultContext, Lifetime, SimBinding};
use crate::load::client::{ApiKey, Client, ClientConfig};
use crate::load::engine::{self, Control, EngineConfig};
use crate::load::recorder::{Progress, read_windows};
use crate::runner::drive::drive_fault;
use crate::runner::live::{self, Observer};
use crate::runner::result::{self, FaultResult, FaultStatus, RunResult, Status};
use crate::runner::shared::Shared;
use crate::runner::spec::{Experiment, ScheduledFault, Target};
use crate::runner::watch::{run_probe, watch_stop_conditions};
use crate::sim;
use crate::version;
use chrono::Utc;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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

/// `~/...` as the shell would expand it (ssh does not expand it in `-i` arguments).
fn expand_home(p: &Option<PathBuf>) -> Option<PathBuf> {
    let p = p.as_ref()?;
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
        _ => Some(p.clone()),
    }
}

fn host_spec(h: &HostSpec) -> HostSpec {
    match h {
        HostSpec::Ssh(s) => HostSpec::Ssh(SshSpec {
            identity_file: expand_home(&s.identity_file),
            known_hosts: expand_home(&s.known_hosts),
            config_file: expand_home(&s.config_file),
            ..s.clone()
        }),
        local => local.clone(),
    }
}

/// Against the embedded sim, each fault kind rewrites what names a sim stand-in (the
/// `faultline nvidia-smi` command on local hosts becomes the sim's own wrapper), so that the
/// ledger holds commands that `faultline recover` can run from any process.
fn bind_to_sim(exp: &Experiment, state_dir: &std::path::Path) -> Experiment {
    let mut exp = exp.clone();
    let sim = SimBinding {
        state_dir: state_dir.to_path_buf(),
        local_hosts: exp
            .hosts
            .iter()
            .filter(|(_, h)| matches!(h, HostSpec::Local))
            .map(|(name, _)| name.clone())
            .collect(),
    };
    for f in &mut exp.timeline {
        f.spec.bind_to_sim(&sim);
    }
    exp
}

/// Runs the experiment and writes `result.json`, `summary.md` and the run's ledger slice next to
/// the load's files in `opts.out_dir`.
pub async fn run(exp: &Experiment, opts: &RunOptions) -> Result<RunResult, RunError> {
    run_observed(exp, opts, None).await
}

/// [`run`], handing `observer` a [`LiveStatus`](crate::runner::live::LiveStatus) about twice a
/// second while the load goes (a progress display).
pub async fn run_observed(
    exp: &Experiment,
    opts: &RunOptions,
    observer: Option<Observer>,
) -> Result<RunResult, RunError> {
    let original = exp;
    let outstanding = opts.ledger.outstanding()?;
    if !outstanding.is_empty() {
        return Err(RunError::LedgerNotClean {
            path: opts.ledger.path().to_path_buf(),
            count: outstanding.len(),
            ids: outstanding
                .iter()
                .map(|e| format!("{}/{}", e.run_id, e.fault_id))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| RunError::Write {
        path: opts.out_dir.clone(),
        source,
    })?;
    let started_at = Utc::now().to_rfc3339();

    // The target.
    let (sim, base_url, model, api, timeout, api_key) = match &exp.target {
        Target::Sim {
            config,
            api,
            timeout,
            ..
        } => {
            let mut config = config.clone();
            if config.faultline_bin.is_none() {
                config.faultline_bin = opts.faultline_bin.clone();
            }
            let listen = config
                .listen
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("valid"));
            let handle = sim::start(config.clone(), listen).await?;
            let url = format!("http://{}", handle.addr);
            (
                Some(handle),
                url,
                config.model.clone(),
                *api,
                *timeout,
                None,
            )
        }
        Target::Endpoint {
            url,
            model,
            api,
            timeout,
            api_key_env,
            ..
        } => {
            let key = match api_key_env {
                Some(var) => ApiKey::from_env(var)?,
                None => None,
            };
            (None, url.clone(), model.clone(), *api, *timeout, key)
        }
    };
    let bound;
    let exp = match &sim {
        Some(s) => {
            bound = bind_to_sim(original, s.state_dir());
            &bound
        }
        None => original,
    };
    let (headers, tls) = match &exp.target {
        Target::Endpoint { headers, tls, .. } => (
            headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tls.clone(),
        ),
        _ => (vec![], Default::default()),
    };
    let client_cfg = ClientConfig {
        base_url,
        api,
        model,
        stream: true,
        include_usage: true,
        api_key,
        headers,
        timeout: timeout.unwrap_or(Duration::from_secs(30)),
        connect_timeout: Duration::from_secs(5),
        tls,
        max_event_bytes: crate::load::sse::DEFAULT_MAX_EVENT_BYTES,
    };
    // Reachable (TLS included) before anything is injected; an endpoint without /v1/models is
    // fine, the file names the model.
    Client::new(client_cfg.clone(), Instant::now())?
        .resolve_model()
        .await?;

    let hosts = Arc::new(Hosts::new(
        exp.hosts
            .iter()
            .map(|(k, v)| (k.clone(), host_spec(v)))
            .collect(),
    ));
    // The cluster: the embedded sim's Kubernetes API, or a kubeconfig.
    let mut kube_api = None;
    let kube = match &exp.kubernetes {
        None => None,
        Some(k) => {
            let spec = match (k.resolve(), &sim) {
                (None, Some(s)) => {
                    let api = sim::kube::serve(
                        s.control(),
                        "127.0.0.1:0".parse().expect("valid"),
                        &opts.out_dir.join("kubeconfig"),
                    )
                    .await
                    .map_err(|e| RunError::Kube(e.to_string()))?;
                    let spec = KubeSpec {
                        kubeconfig: api.kubeconfig.clone(),
                        context: k.context.clone(),
                        namespace: k.namespace.clone(),
                        source: KubeSource::Sim,
                    };
                    kube_api = Some(api);
                    spec
                }
                (None, None) => {
                    return Err(RunError::Kube(
                        "`kubeconfig: sim` needs the embedded sim as the target".into(),
                    ));
                }
                (Some(spec), _) => spec.map_err(|e| RunError::Kube(e.to_string()))?,
            };
            let target = KubeTarget::connect(&spec)
                .await
                .map_err(|e| RunError::Kube(e.to_string()))?;
            // The run header: never act on a cluster without saying which.
            eprintln!("kubernetes: {}", target.describe());
            Some(target)
        }
    };
    let control = Arc::new(Control::default());
    let context = |f: &ScheduledFault, deadline_from_now: Duration| {
        let deadline = Utc::now()
            + chrono::Duration::from_std(deadline_from_now).unwrap_or(chrono::Duration::zero());
        let mut ctx = FaultContext::new(&opts.run_id, &f.id, hosts.clone(), deadline);
        ctx.control = Some(control.clone());
        ctx.kube = kube.clone();
        ctx
    };

    // One owner per target: every target of the timeline is claimed before any preflight or
    // load, and held until after the last restore (dropped when this function returns). A run
    // that shares a target with a live one is refused here, naming the holder.
    let targets: Vec<String> = exp
        .timeline
        .iter()
        .flat_map(|f| owner::target_keys(&f.spec, &context(f, f.end())))
        .collect();
    let _ownership = Ownership::claim(&opts.ledger, &opts.run_id, &targets)?;

    // Least privilege: every verb the run will use, asked of the API server at once.
    if let Some(k) = &kube {
        let mut needs: Vec<kube_access::Need> = exp
            .timeline
            .iter()
            .flat_map(|f| kube_access::needs(&f.spec, k))
            .collect();
        for p in &exp.probes {
            if let crate::runner::spec::ProbeCheck::KubeReady(r) = &p.check {
                needs.push(kube_access::Need {
                    verb: "list",
                    group: "",
                    resource: "pods",
                    namespace: Some(k.namespace_for(r.namespace.as_deref()).to_string()),
                });
            }
        }
        kube_access::check(k, &needs).await?;
    }

    // Preflight every fault before any load starts.
    for f in &exp.timeline {
        let ctx = context(f, f.end());
        f.spec
            .preflight(&ctx)
            .await
            .map_err(|error| RunError::Preflight {
                id: f.id.clone(),
                error: Box::new(error),
            })?;
    }

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

    // Ctrl-C / SIGTERM: stop, restore, end as aborted.
    let signals_task = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => shared.abort("interrupted (Ctrl-C)".into()),
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => shared.abort("terminated (SIGTERM)".into()),
            }
        })
    };

    // The load.
    let engine_task = {
        let shared = shared.clone();
        let cfg = EngineConfig {
            schedule: exp.load.schedule.clone(),
            workload: exp.load.workload.clone(),
            seed: exp.load.seed.unwrap_or_else(rand::random),
            window_s: exp.analysis.window.as_secs_f64(),
            out_dir: opts.out_dir.clone(),
        };
        tokio::spawn(async move {
            engine::run(cfg, client, shared.control.clone(), move |_, p| {
                *shared.progress.lock().unwrap_or_else(|e| e.into_inner()) = p.clone();
            })
            .await
        })
    };

    let observer_task = observer.map(|observe| {
        let shared = shared.clone();
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
    });

    // The body: faults, probes, stop conditions. Runs in its own task so that a panic in it
    // still reaches the restore below.
    let body = {
        let shared = shared.clone();
        let exp = exp.clone();
        let hosts = hosts.clone();
        let run_id = opts.run_id.clone();
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
    };

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

    // Analysis.
    let windows = read_windows(&opts.out_dir.join(crate::load::recorder::WINDOWS_FILE))
        .map_err(RunError::Windows)?;
    let load_end = out.summary.duration_s;
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
    let status = if aborted.is_some() {
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
        reason: aborted,
        warmup_s,
        load: out.summary,
        faults: results,
        events,
        definitions: result::definitions(),
    };
    write_outputs(&result, opts)?;
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
        let one_shot = exp
            .timeline
            .iter()
            .find(|f| f.id == r.id)
            .is_some_and(|f| f.spec.lifetime() == Lifetime::OneShot);
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
        };
        let mut end = starts.get(i + 1).copied().unwrap_or(load_end).max(cleared);
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

/// `sim-events.jsonl`: what really happened in the embedded sim (worker failed, router stopped
/// routing to it, ...), with `t_s` on the load's clock, to check measured times against.
fn write_ground_truth(
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

fn write_outputs(result: &RunResult, opts: &RunOptions) -> Result<(), RunError> {
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
