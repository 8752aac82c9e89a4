//! Each worker's OS process and its lifecycle: run, die, get rescheduled, load, run again.
//!
//! Why a real process: faults kill serving processes with `kill -9 PID` over ssh and find the
//! PID the way an operator would, with `nvidia-smi`; a `sleep` child registered on the worker's
//! GPUs in the GPU state file gives them a real target. Whoever kills it, the supervisor sees
//! the exit and fails the worker.
//!
//! The restart mirrors a pod being recreated: `restart_delay / 2` in `failed` (rescheduling),
//! then `starting`: the new process claims its GPUs at once (CUDA initialisation comes before
//! the weights), which a `Prohibited` GPU — or an `Exclusive_Process` one that another process
//! holds — refuses, sending the worker back to `failed` for another cycle; otherwise it loads
//! the model for `restart_delay / 2` and is `running` again. A mode change alone never touches a
//! running process, as with real CUDA contexts.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::SimError;
use super::cluster::{Cluster, Worker};
use super::control::WorkerState;

/// How a wait on a worker's process ended.
enum Wait {
    Elapsed,
    Exited(String),
    Stop,
}

/// Starts a worker's process and claims its GPUs; on refusal the process is killed again.
pub(crate) async fn spawn(cluster: &Cluster, w: &Worker) -> Result<Child, SimError> {
    let mut cmd = Command::new("sleep");
    // Named so that `pgrep -f` finds this worker of this sim (`process-pause` bound to the sim).
    cmd.arg0(crate::common::sim_names::worker_process(
        &cluster.state_dir,
        w.id,
    ))
    .arg("2147483647")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    // `kill_on_drop` needs the sim to run its destructors; a sim killed with SIGKILL (a killed
    // `faultline run`, a test's standalone sim) left every worker's `sleep` behind, orphaned,
    // for 68 years. The kernel kills it when the thread that spawned it (a runtime worker, which
    // lives as long as the sim) dies.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The sim died before the prctl: nobody would kill this one.
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| SimError::Spawn { source })?;
    let pid = child.id().unwrap_or(0);
    for gpu in w.gpus.clone() {
        if let Err(e) = cluster.gpus.register_process(gpu as u32, pid) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let _ = cluster.gpus.unregister_process(pid);
            return Err(SimError::Gpu(e));
        }
    }
    Ok(child)
}

/// Marks a freshly spawned process as the worker's, running (or loading).
fn adopt(cluster: &Cluster, w: &Worker, child: &Child, state: WorkerState) {
    let mut core = w.core();
    core.life.pid = child.id();
    core.life.state = state;
    core.life.since = cluster.now();
    core.life.kill = None;
}

/// Watches worker `id`'s process (`child`, already adopted and running) for the life of the sim.
pub(crate) async fn supervise(
    cluster: Arc<Cluster>,
    id: usize,
    mut child: Child,
    mut stop: watch::Receiver<bool>,
) {
    let w = cluster.workers[id].clone();
    let half = cluster.config.restart_delay / 2;
    loop {
        let reason = match wait(&w, &mut child, None, &mut stop).await {
            Wait::Exited(reason) => reason,
            Wait::Elapsed | Wait::Stop => break,
        };
        fail(&cluster, &w, &reason);
        let never = cluster.config.replacements_never_ready && reason.ends_with("pod deleted");
        // Reschedule and start until a start sticks.
        child = loop {
            if sleep_or_stop(half, &mut stop).await {
                return;
            }
            // Its pod has no node to run on (kube/state.rs): stay down until one takes it.
            if w.unschedulable.load(std::sync::atomic::Ordering::Relaxed) {
                continue;
            }
            set_state(&cluster, &w, WorkerState::Starting);
            cluster.events.record("worker_starting", Some(id), "");
            if never {
                set_state(&cluster, &w, WorkerState::Failed);
                cluster.events.record(
                    "worker_start_failed",
                    Some(id),
                    "the replacement cannot start (replacements_never_ready)",
                );
                continue;
            }
            let mut new = match spawn(&cluster, &w).await {
                Ok(c) => c,
                Err(e) => {
                    set_state(&cluster, &w, WorkerState::Failed);
                    cluster
                        .events
                        .record("worker_start_failed", Some(id), &e.to_string());
                    continue;
                }
            };
            adopt(&cluster, &w, &new, WorkerState::Starting);
            match wait(&w, &mut new, Some(half), &mut stop).await {
                Wait::Elapsed => break new,
                Wait::Exited(reason) => fail(&cluster, &w, &reason),
                Wait::Stop => {
                    kill(&cluster, &mut new).await;
                    return;
                }
            }
        };
        let generation = {
            let mut core = w.core();
            core.life.generation += 1;
            core.life.state = WorkerState::Running;
            core.life.since = cluster.now();
            core.life.generation
        };
        w.stats.reset();
        let pid = child.id().unwrap_or(0);
        cluster.events.record(
            "worker_started",
            Some(id),
            &format!("pid {pid}, generation {generation}"),
        );
    }
    kill(&cluster, &mut child).await;
}

fn set_state(cluster: &Cluster, w: &Worker, state: WorkerState) {
    let mut core = w.core();
    core.life.state = state;
    core.life.since = cluster.now();
}

/// The process is gone: fail the worker and its requests, release its GPUs.
fn fail(cluster: &Cluster, w: &Worker, reason: &str) {
    let pid = w.core().life.pid;
    w.fail(cluster.now());
    cluster.events.record("worker_failed", Some(w.id), reason);
    if let Some(pid) = pid
        && let Err(e) = cluster.gpus.unregister_process(pid)
    {
        tracing::warn!("cannot unregister sim worker process {pid}: {e}");
    }
}

/// Kills the process at shutdown and releases its GPUs.
async fn kill(cluster: &Cluster, child: &mut Child) {
    let pid = child.id();
    let _ = child.start_kill();
    let _ = child.wait().await;
    if let Some(pid) = pid {
        let _ = cluster.gpus.unregister_process(pid);
    }
}

/// Sleeps; `true` if the sim stopped first.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stopped(stop) => true,
    };
    stopped || *stop.borrow()
}

/// Waits for the process to exit (on its own, by anyone's signal, or by a kill request), for
/// `limit` to pass, or for the sim to stop.
async fn wait(
    w: &Worker,
    child: &mut Child,
    limit: Option<Duration>,
    stop: &mut watch::Receiver<bool>,
) -> Wait {
    let pid = child.id();
    let deadline = limit.map(|d| tokio::time::Instant::now() + d);
    loop {
        let elapsed = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => {
                let how = match status {
                    Ok(s) => describe(s),
                    Err(e) => format!("cannot be waited for: {e}"),
                };
                let pid = pid.unwrap_or(0);
                return Wait::Exited(format!("process {pid} {how}"));
            }
            _ = w.kill.notified() => {
                let request = w.core().life.kill.take();
                if let Some((target, reason)) = request
                    && Some(target) == pid
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Wait::Exited(format!("process {target} killed: {reason}"));
                }
            }
            _ = elapsed => return Wait::Elapsed,
            _ = stopped(stop) => return Wait::Stop,
        }
    }
}

/// Every 100 ms, reads each worker's process state from `/proc` and pauses the worker while
/// the process is stopped (SIGSTOP: a hung engine, `process-pause`), recording `worker_paused`
/// and `worker_resumed` (the ground truth: nothing else says a frozen process is frozen).
pub(crate) async fn watch_stopped(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    loop {
        for w in &cluster.workers {
            let pid = w.core().life.pid;
            let stopped = pid.is_some_and(|pid| matches!(proc_state(pid), Some('T' | 't')));
            if w.set_paused(stopped) {
                let (kind, detail) = if stopped {
                    (
                        "worker_paused",
                        "process stopped: no steps, health checks time out",
                    )
                } else {
                    ("worker_resumed", "process running again")
                };
                cluster.events.record(kind, Some(w.id), detail);
            }
        }
        if sleep_or_stop(Duration::from_millis(100), &mut stop).await {
            return;
        }
    }
}

/// The state letter of `/proc/PID/stat` (`S` sleeping, `T` stopped); `None` if it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 2..)?.chars().next()
}

/// Resolves when the sim stops (holding no borrow of the flag).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "exited".to_string(),
    }
}
