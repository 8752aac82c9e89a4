//! The Kubernetes cluster that `pod-kill` and `network-partition` act on: a `kube` client, the
//! default namespace, and a record of *how* the cluster was reached.
//!
//! Why a record and not just a client: the ledger must let `faultline recover` reconnect the
//! same way in a new process (paths and names only, never credentials), and a game day must
//! never act on a cluster it was not told about, so the run header and `plan` say which
//! server, which context and why ([`KubeTarget::describe`]).
//!
//! Every kubeconfig form `kube::Config` knows works unchanged: `certificate-authority(-data)`,
//! `insecure-skip-tls-verify`, `token`, `tokenFile`, client certificate and key (data or
//! files), `exec` credential plugins, `proxy-url`, contexts. TLS is rustls with `ring`.
//!
//! When nothing names a kubeconfig, the usual order applies ([`KubeSpec::infer`]):
//! `$KUBECONFIG` (a `:`-separated list is merged, as kubectl does), then `~/.kube/config`, then
//! in-cluster (the pod's service account). In-cluster reads `token`, `ca.crt` and `namespace`
//! from `/var/run/secrets/kubernetes.io/serviceaccount` (or `$FAULTLINE_SERVICEACCOUNT_DIR`,
//! which tests use, since kube's own in-cluster loader has the path fixed) and the server from
//! `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`; the token file is re-read as it rotates.

use std::fmt;
use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

/// The service-account directory a pod sees.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Overrides [`SERVICE_ACCOUNT_DIR`] (for tests, and for pods that mount it elsewhere).
pub const SERVICE_ACCOUNT_DIR_ENV: &str = "FAULTLINE_SERVICEACCOUNT_DIR";

#[derive(Debug, thiserror::Error)]
pub enum KubeTargetError {
    /// Not `source`s: kube's messages already carry their causes; `chain` says each once.
    #[error("cannot read kubeconfig {path:?}: {}", chain(error))]
    Read {
        path: PathBuf,
        error: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path:?}{}: {}", context.as_deref().map(|c| format!(" context \"{c}\"")).unwrap_or_default(), chain(error))]
    Config {
        path: PathBuf,
        context: Option<String>,
        error: kube::config::KubeconfigError,
    },
    #[error("cannot build a Kubernetes client for {what}: {}", explain(error))]
    Client { what: String, error: kube::Error },
    #[error("$KUBECONFIG={list:?}: none of its files exists")]
    EmptyList { list: PathBuf },
    #[error(
        "in-cluster configuration: {0} (in a pod, the service account is mounted at {SERVICE_ACCOUNT_DIR} and KUBERNETES_SERVICE_HOST/PORT are set)"
    )]
    InCluster(String),
    #[error(
        "no Kubernetes cluster found: $KUBECONFIG is not set, {home} does not exist, and this is not a pod (no KUBERNETES_SERVICE_HOST); name one with `kubeconfig:` in the experiment's kubernetes section or --kubeconfig"
    )]
    NothingFound { home: String },
}

/// How the cluster was found: what the run header says, and what `recover` repeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeSource {
    /// A kubeconfig path given in the experiment or with --kubeconfig.
    #[default]
    Explicit,
    /// `$KUBECONFIG` (possibly a `:`-separated list, merged).
    KubeconfigEnv,
    /// `~/.kube/config`.
    HomeConfig,
    /// The pod's service account.
    InCluster,
    /// The embedded sim's API.
    Sim,
}

/// Where a cluster is: a kubeconfig path (or list) and context, or in-cluster. Paths and names
/// only, never credentials, so it may be written to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeSpec {
    /// The kubeconfig; for `kubeconfig-env` it may hold several paths joined as in
    /// `$KUBECONFIG`; for `in-cluster` the service-account directory.
    pub kubeconfig: PathBuf,
    #[serde(default)]
    pub context: Option<String>,
    /// The namespace to use instead of the context's, if any.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub source: KubeSource,
}

impl KubeSpec {
    /// A kubeconfig file named by the user (made absolute, so `recover` run from another
    /// directory finds it).
    pub fn explicit(path: &Path, context: Option<&str>, namespace: Option<&str>) -> KubeSpec {
        KubeSpec {
            kubeconfig: absolute(path),
            context: context.map(str::to_string),
            namespace: namespace.map(str::to_string),
            source: KubeSource::Explicit,
        }
    }

    /// `path` if given, else the usual order: `$KUBECONFIG`, `~/.kube/config`, in-cluster.
    pub fn resolve(
        path: Option<&Path>,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<KubeSpec, KubeTargetError> {
        match path {
            Some(p) => Ok(KubeSpec::explicit(p, context, namespace)),
            None => KubeSpec::infer(context, namespace),
        }
    }

    /// The usual order: `$KUBECONFIG` (set and not empty), `~/.kube/config` (if it exists),
    /// in-cluster (if `KUBERNETES_SERVICE_HOST` is set). The first that applies is used; one
    /// that applies but is broken is an error, never a silent fall-through to the next.
    pub fn infer(
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<KubeSpec, KubeTargetError> {
        let spec = |kubeconfig: PathBuf, source| KubeSpec {
            kubeconfig,
            context: context.map(str::to_string),
            namespace: namespace.map(str::to_string),
            source,
        };
        if let Some(v) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let list = std::env::split_paths(&v).map(|p| absolute(&p));
            let joined = std::env::join_paths(list).unwrap_or(v);
            return Ok(spec(PathBuf::from(joined), KubeSource::KubeconfigEnv));
        }
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
        if let Some(h) = home.as_ref().filter(|h| h.exists()) {
            return Ok(spec(h.clone(), KubeSource::HomeConfig));
        }
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            return Ok(spec(service_account_dir(), KubeSource::InCluster));
        }
        Err(KubeTargetError::NothingFound {
            home: home.map_or("~/.kube/config".into(), |h| h.display().to_string()),
        })
    }

    /// Why this cluster, in words: "kubeconfig /x (--kubeconfig)", "$KUBECONFIG=/x", ….
    pub fn why(&self) -> String {
        let p = self.kubeconfig.display();
        match self.source {
            KubeSource::Explicit => format!("kubeconfig {p} (named explicitly)"),
            KubeSource::KubeconfigEnv => format!("kubeconfig from $KUBECONFIG={p}"),
            KubeSource::HomeConfig => {
                format!("kubeconfig {p} (no kubeconfig named, $KUBECONFIG unset)")
            }
            KubeSource::InCluster => format!(
                "in-cluster service account {p} (no kubeconfig named, no $KUBECONFIG, no ~/.kube/config)"
            ),
            KubeSource::Sim => format!("the embedded sim's API (kubeconfig {p})"),
        }
    }

    /// The kubeconfig as kube reads it (no network), with token files made to read as kubectl
    /// reads them.
    fn kubeconfig(&self) -> Result<Kubeconfig, KubeTargetError> {
        let mut k = self.kubeconfig_as_written()?;
        trim_token_files(&mut k);
        Ok(k)
    }

    fn kubeconfig_as_written(&self) -> Result<Kubeconfig, KubeTargetError> {
        let read = |p: &Path| {
            Kubeconfig::read_from(p).map_err(|error| KubeTargetError::Read {
                path: p.to_path_buf(),
                error,
            })
        };
        match self.source {
            KubeSource::InCluster => in_cluster_kubeconfig(&self.kubeconfig),
            KubeSource::KubeconfigEnv => {
                let mut merged: Option<Kubeconfig> = None;
                for p in
                    std::env::split_paths(&self.kubeconfig).filter(|p| !p.as_os_str().is_empty())
                {
                    // kubectl skips list entries that do not exist.
                    if !p.exists() {
                        continue;
                    }
                    let k = read(&p)?;
                    merged = Some(match merged {
                        None => k,
                        Some(m) => m.merge(k).map_err(|error| KubeTargetError::Read {
                            path: p.clone(),
                            error,
                        })?,
                    });
                }
                merged.ok_or_else(|| KubeTargetError::EmptyList {
                    list: self.kubeconfig.clone(),
                })
            }
            _ => read(&self.kubeconfig),
        }
    }

    /// The server URL and context name this spec selects (reads files, no network), for
    /// `plan` and the run header.
    pub fn peek(&self) -> Result<(String, String), KubeTargetError> {
        let kc = self.kubeconfig()?;
        let context = self
            .context
            .clone()
            .or_else(|| kc.current_context.clone())
            .unwrap_or_default();
        let cluster = kc
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .unwrap_or_default();
        let server = kc
            .clusters
            .iter()
            .find(|c| c.name == cluster)
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .unwrap_or_else(|| "(no server)".into());
        Ok((server, context))
    }
}

/// `p` made absolute against the working directory (unchanged if that fails or it is empty).
/// kubectl (client-go) trims the whitespace around a `tokenFile`'s content; kube sends it as
/// is, so a token file written with `echo` (a trailing newline) is refused with 401 by the API
/// server although kubectl works. A file with whitespace around its token is read once here and
/// its trimmed token used instead; a clean file (kubelet's projected service-account token is
/// one) is left to kube, which rereads it every minute and so follows token rotation.
fn trim_token_files(k: &mut Kubeconfig) {
    for user in &mut k.auth_infos {
        let Some(auth) = user.auth_info.as_mut() else {
            continue;
        };
        let Some(path) = auth.token_file.as_deref() else {
            continue;
        };
        let Ok(raw) = std::fs::read_to_string(path) else {
            continue; // kube reports the unreadable file by name
        };
        let token = raw.trim();
        if token.len() != raw.len() && auth.token.is_none() {
            auth.token = Some(secrecy::SecretString::from(token.to_string()));
            auth.token_file = None;
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() {
        return PathBuf::new();
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `$FAULTLINE_SERVICEACCOUNT_DIR`, else the standard mount.
pub fn service_account_dir() -> PathBuf {
    std::env::var_os(SERVICE_ACCOUNT_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from(SERVICE_ACCOUNT_DIR),
            |v| absolute(Path::new(&v)),
        )
}

/// The in-cluster configuration as a kubeconfig: server from the environment, the CA file,
/// the token *file* (kube re-reads it as it rotates), the namespace file's namespace.
fn in_cluster_kubeconfig(dir: &Path) -> Result<Kubeconfig, KubeTargetError> {
    let env = |k: &str| {
        std::env::var(k).map_err(|_| KubeTargetError::InCluster(format!("{k} is not set")))
    };
    let host = env("KUBERNETES_SERVICE_HOST")?;
    let port = env("KUBERNETES_SERVICE_PORT")?;
    let port: u16 = port.parse().map_err(|_| {
        KubeTargetError::InCluster(format!("KUBERNETES_SERVICE_PORT \"{port}\" is not a port"))
    })?;
    let host = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host,
    };
    let token = dir.join("token");
    let ca = dir.join("ca.crt");
    for f in [&token, &ca] {
        if !f.is_file() {
            return Err(KubeTargetError::InCluster(format!(
                "{} does not exist",
                f.display()
            )));
        }
    }
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": format!("https://{host}:{port}"),
            "certificate-authority": ca,
        }}],
        "users": [{"name": "service-account", "user": {"tokenFile": token}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "service-account", "namespace": namespace,
        }}],
        "current-context": "in-cluster",
    });
    serde_json::from_value(doc)
        .map_err(|e| KubeTargetError::InCluster(format!("cannot form the configuration: {e}")))
}

/// A pod counts as Ready when its `Ready` condition is `True` and it is not terminating (what
/// `kubectl get pods` shows as READY; pod-kill's recovery and the `kube_ready` probe both use it).
pub fn is_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A Kubernetes client and the namespace to use when a fault names none.
#[derive(Clone)]
pub struct KubeTarget {
    pub client: kube::Client,
    pub namespace: String,
    /// How it was reached, for the ledger (so `faultline recover` can reconnect).
    pub spec: KubeSpec,
    /// The API server's URL.
    pub server: String,
    /// The context used (the kubeconfig's current one when none was named).
    pub context: String,
}

impl fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeTarget")
            .field("server", &self.server)
            .field("context", &self.context)
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
        KubeTarget::connect(&KubeSpec::explicit(path, context, None)).await
    }

    /// Connects as `spec` says, with its namespace override applied. Builds the client only;
    /// the first request is what reaches the server.
    pub async fn connect(spec: &KubeSpec) -> Result<KubeTarget, KubeTargetError> {
        KubeTarget::connect_with(spec, true).await
    }

    /// The same connection, with its client's automatic retry of 429/503/504 off: for a
    /// request whose 429 is an answer, not congestion (an eviction a PodDisruptionBudget does
    /// not allow now — the client would back off for minutes before saying so).
    pub async fn without_retry(&self) -> Result<KubeTarget, KubeTargetError> {
        KubeTarget::connect_with(&self.spec, false).await
    }

    async fn connect_with(spec: &KubeSpec, retry: bool) -> Result<KubeTarget, KubeTargetError> {
        let kubeconfig = spec.kubeconfig()?;
        let context = spec
            .context
            .clone()
            .or_else(|| kubeconfig.current_context.clone())
            .unwrap_or_default();
        let options = KubeConfigOptions {
            context: spec.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|error| KubeTargetError::Config {
                path: spec.kubeconfig.clone(),
                context: spec.context.clone(),
                error,
            })?;
        let mut config = config;
        config.default_retry = retry;
        let server = config.cluster_url.to_string();
        let server = server.strip_suffix('/').unwrap_or(&server).to_string();
        let namespace = spec
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|error| KubeTargetError::Client {
            what: spec.why(),
            error,
        })?;
        Ok(KubeTarget {
            client,
            namespace,
            spec: spec.clone(),
            server,
            context,
        })
    }

    /// One line for the run header and `plan`: which server, which context, why.
    pub fn describe(&self) -> String {
        format!(
            "cluster {} (context \"{}\", namespace \"{}\") from {}",
            self.server,
            self.context,
            self.namespace,
            self.spec.why()
        )
    }

    /// The namespace a fault acts in: its own, else this target's.
    pub fn namespace_for<'a>(&'a self, fault_namespace: Option<&'a str>) -> &'a str {
        fault_namespace.unwrap_or(&self.namespace)
    }
}

/// Is this a refusal that no retry will change (401, 403, a missing namespace)?
pub fn is_permanent(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 401
                || s.code == 403
                || (s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces"))
        }
        _ => false,
    }
}

/// A kube error as one line an operator can act on: the server's message once (kube's own
/// `Display` repeats it), what a 401 means, the TLS reason.
pub fn explain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 401 => format!(
            "401 Unauthorized: the API server did not accept the credentials (token wrong or \
             expired, exec plugin output, or a client certificate it does not trust){}",
            if s.message.is_empty() || s.message == "Unauthorized" {
                String::new()
            } else {
                format!(": {}", s.message)
            }
        ),
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => crate::tls::explain(other).unwrap_or_else(|| chain(other)),
    }
}

/// An error and its causes, each distinct message once (kube's errors often repeat their
/// cause in their own message).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let m = err.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "code": code, "reason": reason, "message": message,
            }))
            .unwrap(),
        ))
    }

    #[test]
    fn a_forbidden_is_one_line_with_the_message_once() {
        let m = "pods \"x\" is forbidden: User \"u\" cannot delete resource \"pods\"";
        let e = status(403, "Forbidden", m);
        let text = explain(&e);
        assert_eq!(text, format!("403 Forbidden: {m}"));
        assert!(is_permanent(&e));
        let u = explain(&status(401, "Unauthorized", "Unauthorized"));
        assert!(
            u.starts_with("401 Unauthorized: the API server did not accept"),
            "{u}"
        );
        assert_eq!(u.matches("Unauthorized").count(), 1, "{u}");
        assert!(!is_permanent(&status(500, "InternalError", "x")));
        assert!(!is_permanent(&status(
            404,
            "NotFound",
            "pods \"x\" not found"
        )));
    }

    #[test]
    fn in_cluster_needs_the_environment_and_the_files() {
        let dir = tempfile::tempdir().unwrap();
        // No token file: an error naming it (the environment is whatever the test runner has,
        // so only the file check is asserted when the variables happen to be set).
        let e = in_cluster_kubeconfig(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("KUBERNETES_SERVICE_HOST") || e.contains("token"),
            "{e}"
        );
    }

    #[test]
    fn a_spec_without_source_reads_as_explicit_and_says_why() {
        let s: KubeSpec = serde_json::from_str(r#"{"kubeconfig":"/k","context":"c"}"#).unwrap();
        assert_eq!(s.source, KubeSource::Explicit);
        assert!(s.why().contains("/k"), "{}", s.why());
        let v = serde_json::to_value(KubeSpec {
            source: KubeSource::InCluster,
            ..s
        })
        .unwrap();
        assert_eq!(v["source"], "in-cluster");
    }
}
