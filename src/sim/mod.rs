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
//!
//! Faults: each worker is backed by a real OS process registered on its GPUs in a file-backed
//! GPU state (`nvsmi.rs`, `state_dir.rs`), supervised and restarted like a pod (`worker.rs`); the
//! router drops and re-adds workers only through health checks (`health.rs`); [`SimControl`]
//! (`control.rs`) is the control plane's handle, and every transition is a ground-truth event
//! (`events.rs`). Zero-latency mode has none of this (no processes, no checks).

mod api;
mod batch;
mod cluster;
mod config;
mod control;
#[cfg(test)]
mod control_tests;
mod events;
mod health;
#[cfg(test)]
mod http_tests;
pub mod kube;
mod metrics;
pub mod nvsmi;
#[cfg(test)]
mod partition_tests;
mod sse;
mod state_dir;
#[cfg(test)]
mod tests;
pub mod tls;
mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{InvalidValue, SimConfig};
pub use control::{SimControl, WorkerState, WorkerStatus};
pub use events::SimEvent;
pub use state_dir::EVENTS_FILE;

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
    #[error("cannot set up the sim's state directory {path:?}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find the faultline binary for the nvidia-smi wrapper: {0}")]
    CurrentExe(std::io::Error),
    #[error("sim GPU state: {0}")]
    Gpu(#[from] nvsmi::NvsmiError),
    #[error("cannot start a sim worker process (\"sleep\"): {source}")]
    Spawn { source: std::io::Error },
    #[error("zero-latency mode has no worker processes to control")]
    ZeroLatency,
    #[error("sim TLS: {0}")]
    Tls(#[from] tls::SimTlsError),
}

/// How the sim serves its OpenAI API: plain HTTP, or HTTPS with a CA made at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimTls {
    #[default]
    Off,
    /// HTTPS; clients need the CA (`ca.pem` in the state directory).
    On,
    /// HTTPS that refuses clients without a certificate signed by the CA (mutual TLS).
    RequireClientCert,
}

/// What a client of an HTTPS sim needs, written into the sim's state directory: the CA to
/// trust and a client certificate signed by it (`CN=faultline`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimTlsFiles {
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl SimTlsFiles {
    fn create(
        dir: &Path,
        mode: SimTls,
    ) -> Result<(SimTlsFiles, Arc<rustls::ServerConfig>), SimError> {
        let ca = tls::SimCa::generate()?;
        let files = SimTlsFiles {
            ca_cert: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        };
        ca.write_cert(&files.ca_cert)?;
        ca.issue_client("faultline", &[])?
            .write(&files.client_cert, &files.client_key)?;
        let auth = match mode {
            SimTls::RequireClientCert => tls::ClientAuth::Required,
            SimTls::On | SimTls::Off => tls::ClientAuth::Optional,
        };
        Ok((files, ca.server_config_with(auth)?))
    }
}

/// Whether the router may send requests to a worker.
///
/// An operator's override on top of the health checks: an unavailable worker gets no new
/// requests; the ones it already holds carry on.
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
    /// Remove the state directory on shutdown (it was a temporary one).
    remove_state_dir: bool,
    /// Set when the API is served over HTTPS.
    tls: Option<SimTlsFiles>,
}

impl SimHandle {
    /// `http://ADDR` or `https://ADDR` — the base URL (append `/v1/...`).
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The CA and client certificate of an HTTPS sim; `None` for plain HTTP.
    pub fn tls_files(&self) -> Option<&SimTlsFiles> {
        self.tls.as_ref()
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.cluster.workers.len()
    }

    /// The control plane's handle: lifecycle, network, ground-truth events.
    pub fn control(&self) -> SimControl {
        SimControl {
            cluster: self.cluster.clone(),
        }
    }

    /// Where `gpus.json`, `bin/nvidia-smi` and `events.jsonl` live.
    pub fn state_dir(&self) -> &Path {
        &self.cluster.state_dir
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

    /// Stops the workers (open streams end, processes are killed) and the server, waits for
    /// them, and removes a temporary state directory.
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
        self.remove_temp_dir();
    }

    fn remove_temp_dir(&mut self) {
        if std::mem::take(&mut self.remove_state_dir) {
            let _ = std::fs::remove_dir_all(&self.cluster.state_dir);
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.remove_temp_dir();
    }
}

/// Starts the sim on `listen` (port 0 picks a free port) and serves in background tasks.
pub async fn start(config: SimConfig, listen: SocketAddr) -> Result<SimHandle, SimError> {
    start_with_tls(config, listen, SimTls::Off).await
}

/// [`start`], serving the OpenAI API over HTTPS as `tls` says (see [`SimHandle::tls_files`]).
pub async fn start_with_tls(
    config: SimConfig,
    listen: SocketAddr,
    tls: SimTls,
) -> Result<SimHandle, SimError> {
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
    let (state_dir, temp) = state_dir::choose(&config, addr.port())?;
    match setup(config, state_dir.clone(), listener, addr, tls).await {
        Ok(mut handle) => {
            handle.remove_state_dir = temp;
            Ok(handle)
        }
        Err(e) => {
            if temp {
                let _ = std::fs::remove_dir_all(&state_dir);
            }
            Err(e)
        }
    }
}

async fn setup(
    config: SimConfig,
    dir: PathBuf,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    tls_mode: SimTls,
) -> Result<SimHandle, SimError> {
    let (tls_files, server_tls) = match tls_mode {
        SimTls::Off => (None, None),
        mode => {
            let (files, config) = SimTlsFiles::create(&dir, mode)?;
            (Some(files), Some(config))
        }
    };
    let faultline = match &config.faultline_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().map_err(SimError::CurrentExe)?,
    };
    state_dir::write_wrapper(&dir, &faultline)?;
    let gpus = nvsmi::GpuState::create(&dir, config.gpus)?;
    let epoch = Instant::now();
    let events = events::EventLog::new(epoch, Some(state_dir::events_file(&dir)?));
    let (stop, stop_rx) = watch::channel(false);
    let cluster = Arc::new(cluster::Cluster::new(
        config,
        epoch,
        events,
        gpus,
        stop_rx.clone(),
    ));
    let mut tasks = Vec::new();
    if !cluster.config.zero_latency {
        // Every process is up and registered before `start` returns.
        let mut children = Vec::new();
        for w in &cluster.workers {
            children.push(worker::spawn(&cluster, w).await?);
        }
        for (id, child) in children.into_iter().enumerate() {
            let w = &cluster.workers[id];
            {
                let mut core = w.core();
                core.life.pid = child.id();
            }
            let pid = child.id().unwrap_or(0);
            cluster.events.record(
                "worker_started",
                Some(id),
                &format!("pid {pid}, generation 0"),
            );
            tasks.push(tokio::spawn(worker::supervise(
                cluster.clone(),
                id,
                child,
                stop_rx.clone(),
            )));
            tasks.push(tokio::spawn(
                cluster.clone().run_worker(id, stop_rx.clone()),
            ));
        }
        tasks.push(tokio::spawn(health::run(cluster.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(
            cluster.clone().watch_gpu_speed(stop_rx.clone()),
        ));
        tasks.push(tokio::spawn(worker::watch_stopped(
            cluster.clone(),
            stop_rx.clone(),
        )));
    }
    let app = api::router(cluster.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = tls::serve(listener, app, server_tls, stop_rx).await {
            tracing::warn!("sim server stopped: {e}");
        }
    });
    tracing::debug!(%addr, "sim serving");
    Ok(SimHandle {
        addr,
        cluster,
        stop,
        workers: tasks,
        server: Some(server),
        remove_state_dir: false,
        tls: tls_files,
    })
}
