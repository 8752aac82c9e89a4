//! PodDisruptionBudgets (`policy/v1`) and the arithmetic the Eviction subresource does with
//! them, as the real API server does it: of the pods a budget selects, `expectedPods` count
//! (those not being deleted), `currentHealthy` are Ready, `desiredHealthy` comes from
//! `minAvailable` or `expectedPods - maxUnavailable` (percentages round up), and
//! `disruptionsAllowed = currentHealthy - desiredHealthy`. A Ready pod may be evicted while
//! that is ≥ 1; a pod that is not Ready may be evicted while the budget is met
//! (`unhealthyPodEvictionPolicy: IfHealthyBudget`, the default). A pod two budgets select
//! cannot be evicted at all (500, as upstream).

use serde_json::{Value, json};

use super::objects::ApiError;
use super::state::is_dns1123_subdomain;
use crate::common::Selector;

pub struct Pdb {
    pub object: Value,
    pub selector: Selector,
}

/// A pod as a budget sees it.
pub struct PodHealth {
    pub labels: std::collections::BTreeMap<String, String>,
    pub ready: bool,
    pub deleting: bool,
}

/// The computed status of a budget over `pods`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub expected: i64,
    pub healthy: i64,
    pub desired: i64,
}

impl Budget {
    pub fn allowed(&self) -> i64 {
        (self.healthy - self.desired).max(0)
    }
}

/// An int-or-string (`2` or `"50%"`) of `total`, rounded up.
fn scaled(v: &Value, total: i64, field: &str) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            format!("spec.{field}: Invalid value: {v}: must be a non-negative integer")
        }),
        Value::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| (0..=100).contains(p))
                .ok_or_else(|| {
                    format!("spec.{field}: Invalid value: \"{s}\": must be an integer or a percentage (0%-100%)")
                })?;
            Ok((pct * total + 99) / 100)
        }
        other => Err(format!(
            "spec.{field}: Invalid value: {other}: must be an integer or a percentage"
        )),
    }
}

impl Pdb {
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn selects(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }

    pub fn budget(&self, pods: &[PodHealth]) -> Budget {
        let mine: Vec<&PodHealth> = pods
            .iter()
            .filter(|p| !p.deleting && self.selects(&p.labels))
            .collect();
        let expected = mine.len() as i64;
        let healthy = mine.iter().filter(|p| p.ready).count() as i64;
        let spec = &self.object["spec"];
        // Validated at create time.
        let desired = if !spec["minAvailable"].is_null() {
            scaled(&spec["minAvailable"], expected, "minAvailable").unwrap_or(expected)
        } else {
            let max = scaled(&spec["maxUnavailable"], expected, "maxUnavailable").unwrap_or(0);
            (expected - max).max(0)
        };
        Budget {
            expected,
            healthy,
            desired,
        }
    }

    /// The object with its status filled in from `pods`.
    pub fn with_status(&self, pods: &[PodHealth]) -> Value {
        let b = self.budget(pods);
        let mut o = self.object.clone();
        o["status"] = json!({
            "observedGeneration": 1,
            "disruptionsAllowed": b.allowed(),
            "currentHealthy": b.healthy,
            "desiredHealthy": b.desired,
            "expectedPods": b.expected,
            "conditions": [{
                "type": "DisruptionAllowed",
                "status": if b.allowed() > 0 { "True" } else { "False" },
                "reason": if b.allowed() > 0 { "SufficientPods" } else { "InsufficientPods" },
                "message": "",
                "observedGeneration": 1,
                "lastTransitionTime": o["metadata"]["creationTimestamp"].clone(),
            }],
        });
        o
    }
}

/// NAME, MIN AVAILABLE, MAX UNAVAILABLE, ALLOWED DISRUPTIONS, AGE.
pub fn pdb_table_row(obj: &Value, age: String) -> Vec<Value> {
    let show = |v: &Value| match v {
        Value::Null => json!("N/A"),
        Value::String(s) => json!(s),
        other => json!(other.to_string()),
    };
    vec![
        obj["metadata"]["name"].clone(),
        show(&obj["spec"]["minAvailable"]),
        show(&obj["spec"]["maxUnavailable"]),
        obj["status"]["disruptionsAllowed"].clone(),
        json!(age),
    ]
}

/// Checks a PodDisruptionBudget body and fills in kind, apiVersion and namespace.
pub fn validate_pdb(ns: &str, mut body: Value) -> Result<Pdb, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a PodDisruptionBudget object",
        ));
    }
    match body["kind"].as_str() {
        None | Some("PodDisruptionBudget") => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the body is a \"{k}\", not a PodDisruptionBudget"
            )));
        }
    }
    match body["apiVersion"].as_str() {
        None | Some("policy/v1") => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "apiVersion \"{v}\" is not policy/v1"
            )));
        }
    }
    body["kind"] = json!("PodDisruptionBudget");
    body["apiVersion"] = json!("policy/v1");
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
    let invalid = |m: String| {
        ApiError::invalid(format!(
            "PodDisruptionBudget.policy \"{name}\" is invalid: {m}"
        ))
    };
    if !is_dns1123_subdomain(&name) {
        return Err(invalid(format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )));
    }
    match body["metadata"]["namespace"].as_str() {
        None => body["metadata"]["namespace"] = json!(ns),
        Some(n) if n == ns => {}
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object (\"{n}\") does not match the namespace sent on the request (\"{ns}\")"
            )));
        }
    }
    let spec = &body["spec"];
    let (min, max) = (&spec["minAvailable"], &spec["maxUnavailable"]);
    match (min.is_null(), max.is_null()) {
        (false, false) => {
            return Err(invalid(
                "spec: Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
            ));
        }
        (true, true) => {
            return Err(invalid(
                "spec: Required value: one of minAvailable and maxUnavailable".into(),
            ));
        }
        (false, true) => scaled(min, 1, "minAvailable").map_err(invalid)?,
        (true, false) => scaled(max, 1, "maxUnavailable").map_err(invalid)?,
    };
    let selector = match &spec["selector"] {
        // No selector selects no pods (policy/v1: an empty one selects all).
        Value::Null => Selector::parse("sim.faultline.dev/none-selected=none-selected")
            .expect("a valid selector"),
        s => {
            Selector::from_label_selector(s).map_err(|e| invalid(format!("spec.selector: {e}")))?
        }
    };
    Ok(Pdb {
        object: body,
        selector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pods(ready: &[bool]) -> Vec<PodHealth> {
        ready
            .iter()
            .map(|r| PodHealth {
                labels: BTreeMap::from([("app".to_string(), "sim-llm".to_string())]),
                ready: *r,
                deleting: false,
            })
            .collect()
    }

    fn pdb(spec: Value) -> Pdb {
        validate_pdb("default", json!({"metadata": {"name": "b"}, "spec": spec})).unwrap()
    }

    #[test]
    fn budgets_count_like_the_api_server() {
        let sel = json!({"matchLabels": {"app": "sim-llm"}});
        let min4 = pdb(json!({"minAvailable": 4, "selector": sel}));
        assert_eq!(min4.budget(&pods(&[true; 4])).allowed(), 0);
        let min3 = pdb(json!({"minAvailable": 3, "selector": sel}));
        assert_eq!(min3.budget(&pods(&[true; 4])).allowed(), 1);
        assert_eq!(min3.budget(&pods(&[true, true, true, false])).allowed(), 0);
        let max1 = pdb(json!({"maxUnavailable": 1, "selector": sel}));
        let b = max1.budget(&pods(&[true; 4]));
        assert_eq!(
            (b.expected, b.healthy, b.desired, b.allowed()),
            (4, 4, 3, 1)
        );
        let pct = pdb(json!({"minAvailable": "50%", "selector": sel}));
        assert_eq!(pct.budget(&pods(&[true; 3])).desired, 2, "rounded up");
        let other = pdb(json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}));
        assert_eq!(other.budget(&pods(&[true; 4])).expected, 0);
    }

    #[test]
    fn invalid_budgets_are_refused_naming_the_field() {
        for (spec, want) in [
            (
                json!({"minAvailable": 1, "maxUnavailable": 1}),
                "cannot be both",
            ),
            (json!({}), "Required value"),
            (json!({"minAvailable": "150%"}), "spec.minAvailable"),
            (json!({"maxUnavailable": -1}), "spec.maxUnavailable"),
        ] {
            let e = validate_pdb("default", json!({"metadata": {"name": "b"}, "spec": spec}))
                .err()
                .unwrap();
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
    }
}
