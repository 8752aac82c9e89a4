//! `network-partition`: a deny-all NetworkPolicy on the selected pods, uniquely named and
//! labelled with the run and fault ids, annotated with its deadline; restore deletes exactly
//! that policy, by name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Namespace; default: the experiment's kubernetes namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector of the pods to cut off, e.g. `app=vllm,worker=1`.
    pub selector: String,
    /// An empty selector selects every pod in the namespace: refused unless this says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_pods: bool,
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
    #[default]
    Both,
}

// ---------------------------------------------------------------------------------------------
// Implementation.
//
// The policy: `podSelector` = the fault's selector, `policyTypes` per direction with no rules
// (deny all), labelled `app.kubernetes.io/managed-by=faultline`, `faultline.dev/run-id`,
// `faultline.dev/fault-id`, annotated `faultline.dev/deadline=<RFC 3339>` — the target-side
// dead-man switch: `faultline recover` deletes every managed policy whose deadline has passed
// ([`expired_policies`]), even when the ledger that named it is lost.
//
// Verification is honest: a NetworkPolicy only bites when the CNI enforces it, and the API
// cannot tell. The policy's existence is checked; the cut itself is reported `Verified` only
// where it can be seen — the sim marks its pods `sim.faultline.dev/cut-off` — and
// `NotVerifiable` otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::common::Selector;
use crate::fault::kube_target::KubeTarget;
use crate::fault::{
    ApiUse, DescribeCx, FaultContext, Lifetime, Mark, NoKubernetes, Problem, Reach, SimBinding,
    Target, Verification,
};

pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "faultline");
pub const RUN_ID: &str = "faultline.dev/run-id";
pub const FAULT_ID: &str = "faultline.dev/fault-id";
pub const DEADLINE: &str = "faultline.dev/deadline";
/// The sim's pods carry it; real clusters have no such thing.
const SIM_CUT_OFF: &str = "sim.faultline.dev/cut-off";

/// Undo data: exactly which policy to delete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub namespace: String,
    pub name: String,
    pub selector: String,
    pub direction: Direction,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    NoKube(#[from] NoKubernetes),
    #[error("network-partition: invalid selector \"{selector}\": {reason}")]
    BadSelector { selector: String, reason: String },
    #[error(
        "network-partition: selector \"{selector}\" matches no pods in namespace \"{namespace}\""
    )]
    NoPods { selector: String, namespace: String },
    /// Not a `source`: the one line of `explain` is the whole story (kube's own text repeats
    /// the server's message).
    #[error(
        "network-partition: cannot {action} in namespace \"{namespace}\": {}",
        crate::fault::kube_target::explain(error)
    )]
    Kube {
        action: String,
        namespace: String,
        error: Box<kube::Error>,
    },
    #[error(
        "network-partition: a NetworkPolicy \"{name}\" in namespace \"{namespace}\" exists and was not made by this fault"
    )]
    NameTaken { name: String, namespace: String },
    #[error(
        "network-partition did not take effect: NetworkPolicy \"{name}\" is not in namespace \"{namespace}\""
    )]
    Missing { name: String, namespace: String },
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

fn parse_selector(selector: &str) -> Result<Selector, Error> {
    Selector::parse(selector).map_err(|reason| Error::BadSelector {
        selector: selector.to_string(),
        reason,
    })
}

/// `faultline-<run_id>-<fault_id>`, made a DNS-1123 label (lowercase alphanumerics and `-`,
/// ≤ 63 characters); when it has to be shortened, a hash of the full name keeps it unique.
pub fn policy_name(run_id: &str, fault_id: &str) -> String {
    let raw = format!("faultline-{run_id}-{fault_id}");
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let mut name = name.trim_end_matches('-').to_string();
    if name.len() > 63 || name != raw {
        // Shortened or rewritten: two different ids must not end up with one name.
        let hash = format!("{:08x}", fnv(&raw) as u32);
        name.truncate(63 - 9);
        let name = name.trim_end_matches('-');
        return format!("{name}-{hash}");
    }
    name
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The deny-all policy this fault creates.
pub fn policy(
    p: &Params,
    undo: &Undo,
    run_id: &str,
    fault_id: &str,
    deadline: DateTime<Utc>,
) -> Result<NetworkPolicy, Error> {
    let selector = parse_selector(&p.selector)?;
    let pod_selector: LabelSelector = serde_json::from_value(selector.to_label_selector())
        .expect("a label selector object deserializes");
    let (ingress, egress) = match p.direction {
        Direction::Ingress => (true, false),
        Direction::Egress => (false, true),
        Direction::Both => (true, true),
    };
    let mut types = Vec::new();
    if ingress {
        types.push("Ingress".to_string());
    }
    if egress {
        types.push("Egress".to_string());
    }
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (RUN_ID.to_string(), label_value(run_id)),
        (FAULT_ID.to_string(), label_value(fault_id)),
    ]);
    let annotations = BTreeMap::from([(
        DEADLINE.to_string(),
        deadline.to_rfc3339_opts(SecondsFormat::Secs, true),
    )]);
    Ok(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(undo.name.clone()),
            namespace: Some(undo.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(types),
            ingress: ingress.then(Vec::new),
            egress: egress.then(Vec::new),
        }),
    })
}

/// A label value: ≤ 63 characters of alphanumerics, `-`, `_`, `.`, starting and ending with an
/// alphanumeric.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The selector is valid and matches pods, and the policy could be created (server dry run).
pub async fn preflight(p: &Params, ctx: &FaultContext, kube: &KubeTarget) -> Result<(), Error> {
    let undo = prepare(p, ctx, kube).await?;
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &undo.namespace);
    let found = pods
        .list(&ListParams::default().labels(&p.selector).limit(1))
        .await
        .map_err(kube_err(
            format!("list pods \"{}\"", p.selector),
            &undo.namespace,
        ))?;
    if found.items.is_empty() {
        return Err(Error::NoPods {
            selector: p.selector.clone(),
            namespace: undo.namespace,
        });
    }
    let np = policy(p, &undo, &ctx.run_id, &ctx.fault_id, ctx.deadline)?;
    let api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), &undo.namespace);
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api.create(&pp, &np).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            owned_or_taken(&api, &undo, &ctx.run_id, &ctx.fault_id).await
        }
        Err(e) => Err(kube_err(
            "create a NetworkPolicy (dry run)",
            &undo.namespace,
        )(e)),
    }
}

/// Names the policy; touches nothing.
pub async fn prepare(p: &Params, ctx: &FaultContext, kube: &KubeTarget) -> Result<Undo, Error> {
    parse_selector(&p.selector)?;
    Ok(Undo {
        namespace: kube.namespace_for(p.namespace.as_deref()).to_string(),
        name: policy_name(&ctx.run_id, &ctx.fault_id),
        selector: p.selector.clone(),
        direction: p.direction,
    })
}

/// An existing policy of that name is fine only when this fault made it (a retried inject).
async fn owned_or_taken(
    api: &Api<NetworkPolicy>,
    undo: &Undo,
    run_id: &str,
    fault_id: &str,
) -> Result<(), Error> {
    let existing = api.get_opt(&undo.name).await.map_err(kube_err(
        format!("get NetworkPolicy \"{}\"", undo.name),
        &undo.namespace,
    ))?;
    let labels = existing.and_then(|e| e.metadata.labels).unwrap_or_default();
    let ours = labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && labels.get(RUN_ID) == Some(&label_value(run_id))
        && labels.get(FAULT_ID) == Some(&label_value(fault_id));
    if ours {
        Ok(())
    } else {
        Err(Error::NameTaken {
            name: undo.name.clone(),
            namespace: undo.namespace.clone(),
        })
    }
}

/// Creates the deny-all policy (already there from an earlier try of this fault: fine).
pub async fn inject(
    p: &Params,
    ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<(), Error> {
    let np = policy(p, undo, &ctx.run_id, &ctx.fault_id, ctx.deadline)?;
    let api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), &undo.namespace);
    match api.create(&PostParams::default(), &np).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            owned_or_taken(&api, undo, &ctx.run_id, &ctx.fault_id).await
        }
        Err(e) => Err(kube_err(
            format!("create NetworkPolicy \"{}\"", undo.name),
            &undo.namespace,
        )(e)),
    }
}

/// The policy exists; the cut is `Verified` only where it can be observed (the sim's pods say
/// so), else `NotVerifiable`.
pub async fn verify(
    p: &Params,
    _ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<Verification, Error> {
    let api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), &undo.namespace);
    let found = api.get_opt(&undo.name).await.map_err(kube_err(
        format!("get NetworkPolicy \"{}\"", undo.name),
        &undo.namespace,
    ))?;
    if found.is_none() {
        return Err(Error::Missing {
            name: undo.name.clone(),
            namespace: undo.namespace.clone(),
        });
    }
    let not_verifiable = || Verification::NotVerifiable {
        reason: "policy created; traffic cut not verified: the CNI may not enforce NetworkPolicy"
            .to_string(),
    };
    if p.direction == Direction::Egress {
        return Ok(not_verifiable());
    }
    // The sim applies a policy within a reconcile tick (100 ms); give it a moment.
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &undo.namespace);
    for _ in 0..20 {
        let list = pods
            .list(&ListParams::default().labels(&p.selector))
            .await
            .map_err(kube_err(
                format!("list pods \"{}\"", p.selector),
                &undo.namespace,
            ))?;
        let marks: Vec<Option<&str>> = list
            .items
            .iter()
            .map(|pod| {
                pod.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SIM_CUT_OFF))
                    .map(String::as_str)
            })
            .collect();
        if marks.is_empty() || marks.iter().any(Option::is_none) {
            return Ok(not_verifiable());
        }
        if marks.iter().all(|m| *m == Some("true")) {
            return Ok(Verification::Verified);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(not_verifiable())
}

/// Deletes exactly that policy, by name; already gone counts as restored.
pub async fn restore(
    _p: &Params,
    _ctx: &FaultContext,
    kube: &KubeTarget,
    undo: &Undo,
) -> Result<(), Error> {
    delete_policy(kube, &undo.namespace, &undo.name).await
}

async fn delete_policy(kube: &KubeTarget, namespace: &str, name: &str) -> Result<(), Error> {
    let api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(kube_err(
            format!("delete NetworkPolicy \"{name}\""),
            namespace,
        )(e)),
    }
}

/// Every faultline-managed NetworkPolicy in `namespace` (`None`: all namespaces), sorted, as
/// marks: named by run and fault, with the deadline annotation if readable.
async fn managed_policies(kube: &KubeTarget, namespace: Option<&str>) -> Result<Vec<Mark>, Error> {
    let api: Api<NetworkPolicy> = match namespace {
        Some(ns) => Api::namespaced(kube.client.clone(), ns),
        None => Api::all(kube.client.clone()),
    };
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err(
            "list faultline NetworkPolicies",
            namespace.unwrap_or("*"),
        ))?;
    let mut out: Vec<Mark> = list
        .items
        .into_iter()
        .map(|np| {
            let meta = np.metadata;
            let labels = meta.labels.unwrap_or_default();
            let namespace = meta.namespace.unwrap_or_default();
            let name = meta.name.unwrap_or_default();
            Mark {
                kind: "network-partition",
                what: format!("NetworkPolicy {namespace}/{name}"),
                deadline: meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEADLINE))
                    .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                    .map(|d| d.with_timezone(&Utc)),
                run_id: labels.get(RUN_ID).cloned(),
                fault_id: labels.get(FAULT_ID).cloned(),
                namespace: Some(namespace),
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

impl crate::fault::FaultKind for Params {
    type Undo = Undo;
    type Error = Error;

    fn problems(&self) -> Vec<Problem> {
        crate::fault::params::selector_problems(&self.selector, self.all_pods)
    }

    fn reach(&self) -> Reach {
        Reach {
            targets: vec![Target::Pods {
                namespace: self.namespace.clone(),
                selector: self.selector.clone(),
            }],
            hosts: Vec::new(),
            // create/get/delete: the policy; list pods: the selector matches, the cut took
            // effect.
            kube: vec![
                ApiUse {
                    verbs: &["create", "get", "delete"],
                    group: "networking.k8s.io",
                    resource: "networkpolicies",
                    namespace: Some(self.namespace.clone()),
                },
                ApiUse {
                    verbs: &["list"],
                    group: "",
                    resource: "pods",
                    namespace: Some(self.namespace.clone()),
                },
            ],
            load: false,
        }
    }

    fn describe(&self, cx: &DescribeCx) -> String {
        let dir = match self.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
            Direction::Both => "ingress+egress",
        };
        format!(
            "deny-all NetworkPolicy ({dir}) on pods '{}' in namespace {}",
            self.selector,
            self.namespace.as_deref().unwrap_or(&cx.namespace)
        )
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(", delete the policy at {}", end.unwrap_or("the end"))
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    /// None on a node; the policy's own `faultline.dev/deadline` annotation is the target-side
    /// switch (`faultline recover` deletes expired managed policies).
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
            selector: "app=vllm,worker=1".into(),
            all_pods: false,
            direction: Direction::Both,
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
            verbs: &["list", "delete"],
            group: "networking.k8s.io",
            resource: "networkpolicies",
            // In the namespace swept.
            namespace: Some(None),
        }]
    }

    async fn marks(kube: &KubeTarget, namespace: Option<&str>) -> Result<Vec<Mark>, Error> {
        managed_policies(kube, namespace).await
    }

    async fn clear_mark(kube: &KubeTarget, mark: &Mark) -> Result<(), Error> {
        delete_policy(
            kube,
            mark.namespace.as_deref().unwrap_or_default(),
            &mark.name,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns1123_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn policy_names_are_dns_labels_and_unique() {
        assert_eq!(policy_name("run1", "f2"), "faultline-run1-f2");
        let odd = policy_name("Run_2026-11-27T10:00", "Partition Worker#1");
        assert!(is_dns1123_label(&odd), "{odd}");
        let long = policy_name(&"r".repeat(80), "fault");
        assert!(is_dns1123_label(&long), "{long}");
        assert_ne!(
            policy_name(&"r".repeat(80), "a"),
            policy_name(&"r".repeat(80), "b")
        );
        assert_ne!(policy_name("a_b", "c"), policy_name("a-b", "c"));
    }

    #[test]
    fn the_policy_denies_the_chosen_directions_and_is_labelled() {
        let p = Params {
            namespace: None,
            selector: "app=sim-llm,worker=1".into(),
            all_pods: false,
            direction: Direction::Ingress,
        };
        let undo = Undo {
            namespace: "default".into(),
            name: "faultline-r-f".into(),
            selector: p.selector.clone(),
            direction: p.direction,
        };
        let deadline = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let np = policy(&p, &undo, "r:1", "f", deadline).unwrap();
        let v = serde_json::to_value(&np).unwrap();
        assert_eq!(v["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
        assert_eq!(v["spec"]["ingress"], serde_json::json!([]));
        assert!(v["spec"].get("egress").is_none());
        assert_eq!(
            v["spec"]["podSelector"]["matchLabels"],
            serde_json::json!({"app": "sim-llm", "worker": "1"})
        );
        assert_eq!(v["metadata"]["labels"][MANAGED_BY.0], "faultline");
        assert_eq!(v["metadata"]["labels"][RUN_ID], "r_1");
        assert_eq!(
            v["metadata"]["annotations"][DEADLINE],
            "2026-01-02T03:04:05Z"
        );
        let both = Params {
            direction: Direction::Both,
            ..p
        };
        let v = serde_json::to_value(policy(&both, &undo, "r", "f", deadline).unwrap()).unwrap();
        assert_eq!(
            v["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        assert_eq!(v["spec"]["egress"], serde_json::json!([]));
    }
}
