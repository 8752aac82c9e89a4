//! `pod-kill`: delete pods selected by namespace + label selector through the Kubernetes API.
//! Nothing to restore: recovery is the controller recreating them, watched until Ready.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Namespace; default: the experiment's kubernetes namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector, e.g. `app=vllm,role=worker`.
    pub selector: String,
    /// An empty selector selects every pod in the namespace: refused unless this says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_pods: bool,
    /// How many of the matching pods to delete.
    #[serde(default)]
    pub mode: KillMode,
    /// Grace period for the deletion; default: the pod's own.
    #[serde(default, with = "crate::duration::serde_opt")]
    #[schemars(with = "Option<String>")]
    pub grace_period: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum KillMode {
    #[default]
    One,
    Count(u32),
    Percent(f64),
    All,
}

// ---------------------------------------------------------------------------------------------
// Implementation.
//
// Victims: the matching pods that are not already terminating, sorted by name, shuffled with an
// RNG seeded from the run id and fault id, the first N taken. So a rerun of the same run (same
// ids) against the same pods picks the same victims, while different runs spread the kills.
// Each is deleted with a UID precondition, so a pod that was replaced in between (same name
// pattern, new uid) is never hit by mistake.

use std::time::Instant;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::common::Selector;
use crate::fault::kube_target::KubeTarget;
use crate::fault::{
    ApiUse, DescribeCx, FaultContext, Lifetime, NoKubernetes, Problem, Reach, SimBinding, Target,
    Verification,
};

/// Undo data: nothing to undo, but what `verify` and `wait_ready` need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub namespace: String,
    pub selector: String,
    /// How many pods the selector matched, and how many of them were Ready, at `prepare`.
    pub matched: usize,
    pub ready_before: usize,
    pub victims: Vec<Victim>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    NoKube(#[from] NoKubernetes),
    #[error("pod-kill: invalid selector \"{selector}\": {reason}")]
    BadSelector { selector: String, reason: String },
    #[error("pod-kill: invalid mode: {0}")]
    BadMode(String),
    #[error("pod-kill: no pods match selector \"{selector}\" in namespace \"{namespace}\"")]
    NoPods { selector: String, namespace: String },
    /// Not a `source`: the one line of `explain` is the whole story (kube's own text repeats
    /// the server's message).
    #[error(
        "pod-kill: cannot {action} in namespace \"{namespace}\": {}",
        crate::fault::kube_target::explain(error)
    )]
    Kube {
        action: String,
        namespace: String,
        error: Box<kube::Error>,
    },
    #[error(
        "pod-kill did not take effect: pod \"{name}\" (uid {uid}) is still there and not terminating"
    )]
    NotDeleted { name: String, uid: String },
    #[error(
        "pod-kill: only {ready} of {want} pods matching \"{selector}\" in namespace \"{namespace}\" were Ready after {waited:?}"
    )]
    NotReady {
        selector: String,
        namespace: String,
        want: usize,
        ready: usize,
        waited: Duration,
    },
}

fn kube_err(action: impl Into<String>, namespace: &str) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    let namespace = namespace.to_string();
    move |error| Error::Kube {
        action,
        namespace,
        error: Box::new(error),
    }
}

/// How many of `n` pods the mode kills (at least one when there is any).
pub fn victim_count(mode: &KillMode, n: usize) -> Result<usize, Error> {
    let k = match mode {
        KillMode::One => 1,
        KillMode::Count(0) => return Err(Error::BadMode("count must be at least 1".into())),
        KillMode::Count(c) => *c as usize,
        KillMode::Percent(p) if !(*p > 0.0 && *p <= 100.0) => {
            return Err(Error::BadMode(format!("percent {p} is not in (0, 100]")));
        }
        KillMode::Percent(p) => ((n as f64) * p / 100.0).ceil() as usize,
        KillMode::All => n,
    };
    Ok(k.clamp(1, n.max(1)).min(n))
}

/// Picks `count` of `names` (sorted first), reproducibly for a given seed.
pub fn pick_victims(mut names: Vec<String>, count: usize, seed: u64) -> Vec<String> {
    names.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    names.shuffle(&mut rng);
    names.truncate(count);
    names.sort();
    names
}

/// FNV-1a of the run and fault ids: the victim RNG's seed.
pub fn seed(run_id: &str, fault_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run_id.bytes().chain([0]).chain(fault_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn check(p: &Params) -> Result<(), Error> {
    Selector::parse(&p.selector).map_err(|reason| Error::BadSelector {
        selector: p.selector.clone(),
        reason,
    })?;
    victim_count(&p.mode, 1)?;
    Ok(())
}

async fn list(api: &Api<Pod>, selector: &str, namespace: &str) -> Result<Vec<Pod>, Error> {
    let pods = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(kube_err(format!("list pods \"{selector}\""), namespace))?;
    Ok(pods.items)
}

/// Lists the pods (there must be some) and dry-runs deleting one, so missing permissions show
/// up before any load starts.
pub async fn preflight(p: &Params, _ctx: &FaultContext, kube: &KubeTarget) -> Result<(), Error> {
    check(p)?;
    let ns = kube.namespace_for(p.namespace.as_deref());
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let pods = list(&api, &p.selector, ns).await?;
    let Some(first) = pods
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
    else {
        return Err(Error::NoPods {
            selector: p.selector.clone(),
            namespace: ns.to_string(),
        });
    };
    let name = first.metadata.name.clone().unwrap_or_default();
    let dp = DeleteParams {
        dry_run: true,
        preconditions: first.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    api.delete(&name, &dp)
        .await
        .map_err(kube_err(format!("delete pod \"{name}\" (dry run)"), ns))?;
    Ok(())
}

/// Picks the victims and records their names and uids; deletes nothing.
pub async fn prepare(p: &Params, ctx: &FaultContext, kube: &KubeTarget) -> Result<Undo, Error> {
    check(p)?;
    let ns = kube.namespace_for(p.namespace.as_deref()).to_string();
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &ns);
    let pods = list(&api, &p.selector, &ns).await?;
    let ready_before = pods
        .iter()
        .filter(|p| crate::fault::kube_target::is_ready(p))
        .count();
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    if live.is_empty() {
        return Err(Error::NoPods {
            selector: p.selector.clone(),
            namespace: ns,
        });
    }
    let count = victim_count(&p.mode, live.len())?;
    let names = live
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let chosen = pick_victims(names, count, seed(&ctx.run_id, &ctx.fault_id));
    let victims = chosen
        .into_iter()
        .map(|name| {
            let uid = live
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&name))
                .and_then(|p| p.metadata.uid.clone())
                .unwrap_or_default();
            Victim { name, uid }
        })
        .collect();
    Ok(Undo {
        namespace: ns,
        selector: p.selector.clone(),
        matched: pods.len(),
        ready_before,
        victims,
    })
}

/// Deletes the victims (with the grace period, and their uid as a precondition). A victim that
/// is already gone or was replaced counts as deleted.
pub async fn inject(
    p: &Params,
    _ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &undo.namespace);
    for v in &undo.victims {
        let dp = DeleteParams {
            grace_period_seconds: p
                .grace_period
                .map(|g| g.as_secs().min(u64::from(u32::MAX)) as u32),
            preconditions: (!v.uid.is_empty()).then(|| Preconditions {
                uid: Some(v.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&v.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                tracing::info!("pod-kill: pod {} was already gone or replaced", v.name);
            }
            Err(e) => {
                return Err(kube_err(
                    format!("delete pod \"{}\"", v.name),
                    &undo.namespace,
                )(e));
            }
        }
    }
    Ok(())
}

/// Every victim is gone, terminating, or replaced (same name, another uid).
pub async fn verify(
    _p: &Params,
    _ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<Verification, Error> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &undo.namespace);
    for v in &undo.victims {
        let pod = api
            .get_opt(&v.name)
            .await
            .map_err(kube_err(format!("get pod \"{}\"", v.name), &undo.namespace))?;
        if let Some(pod) = pod
            && pod.metadata.uid.as_deref() == Some(&v.uid)
            && pod.metadata.deletion_timestamp.is_none()
        {
            return Err(Error::NotDeleted {
                name: v.name.clone(),
                uid: v.uid.clone(),
            });
        }
    }
    Ok(Verification::Verified)
}

/// Nothing to undo: the controller recreates the pods. (See [`wait_ready`] for when it has.)
pub async fn restore(
    _p: &Params,
    _ctx: &FaultContext,
    _kube: &KubeTarget,
    _undo: &Undo,
) -> Result<(), Error> {
    Ok(())
}

/// Watches the pods matching `selector` until at least `want` of them are Ready — victims
/// (by uid) and terminating pods never count — and returns when that was seen. The runner uses
/// this as the clearing time of a pod kill.
pub async fn wait_ready(
    kube: &KubeTarget,
    namespace: &str,
    selector: &str,
    want: usize,
    exclude_uids: &[String],
    timeout: Duration,
) -> Result<DateTime<Utc>, Error> {
    use futures_util::StreamExt;
    use kube::runtime::{reflector, watcher};

    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default().labels(selector)),
    );
    let count = || {
        reader
            .state()
            .iter()
            .filter(|p| crate::fault::kube_target::is_ready(p))
            .filter(|p| {
                p.metadata
                    .uid
                    .as_ref()
                    .is_none_or(|u| !exclude_uids.contains(u))
            })
            .count()
    };
    let started = Instant::now();
    let mut stream = std::pin::pin!(stream);
    let watch = async {
        while let Some(ev) = stream.next().await {
            match ev {
                // After a (re)list or any change: check the whole store.
                Ok(
                    watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_),
                ) => {
                    if count() >= want {
                        return Ok(Utc::now());
                    }
                }
                Ok(_) => {}
                // The watcher retries on its own after errors; note them and go on.
                Err(e) => tracing::debug!("pod-kill: watching pods \"{selector}\": {e}"),
            }
        }
        Err(())
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(Ok(at)) => Ok(at),
        _ => Err(Error::NotReady {
            selector: selector.to_string(),
            namespace: namespace.to_string(),
            want,
            ready: count(),
            waited: started.elapsed(),
        }),
    }
}

/// [`wait_ready`] for a fault's undo data: as many Ready pods as before the kill, victims not
/// counted.
pub async fn wait_recovered(
    kube: &KubeTarget,
    undo: &Undo,
    timeout: Duration,
) -> Result<DateTime<Utc>, Error> {
    let victims: Vec<String> = undo.victims.iter().map(|v| v.uid.clone()).collect();
    wait_ready(
        kube,
        &undo.namespace,
        &undo.selector,
        undo.ready_before,
        &victims,
        timeout,
    )
    .await
}

impl crate::fault::FaultKind for Params {
    type Undo = Undo;
    type Error = Error;

    fn problems(&self) -> Vec<Problem> {
        let mut out = crate::fault::params::selector_problems(&self.selector, self.all_pods);
        match self.mode {
            KillMode::Count(0) => out.push(Problem::new(
                &["mode", "count"],
                "'0'",
                "must be at least 1",
            )),
            KillMode::Percent(pct) if !(pct > 0.0 && pct <= 100.0) => out.push(Problem::new(
                &["mode", "percent"],
                format!("'{pct}'"),
                "must be in (0, 100]",
            )),
            _ => {}
        }
        out
    }

    fn reach(&self) -> Reach {
        Reach {
            targets: vec![Target::Pods {
                namespace: self.namespace.clone(),
                selector: self.selector.clone(),
            }],
            hosts: Vec::new(),
            // list: pick victims; delete: the kill; get: verify it is gone; watch: wait for
            // the replacements to be Ready.
            kube: vec![ApiUse {
                verbs: &["list", "watch", "get", "delete"],
                group: "",
                resource: "pods",
                namespace: Some(self.namespace.clone()),
            }],
            load: false,
        }
    }

    fn describe(&self, cx: &DescribeCx) -> String {
        let how = match &self.mode {
            KillMode::One => "one pod".to_string(),
            KillMode::Count(n) => format!("{n} pods"),
            KillMode::Percent(x) => format!("{x}% of the pods"),
            KillMode::All => "all pods".to_string(),
        };
        let grace = self
            .grace_period
            .map(|g| format!(", grace period {}", humantime::format_duration(g)))
            .unwrap_or_default();
        format!(
            "delete {how} matching '{}' in namespace {}{grace}",
            self.selector,
            self.namespace.as_deref().unwrap_or(&cx.namespace)
        )
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        match end {
            Some(end) => format!(", watch pods until Ready (window until {end})"),
            None => ", then watch pods until Ready (no restore needed)".into(),
        }
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::OneShot
    }

    fn deadman_margin(&self) -> Option<Duration> {
        None
    }

    fn bind_to_sim(&mut self, _sim: &SimBinding) {}

    fn is_permanent(e: &Error) -> bool {
        matches!(e, Error::Kube { error, .. } if crate::fault::kube_target::is_permanent(error))
    }

    fn example() -> Self {
        Params {
            namespace: None,
            selector: "app=vllm".into(),
            all_pods: false,
            mode: KillMode::One,
            grace_period: None,
        }
    }

    async fn preflight(&self, ctx: &FaultContext) -> Result<(), Error> {
        preflight(self, ctx, ctx.kube()?).await
    }
    async fn prepare(&self, ctx: &FaultContext) -> Result<Undo, Error> {
        prepare(self, ctx, ctx.kube()?).await
    }
    async fn inject(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        inject(self, ctx, ctx.kube()?, undo).await
    }
    async fn verify(&self, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
        verify(self, ctx, ctx.kube()?, undo).await
    }
    async fn restore(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        restore(self, ctx, ctx.kube()?, undo).await
    }
    /// Cleared when as many pods are Ready as before the kill, none of them a victim: until
    /// then the cluster has not recovered, whatever the windows say.
    async fn wait_cleared(
        &self,
        ctx: &FaultContext,
        undo: &Undo,
        limit: Duration,
    ) -> Result<Option<String>, Error> {
        wait_recovered(ctx.kube()?, undo, limit).await?;
        Ok(Some("as many pods Ready as before the kill".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_count_victims() {
        assert_eq!(victim_count(&KillMode::One, 5).unwrap(), 1);
        assert_eq!(victim_count(&KillMode::Count(3), 5).unwrap(), 3);
        assert_eq!(victim_count(&KillMode::Count(9), 5).unwrap(), 5);
        assert_eq!(victim_count(&KillMode::Percent(50.0), 5).unwrap(), 3);
        assert_eq!(victim_count(&KillMode::Percent(1.0), 5).unwrap(), 1);
        assert_eq!(victim_count(&KillMode::Percent(100.0), 5).unwrap(), 5);
        assert_eq!(victim_count(&KillMode::All, 5).unwrap(), 5);
        assert!(victim_count(&KillMode::Count(0), 5).is_err());
        assert!(victim_count(&KillMode::Percent(0.0), 5).is_err());
        assert!(victim_count(&KillMode::Percent(101.0), 5).is_err());
        assert!(victim_count(&KillMode::Percent(f64::NAN), 5).is_err());
    }

    #[test]
    fn victims_are_reproducible_per_run_and_fault() {
        let names: Vec<String> = (0..10).map(|i| format!("pod-{i}")).collect();
        let mut shuffled = names.clone();
        shuffled.reverse();
        let a = pick_victims(names.clone(), 3, seed("run1", "f1"));
        assert_eq!(a, pick_victims(shuffled, 3, seed("run1", "f1")));
        assert_eq!(a.len(), 3);
        let spread: std::collections::BTreeSet<Vec<String>> = (0..20)
            .map(|i| pick_victims(names.clone(), 3, seed(&format!("run{i}"), "f1")))
            .collect();
        assert!(spread.len() > 1);
        assert_ne!(seed("ab", "c"), seed("a", "bc"));
    }
}
