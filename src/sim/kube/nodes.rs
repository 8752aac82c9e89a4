//! Nodes: one per sim worker (`sim-node-<n>`, where worker n's first pod runs), cordoned and
//! uncordoned by a PATCH of `spec.unschedulable` as `kubectl cordon` sends it (a strategic
//! merge patch) or as the `kube` crate does (a JSON merge patch); labels and annotations are
//! patchable too (faultline's `node-drain` marks the node it cordoned with an annotation).
//!
//! Why nodes at all: `node-drain` needs somewhere to drain *from* and somewhere else for the
//! evicted pods to go. The sim models no resources: any node that is not cordoned can take any
//! pod; a replacement goes back to its old node when it can (so a pod kill changes nothing
//! here) and else to the schedulable node with the fewest pods. With every node cordoned it
//! stays Pending and its worker stays down (`SimControl::set_unschedulable`) until one is
//! uncordoned.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::objects::{ApiError, age, rfc3339, uid};

pub fn node_name(i: usize) -> String {
    format!("sim-node-{i}")
}

/// The node index in a name `sim-node-<n>`.
pub fn node_index(name: &str) -> Option<usize> {
    let n = name.strip_prefix("sim-node-")?;
    if n.starts_with('0') && n.len() > 1 {
        return None;
    }
    n.parse().ok()
}

pub struct NodeSlot {
    pub uid: String,
    pub created: DateTime<Utc>,
    pub rv: u64,
    pub unschedulable: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl NodeSlot {
    pub fn new(i: usize, now: DateTime<Utc>, rv: u64) -> NodeSlot {
        let labels = [
            ("kubernetes.io/hostname", node_name(i)),
            ("kubernetes.io/os", "linux".to_string()),
            ("node-role.kubernetes.io/worker", String::new()),
            ("sim.faultline.dev/node", i.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        NodeSlot {
            uid: uid(),
            created: now,
            rv,
            unschedulable: false,
            labels,
            annotations: BTreeMap::new(),
        }
    }
}

pub fn node_json(i: usize, n: &NodeSlot) -> Value {
    let created = rfc3339(n.created);
    let mut spec = json!({"podCIDR": format!("10.244.{i}.0/24")});
    if n.unschedulable {
        spec["unschedulable"] = json!(true);
        spec["taints"] = json!([{"key": "node.kubernetes.io/unschedulable",
                                 "effect": "NoSchedule", "timeAdded": created}]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name(i),
            "uid": n.uid,
            "resourceVersion": n.rv.to_string(),
            "creationTimestamp": created,
            "labels": n.labels,
            "annotations": n.annotations,
        },
        "spec": spec,
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": created, "lastTransitionTime": created}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": node_name(i)}],
            "nodeInfo": {"kubeletVersion": "v1.34.0-faultline-sim", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "sim://1",
                         "osImage": "faultline sim", "kernelVersion": "", "kubeProxyVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        },
    })
}

/// NAME, STATUS, ROLES, AGE, VERSION — as `kubectl get nodes` prints them.
pub fn node_table_row(obj: &Value) -> Vec<Value> {
    let mut status = "Ready".to_string();
    if obj["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let age = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or("<unknown>".to_string(), |t| {
            age((Utc::now() - t.with_timezone(&Utc)).num_seconds())
        });
    vec![
        obj["metadata"]["name"].clone(),
        json!(status),
        json!("worker"),
        json!(age),
        json!("v1.34.0-faultline-sim"),
    ]
}

/// RFC 7386 JSON merge patch (a strategic merge patch of plain fields is the same thing).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Applies a patch body (`content_type` as sent) to node `n`. Only `spec.unschedulable`,
/// `metadata.labels` and `metadata.annotations` change; anything else the patch sets is
/// ignored, as the sim's nodes have nothing else to change. Returns whether it changed.
pub fn patch_node(
    n: &mut NodeSlot,
    i: usize,
    content_type: &str,
    body: &[u8],
) -> Result<bool, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(
        ct,
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) {
        return Err(ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got \"{ct}\")"
            ),
            details: None,
        });
    }
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not a JSON object: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("the patch must be a JSON object"));
    }
    let mut obj = node_json(i, n);
    merge_patch(&mut obj, &patch);
    let unschedulable = match &obj["spec"]["unschedulable"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        other => {
            return Err(ApiError::invalid(format!(
                "Node \"{}\" is invalid: spec.unschedulable: Invalid value: {other}: must be a boolean",
                node_name(i)
            )));
        }
    };
    let strings = |key: &str| -> Result<BTreeMap<String, String>, ApiError> {
        match &obj["metadata"][key] {
            Value::Null => Ok(BTreeMap::new()),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => Ok((k.clone(), s.to_string())),
                    None => Err(ApiError::invalid(format!(
                        "metadata.{key}.{k}: must be a string, not {v}"
                    ))),
                })
                .collect(),
            other => Err(ApiError::invalid(format!(
                "metadata.{key}: must be a map of strings, not {other}"
            ))),
        }
    };
    let labels = strings("labels")?;
    let annotations = strings("annotations")?;
    let changed =
        unschedulable != n.unschedulable || labels != n.labels || annotations != n.annotations;
    n.unschedulable = unschedulable;
    n.labels = labels;
    n.annotations = annotations;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cordon_patches_as_kubectl_and_kube_send_them() {
        let mut n = NodeSlot::new(1, Utc::now(), 1);
        let smp = br#"{"spec":{"unschedulable":true}}"#;
        assert!(patch_node(&mut n, 1, "application/strategic-merge-patch+json", smp).unwrap());
        assert!(n.unschedulable);
        assert_eq!(
            node_table_row(&node_json(1, &n))[1],
            json!("Ready,SchedulingDisabled")
        );
        // Idempotent.
        assert!(!patch_node(&mut n, 1, "application/strategic-merge-patch+json", smp).unwrap());
        let mp = br#"{"metadata":{"annotations":{"a":"1"}},"spec":{"unschedulable":null}}"#;
        assert!(patch_node(&mut n, 1, "application/merge-patch+json", mp).unwrap());
        assert!(!n.unschedulable);
        assert_eq!(n.annotations.get("a").map(String::as_str), Some("1"));
        let rm = br#"{"metadata":{"annotations":{"a":null}}}"#;
        patch_node(&mut n, 1, "application/merge-patch+json", rm).unwrap();
        assert!(n.annotations.is_empty());
        let e = patch_node(&mut n, 1, "application/json-patch+json", b"[]").unwrap_err();
        assert_eq!(e.code, 415);
        let e = patch_node(
            &mut n,
            1,
            "application/merge-patch+json",
            br#"{"spec":{"unschedulable":"yes"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("spec.unschedulable"), "{}", e.message);
    }

    #[test]
    fn node_names_round_trip() {
        assert_eq!(node_index(&node_name(12)), Some(12));
        assert_eq!(node_index("sim-node-01"), None);
        assert_eq!(node_index("other"), None);
    }
}
