//! Kubernetes as real clusters are: the sim's API over HTTPS with a token, a client
//! certificate or an exec plugin; `proxy-url`; context selection; in-cluster mode; RBAC (the
//! preflight, the shipped `deploy/rbac.yaml`, real `kubectl auth can-i`); a permanent restore
//! failure closed by `faultline ledger resolve`. Real sockets, real TLS, the real binary and the
//! real kubectl.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use faultline::fault::exec::Hosts;
use faultline::fault::kube_access;
use faultline::fault::kube_target::{KubeSource, KubeSpec, KubeTarget};
use faultline::fault::ledger::Ledger;
use faultline::fault::{FaultContext, FaultSpec, Verification};
use faultline::sim::kube::{KubeApiHandle, KubeApiOptions, Policy};
use faultline::sim::{self, SimConfig, SimHandle};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use serde_json::json;

const SA_USER: &str = "system:serviceaccount:default:faultline";
const RBAC_YAML: &str = include_str!("../../deploy/rbac.yaml");

struct Cluster {
    sim: SimHandle,
    api: KubeApiHandle,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn stop(self) {
        self.api.shutdown().await;
        self.sim.shutdown().await;
    }

    fn ca_path(&self) -> PathBuf {
        let p = self.dir.path().join("ca.pem");
        if !p.exists() {
            self.api.ca.write_cert(&p).unwrap();
        }
        p
    }

    /// A kubeconfig for this API with `cluster` and `user` lines (already indented 4 spaces).
    fn kubeconfig(&self, name: &str, cluster: &str, user: &str) -> PathBuf {
        write_kubeconfig(&self.dir.path().join(name), &self.api.url(), cluster, user)
    }

    fn ca_data_line(&self) -> String {
        format!(
            "    certificate-authority-data: {}\n",
            b64(&self.api.ca.cert_pem())
        )
    }

    /// A kubeconfig authenticating with `token`, trusting the CA by data.
    fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        self.kubeconfig(name, &self.ca_data_line(), &format!("    token: {token}\n"))
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn write_kubeconfig(path: &Path, server: &str, cluster: &str, user: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: {server}
{cluster}users:
- name: u
  user:
{user}contexts:
- name: ctx
  context:
    cluster: c
    user: u
    namespace: default
current-context: ctx
"
    );
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// The policy of `deploy/rbac.yaml` as it is, plus a token for its service account.
fn manifest_policy() -> Policy {
    let mut p = Policy::from_rbac_manifests(RBAC_YAML).expect("deploy/rbac.yaml parses");
    p.add_token("sa-token", SA_USER, &["system:serviceaccounts"]);
    p
}

async fn start(workers: u32, rbac: Option<Policy>) -> Cluster {
    let mut config = SimConfig::preset("small").unwrap();
    config.gpus = workers;
    config.faultline_bin = Some(PathBuf::from(env!("CARGO_BIN_EXE_faultline")));
    let loopback = "127.0.0.1:0".parse().unwrap();
    let sim = sim::start(config, loopback).await.expect("sim starts");
    let dir = tempfile::tempdir().unwrap();
    let api = sim::kube::serve_with(
        sim.control(),
        loopback,
        &dir.path().join("admin-kubeconfig"),
        KubeApiOptions { rbac },
    )
    .await
    .expect("kube api starts");
    Cluster { sim, api, dir }
}

fn ctx(run: &str, kube: KubeTarget) -> FaultContext {
    let mut c = FaultContext::new(
        &format!("{run}-{}", std::process::id()),
        "f1",
        Arc::new(Hosts::default()),
        Utc::now() + chrono::Duration::seconds(60),
    );
    c.kube = Some(kube);
    c
}

fn fault(v: serde_json::Value) -> FaultSpec {
    serde_json::from_value(v).unwrap()
}

async fn policy_names(kube: &KubeTarget) -> Vec<String> {
    let api: Api<NetworkPolicy> = Api::namespaced(kube.client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// The whole life cycle of pod-kill and network-partition through `kube`, after the RBAC
/// preflight: the pod is gone, the policy cut the worker off and is gone after restore.
async fn exercise(c: &Cluster, label: &str, kube: KubeTarget) {
    let admin = KubeTarget::from_kubeconfig(&c.api.kubeconfig, None)
        .await
        .unwrap();
    let kill = fault(json!({"kind": "pod-kill", "selector": "worker=0", "grace_period": "0s"}));
    let part =
        fault(json!({"kind": "network-partition", "selector": "worker=1", "direction": "ingress"}));
    let mut needs = kube_access::needs(&kill, &kube);
    needs.extend(kube_access::needs(&part, &kube));
    kube_access::check(&kube, &needs)
        .await
        .unwrap_or_else(|e| panic!("{label}: preflight: {e}"));

    let k = ctx(&format!("{label}-kill"), kube.clone());
    kill.preflight(&k).await.unwrap();
    let undo = kill.prepare(&k).await.unwrap();
    let victim = undo["victims"][0]["name"].as_str().unwrap().to_string();
    kill.inject(&k, &undo).await.unwrap();
    assert_eq!(
        kill.verify(&k, &undo).await.unwrap(),
        Verification::Verified,
        "{label}"
    );
    let pods: Api<Pod> = Api::namespaced(admin.client.clone(), "default");
    assert!(
        pods.get_opt(&victim)
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "{label}: {victim} still there"
    );

    let p = ctx(&format!("{label}-part"), kube.clone());
    part.preflight(&p).await.unwrap();
    let undo = part.prepare(&p).await.unwrap();
    let name = undo["name"].as_str().unwrap().to_string();
    part.inject(&p, &undo).await.unwrap();
    assert_eq!(
        part.verify(&p, &undo).await.unwrap(),
        Verification::Verified,
        "{label}"
    );
    assert!(
        policy_names(&admin).await.contains(&name),
        "{label}: {name} missing"
    );
    part.restore(&p, &undo).await.unwrap();
    assert!(
        !policy_names(&admin).await.contains(&name),
        "{label}: {name} left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_kill_and_partition_run_over_https_with_token_client_certificate_and_exec_plugin() {
    // deploy/rbac.yaml's Role, bound also to user alice (a client certificate) and group
    // exec-users (the exec plugin's token): the identity really comes from each form.
    let mut policy = Policy::from_rbac_manifests(&format!(
        "{RBAC_YAML}---
kind: RoleBinding
metadata: {{name: more, namespace: default}}
roleRef: {{kind: Role, name: faultline}}
subjects: [{{kind: User, name: alice}}, {{kind: Group, name: exec-users}}]
"
    ))
    .unwrap();
    policy.add_token("sa-token", SA_USER, &[]);
    policy.add_token("exec-token", "bob", &["exec-users"]);
    let c = start(2, Some(policy)).await;
    let dir = c.dir.path().to_path_buf();

    // Token, CA by file.
    let ca = c.ca_path();
    let token = c.kubeconfig(
        "token",
        &format!("    certificate-authority: {}\n", ca.display()),
        "    token: sa-token\n",
    );
    exercise(
        &c,
        "token",
        KubeTarget::from_kubeconfig(&token, None).await.unwrap(),
    )
    .await;

    // Client certificate and key as data; CN alice, O ops.
    let alice = c.api.ca.issue_client("alice", &["ops"]).unwrap();
    let cert = c.kubeconfig(
        "cert",
        &c.ca_data_line(),
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&alice.cert_pem),
            b64(&alice.key_pem)
        ),
    );
    exercise(
        &c,
        "cert",
        KubeTarget::from_kubeconfig(&cert, None).await.unwrap(),
    )
    .await;

    // Exec credential plugin, as `aws eks get-token` does: prints an ExecCredential.
    let calls = dir.join("plugin-calls");
    let plugin = dir.join("get-token.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho call >> '{}'\nprintf '%s\\n' '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"exec-token\"}}}}'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exec = c.kubeconfig(
        "exec",
        &c.ca_data_line(),
        &format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
            plugin.display()
        ),
    );
    exercise(
        &c,
        "exec",
        KubeTarget::from_kubeconfig(&exec, None).await.unwrap(),
    )
    .await;
    assert!(
        std::fs::read_to_string(&calls).unwrap().lines().count() >= 1,
        "the exec plugin ran"
    );
    c.stop().await;
}

/// Lists the pods through `kube`; the number of them, or the error's text.
async fn list_pods(kube: &KubeTarget) -> Result<usize, String> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .map_err(|e| faultline::fault::kube_target::explain(&e))
}

/// A CONNECT proxy on loopback; counts the tunnels it opened.
async fn connect_proxy() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let Some(target) = head
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split_whitespace().next())
                else {
                    let _ = client.write_all(b"HTTP/1.1 405 CONNECT only\r\n\r\n").await;
                    return;
                };
                // Loopback only.
                assert!(target.starts_with("127.0.0.1:"), "{target}");
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (url, tunnels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_insecure_skip_proxy_url_and_context_selection_work_and_an_unknown_ca_is_explained()
 {
    let c = start(1, None).await;
    let dir = c.dir.path().to_path_buf();
    let token_file = dir.join("token");
    // With a trailing newline, as `echo $TOKEN > token` writes it: kubectl trims it, so must we.
    std::fs::write(&token_file, format!("{}\n", c.api.admin_token())).unwrap();

    let tf = c.kubeconfig(
        "tokenfile",
        &c.ca_data_line(),
        &format!("    tokenFile: {}\n", token_file.display()),
    );
    assert_eq!(
        list_pods(&KubeTarget::from_kubeconfig(&tf, None).await.unwrap()).await,
        Ok(1)
    );

    let insecure = c.kubeconfig(
        "insecure",
        "    insecure-skip-tls-verify: true\n",
        &format!("    token: {}\n", c.api.admin_token()),
    );
    assert_eq!(
        list_pods(&KubeTarget::from_kubeconfig(&insecure, None).await.unwrap()).await,
        Ok(1)
    );

    let no_ca = c.kubeconfig(
        "no-ca",
        "",
        &format!("    token: {}\n", c.api.admin_token()),
    );
    let err = list_pods(&KubeTarget::from_kubeconfig(&no_ca, None).await.unwrap())
        .await
        .unwrap_err();
    assert!(err.contains("unknown CA"), "{err}");

    let wrong = c.token_kubeconfig("wrong", "not-the-token");
    let err = list_pods(&KubeTarget::from_kubeconfig(&wrong, None).await.unwrap())
        .await
        .unwrap_err();
    assert!(err.starts_with("401 Unauthorized"), "{err}");

    let (proxy, tunnels) = connect_proxy().await;
    let proxied = c.kubeconfig(
        "proxied",
        &format!("{}    proxy-url: {proxy}\n", c.ca_data_line()),
        &format!("    token: {}\n", c.api.admin_token()),
    );
    assert_eq!(
        list_pods(&KubeTarget::from_kubeconfig(&proxied, None).await.unwrap()).await,
        Ok(1)
    );
    assert!(
        tunnels.load(Ordering::SeqCst) >= 1,
        "no tunnel through the proxy"
    );

    // Two contexts; the current one points at a closed port. --context picks the other.
    let two = dir.join("two-contexts");
    std::fs::write(
        &two,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster: {{server: \"https://127.0.0.1:9\"}}
- name: sim
  cluster:
    server: {server}
{ca}users:
- name: admin
  user: {{token: {token}}}
contexts:
- name: dead
  context: {{cluster: dead, user: admin}}
- name: sim
  context: {{cluster: sim, user: admin, namespace: default}}
current-context: dead
",
            server = c.api.url(),
            ca = c.ca_data_line(),
            token = c.api.admin_token()
        ),
    )
    .unwrap();
    let chosen = KubeTarget::from_kubeconfig(&two, Some("sim"))
        .await
        .unwrap();
    assert_eq!(chosen.context, "sim");
    assert_eq!(chosen.server, c.api.url());
    assert_eq!(list_pods(&chosen).await, Ok(1));
    let current = KubeTarget::from_kubeconfig(&two, None).await.unwrap();
    assert_eq!(
        (current.context.as_str(), current.server.as_str()),
        ("dead", "https://127.0.0.1:9")
    );
    let described = chosen.describe();
    assert!(
        described.contains(&c.api.url()) && described.contains("context \"sim\""),
        "{described}"
    );
    assert!(!described.contains(c.api.admin_token()), "{described}");
    c.stop().await;
}

/// The run's and the sweep's preflight for a service account bound by `docs` (RBAC objects).
async fn preflights(docs: &[serde_json::Value]) -> (Result<(), String>, Result<(), String>) {
    let mut policy = Policy::from_rbac_objects(docs).unwrap();
    policy.add_token("sa-token", SA_USER, &[]);
    let c = start(1, Some(policy)).await;
    let kube = KubeTarget::from_kubeconfig(&c.token_kubeconfig("sa", "sa-token"), None)
        .await
        .unwrap();
    // Every registered kind that acts through the API: a new kind's verbs must be granted too.
    let needs: Vec<kube_access::Need> = FaultSpec::examples()
        .iter()
        .flat_map(|spec| kube_access::needs(spec, &kube))
        .collect();
    assert!(needs.len() >= 5, "{needs:?}");
    let run = kube_access::check(&kube, &needs)
        .await
        .map_err(|e| e.to_string());
    let sweep = kube_access::check(&kube, &kube_access::sweep_needs(None))
        .await
        .map_err(|e| e.to_string());
    c.stop().await;
    (run, sweep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rbac_yaml_grants_exactly_what_the_preflight_asks() {
    let docs = faultline::sim::kube::auth::yaml_documents(RBAC_YAML).unwrap();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );

    let (run, sweep) = preflights(&docs).await;
    assert_eq!(
        run,
        Ok(()),
        "the shipped manifest passes the run's preflight"
    );
    assert_eq!(sweep, Ok(()), "and the sweep's");

    // The Role alone (no ClusterRole) is enough for a run; the sweep then lacks its verbs.
    let role_only: Vec<serde_json::Value> = docs
        .iter()
        .filter(|d| !d["kind"].as_str().unwrap_or("").starts_with("Cluster"))
        .cloned()
        .collect();
    let (run, sweep) = preflights(&role_only).await;
    // The Role covers every namespaced kind; node-drain acts on a node (cluster-scoped) and on
    // its pods in every namespace, which only the ClusterRole `faultline-node-drain` grants:
    // without it the run is refused naming exactly those.
    let run = run.unwrap_err();
    for want in [
        "get nodes in all namespaces",
        "patch nodes in all namespaces",
        "create pods/eviction in all namespaces",
        "list poddisruptionbudgets.policy in all namespaces",
    ] {
        assert!(run.contains(want), "{want} not named in: {run}");
    }
    assert!(!run.contains(" in namespace "), "{run}");
    let sweep = sweep.unwrap_err();
    assert!(
        sweep.contains("list networkpolicies.networking.k8s.io in all namespaces"),
        "{sweep}"
    );

    // Every verb of the Role is needed: without it the preflight names exactly that verb.
    let role = role_only.iter().position(|d| d["kind"] == "Role").unwrap();
    let rules = role_only[role]["rules"].as_array().unwrap().clone();
    let mut checked = 0;
    for (ri, rule) in rules.iter().enumerate() {
        let resource = rule["resources"][0].as_str().unwrap();
        let group = rule["apiGroups"][0].as_str().unwrap();
        let gr = if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        };
        for verb in rule["verbs"].as_array().unwrap() {
            let verb = verb.as_str().unwrap();
            let mut docs = role_only.clone();
            docs[role]["rules"][ri]["verbs"]
                .as_array_mut()
                .unwrap()
                .retain(|v| v != verb);
            // (node-drain's cluster-scoped needs are missing too: named "in all namespaces".)
            let (run, _) = preflights(&docs).await;
            let err = run.expect_err(&format!("preflight passed without {verb} {gr}"));
            let want = format!("{verb} {gr} in namespace \"default\"");
            assert!(err.contains(&want), "missing {want} not named in: {err}");
            assert_eq!(err.matches(" in namespace ").count(), 1, "{err}");
            checked += 1;
        }
    }
    assert_eq!(
        checked, 7,
        "pods: list watch get delete; networkpolicies: create get delete"
    );
}

/// Runs the real binary; returns its output.
async fn faultline(args: &[&str], env: &[(&str, &Path)], home: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("FAULTLINE_SERVICEACCOUNT_DIR")
        .env("HOME", home)
        .env("FAULTLINE_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_is_inferred_recorded_in_the_ledger_and_restore_reconnects_the_same_way() {
    let c = start(2, Some(manifest_policy())).await;
    let dir = c.dir.path().to_path_buf();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "sa-token").unwrap();
    std::fs::write(sa.join("namespace"), "default").unwrap();
    c.api.ca.write_cert(&sa.join("ca.crt")).unwrap();
    let port = c.api.addr.port().to_string();
    let host = Path::new("127.0.0.1");
    let port_p = Path::new(&port);
    let pod_env: [(&str, &Path); 3] = [
        ("KUBERNETES_SERVICE_HOST", host),
        ("KUBERNETES_SERVICE_PORT", port_p),
        ("FAULTLINE_SERVICEACCOUNT_DIR", &sa),
    ];
    let ledger = dir.join("ledger.jsonl");
    let l = ledger.to_str().unwrap();

    // Nothing to go on: a clear refusal, exit 2, nothing acted on.
    let out = faultline(
        &[
            "inject",
            "network-partition",
            "--set",
            "selector=worker=0",
            "--ledger",
            l,
        ],
        &[],
        &home,
    )
    .await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no Kubernetes cluster found"), "{err}");

    // In a "pod": inferred in-cluster, said on stderr, recorded in the ledger.
    let out = faultline(
        &[
            "inject",
            "network-partition",
            "--set",
            "selector=worker=0",
            "--set",
            "direction=ingress",
            "--ledger",
            l,
        ],
        &pod_env,
        &home,
    )
    .await;
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("cluster https://127.0.0.1:{port}"))
            && err.contains("context \"in-cluster\"")
            && err.contains("in-cluster service account"),
        "{err}"
    );
    let fault_id = stdout.trim().to_string();
    let admin = KubeTarget::from_kubeconfig(&c.api.kubeconfig, None)
        .await
        .unwrap();
    assert_eq!(policy_names(&admin).await.len(), 1);
    let entries = Ledger::at(&ledger).outstanding().unwrap();
    assert_eq!(entries.len(), 1);
    let spec = entries[0].kube.clone().unwrap();
    assert_eq!(
        spec,
        KubeSpec {
            kubeconfig: sa.clone(),
            context: None,
            namespace: None,
            source: KubeSource::InCluster,
        }
    );
    let raw = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        !raw.contains("sa-token"),
        "a credential in the ledger: {raw}"
    );

    // restore reconnects in-cluster from the ledger alone.
    let out = faultline(&["restore", &fault_id, "--ledger", l], &pod_env, &home).await;
    let (_, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(policy_names(&admin).await.is_empty());
    assert!(Ledger::at(&ledger).outstanding().unwrap().is_empty());

    // The order when nothing is named: $KUBECONFIG (a list, merged; missing entries skipped),
    // then ~/.kube/config, then in-cluster. `status --namespace` shows which was chosen.
    let status = |env: Vec<(&'static str, PathBuf)>| {
        let home = home.clone();
        let l = l.to_string();
        async move {
            let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
            let out = faultline(
                &["status", "--namespace", "default", "--ledger", &l],
                &env,
                &home,
            )
            .await;
            let (stdout, err) = text(&out);
            assert!(out.status.success(), "{err}");
            (stdout, err)
        }
    };
    let mut with_pod: Vec<(&'static str, PathBuf)> =
        pod_env.iter().map(|(k, v)| (*k, v.to_path_buf())).collect();
    let list = std::env::join_paths([dir.join("missing"), c.api.kubeconfig.clone()]).unwrap();
    with_pod.push(("KUBECONFIG", PathBuf::from(list)));
    let (stdout, err) = status(with_pod.clone()).await;
    assert!(err.contains("from kubeconfig from $KUBECONFIG="), "{err}");
    assert!(err.contains("context \"faultline-sim\""), "{err}");
    assert!(stdout.contains("no faultline changes marked"), "{stdout}");
    with_pod.pop();
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    std::fs::copy(&c.api.kubeconfig, home.join(".kube/config")).unwrap();
    let (_, err) = status(with_pod.clone()).await;
    assert!(
        err.contains(&format!(
            "from kubeconfig {}",
            home.join(".kube/config").display()
        )),
        "{err}"
    );
    std::fs::remove_file(home.join(".kube/config")).unwrap();
    let (_, err) = status(with_pod).await;
    assert!(err.contains("in-cluster service account"), "{err}");

    // --kubeconfig on inject: a pod is killed through the named file, even in a "pod".
    let before = c.sim.control().events().len();
    let out = faultline(
        &[
            "inject",
            "pod-kill",
            "--set",
            "selector=worker=1",
            "--set",
            "grace_period=0s",
            "--kubeconfig",
            c.api.kubeconfig.to_str().unwrap(),
            "--namespace",
            "default",
            "--ledger",
            l,
        ],
        &pod_env,
        &home,
    )
    .await;
    let (_, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("(named explicitly)"), "{err}");
    assert!(
        c.sim.control().events()[before..]
            .iter()
            .any(|e| e.kind == "pod_deleted" && e.worker == Some(1)),
        "no pod of worker 1 deleted"
    );
    c.stop().await;
}

/// A sim in its own process with `--kube-rbac FILE`; its URL and admin kubeconfig.
struct StandaloneSim {
    child: std::process::Child,
    url: String,
    kubeconfig: PathBuf,
}

impl StandaloneSim {
    fn start(dir: &Path, rbac: &Path) -> StandaloneSim {
        use std::io::BufRead;
        let kubeconfig = dir.join("sim-kubeconfig");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["sim", "--listen", "127.0.0.1:0", "--preset", "small"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--kube-rbac")
            .arg(rbac)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.strip_prefix("listening on ").unwrap().to_string();
        std::thread::spawn(move || for _ in lines {});
        let start = Instant::now();
        while !kubeconfig.exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "no kubeconfig");
            std::thread::sleep(Duration::from_millis(50));
        }
        StandaloneSim {
            child,
            url,
            kubeconfig,
        }
    }

    /// Its kubeconfig with `token` instead of the admin's.
    fn kubeconfig_with_token(&self, path: &Path, token: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let swapped: Vec<String> = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("token:") {
                    format!("    token: {token}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(path, swapped.join("\n") + "\n").unwrap();
        path.to_path_buf()
    }
}

impl Drop for StandaloneSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LIMITED_POLICY: &str = "users:
  - name: limited
    token: limited-token
    rules:
      - {apiGroups: [\"\"], resources: [pods], verbs: [list, watch, get, delete], namespaces: [default]}
      - {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [create, get, list], namespaces: [default]}
";

fn experiment(dir: &Path, url: &str, kubeconfig: &Path, faults: &str) -> PathBuf {
    let p = dir.join("exp.yaml");
    std::fs::write(
        &p,
        format!(
            r#"name: rbac
target:
  endpoint: {url}
  model: sim-small
  api: completions
  timeout: 2s
kubernetes:
  kubeconfig: "{kc}"
  namespace: default
load:
  rate: 2
  arrival: constant
  workload: fixed:16:2
  duration: 4s
warmup: 1s
{faults}"#,
            kc = kubeconfig.display()
        ),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_preflight_stops_on_401_and_403_with_one_message_naming_the_verb() {
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(&rbac, LIMITED_POLICY).unwrap();
    let sim = StandaloneSim::start(dir.path(), &rbac);
    let faults = "faults:
  - id: cut
    fault: {kind: network-partition, selector: \"worker=0\", direction: ingress}
    at: 2s
    duration: 1s
";
    let ledger = dir.path().join("ledger.jsonl");
    let home = dir.path();
    let run = |kc: PathBuf| {
        let exp = experiment(dir.path(), &sim.url, &kc, faults);
        let out = dir.path().join("out");
        let ledger = ledger.clone();
        async move {
            let started = Instant::now();
            let o = faultline(
                &[
                    "run",
                    exp.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--ledger",
                    ledger.to_str().unwrap(),
                ],
                &[],
                home,
            )
            .await;
            (o, started.elapsed())
        }
    };

    let limited = sim.kubeconfig_with_token(&dir.path().join("limited"), "limited-token");
    // `plan` says which cluster, from where, touching nothing.
    let exp = experiment(dir.path(), &sim.url, &limited, faults);
    let out = faultline(&["plan", exp.to_str().unwrap()], &[], home).await;
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let api_url = std::fs::read_to_string(&sim.kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .unwrap();
    assert!(
        stdout.contains(&format!(
            "kubernetes: cluster {api_url} (context \"faultline-sim\", namespace \"default\") from kubeconfig {}",
            limited.display()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("limited-token"), "{stdout}");
    let (out, took) = run(limited).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("delete networkpolicies.networking.k8s.io in namespace \"default\""),
        "{err}"
    );
    assert!(!err.contains("create networkpolicies"), "{err}");
    // The run header names the cluster before anything else happens.
    assert!(
        err.starts_with(&format!(
            "kubernetes: cluster {api_url} (context \"faultline-sim\""
        )),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert_eq!(err.matches("delete networkpolicies").count(), 1, "{err}");
    assert!(took < Duration::from_secs(4), "the load ran: {took:?}");
    assert!(Ledger::at(&ledger).outstanding().unwrap().is_empty());

    let wrong = sim.kubeconfig_with_token(&dir.path().join("wrong"), "no-such-token");
    let (out, _) = run(wrong).await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert_eq!(err.matches("Unauthorized").count(), 1, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_restore_is_permanent_and_ledger_resolve_lets_the_next_run_start() {
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(&rbac, LIMITED_POLICY).unwrap();
    let sim = StandaloneSim::start(dir.path(), &rbac);
    let home = dir.path();
    let ledger = dir.path().join("ledger.jsonl");
    let l = ledger.to_str().unwrap();
    let admin = sim.kubeconfig.to_str().unwrap().to_string();
    let limited = sim.kubeconfig_with_token(&dir.path().join("limited"), "limited-token");

    let out = faultline(
        &[
            "inject",
            "network-partition",
            "--set",
            "selector=worker=0",
            "--kubeconfig",
            &admin,
            "--ledger",
            l,
        ],
        &[],
        home,
    )
    .await;
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let id = stdout.trim().to_string();

    // Restoring as a user who may not delete: reported once as permanent, not retried.
    let started = Instant::now();
    let out = faultline(
        &[
            "restore",
            &id,
            "--kubeconfig",
            limited.to_str().unwrap(),
            "--ledger",
            l,
        ],
        &[],
        home,
    )
    .await;
    let took = started.elapsed();
    let (stdout, err) = text(&out);
    let all = format!("{stdout}{err}");
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("User \"limited\" cannot delete resource \"networkpolicies\" in API group \"networking.k8s.io\" in the namespace \"default\""),
        "{all}"
    );
    assert!(all.contains("permanent"), "{all}");
    assert_eq!(all.matches("is forbidden").count(), 1, "{all}");
    assert!(
        took < Duration::from_secs(3),
        "retried with backoff: {took:?}"
    );
    assert_eq!(Ledger::at(&ledger).outstanding().unwrap().len(), 1);

    // The next run is refused while the entry is open.
    let admin_path = PathBuf::from(&admin);
    let exp = experiment(dir.path(), &sim.url, &admin_path, "faults: []\n");
    let run = || {
        let exp = exp.clone();
        let out_dir = dir.path().join(format!("out-{}", rand_suffix()));
        async move {
            faultline(
                &[
                    "run",
                    exp.to_str().unwrap(),
                    "--out",
                    out_dir.to_str().unwrap(),
                    "--ledger",
                    l,
                ],
                &[],
                home,
            )
            .await
        }
    };
    let out = run().await;
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ledger resolve"), "{err}");

    // The operator deletes it by hand and closes the entry.
    let k = KubeTarget::from_kubeconfig(&admin_path, None)
        .await
        .unwrap();
    let names = policy_names(&k).await;
    assert_eq!(names.len(), 1);
    let api: Api<NetworkPolicy> = Api::namespaced(k.client.clone(), "default");
    api.delete(&names[0], &Default::default()).await.unwrap();
    let out = faultline(
        &[
            "ledger",
            "resolve",
            &id,
            "--reason",
            "deleted by hand with kubectl",
            "--ledger",
            l,
        ],
        &[],
        home,
    )
    .await;
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(stdout.contains("resolved"), "{stdout}");
    let out = faultline(&["status", "--ledger", l], &[], home).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("RESOLVED by hand by ") && stdout.contains("deleted by hand with kubectl"),
        "{stdout}"
    );
    assert!(!stdout.contains("no faults in effect") || stdout.contains("RESOLVED"));
    let raw = std::fs::read_to_string(&ledger).unwrap();
    let last: serde_json::Value = serde_json::from_str(raw.lines().last().unwrap()).unwrap();
    assert_eq!(last["record"], "resolved");
    assert_eq!(last["reason"], "deleted by hand with kubectl");
    assert!(last["by"].as_str().unwrap().contains('@'), "{last}");

    let out = run().await;
    let (_, err) = text(&out);
    assert!(!err.contains("never restored"), "still refused: {err}");
    assert_ne!(out.status.code(), Some(2), "{err}");
}

fn rand_suffix() -> u32 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst) as u32
}

/// The `kubectl` to run: `$FAULTLINE_KUBECTL`, else `kubectl` on the PATH.
fn kubectl_path() -> String {
    std::env::var("FAULTLINE_KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

async fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .await
        .expect("kubectl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_auth_can_i_get_and_forbidden_against_the_sim() {
    let c = start(2, Some(Policy::parse(LIMITED_POLICY).unwrap())).await;
    let cache = c.dir.path().join("cache");
    let limited = c.token_kubeconfig("limited", "limited-token");

    for (verb, resource, answer, code) in [
        ("delete", "pods", "yes", 0),
        ("create", "networkpolicies", "yes", 0),
        ("delete", "networkpolicies", "no", 1),
        ("list", "secrets", "no", 1),
    ] {
        let out = kubectl(&limited, &cache, &["auth", "can-i", verb, resource]).await;
        let (stdout, err) = text(&out);
        assert_eq!(stdout.trim(), answer, "can-i {verb} {resource}: {err}");
        assert_eq!(out.status.code(), Some(code), "{err}");
    }
    let out = kubectl(
        &limited,
        &cache,
        &["auth", "can-i", "list", "pods", "-n", "prod"],
    )
    .await;
    assert_eq!(text(&out).0.trim(), "no");

    let out = kubectl(&limited, &cache, &["get", "pods"]).await;
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout.matches("sim-llm-").count(), 2, "{stdout}");

    let out = kubectl(&limited, &cache, &["delete", "networkpolicy", "anything"]).await;
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("networkpolicies.networking.k8s.io \"anything\" is forbidden: User \"limited\" cannot delete resource \"networkpolicies\" in API group \"networking.k8s.io\" in the namespace \"default\""),
        "{err}"
    );

    let wrong = c.token_kubeconfig("wrong", "wrong-token");
    let out = kubectl(&wrong, &cache, &["get", "pods"]).await;
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );

    // A client certificate: kubectl presents it, the sim reads the user from its CN.
    let admin_cert = c.api.ca.issue_client("root", &["system:masters"]).unwrap();
    let cert = c.kubeconfig(
        "cert",
        &c.ca_data_line(),
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&admin_cert.cert_pem),
            b64(&admin_cert.key_pem)
        ),
    );
    let out = kubectl(
        &cert,
        &cache,
        &["auth", "can-i", "delete", "networkpolicies"],
    )
    .await;
    assert_eq!(text(&out).0.trim(), "yes", "{}", text(&out).1);
    let out = kubectl(&cert, &cache, &["get", "pods", "-o", "name"]).await;
    assert_eq!(text(&out).0.lines().count(), 2, "{}", text(&out).1);
    c.stop().await;
}
