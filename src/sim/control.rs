//! The control surface of the sim: what a cluster's operators and its control plane can do to
//! it, and what it reports back.
//!
//! Why: fault kinds act on a real cluster through its control plane (delete a pod, apply a
//! NetworkPolicy) or the node (kill a process, lock a GPU). The sim's Kubernetes API and tests
//! act through [`SimControl`], while `kill -9` and `nvidia-smi` act on the real processes and the
//! GPU state file, so every path a fault takes ends in the same worker lifecycle (`worker.rs`)
//! and the same router health checks (`health.rs`), and leaves ground-truth events behind.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::broadcast;

use super::SimError;
use super::cluster::Cluster;
use super::events::SimEvent;

/// Where a worker is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Its process is up and it serves requests it gets.
    Running,
    /// Its process died; it is waiting to be rescheduled (or its last start was refused).
    Failed,
    /// Restarting: its new process is loading the model.
    Starting,
}

/// A worker as the control plane sees it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    pub index: usize,
    pub state: WorkerState,
    /// A network policy cuts it off from the router and the clients.
    pub cut_off: bool,
    /// The router sends it requests (its health checks pass, or have not failed often enough yet).
    pub routed: bool,
    /// Its OS process, while it has one.
    pub pid: Option<u32>,
    /// The GPU indices it runs on.
    pub gpus: Vec<u32>,
    /// How many times it has been restarted.
    pub generation: u64,
    /// When it entered `state`, in seconds since the sim started.
    pub since_s: f64,
}

/// A cheap handle on a running sim's controls; it stays usable after the [`super::SimHandle`]
/// moves (and after shutdown, when changes no longer have an effect).
#[derive(Clone)]
pub struct SimControl {
    pub(crate) cluster: Arc<Cluster>,
}

impl SimControl {
    pub fn workers(&self) -> Vec<WorkerStatus> {
        let now = self.cluster.now();
        self.cluster.workers.iter().map(|w| w.status(now)).collect()
    }

    /// Kills a worker's process, as deleting its pod would: the worker fails (its requests
    /// fail), and restarts after `restart_delay`. A worker without a process is left alone.
    pub fn kill_worker(&self, index: usize, reason: &str) -> Result<(), SimError> {
        let w = self.cluster.worker(index)?;
        self.cluster.needs_processes()?;
        w.request_kill(reason);
        Ok(())
    }

    /// Cuts a worker off the network (`true`) or reconnects it (`false`). While cut off, requests
    /// routed to it hang without a byte until it is reconnected (or the client gives up), the
    /// streams it already serves stall, and its health checks fail.
    pub fn set_cut_off(&self, index: usize, cut: bool) -> Result<(), SimError> {
        let w = self.cluster.worker(index)?;
        self.cluster.needs_processes()?;
        if w.set_cut_off(cut) {
            let kind = if cut { "cut_off" } else { "reconnected" };
            self.cluster.events.record(kind, Some(index), "");
        }
        Ok(())
    }

    /// Holds a worker down (`true`: its pod has no node to run on, so no new process starts
    /// after it dies) or lets it start again (`false`). A running process is not touched.
    pub fn set_unschedulable(&self, index: usize, held: bool) -> Result<(), SimError> {
        let w = self.cluster.worker(index)?;
        w.unschedulable
            .store(held, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Appends a ground-truth event (the Kubernetes API records `pod_deleted`, `pod_ready`,
    /// `policy_applied`, `policy_removed`).
    pub fn record(&self, kind: &str, worker: Option<usize>, detail: &str) {
        self.cluster.events.record(kind, worker, detail);
    }

    pub fn events(&self) -> Vec<SimEvent> {
        self.cluster.events.events()
    }

    /// Every event recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.cluster.events.subscribe()
    }

    /// Seconds since the sim started (the clock of [`SimEvent::t_s`]).
    pub fn elapsed_s(&self) -> f64 {
        self.cluster.events.elapsed_s()
    }

    /// The instant the sim started: [`SimEvent::t_s`] counts from it.
    pub fn epoch(&self) -> Instant {
        self.cluster.events.epoch()
    }
}
