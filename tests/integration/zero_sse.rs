//! The standalone zero-latency SSE server (`faultline-zero-sse`) as a real process on a real
//! socket: the faultline client streams from it with exact token counts, and
//! `faultline engine-bench --endpoint` against it writes plausible per-step figures.

use faultline::load::client::{Api, Client, ClientConfig};
use faultline::load::workload::RequestSpec;
use faultline::record::{Outcome, TokenSource};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// The server process, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline-zero-sse"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, url }
}

async fn stream(
    server: &Server,
    api: Api,
    max_tokens: u32,
    usage: bool,
) -> (u64, TokenSource, Outcome, u64) {
    let mut cfg = ClientConfig::new(&server.url, api, "zero");
    cfg.include_usage = usage;
    let c = Client::new(cfg, Instant::now()).unwrap();
    let spec = RequestSpec {
        class: Arc::from("chat"),
        prompt: "hello".into(),
        input_tokens: 2,
        max_tokens,
    };
    let mut gaps = 0u64;
    let rec = c
        .send(1, &spec, c.body(&spec), Instant::now(), |_| gaps += 1)
        .await;
    assert_eq!(rec.finish_reason.as_deref(), Some("length"), "{rec:?}");
    (rec.output_tokens, rec.token_source, rec.outcome, gaps)
}

#[tokio::test]
async fn zero_latency_server_streams_exactly_max_tokens_to_the_faultline_client() {
    let server = start();
    let c = Client::new(
        ClientConfig::new(&server.url, Api::Chat, "x"),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(c.check().await.unwrap(), vec!["zero".to_string()]);
    for api in [Api::Chat, Api::Completions] {
        for n in [1u32, 7, 32] {
            // Counted from the stream: one content event per token, n-1 gaps between them.
            let (tokens, source, outcome, gaps) = stream(&server, api, n, false).await;
            assert_eq!(
                (tokens, source, gaps),
                (n as u64, TokenSource::Stream, n as u64 - 1),
                "{api} {n}"
            );
            assert_eq!(outcome, Outcome::Ok);
            // With usage the server's count is taken, and it agrees.
            let (tokens, source, outcome, _) = stream(&server, api, n, true).await;
            assert_eq!(
                (tokens, source, outcome),
                (n as u64, TokenSource::Usage, Outcome::Ok),
                "{api} {n}"
            );
        }
    }
}

#[test]
fn engine_bench_against_an_endpoint_writes_plausible_per_step_figures() {
    let server = start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let run = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "engine-bench",
            "--endpoint",
            &server.url,
            "--rates",
            "100,200",
            "--step",
            "1s",
            "--tokens",
            "8",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("ceiling"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert!(v["faultline_version"].is_string());
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (s, rate) in steps.iter().zip([100.0, 200.0]) {
        let f = |k: &str| {
            s[k].as_f64()
                .unwrap_or_else(|| panic!("{k} missing in {s}"))
        };
        assert_eq!(f("target_rate"), rate);
        // A 1 s step at these rates sends every request; the server answers all of them.
        assert!(f("achieved_rate") > 0.9 * rate, "{s}");
        assert_eq!(f("errors"), 0.0, "{s}");
        assert_eq!(f("output_tokens"), 8.0 * f("requests"), "{s}");
        assert!(f("client_cpu_us_per_request") > 0.0, "{s}");
        assert!(f("client_cpu_s_per_million_tokens") > 0.0, "{s}");
        assert!(f("peak_connections") >= 1.0, "{s}");
        // The server answers GET /cpu, so its CPU is known and it did some work.
        assert!(f("server_cpu_s") > 0.0, "{s}");
        assert!(f("dispatch_lag_p50_ms") <= f("dispatch_lag_p99_ms"), "{s}");
        assert!(
            f("ttft_p50_ms") > 0.0 && f("ttft_p50_ms") <= f("ttft_p99_ms"),
            "{s}"
        );
    }
}
