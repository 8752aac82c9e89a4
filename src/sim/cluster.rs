//! The router and the workers of the simulated cluster, on a real clock.
//!
//! Each worker is a tokio task that runs [`Batcher`] steps back to back, sleeping for each step's
//! duration, and pushes tokens to the requests' channels. Step deadlines are kept on a virtual
//! schedule (`next = previous deadline + duration`) so timer jitter does not slowly eat the
//! cluster's capacity. The router picks the healthy worker with the fewest running + waiting
//! requests. Health is an explicit per-worker state the router consults, so that faults (a
//! locked GPU, a cut-off or restarted worker) can later be modelled by changing it.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};

use super::batch::{Batcher, Event, Seq, Sink, StepParams};
use super::metrics::WorkerStats;
use super::{SimConfig, WorkerHealth};

/// A request's end of the token channel.
pub(crate) type Tokens = mpsc::UnboundedReceiver<Event>;

impl Sink for mpsc::UnboundedSender<Event> {
    fn is_gone(&self) -> bool {
        self.is_closed()
    }
}

/// Why the router refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoHealthyWorker,
    QueueFull,
    TooLong,
}

pub(crate) struct Worker {
    pub id: usize,
    /// GPU indices this worker runs on.
    pub gpus: std::ops::Range<usize>,
    health: AtomicU8,
    core: Mutex<Core>,
    wake: Notify,
    pub stats: WorkerStats,
}

struct Core {
    batcher: Batcher<mpsc::UnboundedSender<Event>>,
    util: BusyWindow,
}

impl Worker {
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn health(&self) -> WorkerHealth {
        WorkerHealth::from_u8(self.health.load(Ordering::Relaxed))
    }

    pub fn gauges(&self, now: Duration) -> Gauges {
        let mut core = self.core();
        Gauges {
            running: core.batcher.running(),
            waiting: core.batcher.waiting(),
            kv_usage: core.batcher.kv_usage(),
            busy: core.util.read(now),
        }
    }
}

/// A worker's state as `/metrics` shows it.
pub(crate) struct Gauges {
    pub running: usize,
    pub waiting: usize,
    /// KV-cache usage, 0..1.
    pub kv_usage: f64,
    /// Share of the last full second spent stepping, 0..1.
    pub busy: f64,
}

pub(crate) struct Cluster {
    pub config: SimConfig,
    pub workers: Vec<Arc<Worker>>,
    epoch: Instant,
    next_pick: AtomicU64,
}

impl Cluster {
    pub fn new(config: SimConfig) -> Self {
        let params = StepParams::from_config(&config);
        let tp = config.tensor_parallel as usize;
        let workers = (0..config.workers())
            .map(|id| {
                Arc::new(Worker {
                    id,
                    gpus: id * tp..(id + 1) * tp,
                    health: AtomicU8::new(WorkerHealth::Healthy as u8),
                    core: Mutex::new(Core {
                        batcher: Batcher::new(params),
                        util: BusyWindow::default(),
                    }),
                    wake: Notify::new(),
                    stats: WorkerStats::default(),
                })
            })
            .collect();
        Cluster {
            config,
            workers,
            epoch: Instant::now(),
            next_pick: AtomicU64::new(0),
        }
    }

    /// Time since the cluster started (the batchers' clock).
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub fn set_health(&self, worker: usize, health: WorkerHealth) -> bool {
        match self.workers.get(worker) {
            Some(w) => {
                w.health.store(health as u8, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub fn any_healthy(&self) -> bool {
        self.workers.iter().any(|w| w.health().is_healthy())
    }

    /// Zero-latency routing: round robin over the healthy workers (nothing ever queues).
    pub fn pick_round_robin(&self) -> Result<&Worker, Refusal> {
        let n = self.workers.len();
        let start = self.next_pick.fetch_add(1, Ordering::Relaxed) as usize;
        (0..n)
            .map(|i| &*self.workers[(start + i) % n])
            .find(|w| w.health().is_healthy())
            .ok_or(Refusal::NoHealthyWorker)
    }

    /// Routes a request to the least-loaded healthy worker and queues it there.
    pub fn submit(&self, prompt_tokens: u32, max_tokens: u32) -> Result<(usize, Tokens), Refusal> {
        let now = self.now();
        let mut best: Option<(usize, MutexGuard<'_, Core>)> = None;
        // Lock one worker at a time to compare; keep only the best one's lock.
        for (i, w) in self.workers.iter().enumerate() {
            if !w.health().is_healthy() {
                continue;
            }
            let core = w.core();
            let load = core.batcher.running() + core.batcher.waiting();
            if best
                .as_ref()
                .is_none_or(|(_, b)| load < b.batcher.running() + b.batcher.waiting())
            {
                best = Some((i, core));
            }
        }
        let (i, mut core) = best.ok_or(Refusal::NoHealthyWorker)?;
        if !core.batcher.fits(prompt_tokens, max_tokens) {
            return Err(Refusal::TooLong);
        }
        if let Some(max) = self.config.max_queue_len
            && core.batcher.waiting() >= max as usize
        {
            return Err(Refusal::QueueFull);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        core.batcher
            .enqueue(Seq::new(tx, prompt_tokens, max_tokens, now));
        drop(core);
        self.workers[i].wake.notify_one();
        Ok((i, rx))
    }

    /// Runs one worker until `shutdown` flips; on exit drops every request (their streams end).
    pub async fn run_worker(self: Arc<Self>, id: usize, mut shutdown: watch::Receiver<bool>) {
        let w = self.workers[id].clone();
        let stats = &w.stats;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let start = self.now();
            let mut out = |seq: &Seq<_>, e| deliver(stats, start, seq, e);
            let step = w.core().batcher.begin_step(start, &mut out);
            let Some(duration) = step else {
                tokio::select! {
                    _ = w.wake.notified() => continue,
                    _ = shutdown.changed() => break,
                }
            };
            w.core().util.add(start, duration);
            // Keep steps on schedule even if the timer fires late (tokio's is 1 ms coarse).
            let mut deadline = self.epoch + start + duration;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = shutdown.changed() => {
                        w.core().batcher.clear();
                        return;
                    }
                }
                let end = self.now();
                let mut out = |seq: &Seq<_>, e| deliver(stats, end, seq, e);
                let mut core = w.core();
                core.batcher.end_step(&mut out);
                // Chain the next step straight from the deadline while there is work.
                let next = core.batcher.begin_step(end, &mut out);
                let Some(d) = next else { break };
                let start = deadline.max(self.epoch + end - Duration::from_millis(5)) - self.epoch;
                core.util.add(start, d);
                deadline = self.epoch + start + d;
            }
        }
        w.core().batcher.clear();
    }
}

fn deliver(
    stats: &WorkerStats,
    now: Duration,
    seq: &Seq<mpsc::UnboundedSender<Event>>,
    event: Event,
) {
    if let Event::Token { index, last } = event {
        if index == 0 {
            stats.first_token(seq.prompt_tokens, now.saturating_sub(seq.arrived));
        }
        stats.token(last);
    }
    // A closed channel means the client left; the batcher drops it at the next step.
    let _ = seq.sink.send(event);
}

/// Share of the last full second a worker spent stepping (DCGM's GPU utilisation).
#[derive(Debug, Default)]
struct BusyWindow {
    window: u64,
    busy: Duration,
    last_share: f64,
}

impl BusyWindow {
    fn roll(&mut self, now: Duration) {
        let window = now.as_secs();
        if window != self.window {
            self.last_share = if window == self.window + 1 {
                self.busy.as_secs_f64().min(1.0)
            } else {
                0.0
            };
            self.window = window;
            self.busy = Duration::ZERO;
        }
    }

    fn add(&mut self, start: Duration, busy: Duration) {
        self.roll(start);
        self.busy += busy;
    }

    fn read(&mut self, now: Duration) -> f64 {
        self.roll(now);
        self.last_share
    }
}
