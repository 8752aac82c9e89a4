//! Honest overload: when the load generator cannot keep up, it says so (client-limited
//! windows, `client_limited: true`, an invalid experiment) and never turns its own saturation
//! into the server's errors. Real HTTP on sockets against a small server started here, which
//! counts the connections it accepts so the pool limit is checked from the server's side.

use faultline::load::client::{Api, Client, ClientConfig};
use faultline::load::engine::{self, Control, EngineConfig};
use faultline::load::pool::Overload;
use faultline::load::schedule::{ArrivalProcess, RateShape, Schedule};
use faultline::load::workload::Workload;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The tests that send flat out would starve the timing-sensitive one of the CPU (two cores):
/// they take turns.
static CPU: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the server saw: connections accepted, open now, and the most open at once.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    requests: AtomicUsize,
}

/// A minimal OpenAI-compatible streaming server (HTTP/1.1 keep-alive): every chat request is
/// answered with `tokens` content events, a finish reason, usage and `[DONE]` after `delay`.
struct TinyServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl TinyServer {
    async fn start(delay: Duration, tokens: usize) -> TinyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let mut body = String::new();
        for _ in 0..tokens {
            body.push_str(
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n",
            );
        }
        body.push_str(
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        );
        body.push_str(&format!(
            "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":8,\"completion_tokens\":{tokens},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
            tokens + 8
        ));
        let response: Arc<[u8]> = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let now = s.open.fetch_add(1, Ordering::SeqCst) + 1;
                s.peak_open.fetch_max(now, Ordering::SeqCst);
                let s = s.clone();
                let response = response.clone();
                tokio::spawn(async move {
                    let _ = sock.set_nodelay(true);
                    let mut buf = Vec::with_capacity(4096);
                    'conn: loop {
                        // One request: headers, then content-length bytes of body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => break 'conn,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => break 'conn,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + len);
                        s.requests.fetch_add(1, Ordering::SeqCst);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        if sock.write_all(&response).await.is_err() {
                            break;
                        }
                    }
                    s.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        TinyServer { addr, seen, task }
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn client(addr: SocketAddr) -> Client {
    Client::new(
        ClientConfig {
            timeout: Duration::from_secs(30),
            ..ClientConfig::new(format!("http://{addr}"), Api::Chat, "tiny")
        },
        Instant::now(),
    )
    .unwrap()
}

fn open_loop(rate: f64, duration: Duration) -> Schedule {
    Schedule::Open {
        shape: RateShape::Fixed(rate),
        process: ArrivalProcess::Constant,
        duration,
        max_in_flight: None,
    }
}

async fn run(
    server: &TinyServer,
    schedule: Schedule,
    overload: Overload,
    dir: &std::path::Path,
) -> engine::RunOutput {
    engine::run(
        EngineConfig {
            schedule,
            workload: Workload::parse_mix("fixed:16:8").unwrap(),
            seed: 11,
            window_s: 0.5,
            out_dir: dir.to_path_buf(),
            overload,
        },
        client(server.addr),
        Arc::new(Control::default()),
        |_, _| {},
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_pool_wait_as_dispatch_lag_never_on_more_connections() {
    let _turn = CPU.lock().await;
    // 8 connections × (20 ms a request) serve at most 400 req/s; 1,600 req/s for 1 s asks four
    // times that. Every request must still be sent (late) on one of the 8 connections.
    let server = TinyServer::start(Duration::from_millis(20), 8).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &server,
        open_loop(1600.0, Duration::from_secs(1)),
        Overload {
            max_connections: Some(8),
            ..Overload::default()
        },
        dir.path(),
    )
    .await;
    let s = &out.summary;
    assert_eq!(s.requests, 1600);
    assert_eq!(s.errors, 0, "{:?}", s.errors_by_kind);
    assert_eq!(s.client_errors, 0);
    // From the server's side: never more than the pool, and each connection reused.
    let accepted = server.seen.accepted.load(Ordering::SeqCst);
    let peak_open = server.seen.peak_open.load(Ordering::SeqCst);
    assert!(
        peak_open <= 8,
        "server saw {peak_open} connections open at once"
    );
    assert!(accepted <= 8, "server accepted {accepted} connections");
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 1600);
    assert_eq!(s.max_connections, Some(8));
    assert_eq!(s.peak_connections, Some(8));
    assert_eq!(s.connections_opened, Some(accepted as u64));
    // The wait shows as dispatch lag: the last request could only go out after ~4 s.
    let lag_max = s.dispatch_lag_ms.max.unwrap();
    assert!(lag_max > 2000.0, "dispatch lag max {lag_max} ms");
    assert!(s.client_limited);
    assert!(
        s.client_limited_share.unwrap() > 0.9,
        "{:?}",
        s.client_limited_share
    );
    assert_eq!(s.max_dispatch_lag_ms, Some(10.0));
    // TTFT still counts from the intended start: the client's lateness is not hidden.
    assert!(s.ttft_ms.p99.unwrap() >= s.dispatch_lag_ms.p99.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_far_beyond_the_machine_is_client_limited_with_no_connect_errors() {
    let _turn = CPU.lock().await;
    // 100,000 req/s (the most `--rate` accepts) against a zero-latency server for 0.5 s: far
    // beyond what two shared cores can send. The default pool; every request must end without
    // a single connect error, the client must say it was the limit, and summary.json must say
    // so with the lag figures.
    let server = TinyServer::start(Duration::ZERO, 8).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let started = Instant::now();
    let out = run(
        &server,
        open_loop(100_000.0, Duration::from_millis(500)),
        // The server holds the other end of every connection in this process.
        Overload {
            embedded_server: true,
            ..Overload::default()
        },
        &dir,
    )
    .await;
    let took = started.elapsed();
    let s = &out.summary;
    assert_eq!(s.requests, 50_000);
    assert!(
        !s.errors_by_kind.contains_key("connect_error"),
        "{:?}",
        s.errors_by_kind
    );
    assert_eq!(s.client_errors, 0);
    // The server here shares the two cores with a client sending flat out; a few of its
    // connections may be reset under that, but nothing like a connect storm.
    assert!(
        s.errors * 1000 <= s.requests,
        "{} errors: {:?}",
        s.errors,
        s.errors_by_kind
    );
    assert!(s.client_limited, "sent 50,000 requests in {took:?}");
    let peak = s.peak_connections.unwrap();
    let pool = s.max_connections.unwrap();
    assert!(peak <= pool, "peak {peak} > pool {pool}");
    let peak_open = server.seen.peak_open.load(Ordering::SeqCst) as u64;
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["client_limited"], true);
    assert!(json["client_limited_share"].as_f64().unwrap() > 0.0);
    assert!(json["dispatch_lag_ms"]["p99"].as_f64().unwrap() > 10.0);
    assert_eq!(json["max_dispatch_lag_ms"], 10.0);
    assert_eq!(json["max_connections"], pool);
    // Each window line says whether it was client-limited, with its lag p99.
    let windows = std::fs::read_to_string(dir.join("windows.jsonl")).unwrap();
    let limited = windows
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|w| w["client_limited"] == true && w["dispatch_lag_p99_ms"].as_f64() > Some(10.0))
        .count();
    assert!(limited > 0, "{windows}");
    eprintln!(
        "100k req/s for 0.5 s: sent in {took:?}, achieved {:.0} req/s, lag p50 {:?} p99 {:?} ms, peak in flight {peak} of {pool}, connections opened {:?}, server saw {peak_open} open at once, errors {:?}",
        s.achieved_rate,
        s.dispatch_lag_ms.p50,
        s.dispatch_lag_ms.p99,
        s.connections_opened,
        s.errors_by_kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_rate_run_is_not_client_limited_and_sizes_its_pool_from_rate_and_timeout() {
    let _turn = CPU.lock().await;
    let server = TinyServer::start(Duration::from_millis(5), 8).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        &server,
        open_loop(50.0, Duration::from_secs(3)),
        Overload::default(),
        tmp.path(),
    )
    .await;
    let s = &out.summary;
    assert_eq!(s.requests, 150);
    assert_eq!(s.errors, 0);
    // 50 req/s × 30 s timeout × 1.25.
    assert_eq!(s.max_connections, Some(1875));
    assert!(
        s.peak_connections.unwrap() <= 10,
        "{:?}",
        s.peak_connections
    );
    // The schedule was kept: nine requests in ten left within a millisecond or two.
    let p90 = s.dispatch_lag_ms.p90.unwrap();
    assert!(p90 < 10.0, "dispatch lag {:?}", s.dispatch_lag_ms);
    // A window is flagged at its dispatch-lag p99, which for 25 requests is its slowest one:
    // a scheduling hiccup (this binary runs other topics' tests on the same two cores; the
    // engine's own start counts against the first requests) can flag a window. Flagged it is
    // (measured, not hidden), but a run that keeps to its schedule is never mostly flagged:
    // at most 2 of its 6 windows (measured alone: 0 or 1; next to the `runner::` tests: 1-2).
    assert!(
        s.client_limited_windows <= 2,
        "{} client-limited windows, lag {:?}",
        s.client_limited_windows,
        s.dispatch_lag_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_whose_baseline_is_client_limited_is_invalid_and_says_why() {
    // 2 connections × 40 ms a request serve 50 req/s; the experiment asks 100 req/s: from the
    // first second on, the client cannot deliver its schedule, baseline included.
    let server = TinyServer::start(Duration::from_millis(40), 4).await;
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("overloaded.yaml");
    std::fs::write(
        &exp,
        format!(
            r#"name: overloaded
target:
  endpoint: http://{}
  model: tiny
  api: chat
  timeout: 20s
load:
  rate: 100
  arrival: constant
  workload: fixed:16:4
  duration: 6s
  seed: 5
  max_connections: 2
warmup: 1s
faults:
  - id: spike
    fault: {{kind: load-spike, multiplier: 1.5}}
    at: 3s
    duration: 1s
criteria:
  must_recover: false
"#,
            server.addr
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let args = [
        "run".to_string(),
        exp.display().to_string(),
        "--out".into(),
        out_dir.display().to_string(),
        "--ledger".into(),
        dir.path().join("ledger.jsonl").display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(&args)
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("client-limited") || stderr.contains("client-limited"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // While it happened, the terminal was told (once per episode, not once per window).
    let warnings = stderr.matches("client-limited: dispatch lag p99").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} warnings:\n{stderr}"
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["status"], "invalid");
    assert_eq!(result["load"]["client_limited"], true);
    assert_eq!(result["load"]["errors"], 0);
    let reason = result["faults"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("client-limited") && reason.contains("baseline phase"),
        "{reason}"
    );
    eprintln!("faultline run output:\n{stdout}\n{stderr}");
    let md = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(md.contains("the load generator was the bottleneck"), "{md}");
}

#[test]
fn pool_flags_out_of_range_are_refused_naming_the_flag_and_value() {
    for (args, needle) in [
        (
            vec!["load", "--max-connections", "0"],
            "'0': expected a whole number from 1 to 100000",
        ),
        (
            vec!["load", "--max-connections", "lots"],
            "'lots': expected a whole number",
        ),
        (
            vec!["ramp", "--max-dispatch-lag", "0s"],
            "--max-dispatch-lag",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_zero_pool_in_an_experiment_file_is_refused_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("e.yaml");
    std::fs::write(
        &exp,
        "name: e\ntarget:\n  sim: {preset: small}\nload:\n  rate: 5\n  duration: 10s\n  max_connections: 0\nfaults:\n  - id: s\n    fault: {kind: load-spike, multiplier: 2}\n    at: 2s\n    duration: 2s\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["validate", &exp.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let text = format!("{stdout}{stderr}");
    assert!(
        text.contains("e.yaml:7") && text.contains("max_connections"),
        "{text}"
    );
}
