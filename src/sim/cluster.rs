//! The router and the workers of the simulated cluster, on a real clock.
//!
//! Each worker is a tokio task that runs [`Batcher`] steps back to back, sleeping for each step's
//! duration, and pushes tokens to the requests' channels. Step deadlines are kept on a virtual
//! schedule (`next = previous deadline + duration`) so timer jitter does not slowly eat the
//! cluster's capacity. The router picks the healthy worker with the fewest running + waiting
//! requests. The router only considers workers its health checks (`health.rs`) have not removed
//! and that an operator has not marked unavailable; a request routed to a worker that has died
//! in between fails at once (502), one routed to a cut-off worker hangs (the api waits for the
//! network to come back). A worker's lifecycle state lives under the same lock as its batcher,
//! so a request is never queued on a worker that has just been failed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};

use super::batch::{Batcher, Event, Seq, Sink, StepParams};
use super::control::{WorkerState, WorkerStatus};
use super::events::EventLog;
use super::metrics::WorkerStats;
use super::nvsmi::GpuState;
use super::{SimConfig, SimError, WorkerHealth};

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
    /// The chosen worker's process is dead (or not up yet): the connection is refused.
    WorkerDown,
    /// The chosen worker is cut off: the request hangs until it is reachable again.
    Unreachable(usize),
}

pub(crate) struct Worker {
    pub id: usize,
    /// GPU indices this worker runs on.
    pub gpus: std::ops::Range<usize>,
    health: AtomicU8,
    core: Mutex<Core>,
    wake: Notify,
    pub stats: WorkerStats,
    /// Cut off by a network policy.
    cut: watch::Sender<bool>,
    /// Its process is stopped (SIGSTOP): it takes requests and steps none (a hung engine).
    paused: watch::Sender<bool>,
    /// Requests routed here that hang because it is cut off (the router counts them as load).
    pending: AtomicUsize,
    /// Wakes the worker's supervisor to kill its process (see `Life::kill`).
    pub kill: Notify,
    /// How much slower than nominal its steps run (an f64's bits; 1.0 = full speed): the
    /// slowest of its GPUs, since a tensor-parallel group waits for its slowest member at every
    /// collective. Set by [`Cluster::watch_gpu_speed`] from the GPUs' clocks and power limits.
    slowdown: std::sync::atomic::AtomicU64,
    /// Its pod cannot be scheduled (every node cordoned): its supervisor does not start a new
    /// process until this is cleared (set by the sim's Kubernetes API, `kube/state.rs`).
    pub unschedulable: std::sync::atomic::AtomicBool,
}

impl Worker {
    /// A step's nominal duration at this worker's current speed.
    fn slowed(&self, d: Duration) -> Duration {
        let k = f64::from_bits(self.slowdown.load(std::sync::atomic::Ordering::Relaxed));
        if k > 1.0 { d.mul_f64(k) } else { d }
    }
}

pub(crate) struct Core {
    batcher: Batcher<mpsc::UnboundedSender<Event>>,
    util: BusyWindow,
    pub life: Life,
}

/// A worker's lifecycle, as its supervisor and the health checks drive it.
pub(crate) struct Life {
    pub state: WorkerState,
    pub pid: Option<u32>,
    pub generation: u64,
    /// When `state` was entered (cluster clock).
    pub since: Duration,
    /// The router sends it requests.
    pub routed: bool,
    /// Consecutive failed health checks.
    pub failed_checks: u32,
    /// A kill asked for: the pid it was meant for (a later process is spared) and the reason.
    pub kill: Option<(u32, String)>,
}

impl Worker {
    pub fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn status(&self, now: Duration) -> WorkerStatus {
        let core = self.core();
        let life = &core.life;
        WorkerStatus {
            index: self.id,
            state: life.state,
            cut_off: self.is_cut_off(),
            routed: life.routed && self.health().is_healthy(),
            pid: life.pid,
            gpus: self.gpus.clone().map(|g| g as u32).collect(),
            generation: life.generation,
            since_s: life.since.min(now).as_secs_f64(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.core().life.state == WorkerState::Running
    }

    pub fn is_cut_off(&self) -> bool {
        *self.cut.borrow()
    }

    /// Returns whether it changed.
    pub fn set_cut_off(&self, cut: bool) -> bool {
        self.cut
            .send_if_modified(|c| std::mem::replace(c, cut) != cut)
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Returns whether it changed.
    pub fn set_paused(&self, paused: bool) -> bool {
        self.paused
            .send_if_modified(|p| std::mem::replace(p, paused) != paused)
    }

    /// Waits while the worker's process is stopped; `false` if the sim stops first.
    async fn unpaused(&self, stop: &mut watch::Receiver<bool>) -> bool {
        if !self.is_paused() {
            return true;
        }
        let mut paused = self.paused.subscribe();
        tokio::select! {
            r = paused.wait_for(|p| !p) => r.is_ok(),
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// Waits until the worker is reachable; `false` if the sim stops first.
    pub async fn reachable(&self, stop: &watch::Receiver<bool>) -> bool {
        if !self.is_cut_off() {
            return true;
        }
        let mut cut = self.cut.subscribe();
        let mut stop = stop.clone();
        tokio::select! {
            r = cut.wait_for(|c| !c) => r.is_ok(),
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// Asks the supervisor to kill the current process, if there is one.
    pub fn request_kill(&self, reason: &str) {
        let mut core = self.core();
        if let Some(pid) = core.life.pid {
            core.life.kill = Some((pid, reason.to_string()));
            self.kill.notify_one();
        }
    }

    /// Counts a request hanging on this cut-off worker while the guard lives.
    pub fn hang(&self) -> PendingGuard<'_> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard(self)
    }

    /// The process died: every request it holds fails, and it takes no new ones.
    pub fn fail(&self, now: Duration) {
        let seqs = {
            let mut core = self.core();
            core.life.state = WorkerState::Failed;
            core.life.pid = None;
            core.life.kill = None;
            core.life.since = now;
            core.batcher.drain()
        };
        for seq in seqs {
            let _ = seq.sink.send(Event::WorkerFailed);
        }
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

pub(crate) struct PendingGuard<'a>(&'a Worker);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
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
    pub events: EventLog,
    pub gpus: GpuState,
    pub state_dir: PathBuf,
    /// Flips to `true` when the sim shuts down.
    pub stop: watch::Receiver<bool>,
}

impl Cluster {
    pub fn new(
        config: SimConfig,
        epoch: Instant,
        events: EventLog,
        gpus: GpuState,
        stop: watch::Receiver<bool>,
    ) -> Self {
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
                        life: Life {
                            state: WorkerState::Running,
                            pid: None,
                            generation: 0,
                            since: Duration::ZERO,
                            routed: true,
                            failed_checks: 0,
                            kill: None,
                        },
                    }),
                    wake: Notify::new(),
                    stats: WorkerStats::default(),
                    cut: watch::channel(false).0,
                    paused: watch::channel(false).0,
                    pending: AtomicUsize::new(0),
                    kill: Notify::new(),
                    slowdown: std::sync::atomic::AtomicU64::new(1.0f64.to_bits()),
                    unschedulable: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .collect();
        Cluster {
            config,
            workers,
            epoch,
            next_pick: AtomicU64::new(0),
            events,
            state_dir: gpus.dir().to_path_buf(),
            gpus,
            stop,
        }
    }

    pub fn worker(&self, index: usize) -> Result<&Arc<Worker>, SimError> {
        self.workers.get(index).ok_or(SimError::NoSuchWorker {
            worker: index,
            workers: self.workers.len(),
        })
    }

    /// Lifecycle controls need the workers' processes, which zero-latency mode does without.
    pub fn needs_processes(&self) -> Result<(), SimError> {
        if self.config.zero_latency {
            Err(SimError::ZeroLatency)
        } else {
            Ok(())
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

    /// Whether the router has any worker to send requests to.
    pub fn any_healthy(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.health().is_healthy() && w.core().life.routed)
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

    /// Routes a request to the least-loaded routed worker and queues it there.
    pub fn submit(&self, prompt_tokens: u32, max_tokens: u32) -> Result<(usize, Tokens), Refusal> {
        let mut best: Option<(usize, usize, MutexGuard<'_, Core>)> = None;
        // Lock one worker at a time to compare; keep only the best one's lock.
        for (i, w) in self.workers.iter().enumerate() {
            if !w.health().is_healthy() {
                continue;
            }
            let core = w.core();
            if !core.life.routed {
                continue;
            }
            let load =
                core.batcher.running() + core.batcher.waiting() + w.pending.load(Ordering::Relaxed);
            if best.as_ref().is_none_or(|(_, b, _)| load < *b) {
                best = Some((i, load, core));
            }
        }
        let (i, _, core) = best.ok_or(Refusal::NoHealthyWorker)?;
        self.admit(i, core, prompt_tokens, max_tokens)
    }

    /// Queues a request on worker `i` (one that hung on it while it was cut off).
    pub fn submit_to(
        &self,
        i: usize,
        prompt_tokens: u32,
        max_tokens: u32,
    ) -> Result<(usize, Tokens), Refusal> {
        self.admit(i, self.workers[i].core(), prompt_tokens, max_tokens)
    }

    fn admit(
        &self,
        i: usize,
        mut core: MutexGuard<'_, Core>,
        prompt_tokens: u32,
        max_tokens: u32,
    ) -> Result<(usize, Tokens), Refusal> {
        if self.workers[i].is_cut_off() {
            return Err(Refusal::Unreachable(i));
        }
        if core.life.state != WorkerState::Running {
            return Err(Refusal::WorkerDown);
        }
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
            .enqueue(Seq::new(tx, prompt_tokens, max_tokens, self.now()));
        drop(core);
        self.workers[i].wake.notify_one();
        Ok((i, rx))
    }

    /// Every 200 ms, reads the GPUs' clocks and power limits (what `nvidia-smi -lgc`/`-pl` set)
    /// and sets each worker's slowdown to its slowest GPU's, recording a `worker_slowed` event
    /// when it changes (the ground truth for a gray GPU failure: nothing else notices).
    pub async fn watch_gpu_speed(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        use std::sync::atomic::Ordering;
        loop {
            if let Ok(gpus) = self.gpus.load() {
                for w in &self.workers {
                    let slow = w
                        .gpus
                        .clone()
                        .filter_map(|g| gpus.gpus.get(g))
                        .map(|g| g.slowdown())
                        .fold(1.0f64, f64::max);
                    let before = f64::from_bits(w.slowdown.swap(slow.to_bits(), Ordering::Relaxed));
                    if (before - slow).abs() > 1e-9 {
                        self.events.record(
                            "worker_slowed",
                            Some(w.id),
                            &format!("steps {slow:.3}x nominal (was {before:.3}x)"),
                        );
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Runs one worker until `shutdown` flips; on exit drops every request (their streams end).
    pub async fn run_worker(self: Arc<Self>, id: usize, mut shutdown: watch::Receiver<bool>) {
        let w = self.workers[id].clone();
        let stats = &w.stats;
        loop {
            if *shutdown.borrow() || !w.unpaused(&mut shutdown).await {
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
            let duration = w.slowed(duration);
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
                // A stopped process finishes its step when it is continued.
                if !w.unpaused(&mut shutdown).await {
                    break;
                }
                let end = self.now();
                let mut out = |seq: &Seq<_>, e| deliver(stats, end, seq, e);
                let mut core = w.core();
                core.batcher.end_step(&mut out);
                // Chain the next step straight from the deadline while there is work.
                let next = core.batcher.begin_step(end, &mut out);
                let Some(d) = next else { break };
                let d = w.slowed(d);
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
