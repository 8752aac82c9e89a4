//! The sim over real sockets on 127.0.0.1, with a real HTTP client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{SimConfig, SimHandle, WorkerHealth, start};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

async fn sim(config: SimConfig) -> SimHandle {
    start(config, SocketAddr::from(ANY_PORT))
        .await
        .expect("sim starts")
}

/// A plain-HTTP client.
fn client() -> reqwest::Client {
    crate::tls::http_client_builder(&Default::default())
        .unwrap()
        .build()
        .unwrap()
}

async fn get(url: String) -> reqwest::Result<reqwest::Response> {
    client().get(url).send().await
}

fn small() -> SimConfig {
    SimConfig::preset("small").expect("preset")
}

async fn post(h: &SimHandle, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", h.url()))
        .json(&body)
        .send()
        .await
        .expect("request sent")
}

fn data_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

async fn metric(h: &SimHandle, series: &str) -> f64 {
    let text = get(format!("{}/metrics", h.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn streamed_completion_has_every_token_usage_and_done() {
    let h = sim(small()).await;
    let resp = post(
        &h,
        "/v1/completions",
        json!({"model": "sim-small", "prompt": "x".repeat(40), "max_tokens": 5,
               "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = data_events(&resp.text().await.unwrap());
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(events[6], "[DONE]");
    let usage: Value = serde_json::from_str(&events[5]).unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], 10);
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(metric(&h, "vllm:generation_tokens_total").await, 5.0);
    assert_eq!(metric(&h, "vllm:request_success_total").await, 1.0);
    assert_eq!(
        metric(&h, "vllm:time_to_first_token_seconds_count").await,
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn chat_works_streamed_and_not() {
    let h = sim(small()).await;
    let messages =
        json!([{"role": "system", "content": "abcd"}, {"role": "user", "content": "efgh"}]);
    let resp = post(
        &h,
        "/v1/chat/completions",
        json!({"model": "sim-small", "messages": messages, "max_tokens": 3, "stream": true}),
    )
    .await;
    let events = data_events(&resp.text().await.unwrap());
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events.len(), 5, "role + 3 tokens + [DONE]: {events:?}");

    let resp = post(
        &h,
        "/v1/chat/completions",
        json!({"model": "sim-small", "messages": messages, "max_tokens": 3}),
    )
    .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["choices"][0]["message"]["content"], "tok tok tok ");
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_model_is_404_and_bad_json_is_400() {
    let h = sim(small()).await;
    let resp = post(
        &h,
        "/v1/completions",
        json!({"model": "gpt-9", "prompt": "hi"}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
    let resp = client()
        .post(format!("{}/v1/completions", h.url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let models: Value = get(format!("{}/v1/models", h.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "sim-small");
    h.shutdown().await;
}

#[tokio::test]
async fn health_is_503_when_no_worker_is_healthy() {
    let h = sim(small()).await;
    let health = || async { get(format!("{}/health", h.url())).await.unwrap().status() };
    assert_eq!(health().await, 200);
    h.set_worker_health(0, WorkerHealth::Unavailable).unwrap();
    assert_eq!(health().await, 503);
    let resp = post(&h, "/v1/completions", json!({"prompt": "hi"})).await;
    assert_eq!(resp.status(), 503);
    assert!(h.set_worker_health(7, WorkerHealth::Healthy).is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn full_queue_is_429_and_queue_timeout_is_503() {
    let mut config = small();
    config.max_batch_size = 1;
    config.max_queue_len = Some(1);
    config.queue_timeout = Some(Duration::from_millis(200));
    let h = sim(config).await;
    let long = json!({"prompt": "x", "max_tokens": 100, "stream": true});
    let running = post(&h, "/v1/completions", long.clone()).await;
    assert_eq!(running.status(), 200);
    let (queued, refused) = tokio::join!(post(&h, "/v1/completions", long.clone()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        post(&h, "/v1/completions", long.clone()).await
    });
    assert_eq!(refused.status(), 429);
    assert_eq!(queued.status(), 503, "timed out in the queue");
    drop(running);
    h.shutdown().await;
}

#[tokio::test]
async fn client_leaving_mid_stream_frees_its_batch_slot() {
    let h = sim(small()).await;
    let resp = post(
        &h,
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 2000, "stream": true}),
    )
    .await;
    let mut body = resp.bytes_stream();
    body.next().await.expect("first chunk").expect("ok");
    assert_eq!(metric(&h, "vllm:num_requests_running").await, 1.0);
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(2);
    while metric(&h, "vllm:num_requests_running").await != 0.0 {
        assert!(Instant::now() < deadline, "sequence still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_stops_serving() {
    let h = sim(small()).await;
    let url = h.url();
    let resp = post(
        &h,
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 5000, "stream": true}),
    )
    .await;
    let reader = tokio::spawn(async move { resp.text().await });
    tokio::time::timeout(Duration::from_secs(5), h.shutdown())
        .await
        .expect("shutdown finishes");
    let ended = tokio::time::timeout(Duration::from_secs(5), reader).await;
    assert!(ended.is_ok(), "stream ended");
    assert!(get(format!("{url}/health")).await.is_err());
}

#[tokio::test]
async fn metrics_have_help_type_and_per_gpu_series() {
    let h = sim(SimConfig::default()).await;
    let text = get(format!("{}/metrics", h.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:gpu_cache_usage_perc",
        "vllm:time_to_first_token_seconds",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_FB_USED",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    assert!(text.contains(r#"vllm:num_requests_running{model_name="sim-llama-70b",worker="1"} 0"#));
    assert_eq!(text.matches("DCGM_FI_DEV_FB_USED{gpu=").count(), 4);
    assert!(text.contains(r#"le="+Inf""#));
    h.shutdown().await;
}

#[tokio::test]
async fn zero_latency_answers_whole_stream_at_once() {
    let h = sim(SimConfig::default().zero_latency()).await;
    let t = Instant::now();
    let resp = post(
        &h,
        "/v1/completions",
        json!({"prompt": "hello", "max_tokens": 1000, "stream": true}),
    )
    .await;
    let events = data_events(&resp.text().await.unwrap());
    assert_eq!(events.len(), 1001);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(metric(&h, "vllm:generation_tokens_total").await, 1000.0);
    h.shutdown().await;
}

/// `cargo test --release --lib sim::http_tests::zero_latency_rate -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints the zero-latency request rate"]
async fn zero_latency_rate() {
    let h = sim(SimConfig::default().zero_latency()).await;
    let url = format!("{}/v1/completions", h.url());
    let (conns, per_conn) = (16, 20_000 / 16);
    let t = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = client();
                let body = json!({"model": "sim-llama-70b", "prompt": "x".repeat(400),
                    "max_tokens": 32, "stream": true,
                    "stream_options": {"include_usage": true}})
                .to_string();
                for _ in 0..per_conn {
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    let mut s = resp.bytes_stream();
                    let mut events = 0;
                    while let Some(chunk) = s.next().await {
                        events += chunk.unwrap().windows(2).filter(|w| w == b"\n\n").count();
                    }
                    assert_eq!(events, 34, "32 tokens, usage, [DONE]");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = conns * per_conn;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "zero-latency: {n} streamed 32-token requests over {conns} connections in {secs:.2} s = {:.0} req/s",
        n as f64 / secs
    );
    h.shutdown().await;
}

/// `cargo test --release --lib sim::http_tests::real_clock_curve -- --ignored --nocapture`:
/// the default preset over HTTP on the real clock (Poisson arrivals, the article's mix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes ~30 s: prints TTFT on the real clock"]
async fn real_clock_curve() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Exp};
    for rate in [5.0, 20.0, 30.0, 40.0] {
        let h = sim(SimConfig::default()).await;
        let url = format!("{}/v1/completions", h.url());
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let gaps = Exp::new(rate).unwrap();
        let (start, mut at, mut tasks) = (Instant::now(), 0.0, Vec::new());
        while at < 8.0 {
            at += gaps.sample(&mut rng);
            let (prompt, max) = super::tests::draw(&mut rng);
            let body = json!({"prompt": "x".repeat(prompt as usize * 4), "max_tokens": max, "stream": true});
            let (url, client) = (url.clone(), client());
            let due = start + Duration::from_secs_f64(at);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                let resp = client.post(url).json(&body).send().await.ok()?;
                if resp.status() != 200 {
                    return None;
                }
                let mut s = resp.bytes_stream();
                s.next().await;
                let ttft = due.elapsed().as_secs_f64();
                while s.next().await.is_some() {}
                Some(ttft)
            }));
        }
        let mut ttft = Vec::new();
        let n = tasks.len();
        for t in tasks {
            ttft.extend(t.await.ok().flatten());
        }
        ttft.sort_by(f64::total_cmp);
        let p = |q: f64| ttft[((ttft.len() - 1) as f64 * q) as usize] * 1e3;
        println!(
            "{rate} req/s: ttft p50 {:.0} ms p99 {:.0} ms, {} errors of {n}",
            p(0.5),
            p(0.99),
            n - ttft.len()
        );
        h.shutdown().await;
    }
}
