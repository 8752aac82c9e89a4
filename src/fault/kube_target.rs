//! The Kubernetes cluster that `pod-kill` and `network-partition` act on: a `kube` client built
//! from a kubeconfig file (and optional context) plus the default namespace.
//!
//! Why a kubeconfig path and not `Config::infer()`: the experiment names its cluster explicitly
//! (a game day must not act on whatever cluster the operator's shell happens to point at), and
//! the embedded sim writes its own kubeconfig. Plain HTTP servers (the sim) work; an `https`
//! server needs a TLS feature of `kube`, which this build leaves out.

use std::fmt;
use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum KubeTargetError {
    #[error("cannot read kubeconfig {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path:?}{}: {source}", context.as_deref().map(|c| format!(" context \"{c}\"")).unwrap_or_default())]
    Config {
        path: PathBuf,
        context: Option<String>,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot build a Kubernetes client for {path:?}: {source}")]
    Client { path: PathBuf, source: kube::Error },
}

/// A Kubernetes client and the namespace to use when a fault names none.
#[derive(Clone)]
pub struct KubeTarget {
    pub client: kube::Client,
    pub namespace: String,
    /// How it was reached, for the ledger (so `faultline recover` can reconnect).
    pub spec: KubeSpec,
}

/// Where a cluster is: a kubeconfig path and context. Paths only, never credentials, so it may
/// be written to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KubeSpec {
    pub kubeconfig: std::path::PathBuf,
    #[serde(default)]
    pub context: Option<String>,
    /// The namespace to use instead of the context's, if any.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeTarget")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl KubeTarget {
    /// From a kubeconfig file; `context` None = its current context; the namespace is the
    /// context's (else `default`).
    pub async fn from_kubeconfig(
        path: &Path,
        context: Option<&str>,
    ) -> Result<KubeTarget, KubeTargetError> {
        let kubeconfig = Kubeconfig::read_from(path).map_err(|source| KubeTargetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let options = KubeConfigOptions {
            context: context.map(str::to_string),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|source| KubeTargetError::Config {
                path: path.to_path_buf(),
                context: context.map(str::to_string),
                source,
            })?;
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|source| KubeTargetError::Client {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(KubeTarget {
            client,
            namespace,
            spec: KubeSpec {
                kubeconfig: path.to_path_buf(),
                context: context.map(str::to_string),
                namespace: None,
            },
        })
    }

    /// Connects as `spec` says, with its namespace override applied.
    pub async fn connect(spec: &KubeSpec) -> Result<KubeTarget, KubeTargetError> {
        let mut t = KubeTarget::from_kubeconfig(&spec.kubeconfig, spec.context.as_deref()).await?;
        if let Some(ns) = &spec.namespace {
            t.namespace = ns.clone();
            t.spec.namespace = Some(ns.clone());
        }
        Ok(t)
    }

    /// The namespace a fault acts in: its own, else this target's.
    pub fn namespace_for<'a>(&'a self, fault_namespace: Option<&'a str>) -> &'a str {
        fault_namespace.unwrap_or(&self.namespace)
    }
}
