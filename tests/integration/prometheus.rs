//! The bottleneck analysis against a real Prometheus (Debian's package) scraping the embedded
//! sim every second on 127.0.0.1. Missing `/usr/bin/prometheus` is a test failure with the fix
//! in the message, never a skip.

use chrono::Utc;
use faultline::analysis::bottleneck::{self, BottleneckReport, Status, Window};
use faultline::analysis::prometheus::{PromClient, PromError};
use faultline::load::client::{Api, Client, ClientConfig};
use faultline::load::engine::Control;
use faultline::load::schedule::ArrivalProcess;
use faultline::load::workload::Workload;
use faultline::sim::{self, SimConfig, SimHandle};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod degrade;
mod partition;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus scraping one target every second, its data in a temp dir; killed on drop.
pub struct Prometheus {
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prometheus serving HTTPS: its `--web.config.file` and the TLS options a client needs.
pub struct WebTls {
    pub web_config: std::path::PathBuf,
    pub client: faultline::tls::TlsOptions,
}

impl Prometheus {
    pub async fn start(target: SocketAddr) -> Prometheus {
        Prometheus::start_with(target, None).await
    }

    pub async fn start_with(target: SocketAddr, tls: Option<&WebTls>) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: sim\n    scrape_interval: 1s\n    \
             scrape_timeout: 900ms\n    static_configs:\n      - targets: ['{target}']\n"
        );
        Prometheus::start_config(&config, tls).await
    }

    /// A Prometheus with the configuration file `config` (one scrape target).
    pub async fn start_config(config_text: &str, tls: Option<&WebTls>) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus package (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text).unwrap();
        let mut last = String::new();
        // A free port can be taken between finding and binding it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let child = Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(tls.map(|t| format!("--web.config.file={}", t.web_config.display())))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {PROMETHEUS}: {e}"));
            let mut child = child;
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://127.0.0.1:{port}");
            let client_tls = tls.map(|t| t.client.clone()).unwrap_or_default();
            match wait_ready(
                &mut child,
                &url,
                &client_tls,
                dir.path(),
                Duration::from_secs(30),
            )
            .await
            {
                Ok(()) => return Prometheus { url, dir, child },
                Err(e) => {
                    last = e;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("prometheus did not start: {last}");
    }

    pub fn log(&self) -> String {
        log(self.dir.path())
    }

    /// Waits until the sim's scrape target is up (its first scrape landed).
    pub async fn wait_target_up(&self) {
        let client = PromClient::new(&self.url, &Default::default()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(series) = client.query("up{job=\"sim\"}", Utc::now()).await
                && series
                    .first()
                    .is_some_and(|s| s.points.first().is_some_and(|p| p.1 == 1.0))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the sim target never came up; log:\n{}", self.log());
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

async fn wait_ready(
    child: &mut Child,
    url: &str,
    tls: &faultline::tls::TlsOptions,
    dir: &Path,
    within: Duration,
) -> Result<(), String> {
    let http = faultline::tls::http_client_builder(tls)
        .unwrap()
        .no_proxy()
        .build()
        .unwrap();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("it exited with {status}; log:\n{}", log(dir)));
        }
        if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("not ready within {within:?}; log:\n{}", log(dir)))
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sim_and_prometheus() -> (SimHandle, Prometheus) {
    let sim = sim::start(
        SimConfig::preset("h100x4-70b").unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let prom = Prometheus::start(sim.addr).await;
    prom.wait_target_up().await;
    (sim, prom)
}

fn client_for(addr: SocketAddr) -> Client {
    Client::new(
        ClientConfig {
            base_url: format!("http://{addr}"),
            api: Api::Chat,
            model: "sim-llama-70b".into(),
            stream: true,
            include_usage: true,
            api_key: None,
            headers: vec![],
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            tls: Default::default(),
            max_event_bytes: faultline::load::sse::DEFAULT_MAX_EVENT_BYTES,
        },
        Instant::now(),
    )
    .unwrap()
}

fn print(report: &BottleneckReport) {
    for s in &report.signals {
        eprintln!(
            "{:14} {:?} saturation={:?} p95={:?} mean={:?} max={:?} points={}",
            s.name, s.status, s.saturation, s.p95, s.mean, s.max, s.points
        );
    }
    eprintln!("primary={:?} ranking={:?}", report.primary, report.ranking);
}

fn assert_in_range(report: &BottleneckReport) {
    for s in report.signals.iter().filter(|s| s.status == Status::Ok) {
        let sat = s.saturation.unwrap();
        assert!((0.0..=1.0).contains(&sat), "{}: saturation {sat}", s.name);
        assert!(s.points > 0, "{}", s.name);
        assert!(
            s.mean.unwrap() <= s.max.unwrap() && s.p95.unwrap() <= s.max.unwrap(),
            "{s:?}"
        );
    }
    for name in ["kv_cache", "gpu_compute", "gpu_memory_bw"] {
        let s = report.signal(name).unwrap();
        let p95 = s.p95.unwrap();
        assert!((0.0..=1.0).contains(&p95), "{name}: a ratio, got {p95}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_to_saturation_names_kv_cache_or_queue_primary_and_unexposed_nvlink_missing() {
    use faultline::runner::ramp::{self, RampPlan, StepLoad};
    let (sim, prom) = sim_and_prometheus().await;
    let dir = tempfile::tempdir().unwrap();
    let start = Utc::now();
    // A ramp while Prometheus scrapes: ~40 req/s is the preset's saturation point, so the last
    // step (70 req/s) fills the KV cache and the queue.
    let cfg = client_for(sim.addr).config().clone();
    let ramp = ramp::run(
        RampPlan {
            loads: vec![
                StepLoad::Rate(20.0),
                StepLoad::Rate(45.0),
                StepLoad::Rate(70.0),
            ],
            step_duration: Duration::from_secs(9),
            arrival: ArrivalProcess::Poisson,
            workload: Workload::default_mix(),
            seed: 7,
            window_s: 1.0,
            criteria: Default::default(),
            fraction: 0.7,
            early_stop: false,
            // This test is about the bottleneck signals, not the client: the sim saturating in
            // this same process while other tests run starves the pacer now and then, and a
            // client-limited step would (rightly) end the ramp's search for saturation.
            overload: faultline::load::pool::Overload {
                max_dispatch_lag: Duration::from_millis(500),
                ..Default::default()
            },
            out_dir: dir.path().to_path_buf(),
        },
        &cfg,
        Arc::new(Control::default()),
        |_| {},
    )
    .await
    .unwrap();
    assert!(ramp.saturation.is_some(), "the ramp saturated the sim");
    let last = &ramp.steps.last().unwrap().summary;
    let end = Utc::now();
    // The last second's scrape lands.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = bottleneck::analyze(
        &prom.url,
        &Default::default(),
        Window { start, end },
        &bottleneck::default_signals(),
    )
    .await
    .unwrap();
    sim.shutdown().await;
    eprintln!(
        "load: {} requests, {} errors, {:.1} req/s achieved",
        last.requests, last.errors, last.achieved_rate
    );
    print(&report);
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    assert!(
        last.errors > 0,
        "70 req/s should overload the sim (queue timeouts); is the load reaching it?"
    );
    // The ramp's steps are what the window covered.
    assert_eq!(ramp.steps.len(), 3);
    for name in ["kv_cache", "queue_depth", "gpu_compute", "gpu_memory_bw"] {
        let s = report.signal(name).unwrap();
        assert_eq!(s.status, Status::Ok, "{name}: {:?}", s.detail);
        assert!(s.points >= 15, "{name}: only {} points", s.points);
    }
    let nvlink = report.signal("nvlink").unwrap();
    assert_eq!(nvlink.status, Status::Missing, "{nvlink:?}");
    assert_eq!(nvlink.saturation, None);
    assert!(!report.ranking.contains(&"nvlink".to_string()));
    assert_in_range(&report);
    let primary = report.primary.as_deref().expect("a primary bottleneck");
    assert!(
        primary == "kv_cache" || primary == "queue_depth",
        "primary is {primary}, ranking {:?}",
        report.ranking
    );
    assert!(report.signal(primary).unwrap().saturation.unwrap() >= 0.9);
    assert!(report.signal("queue_depth").unwrap().max.unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_cluster_reads_zero_not_missing_and_has_no_primary() {
    let (sim, prom) = sim_and_prometheus().await;
    let start = Utc::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let end = Utc::now();
    let report = bottleneck::analyze(
        &prom.url,
        &Default::default(),
        Window { start, end },
        &bottleneck::default_signals(),
    )
    .await
    .unwrap();
    print(&report);
    for name in ["kv_cache", "queue_depth", "gpu_compute", "gpu_memory_bw"] {
        let s = report.signal(name).unwrap();
        assert_eq!(s.status, Status::Ok, "{name}: {:?}", s.detail);
        assert_eq!(s.saturation, Some(0.0), "{name}");
    }
    assert_eq!(report.signal("nvlink").unwrap().status, Status::Missing);
    assert_eq!(report.primary, None);
    assert_in_range(&report);

    // The CLI over the same Prometheus: bars on stdout, bottleneck.json in --out.
    let out_dir = tempfile::tempdir().unwrap();
    let url = prom.url.clone();
    let out_path = out_dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["bottleneck", "--prometheus", &url, "--from", "-4s", "--out"])
            .arg(&out_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    sim.shutdown().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("nvlink") && stdout.contains("missing"),
        "{stdout}"
    );
    assert!(stdout.contains("primary bottleneck: none"), "{stdout}");
    let written: BottleneckReport = serde_json::from_slice(
        &std::fs::read(out_dir.path().join(bottleneck::BOTTLENECK_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(written.signals.len(), 5);
    assert_eq!(written.signal("nvlink").unwrap().status, Status::Missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_promql_is_an_api_error_naming_the_url_and_the_query() {
    let (sim, prom) = sim_and_prometheus().await;
    let now = Utc::now();
    let client = PromClient::new(&prom.url, &Default::default()).unwrap();
    let err = client
        .query_range(
            "sum(vllm:num_requests_waiting",
            now - chrono::Duration::seconds(10),
            now,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, PromError::Api { ref error_type, .. } if error_type == "bad_data"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}/api/v1/query_range", prom.url)),
        "{msg}"
    );
    assert!(msg.contains("'sum(vllm:num_requests_waiting'"), "{msg}");

    // In the analysis, that signal is an error; the others are unaffected.
    let mut signals = bottleneck::default_signals();
    signals[0].query = "max(".into();
    let report = bottleneck::analyze(
        &prom.url,
        &Default::default(),
        Window {
            start: now - chrono::Duration::seconds(5),
            end: now,
        },
        &signals,
    )
    .await
    .unwrap();
    sim.shutdown().await;
    assert_eq!(report.signals[0].status, Status::Error);
    assert!(
        report.signals[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("'max('")
    );
    assert_eq!(report.signal("queue_depth").unwrap().status, Status::Ok);
    assert!(!report.ranking.contains(&signals[0].name));
}

#[tokio::test]
async fn unreachable_prometheus_is_an_http_error_naming_the_url() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let now = Utc::now();
    let err = faultline::analysis::prometheus::query_range(
        &url,
        &Default::default(),
        "up",
        now - chrono::Duration::seconds(5),
        now,
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PromError::Http { .. }), "{msg}");
    assert!(msg.contains(&url) && msg.contains("'up'"), "{msg}");
}
