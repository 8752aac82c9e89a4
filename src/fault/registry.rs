//! The registry: one line per fault kind. Everything else about a kind is in its module, behind
//! [`FaultKind`]; this file turns the list into the [`FaultSpec`] enum that files, the ledger
//! and `faultline inject` all parse into, and into the dispatch from that enum to the kinds.
//!
//! Adding a kind: write `src/fault/<kind>.rs` with a `Params` type that implements
//! [`FaultKind`], declare the module in `mod.rs`, and add one line below — the tag as written
//! in files, the variant name, the parameters type. The compiler names every method the new
//! kind still lacks.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::exec::Hosts;
use super::kind::{ApiUse, DescribeCx, FaultKind, Lifetime, Mark, Problem, Reach, SimBinding};
use super::kube_target::KubeTarget;
use super::{FaultContext, Undo, Verification};
use super::{
    gpu_degrade, gpu_lockout, load_spike, network_delay, network_partition, pod_kill,
    process_pause, ssh_command,
};

/// Turns a kind's parameters (a JSON value) into its type; the spec reader implements it so
/// that an error points at its line in the file.
pub trait Decoder {
    type Error;
    fn decode<T: DeserializeOwned>(&self, params: serde_json::Value) -> Result<T, Self::Error>;
}

macro_rules! registry {
    ($($tag:literal => $variant:ident($params:ty)),* $(,)?) => {
        /// A fault definition: the `kind` tag selects the kind, the other keys are its
        /// parameters.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "kind")]
        pub enum FaultSpec {
            $(#[serde(rename = $tag)] $variant($params),)*
        }

        #[derive(Debug, thiserror::Error)]
        pub enum FaultError {
            $(
                #[error(transparent)]
                $variant(<$params as FaultKind>::Error),
            )*
            #[error("fault {fault_id:?} ({kind}) needs a Kubernetes cluster: add a `kubernetes` section")]
            NoKubernetes {
                fault_id: String,
                kind: &'static str,
            },
            #[error("undo data of fault {fault_id:?} ({kind}) is unreadable: {source}")]
            BadUndo {
                fault_id: String,
                kind: &'static str,
                source: serde_json::Error,
            },
            #[error("fault {fault_id:?} ({kind}): {source}")]
            Hosts {
                fault_id: String,
                kind: &'static str,
                source: Box<super::exec::ExecError>,
            },
        }

        impl FaultError {
            /// A failure no retry will change: the API server refused (401, 403) or the
            /// namespace is gone. The ledger entry stays until an operator restores by hand and
            /// resolves it.
            pub fn is_permanent(&self) -> bool {
                match self {
                    $(FaultError::$variant(e) => <$params as FaultKind>::is_permanent(e),)*
                    _ => false,
                }
            }
        }

        impl FaultSpec {
            /// Every kind tag, in registry order.
            pub const KINDS: &'static [&'static str] = &[$($tag),*];

            /// The kind tag as written in files.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(FaultSpec::$variant(_) => $tag,)*
                }
            }

            /// Parameters of kind `kind` (without the tag) into a spec; `None`: no such kind.
            pub fn decode<D: Decoder>(
                kind: &str,
                params: serde_json::Value,
                decoder: &D,
            ) -> Option<Result<FaultSpec, D::Error>> {
                match kind {
                    $($tag => Some(decoder.decode::<$params>(params).map(FaultSpec::$variant)),)*
                    _ => None,
                }
            }

            /// One valid example of every kind, in registry order.
            pub fn examples() -> Vec<FaultSpec> {
                vec![$(FaultSpec::$variant(<$params as FaultKind>::example()),)*]
            }

            pub fn problems(&self) -> Vec<Problem> {
                match self {
                    $(FaultSpec::$variant(p) => p.problems(),)*
                }
            }

            pub fn reach(&self) -> Reach {
                match self {
                    $(FaultSpec::$variant(p) => p.reach(),)*
                }
            }

            pub fn describe(&self, cx: &DescribeCx) -> String {
                match self {
                    $(FaultSpec::$variant(p) => p.describe(cx),)*
                }
            }

            pub fn describe_end(&self, end: Option<&str>) -> String {
                match self {
                    $(FaultSpec::$variant(p) => p.describe_end(end),)*
                }
            }

            pub fn lifetime(&self) -> Lifetime {
                match self {
                    $(FaultSpec::$variant(p) => p.lifetime(),)*
                }
            }

            pub fn deadman_margin(&self) -> Option<Duration> {
                match self {
                    $(FaultSpec::$variant(p) => p.deadman_margin(),)*
                }
            }

            pub fn bind_to_sim(&mut self, sim: &SimBinding) {
                match self {
                    $(FaultSpec::$variant(p) => p.bind_to_sim(sim),)*
                }
            }

            /// Can we reach and act on the target at all? Run before any load starts; touches
            /// nothing.
            pub async fn preflight(&self, ctx: &FaultContext) -> Result<(), FaultError> {
                let ctx = &self.scoped(ctx)?;
                match self {
                    $(FaultSpec::$variant(p) => p.preflight(ctx).await.map_err(FaultError::$variant),)*
                }
            }

            /// Reads the current state and computes the undo data; touches nothing.
            pub async fn prepare(&self, ctx: &FaultContext) -> Result<Undo, FaultError> {
                let ctx = &self.scoped(ctx)?;
                match self {
                    $(FaultSpec::$variant(p) => Ok(to_value(
                        p.prepare(ctx).await.map_err(FaultError::$variant)?,
                    )),)*
                }
            }

            /// Makes the change (and arms the dead-man switch where there is one). Call only
            /// after the ledger entry holding `undo` is on disk. After an error the fault may be
            /// partly in effect: call `restore`.
            pub async fn inject(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), FaultError> {
                let ctx = &self.scoped(ctx)?;
                match self {
                    $(FaultSpec::$variant(p) => p
                        .inject(ctx, &self.undo::<$params>(ctx, undo)?)
                        .await
                        .map_err(FaultError::$variant),)*
                }
            }

            /// Did it take effect? An error means it did not (the run is invalid).
            pub async fn verify(
                &self,
                ctx: &FaultContext,
                undo: &Undo,
            ) -> Result<Verification, FaultError> {
                let ctx = &self.scoped(ctx)?;
                match self {
                    $(FaultSpec::$variant(p) => p
                        .verify(ctx, &self.undo::<$params>(ctx, undo)?)
                        .await
                        .map_err(FaultError::$variant),)*
                }
            }

            /// Puts things back from the undo data alone; idempotent. Cancels the dead-man
            /// switch only after the restore succeeded.
            pub async fn restore(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), FaultError> {
                let ctx = &self.scoped(ctx)?;
                match self {
                    $(FaultSpec::$variant(p) => p
                        .restore(ctx, &self.undo::<$params>(ctx, undo)?)
                        .await
                        .map_err(FaultError::$variant),)*
                }
            }

            /// A one-shot fault: waits up to `limit` until the system is back.
            /// `Ok(Some(text))`: cleared now; `Ok(None)`: this kind has nothing to watch.
            pub async fn wait_cleared(
                &self,
                ctx: &FaultContext,
                undo: &Undo,
                limit: Duration,
            ) -> Result<Option<String>, FaultError> {
                let ctx = &self.scoped(ctx)?;
                match self {
                    $(FaultSpec::$variant(p) => p
                        .wait_cleared(ctx, &self.undo::<$params>(ctx, undo)?, limit)
                        .await
                        .map_err(FaultError::$variant),)*
                }
            }

            /// What every kind's [`FaultKind::marks`] and [`FaultKind::clear_mark`] use.
            pub fn mark_access() -> Vec<ApiUse> {
                let mut out = Vec::new();
                $(out.extend(<$params as FaultKind>::mark_access());)*
                out
            }

            /// Every kind's marks on the cluster (in `namespace`, or all).
            pub async fn marks(
                kube: &KubeTarget,
                namespace: Option<&str>,
            ) -> Result<Vec<Mark>, FaultError> {
                let mut out = Vec::new();
                $(out.extend(
                    <$params as FaultKind>::marks(kube, namespace)
                        .await
                        .map_err(FaultError::$variant)?,
                );)*
                Ok(out)
            }

            /// Undoes what `mark` marks, through the kind that left it.
            pub async fn clear_mark(kube: &KubeTarget, mark: &Mark) -> Result<(), FaultError> {
                match mark.kind {
                    $($tag => <$params as FaultKind>::clear_mark(kube, mark)
                        .await
                        .map_err(FaultError::$variant),)*
                    _ => Ok(()),
                }
            }

            fn undo<P: FaultKind>(&self, ctx: &FaultContext, undo: &Undo) -> Result<P::Undo, FaultError> {
                serde_json::from_value(undo.clone()).map_err(|source| FaultError::BadUndo {
                    fault_id: ctx.fault_id.clone(),
                    kind: self.kind(),
                    source,
                })
            }
        }
    };
}
registry! {
    "gpu-lockout" => GpuLockout(gpu_lockout::Params),
    "ssh-command" => SshCommand(ssh_command::Params),
    "pod-kill" => PodKill(pod_kill::Params),
    "network-partition" => NetworkPartition(network_partition::Params),
    "load-spike" => LoadSpike(load_spike::Params),
    "network-delay" => NetworkDelay(network_delay::Params),
    "gpu-degrade" => GpuDegrade(gpu_degrade::Params),
    "process-pause" => ProcessPause(process_pause::Params),
    "node-drain" => NodeDrain(super::node_drain::Params),
}

impl FaultSpec {
    /// What the fault acts on, as `scope:name` strings; two faults that share a target must not
    /// overlap in time.
    pub fn targets(&self) -> Vec<String> {
        self.reach()
            .targets
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The host names this fault acts on (the ledger records only those).
    pub fn host_names(&self) -> Vec<String> {
        self.reach().host_names()
    }

    /// Does this kind act through the Kubernetes API (so it needs a cluster, and its ledger
    /// entry records how the cluster was reached)?
    pub fn uses_kubernetes(&self) -> bool {
        self.reach().kubernetes()
    }

    /// When the node-side dead-man switch fires (`None`: there is none).
    pub fn deadman_at(
        &self,
        deadline: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        Some(deadline + chrono::Duration::from_std(self.deadman_margin()?).ok()?)
    }

    fn scoped(&self, ctx: &FaultContext) -> Result<FaultContext, FaultError> {
        scope(&self.reach(), self.kind(), ctx)
    }

    /// The marks (see [`Mark`]) whose deadline is before `now`: what `faultline recover
    /// --kubeconfig` undoes. A mark without a readable deadline is left alone (and logged).
    pub async fn expired_marks(
        kube: &KubeTarget,
        namespace: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Mark>, FaultError> {
        let mut out = Vec::new();
        for m in FaultSpec::marks(kube, namespace).await? {
            match m.deadline {
                None => tracing::warn!("{} is faultline's but has no readable deadline", m.what),
                Some(d) if d < now => out.push(m),
                Some(_) => {}
            }
        }
        Ok(out)
    }

    /// [`FaultSpec::restore`], tried once if it fails permanently
    /// ([`FaultError::is_permanent`]), else up to `attempts` times with a wait that doubles from
    /// `first_wait`; `on_failure` hears each failed try (attempt number from 1). Returns how many
    /// tries it took. The runner and `faultline recover` both restore through this.
    pub async fn restore_with_retries(
        &self,
        ctx: &FaultContext,
        undo: &Undo,
        attempts: u32,
        first_wait: Duration,
        mut on_failure: impl FnMut(u32, &FaultError),
    ) -> Result<u32, FaultError> {
        let mut wait = first_wait;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.restore(ctx, undo).await {
                Ok(()) => return Ok(attempt),
                Err(e) => {
                    on_failure(attempt, &e);
                    // A refusal (403, a missing namespace) will not change by asking again.
                    if e.is_permanent() || attempt >= attempts.max(1) {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// `ctx` holding only the hosts `reach` names (sharing their connections), refusing early when
/// a Kubernetes kind has no cluster: what every life-cycle call of a kind receives.
fn scope(
    reach: &Reach,
    kind: &'static str,
    ctx: &FaultContext,
) -> Result<FaultContext, FaultError> {
    if reach.kubernetes() && ctx.kube.is_none() {
        return Err(FaultError::NoKubernetes {
            fault_id: ctx.fault_id.clone(),
            kind,
        });
    }
    let hosts: Hosts = ctx
        .hosts
        .restricted(&reach.host_names())
        .map_err(|source| FaultError::Hosts {
            fault_id: ctx.fault_id.clone(),
            kind,
            source: Box::new(source),
        })?;
    Ok(FaultContext {
        hosts: std::sync::Arc::new(hosts),
        ..ctx.clone()
    })
}

fn to_value<T: Serialize>(t: T) -> Undo {
    serde_json::to_value(t).expect("undo data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::exec::{ExecError, HostSpec};
    use crate::fault::kind::{HostRef, Target};
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    /// Every string under a `host` or `hosts` key, anywhere in `v`.
    fn named_hosts(v: &Value, under_host_key: bool, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) if under_host_key => {
                out.insert(s.clone());
            }
            Value::Array(a) => a.iter().for_each(|x| named_hosts(x, under_host_key, out)),
            Value::Object(m) => {
                for (k, x) in m {
                    named_hosts(x, k == "host" || k == "hosts", out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_kind_is_registered_once_and_its_example_round_trips_with_its_tag() {
        let tags: BTreeSet<&str> = FaultSpec::KINDS.iter().copied().collect();
        assert_eq!(
            tags.len(),
            FaultSpec::KINDS.len(),
            "a tag is registered twice"
        );
        let examples = FaultSpec::examples();
        assert_eq!(examples.len(), FaultSpec::KINDS.len());
        for (spec, tag) in examples.iter().zip(FaultSpec::KINDS) {
            assert_eq!(spec.kind(), *tag);
            let v = serde_json::to_value(spec).unwrap();
            assert_eq!(v["kind"], *tag);
            let back: FaultSpec = serde_json::from_value(v).unwrap();
            assert_eq!(&back, spec);
            assert!(spec.problems().is_empty(), "{tag}: {:?}", spec.problems());
        }
    }

    /// The silent-ledger case: a kind whose parameters name a host that its reach leaves out
    /// would write ledger entries without that host, and `recover` could not reach it. Each
    /// registered kind's reach names every host its parameters name, and has a target.
    #[test]
    fn every_kind_reaches_every_host_its_parameters_name_and_has_a_target() {
        for spec in FaultSpec::examples() {
            let reach = spec.reach();
            assert!(!reach.targets.is_empty(), "{}: no targets", spec.kind());
            let mut named = BTreeSet::new();
            named_hosts(&serde_json::to_value(&spec).unwrap(), false, &mut named);
            let reached: BTreeSet<String> = reach.host_names().into_iter().collect();
            assert_eq!(named, reached, "{}: hosts named vs reached", spec.kind());
            for h in &reach.hosts {
                assert!(
                    !h.path.is_empty(),
                    "{}: host {} has no key path",
                    spec.kind(),
                    h.name
                );
            }
        }
    }

    /// A kind that forgets a host in its reach cannot reach it: the context its methods get
    /// holds only the reach's hosts, so it fails at once (in its first test) instead of
    /// writing a ledger entry `recover` cannot act on.
    #[tokio::test]
    async fn a_kind_gets_only_the_hosts_its_reach_names() {
        let hosts: BTreeMap<String, HostSpec> = [
            ("declared".to_string(), HostSpec::Local),
            ("forgotten".to_string(), HostSpec::Local),
        ]
        .into_iter()
        .collect();
        let ctx = FaultContext::new("r", "f", Arc::new(Hosts::new(hosts)), chrono::Utc::now());
        let reach = Reach {
            targets: vec![Target::Host("declared".into())],
            hosts: vec![HostRef::new("declared", &["hosts", "0"])],
            kube: Vec::new(),
            load: false,
        };
        let scoped = scope(&reach, "test", &ctx).unwrap();
        let out = scoped
            .hosts
            .get("declared")
            .unwrap()
            .run("echo ok", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "ok");
        assert!(matches!(
            scoped.hosts.get("forgotten"),
            Err(ExecError::UnknownHost { name }) if name == "forgotten"
        ));
        // The unscoped context still has both: only the fault's view is narrowed.
        assert!(ctx.hosts.get("forgotten").is_ok());
    }

    #[tokio::test]
    async fn a_kubernetes_kind_without_a_cluster_is_refused_before_it_runs() {
        let spec = FaultSpec::examples()
            .into_iter()
            .find(|s| s.uses_kubernetes())
            .unwrap();
        let ctx = FaultContext::new("r", "f", Arc::new(Hosts::default()), chrono::Utc::now());
        let err = spec.prepare(&ctx).await.unwrap_err();
        assert!(matches!(err, FaultError::NoKubernetes { .. }), "{err}");
    }
}
