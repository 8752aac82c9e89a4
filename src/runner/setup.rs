//! Before any load: the target up and reachable, the cluster connected, every target claimed,
//! every Kubernetes permission asked and every fault preflighted — so that a run that cannot
//! finish cleanly is refused before it touches anything.

use super::execute::{RunError, RunOptions};
use crate::fault::exec::{HostSpec, Hosts, SshSpec};
use crate::fault::kube_access;
use crate::fault::kube_target::{KubeSource, KubeSpec, KubeTarget};
use crate::fault::owner::{self, Ownership};
use crate::fault::{FaultContext, SimBinding};
use crate::load::client::{ApiKey, Client, ClientConfig};
use crate::load::engine::Control;
use crate::runner::spec::{Experiment, ScheduledFault, Target};
use crate::sim;
use chrono::Utc;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `~/...` as the shell would expand it (ssh does not expand it in `-i` arguments).
fn expand_home(p: &Option<PathBuf>) -> Option<PathBuf> {
    let p = p.as_ref()?;
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
        _ => Some(p.clone()),
    }
}

pub(crate) fn host_spec(h: &HostSpec) -> HostSpec {
    match h {
        HostSpec::Ssh(s) => HostSpec::Ssh(SshSpec {
            identity_file: expand_home(&s.identity_file),
            known_hosts: expand_home(&s.known_hosts),
            config_file: expand_home(&s.config_file),
            ..s.clone()
        }),
        local => local.clone(),
    }
}

/// Against the embedded sim, each fault kind rewrites what names a sim stand-in (the
/// `faultline nvidia-smi` command on local hosts becomes the sim's own wrapper), so that the
/// ledger holds commands that `faultline recover` can run from any process.
pub(crate) fn bind_to_sim(exp: &Experiment, state_dir: &std::path::Path) -> Experiment {
    let mut exp = exp.clone();
    let sim = SimBinding {
        state_dir: state_dir.to_path_buf(),
        local_hosts: exp
            .hosts
            .iter()
            .filter(|(_, h)| matches!(h, HostSpec::Local))
            .map(|(name, _)| name.clone())
            .collect(),
    };
    for f in &mut exp.timeline {
        f.spec.bind_to_sim(&sim);
    }
    exp
}

/// The embedded sim started (when it is the target), and the client's configuration, checked
/// reachable (TLS included) before anything is injected.
pub(crate) async fn start_target(
    exp: &Experiment,
    opts: &RunOptions,
) -> Result<(Option<sim::SimHandle>, ClientConfig), RunError> {
    let (sim, base_url, model, api, timeout, api_key) = match &exp.target {
        Target::Sim {
            config,
            api,
            timeout,
            ..
        } => {
            let mut config = config.clone();
            if config.faultline_bin.is_none() {
                config.faultline_bin = opts.faultline_bin.clone();
            }
            let listen = config
                .listen
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("valid"));
            let handle = sim::start(config.clone(), listen).await?;
            let url = format!("http://{}", handle.addr);
            (
                Some(handle),
                url,
                config.model.clone(),
                *api,
                *timeout,
                None,
            )
        }
        Target::Endpoint {
            url,
            model,
            api,
            timeout,
            api_key_env,
            ..
        } => {
            let key = match api_key_env {
                Some(var) => ApiKey::from_env(var)?,
                None => None,
            };
            (None, url.clone(), model.clone(), *api, *timeout, key)
        }
    };
    let (headers, tls) = match &exp.target {
        Target::Endpoint { headers, tls, .. } => (
            headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tls.clone(),
        ),
        _ => (vec![], Default::default()),
    };
    let client_cfg = ClientConfig {
        base_url,
        api,
        model,
        stream: true,
        include_usage: true,
        api_key,
        headers,
        timeout: timeout.unwrap_or(Duration::from_secs(30)),
        connect_timeout: Duration::from_secs(5),
        tls,
        max_event_bytes: crate::load::sse::DEFAULT_MAX_EVENT_BYTES,
    };
    // Reachable (TLS included) before anything is injected; an endpoint without /v1/models is
    // fine, the file names the model.
    Client::new(client_cfg.clone(), Instant::now())?
        .resolve_model()
        .await?;

    Ok((sim, client_cfg))
}

/// The cluster: the embedded sim's Kubernetes API, or a kubeconfig (`None` without a
/// `kubernetes` section). The second value keeps the sim's API server up until the run ends.
pub(crate) async fn connect_cluster(
    exp: &Experiment,
    sim: Option<&sim::SimHandle>,
    opts: &RunOptions,
) -> Result<(Option<KubeTarget>, Option<sim::kube::KubeApiHandle>), RunError> {
    let mut kube_api = None;
    let kube = match &exp.kubernetes {
        None => None,
        Some(k) => {
            let spec = match (k.resolve(), sim) {
                (None, Some(s)) => {
                    let api = sim::kube::serve(
                        s.control(),
                        "127.0.0.1:0".parse().expect("valid"),
                        &opts.out_dir.join("kubeconfig"),
                    )
                    .await
                    .map_err(|e| RunError::Kube(e.to_string()))?;
                    let spec = KubeSpec {
                        kubeconfig: api.kubeconfig.clone(),
                        context: k.context.clone(),
                        namespace: k.namespace.clone(),
                        source: KubeSource::Sim,
                    };
                    kube_api = Some(api);
                    spec
                }
                (None, None) => {
                    return Err(RunError::Kube(
                        "`kubeconfig: sim` needs the embedded sim as the target".into(),
                    ));
                }
                (Some(spec), _) => spec.map_err(|e| RunError::Kube(e.to_string()))?,
            };
            let target = KubeTarget::connect(&spec)
                .await
                .map_err(|e| RunError::Kube(e.to_string()))?;
            // The run header: never act on a cluster without saying which.
            eprintln!("kubernetes: {}", target.describe());
            Some(target)
        }
    };
    Ok((kube, kube_api))
}

/// Before any load: one owner per target (every target of the timeline claimed, held until the
/// returned guard drops, after the last restore; a run that shares a target with a live one is
/// refused here, naming the holder), every Kubernetes permission the run will use asked of the
/// API server at once, and every fault preflighted.
pub(crate) async fn claim_and_preflight(
    exp: &Experiment,
    opts: &RunOptions,
    hosts: &Arc<Hosts>,
    kube: &Option<KubeTarget>,
    control: &Arc<Control>,
) -> Result<Ownership, RunError> {
    let context = |f: &ScheduledFault, deadline_from_now: Duration| {
        let deadline = Utc::now()
            + chrono::Duration::from_std(deadline_from_now).unwrap_or(chrono::Duration::zero());
        let mut ctx = FaultContext::new(&opts.run_id, &f.id, hosts.clone(), deadline);
        ctx.control = Some(control.clone());
        ctx.kube = kube.clone();
        ctx
    };

    let targets: Vec<String> = exp
        .timeline
        .iter()
        .flat_map(|f| owner::target_keys(&f.spec, &context(f, f.end())))
        .collect();
    let ownership = Ownership::claim(&opts.ledger, &opts.run_id, &targets)?;

    // Least privilege: every verb the run will use, asked of the API server at once.
    if let Some(k) = kube {
        let mut needs: Vec<kube_access::Need> = exp
            .timeline
            .iter()
            .flat_map(|f| kube_access::needs(&f.spec, k))
            .collect();
        for p in &exp.probes {
            if let crate::runner::spec::ProbeCheck::KubeReady(r) = &p.check {
                needs.push(kube_access::Need {
                    verb: "list",
                    group: "",
                    resource: "pods",
                    namespace: Some(k.namespace_for(r.namespace.as_deref()).to_string()),
                });
            }
        }
        kube_access::check(k, &needs).await?;
    }

    // Preflight every fault before any load starts.
    for f in &exp.timeline {
        let ctx = context(f, f.end());
        f.spec
            .preflight(&ctx)
            .await
            .map_err(|error| RunError::Preflight {
                id: f.id.clone(),
                error: Box::new(error),
            })?;
    }
    Ok(ownership)
}
