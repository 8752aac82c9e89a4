//! The one load loop. A pacer thread walks the schedule, prepares each request ahead of its
//! intended start (prompt and JSON body: CPU work off the request path), sleeps precisely until
//! the intended instant and hands the request to the async runtime. Every load shape (open-loop
//! rates, bursts, ramps, steps, trace replay, closed-loop users) is the same loop; closed loops
//! and in-flight caps only add a semaphore.
//!
//! The engine is honest about itself (see [`crate::load::pool`]): requests in flight never
//! exceed the connection pool (`--max-connections`), waiting for a free connection is dispatch
//! lag, and a window whose dispatch-lag p99 is above `--max-dispatch-lag` is marked
//! client-limited, warned about once per episode while the run goes, and counted in the summary.
//!
//! The pacer is an OS thread rather than a tokio task because tokio's timer has millisecond
//! granularity, too coarse for thousands of requests per second; `thread::sleep` wakes within
//! tens of microseconds. Whatever delay remains is measured (dispatch lag), never hidden.

use crate::analysis::summary::Summary;
use crate::analysis::window::{Window, WindowStats};
use crate::load::client::Client;
use crate::load::pool::{Overload, Slots};
use crate::load::recorder::{ItlBuffer, Progress, Recorder, RecorderError};
use crate::load::schedule::{Next, Schedule};
use crate::load::workload::Workload;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

pub const SUMMARY_FILE: &str = "summary.json";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    #[error("cannot write {path}: {source}")]
    Summary {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the pacer thread failed: {0}")]
    Pacer(String),
}

/// Knobs other parts turn while a run is going: the rate multiplier (`load-spike`) and stop.
#[derive(Debug)]
pub struct Control {
    multiplier_bits: AtomicU64,
    stopped: AtomicBool,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            multiplier_bits: AtomicU64::new(1.0f64.to_bits()),
            stopped: AtomicBool::new(false),
        }
    }
}

impl Control {
    pub fn multiplier(&self) -> f64 {
        f64::from_bits(self.multiplier_bits.load(Ordering::Relaxed))
    }
    pub fn set_multiplier(&self, m: f64) {
        self.multiplier_bits.store(m.to_bits(), Ordering::Relaxed);
    }
    /// Stops dispatching new requests; requests in flight finish (or time out) normally.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

pub struct EngineConfig {
    pub schedule: Schedule,
    pub workload: Workload,
    pub seed: u64,
    pub window_s: f64,
    pub out_dir: PathBuf,
    /// The connection pool and the dispatch-lag threshold.
    pub overload: Overload,
}

pub struct RunOutput {
    pub summary: Summary,
    pub total: Window,
    pub windows: Vec<WindowStats>,
    pub out_dir: PathBuf,
    /// True when the run was stopped before its schedule ended.
    pub stopped_early: bool,
}

/// Runs the schedule against `client`, writing `requests.jsonl`, `windows.jsonl` and
/// `summary.json` into `cfg.out_dir`. `on_tick` is called about four times a second.
pub async fn run(
    cfg: EngineConfig,
    client: Client,
    control: Arc<Control>,
    mut on_tick: impl FnMut(f64, &Progress),
) -> Result<RunOutput, EngineError> {
    let max_lag_ms = cfg.overload.max_dispatch_lag_ms();
    let recorder = Arc::new(Recorder::create(&cfg.out_dir, cfg.window_s)?.judging(max_lag_ms));
    let pool = cfg.overload.pool_size(
        peak_rate(&cfg.schedule),
        cfg.schedule.max_in_flight(),
        client.config().timeout,
    );
    // One semaphore for the schedule's own cap (a closed loop's users, `--max-in-flight`) and
    // the connection pool: a request holds a permit from before it is sent until it is over,
    // so requests in flight (under HTTP/1.1, connections in use) never exceed the smaller.
    let slots = Arc::new(Slots::new(
        cfg.schedule.max_in_flight().map_or(pool, |n| n.min(pool)),
    ));
    let parts = PacerParts {
        schedule: cfg.schedule.clone(),
        workload: cfg.workload,
        seed: cfg.seed,
        slots: slots.clone(),
    };
    let start = client.run_start();
    let duration = cfg.schedule.duration();
    let target_rate = cfg.schedule.nominal_rate();
    let tracker = TaskTracker::new();
    let opened = client.clone();
    let pacer = {
        let recorder = recorder.clone();
        let control = control.clone();
        let tracker = tracker.clone();
        let handle = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("faultline-pacer".into())
            .spawn(move || pace(parts, client, recorder, control, tracker, handle))
            .map_err(|e| EngineError::Pacer(e.to_string()))?
    };
    let pacer_done = tokio::task::spawn_blocking(move || pacer.join());
    tokio::pin!(pacer_done);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut episodes = 0;
    let mut tick = |now: f64, recorder: &Recorder| -> Result<(), EngineError> {
        slots.grow();
        recorder.tick(now)?;
        let p = recorder.progress();
        warn_client_limited(&p, &mut episodes, max_lag_ms, pool);
        on_tick(now, &p);
        Ok(())
    };
    let joined = loop {
        tokio::select! {
            res = &mut pacer_done => break res,
            _ = ticker.tick() => tick(start.elapsed().as_secs_f64(), &recorder)?,
        }
    };
    let peak = match joined {
        Ok(Ok(peak)) => peak,
        Ok(Err(_)) => return Err(EngineError::Pacer("it panicked".into())),
        Err(e) => return Err(EngineError::Pacer(e.to_string())),
    };
    tracker.close();
    loop {
        tokio::select! {
            _ = tracker.wait() => break,
            _ = ticker.tick() => tick(start.elapsed().as_secs_f64(), &recorder)?,
        }
    }
    let recorded = recorder.close()?;
    let p = recorder.progress();
    warn_client_limited(&p, &mut episodes, max_lag_ms, pool);
    let stopped_early = control.is_stopped();
    let schedule_s = if stopped_early {
        recorded.total.last_send_s
    } else {
        duration.as_secs_f64()
    };
    let mut summary = Summary::new(&recorded.total, schedule_s, target_rate);
    let with_requests = recorded.windows.iter().filter(|w| w.requests > 0).count() as u64;
    let limited = recorded.windows.iter().filter(|w| w.client_limited).count() as u64;
    summary.set_client_limited(limited, with_requests, max_lag_ms);
    summary.max_connections = Some(pool as u64);
    summary.peak_connections = Some(peak as u64);
    summary.connections_opened = Some(opened.connections_opened());
    let path = recorder.dir().join(SUMMARY_FILE);
    let text = serde_json::to_vec_pretty(&crate::version::stamped(
        &summary,
        crate::version::SUMMARY_SCHEMA_VERSION,
    ))
    .expect("a summary always serializes");
    std::fs::write(&path, text).map_err(|source| EngineError::Summary { path, source })?;
    Ok(RunOutput {
        summary,
        total: recorded.total,
        windows: recorded.windows,
        out_dir: recorder.dir().to_path_buf(),
        stopped_early,
    })
}

struct PacerParts {
    schedule: Schedule,
    workload: Workload,
    seed: u64,
    /// Requests in flight at most (the connection pool).
    slots: Arc<Slots>,
}

/// The schedule's highest intended rate (before any runtime multiplier); `None` for a closed
/// loop.
pub fn peak_rate(s: &Schedule) -> Option<f64> {
    use crate::load::schedule::RateShape;
    match s {
        Schedule::Open { shape, .. } => Some(match shape {
            RateShape::Fixed(r) => *r,
            RateShape::Ramp { from, to } => from.max(*to),
            RateShape::Steps(steps) => steps.iter().map(|s| s.rate).fold(0.0, f64::max),
        }),
        Schedule::Closed { .. } => None,
        // A trace's busiest second.
        Schedule::Trace { entries, .. } => {
            let mut peak = 0usize;
            let mut from = 0;
            for (i, e) in entries.iter().enumerate() {
                while entries[from].at_s <= e.at_s - 1.0 {
                    from += 1;
                }
                peak = peak.max(i + 1 - from);
            }
            Some(peak as f64)
        }
    }
}

/// Says once per episode (a run of client-limited windows) that the client, not the server,
/// is setting the pace: through `tracing`, so every command shows it next to its progress.
fn warn_client_limited(p: &Progress, episodes: &mut u64, max_lag_ms: f64, pool: usize) {
    if p.client_limited_episodes > *episodes {
        *episodes = p.client_limited_episodes;
        let lag = p
            .client_limited_lag_p99_ms
            .map(|l| format!("{l:.1} ms"))
            .unwrap_or_else(|| "-".into());
        let busy = if p.peak_in_flight as usize >= pool {
            format!("all {pool} connections were busy (--max-connections)")
        } else {
            format!(
                "{} of {pool} connections in use at the peak",
                p.peak_in_flight
            )
        };
        tracing::warn!(
            "client-limited: dispatch lag p99 {lag} > {max_lag_ms} ms (--max-dispatch-lag); the load generator cannot keep to the schedule ({busy}); these windows measure the client, not the server"
        );
    }
}

fn pace(
    parts: PacerParts,
    client: Client,
    recorder: Arc<Recorder>,
    control: Arc<Control>,
    tracker: TaskTracker,
    handle: tokio::runtime::Handle,
) -> usize {
    let start = client.run_start();
    let duration = parts.schedule.duration();
    let mut arrivals = parts.schedule.arrivals(parts.seed);
    // A separate stream for request contents, so that the same seed gives the same arrival
    // times whatever the workload.
    let mut rng = StdRng::seed_from_u64(parts.seed ^ 0x9e37_79b9_7f4a_7c15);
    let slots = parts.slots.semaphore().clone();
    let mut peak = 0usize;
    let mut id = 0u64;
    while !control.is_stopped() {
        let (at, spec) = match arrivals.next(control.multiplier()) {
            Next::Done => break,
            Next::At { at_s, trace } => {
                let spec = match trace {
                    Some(entry) => parts.workload.from_trace(&entry, &mut rng),
                    None => parts.workload.generate(&mut rng),
                };
                (Some(start + Duration::from_secs_f64(at_s)), spec)
            }
            Next::WhenSlotFree => (None, parts.workload.generate(&mut rng)),
        };
        let body = client.body(&spec);
        if let Some(at) = at
            && !sleep_until(at, &control)
        {
            break;
        }
        // Waiting here makes the request late: dispatch lag, measured from its intended start.
        if parts.slots.busy() {
            parts.slots.grow();
        }
        let Some(permit) = acquire(&slots, &control, &handle) else {
            break;
        };
        peak = peak.max(parts.slots.in_use());
        let intended = at.unwrap_or_else(Instant::now);
        if intended.duration_since(start) >= duration {
            break;
        }
        let window = recorder.begin(intended.duration_since(start).as_secs_f64());
        let client = client.clone();
        let recorder = recorder.clone();
        let this = id;
        id += 1;
        tracker.spawn_on(
            async move {
                let mut itl = ItlBuffer::new(&recorder, window);
                let rec = client
                    .send(this, &spec, body, intended, |g| itl.push(g))
                    .await;
                drop(itl);
                recorder.finish(window, &rec);
                // hyper puts the connection back in its pool from a task of its own once the
                // body is over; give that a chance to run before the next request may start,
                // or it finds no idle connection and opens one more than the pool. This makes
                // it rarer, not impossible (see "left open" in `pool`): the slot count bounds
                // requests in flight exactly, connections only as closely as hyper allows.
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                drop(permit);
            },
            &handle,
        );
    }
    peak
}

/// Sleeps until `at` (or until stopped); false when stopped.
fn sleep_until(at: Instant, control: &Control) -> bool {
    loop {
        if control.is_stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(50)));
    }
}

/// Waits for an in-flight slot, checking for stop every 50 ms.
fn acquire(
    sem: &Arc<Semaphore>,
    control: &Control,
    handle: &tokio::runtime::Handle,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        if control.is_stopped() {
            return None;
        }
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Some(p);
        }
        let waited = handle.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), sem.clone().acquire_owned()).await
        });
        if let Ok(Ok(p)) = waited {
            return Some(p);
        }
    }
}
