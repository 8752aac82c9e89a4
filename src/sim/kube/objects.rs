//! The JSON the API server answers with: `Status` errors, discovery documents and `Table`s
//! (what `kubectl get` asks for), plus small helpers (ages, names, uids).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Value, json};

/// An API error, answered as a Kubernetes `Status` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` (name/group/kind) for NotFound and AlreadyExists, as real servers send.
    /// `details`: name, group, kind, and `causes` (`reason`, `message`) — e.g. the
    /// disruption budget that refused an eviction. Boxed: errors stay small.
    pub details: Option<Box<Details>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub causes: Vec<(String, String)>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: message.into(),
            details: None,
        }
    }

    /// `resource` is plural, e.g. `pods`; `group` is "" for the core group.
    pub fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
        let gr = qualified(group, resource);
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{gr} \"{name}\" not found"),
            details: Some(Box::new(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: resource.to_string(),
                causes: Vec::new(),
            })),
        }
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> ApiError {
        let gr = qualified(group, resource);
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{gr} \"{name}\" already exists"),
            details: Some(Box::new(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: resource.to_string(),
                causes: Vec::new(),
            })),
        }
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: message.into(),
            details: None,
        }
    }

    pub fn path_not_found(path: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource (path \"{path}\")"),
            details: None,
        }
    }

    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!(
                "the server does not allow this method on the requested resource ({method} \"{path}\")"
            ),
            details: None,
        }
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 410,
            reason: "Expired",
            message: message.into(),
            details: None,
        }
    }

    /// 429: an eviction a disruption budget does not allow now (the client retries).
    pub fn too_many_requests(
        message: impl Into<String>,
        causes: Vec<(String, String)>,
    ) -> ApiError {
        ApiError {
            code: 429,
            reason: "TooManyRequests",
            message: message.into(),
            details: Some(Box::new(Details {
                causes,
                ..Details::default()
            })),
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            code: 500,
            reason: "InternalError",
            message: message.into(),
            details: None,
        }
    }

    pub fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            if !d.name.is_empty() {
                v["details"] = json!({"name": d.name, "group": d.group, "kind": d.kind});
            }
            if !d.causes.is_empty() {
                v["details"]["causes"] = d
                    .causes
                    .iter()
                    .map(|(reason, message)| json!({"reason": reason, "message": message}))
                    .collect();
            }
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.status())
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

pub fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A random RFC 4122 version-4 uid.
pub fn uid() -> String {
    let b: [u8; 16] = rand::rng().random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x03),
        b[8] >> 4,
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// A 5-character name suffix from the alphabet Kubernetes uses (no vowels, no look-alikes).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Age the way `kubectl get` shows it: `42s`, `3m12s`, `15m`, `2h5m`, `9h`, `3d`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10800 => format!("{}m", s / 60),
        10800..28800 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        28800..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Whether the client asked for a `Table` (`kubectl get` does).
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .next()
            .is_some_and(|first| first.contains("as=Table"))
    })
}

/// A `meta.k8s.io/v1` Table; `rows` are (cells, full object).
pub fn table(columns: &[(&str, &str, &str)], rows: Vec<(Vec<Value>, Value)>, rv: u64) -> Value {
    let cols: Vec<Value> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty, format))| {
            json!({"name": name, "type": ty, "format": format, "description": "",
                   "priority": if i < 5 { 0 } else { 1 }})
        })
        .collect();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, obj)| {
            // kubectl asks for `includeObject=Metadata` by default; the full object works too.
            json!({"cells": cells, "object": obj})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": cols,
        "rows": rows,
    })
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-faultline-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn api_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

pub const NETWORKING: &str = "networking.k8s.io";

fn networking_group() -> Value {
    json!({
        "name": NETWORKING,
        "versions": [{"groupVersion": "networking.k8s.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "networking.k8s.io/v1", "version": "v1"},
    })
}

pub const POLICY: &str = "policy";

fn policy_group() -> Value {
    json!({
        "name": POLICY,
        "versions": [{"groupVersion": "policy/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "policy/v1", "version": "v1"},
    })
}

pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1",
           "groups": [networking_group(), policy_group()]})
}

/// `/apis/policy`.
pub fn policy_api_group() -> Value {
    let mut g = policy_group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

pub fn policy_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "policy/v1",
        "resources": [
            {"name": "poddisruptionbudgets", "singularName": "poddisruptionbudget",
             "namespaced": true, "kind": "PodDisruptionBudget",
             "verbs": ["create", "delete", "get", "list", "watch"], "shortNames": ["pdb"]},
        ],
    })
}

pub fn api_group() -> Value {
    let mut g = networking_group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

pub fn core_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["delete", "get", "list", "watch"], "shortNames": ["po"],
             "categories": ["all"]},
            {"name": "pods/eviction", "singularName": "", "namespaced": true,
             "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]},
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node",
             "verbs": ["get", "list", "patch", "watch"], "shortNames": ["no"]},
            {"name": "namespaces", "singularName": "namespace", "namespaced": false,
             "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"]},
        ],
    })
}

pub fn networking_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "networking.k8s.io/v1",
        "resources": [
            {"name": "networkpolicies", "singularName": "networkpolicy", "namespaced": true,
             "kind": "NetworkPolicy", "verbs": ["create", "delete", "get", "list", "watch"],
             "shortNames": ["netpol"]},
        ],
    })
}

/// The OpenAPI v3 index: kubectl (1.27+) reads it to learn that the server validates fields
/// itself (`fieldValidation`), and then skips client-side schema validation.
pub fn openapi_v3_root() -> Value {
    json!({"paths": {
        "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=faultline-sim-1"},
        "apis/networking.k8s.io/v1":
            {"serverRelativeURL": "/openapi/v3/apis/networking.k8s.io/v1?hash=faultline-sim-1"},
    }})
}

/// A group-version's OpenAPI v3 document: only what kubectl's query-parameter check reads (the
/// PATCH operation of each kind, tagged with its group-version-kind, listing `fieldValidation`).
pub fn openapi_v3_group_version(group: &str, version: &str) -> Option<Value> {
    let (path, kind) = match (group, version) {
        ("", "v1") => ("/api/v1/namespaces/{namespace}/pods/{name}", "Pod"),
        (NETWORKING, "v1") => (
            "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{name}",
            "NetworkPolicy",
        ),
        _ => return None,
    };
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "faultline sim", "version": "v1.34.0"},
        "paths": {path: {"patch": {
            "operationId": format!("patch{kind}"),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "OK"}},
        }}},
        "components": {"schemas": {}},
    }))
}

/// An OpenAPI v2 document in protobuf (gnostic `openapi_v2.Document`) that defines no kinds:
/// older kubectl validates `create -f` against it, and a kind it has no schema for passes.
/// Fields: swagger (1) = "2.0", info (2) = {title (1), version (2)}, paths (8) = {}.
pub fn openapi_v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag);
        out.push(u8::try_from(bytes.len()).expect("short field"));
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 0x0a, b"faultline sim");
    field(&mut info, 0x12, b"v1.34.0");
    let mut doc = Vec::new();
    field(&mut doc, 0x0a, b"2.0");
    field(&mut doc, 0x12, &info);
    field(&mut doc, 0x42, b"");
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(192), "3m12s");
        assert_eq!(age(900), "15m");
        assert_eq!(age(3600 * 4 + 300), "4h5m");
        assert_eq!(age(3600 * 9), "9h");
        assert_eq!(age(86400 * 3), "3d");
    }

    #[test]
    fn uids_and_suffixes_have_kubernetes_shapes() {
        let u = uid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        let s = name_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn table_is_asked_for_only_when_it_comes_first() {
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
    }

    #[test]
    fn errors_are_status_objects() {
        let e = ApiError::not_found(NETWORKING, "networkpolicies", "x").status();
        assert_eq!(e["kind"], "Status");
        assert_eq!(e["code"], 404);
        assert_eq!(e["reason"], "NotFound");
        assert_eq!(
            e["message"],
            "networkpolicies.networking.k8s.io \"x\" not found"
        );
    }
}
