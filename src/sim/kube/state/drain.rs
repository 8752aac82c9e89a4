//! What `kubectl drain` and faultline's `node-drain` do through the API: cordon a node (PATCH),
//! evict its pods (POST `pods/NAME/eviction`, refused with 429 while a PodDisruptionBudget does
//! not allow it), and the budgets themselves. The evicted pod's replacement is placed by
//! [`pick_node`] in `finish_delete`; a Pending one by `reconcile` once a node is uncordoned.
//!
//! Ground truth: `node_cordoned`, `node_uncordoned`, `pod_evicted`, `eviction_refused` here;
//! `pod_rescheduled`, `pod_unschedulable` in `state.rs`.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};

use super::super::nodes::{NodeSlot, node_index, node_json, node_name, patch_node};
use super::super::objects::{ApiError, POLICY, rfc3339, uid};
use super::super::pdb::{PodHealth, validate_pdb};
use super::{Inner, Kind, NAMESPACE, PodSlot, Store, pod_labels};

/// Where a pod goes: `prefer` (its old node) when schedulable, else the schedulable node with
/// the fewest pods (lowest index on a tie); `None` when every node is cordoned.
pub(super) fn pick_node(
    nodes: &[NodeSlot],
    pods: &[PodSlot],
    prefer: Option<usize>,
) -> Option<usize> {
    let ok = |n: usize| nodes.get(n).is_some_and(|s| !s.unschedulable);
    if let Some(n) = prefer.filter(|n| ok(*n)) {
        return Some(n);
    }
    (0..nodes.len()).filter(|n| ok(*n)).min_by_key(|n| {
        pods.iter()
            .filter(|p| p.deleting.is_none() && p.node == Some(*n))
            .count()
    })
}

pub(super) fn pod_health(pods: &[PodSlot]) -> Vec<PodHealth> {
    pods.iter()
        .enumerate()
        .map(|(i, p)| PodHealth {
            labels: pod_labels(i),
            ready: p.view.ready,
            deleting: p.deleting.is_some(),
        })
        .collect()
}

impl Store {
    /// PATCH a node (cordon, uncordon, labels, annotations); answers the node.
    pub fn patch_node(
        &self,
        name: &str,
        content_type: &str,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut record = None;
        let obj = {
            let mut inner = self.lock();
            let Some(i) = node_index(name).filter(|i| *i < inner.nodes.len()) else {
                return Err(ApiError::not_found("", "nodes", name));
            };
            let before = inner.nodes[i].unschedulable;
            if dry_run {
                let n = &inner.nodes[i];
                let mut copy = NodeSlot {
                    uid: n.uid.clone(),
                    created: n.created,
                    rv: n.rv,
                    unschedulable: n.unschedulable,
                    labels: n.labels.clone(),
                    annotations: n.annotations.clone(),
                };
                patch_node(&mut copy, i, content_type, body)?;
                return Ok(node_json(i, &copy));
            }
            let changed = patch_node(&mut inner.nodes[i], i, content_type, body)?;
            if changed {
                inner.rv += 1;
                inner.nodes[i].rv = inner.rv;
                let obj = node_json(i, &inner.nodes[i]);
                inner.emit(&self.tx, Kind::Node, "MODIFIED", obj);
            }
            let after = inner.nodes[i].unschedulable;
            if before != after {
                record = Some(if after {
                    "node_cordoned"
                } else {
                    "node_uncordoned"
                });
            }
            node_json(i, &inner.nodes[i])
        };
        if let Some(kind) = record {
            self.control.record(kind, None, &format!("node {name}"));
        }
        // Uncordoned: a Pending pod may fit now.
        self.reconcile();
        Ok(obj)
    }

    /// POST `pods/NAME/eviction`: deletes the pod as a DELETE would, unless a disruption
    /// budget does not allow it now (429, the budget named in the message and the cause).
    pub fn evict(
        self: &Arc<Self>,
        ns: &str,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body must be an Eviction object"));
        }
        if let Some(n) = body["metadata"]["name"].as_str()
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "name in URL does not match name in Eviction object: \"{name}\" != \"{n}\""
            )));
        }
        let opts = &body["deleteOptions"];
        let grace = opts["gracePeriodSeconds"].as_i64();
        let uid = opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let dry_run = dry_run
            || opts["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "All"));
        let mut refused: Option<String> = None;
        let mut evicted: Option<(usize, String)> = None;
        let result = self.delete_pod_if(ns, name, grace, uid.as_deref(), dry_run, |inner, i| {
            let labels = pod_labels(i);
            let budgets: Vec<_> = inner
                .pdbs
                .iter()
                .filter(|((bns, _), b)| bns == ns && b.selects(&labels))
                .map(|(_, b)| b)
                .collect();
            let node = inner.pods[i].node.map_or("no node".to_string(), node_name);
            match budgets.as_slice() {
                [] => {}
                [b] => {
                    let budget = b.budget(&pod_health(&inner.pods));
                    let ready = inner.pods[i].view.ready;
                    let allowed = if ready {
                        budget.allowed() >= 1
                    } else {
                        budget.healthy >= budget.desired
                    };
                    if !allowed {
                        let cause = format!(
                            "The disruption budget {} needs {} healthy pods and has {} currently",
                            b.name(),
                            budget.desired,
                            budget.healthy
                        );
                        refused = Some(format!("pod {name}: {cause}"));
                        return Err(ApiError::too_many_requests(
                            format!(
                                "Cannot evict pod as it would violate the pod's disruption budget. {cause}."
                            ),
                            vec![("DisruptionBudget".to_string(), cause)],
                        ));
                    }
                    evicted = Some((i, format!("pod {name} evicted from {node} (budget {})", b.name())));
                }
                _ => {
                    return Err(ApiError::internal(
                        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    ));
                }
            }
            if evicted.is_none() {
                evicted = Some((i, format!("pod {name} evicted from {node}")));
            }
            Ok(())
        });
        if let Some(detail) = refused {
            self.control.record("eviction_refused", None, &detail);
        }
        result?;
        if !dry_run && let Some((i, detail)) = evicted {
            self.control.record("pod_evicted", Some(i), &detail);
        }
        Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                  "status": "Success", "code": 201}))
    }

    pub fn create_pdb(&self, ns: &str, body: Value, dry_run: bool) -> Result<Value, ApiError> {
        if ns != NAMESPACE {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        let mut pdb = validate_pdb(ns, body)?;
        let name = pdb.name().to_string();
        let mut inner = self.lock();
        let key = (ns.to_string(), name.clone());
        if inner.pdbs.contains_key(&key) {
            return Err(ApiError::already_exists(
                POLICY,
                "poddisruptionbudgets",
                &name,
            ));
        }
        let meta = &mut pdb.object["metadata"];
        meta["uid"] = json!(uid());
        meta["creationTimestamp"] = json!(rfc3339(Utc::now()));
        meta["generation"] = json!(1);
        if !dry_run {
            inner.rv += 1;
            pdb.object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        }
        let obj = pdb.with_status(&pod_health(&inner.pods));
        if !dry_run {
            inner.pdbs.insert(key, pdb);
            inner.emit(&self.tx, Kind::PodDisruptionBudget, "ADDED", obj.clone());
        }
        Ok(obj)
    }

    pub fn delete_pdb(&self, ns: &str, name: &str, dry_run: bool) -> Result<Value, ApiError> {
        let mut inner: std::sync::MutexGuard<'_, Inner> = self.lock();
        let key = (ns.to_string(), name.to_string());
        let Some(p) = inner.pdbs.get(&key) else {
            return Err(ApiError::not_found(POLICY, "poddisruptionbudgets", name));
        };
        let obj = p.with_status(&pod_health(&inner.pods));
        if dry_run {
            return Ok(obj);
        }
        inner.pdbs.remove(&key);
        inner.rv += 1;
        let mut gone = obj.clone();
        gone["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        inner.emit(&self.tx, Kind::PodDisruptionBudget, "DELETED", gone);
        Ok(obj)
    }
}
