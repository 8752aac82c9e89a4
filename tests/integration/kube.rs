//! The sim's Kubernetes API through real clients (the `kube` crate, `kubectl`), and the
//! `pod-kill` and `network-partition` fault kinds against it. Real sockets on 127.0.0.1, the sim
//! in-process with the fast `small` preset (a restart takes 0.6 s).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use faultline::fault::exec::Hosts;
use faultline::fault::kube_target::KubeTarget;
use faultline::fault::network_partition::{self, Direction};
use faultline::fault::pod_kill::{self, KillMode};
use faultline::fault::{FaultContext, FaultSpec, Verification};
use faultline::sim::kube::KubeApiHandle;
use faultline::sim::{self, SimConfig, SimControl, SimHandle};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};

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

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A sim with `workers` workers and its Kubernetes API.
async fn start(workers: u32) -> Cluster {
    let mut config = SimConfig::preset("small").unwrap();
    config.gpus = workers;
    config.faultline_bin = Some(PathBuf::from(env!("CARGO_BIN_EXE_faultline")));
    let sim = sim::start(config, loopback()).await.expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    let api = sim::kube::serve(sim.control(), loopback(), &dir.path().join("kubeconfig"))
        .await
        .expect("kube api starts");
    Cluster {
        sim,
        api,
        _dir: dir,
    }
}

fn ctx(test: &str, deadline_in: chrono::Duration) -> FaultContext {
    FaultContext::new(
        &format!("{test}-{}", std::process::id()),
        "f1",
        Arc::new(Hosts::default()),
        Utc::now() + deadline_in,
    )
}

/// An HTTPS client trusting the sim API's CA, sending `token` as the bearer token.
fn api_client(api: &KubeApiHandle, token: Option<&str>) -> reqwest::Client {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    api.ca.write_cert(&ca).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    faultline::tls::http_client_builder(&faultline::tls::TlsOptions {
        ca_cert: Some(ca),
        ..Default::default()
    })
    .unwrap()
    .default_headers(headers)
    .build()
    .unwrap()
}

/// Polls `f` until it is true or `within` passes.
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

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

async fn pods(kube: &KubeTarget, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), "default");
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
}

/// The index of the first event of `kind` for `worker` at or after `from`.
fn event_at(control: &SimControl, kind: &str, worker: usize, from: usize) -> Option<usize> {
    control
        .events()
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| e.kind == kind && e.worker == Some(worker))
        .map(|(i, _)| i)
}

#[tokio::test]
async fn kube_crate_lists_pods_by_label_and_a_deleted_pod_is_replaced_by_a_new_ready_one() {
    let c = start(2).await;
    let kube = c.kube().await;
    assert_eq!(kube.namespace, "default");
    assert_eq!(pods(&kube, "app=sim-llm").await.len(), 2);
    assert_eq!(pods(&kube, "app=sim-llm,role=worker").await.len(), 2);
    assert_eq!(pods(&kube, "worker in (0,1),gpu!=x").await.len(), 2);
    assert_eq!(pods(&kube, "!worker").await.len(), 0);
    let zero = pods(&kube, "worker=0").await;
    assert_eq!(zero.len(), 1);
    let old = &zero[0];
    assert!(name(old).starts_with("sim-llm-0-"), "{}", name(old));
    assert!(faultline::fault::kube_target::is_ready(old));
    assert_eq!(
        old.status.as_ref().unwrap().pod_ip.as_deref(),
        Some("127.0.0.1")
    );

    let api: Api<Pod> = Api::namespaced(kube.client.clone(), "default");
    let err = api.get("nosuch").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.is_not_found()),
        "{err}"
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    api.delete(&name(old), &dp).await.expect("delete pod");

    let old_name = name(old);
    let replaced = eventually(T, || async {
        let now = pods(&kube, "worker=0").await;
        now.len() == 1
            && name(&now[0]) != old_name
            && faultline::fault::kube_target::is_ready(&now[0])
    })
    .await;
    assert!(replaced, "no Ready replacement for {old_name}");
    let new = &pods(&kube, "worker=0").await[0];
    assert_ne!(new.metadata.uid, old.metadata.uid);
    let rv = |p: &Pod| -> u64 {
        p.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(rv(new) > rv(old));

    let control = c.control();
    let deleted = event_at(&control, "pod_deleted", 0, 0).expect("pod_deleted");
    let failed = event_at(&control, "worker_failed", 0, deleted).expect("worker_failed after");
    event_at(&control, "pod_ready", 0, failed).expect("pod_ready after worker_failed");
    c.stop().await;
}

#[tokio::test]
async fn pod_kill_deletes_the_recorded_victim_and_wait_ready_returns_once_it_is_replaced() {
    let c = start(2).await;
    let kube = c.kube().await;
    let ctx = ctx("pod-kill", chrono::Duration::seconds(60));

    let none = pod_kill::Params {
        namespace: None,
        selector: "app=nope".into(),
        all_pods: false,
        mode: KillMode::One,
        grace_period: None,
    };
    let err = pod_kill::preflight(&none, &ctx, &kube).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("\"app=nope\"") && msg.contains("\"default\""),
        "{msg}"
    );

    let p = pod_kill::Params {
        namespace: None,
        selector: "app=sim-llm".into(),
        all_pods: false,
        mode: KillMode::One,
        grace_period: Some(Duration::ZERO),
    };
    pod_kill::preflight(&p, &ctx, &kube)
        .await
        .expect("preflight");
    assert_eq!(
        pods(&kube, "app=sim-llm").await.len(),
        2,
        "dry run deleted nothing"
    );
    let undo = pod_kill::prepare(&p, &ctx, &kube).await.expect("prepare");
    assert_eq!((undo.matched, undo.ready_before), (2, 2));
    assert_eq!(undo.victims.len(), 1);
    let victim = undo.victims[0].clone();
    let before = pods(&kube, "app=sim-llm").await;
    assert!(
        before
            .iter()
            .any(|p| name(p) == victim.name && p.metadata.uid.as_deref() == Some(&victim.uid))
    );
    // The undo data survives the ledger's JSON round trip.
    let undo: pod_kill::Undo =
        serde_json::from_value(serde_json::to_value(&undo).unwrap()).unwrap();

    let t0 = Utc::now();
    pod_kill::inject(&p, &ctx, &kube, &undo)
        .await
        .expect("inject");
    assert_eq!(
        pod_kill::verify(&p, &ctx, &kube, &undo)
            .await
            .expect("verify"),
        Verification::Verified
    );
    pod_kill::restore(&p, &ctx, &kube, &undo)
        .await
        .expect("restore is a no-op");
    let ready_at = pod_kill::wait_recovered(&kube, &undo, T)
        .await
        .expect("the replacement becomes Ready");
    assert!(ready_at > t0);
    let after = pods(&kube, "app=sim-llm").await;
    assert_eq!(
        after
            .iter()
            .filter(|p| faultline::fault::kube_target::is_ready(p))
            .count(),
        2
    );
    assert!(
        after
            .iter()
            .all(|p| p.metadata.uid.as_deref() != Some(&victim.uid))
    );
    let worker: usize = victim.name["sim-llm-".len()..]
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let control = c.control();
    let deleted = event_at(&control, "pod_deleted", worker, 0).expect("pod_deleted");
    event_at(&control, "pod_ready", worker, deleted).expect("pod_ready");

    // A verify against a victim that is still there fails.
    let bogus = pod_kill::Undo {
        victims: vec![pod_kill::Victim {
            name: name(&after[0]),
            uid: after[0].metadata.uid.clone().unwrap(),
        }],
        ..undo.clone()
    };
    assert!(pod_kill::verify(&p, &ctx, &kube, &bogus).await.is_err());
    // Nothing is Ready enough within a short timeout when asking for more pods than exist.
    let err = pod_kill::wait_ready(
        &kube,
        "default",
        "app=sim-llm",
        3,
        &[],
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("only 2 of 3"), "{err}");
    c.stop().await;
}

/// A short completion through the sim's router; true when it answered 200 in time.
async fn completes(url: &str) -> bool {
    let client = faultline::tls::http_client_builder(&Default::default())
        .unwrap()
        .build()
        .unwrap();
    let body = serde_json::json!({"model": "sim-small", "prompt": "hi", "max_tokens": 2});
    matches!(
        client
            .post(format!("{url}/v1/completions"))
            .json(&body)
            .timeout(Duration::from_secs(3))
            .send()
            .await,
        Ok(r) if r.status().is_success()
    )
}

#[tokio::test]
async fn network_partition_cuts_the_worker_off_and_restore_deletes_exactly_its_policy() {
    let c = start(2).await;
    let kube = c.kube().await;
    let control = c.control();
    let ctx = ctx("partition", chrono::Duration::seconds(60));
    let p = network_partition::Params {
        namespace: None,
        selector: "app=sim-llm,worker=1".into(),
        all_pods: false,
        direction: Direction::Ingress,
    };
    let np_api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), "default");
    // Someone else's policy, selecting nothing of ours: it must survive the restore.
    let other: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "someone-elses"},
        "spec": {"podSelector": {"matchLabels": {"app": "other"}}, "policyTypes": ["Ingress"]},
    }))
    .unwrap();
    np_api.create(&Default::default(), &other).await.unwrap();

    network_partition::preflight(&p, &ctx, &kube)
        .await
        .expect("preflight");
    let undo = network_partition::prepare(&p, &ctx, &kube)
        .await
        .expect("prepare");
    assert_eq!(
        undo.name,
        format!("faultline-partition-{}-f1", std::process::id())
    );
    assert_eq!(
        np_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    network_partition::inject(&p, &ctx, &kube, &undo)
        .await
        .expect("inject");
    // A retried inject of the same fault is fine.
    network_partition::inject(&p, &ctx, &kube, &undo)
        .await
        .expect("inject again");
    let ours = np_api
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=faultline"))
        .await
        .unwrap()
        .items;
    assert_eq!(ours.len(), 1);
    let meta = &ours[0].metadata;
    assert_eq!(meta.name.as_deref(), Some(undo.name.as_str()));
    let labels = meta.labels.clone().unwrap();
    assert_eq!(labels[network_partition::RUN_ID], ctx.run_id);
    assert_eq!(labels[network_partition::FAULT_ID], "f1");
    let deadline = &meta.annotations.as_ref().unwrap()[network_partition::DEADLINE];
    assert!(
        chrono::DateTime::parse_from_rfc3339(deadline).is_ok(),
        "{deadline}"
    );

    assert_eq!(
        network_partition::verify(&p, &ctx, &kube, &undo)
            .await
            .expect("verify"),
        Verification::Verified
    );
    let w1 = |control: &SimControl| {
        control
            .workers()
            .into_iter()
            .find(|w| w.index == 1)
            .unwrap()
    };
    assert!(w1(&control).cut_off);
    assert!(!control.workers()[0].cut_off);
    assert!(
        eventually(T, || async { !w1(&control).routed }).await,
        "the router never took the cut-off worker out"
    );
    // Routed around: every request lands on worker 0 and completes.
    for _ in 0..6 {
        assert!(
            completes(&c.sim.url()).await,
            "a request failed or hung after the removal"
        );
    }

    // The dead-man switch: not expired now, expired after the deadline.
    let expired = FaultSpec::expired_marks(&kube, None, Utc::now())
        .await
        .unwrap();
    assert!(expired.is_empty(), "{expired:?}");
    let later = Utc::now() + chrono::Duration::seconds(120);
    let expired = FaultSpec::expired_marks(&kube, None, later).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].name, undo.name);
    assert_eq!(expired[0].namespace.as_deref(), Some("default"));
    assert_eq!(expired[0].kind, "network-partition");

    network_partition::restore(&p, &ctx, &kube, &undo)
        .await
        .expect("restore");
    network_partition::restore(&p, &ctx, &kube, &undo)
        .await
        .expect("restore twice");
    let left: Vec<String> = np_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(left, vec!["someone-elses".to_string()]);
    assert!(!w1(&control).cut_off);
    assert!(
        eventually(T, || async { w1(&control).routed }).await,
        "the worker was never routed again"
    );
    assert!(
        network_partition::verify(&p, &ctx, &kube, &undo)
            .await
            .is_err()
    );
    let applied = event_at(&control, "policy_applied", 1, 0).expect("policy_applied");
    event_at(&control, "policy_removed", 1, applied).expect("policy_removed");
    c.stop().await;
}

#[tokio::test]
async fn network_policies_are_validated_and_missing_ones_are_not_found() {
    let c = start(1).await;
    let kube = c.kube().await;
    let api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), "default");
    let bad: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "Not_A_Name"}, "spec": {"podSelector": {}},
    }))
    .unwrap();
    let err = api.create(&Default::default(), &bad).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422),
        "{err}"
    );
    let ok: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p1", "labels": {"team": "sre"}}, "spec": {"podSelector": {}},
    }))
    .unwrap();
    api.create(&Default::default(), &ok).await.unwrap();
    let err = api.create(&Default::default(), &ok).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.is_already_exists()),
        "{err}"
    );
    assert_eq!(
        api.list(&ListParams::default().labels("team=sre"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        api.list(&ListParams::default().labels("team=dev"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    // An empty podSelector selects every pod: the only worker is cut off.
    assert!(eventually(T, || async { c.control().workers()[0].cut_off }).await);
    api.delete("p1", &DeleteParams::default()).await.unwrap();
    assert!(!c.control().workers()[0].cut_off);
    let err = api
        .delete("p1", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.is_not_found() && s.message.contains("\"p1\"")),
        "{err}"
    );
    c.stop().await;
}

/// The `kubectl` to run: `$FAULTLINE_KUBECTL`, else `kubectl` on the PATH. Missing is a failure.
fn kubectl_path() -> String {
    let path = std::env::var("FAULTLINE_KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let ok = std::process::Command::new(&path)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "kubectl ({path}) cannot be run: install it (Debian: apt-get install kubernetes-client; \
         scripts/test.sh does) or point FAULTLINE_KUBECTL at one"
    );
    path
}

struct Kubectl {
    path: String,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    /// Runs kubectl; panics with its output when it fails.
    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new(&self.path)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
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
        stdout
    }
}

#[tokio::test]
async fn real_kubectl_gets_deletes_and_creates_through_the_sim_api() {
    let path = kubectl_path();
    let c = start(2).await;
    let kube = c.kube().await;
    let control = c.control();
    let k = Kubectl {
        path,
        kubeconfig: c.api.kubeconfig.clone(),
        cache: tempfile::tempdir().unwrap(),
    };

    let table = k.run(&["get", "pods"]).await;
    let names: Vec<String> = pods(&kube, "app=sim-llm").await.iter().map(name).collect();
    assert_eq!(names.len(), 2);
    for n in &names {
        assert!(table.contains(n.as_str()), "{n} missing from:\n{table}");
    }
    assert!(table.contains("READY") && table.contains("1/1"), "{table}");

    let json: serde_json::Value = serde_json::from_str(
        &k.run(&["get", "pods", "-l", "worker=0", "-o", "json"])
            .await,
    )
    .expect("kubectl -o json prints JSON");
    let items = json["items"].as_array().expect("a list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["labels"]["worker"], "0");
    let victim = items[0]["metadata"]["name"].as_str().unwrap().to_string();

    // kubectl waits until the pod is gone (a watch on its name).
    let out = k.run(&["delete", "pod", &victim]).await;
    assert!(out.contains(&victim), "{out}");
    let now: Vec<String> = pods(&kube, "worker=0").await.iter().map(name).collect();
    assert!(!now.contains(&victim), "{victim} still listed: {now:?}");
    assert!(
        eventually(T, || async {
            pods(&kube, "worker=0")
                .await
                .iter()
                .any(faultline::fault::kube_target::is_ready)
        })
        .await,
        "no replacement became Ready"
    );

    let policy = c._dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-worker-1
  labels:
    team: sre
spec:
  podSelector:
    matchLabels:
      worker: \"1\"
  policyTypes: [Ingress]
",
    )
    .unwrap();
    k.run(&["create", "-f", policy.to_str().unwrap()]).await;
    let w1 = |control: &SimControl| {
        control
            .workers()
            .into_iter()
            .find(|w| w.index == 1)
            .unwrap()
    };
    assert!(w1(&control).cut_off, "the policy did not cut worker 1 off");
    assert!(!control.workers()[0].cut_off);
    let list = k.run(&["get", "networkpolicies"]).await;
    assert!(
        list.contains("deny-worker-1") && list.contains("worker=1"),
        "{list}"
    );
    let yaml = k
        .run(&[
            "get",
            "netpol",
            "deny-worker-1",
            "-o",
            "jsonpath={.metadata.labels.team}",
        ])
        .await;
    assert_eq!(yaml, "sre");

    k.run(&["delete", "networkpolicy", "deny-worker-1"]).await;
    assert!(
        !w1(&control).cut_off,
        "deleting the policy did not restore worker 1"
    );
    let np_api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), "default");
    assert!(np_api.get_opt("deny-worker-1").await.unwrap().is_none());
    c.stop().await;
}

#[tokio::test]
async fn raw_watch_streams_a_deletion_in_resource_version_order_and_errors_are_status_objects() {
    let c = start(1).await;
    let http = api_client(&c.api, Some(c.api.admin_token()));
    let base = format!("{}/api/v1/namespaces/default/pods", c.api.url());

    let r = http.get(format!("{base}/nosuch")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );
    let r = http
        .get(format!("{base}?labelSelector=a%20in%20("))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let list: serde_json::Value = http.get(&base).send().await.unwrap().json().await.unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = list["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = http
        .get(format!(
            "{base}?watch=1&resourceVersion={rv}&timeoutSeconds=15"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let deleted: serde_json::Value = http
        .delete(format!("{base}/{victim}?gracePeriodSeconds=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["kind"], "Pod");
    assert!(
        deleted["metadata"]["deletionTimestamp"].is_string(),
        "{deleted}"
    );

    // (type, name, resourceVersion) until the replacement is Ready.
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    let mut buf = Vec::new();
    let read = async {
        while let Some(chunk) = watch.chunk().await.unwrap() {
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let ev: serde_json::Value = serde_json::from_slice(&line).unwrap();
                let o = &ev["object"];
                let ready = o["status"]["containerStatuses"][0]["ready"] == true;
                seen.push((
                    ev["type"].as_str().unwrap().to_string(),
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap(),
                ));
                if ready && seen.last().unwrap().1 != victim {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(T, read)
        .await
        .expect("the replacement became Ready on the watch");
    let kinds: Vec<(&str, bool)> = seen
        .iter()
        .map(|(t, n, _)| (t.as_str(), *n == victim))
        .collect();
    let pos = |k: (&str, bool)| kinds.iter().position(|x| *x == k);
    let (m, d, a) = (
        pos(("MODIFIED", true)).expect("MODIFIED (terminating)"),
        pos(("DELETED", true)).expect("DELETED"),
        pos(("ADDED", false)).expect("ADDED replacement"),
    );
    assert!(m < d && d < a, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].2 < w[1].2),
        "resource versions not increasing: {seen:?}"
    );
    c.stop().await;
}
