//! The API server's state: one pod per sim worker, the NetworkPolicies, a resource-version
//! counter and the watch event history — and `reconcile`, the "kubelet and controllers" that
//! turn worker states into pod states and policies into cut-off workers.
//!
//! Pods: a worker's process is the pod's container. A restart of the worker that nobody asked
//! for (a crash, a GPU lockout) is a container restart: same pod, `restartCount` + 1. Deleting
//! the pod kills the worker after the grace period and "the ReplicaSet recreates it": the old pod
//! is DELETED and a new pod (new name, new uid) is ADDED, Pending until the worker's next
//! generation runs, then Ready (`pod_ready` in the sim's ground truth).
//!
//! Readiness ignores the network: a cut-off worker's pod stays Ready, as a real pod whose
//! readiness probe (from its own node's kubelet) still passes while a NetworkPolicy drops the
//! traffic from everywhere else.
//!
//! NetworkPolicies: a policy in `default` whose `podSelector` selects a worker's pod and whose
//! Ingress rules admit nothing (none, or only `from` peers — the router is not a pod) cuts that
//! worker off. Egress-only policies change nothing in the sim: answers go back on connections
//! that the router opened, which NetworkPolicies (stateful) let through.
//!
//! Every change bumps one global resource version; watch events are sent while the state lock is
//! held, so a watcher that subscribes under the lock misses nothing and sees them in order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::nodes::{NodeSlot, node_json, node_name};
use super::objects::{ApiError, NETWORKING, POLICY, age, name_suffix, rfc3339, uid};
use super::pdb::Pdb;
use crate::common::Selector;
use crate::sim::{SimControl, WorkerState, WorkerStatus};

mod drain;
use drain::{pick_node, pod_health};

/// The only namespace that holds pods.
pub const NAMESPACE: &str = "default";
/// The pods' `terminationGracePeriodSeconds`: the kill delay when a delete names none.
pub const POD_GRACE_S: i64 = 1;
/// Watch events kept for watchers that resume from a resource version.
const HISTORY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pod,
    NetworkPolicy,
    Node,
    PodDisruptionBudget,
}

impl Kind {
    pub fn group(self) -> &'static str {
        match self {
            Kind::Pod => "",
            Kind::NetworkPolicy => NETWORKING,
            Kind::Node => "",
            Kind::PodDisruptionBudget => POLICY,
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::Node => "nodes",
            Kind::PodDisruptionBudget => "poddisruptionbudgets",
        }
    }

    /// The object kind (`Pod`).
    pub fn object_kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Node => "Node",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }

    pub fn list_kind(self) -> &'static str {
        match self {
            Kind::Pod => "PodList",
            Kind::NetworkPolicy => "NetworkPolicyList",
            Kind::Node => "NodeList",
            Kind::PodDisruptionBudget => "PodDisruptionBudgetList",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Pod => "v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::Node => "v1",
            Kind::PodDisruptionBudget => "policy/v1",
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &[
                "metadata.name",
                "metadata.namespace",
                "status.phase",
                "spec.nodeName",
            ],
            Kind::NetworkPolicy | Kind::PodDisruptionBudget => {
                &["metadata.name", "metadata.namespace"]
            }
            Kind::Node => &["metadata.name"],
        }
    }
}

#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub kind: Kind,
    pub rv: u64,
    pub type_: &'static str,
    pub object: Arc<Value>,
}

impl WatchEvent {
    pub fn to_line(&self) -> String {
        let mut s = json!({"type": self.type_, "object": &*self.object}).to_string();
        s.push('\n');
        s
    }
}

/// What a list or watch selects: namespace (None = all), labels, fields.
#[derive(Clone, Debug)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
}

impl Filter {
    pub fn new(
        kind: Kind,
        namespace: Option<String>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Filter, ApiError> {
        let labels = Selector::parse(labels.unwrap_or("")).map_err(ApiError::bad_request)?;
        let fields = Selector::parse(fields.unwrap_or("")).map_err(ApiError::bad_request)?;
        if let Some(k) = fields.keys().find(|k| !kind.fields().contains(k)) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {k}"
            )));
        }
        Ok(Filter {
            namespace,
            labels,
            fields,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        let labels: BTreeMap<String, String> = meta["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        if !self.labels.matches(&labels) {
            return false;
        }
        let mut fields = BTreeMap::new();
        for (key, ptr) in [
            ("metadata.name", "/metadata/name"),
            ("metadata.namespace", "/metadata/namespace"),
            ("status.phase", "/status/phase"),
            ("spec.nodeName", "/spec/nodeName"),
        ] {
            if let Some(v) = obj.pointer(ptr).and_then(Value::as_str) {
                fields.insert(key.to_string(), v.to_string());
            }
        }
        self.fields.matches(&fields)
    }
}

/// The observed state of a pod, derived from its worker; a change bumps the resource version.
#[derive(Clone, Debug, PartialEq)]
struct PodView {
    phase: &'static str,
    ready: bool,
    /// The STATUS column of `kubectl get pods`.
    reason: &'static str,
    /// None: the container does not exist yet; Some(false): terminated (failed).
    container_up: Option<bool>,
    restarts: u64,
    generation: u64,
    cut_off: bool,
    routed: bool,
    pid: Option<u32>,
    gpus: Vec<u32>,
}

struct PodSlot {
    name: String,
    uid: String,
    created: DateTime<Utc>,
    rv: u64,
    /// The worker generation from which on the worker's process is this pod's container.
    min_generation: u64,
    /// The generation the container started with (restarts are counted from it).
    restart_base: Option<u64>,
    /// (deletion timestamp = when the kill happens, grace seconds).
    deleting: Option<(DateTime<Utc>, i64)>,
    /// The node it runs on (`nodes.rs`); `None`: Pending, no schedulable node.
    node: Option<usize>,
    ever_ready: bool,
    ready_since: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    view: PodView,
}

struct Policy {
    object: Arc<Value>,
    selector: Selector,
    /// Ingress is in its policyTypes and no rule admits the router.
    cuts_ingress: bool,
}

struct Inner {
    rv: u64,
    /// Indexed by worker.
    pods: Vec<PodSlot>,
    /// Per worker: what the policies demanded at the last reconcile (and we applied).
    applied_cut: Vec<bool>,
    policies: BTreeMap<(String, String), Policy>,
    /// Indexed like the workers: node n is where worker n's first pod runs.
    nodes: Vec<NodeSlot>,
    pdbs: BTreeMap<(String, String), Pdb>,
    history: VecDeque<WatchEvent>,
}

impl Inner {
    fn emit(
        &mut self,
        tx: &broadcast::Sender<WatchEvent>,
        kind: Kind,
        type_: &'static str,
        object: Value,
    ) {
        let ev = WatchEvent {
            kind,
            rv: self.rv,
            type_,
            object: Arc::new(object),
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        let _ = tx.send(ev);
    }
}

pub struct Store {
    control: SimControl,
    inner: Mutex<Inner>,
    tx: broadcast::Sender<WatchEvent>,
}

impl Store {
    pub fn new(control: SimControl) -> Arc<Store> {
        let (tx, _) = broadcast::channel(HISTORY);
        let store = Arc::new(Store {
            control,
            inner: Mutex::new(Inner {
                rv: 1,
                pods: Vec::new(),
                applied_cut: Vec::new(),
                policies: BTreeMap::new(),
                nodes: Vec::new(),
                pdbs: BTreeMap::new(),
                history: VecDeque::new(),
            }),
            tx,
        });
        store.reconcile();
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the pods up to date with the workers and the workers' cut-off up to date with the
    /// policies. Cheap; called on every sim event, on a timer and after every change.
    pub fn reconcile(&self) {
        let workers = self.control.workers();
        let now = Utc::now();
        let mut records: Vec<(&'static str, usize, String)> = Vec::new();
        // (worker, cut, a transition rather than a re-application)
        let mut cuts: Vec<(usize, bool, bool)> = Vec::new();
        // (worker, held down because its pod has no node)
        let mut holds: Vec<(usize, bool)> = Vec::new();
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            for w in &workers {
                let i = w.index;
                if i >= inner.pods.len() {
                    // First sight of this worker: its current process is the pod's container.
                    while inner.pods.len() <= i {
                        let idx = inner.pods.len();
                        let base = workers
                            .iter()
                            .find(|x| x.index == idx)
                            .map_or(0, |x| x.generation);
                        inner.rv += 1;
                        let slot = new_slot(idx, base, now, inner.rv, &workers);
                        let obj = pod_json(idx, &slot, now);
                        inner.pods.push(slot);
                        inner.applied_cut.push(false);
                        inner.emit(&self.tx, Kind::Pod, "ADDED", obj);
                        if inner.nodes.len() <= idx {
                            inner.rv += 1;
                            let node = NodeSlot::new(idx, now, inner.rv);
                            let obj = node_json(idx, &node);
                            inner.nodes.push(node);
                            inner.emit(&self.tx, Kind::Node, "ADDED", obj);
                        }
                    }
                }
                let slot = &mut inner.pods[i];
                let view = observe(slot, w);
                if view != slot.view {
                    if view.ready && !slot.view.ready {
                        slot.ready_since = now;
                        slot.ever_ready = true;
                        records.push(("pod_ready", i, format!("pod {} ready", slot.name)));
                    } else if !view.ready && slot.view.ready {
                        slot.ready_since = now;
                    }
                    if view.container_up == Some(true) && slot.view.container_up != Some(true)
                        || view.generation != slot.view.generation
                    {
                        slot.started = Some(now);
                    }
                    slot.view = view;
                    inner.rv += 1;
                    slot.rv = inner.rv;
                    let obj = pod_json(i, slot, now);
                    inner.emit(&self.tx, Kind::Pod, "MODIFIED", obj);
                }
            }
            // Pending pods → a node, once one is schedulable again.
            for i in 0..inner.pods.len() {
                if inner.pods[i].node.is_some() || inner.pods[i].deleting.is_some() {
                    continue;
                }
                let Some(n) = pick_node(&inner.nodes, &inner.pods, None) else {
                    continue;
                };
                inner.pods[i].node = Some(n);
                inner.rv += 1;
                inner.pods[i].rv = inner.rv;
                let obj = pod_json(i, &inner.pods[i], now);
                inner.emit(&self.tx, Kind::Pod, "MODIFIED", obj);
                records.push((
                    "pod_rescheduled",
                    i,
                    format!("pod {} scheduled on {}", inner.pods[i].name, node_name(n)),
                ));
                holds.push((i, false));
            }
            // Policies → cut-off workers.
            for w in &workers {
                let i = w.index;
                let labels = pod_labels(i);
                let selecting: Vec<&str> = inner
                    .policies
                    .iter()
                    .filter(|((ns, _), p)| {
                        ns == NAMESPACE && p.cuts_ingress && p.selector.matches(&labels)
                    })
                    .map(|((_, name), _)| name.as_str())
                    .collect();
                let want = !selecting.is_empty();
                if want != inner.applied_cut[i] {
                    cuts.push((i, want, true));
                    let (kind, detail) = if want {
                        (
                            "policy_applied",
                            format!(
                                "networkpolicy {} cuts off pod {}",
                                selecting.join(","),
                                inner.pods[i].name
                            ),
                        )
                    } else {
                        (
                            "policy_removed",
                            format!(
                                "no networkpolicy selects pod {} any more",
                                inner.pods[i].name
                            ),
                        )
                    };
                    records.push((kind, i, detail));
                    inner.applied_cut[i] = want;
                } else if want && !w.cut_off {
                    // The worker came back (a restart) without the cut: the policy still holds.
                    cuts.push((i, true, false));
                }
            }
        }
        for (i, cut, transition) in cuts {
            if let Err(e) = self.control.set_cut_off(i, cut) {
                if transition {
                    tracing::warn!("kube api: cannot set worker {i} cut_off={cut}: {e}");
                } else {
                    tracing::debug!("kube api: cannot set worker {i} cut_off={cut}: {e}");
                }
            }
        }
        for (i, held) in holds {
            if let Err(e) = self.control.set_unschedulable(i, held) {
                tracing::warn!("kube api: cannot set worker {i} unschedulable={held}: {e}");
            }
        }
        for (kind, i, detail) in records {
            self.control.record(kind, Some(i), &detail);
        }
    }

    /// Objects of `kind` that `filter` selects, sorted by namespace and name, and the list's
    /// resource version.
    pub fn list(&self, kind: Kind, filter: &Filter) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let now = Utc::now();
        let mut items: Vec<Value> = match kind {
            Kind::Pod => inner
                .pods
                .iter()
                .enumerate()
                .map(|(i, s)| pod_json(i, s, now))
                .collect(),
            Kind::NetworkPolicy => inner
                .policies
                .values()
                .map(|p| (*p.object).clone())
                .collect(),
            Kind::Node => inner
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| node_json(i, n))
                .collect(),
            Kind::PodDisruptionBudget => {
                let health = pod_health(&inner.pods);
                inner
                    .pdbs
                    .values()
                    .map(|p| p.with_status(&health))
                    .collect()
            }
        };
        items.retain(|o| filter.matches(o));
        items.sort_by(|a, b| {
            let key = |o: &Value| {
                (
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        (items, inner.rv)
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        let found = match kind {
            Kind::Pod => inner
                .pods
                .iter()
                .enumerate()
                .find(|(_, s)| ns == NAMESPACE && s.name == name)
                .map(|(i, s)| pod_json(i, s, Utc::now())),
            Kind::NetworkPolicy => inner
                .policies
                .get(&(ns.to_string(), name.to_string()))
                .map(|p| (*p.object).clone()),
            Kind::Node => super::nodes::node_index(name)
                .and_then(|i| inner.nodes.get(i).map(|n| node_json(i, n))),
            Kind::PodDisruptionBudget => inner
                .pdbs
                .get(&(ns.to_string(), name.to_string()))
                .map(|p| p.with_status(&pod_health(&inner.pods))),
        };
        found.ok_or_else(|| ApiError::not_found(kind.group(), kind.plural(), name))
    }

    /// Deletes a pod: marks it Terminating and kills its worker after the grace period (the
    /// pod's own, 1 s, when `grace` is None). Answers the pod as it is now.
    pub fn delete_pod(
        self: &Arc<Self>,
        ns: &str,
        name: &str,
        grace: Option<i64>,
        uid_precondition: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.delete_pod_if(ns, name, grace, uid_precondition, dry_run, |_, _| Ok(()))
    }

    /// [`Store::delete_pod`] after `check` (run under the lock, with the pod's index) allows it:
    /// the Eviction subresource checks the disruption budgets there, so two evictions cannot
    /// both spend the last allowed disruption.
    fn delete_pod_if(
        self: &Arc<Self>,
        ns: &str,
        name: &str,
        grace: Option<i64>,
        uid_precondition: Option<&str>,
        dry_run: bool,
        check: impl FnOnce(&Inner, usize) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let grace = grace.unwrap_or(POD_GRACE_S).max(0);
        let mut inner = self.lock();
        let now = Utc::now();
        let Some(i) = inner
            .pods
            .iter()
            .position(|s| ns == NAMESPACE && s.name == name)
        else {
            return Err(ApiError::not_found("", "pods", name));
        };
        if inner.pods[i].deleting.is_none() {
            check(&inner, i)?;
        }
        let slot = &mut inner.pods[i];
        if let Some(want) = uid_precondition
            && want != slot.uid
        {
            return Err(ApiError::conflict(format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                slot.uid
            )));
        }
        if dry_run || slot.deleting.is_some() {
            return Ok(pod_json(i, slot, now));
        }
        slot.deleting = Some((now + chrono::Duration::seconds(grace), grace));
        let uid = slot.uid.clone();
        inner.rv += 1;
        inner.pods[i].rv = inner.rv;
        let obj = pod_json(i, &inner.pods[i], now);
        inner.emit(&self.tx, Kind::Pod, "MODIFIED", obj.clone());
        drop(inner);
        if grace == 0 {
            self.finish_delete(i, &uid);
        } else {
            let store = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(grace as u64)).await;
                store.finish_delete(i, &uid);
            });
        }
        Ok(obj)
    }

    /// The grace period is over: kill the worker, remove the pod, add its replacement.
    fn finish_delete(&self, worker: usize, uid: &str) {
        let gen_now = self
            .control
            .workers()
            .iter()
            .find(|w| w.index == worker)
            .map_or(0, |w| w.generation);
        {
            let mut inner = self.lock();
            if inner.pods.get(worker).is_none_or(|s| s.uid != uid) {
                return;
            }
            let name = inner.pods[worker].name.clone();
            let old_node = inner.pods[worker].node;
            // Where the replacement goes; none: it stays Pending and the worker stays down
            // (held before the kill, so its supervisor never starts it in between).
            let node = pick_node(&inner.nodes, &inner.pods, old_node);
            if node.is_none()
                && let Err(e) = self.control.set_unschedulable(worker, true)
            {
                tracing::warn!("kube api: cannot hold worker {worker} down: {e}");
            }
            // Ground truth in cause order: pod_deleted, then the sim's worker_failed.
            self.control
                .record("pod_deleted", Some(worker), &format!("pod {name} deleted"));
            let killed = self.control.kill_worker(worker, "pod deleted");
            if let Err(e) = &killed {
                tracing::warn!("kube api: deleting pod {name}: cannot kill worker {worker}: {e}");
            }
            let now = Utc::now();
            inner.rv += 1;
            inner.pods[worker].rv = inner.rv;
            let gone = pod_json(worker, &inner.pods[worker], now);
            inner.emit(&self.tx, Kind::Pod, "DELETED", gone);
            let min_generation = if killed.is_ok() { gen_now + 1 } else { gen_now };
            inner.rv += 1;
            let mut slot = new_slot(worker, min_generation, now, inner.rv, &[]);
            while slot.name == name {
                slot.name = pod_name(worker);
            }
            slot.node = node;
            match node {
                Some(n) if Some(n) != old_node => self.control.record(
                    "pod_rescheduled",
                    Some(worker),
                    &format!(
                        "pod {} (replaces {name}) scheduled on {}, away from {}",
                        slot.name,
                        node_name(n),
                        old_node.map_or("no node".to_string(), node_name)
                    ),
                ),
                Some(_) => {}
                None => self.control.record(
                    "pod_unschedulable",
                    Some(worker),
                    &format!(
                        "pod {} (replaces {name}) is Pending: every node is cordoned",
                        slot.name
                    ),
                ),
            }
            let obj = pod_json(worker, &slot, now);
            inner.pods[worker] = slot;
            inner.emit(&self.tx, Kind::Pod, "ADDED", obj);
        }
        self.reconcile();
    }

    pub fn create_policy(&self, ns: &str, body: Value, dry_run: bool) -> Result<Value, ApiError> {
        let (mut obj, selector, cuts_ingress) = validate_policy(ns, body)?;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        {
            let mut inner = self.lock();
            let key = (ns.to_string(), name.clone());
            if inner.policies.contains_key(&key) {
                return Err(ApiError::already_exists(
                    NETWORKING,
                    "networkpolicies",
                    &name,
                ));
            }
            let meta = &mut obj["metadata"];
            meta["uid"] = json!(uid());
            meta["creationTimestamp"] = json!(rfc3339(Utc::now()));
            meta["generation"] = json!(1);
            if dry_run {
                return Ok(obj);
            }
            inner.rv += 1;
            obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            let object = Arc::new(obj.clone());
            inner.policies.insert(
                key,
                Policy {
                    object: object.clone(),
                    selector,
                    cuts_ingress,
                },
            );
            inner.emit(&self.tx, Kind::NetworkPolicy, "ADDED", obj.clone());
        }
        self.reconcile();
        Ok(obj)
    }

    pub fn delete_policy(&self, ns: &str, name: &str, dry_run: bool) -> Result<Value, ApiError> {
        let obj = {
            let mut inner = self.lock();
            let key = (ns.to_string(), name.to_string());
            let Some(p) = inner.policies.get(&key) else {
                return Err(ApiError::not_found(NETWORKING, "networkpolicies", name));
            };
            if dry_run {
                return Ok((*p.object).clone());
            }
            let p = inner.policies.remove(&key).expect("present");
            inner.rv += 1;
            let mut obj = (*p.object).clone();
            obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            inner.emit(&self.tx, Kind::NetworkPolicy, "DELETED", obj.clone());
            obj
        };
        self.reconcile();
        Ok(obj)
    }

    /// Starts a watch: the events to send first, and the receiver of all later events (filter
    /// both; skip live events with `rv <=` the returned one). `rv` None or 0: the current objects
    /// as ADDED; otherwise the events after `rv` (410 Expired when they are no longer kept).
    pub fn watch(
        &self,
        kind: Kind,
        filter: &Filter,
        rv: Option<u64>,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>, u64), ApiError> {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let now = Utc::now();
        let initial: Vec<WatchEvent> = match rv {
            None | Some(0) => match kind {
                Kind::Pod => inner
                    .pods
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.rv, pod_json(i, s, now)))
                    .collect::<Vec<_>>(),
                Kind::NetworkPolicy => inner
                    .policies
                    .values()
                    .map(|p| {
                        let rv = p.object["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        (rv, (*p.object).clone())
                    })
                    .collect(),
                Kind::Node => inner
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.rv, node_json(i, n)))
                    .collect(),
                Kind::PodDisruptionBudget => {
                    let health = pod_health(&inner.pods);
                    inner
                        .pdbs
                        .values()
                        .map(|p| {
                            let rv = p.object["metadata"]["resourceVersion"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0);
                            (rv, p.with_status(&health))
                        })
                        .collect()
                }
            }
            .into_iter()
            .map(|(rv, o)| WatchEvent {
                kind,
                rv,
                type_: "ADDED",
                object: Arc::new(o),
            })
            .collect(),
            Some(from) if from >= inner.rv => Vec::new(),
            Some(from) => {
                let oldest = inner.history.front().map_or(u64::MAX, |e| e.rv);
                if oldest > from + 1 {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {from} ({})",
                        oldest.saturating_sub(1)
                    )));
                }
                inner
                    .history
                    .iter()
                    .filter(|e| e.rv > from && e.kind == kind)
                    .cloned()
                    .collect()
            }
        };
        let initial = initial
            .into_iter()
            .filter(|e| filter.matches(&e.object))
            .collect();
        Ok((initial, rx, inner.rv))
    }

    pub fn pod_table_row(obj: &Value) -> Vec<Value> {
        let cs = &obj["status"]["containerStatuses"][0];
        let ready = if cs["ready"].as_bool() == Some(true) {
            1
        } else {
            0
        };
        let status = if obj["metadata"]["deletionTimestamp"].is_string() {
            "Terminating".to_string()
        } else {
            obj["metadata"]["annotations"]["sim.faultline.dev/status"]
                .as_str()
                .unwrap_or("Unknown")
                .to_string()
        };
        vec![
            obj["metadata"]["name"].clone(),
            json!(format!("{ready}/1")),
            json!(status),
            cs["restartCount"].clone(),
            json!(age_of(obj)),
            obj["status"]["podIP"].clone(),
            obj["spec"]["nodeName"].clone(),
        ]
    }

    pub fn policy_table_row(obj: &Value) -> Vec<Value> {
        let sel = &obj["spec"]["podSelector"];
        let mut parts: Vec<String> = sel["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        if sel["matchExpressions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            parts.push("(expressions)".to_string());
        }
        let shown = if parts.is_empty() {
            "<none>".to_string()
        } else {
            parts.join(",")
        };
        vec![
            obj["metadata"]["name"].clone(),
            json!(shown),
            json!(age_of(obj)),
        ]
    }
}

impl Store {
    /// The AGE column of an object.
    pub fn age_of(obj: &Value) -> String {
        age_of(obj)
    }
}

fn age_of(obj: &Value) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or("<unknown>".to_string(), |t| {
            age((Utc::now() - t.with_timezone(&Utc)).num_seconds())
        })
}

fn pod_name(worker: usize) -> String {
    format!("sim-llm-{worker}-{}", name_suffix())
}

pub fn pod_labels(worker: usize) -> BTreeMap<String, String> {
    [
        ("app", "sim-llm".to_string()),
        ("worker", worker.to_string()),
        ("role", "worker".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn new_slot(
    worker: usize,
    min_generation: u64,
    now: DateTime<Utc>,
    rv: u64,
    workers: &[WorkerStatus],
) -> PodSlot {
    let mut slot = PodSlot {
        name: pod_name(worker),
        uid: uid(),
        created: now,
        rv,
        min_generation,
        restart_base: None,
        deleting: None,
        node: Some(worker),
        ever_ready: false,
        ready_since: now,
        started: None,
        view: PodView {
            phase: "Pending",
            ready: false,
            reason: "ContainerCreating",
            container_up: None,
            restarts: 0,
            generation: min_generation,
            cut_off: false,
            routed: false,
            pid: None,
            gpus: Vec::new(),
        },
    };
    if let Some(w) = workers.iter().find(|w| w.index == worker) {
        slot.view = observe(&mut slot, w);
        if slot.view.container_up == Some(true) {
            slot.started = Some(now);
        }
    }
    slot
}

fn observe(slot: &mut PodSlot, w: &WorkerStatus) -> PodView {
    let current = w.generation >= slot.min_generation;
    if current && slot.restart_base.is_none() {
        slot.restart_base = Some(w.generation);
    }
    let restarts = match slot.restart_base {
        Some(b) if current => w.generation.saturating_sub(b),
        _ => 0,
    };
    let (phase, ready, reason, container_up) = if !current {
        ("Pending", false, "ContainerCreating", None)
    } else {
        match w.state {
            WorkerState::Running => ("Running", true, "Running", Some(true)),
            // Loading the model: the container runs, the readiness probe fails.
            WorkerState::Starting if slot.ever_ready || restarts > 0 => {
                ("Running", false, "Running", Some(true))
            }
            WorkerState::Starting => ("Pending", false, "ContainerCreating", Some(true)),
            WorkerState::Failed => ("Running", false, "Error", Some(false)),
        }
    };
    PodView {
        phase,
        ready,
        reason,
        container_up,
        restarts,
        generation: w.generation,
        cut_off: w.cut_off,
        routed: w.routed,
        pid: w.pid,
        gpus: w.gpus.clone(),
    }
}

fn pod_json(worker: usize, s: &PodSlot, now: DateTime<Utc>) -> Value {
    let v = &s.view;
    let ready = if v.ready { "True" } else { "False" };
    let created = rfc3339(s.created);
    let state = match v.container_up {
        None => json!({"waiting": {"reason": "ContainerCreating"}}),
        Some(true) => {
            json!({"running": {"startedAt": rfc3339(s.started.unwrap_or(s.created))}})
        }
        Some(false) => json!({"terminated": {"exitCode": 137, "reason": "Error",
            "finishedAt": rfc3339(now)}}),
    };
    let gpus: Vec<String> = v.gpus.iter().map(u32::to_string).collect();
    let mut meta = json!({
        "name": s.name,
        "generateName": format!("sim-llm-{worker}-"),
        "namespace": NAMESPACE,
        "uid": s.uid,
        "resourceVersion": s.rv.to_string(),
        "creationTimestamp": created,
        "labels": pod_labels(worker),
        "annotations": {
            "sim.faultline.dev/generation": v.generation.to_string(),
            "sim.faultline.dev/gpus": gpus.join(","),
            "sim.faultline.dev/cut-off": v.cut_off.to_string(),
            "sim.faultline.dev/routed": v.routed.to_string(),
            "sim.faultline.dev/status": v.reason,
        },
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "sim-llm",
            "uid": "00000000-0000-4000-8000-000000000001", "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if let Some((at, grace)) = s.deleting {
        meta["deletionTimestamp"] = json!(rfc3339(at));
        meta["deletionGracePeriodSeconds"] = json!(grace);
    }
    let mut container_status = json!({
        "name": "llm",
        "image": "faultline/sim-llm:latest",
        "imageID": "",
        "ready": v.ready,
        "started": v.container_up == Some(true),
        "restartCount": v.restarts,
        "state": state,
    });
    if let Some(pid) = v.pid {
        container_status["containerID"] = json!(format!("sim://{pid}"));
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [{"name": "llm", "image": "faultline/sim-llm:latest",
                            "ports": [{"containerPort": 8000, "protocol": "TCP"}]}],
            "nodeName": s.node.map(node_name),
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": POD_GRACE_S,
        },
        "status": {
            "phase": v.phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
                {"type": "Initialized", "status": "True", "lastTransitionTime": created},
                {"type": "ContainersReady", "status": ready,
                 "lastTransitionTime": rfc3339(s.ready_since)},
                {"type": "Ready", "status": ready, "lastTransitionTime": rfc3339(s.ready_since)},
            ],
            "containerStatuses": [container_status],
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": created,
            "qosClass": "BestEffort",
        },
    });
    if s.node.is_none() {
        // Unschedulable: no node, no container, Pending as the scheduler left it.
        let spec = pod["spec"].as_object_mut().expect("an object");
        spec.remove("nodeName");
        pod["metadata"]["annotations"]["sim.faultline.dev/status"] = json!("Pending");
        pod["status"]["conditions"] = json!([{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "no node is available: every node is cordoned (unschedulable)",
            "lastTransitionTime": created,
        }]);
        pod["status"]["phase"] = json!("Pending");
        let status = pod["status"].as_object_mut().expect("an object");
        for key in [
            "hostIP",
            "podIP",
            "podIPs",
            "containerStatuses",
            "startTime",
        ] {
            status.remove(key);
        }
    }
    pod
}

/// Checks a NetworkPolicy body and fills in namespace and defaults; returns it with its parsed
/// pod selector and whether it cuts ingress.
fn validate_policy(ns: &str, mut body: Value) -> Result<(Value, Selector, bool), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a NetworkPolicy object",
        ));
    }
    match body["kind"].as_str() {
        None | Some("NetworkPolicy") => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the body is a \"{k}\", not a NetworkPolicy"
            )));
        }
    }
    match body["apiVersion"].as_str() {
        None | Some("networking.k8s.io/v1") => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "apiVersion \"{v}\" is not networking.k8s.io/v1"
            )));
        }
    }
    body["kind"] = json!("NetworkPolicy");
    body["apiVersion"] = json!("networking.k8s.io/v1");
    if !body["metadata"].is_object() {
        return Err(ApiError::invalid("metadata.name: Required value"));
    }
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !is_dns1123_subdomain(&name) {
        return Err(ApiError::invalid(format!(
            "NetworkPolicy.networking.k8s.io \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
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
    for key in ["labels", "annotations"] {
        if let Some(m) = body["metadata"].get(key).filter(|m| !m.is_null())
            && !m
                .as_object()
                .is_some_and(|o| o.values().all(Value::is_string))
        {
            return Err(ApiError::invalid(format!(
                "metadata.{key}: must be a map of strings"
            )));
        }
    }
    let spec = &body["spec"];
    if !spec.is_object() {
        return Err(ApiError::invalid("spec: Required value"));
    }
    if !spec["podSelector"].is_object() {
        return Err(ApiError::invalid("spec.podSelector: Required value"));
    }
    let selector = Selector::from_label_selector(&spec["podSelector"])
        .map_err(|e| ApiError::invalid(format!("spec.podSelector: {e}")))?;
    let rules = |key: &str| -> Result<Vec<Value>, ApiError> {
        match &spec[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) if a.iter().all(Value::is_object) => Ok(a.clone()),
            other => Err(ApiError::invalid(format!(
                "spec.{key}: must be a list of rules, not {other}"
            ))),
        }
    };
    let ingress = rules("ingress")?;
    let egress = rules("egress")?;
    let types: Vec<String> = match &spec["policyTypes"] {
        Value::Null => {
            let mut t = vec!["Ingress".to_string()];
            if !egress.is_empty() {
                t.push("Egress".to_string());
            }
            t
        }
        Value::Array(a) => a
            .iter()
            .map(|t| match t.as_str() {
                Some(s @ ("Ingress" | "Egress")) => Ok(s.to_string()),
                _ => Err(ApiError::invalid(format!(
                    "spec.policyTypes: Unsupported value: {t}: supported values: \"Ingress\", \"Egress\""
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(ApiError::invalid(format!(
                "spec.policyTypes: must be a list, not {other}"
            )));
        }
    };
    // A rule without `from` admits everyone; rules with `from` name pods, namespaces or CIDRs,
    // and the sim's router is none of those.
    let admits_router = ingress.iter().any(|r| {
        r.get("from")
            .is_none_or(|f| f.is_null() || f.as_array().is_some_and(|a| a.is_empty()))
    });
    let cuts_ingress = types.iter().any(|t| t == "Ingress") && !admits_router;
    Ok((body, selector, cuts_ingress))
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_all_policies_cut_ingress_and_allow_rules_do_not() {
        let body = |spec: Value| json!({"metadata": {"name": "p"}, "spec": spec});
        let cut = |spec: Value| validate_policy("default", body(spec)).unwrap().2;
        assert!(cut(json!({"podSelector": {}, "policyTypes": ["Ingress"]})));
        assert!(cut(json!({"podSelector": {}})));
        assert!(cut(
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        ));
        assert!(!cut(json!({"podSelector": {}, "policyTypes": ["Egress"]})));
        assert!(!cut(json!({"podSelector": {}, "ingress": [{}]})));
        assert!(cut(
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
        ));
    }

    #[test]
    fn invalid_policies_are_rejected_naming_the_field() {
        for (b, want) in [
            (
                json!({"metadata": {"name": "Bad_Name"}, "spec": {"podSelector": {}}}),
                "metadata.name",
            ),
            (json!({"metadata": {"name": "p"}}), "spec"),
            (
                json!({"metadata": {"name": "p"}, "spec": {}}),
                "spec.podSelector",
            ),
            (
                json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}, "policyTypes": ["Sideways"]}}),
                "spec.policyTypes",
            ),
            (json!({"kind": "Pod", "metadata": {"name": "p"}}), "Pod"),
            (
                json!({"metadata": {"name": "p", "namespace": "kube-system"}, "spec": {"podSelector": {}}}),
                "kube-system",
            ),
        ] {
            let e = validate_policy("default", b).unwrap_err();
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
    }

    #[test]
    fn dns1123_subdomains() {
        assert!(is_dns1123_subdomain("faultline-run1-f2"));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("A"));
        assert!(!is_dns1123_subdomain(""));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn field_selectors_accept_only_known_fields() {
        assert!(Filter::new(Kind::Pod, None, None, Some("metadata.name=x")).is_ok());
        let e = Filter::new(Kind::Pod, None, None, Some("spec.foo=x")).unwrap_err();
        assert_eq!(e.code, 400);
        let f = Filter::new(
            Kind::Pod,
            Some("default".into()),
            Some("worker in (1)"),
            Some("metadata.name=a"),
        )
        .unwrap();
        let obj =
            json!({"metadata": {"name": "a", "namespace": "default", "labels": {"worker": "1"}}});
        assert!(f.matches(&obj));
        let obj =
            json!({"metadata": {"name": "b", "namespace": "default", "labels": {"worker": "1"}}});
        assert!(!f.matches(&obj));
    }
}
