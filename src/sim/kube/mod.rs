//! A Kubernetes-compatible API for the sim's pods and NetworkPolicies.
//!
//! Why: `pod-kill` and `network-partition` act through the Kubernetes API, and the only way to
//! rehearse and test them on one laptop, with the same code that runs against a real cluster,
//! is an API server that real clients (`kubectl`, the `kube` crate) accept. This is a small one
//! (namespace `default` only, two resources) with a real one's sharp edges:
//!
//! - HTTPS only, with a CA made at start (`crate::sim::tls::SimCa`); the written kubeconfig
//!   carries it as `certificate-authority-data` plus a random bearer token;
//! - authentication by that token, a policy user's token, or a client certificate signed by the
//!   CA (user = CN, groups = O); anything else is a 401 `Status`;
//! - RBAC from an optional policy file (`faultline sim --kube-rbac FILE`, [`KubeApiOptions`]):
//!   403s with the real message, and SelfSubjectAccessReview (`kubectl auth can-i`); see
//!   `auth.rs`;
//!
//! - one pod per sim worker, `sim-llm-<worker>-<suffix>`, labels `app=sim-llm`,
//!   `worker=<n>`, `role=worker`; deleting it kills the worker after the grace period and a
//!   replacement with a new name comes up (see `state.rs` for the exact pod life cycle);
//! - NetworkPolicies (`networking.k8s.io/v1`): create, get, list, delete; a deny-ingress policy
//!   selecting a worker's pod cuts that worker off (its requests hang, the router's health
//!   checks take it out); deleting the last such policy restores it;
//! - list with label and field selectors, watch (`?watch=true`) with resource versions,
//!   `Table` output for `kubectl get`, errors as `Status` objects.
//!
//! - nodes (`sim-node-<n>`, one per worker, where worker n's first pod runs): get, list,
//!   watch, PATCH (cordon/uncordon as `kubectl cordon` and the `kube` crate send it); the
//!   Eviction subresource (`POST pods/NAME/eviction`, policy/v1) honoring PodDisruptionBudgets
//!   (create, get, list, delete; 429 while a budget does not allow it); an evicted pod's
//!   replacement is scheduled on a node that is not cordoned, or stays Pending (its worker
//!   down) until one is uncordoned. `kubectl drain` and `kubectl uncordon` work against it.
//!
//! Ground-truth events recorded in the sim: `pod_deleted`, `pod_ready`, `policy_applied`,
//! `policy_removed`, `node_cordoned`, `node_uncordoned`, `pod_evicted`, `eviction_refused`,
//! `pod_rescheduled`, `pod_unschedulable`.

pub mod auth;
mod nodes;
mod objects;
mod pdb;
mod routes;

mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sim::SimControl;
use crate::sim::tls::SimCa;

pub use crate::common::Selector;
pub use auth::{Policy, Rule};
pub use state::{NAMESPACE, POD_GRACE_S};

/// The context, cluster and user name in the written kubeconfig.
pub const CONTEXT: &str = "faultline-sim";

#[derive(Debug, thiserror::Error)]
pub enum KubeApiError {
    #[error("cannot listen on \"{addr}\": {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::sim::tls::SimTlsError),
    #[error("cannot write kubeconfig {path:?}: {source}")]
    WriteKubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to run the API server beyond the defaults (HTTPS, admin token, everyone allowed).
#[derive(Clone, Debug, Default)]
pub struct KubeApiOptions {
    /// RBAC: tokens and rules of further users. `None`: every authenticated identity may do
    /// everything.
    pub rbac: Option<Policy>,
}

/// A running API server. Dropping it stops it too (without waiting); prefer `shutdown`.
pub struct KubeApiHandle {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    /// The CA the server's certificate chains to; issues client certificates it accepts.
    pub ca: Arc<SimCa>,
    admin_token: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeApiHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApiHandle")
            .field("addr", &self.addr)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl KubeApiHandle {
    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The administrator's bearer token (also in the written kubeconfig). A secret: for tests
    /// that write kubeconfigs of their own.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Stops the server (open watches end) and the controller, and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for mut t in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(Duration::from_secs(5), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

impl Drop for KubeApiHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serves the API on `listen` (port 0 picks one) over HTTPS and writes a kubeconfig for it to
/// `kubeconfig_path` (context `faultline-sim`, namespace `default`, the CA and the admin
/// token); every authenticated identity may do everything.
pub async fn serve(
    control: SimControl,
    listen: SocketAddr,
    kubeconfig_path: &Path,
) -> Result<KubeApiHandle, KubeApiError> {
    serve_with(control, listen, kubeconfig_path, KubeApiOptions::default()).await
}

/// [`serve`] with options (an RBAC policy).
pub async fn serve_with(
    control: SimControl,
    listen: SocketAddr,
    kubeconfig_path: &Path,
    options: KubeApiOptions,
) -> Result<KubeApiHandle, KubeApiError> {
    let ca = Arc::new(SimCa::generate()?);
    let tls = ca.server_config(true)?;
    let admin_token = random_token();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| KubeApiError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| KubeApiError::Bind {
        addr: listen,
        source,
    })?;
    write_kubeconfig(kubeconfig_path, addr, &ca.cert_pem(), &admin_token)?;

    let (stop, stop_rx) = watch::channel(false);
    let store = state::Store::new(control.clone());

    // The controller: follow the sim's events (and poll, in case one is missed).
    let controller = {
        let store = store.clone();
        let mut events = control.subscribe();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = until_stopped(&mut stop) => return,
                    ev = events.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                            // The sim is gone; keep serving what we last saw until stopped.
                            until_stopped(&mut stop).await;
                            return;
                        }
                    }
                    _ = tick.tick() => {}
                }
                store.reconcile();
            }
        })
    };

    let app = routes::router(Arc::new(routes::AppState {
        store,
        server: addr.to_string(),
        stop: stop_rx.clone(),
        auth: auth::Auth {
            admin_token: admin_token.clone(),
            policy: options.rbac,
        },
    }));
    let server = tokio::spawn(async move {
        if let Err(e) = crate::sim::tls::serve(listener, app, Some(tls), stop_rx).await {
            tracing::warn!("kube api server stopped: {e}");
        }
    });
    Ok(KubeApiHandle {
        addr,
        kubeconfig: kubeconfig_path.to_path_buf(),
        ca,
        admin_token,
        stop,
        tasks: vec![controller, server],
    })
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.is_ok();
}

/// 32 random hex digits.
fn random_token() -> String {
    (0..4)
        .map(|_| format!("{:08x}", rand::random::<u32>()))
        .collect()
}

fn write_kubeconfig(
    path: &Path,
    addr: SocketAddr,
    ca_pem: &str,
    token: &str,
) -> Result<(), KubeApiError> {
    use base64::Engine;
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: https://{addr}
    certificate-authority-data: {ca_data}
users:
- name: {CONTEXT}
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: {NAMESPACE}
current-context: {CONTEXT}
preferences: {{}}
"
    );
    let err = |source| KubeApiError::WriteKubeconfig {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    Ok(())
}
