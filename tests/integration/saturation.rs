//! Ramp, SLA, cost and the bench pipeline against the embedded sim over real sockets.
//!
//! The ramp test derives the `small` preset's capacity from its parameters and checks the
//! ramp finds it. Arrivals are evenly spaced there: then a queue forms only once the rate
//! exceeds what the batch can serve, so the TTFT knee *is* the capacity (with Poisson arrivals
//! bursts queue well before it, which is real but not what this test pins down).

use faultline::analysis::cost::CostTable;
use faultline::analysis::saturation::{Criteria, RampResult};
use faultline::analysis::sla::{SearchEnd, SlaResult};
use faultline::load::client::{Api, Client, ClientConfig};
use faultline::load::engine::Control;
use faultline::load::schedule::ArrivalProcess;
use faultline::load::workload::Workload;
use faultline::runner::ramp::{self, RampPlan, StepLoad};
use faultline::sim::{self, SimConfig};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IN_TOKENS: f64 = 64.0;
const OUT_TOKENS: f64 = 32.0;

/// Requests per second a full batch serves: every step emits one token per sequence; over a
/// request's `OUT_TOKENS` steps one is its prefill step (its prompt costs `prefill_per_token`
/// each and it is not charged as a decoding sequence), the rest are decode steps.
fn capacity(c: &SimConfig) -> f64 {
    let b = f64::from(c.max_batch_size);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let step_ms = ms(c.decode_step_base)
        + ms(c.decode_step_per_seq) * b * (OUT_TOKENS - 1.0) / OUT_TOKENS
        + ms(c.prefill_per_token) * IN_TOKENS * b / OUT_TOKENS;
    b / (OUT_TOKENS * step_ms / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_finds_the_small_sims_capacity_within_ten_percent_and_stops_early() {
    let config = SimConfig::preset("small").unwrap();
    let expected = capacity(&config); // ≈ 7.86 req/s
    let sim = sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cfg = ClientConfig {
        base_url: format!("http://{}", sim.addr),
        api: Api::Completions,
        model: "sim-small".into(),
        stream: true,
        include_usage: true,
        api_key: None,
        headers: vec![],
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        tls: Default::default(),
        max_event_bytes: faultline::load::sse::DEFAULT_MAX_EVENT_BYTES,
    };
    Client::new(cfg.clone(), Instant::now())
        .unwrap()
        .check()
        .await
        .unwrap();
    // Fine steps around the expected knee: 7.25, 7.75 and 8.25 are within ±10% of it.
    let rates = [5.0, 7.25, 7.75, 8.25, 8.75, 9.5, 10.5, 12.0, 14.0];
    let dir = tempfile::tempdir().unwrap();
    let result = ramp::run(
        RampPlan {
            loads: rates.iter().map(|&r| StepLoad::Rate(r)).collect(),
            step_duration: Duration::from_secs(4),
            arrival: ArrivalProcess::Constant,
            workload: Workload::parse_mix("fixed:64:32").unwrap(),
            seed: 7,
            window_s: 1.0,
            criteria: Criteria::default(),
            fraction: 0.7,
            early_stop: true,
            overload: Default::default(),
            out_dir: dir.path().to_path_buf(),
        },
        &cfg,
        Arc::new(Control::default()),
        |_| {},
    )
    .await
    .unwrap();
    sim.shutdown().await;
    let curve: Vec<_> = result
        .steps
        .iter()
        .map(|s| (s.rate, s.summary.ttft_ms.p99, s.summary.output_tok_s))
        .collect();
    let sat = result
        .saturation
        .as_ref()
        .unwrap_or_else(|| panic!("never saturated: {curve:?}"));
    assert!(
        (sat.rate - expected).abs() <= 0.10 * expected,
        "saturation at {} ({:?}: {}), expected {expected:.2} ± 10%; curve {curve:?}",
        sat.rate,
        sat.reason,
        sat.detail
    );
    eprintln!(
        "saturation at {} req/s ({:?}: {}), expected {expected:.2}",
        sat.rate, sat.reason, sat.detail
    );
    assert!(result.stopped_early);
    assert_eq!(
        result.steps.len(),
        sat.step + 2,
        "one confirming step, then stop"
    );
    assert!(result.steps.len() < rates.len());
    assert!((result.recommended_rate - 0.7 * sat.rate).abs() < 1e-9);
    let on_disk: RampResult =
        serde_json::from_slice(&std::fs::read(dir.path().join("ramp.json")).unwrap()).unwrap();
    assert_eq!(on_disk.saturation, result.saturation);
    assert!(
        Path::new(&result.steps[0].out_dir)
            .join("requests.jsonl")
            .exists()
    );
}

fn faultline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .unwrap()
}

fn sla_run(rate: &str, out: &Path) -> (i32, SlaResult) {
    let o = faultline(&[
        "sla",
        "--sim-preset",
        "small",
        "--workload",
        "fixed:64:32",
        "--arrival",
        "constant",
        "--rate",
        rate,
        "--duration",
        "3s",
        "--ttft-p99",
        "300ms",
        "--itl-p99",
        "100ms",
        "--max-error-rate",
        "0.01",
        "--goodput-min",
        "0.9",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let sla: SlaResult = serde_json::from_slice(&std::fs::read(out.join("sla.json")).unwrap())
        .unwrap_or_else(|e| panic!("{e}; stdout {stdout}"));
    (o.status.code().unwrap(), sla)
}

#[test]
fn sla_passes_at_low_rate_and_fails_overloaded_naming_the_metric_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (code, low) = sla_run("3", &dir.path().join("low"));
    assert_eq!(code, 0, "{low:?}");
    assert!(low.passed && low.failed_metrics.is_empty());
    assert_eq!(low.checks.len(), 4, "ttft, itl, error rate, goodput");

    // Twice the capacity: the queue grows until requests time out in it.
    let (code, high) = sla_run("16", &dir.path().join("high"));
    assert_eq!(code, 1, "{high:?}");
    assert!(!high.passed);
    assert!(
        high.failed_metrics
            .iter()
            .any(|m| m == "ttft_p99_ms" || m == "error_rate"),
        "{:?}",
        high.failed_metrics
    );
    let ttft = high
        .checks
        .iter()
        .find(|c| c.metric == "ttft_p99_ms")
        .unwrap();
    assert!(!ttft.passed && ttft.actual.unwrap() > 300.0, "{ttft:?}");
}

#[test]
fn sla_find_whose_whole_range_passes_says_at_least_not_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("find");
    // The small preset holds ~8 req/s; 1..3 req/s all pass, so the search never finds a
    // failing rate and must not present 3 req/s as the limit.
    let o = faultline(&[
        "sla",
        "--sim-preset",
        "small",
        "--workload",
        "fixed:64:32",
        "--arrival",
        "constant",
        "--find",
        "--find-from",
        "1",
        "--find-to",
        "3",
        "--duration",
        "2s",
        "--ttft-p99",
        "2s",
        "--itl-p99",
        "500ms",
        "--max-error-rate",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("highest rate meeting the SLA: at least 3.00 req/s")
            && stdout.contains("raise --find-to"),
        "{stdout}"
    );
    let sla: SlaResult =
        serde_json::from_slice(&std::fs::read(out.join("sla.json")).unwrap()).unwrap();
    assert_eq!(sla.search_end, Some(SearchEnd::WholeRangePassed));
    assert_eq!(sla.max_rate_meeting_sla, Some(3.0));
    assert_eq!(sla.lowest_failing_rate, None);
    assert_eq!(sla.trials.len(), 2, "both ends, then done");
}

#[test]
fn bottleneck_prints_its_default_signals_without_a_prometheus() {
    let o = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["bottleneck", "--print-default-signals"])
        .env_remove("FAULTLINE_PROMETHEUS")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = file["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    // And without the flag, the missing Prometheus is named.
    let o = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["bottleneck"])
        .env_remove("FAULTLINE_PROMETHEUS")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--prometheus"));
}

#[test]
fn cost_file_prices_the_articles_configurations() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("costs/example.yaml");
    let o = faultline(&["cost", "--file", file.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t: CostTable = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t.rows.len(), 4);
    // 4 × 3.50 / (3200 × 0.7 × 3600) × 1e6
    assert!((t.rows[0].cost_per_million_output_tokens - 1.7361).abs() < 1e-3);
}

#[test]
fn bench_smoke_profile_writes_every_file_in_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let o = faultline(&[
        "bench",
        "--profile",
        "smoke",
        "--sim-preset",
        "small",
        "--workload",
        "fixed:64:32",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(2), "{stderr}");
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}")))
            .unwrap()
    };
    let bench = read("bench.json");
    let names: Vec<_> = bench["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["warm-up", "baseline", "ramp", "sla"]);
    assert_eq!(bench["profile"], "smoke");
    assert_eq!(bench["ramp"], "ramp/ramp.json");
    assert_eq!(bench["sla"], "sla/sla.json");
    assert_eq!(bench["cost"], "cost.json");
    assert!(bench["bottleneck"].is_null());
    assert!(bench["baseline"]["requests"].as_u64().unwrap() > 0);
    assert!(out.join("baseline/summary.json").exists());
    let ramp: RampResult = serde_json::from_value(read("ramp/ramp.json")).unwrap();
    assert!(!ramp.steps.is_empty());
    let sla: SlaResult = serde_json::from_value(read("sla/sla.json")).unwrap();
    assert!((sla.rate - ramp.recommended_rate).abs() < 1e-9);
    let cost: CostTable = serde_json::from_value(read("cost.json")).unwrap();
    assert!(!cost.rows.is_empty());
    assert_eq!(cost.rows[0].gpus, 1, "the small preset's GPU count");
    assert!(stderr.contains("[3/4 ramp]"), "{stderr}");
}
