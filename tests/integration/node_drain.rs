//! `node-drain` against the sim's HTTPS Kubernetes API: the library kind (inject, verify,
//! restore, a blocking PodDisruptionBudget, a node that was cordoned before, rescheduling onto
//! other nodes and Pending when there is none), the real `faultline` binary (SIGKILL of an
//! `inject` then `recover`; the target-side deadline swept by `recover --kubeconfig` without a
//! ledger), and real `kubectl` (`get nodes`, `drain`, `uncordon`) against the same API. Ground
//! truth is the sim's event log. The sim runs the fast `small` preset (a restart takes 0.6 s);
//! nodes are `sim-node-<n>`, worker n's pod starting on node n.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use faultline::fault::exec::Hosts;
use faultline::fault::kube_target::{KubeTarget, is_ready};
use faultline::fault::node_drain::{self, DRAIN, Params};
use faultline::fault::{FaultContext, FaultKind, FaultSpec, Verification};
use faultline::sim::kube::KubeApiHandle;
use faultline::sim::{self, SimConfig, SimControl, SimHandle, WorkerState};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

const T: Duration = Duration::from_secs(20);

struct Cluster {
    sim: SimHandle,
    api: KubeApiHandle,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn control(&self) -> SimControl {
        self.sim.control()
    }

    async fn kube(&self) -> KubeTarget {
        KubeTarget::from_kubeconfig(&self.api.kubeconfig, None)
            .await
            .expect("a client from the written kubeconfig")
    }

    async fn stop(self) {
        self.api.shutdown().await;
        self.sim.shutdown().await;
    }
}

async fn start(workers: u32) -> Cluster {
    let mut config = SimConfig::preset("small").unwrap();
    config.gpus = workers;
    config.faultline_bin = Some(PathBuf::from(env!("CARGO_BIN_EXE_faultline")));
    let loopback = "127.0.0.1:0".parse().unwrap();
    let sim = sim::start(config, loopback).await.expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    let api = sim::kube::serve(sim.control(), loopback, &dir.path().join("kubeconfig"))
        .await
        .expect("kube api starts");
    Cluster {
        sim,
        api,
        _dir: dir,
    }
}

fn ctx(test: &str, kube: KubeTarget) -> FaultContext {
    let mut c = FaultContext::new(
        &format!("{test}-{}", std::process::id()),
        "f1",
        Arc::new(Hosts::default()),
        Utc::now() + chrono::Duration::seconds(60),
    );
    c.kube = Some(kube);
    c
}

fn drain(node: &str, timeout: Duration) -> Params {
    Params {
        node: Some(node.into()),
        timeout,
        ..Params::example()
    }
}

async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn node(kube: &KubeTarget, name: &str) -> Node {
    let api: Api<Node> = Api::all(kube.client.clone());
    api.get(name).await.expect("get node")
}

fn cordoned(n: &Node) -> bool {
    n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
}

fn annotations(n: &Node) -> std::collections::BTreeMap<String, String> {
    n.metadata.annotations.clone().unwrap_or_default()
}

async fn cordon(kube: &KubeTarget, name: &str, on: bool) {
    let api: Api<Node> = Api::all(kube.client.clone());
    let patch = serde_json::json!({"spec": {"unschedulable": on}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch node");
}

async fn pods(kube: &KubeTarget, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), "default");
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

fn events(control: &SimControl, kind: &str) -> Vec<sim::SimEvent> {
    control
        .events()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

fn worker_state(control: &SimControl, i: usize) -> WorkerState {
    control
        .workers()
        .into_iter()
        .find(|w| w.index == i)
        .unwrap()
        .state
}

#[tokio::test]
async fn drain_cordons_moves_the_pods_to_other_nodes_and_restore_uncordons_exactly_once() {
    let c = start(3).await;
    let kube = c.kube().await;
    let control = c.control();
    let ctx = ctx("drain", kube.clone());
    let p = drain("sim-node-1", Duration::from_secs(20));
    let before = pods(&kube, "worker=1").await;
    assert_eq!(node_of(&before[0]).as_deref(), Some("sim-node-1"));
    let old_name = before[0].metadata.name.clone().unwrap();

    node_drain::preflight(&p, &ctx, &kube)
        .await
        .expect("preflight");
    let undo = node_drain::prepare(&p, &ctx, &kube).await.expect("prepare");
    assert_eq!(undo.node, "sim-node-1");
    assert!(!undo.was_unschedulable);
    node_drain::inject(&p, &ctx, &kube, &undo)
        .await
        .expect("inject");
    assert_eq!(
        node_drain::verify(&p, &ctx, &kube, &undo).await.unwrap(),
        Verification::Verified
    );
    let n = node(&kube, "sim-node-1").await;
    assert!(cordoned(&n));
    let a = annotations(&n);
    assert_eq!(a.get(DRAIN).map(String::as_str), Some("cordoned"));
    assert_eq!(
        a.get("faultline.dev/run-id").map(String::as_str),
        Some(ctx.run_id.as_str())
    );

    // Ground truth: cordon, then the eviction of exactly worker 1's pod, whose replacement is
    // scheduled on another node and comes up Ready there; the other workers were not touched.
    assert_eq!(events(&control, "node_cordoned").len(), 1);
    let evicted = events(&control, "pod_evicted");
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert_eq!(evicted[0].worker, Some(1));
    assert!(evicted[0].detail.contains(&old_name), "{evicted:?}");
    let moved = events(&control, "pod_rescheduled");
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(
        moved[0].detail.contains("away from sim-node-1"),
        "{moved:?}"
    );
    assert!(
        eventually(T, || async {
            pods(&kube, "worker=1").await.iter().any(is_ready)
        })
        .await,
        "the replacement never became Ready"
    );
    let now = pods(&kube, "worker=1").await;
    assert_eq!(now.len(), 1);
    let landed = node_of(&now[0]).unwrap();
    assert_ne!(landed, "sim-node-1");
    assert!(["sim-node-0", "sim-node-2"].contains(&landed.as_str()));
    assert_ne!(now[0].metadata.name.as_deref(), Some(old_name.as_str()));
    assert!(
        events(&control, "pod_deleted")
            .iter()
            .all(|e| e.worker == Some(1))
    );

    // The target-side deadline: not expired now, expired after it.
    let kube_ = kube.clone();
    assert!(
        FaultSpec::expired_marks(&kube_, None, Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    let later = Utc::now() + chrono::Duration::seconds(120);
    let expired = FaultSpec::expired_marks(&kube, None, later).await.unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(
        (expired[0].kind, expired[0].name.as_str()),
        ("node-drain", "sim-node-1")
    );

    node_drain::restore(&p, &ctx, &kube, &undo)
        .await
        .expect("restore");
    node_drain::restore(&p, &ctx, &kube, &undo)
        .await
        .expect("restore twice");
    let n = node(&kube, "sim-node-1").await;
    assert!(!cordoned(&n));
    assert!(!annotations(&n).contains_key(DRAIN), "the mark is gone");
    assert_eq!(
        events(&control, "node_uncordoned").len(),
        1,
        "restore twice is harmless"
    );
    assert!(
        FaultSpec::expired_marks(&kube, None, later)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        node_drain::verify(&p, &ctx, &kube, &undo).await.is_err(),
        "verify after restore: not cordoned"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_budget_that_blocks_eviction_fails_the_drain_naming_pod_and_budget_and_nothing_is_bypassed()
 {
    let c = start(3).await;
    let kube = c.kube().await;
    let control = c.control();
    let ctx = ctx("pdb", kube.clone());
    let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "llm-pdb"},
        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "sim-llm"}}},
    }))
    .unwrap();
    let api: Api<PodDisruptionBudget> = Api::namespaced(kube.client.clone(), "default");
    assert!(
        eventually(T, || async {
            pods(&kube, "app=sim-llm")
                .await
                .iter()
                .filter(|p| is_ready(p))
                .count()
                == 3
        })
        .await
    );
    api.create(&PostParams::default(), &pdb).await.unwrap();
    let victim = pods(&kube, "worker=2").await.remove(0);
    let victim_name = victim.metadata.name.clone().unwrap();

    let p = drain("sim-node-2", Duration::from_secs(2));
    let undo = node_drain::prepare(&p, &ctx, &kube).await.unwrap();
    let t0 = Instant::now();
    let err = node_drain::inject(&p, &ctx, &kube, &undo)
        .await
        .expect_err("the budget blocks the drain")
        .to_string();
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "retried until the timeout"
    );
    assert!(err.contains(&format!("pod default/{victim_name}")), "{err}");
    assert!(err.contains("PodDisruptionBudget \"llm-pdb\""), "{err}");
    assert!(
        err.contains("3 healthy, 3 needed, 0 disruptions allowed"),
        "{err}"
    );
    // Nothing was deleted around the budget: the same pod (uid) still runs on the node.
    let still = pods(&kube, "worker=2").await;
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].metadata.uid, victim.metadata.uid);
    assert_eq!(node_of(&still[0]).as_deref(), Some("sim-node-2"));
    assert!(events(&control, "pod_deleted").is_empty());
    assert!(events(&control, "pod_evicted").is_empty());
    let refused = events(&control, "eviction_refused");
    assert!(refused.len() >= 2, "retried: {refused:?}");
    assert!(refused[0].detail.contains("llm-pdb"), "{refused:?}");
    assert_eq!(worker_state(&control, 2), WorkerState::Running);
    // Verify says so too, and restore uncordons.
    let v = node_drain::verify(&p, &ctx, &kube, &undo)
        .await
        .unwrap_err()
        .to_string();
    assert!(v.contains(&victim_name), "{v}");
    node_drain::restore(&p, &ctx, &kube, &undo).await.unwrap();
    assert!(!cordoned(&node(&kube, "sim-node-2").await));

    // With the budget relaxed the same drain goes through.
    api.delete("llm-pdb", &Default::default()).await.unwrap();
    let p = drain("sim-node-2", Duration::from_secs(20));
    node_drain::inject(&p, &ctx, &kube, &undo)
        .await
        .expect("inject");
    assert_eq!(events(&control, "pod_evicted").len(), 1);
    node_drain::restore(&p, &ctx, &kube, &undo).await.unwrap();
    c.stop().await;
}

#[tokio::test]
async fn a_node_that_was_already_cordoned_stays_cordoned_after_restore() {
    let c = start(2).await;
    let kube = c.kube().await;
    let control = c.control();
    let ctx = ctx("precordoned", kube.clone());
    cordon(&kube, "sim-node-0", true).await;
    let p = drain("sim-node-0", Duration::from_secs(20));
    let undo = node_drain::prepare(&p, &ctx, &kube).await.unwrap();
    assert!(undo.was_unschedulable);
    node_drain::inject(&p, &ctx, &kube, &undo).await.unwrap();
    assert_eq!(
        node_drain::verify(&p, &ctx, &kube, &undo).await.unwrap(),
        Verification::Verified
    );
    assert_eq!(
        annotations(&node(&kube, "sim-node-0").await)
            .get(DRAIN)
            .map(String::as_str),
        Some("was-cordoned")
    );
    node_drain::restore(&p, &ctx, &kube, &undo).await.unwrap();
    let n = node(&kube, "sim-node-0").await;
    assert!(
        cordoned(&n),
        "it was cordoned before the fault: it stays cordoned"
    );
    assert!(!annotations(&n).contains_key(DRAIN));
    assert!(events(&control, "node_uncordoned").is_empty());
    // The mark sweep, too, leaves such a node cordoned.
    let undo2 = node_drain::prepare(&p, &ctx, &kube).await.unwrap();
    node_drain::inject(&p, &ctx, &kube, &undo2).await.unwrap();
    let later = Utc::now() + chrono::Duration::seconds(120);
    for m in FaultSpec::expired_marks(&kube, None, later).await.unwrap() {
        FaultSpec::clear_mark(&kube, &m).await.unwrap();
    }
    let n = node(&kube, "sim-node-0").await;
    assert!(cordoned(&n) && !annotations(&n).contains_key(DRAIN));
    c.stop().await;
}

#[tokio::test]
async fn with_every_other_node_cordoned_the_evicted_pod_stays_pending_until_uncordon() {
    let c = start(2).await;
    let kube = c.kube().await;
    let control = c.control();
    let ctx = ctx("pending", kube.clone());
    assert!(
        eventually(T, || async {
            pods(&kube, "app=sim-llm")
                .await
                .iter()
                .filter(|p| is_ready(p))
                .count()
                == 2
        })
        .await
    );
    cordon(&kube, "sim-node-0", true).await;
    let p = drain("sim-node-1", Duration::from_secs(20));
    let undo = node_drain::prepare(&p, &ctx, &kube).await.unwrap();
    node_drain::inject(&p, &ctx, &kube, &undo).await.unwrap();
    assert_eq!(events(&control, "pod_unschedulable").len(), 1);
    // Several restart delays (0.6 s each): the worker stays down, its pod Pending, no node.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w1 = pods(&kube, "worker=1").await;
    assert_eq!(w1.len(), 1);
    assert_eq!(
        w1[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(node_of(&w1[0]), None);
    assert_ne!(worker_state(&control, 1), WorkerState::Running);
    let held_since = control
        .events()
        .iter()
        .position(|e| e.kind == "pod_unschedulable")
        .unwrap();
    assert!(
        control.events()[held_since..]
            .iter()
            .all(|e| !(e.kind == "worker_started" && e.worker == Some(1))),
        "worker 1 started while its pod had no node"
    );

    // Uncordon (the restore): it is scheduled and its worker comes back.
    node_drain::restore(&p, &ctx, &kube, &undo).await.unwrap();
    assert!(
        eventually(T, || async {
            pods(&kube, "worker=1").await.iter().any(is_ready)
        })
        .await,
        "never came back after the uncordon"
    );
    assert_eq!(worker_state(&control, 1), WorkerState::Running);
    let now = pods(&kube, "worker=1").await;
    assert_eq!(
        node_of(&now[0]).as_deref(),
        Some("sim-node-1"),
        "node-0 is still cordoned"
    );
    let moved = events(&control, "pod_rescheduled");
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(
        moved[0].detail.contains("scheduled on sim-node-1"),
        "{moved:?}"
    );
    c.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Real kubectl.

fn kubectl_path() -> String {
    let path = std::env::var("FAULTLINE_KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let ok = Command::new(&path)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "kubectl ({path}) cannot be run: install it (scripts/test.sh does) or point FAULTLINE_KUBECTL at one"
    );
    path
}

async fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .await
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))
}

fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in:\n{table}"))
}

#[tokio::test]
async fn real_kubectl_sees_scheduling_disabled_and_drains_and_uncordons_the_sims_nodes() {
    let c = start(3).await;
    let kube = c.kube().await;
    let control = c.control();
    let kc = c.api.kubeconfig.clone();
    let cache = tempfile::tempdir().unwrap();
    let ctx = ctx("kubectl", kube.clone());

    let p = drain("sim-node-1", Duration::from_secs(20));
    let undo = node_drain::prepare(&p, &ctx, &kube).await.unwrap();
    node_drain::inject(&p, &ctx, &kube, &undo).await.unwrap();
    let table = kubectl(&kc, cache.path(), &["get", "nodes"]).await;
    assert!(
        row(&table, "sim-node-1").contains("Ready,SchedulingDisabled"),
        "{table}"
    );
    assert!(
        !row(&table, "sim-node-0").contains("SchedulingDisabled"),
        "{table}"
    );
    let wide = kubectl(&kc, cache.path(), &["get", "pods", "-o", "wide"]).await;
    assert!(
        !wide.contains("sim-node-1"),
        "a pod is still on the drained node:\n{wide}"
    );
    node_drain::restore(&p, &ctx, &kube, &undo).await.unwrap();
    let table = kubectl(&kc, cache.path(), &["get", "nodes"]).await;
    assert!(!table.contains("SchedulingDisabled"), "{table}");

    // kubectl's own drain: cordon, discovery of the Eviction API, evictions, waiting for the pod
    // to be gone.
    let before = events(&control, "pod_evicted").len();
    let on_node_0: Vec<Option<usize>> = {
        let api: Api<Pod> = Api::all(kube.client.clone());
        let list = api
            .list(&ListParams::default().fields("spec.nodeName=sim-node-0"))
            .await
            .unwrap();
        let mut w: Vec<Option<usize>> = list
            .items
            .iter()
            .map(|p| p.metadata.labels.as_ref().unwrap()["worker"].parse().ok())
            .collect();
        w.sort();
        w
    };
    assert!(!on_node_0.is_empty());
    let out = kubectl(
        &kc,
        cache.path(),
        &[
            "drain",
            "sim-node-0",
            "--ignore-daemonsets",
            "--timeout=30s",
        ],
    )
    .await;
    assert!(out.contains("node/sim-node-0 drained"), "{out}");
    assert!(out.contains("evicted"), "{out}");
    let table = kubectl(&kc, cache.path(), &["get", "nodes"]).await;
    assert!(
        row(&table, "sim-node-0").contains("SchedulingDisabled"),
        "{table}"
    );
    // Exactly the pods that were on the node were evicted (worker 1's replacement may have
    // landed there after the first drain).
    let evicted = events(&control, "pod_evicted");
    let mut workers: Vec<Option<usize>> = evicted[before..].iter().map(|e| e.worker).collect();
    workers.sort();
    assert_eq!(workers, on_node_0);
    assert!(
        evicted[before..]
            .iter()
            .all(|e| e.detail.contains("from sim-node-0"))
    );
    let w0 = pods(&kube, "worker=0").await;
    assert_ne!(node_of(&w0[0]).as_deref(), Some("sim-node-0"));
    let out = kubectl(&kc, cache.path(), &["uncordon", "sim-node-0"]).await;
    assert!(out.contains("node/sim-node-0 uncordoned"), "{out}");
    assert!(!cordoned(&node(&kube, "sim-node-0").await));
    let cordons: Vec<String> = events(&control, "node_cordoned")
        .into_iter()
        .map(|e| e.detail)
        .collect();
    assert_eq!(cordons, ["node sim-node-1", "node sim-node-0"]);
    c.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary: SIGKILL + recover, and the target-side deadline.

/// A standalone sim (its own process, so it outlives a killed `faultline inject`).
struct StandaloneSim {
    child: std::process::Child,
    kubeconfig: PathBuf,
    state: PathBuf,
}

impl StandaloneSim {
    fn start(dir: &Path) -> StandaloneSim {
        use std::io::BufRead;
        let kubeconfig = dir.join("sim-kubeconfig");
        let state = dir.join("sim-state");
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args([
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--preset",
                "small",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let _ = lines.next();
        std::thread::spawn(move || for _ in lines {});
        let t0 = Instant::now();
        while !kubeconfig.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(kubeconfig.exists(), "the sim wrote its kubeconfig");
        StandaloneSim {
            child,
            kubeconfig,
            state,
        }
    }

    /// The ground-truth events of `kind` so far.
    fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

impl Drop for StandaloneSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn is_cordoned(kubeconfig: &Path, name: &str) -> bool {
    let kube = KubeTarget::from_kubeconfig(kubeconfig, None).await.unwrap();
    cordoned(&node(&kube, name).await)
}

fn faultline(args: &[&str], kubeconfig: &Path, ledger: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--ledger")
        .arg(ledger)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn sigkill_of_faultline_inject_then_recover_uncordons_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let sim = StandaloneSim::start(dir.path());
    let ledger = dir.path().join("ledger.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "inject",
            "node-drain",
            "--set",
            "node=sim-node-0",
            "--for",
            "60s",
        ])
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig)
        .arg("--ledger")
        .arg(&ledger)
        .env("FAULTLINE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(T, || async {
            is_cordoned(&sim.kubeconfig, "sim-node-0").await
                && !sim.events("pod_evicted").is_empty()
        })
        .await,
        "faultline inject never cordoned and drained the node"
    );
    child.kill().unwrap(); // SIGKILL: no restore runs
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        is_cordoned(&sim.kubeconfig, "sim-node-0").await,
        "left behind by the kill"
    );

    let out = faultline(&["recover"], &sim.kubeconfig, &ledger);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !is_cordoned(&sim.kubeconfig, "sim-node-0").await,
        "recover uncordoned it"
    );
    assert_eq!(sim.events("node_uncordoned").len(), 1);
    let status = faultline(&["status"], &sim.kubeconfig, &ledger);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        !text.contains("sim-node-0"),
        "still listed after recover:\n{text}"
    );
}

#[tokio::test]
async fn an_expired_drain_is_listed_and_undone_by_recover_with_a_kubeconfig_and_no_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let sim = StandaloneSim::start(dir.path());
    let ledger = dir.path().join("ledger.jsonl");
    // Without --for the fault stays, with its dead-man deadline on the node 2 s out.
    let out = faultline(
        &[
            "inject",
            "node-drain",
            "--set",
            "node=sim-node-0",
            "--max",
            "2s",
        ],
        &sim.kubeconfig,
        &ledger,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_cordoned(&sim.kubeconfig, "sim-node-0").await);
    let kube = KubeTarget::from_kubeconfig(&sim.kubeconfig, None)
        .await
        .unwrap();
    let deadline = annotations(&node(&kube, "sim-node-0").await)
        .get("faultline.dev/deadline")
        .cloned()
        .expect("the deadline annotation");
    assert!(deadline.ends_with('Z'), "{deadline}");

    let status = faultline(&["status"], &sim.kubeconfig, &ledger);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("sim-node-0"),
        "status lists the marked node:\n{text}"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    // The ledger is lost: only the node's own mark is left to go by.
    let out = faultline(
        &["recover"],
        &sim.kubeconfig,
        &dir.path().join("empty-ledger.jsonl"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !is_cordoned(&sim.kubeconfig, "sim-node-0").await,
        "the sweep uncordoned it"
    );
    let n = node(&kube, "sim-node-0").await;
    assert!(!annotations(&n).contains_key(DRAIN));
    assert_eq!(sim.events("node_uncordoned").len(), 1);
}

#[tokio::test]
async fn node_of_drains_the_node_the_selected_pods_run_on_and_refuses_a_spread_selector() {
    let c = start(3).await;
    let kube = c.kube().await;
    let ctx = ctx("node-of", kube.clone());
    let p = Params {
        node: None,
        node_of: Some("app=sim-llm,worker=2".into()),
        ..drain("unused", Duration::from_secs(20))
    };
    assert!(p.problems().is_empty(), "{:?}", p.problems());
    let undo = node_drain::prepare(&p, &ctx, &kube).await.unwrap();
    assert_eq!(undo.node, "sim-node-2");
    node_drain::inject(&p, &ctx, &kube, &undo).await.unwrap();
    assert_eq!(
        node_drain::verify(&p, &ctx, &kube, &undo).await.unwrap(),
        Verification::Verified
    );
    node_drain::restore(&p, &ctx, &kube, &undo).await.unwrap();
    assert!(!cordoned(&node(&kube, "sim-node-2").await));

    let spread = Params {
        node_of: Some("app=sim-llm".into()),
        ..p.clone()
    };
    let err = node_drain::prepare(&spread, &ctx, &kube)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        // Worker 2's replacement went to the least busy node, sim-node-0 (lowest on a tie).
        err.contains("run on 2 nodes (sim-node-0, sim-node-1); name one with `node`"),
        "{err}"
    );
    let none = Params {
        node_of: Some("app=nothing".into()),
        ..p
    };
    let err = node_drain::prepare(&none, &ctx, &kube)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("matches no scheduled pods"), "{err}");
    c.stop().await;
}
