//! A simulated LLM serving cluster: the embedded default target of faultline.
//!
//! Why: every load shape and (later) every fault kind should be rehearsable on one laptop and in
//! CI, against something that behaves like a real cluster where it matters — latency nearly flat
//! at low load, the hockey stick near capacity, then timeouts and refusals — and that speaks the
//! same protocols (OpenAI-compatible streaming API, vLLM/DCGM Prometheus metrics).
//!
//! Shape: `gpus / tensor_parallel` workers behind a least-loaded router (`cluster.rs`); each worker
//! runs a continuous-batching step loop whose step math lives in `batch.rs` (pure, tested on a
//! virtual clock); HTTP in `api.rs`, response bodies in `sse.rs`, Prometheus text in
//! `metrics.rs`, every knob and the presets in `config.rs`.
//!
//! Zero-latency mode skips the workers entirely: a request is answered at once with its whole
//! body in one buffer, so the sim costs the client being benchmarked as little CPU as possible.

mod api;
mod batch;
mod cluster;
mod config;
#[cfg(test)]
mod http_tests;
mod metrics;
pub mod nvsmi;
mod sse;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{InvalidValue, SimConfig};

/// Everything that can go wrong in the sim.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read sim config {path:?}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    ParseConfig {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid sim config: {0}")]
    Invalid(#[from] InvalidValue),
    #[error("cannot listen on \"{addr}\": {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no worker \"{worker}\" (the sim has {workers})")]
    NoSuchWorker { worker: usize, workers: usize },
}

/// Whether the router may send requests to a worker.
///
/// Only the state exists for now; faults (a locked GPU, a network policy, a restart) will set it.
/// An unavailable worker gets no new requests; the ones it already holds carry on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WorkerHealth {
    Healthy = 0,
    Unavailable = 1,
}

impl WorkerHealth {
    fn from_u8(v: u8) -> Self {
        if v == WorkerHealth::Healthy as u8 {
            WorkerHealth::Healthy
        } else {
            WorkerHealth::Unavailable
        }
    }

    pub fn is_healthy(self) -> bool {
        self == WorkerHealth::Healthy
    }
}

/// A running sim. Dropping it stops the sim too (without waiting); prefer [`SimHandle::shutdown`].
pub struct SimHandle {
    pub addr: SocketAddr,
    cluster: Arc<cluster::Cluster>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    server: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://ADDR` — the base URL (append `/v1/...`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.cluster.workers.len()
    }

    /// Sets a worker's health (the router only uses healthy workers; `/health` is 503 when none is).
    pub fn set_worker_health(&self, worker: usize, health: WorkerHealth) -> Result<(), SimError> {
        if self.cluster.set_health(worker, health) {
            Ok(())
        } else {
            Err(SimError::NoSuchWorker {
                worker,
                workers: self.cluster.workers.len(),
            })
        }
    }

    /// Stops the workers (open streams end) and the server, and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for w in std::mem::take(&mut self.workers) {
            let _ = w.await;
        }
        if let Some(mut server) = self.server.take() {
            // Graceful: idle connections close, open streams have just ended.
            if tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the sim on `listen` (port 0 picks a free port) and serves in background tasks.
pub async fn start(config: SimConfig, listen: SocketAddr) -> Result<SimHandle, SimError> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: listen,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let cluster = Arc::new(cluster::Cluster::new(config));
    let workers = if cluster.config.zero_latency {
        Vec::new()
    } else {
        (0..cluster.workers.len())
            .map(|id| tokio::spawn(cluster.clone().run_worker(id, stop_rx.clone())))
            .collect()
    };
    let app = api::router(cluster.clone());
    let mut server_stop = stop_rx;
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("sim server stopped: {e}");
        }
    });
    Ok(SimHandle {
        addr,
        cluster,
        stop,
        workers,
        server: Some(server),
    })
}
