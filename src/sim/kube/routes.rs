//! HTTP routes: discovery, pods (list/watch/get/delete), NetworkPolicies
//! (list/watch/get/create/delete), namespaces (read-only, just `default`).
//!
//! Content negotiation is the minimum that real clients need: aggregated discovery
//! (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`, what newer kubectl
//! asks for first) is answered with the legacy documents and `Content-Type: application/json`,
//! which clients take as "no aggregated discovery"; `as=Table` (what `kubectl get` asks for
//! first) gets a `meta.k8s.io/v1` Table; everything else gets plain JSON.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::auth::{self, Auth, Identity};
use super::objects::{self, ApiError, json_response, table, wants_table};
use super::state::{Filter, Kind, NAMESPACE, Store, WatchEvent};
use super::until_stopped;

pub struct AppState {
    pub store: Arc<Store>,
    /// `127.0.0.1:PORT`, for `serverAddressByClientCIDRs`.
    pub server: String,
    /// Open watches end when this turns true (so a graceful shutdown does not wait on them).
    pub stop: watch::Receiver<bool>,
    pub auth: Auth,
}

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/version", get(|| async { ok(&objects::version()) }))
        .route("/api", get(api))
        .route(
            "/api/v1",
            get(|| async { ok(&objects::core_v1_resources()) }),
        )
        .route("/apis", get(|| async { ok(&objects::api_group_list()) }))
        .route(
            "/apis/networking.k8s.io",
            get(|| async { ok(&objects::api_group()) }),
        )
        .route(
            "/apis/networking.k8s.io/v1",
            get(|| async { ok(&objects::networking_v1_resources()) }),
        )
        .route(
            "/openapi/v3",
            get(|| async { ok(&objects::openapi_v3_root()) }),
        )
        .route("/openapi/v3/api/v1", get(|| async { openapi_v3("", "v1") }))
        .route(
            "/openapi/v3/apis/{group}/{version}",
            get(|Path((g, v)): Path<(String, String)>| async move { openapi_v3(&g, &v) }),
        )
        .route("/openapi/v2", get(openapi_v2))
        .route("/api/v1/namespaces", get(namespaces))
        .route("/api/v1/namespaces/{ns}", get(namespace))
        .route("/api/v1/pods", get(pods_all))
        .route("/api/v1/namespaces/{ns}/pods", get(pods))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(pod).delete(delete_pod),
        )
        .route(
            "/apis/networking.k8s.io/v1/networkpolicies",
            get(policies_all),
        )
        .route(
            "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
            get(policies).post(create_policy),
        )
        .route(
            "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
            get(policy).delete(delete_policy),
        )
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{name}", get(node).patch(patch_node))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/eviction",
            axum::routing::post(evict),
        )
        .route(
            "/apis/policy",
            get(|| async { ok(&objects::policy_api_group()) }),
        )
        .route(
            "/apis/policy/v1",
            get(|| async { ok(&objects::policy_v1_resources()) }),
        )
        .route("/apis/policy/v1/poddisruptionbudgets", get(pdbs_all))
        .route(
            "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
            get(pdbs).post(create_pdb),
        )
        .route(
            "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}",
            get(pdb).delete(delete_pdb),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            axum::routing::post(access_review),
        )
        .fallback(|req: Request| async move {
            ApiError::path_not_found(req.uri().path()).into_response()
        })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::method_not_allowed(req.method().as_str(), req.uri().path()).into_response()
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Authentication (401) and RBAC (403) before any handler; the identity goes into the
/// request's extensions.
async fn authorize(State(st): St, mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cert = req
        .extensions()
        .get::<Arc<axum_server::tls::TlsInfo>>()
        .and_then(|i| i.peer_certificates.first().cloned());
    let Some(who) = st.auth.identify(bearer, cert.as_deref()) else {
        return json_response(StatusCode::UNAUTHORIZED, &auth::unauthorized());
    };
    if let Some(a) = auth::attributes(req.method().as_str(), req.uri().path(), req.uri().query())
        && a.resource != "selfsubjectaccessreviews"
        && !st.auth.allows(&who, &a)
    {
        tracing::debug!("kube api: {} may not {a:?}", who.user);
        return json_response(StatusCode::FORBIDDEN, &auth::forbidden(&who, &a));
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// `kubectl auth can-i`, and faultline's preflight.
async fn access_review(
    State(st): St,
    axum::Extension(who): axum::Extension<Identity>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    // kubectl's typed client sends protobuf; the answer is JSON, which it also accepts.
    let protobuf = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"));
    let parsed = if protobuf {
        auth::review_from_protobuf(&body)
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("the body is not a JSON object: {e}"))
    };
    let v = match parsed {
        Ok(v) => v,
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    match auth::review(&st.auth, &who, &v) {
        Ok(out) => json_response(StatusCode::CREATED, &out),
        Err(m) => ApiError::invalid(m).into_response(),
    }
}

/// `FAULTLINE_LOG=faultline::sim::kube=debug` shows what clients ask for.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let resp = next.run(req).await;
    tracing::debug!(
        "kube api: {method} {uri} accept={accept:?} -> {}",
        resp.status().as_u16()
    );
    resp
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

fn openapi_v3(group: &str, version: &str) -> Response {
    match objects::openapi_v3_group_version(group, version) {
        Some(doc) => ok(&doc),
        None => {
            ApiError::path_not_found(&format!("/openapi/v3/apis/{group}/{version}")).into_response()
        }
    }
}

async fn openapi_v2() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        objects::openapi_v2_protobuf(),
    )
        .into_response()
}

async fn api(State(st): St) -> Response {
    ok(&objects::api_versions(&st.server))
}

fn namespace_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "uid": "00000000-0000-4000-8000-000000000002",
                        "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z",
                        "labels": {"kubernetes.io/metadata.name": name}},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

async fn namespaces() -> Response {
    ok(&json!({"apiVersion": "v1", "kind": "NamespaceList",
               "metadata": {"resourceVersion": "1"}, "items": [namespace_json(NAMESPACE)]}))
}

async fn namespace(Path(ns): Path<String>) -> Response {
    if ns == NAMESPACE {
        ok(&namespace_json(&ns))
    } else {
        ApiError::not_found("", "namespaces", &ns).into_response()
    }
}

async fn pods_all(State(st): St, Query(q): Params, h: HeaderMap) -> Response {
    list_or_watch(&st, Kind::Pod, None, &q, &h)
}

async fn pods(State(st): St, Path(ns): Path<String>, Query(q): Params, h: HeaderMap) -> Response {
    list_or_watch(&st, Kind::Pod, Some(ns), &q, &h)
}

async fn policies_all(State(st): St, Query(q): Params, h: HeaderMap) -> Response {
    list_or_watch(&st, Kind::NetworkPolicy, None, &q, &h)
}

async fn policies(
    State(st): St,
    Path(ns): Path<String>,
    Query(q): Params,
    h: HeaderMap,
) -> Response {
    list_or_watch(&st, Kind::NetworkPolicy, Some(ns), &q, &h)
}

async fn pod(State(st): St, Path((ns, name)): Path<(String, String)>, h: HeaderMap) -> Response {
    get_one(&st, Kind::Pod, &ns, &name, &h)
}

async fn policy(State(st): St, Path((ns, name)): Path<(String, String)>, h: HeaderMap) -> Response {
    get_one(&st, Kind::NetworkPolicy, &ns, &name, &h)
}

fn get_one(st: &AppState, kind: Kind, ns: &str, name: &str, h: &HeaderMap) -> Response {
    match st.store.get(kind, ns, name) {
        Ok(obj) if wants_table(accept(h)) => {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            ok(&to_table(kind, vec![obj], rv))
        }
        Ok(obj) => ok(&obj),
        Err(e) => e.into_response(),
    }
}

fn accept(h: &HeaderMap) -> Option<&str> {
    h.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

fn to_table(kind: Kind, items: Vec<Value>, rv: u64) -> Value {
    match kind {
        Kind::Pod => table(
            &[
                ("Name", "string", "name"),
                ("Ready", "string", ""),
                ("Status", "string", ""),
                ("Restarts", "integer", ""),
                ("Age", "string", ""),
                ("IP", "string", ""),
                ("Node", "string", ""),
            ],
            items
                .into_iter()
                .map(|o| (Store::pod_table_row(&o), o))
                .collect(),
            rv,
        ),
        Kind::NetworkPolicy => table(
            &[
                ("Name", "string", "name"),
                ("Pod-Selector", "string", ""),
                ("Age", "string", ""),
            ],
            items
                .into_iter()
                .map(|o| (Store::policy_table_row(&o), o))
                .collect(),
            rv,
        ),
        Kind::Node => table(
            &[
                ("Name", "string", "name"),
                ("Status", "string", ""),
                ("Roles", "string", ""),
                ("Age", "string", ""),
                ("Version", "string", ""),
            ],
            items
                .into_iter()
                .map(|o| (super::nodes::node_table_row(&o), o))
                .collect(),
            rv,
        ),
        Kind::PodDisruptionBudget => table(
            &[
                ("Name", "string", "name"),
                ("Min Available", "string", ""),
                ("Max Unavailable", "string", ""),
                ("Allowed Disruptions", "integer", ""),
                ("Age", "string", ""),
            ],
            items
                .into_iter()
                .map(|o| {
                    let age = Store::age_of(&o);
                    (super::pdb::pdb_table_row(&o, age), o)
                })
                .collect(),
            rv,
        ),
    }
}

fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn list_or_watch(
    st: &AppState,
    kind: Kind,
    ns: Option<String>,
    q: &HashMap<String, String>,
    h: &HeaderMap,
) -> Response {
    let filter = match Filter::new(
        kind,
        ns,
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    ) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if flag(q, "watch") {
        return watch_stream(st, kind, filter, q, wants_table(accept(h)));
    }
    let (items, rv) = st.store.list(kind, &filter);
    if wants_table(accept(h)) {
        return ok(&to_table(kind, items, rv));
    }
    ok(&json!({
        "kind": kind.list_kind(),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    }))
}

fn watch_stream(
    st: &AppState,
    kind: Kind,
    filter: Filter,
    q: &HashMap<String, String>,
    as_table: bool,
) -> Response {
    let initial_events = flag(q, "sendInitialEvents");
    let rv = if initial_events {
        None
    } else {
        match q.get("resourceVersion").map(String::as_str) {
            None | Some("") => None,
            Some(s) => match s.parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    return ApiError::bad_request(format!("invalid resourceVersion \"{s}\""))
                        .into_response();
                }
            },
        }
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let (initial, mut rx, last) = match st.store.watch(kind, &filter, rv) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut stop = st.stop.clone();
    tokio::spawn(async move {
        let send = |line: String| {
            let tx = tx.clone();
            async move { tx.send(Ok(Bytes::from(line))).await.is_ok() }
        };
        // `kubectl get -w` asks for Tables: each event's object is then a one-row Table.
        let line = |ev: &WatchEvent| {
            if as_table {
                let t = to_table(kind, vec![(*ev.object).clone()], ev.rv);
                format!("{}\n", json!({"type": ev.type_, "object": t}))
            } else {
                ev.to_line()
            }
        };
        for ev in &initial {
            if !send(line(ev)).await {
                return;
            }
        }
        if initial_events {
            let bookmark = json!({"type": "BOOKMARK", "object": {
                "kind": kind.object_kind(),
                "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": last.to_string(),
                             "annotations": {"k8s.io/initial-events-end": "true"}}}});
            if !send(format!("{bookmark}\n")).await {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = until_stopped(&mut stop) => return,
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.kind != kind || ev.rv <= last || !filter.matches(&ev.object) {
                            continue;
                        }
                        if !send(line(&ev)).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let status = ApiError::gone("the watch fell behind; list again").status();
                        let _ = send(format!("{}\n", json!({"type": "ERROR", "object": status}))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    let body = futures_util::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|item| (item, out))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Delete options from the query and from a `DeleteOptions` body (the body wins).
struct DeleteOpts {
    grace: Option<i64>,
    uid: Option<String>,
    dry_run: bool,
}

/// A create: the body as JSON, `?dryRun=All`, 201 with the object or the API error.
fn created(
    q: &HashMap<String, String>,
    body: &Bytes,
    create: impl FnOnce(Value, bool) -> Result<Value, ApiError>,
) -> Response {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::bad_request(format!("the body is not a JSON object: {e}"))
                .into_response();
        }
    };
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    match create(v, dry_run) {
        Ok(obj) => json_response(StatusCode::CREATED, &obj),
        Err(e) => e.into_response(),
    }
}

/// A delete: the options from query and body, 200 with what was deleted or the API error.
fn deleted(
    q: &HashMap<String, String>,
    body: &Bytes,
    delete: impl FnOnce(bool) -> Result<Value, ApiError>,
) -> Response {
    let opts = match delete_opts(q, body) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    match delete(opts.dry_run) {
        Ok(obj) => ok(&obj),
        Err(e) => e.into_response(),
    }
}

fn delete_opts(q: &HashMap<String, String>, body: &Bytes) -> Result<DeleteOpts, ApiError> {
    let mut opts = DeleteOpts {
        grace: None,
        uid: None,
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
    };
    if let Some(g) = q.get("gracePeriodSeconds") {
        opts.grace =
            Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds \"{g}\""))
            })?);
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace = Some(g);
        }
        if let Some(u) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
            opts.uid = Some(u.to_string());
        }
        if v["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
    Ok(opts)
}

async fn delete_pod(
    State(st): St,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    let opts = match delete_opts(&q, &body) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    match st
        .store
        .delete_pod(&ns, &name, opts.grace, opts.uid.as_deref(), opts.dry_run)
    {
        Ok(obj) => ok(&obj),
        Err(e) => e.into_response(),
    }
}

async fn create_policy(
    State(st): St,
    Path(ns): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    created(&q, &body, |v, dry_run| {
        st.store.create_policy(&ns, v, dry_run)
    })
}

async fn delete_policy(
    State(st): St,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    deleted(&q, &body, |dry_run| {
        st.store.delete_policy(&ns, &name, dry_run)
    })
}

async fn nodes(State(st): St, Query(q): Params, h: HeaderMap) -> Response {
    list_or_watch(&st, Kind::Node, None, &q, &h)
}

async fn node(State(st): St, Path(name): Path<String>, h: HeaderMap) -> Response {
    get_one(&st, Kind::Node, "", &name, &h)
}

async fn patch_node(
    State(st): St,
    Path(name): Path<String>,
    Query(q): Params,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    match st.store.patch_node(&name, ct, &body, dry_run) {
        Ok(obj) => ok(&obj),
        Err(e) => e.into_response(),
    }
}

async fn evict(
    State(st): St,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::bad_request(format!("the body is not a JSON object: {e}"))
                .into_response();
        }
    };
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    match st.store.evict(&ns, &name, &v, dry_run) {
        Ok(obj) => json_response(StatusCode::CREATED, &obj),
        Err(e) => e.into_response(),
    }
}

async fn pdbs_all(State(st): St, Query(q): Params, h: HeaderMap) -> Response {
    list_or_watch(&st, Kind::PodDisruptionBudget, None, &q, &h)
}

async fn pdbs(State(st): St, Path(ns): Path<String>, Query(q): Params, h: HeaderMap) -> Response {
    list_or_watch(&st, Kind::PodDisruptionBudget, Some(ns), &q, &h)
}

async fn pdb(State(st): St, Path((ns, name)): Path<(String, String)>, h: HeaderMap) -> Response {
    get_one(&st, Kind::PodDisruptionBudget, &ns, &name, &h)
}

async fn create_pdb(
    State(st): St,
    Path(ns): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    created(&q, &body, |v, dry_run| st.store.create_pdb(&ns, v, dry_run))
}

async fn delete_pdb(
    State(st): St,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    deleted(&q, &body, |dry_run| {
        st.store.delete_pdb(&ns, &name, dry_run)
    })
}
