//! `node-drain`: cordon a node and evict its pods through the Eviction API, as `kubectl drain`
//! does — the planned-maintenance fault: a node goes away politely, PodDisruptionBudgets
//! decide how fast, and the workload has to come back on the other nodes.
//!
//! Why it is careful: a drain is the one fault here that can take more down than meant if it
//! cuts corners, so it does what `kubectl drain` does and no more. Evictions honor
//! PodDisruptionBudgets; one a budget refuses (429) is retried until `timeout`, and then the
//! fault fails naming each pod and the budget that holds it — nothing is deleted around a
//! budget unless `respect_pdbs: false` says so explicitly. DaemonSet pods and mirror pods are
//! skipped (their controllers would put them straight back); pods no controller owns are
//! refused unless `force: true` (they would not come back at all).
//!
//! Restore puts back exactly what was there: `prepare` reads `spec.unschedulable`, and only a
//! node this fault cordoned is uncordoned — one that was already cordoned stays cordoned. The
//! evicted pods are not moved back (nothing would: the scheduler placed their replacements).
//!
//! The target-side mark: the node carries annotations naming the run, the fault and the deadline
//! (`faultline.dev/run-id`, `faultline.dev/fault-id`, `faultline.dev/deadline`) and whether this
//! fault cordoned it (`faultline.dev/drain: cordoned | was-cordoned`). `faultline status
//! --kubeconfig` lists such nodes, and `faultline recover --kubeconfig` undoes the ones whose
//! deadline has passed even when the ledger that named them is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::Selector;
use crate::fault::kube_target::KubeTarget;
use crate::fault::network_partition::{DEADLINE, FAULT_ID, RUN_ID};
use crate::fault::{
    ApiUse, DescribeCx, FaultContext, Lifetime, Mark, NoKubernetes, Problem, Reach, SimBinding,
    Target, Verification,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The node to drain, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Instead of `node`: drain the node that the pods this label selector picks run on (they
    /// must all be on one node), e.g. `app=vllm,worker=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_of: Option<String>,
    /// Namespace of `node_of`'s pods; default: the experiment's kubernetes namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Grace period each evicted pod gets; default: the pod's own.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::serde_opt"
    )]
    #[schemars(with = "Option<crate::duration::Dur>")]
    pub grace_period: Option<Duration>,
    /// How long to keep retrying evictions a PodDisruptionBudget refuses and to wait for the
    /// evicted pods to be gone (`kubectl drain --timeout`); then the fault fails naming the pods.
    #[serde(default = "default_timeout", with = "crate::duration::serde")]
    #[schemars(with = "crate::duration::Dur")]
    pub timeout: Duration,
    /// `false` deletes the pods instead of evicting them, bypassing PodDisruptionBudgets
    /// (`kubectl drain --disable-eviction`). Only when that is what you mean.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub respect_pdbs: bool,
    /// Also evict pods that no controller owns (nothing recreates them), as `kubectl drain
    /// --force`; without it such a pod refuses the drain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// Which node, and what to put back: whether it was cordoned before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub node: String,
    pub was_unschedulable: bool,
}

/// Says whether this fault cordoned the node (`cordoned`) or found it cordoned
/// (`was-cordoned`); the mark's other annotations are network-partition's keys.
pub const DRAIN: &str = "faultline.dev/drain";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    NoKube(#[from] NoKubernetes),
    #[error("node-drain: {0}")]
    Connect(#[from] crate::fault::kube_target::KubeTargetError),
    /// Not a `source`: the one line of `explain` is the whole story.
    #[error(
        "node-drain: cannot {action}: {}",
        crate::fault::kube_target::explain(error)
    )]
    Kube {
        action: String,
        error: Box<kube::Error>,
    },
    #[error("node-drain: node \"{node}\" does not exist")]
    NoNode { node: String },
    #[error(
        "node-drain: selector \"{selector}\" matches no scheduled pods in namespace \"{namespace}\""
    )]
    NoPods { selector: String, namespace: String },
    #[error(
        "node-drain: the pods selector \"{selector}\" picks run on {} nodes ({}); name one with `node`",
        nodes.len(),
        nodes.join(", ")
    )]
    ManyNodes {
        selector: String,
        nodes: Vec<String>,
    },
    #[error(
        "node-drain: node \"{node}\" runs pods no controller owns, which a drain would lose for good: {}; set `force: true` to evict them anyway",
        pods.join(", ")
    )]
    Unmanaged { node: String, pods: Vec<String> },
    #[error(
        "node-drain: after {}, {} pod(s) on node \"{node}\" could not be evicted because a PodDisruptionBudget does not allow it (nothing was deleted around a budget): {}",
        crate::duration::format(*waited),
        blocked.len(),
        blocked.join("; ")
    )]
    Blocked {
        node: String,
        waited: Duration,
        blocked: Vec<String>,
    },
    #[error(
        "node-drain: after {}, evicted pod(s) still on node \"{node}\": {}",
        crate::duration::format(*waited),
        pods.join(", ")
    )]
    StillThere {
        node: String,
        waited: Duration,
        pods: Vec<String>,
    },
    #[error("node-drain did not take effect: node \"{node}\" is schedulable")]
    NotCordoned { node: String },
    #[error("node-drain did not take effect: pods still on node \"{node}\": {}", pods.join(", "))]
    NotDrained { node: String, pods: Vec<String> },
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |error| Error::Kube {
        action,
        error: Box::new(error),
    }
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// What a drain does with a pod on the node.
#[derive(Debug, PartialEq, Eq)]
enum Disposition {
    /// A DaemonSet's or a mirror pod: left alone, as `kubectl drain --ignore-daemonsets`.
    Skip,
    /// Owned by no controller.
    Unmanaged,
    Evict,
}

fn disposition(p: &Pod) -> Disposition {
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let controller = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller {
        _ if mirror => Disposition::Skip,
        Some(o) if o.kind == "DaemonSet" => Disposition::Skip,
        Some(_) => Disposition::Evict,
        None => Disposition::Unmanaged,
    }
}

/// Every pod bound to `node`, in all namespaces.
async fn pods_on(kube: &KubeTarget, node: &str) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::all(kube.client.clone());
    let list = api
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(kube_err(format!("list the pods on node \"{node}\"")))?;
    Ok(list.items)
}

/// The node `p` names (or its pods run on), and whether it is cordoned now.
pub async fn prepare(p: &Params, _ctx: &FaultContext, kube: &KubeTarget) -> Result<Undo, Error> {
    let node = match (&p.node, &p.node_of) {
        (Some(n), _) => n.clone(),
        (None, Some(selector)) => {
            let namespace = kube.namespace_for(p.namespace.as_deref()).to_string();
            let api: Api<Pod> = Api::namespaced(kube.client.clone(), &namespace);
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(kube_err(format!(
                    "list pods \"{selector}\" in namespace \"{namespace}\""
                )))?;
            let nodes: BTreeSet<String> = list
                .items
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            let mut nodes = nodes.into_iter();
            match (nodes.next(), nodes.len()) {
                (None, _) => {
                    return Err(Error::NoPods {
                        selector: selector.clone(),
                        namespace,
                    });
                }
                (Some(n), 0) => n,
                (Some(n), _) => {
                    return Err(Error::ManyNodes {
                        selector: selector.clone(),
                        nodes: std::iter::once(n).chain(nodes).collect(),
                    });
                }
            }
        }
        (None, None) => unreachable!("problems() requires node or node_of"),
    };
    let api: Api<Node> = Api::all(kube.client.clone());
    let found = api
        .get_opt(&node)
        .await
        .map_err(kube_err(format!("get node \"{node}\"")))?
        .ok_or_else(|| Error::NoNode { node: node.clone() })?;
    let was_unschedulable = found.spec.and_then(|s| s.unschedulable).unwrap_or(false);
    Ok(Undo {
        node,
        was_unschedulable,
    })
}

/// The node exists; its pods can be listed; a drain would not lose unmanaged pods.
pub async fn preflight(p: &Params, ctx: &FaultContext, kube: &KubeTarget) -> Result<(), Error> {
    let undo = prepare(p, ctx, kube).await?;
    unmanaged_refused(p, &undo.node, &pods_on(kube, &undo.node).await?)
}

fn unmanaged_refused(p: &Params, node: &str, pods: &[Pod]) -> Result<(), Error> {
    let unmanaged: Vec<String> = pods
        .iter()
        .filter(|x| disposition(x) == Disposition::Unmanaged)
        .map(pod_key)
        .collect();
    if unmanaged.is_empty() || p.force {
        Ok(())
    } else {
        Err(Error::Unmanaged {
            node: node.to_string(),
            pods: unmanaged,
        })
    }
}

/// The mark's annotations, and the cordon unless it was cordoned already (then `spec` is left
/// alone).
fn cordon_patch(undo: &Undo, run_id: &str, fault_id: &str, deadline: DateTime<Utc>) -> Value {
    let drain = if undo.was_unschedulable {
        "was-cordoned"
    } else {
        "cordoned"
    };
    let mut patch = json!({"metadata": {"annotations": {
        RUN_ID: run_id,
        FAULT_ID: fault_id,
        DEADLINE: deadline.to_rfc3339_opts(SecondsFormat::Secs, true),
        DRAIN: drain,
    }}});
    if !undo.was_unschedulable {
        patch["spec"] = json!({"unschedulable": true});
    }
    patch
}

/// Removes the mark; uncordons when `uncordon`.
fn uncordon_patch(uncordon: bool) -> Value {
    let mut patch = json!({"metadata": {"annotations": {
        RUN_ID: null, FAULT_ID: null, DEADLINE: null, DRAIN: null,
    }}});
    if uncordon {
        patch["spec"] = json!({"unschedulable": false});
    }
    patch
}

async fn patch_node(kube: &KubeTarget, node: &str, patch: &Value, what: &str) -> Result<(), Error> {
    let api: Api<Node> = Api::all(kube.client.clone());
    match api
        .patch(node, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Err(Error::NoNode {
            node: node.to_string(),
        }),
        Err(e) => Err(kube_err(format!("{what} node \"{node}\""))(e)),
    }
}

/// Cordons (and marks) the node, then evicts its pods until they are gone or `timeout`.
pub async fn inject(
    p: &Params,
    ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<(), Error> {
    let patch = cordon_patch(undo, &ctx.run_id, &ctx.fault_id, ctx.deadline);
    patch_node(kube, &undo.node, &patch, "cordon").await?;
    let started = Instant::now();
    let until = started + p.timeout;
    let pods = pods_on(kube, &undo.node).await?;
    unmanaged_refused(p, &undo.node, &pods)?;
    // (namespace, name) → uid of the pods still to evict; evicted ones are then waited for.
    let mut todo: BTreeMap<(String, String), Pod> = pods
        .into_iter()
        .filter(|x| disposition(x) != Disposition::Skip && x.metadata.deletion_timestamp.is_none())
        .map(|x| {
            (
                (
                    x.metadata.namespace.clone().unwrap_or_default(),
                    x.metadata.name.clone().unwrap_or_default(),
                ),
                x,
            )
        })
        .collect();
    let delete = DeleteParams {
        grace_period_seconds: p.grace_period.map(|g| g.as_secs() as u32),
        ..DeleteParams::default()
    };
    let mut refused: BTreeMap<(String, String), String> = BTreeMap::new();
    // Evictions a budget refuses are retried here, every second, up to `timeout` (as kubectl
    // does); the client's own backoff would sit on a 429 for minutes.
    let evictor = kube.without_retry().await?;
    loop {
        let keys: Vec<(String, String)> = todo.keys().cloned().collect();
        for key in keys {
            let (ns, name) = &key;
            let api: Api<Pod> = Api::namespaced(evictor.client.clone(), ns);
            let result = if p.respect_pdbs {
                let ep = EvictParams {
                    delete_options: Some(delete.clone()),
                    ..EvictParams::default()
                };
                api.evict(name, &ep).await.map(|_| ())
            } else {
                api.delete(name, &delete).await.map(|_| ())
            };
            match result {
                Ok(()) => {
                    todo.remove(&key);
                    refused.remove(&key);
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    todo.remove(&key);
                }
                // A budget does not allow it now: retry, as kubectl does.
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    refused.insert(key.clone(), s.message.clone());
                }
                Err(e) => return Err(kube_err(format!("evict pod {ns}/{name}"))(e)),
            }
        }
        if todo.is_empty() {
            break;
        }
        if Instant::now() >= until {
            let mut blocked = Vec::new();
            for (ns, name) in todo.keys() {
                let pod = &todo[&(ns.clone(), name.clone())];
                let budgets = budgets_of(kube, pod).await;
                let why = refused
                    .get(&(ns.clone(), name.clone()))
                    .cloned()
                    .unwrap_or_default();
                blocked.push(format!("pod {ns}/{name}: {budgets} ({why})"));
            }
            return Err(Error::Blocked {
                node: undo.node.clone(),
                waited: started.elapsed(),
                blocked,
            });
        }
        tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
    }
    // Evicted: wait until they are gone from the node (their grace periods).
    loop {
        let left: Vec<String> = remaining(&pods_on(kube, &undo.node).await?);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(Error::StillThere {
                node: undo.node.clone(),
                waited: started.elapsed(),
                pods: left,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pods a drain moves that are still on the node (terminating or not).
fn remaining(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter(|x| disposition(x) != Disposition::Skip)
        .map(pod_key)
        .collect()
}

/// The PodDisruptionBudgets selecting `pod`, in words with their status (what holds it).
async fn budgets_of(kube: &KubeTarget, pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<PodDisruptionBudget> = Api::namespaced(kube.client.clone(), ns);
    let labels: BTreeMap<String, String> = pod.metadata.labels.clone().unwrap_or_default();
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            return format!(
                "PodDisruptionBudgets unknown (cannot list them: {})",
                crate::fault::kube_target::explain(&e)
            );
        }
    };
    let names: Vec<String> = list
        .iter()
        .filter(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| Selector::from_label_selector(&v).ok())
                .is_some_and(|s| s.matches(&labels))
        })
        .map(|b| {
            let st = b.status.as_ref();
            format!(
                "PodDisruptionBudget \"{}\" ({} healthy, {} needed, {} disruptions allowed)",
                b.metadata.name.as_deref().unwrap_or_default(),
                st.map_or(0, |s| s.current_healthy),
                st.map_or(0, |s| s.desired_healthy),
                st.map_or(0, |s| s.disruptions_allowed),
            )
        })
        .collect();
    if names.is_empty() {
        "held by a PodDisruptionBudget".to_string()
    } else {
        format!("held by {}", names.join(" and "))
    }
}

/// The node is cordoned and none of the pods a drain moves is left on it.
pub async fn verify(
    _p: &Params,
    _ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<Verification, Error> {
    let api: Api<Node> = Api::all(kube.client.clone());
    let node = api
        .get_opt(&undo.node)
        .await
        .map_err(kube_err(format!("get node \"{}\"", undo.node)))?
        .ok_or_else(|| Error::NoNode {
            node: undo.node.clone(),
        })?;
    if !node.spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        return Err(Error::NotCordoned {
            node: undo.node.clone(),
        });
    }
    let left = remaining(&pods_on(kube, &undo.node).await?);
    if !left.is_empty() {
        return Err(Error::NotDrained {
            node: undo.node.clone(),
            pods: left,
        });
    }
    Ok(Verification::Verified)
}

/// Uncordons the node if this fault cordoned it, and removes the mark; a node that is gone
/// counts as restored.
pub async fn restore(
    _p: &Params,
    _ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<(), Error> {
    restore_undo(kube, undo).await
}

/// Every node carrying a drain mark.
async fn marked_nodes(kube: &KubeTarget) -> Result<Vec<Mark>, Error> {
    let api: Api<Node> = Api::all(kube.client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list nodes"))?;
    let mut out: Vec<Mark> = list
        .items
        .into_iter()
        .filter_map(|n| {
            let a = n.metadata.annotations.unwrap_or_default();
            a.get(DRAIN)?;
            let name = n.metadata.name.unwrap_or_default();
            Some(Mark {
                kind: "node-drain",
                what: format!("Node {name} ({})", a[DRAIN]),
                namespace: None,
                deadline: a
                    .get(DEADLINE)
                    .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                    .map(|d| d.with_timezone(&Utc)),
                run_id: a.get(RUN_ID).cloned(),
                fault_id: a.get(FAULT_ID).cloned(),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Undoes a mark: uncordon only a node the fault cordoned (`cordoned`), from the node's own
/// annotation.
async fn clear(kube: &KubeTarget, node: &str) -> Result<(), Error> {
    let api: Api<Node> = Api::all(kube.client.clone());
    let Some(found) = api
        .get_opt(node)
        .await
        .map_err(kube_err(format!("get node \"{node}\"")))?
    else {
        return Ok(());
    };
    let annotations = found.metadata.annotations.unwrap_or_default();
    let Some(drain) = annotations.get(DRAIN) else {
        return Ok(());
    };
    let undo = Undo {
        node: node.to_string(),
        was_unschedulable: drain != "cordoned",
    };
    restore_undo(kube, &undo).await
}

async fn restore_undo(kube: &KubeTarget, undo: &Undo) -> Result<(), Error> {
    match patch_node(
        kube,
        &undo.node,
        &uncordon_patch(!undo.was_unschedulable),
        "uncordon",
    )
    .await
    {
        Err(Error::NoNode { .. }) => Ok(()),
        other => other,
    }
}

impl crate::fault::FaultKind for Params {
    type Undo = Undo;
    type Error = Error;

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match (&self.node, &self.node_of) {
            (Some(_), Some(_)) => out.push(Problem::new(
                &["node_of"],
                "set",
                "name the node either with `node` or with `node_of`, not both",
            )),
            (None, None) => out.push(Problem::new(
                &["node"],
                "missing",
                "name the node to drain: `node: NAME` (or `node_of: SELECTOR`)",
            )),
            (Some(n), None) if n.trim().is_empty() => {
                out.push(Problem::new(&["node"], "''", "an empty node name"));
            }
            (None, Some(sel)) => {
                for mut pr in crate::fault::params::selector_problems(sel, false) {
                    if pr.path == ["selector"] {
                        pr.path = vec!["node_of".to_string()];
                    }
                    out.push(pr);
                }
            }
            _ => {}
        }
        if self.timeout.is_zero() {
            out.push(Problem::new(&["timeout"], "0s", "needs a positive timeout"));
        }
        out
    }

    fn reach(&self) -> Reach {
        let target = match (&self.node, &self.node_of) {
            (Some(n), _) => Target::Node(n.clone()),
            (None, sel) => Target::Pods {
                namespace: self.namespace.clone(),
                selector: sel.clone().unwrap_or_default(),
            },
        };
        // Cluster-wide: the node, and its pods in whatever namespace they are.
        let mut kube = vec![
            // get: read the cordon before (prepare) and verify; patch: cordon/uncordon + mark.
            ApiUse {
                verbs: &["get", "patch"],
                group: "",
                resource: "nodes",
                namespace: None,
            },
            // list: the pods on the node (field selector spec.nodeName).
            ApiUse {
                verbs: &["list"],
                group: "",
                resource: "pods",
                namespace: None,
            },
            // list: name the budgets that hold a pod the drain could not evict.
            ApiUse {
                verbs: &["list"],
                group: "policy",
                resource: "poddisruptionbudgets",
                namespace: None,
            },
        ];
        kube.push(if self.respect_pdbs {
            ApiUse {
                verbs: &["create"],
                group: "",
                resource: "pods/eviction",
                namespace: None,
            }
        } else {
            ApiUse {
                verbs: &["delete"],
                group: "",
                resource: "pods",
                namespace: None,
            }
        });
        if self.node.is_none() {
            kube.push(ApiUse {
                verbs: &["list"],
                group: "",
                resource: "pods",
                namespace: Some(self.namespace.clone()),
            });
        }
        Reach {
            targets: vec![target],
            hosts: Vec::new(),
            kube,
            load: false,
        }
    }

    fn describe(&self, cx: &DescribeCx) -> String {
        let which = match (&self.node, &self.node_of) {
            (Some(n), _) => format!("node {n}"),
            (None, sel) => format!(
                "the node of pods '{}' in namespace {}",
                sel.as_deref().unwrap_or_default(),
                self.namespace.as_deref().unwrap_or(&cx.namespace)
            ),
        };
        let how = if self.respect_pdbs {
            "evict its pods (Eviction API, PodDisruptionBudgets respected"
        } else {
            "DELETE its pods (PodDisruptionBudgets bypassed"
        };
        format!(
            "cordon {which} and {how}, up to {})",
            crate::duration::format(self.timeout)
        )
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(
            ", uncordon it at {} (unless it was cordoned before)",
            end.unwrap_or("the end")
        )
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    /// None on a node; the node's own `faultline.dev/deadline` annotation is the target-side
    /// switch (`faultline recover --kubeconfig` uncordons expired drains).
    fn deadman_margin(&self) -> Option<Duration> {
        None
    }

    fn bind_to_sim(&mut self, _sim: &SimBinding) {}

    fn is_permanent(e: &Error) -> bool {
        matches!(e, Error::Kube { error, .. } if crate::fault::kube_target::is_permanent(error))
    }

    fn example() -> Self {
        Params {
            node: Some("sim-node-1".into()),
            node_of: None,
            namespace: None,
            grace_period: None,
            timeout: default_timeout(),
            respect_pdbs: true,
            force: false,
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

    fn mark_access() -> Vec<ApiUse> {
        vec![ApiUse {
            verbs: &["list", "get", "patch"],
            group: "",
            resource: "nodes",
            namespace: None,
        }]
    }

    async fn marks(kube: &KubeTarget, _namespace: Option<&str>) -> Result<Vec<Mark>, Error> {
        // Nodes belong to no namespace: the sweep of any namespace sees them.
        marked_nodes(kube).await
    }

    async fn clear_mark(kube: &KubeTarget, mark: &Mark) -> Result<(), Error> {
        clear(kube, &mark.name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;

    fn pod(owner: Option<&str>, mirror: bool) -> Pod {
        let mut v = json!({"metadata": {"name": "p", "namespace": "default"}});
        if let Some(kind) = owner {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
                "name": "o", "uid": "u", "controller": true}]);
        }
        if mirror {
            v["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn daemonset_and_mirror_pods_are_skipped_and_bare_pods_are_unmanaged() {
        assert_eq!(
            disposition(&pod(Some("ReplicaSet"), false)),
            Disposition::Evict
        );
        assert_eq!(
            disposition(&pod(Some("StatefulSet"), false)),
            Disposition::Evict
        );
        assert_eq!(
            disposition(&pod(Some("DaemonSet"), false)),
            Disposition::Skip
        );
        assert_eq!(disposition(&pod(None, true)), Disposition::Skip);
        assert_eq!(disposition(&pod(None, false)), Disposition::Unmanaged);
    }

    #[test]
    fn the_cordon_leaves_an_already_cordoned_node_alone_and_restore_puts_back_what_was_there() {
        let deadline = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let fresh = Undo {
            node: "n".into(),
            was_unschedulable: false,
        };
        let p = cordon_patch(&fresh, "r", "f", deadline);
        assert_eq!(p["spec"]["unschedulable"], true);
        assert_eq!(p["metadata"]["annotations"][DRAIN], "cordoned");
        assert_eq!(
            p["metadata"]["annotations"][DEADLINE],
            "2026-01-02T03:04:05Z"
        );
        let was = Undo {
            was_unschedulable: true,
            ..fresh
        };
        let p = cordon_patch(&was, "r", "f", deadline);
        assert!(p.get("spec").is_none(), "{p}");
        assert_eq!(p["metadata"]["annotations"][DRAIN], "was-cordoned");
        assert_eq!(uncordon_patch(true)["spec"]["unschedulable"], false);
        assert!(uncordon_patch(false).get("spec").is_none());
        assert!(uncordon_patch(false)["metadata"]["annotations"][DRAIN].is_null());
    }

    #[test]
    fn the_node_is_named_exactly_once() {
        let mut p = Params::example();
        assert!(p.problems().is_empty());
        p.node_of = Some("app=x".into());
        assert_eq!(p.problems()[0].path, ["node_of"]);
        p.node = None;
        assert!(p.problems().is_empty());
        assert!(
            matches!(&p.reach().targets[0], Target::Pods { selector, .. } if selector == "app=x")
        );
        p.node_of = None;
        assert_eq!(p.problems()[0].path, ["node"]);
    }

    #[test]
    fn only_an_explicit_opt_out_deletes_around_budgets() {
        let p = Params::example();
        let kube = p.reach().kube;
        assert!(kube.iter().any(|u| u.resource == "pods/eviction"));
        assert!(!kube.iter().any(|u| u.verbs.contains(&"delete")));
        let parsed: Params = serde_json::from_value(json!({"node": "n"})).unwrap();
        assert!(parsed.respect_pdbs, "respecting budgets is the default");
        let bypass = Params {
            respect_pdbs: false,
            ..p
        };
        assert!(bypass.reach().kube.iter().any(|u| u.verbs == ["delete"]));
        assert!(bypass.describe(&DescribeCx::default()).contains("bypassed"));
    }
}
