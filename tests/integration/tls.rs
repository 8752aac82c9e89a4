//! HTTPS end to end, with real parts on loopback sockets: the real `faultline` binary against
//! the sim serving TLS with its own CA (`sim --tls`), a gateway that requires client
//! certificates, a tiny HTTPS server without `/v1/models`, a real Prometheus serving TLS
//! (`--web.config.file`), and an experiment whose target is `https://`.

use crate::prometheus::{Prometheus, WebTls};
use axum::Router;
use axum::routing::post;
use faultline::fault::ledger::Ledger;
use faultline::runner::execute::{self, RunOptions};
use faultline::runner::spec;
use faultline::sim::tls::SimCa;
use faultline::sim::{self, SimConfig, SimHandle, SimTls};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Runs the binary (without the runtime blocking: servers in this test keep serving).
async fn faultline(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn https_sim(mode: SimTls) -> SimHandle {
    let cfg = SimConfig::preset("small").unwrap().zero_latency();
    sim::start_with_tls(cfg, "127.0.0.1:0".parse().unwrap(), mode)
        .await
        .unwrap()
}

fn summary(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `load --rate 20 --duration 2s` of 4-token completions, JSON summary on stdout.
fn load_args<'a>(url: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "load",
        "--endpoint",
        url,
        "--rate",
        "20",
        "--arrival",
        "constant",
        "--duration",
        "2s",
        "--workload",
        "fixed:16:4",
        "--seed",
        "1",
        "--json",
        "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_over_https_trusting_the_sims_ca_works_and_without_it_is_refused_with_the_reason() {
    let sim = https_sim(SimTls::On).await;
    let url = sim.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = sim.tls_files().unwrap().ca_cert.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).display().to_string();

    let (o1, o2, o3) = (out("trusted"), out("refused"), out("insecure"));
    let (code, stdout, err) = faultline(&load_args(&url, &o1, &["--ca-cert", &ca])).await;
    assert_eq!(code, 0, "{err}");
    let s = summary(&stdout);
    let requests = s["requests"].as_u64().unwrap();
    assert!(
        (38..=41).contains(&requests),
        "{requests} requests at 20/s for 2 s"
    );
    assert_eq!(s["errors"], 0, "{stdout}");
    assert_eq!(s["output_tokens"].as_u64().unwrap(), requests * 4);
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("trusted/run.json")).unwrap())
            .unwrap();
    assert_eq!(run["tls"]["ca_cert"], ca.as_str());
    assert_eq!(run["tls_insecure"], false);

    // Without the CA: refused before any load, with the host, the reason and the fix.
    let (code, _, err) = faultline(&load_args(&url, &o2, &[])).await;
    assert_eq!(code, 2, "{err}");
    let host = url.trim_start_matches("https://");
    assert!(err.contains(host), "names the host: {err}");
    assert!(err.contains("unknown CA"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
    assert!(!dir.path().join("refused/requests.jsonl").exists());

    // --insecure: works, says so loudly, and the run records it.
    let (code, stdout, err) = faultline(&load_args(&url, &o3, &["--insecure"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("NOT verified"),
        "{err}"
    );
    assert_eq!(summary(&stdout)["errors"], 0);
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("insecure/run.json")).unwrap())
            .unwrap();
    assert_eq!(run["tls_insecure"], true);
    assert_eq!(run["tls"]["insecure"], true);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_client_certificates_refuses_without_one_and_serves_with_one() {
    let sim = https_sim(SimTls::RequireClientCert).await;
    let url = sim.url();
    let files = sim.tls_files().unwrap().clone();
    let ca = files.ca_cert.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).display().to_string();
    let (o1, o2) = (out("without"), out("with"));

    let (code, _, err) = faultline(&load_args(&url, &o1, &["--ca-cert", &ca])).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(url.trim_start_matches("https://")), "{err}");
    assert!(err.contains("client certificate"), "{err}");
    assert!(err.contains("--client-cert"), "{err}");

    let cert = files.client_cert.display().to_string();
    let key = files.client_key.display().to_string();
    let (code, stdout, err) = faultline(&load_args(
        &url,
        &o2,
        &[
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let s = summary(&stdout);
    assert!(s["requests"].as_u64().unwrap() >= 38, "{stdout}");
    assert_eq!(s["errors"], 0, "{stdout}");
    // The key's contents never reach the output.
    let key_pem = std::fs::read_to_string(&files.client_key).unwrap();
    let body = key_pem.lines().nth(1).unwrap();
    assert!(!stdout.contains(body) && !err.contains(body));
    sim.shutdown().await;
}

/// What the tiny gateway saw: the HTTP version and the client's port (one per connection) of
/// each request.
type Seen = Arc<Mutex<Vec<(axum::http::Version, u16)>>>;

/// An HTTPS server that only routes `/v1/chat/completions` (streaming) — no `/v1/models` —
/// like a gateway in front of one model. Returns its port and its CA file.
async fn completions_only_gateway(
    dir: &Path,
    seen: Seen,
) -> (u16, String, axum_server::Handle<std::net::SocketAddr>) {
    let ca = SimCa::generate().unwrap();
    let ca_path = dir.join("gateway-ca.pem");
    ca.write_cert(&ca_path).unwrap();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(
            move |version: axum::http::Version,
                  axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((version, peer.port()));
                (
                    [("content-type", "text/event-stream")],
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n\
                     data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}],\
                     \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
                     data: [DONE]\n\n",
                )
            }
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = axum_server::Handle::new();
    let config =
        axum_server::tls_rustls::RustlsConfig::from_config(ca.server_config(false).unwrap());
    let server = axum_server::from_tcp_rustls(listener, config)
        .unwrap()
        .handle(handle.clone());
    tokio::spawn(server.serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>()));
    (port, ca_path.display().to_string(), handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_without_v1_models_works_with_model_over_http2_and_without_it_says_pass_model()
{
    let dir = tempfile::tempdir().unwrap();
    let seen: Seen = Arc::default();
    let (port, ca, stop) = completions_only_gateway(dir.path(), seen.clone()).await;
    let url = format!("https://localhost:{port}/v1");
    let out = dir.path().join("run").display().to_string();
    let (code, stdout, err) = faultline(&load_args(
        &url,
        &out,
        &["--ca-cert", &ca, "--api", "chat", "--model", "m1"],
    ))
    .await;
    assert_eq!(code, 0, "{err}");
    let s = summary(&stdout);
    let requests = s["requests"].as_u64().unwrap();
    assert!(requests >= 38, "{stdout}");
    assert_eq!(s["errors"], 0, "{stdout}");
    assert_eq!(
        s["output_tokens"].as_u64().unwrap(),
        requests * 2,
        "usage counted"
    );
    // Every request reached the gateway, all of them over HTTP/2 (ALPN), on connections kept
    // for the whole run: one, or two when a request starts while the first handshake is still
    // under way (the pool only learns the connection is HTTP/2 once ALPN has answered).
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, requests);
    assert!(
        seen.iter().all(|(v, _)| *v == axum::http::Version::HTTP_2),
        "{seen:?}"
    );
    let connections: std::collections::BTreeSet<u16> = seen.iter().map(|(_, p)| *p).collect();
    assert!(
        connections.len() <= 2,
        "{requests} requests on {connections:?}"
    );

    let (code, _, err) =
        faultline(&load_args(&url, &out, &["--ca-cert", &ca, "--api", "chat"])).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("pass --model"), "{err}");
    stop.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bottleneck_reads_a_prometheus_serving_https_with_its_ca_and_names_the_tls_reason_without()
{
    let dir = tempfile::tempdir().unwrap();
    let ca = SimCa::generate().unwrap();
    let ca_path = dir.path().join("prom-ca.pem");
    ca.write_cert(&ca_path).unwrap();
    let (cert, key) = (dir.path().join("prom.pem"), dir.path().join("prom-key.pem"));
    ca.issue_server().unwrap().write(&cert, &key).unwrap();
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let tls = WebTls {
        web_config,
        client: faultline::tls::TlsOptions {
            ca_cert: Some(ca_path.clone()),
            ..Default::default()
        },
    };
    // Nothing listens on the scrape target: the window simply has no vLLM/DCGM series.
    let prom = Prometheus::start_with("127.0.0.1:9".parse().unwrap(), Some(&tls)).await;
    assert!(prom.url.starts_with("https://"), "{}", prom.url);
    let ca_arg = ca_path.display().to_string();

    let (code, stdout, err) = faultline(&[
        "bottleneck",
        "--prometheus",
        &prom.url,
        "--ca-cert",
        &ca_arg,
        "--from",
        "-1m",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["prometheus"], prom.url.as_str());
    let signals = report["signals"].as_array().unwrap();
    assert!(!signals.is_empty());
    // Every query was answered (over TLS): no series is "missing", never "error".
    assert!(signals.iter().all(|s| s["status"] == "missing"), "{stdout}");

    let (code, _, err) =
        faultline(&["bottleneck", "--prometheus", &prom.url, "--from", "-1m"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&prom.url), "{err}");
    assert!(err.contains("unknown CA"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_with_an_https_target_and_probe_runs_with_the_ca_relative_to_the_file() {
    let sim = https_sim(SimTls::On).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&sim.tls_files().unwrap().ca_cert, dir.path().join("ca.pem")).unwrap();
    let model = SimConfig::preset("small").unwrap().model;
    let url = sim.url();
    let path = dir.path().join("https.yaml");
    std::fs::write(
        &path,
        format!(
            "name: https\n\
             target:\n  endpoint: {url}\n  model: {model}\n  api: completions\n  tls: {{ca_cert: ca.pem}}\n\
             load:\n  rate: 5\n  arrival: constant\n  workload: fixed:16:4\n  duration: 3s\n\
             warmup: 1s\n\
             probes:\n  - name: health\n    every: 500ms\n    http: {{url: '{url}/health', tls: {{ca_cert: ca.pem}}}}\n"
        ),
    )
    .unwrap();
    let exp = spec::load_experiment(&path).unwrap();
    let opts = RunOptions {
        out_dir: dir.path().join("out"),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: "t-https".into(),
        faultline_bin: None,
    };
    let r = execute::run(&exp, &opts).await.unwrap();
    assert!(r.load.requests >= 14, "{} requests", r.load.requests);
    assert_eq!(r.load.errors, 0);
    assert!(
        r.events
            .iter()
            .any(|e| e.kind == "probe_ok" && e.detail == "health: 200"),
        "{:?}",
        r.events
    );
    assert!(!r.events.iter().any(|e| e.kind == "probe_failed"));
    sim.shutdown().await;
}

fn experiment_with(dir: &Path, tls: &str) -> String {
    let path = dir.join("t.yaml");
    std::fs::write(
        &path,
        format!(
            "target:\n  endpoint: https://127.0.0.1:8443\n  model: m\n  tls: {tls}\n\
             load:\n  rate: 1\n  duration: 10s\n"
        ),
    )
    .unwrap();
    spec::load_experiment(&path).unwrap_err().to_string()
}

#[test]
fn tls_keys_in_a_file_are_checked_with_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml").display().to_string();
    let err = experiment_with(dir.path(), "{ca: ca.pem}");
    assert!(err.starts_with(&format!("{file}:4:")), "{err}");
    assert!(err.contains("unknown key 'ca'"), "{err}");
    assert!(err.contains("did you mean 'ca_cert'"), "{err}");

    // A CA file that is not there: the key and the resolved path (beside the file).
    let err = experiment_with(dir.path(), "{ca_cert: missing.pem}");
    assert!(err.starts_with(&format!("{file}:4:")), "{err}");
    assert!(
        err.contains(&dir.path().join("missing.pem").display().to_string()),
        "{err}"
    );

    let err = experiment_with(dir.path(), "{client_cert: c.pem}");
    assert!(err.contains("client_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_the_handshake_is_a_connect_error_with_the_tls_reason() {
    use faultline::load::client::{Api, Client, ClientConfig};
    use faultline::load::record::Outcome;
    use faultline::load::workload::Workload;
    let sim = https_sim(SimTls::On).await;
    let model = SimConfig::preset("small").unwrap().model;
    let client = Client::new(
        ClientConfig::new(sim.url(), Api::Completions, model.clone()),
        std::time::Instant::now(),
    )
    .unwrap();
    let spec = Workload::parse_mix("fixed:16:4")
        .unwrap()
        .generate(&mut rand::rng());
    let body = client.body(&spec);
    let rec = client
        .send(1, &spec, body.clone(), std::time::Instant::now(), |_| {})
        .await;
    assert_eq!(rec.outcome, Outcome::ConnectError);
    let msg = rec.error.unwrap();
    assert!(msg.contains("unknown CA"), "{msg}");

    // The same request trusting the CA goes through, over the same code path.
    let mut cfg = ClientConfig::new(sim.url(), Api::Completions, model);
    cfg.tls.ca_cert = Some(sim.tls_files().unwrap().ca_cert.clone());
    let trusting = Client::new(cfg, std::time::Instant::now()).unwrap();
    let rec = trusting
        .send(2, &spec, body, std::time::Instant::now(), |_| {})
        .await;
    assert_eq!(rec.outcome, Outcome::Ok, "{:?}", rec.error);
    assert_eq!(rec.output_tokens, 4);
    sim.shutdown().await;
}

#[test]
fn the_plan_shows_the_targets_tls_with_the_ca_resolved_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    SimCa::generate()
        .unwrap()
        .write_cert(&dir.path().join("ca.pem"))
        .unwrap();
    let path = dir.path().join("e.yaml");
    std::fs::write(
        &path,
        "target:\n  endpoint: https://gw.example:8443\n  model: m\n  tls: {ca_cert: ca.pem, insecure: true}\n\
         load:\n  rate: 1\n  duration: 30s\n",
    )
    .unwrap();
    let exp = spec::load_experiment(&path).unwrap();
    let plan = spec::plan(&exp);
    let ca = dir.path().join("ca.pem").display().to_string();
    assert!(
        plan.contains(&format!(
            "target: https://gw.example:8443 (model m; TLS: CA {ca}, certificates NOT verified)"
        )),
        "{plan}"
    );
}
