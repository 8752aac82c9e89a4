//! Least privilege, checked before anything starts: what the Kubernetes fault kinds need, and
//! whether the credentials have it (SelfSubjectAccessReview, `authorization.k8s.io/v1`).
//!
//! Why: a run whose credentials may create a NetworkPolicy but not delete it leaves the
//! partition in place; a run that may not watch pods cannot measure recovery. Asking the API
//! server first, for every verb the run will use, turns those into one refusal before any load,
//! naming every missing verb, resource and namespace. The shipped `deploy/rbac.yaml` grants
//! exactly [`needs`] (a test holds the two together).

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::fault::FaultSpec;
use crate::fault::kube_target::{KubeTarget, explain};

/// One permission: a verb on a resource (of an API group) in a namespace (`None`: cluster-wide).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub namespace: Option<String>,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gr = if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{} {gr} in namespace \"{ns}\"", self.verb),
            None => write!(f, "{} {gr} in all namespaces", self.verb),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "the Kubernetes credentials ({who}) lack permissions this run needs: {}. Grant them (deploy/rbac.yaml has the Role) or change the kubeconfig/context",
        missing.iter().map(Need::to_string).collect::<Vec<_>>().join("; ")
    )]
    Denied { who: String, missing: Vec<Need> },
    #[error("cannot ask {server} what is allowed: {reason}")]
    Review { server: String, reason: String },
}

/// What `spec` does through the Kubernetes API ([`crate::fault::Reach::kube`]), resolved
/// against `kube`'s default namespace. Kinds that do not use Kubernetes need nothing.
pub fn needs(spec: &FaultSpec, kube: &KubeTarget) -> Vec<Need> {
    let mut out = Vec::new();
    for u in spec.reach().kube {
        let namespace = u
            .namespace
            .as_ref()
            .map(|ns| kube.namespace_for(ns.as_deref()).to_string());
        for verb in u.verbs {
            out.push(Need {
                verb,
                group: u.group,
                resource: u.resource,
                namespace: namespace.clone(),
            });
        }
    }
    out
}

/// What `faultline recover --kubeconfig` needs for its sweep of expired marks
/// ([`crate::fault::Mark`]), in `namespace` (`None`: all namespaces). Marks on cluster-scoped
/// objects (a drained node) are asked about cluster-wide, whatever the namespace.
pub fn sweep_needs(namespace: Option<&str>) -> Vec<Need> {
    let mut out = Vec::new();
    for u in FaultSpec::mark_access() {
        for verb in u.verbs {
            out.push(Need {
                verb,
                group: u.group,
                resource: u.resource,
                namespace: u.namespace.as_ref().and(namespace).map(str::to_string),
            });
        }
    }
    out
}

/// Asks the API server about every need (each once) and refuses with all the missing ones.
pub async fn check(kube: &KubeTarget, needs: &[Need]) -> Result<(), AccessError> {
    let unique: BTreeSet<&Need> = needs.iter().collect();
    let api: Api<SelfSubjectAccessReview> = Api::all(kube.client.clone());
    let mut missing = Vec::new();
    for n in unique {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(n.verb.to_string()),
                    group: Some(n.group.to_string()),
                    // `pods/eviction`: a resource and its subresource.
                    resource: Some(n.resource.split('/').next().unwrap_or_default().to_string()),
                    subresource: n.resource.split_once('/').map(|(_, sub)| sub.to_string()),
                    namespace: n.namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AccessError::Review {
                server: kube.server.clone(),
                reason: explain(&e),
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.push(n.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AccessError::Denied {
            who: format!("context \"{}\" on {}", kube.context, kube.server),
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(verb: &'static str, group: &'static str, resource: &'static str, ns: &str) -> Need {
        Need {
            verb,
            group,
            resource,
            namespace: Some(ns.to_string()),
        }
    }

    #[test]
    fn needs_read_as_verb_resource_and_namespace() {
        let n = need("delete", "networking.k8s.io", "networkpolicies", "prod");
        assert_eq!(
            n.to_string(),
            "delete networkpolicies.networking.k8s.io in namespace \"prod\""
        );
        assert_eq!(
            sweep_needs(None)[0].to_string(),
            "list networkpolicies.networking.k8s.io in all namespaces"
        );
        let e = AccessError::Denied {
            who: "context \"c\" on https://x".into(),
            missing: vec![need("delete", "", "pods", "default"), n],
        };
        let text = e.to_string();
        assert!(
            text.contains("delete pods in namespace \"default\"; delete networkpolicies"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
