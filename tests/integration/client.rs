//! The client against real sockets: small servers on 127.0.0.1 that write raw HTTP/1.1 bytes,
//! well-formed or not, so that each outcome class is produced the way a real server (or a real
//! fault) would produce it, and the measured numbers can be checked against known delays.

use faultline::load::client::{Api, ApiKey, Client, ClientConfig, ClientError};
use faultline::load::record::{Outcome, RequestRecord, TokenSource};
use faultline::load::workload::RequestSpec;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod outcomes;
mod secrets;

// ---- a scripted raw HTTP server ----

/// One thing the server does after reading a request.
#[derive(Clone)]
enum Step {
    /// Write these bytes at once.
    Write(Vec<u8>),
    /// Write these bytes one at a time, each flushed on its own.
    Dribble(Vec<u8>),
    Sleep(Duration),
    /// Keep the connection open and silent.
    Hang,
    /// Close with a TCP RST (SO_LINGER 0).
    Reset,
    /// Read the next request on this connection (keep-alive).
    KeepAlive,
}

struct Server {
    base: String,
    /// Every request head and body received, as text.
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

/// Starts a server that answers every request with `script(request)`; a script that does not
/// end in `Hang` or `KeepAlive` closes the connection (FIN) when done.
async fn serve(script: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    let (reqs, conns) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let (script, reqs) = (script.clone(), reqs.clone());
            tokio::spawn(async move { handle(sock, &*script, &reqs).await });
        }
    });
    Server {
        base,
        requests,
        connections,
    }
}

async fn handle(
    mut sock: TcpStream,
    script: &(dyn Fn(&str) -> Vec<Step> + Send + Sync),
    reqs: &Mutex<Vec<String>>,
) {
    sock.set_nodelay(true).unwrap();
    'conn: loop {
        // Read the whole request first: closing with unread input would send an RST.
        let Some(req) = read_request(&mut sock).await else {
            return;
        };
        reqs.lock().unwrap().push(req.clone());
        for step in script(&req) {
            let ok = match step {
                Step::Write(b) => sock.write_all(&b).await.is_ok(),
                Step::Dribble(b) => {
                    let mut ok = true;
                    for byte in b {
                        ok &= sock.write_all(&[byte]).await.is_ok();
                        tokio::task::yield_now().await;
                    }
                    ok
                }
                Step::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    true
                }
                Step::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                Step::Reset => {
                    let _ = sock.set_zero_linger();
                    return;
                }
                Step::KeepAlive => continue 'conn,
            };
            if !ok {
                return;
            }
        }
        let _ = sock.shutdown().await;
        return;
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

// ---- response builders ----

const SSE_CHUNKED: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
const SSE_CLOSE_DELIMITED: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
const CHUNKED_END: &str = "0\r\n\r\n";

fn w(s: impl AsRef<[u8]>) -> Step {
    Step::Write(s.as_ref().to_vec())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One chunk of a chunked body.
fn chunk(data: impl AsRef<[u8]>) -> Vec<u8> {
    let data = data.as_ref();
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A body split into one chunk per byte.
fn one_byte_chunks(data: &str) -> Vec<u8> {
    data.as_bytes().iter().flat_map(|b| chunk([*b])).collect()
}

fn event(json: &str) -> String {
    format!("data: {json}\n\n")
}

/// A `/v1/completions` stream chunk.
fn text(t: &str) -> String {
    event(&format!(
        r#"{{"id":"c1","object":"text_completion","choices":[{{"index":0,"text":"{t}","finish_reason":null}}]}}"#
    ))
}

fn finish(reason: &str) -> String {
    event(&format!(
        r#"{{"choices":[{{"index":0,"text":"","finish_reason":"{reason}"}}]}}"#
    ))
}

fn usage(prompt: u64, completion: u64) -> String {
    event(&format!(
        r#"{{"choices":[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
        prompt + completion
    ))
}

const DONE: &str = "data: [DONE]\n\n";

/// A fixed-length response.
fn response(status: &str, content_type: &str, body: &str) -> Step {
    w(format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
}

// ---- client helpers ----

fn client(base: &str, tweak: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut cfg = ClientConfig::new(base, Api::Completions, "test-model");
    cfg.timeout = Duration::from_secs(5);
    cfg.connect_timeout = Duration::from_secs(2);
    tweak(&mut cfg);
    Client::new(cfg, Instant::now()).unwrap()
}

fn spec() -> RequestSpec {
    RequestSpec {
        class: Arc::from("chat"),
        prompt: "hello".into(),
        input_tokens: 7,
        max_tokens: 16,
    }
}

/// Sends one request intended to start now; returns the record and the gaps handed out.
async fn send(c: &Client) -> (RequestRecord, Vec<u64>) {
    send_intended(c, Instant::now()).await
}

async fn send_intended(c: &Client, intended: Instant) -> (RequestRecord, Vec<u64>) {
    let s = spec();
    let body = c.body(&s);
    let mut gaps = Vec::new();
    let rec = c.send(42, &s, body, intended, |g| gaps.push(g)).await;
    (rec, gaps)
}

fn assert_between(what: &str, v: u64, lo: Duration, hi: Duration) {
    let (lo, hi) = (lo.as_micros() as u64, hi.as_micros() as u64);
    assert!(lo <= v && v <= hi, "{what} = {v} µs, expected {lo}..={hi}");
}

fn ok_stream() -> String {
    [text("a"), text("b"), text("c"), finish("stop"), DONE.into()].concat()
}

// ---- outcomes ----

#[tokio::test]
async fn valid_chunked_stream_is_ok_and_counts_tokens_from_the_stream() {
    let srv = serve(|_| vec![w(SSE_CHUNKED), w(chunk(ok_stream())), w(CHUNKED_END)]).await;
    let (rec, gaps) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(rec.error, None);
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (3, TokenSource::Stream)
    );
    assert_eq!(rec.input_tokens, 7, "no usage: the spec's estimate");
    assert_eq!(rec.finish_reason.as_deref(), Some("stop"));
    assert_eq!(rec.itl_count, 2);
    assert_eq!(gaps.len(), 2);
    assert_eq!((rec.id, rec.class.as_str()), (42, "chat"));
    let ttft = rec.ttft_us.unwrap();
    assert!(ttft <= rec.e2e_us && rec.dispatch_lag_us <= ttft, "{rec:?}");
}

#[tokio::test]
async fn stream_with_usage_takes_counts_from_usage() {
    let body = [
        text("a"),
        text("b"),
        finish("length"),
        usage(11, 5),
        DONE.into(),
    ]
    .concat();
    let srv = serve(move |_| vec![w(SSE_CHUNKED), w(chunk(&body)), w(CHUNKED_END)]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (5, TokenSource::Usage)
    );
    assert_eq!(rec.input_tokens, 11);
    assert_eq!(rec.finish_reason.as_deref(), Some("length"));
}

#[tokio::test]
async fn request_body_asks_for_usage_when_streaming() {
    let srv = serve(|_| vec![w(SSE_CHUNKED), w(chunk(ok_stream())), w(CHUNKED_END)]).await;
    send(&client(&srv.base, |_| {})).await;
    let req = srv.requests.lock().unwrap()[0].clone();
    assert!(
        req.starts_with("POST /v1/completions HTTP/1.1\r\n"),
        "{req}"
    );
    let body = &req[req.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["model"], "test-model");
    assert_eq!(v["max_tokens"], 16);
}

#[tokio::test]
async fn chunk_with_several_tokens_counts_them_and_splits_its_gap() {
    // vLLM continuous_usage_stats: cumulative usage in every chunk.
    let ev = |t: &str, n: u64| {
        event(&format!(
            r#"{{"choices":[{{"index":0,"text":"{t}"}}],"usage":{{"prompt_tokens":4,"completion_tokens":{n}}}}}"#
        ))
    };
    let srv = serve(move |_| {
        vec![
            w(SSE_CHUNKED),
            w(chunk(ev("a", 1))),
            Step::Sleep(ms(60)),
            w(chunk(ev("bcd", 4))),
            w(chunk(finish("stop") + DONE)),
            w(CHUNKED_END),
        ]
    })
    .await;
    let (rec, gaps) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (4, TokenSource::Usage)
    );
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    assert!(gaps.iter().all(|g| *g == gaps[0]), "{gaps:?}");
    assert_between("split gap", gaps[0], ms(60) / 3, ms(400) / 3);
    assert_eq!(rec.itl_count, 3);
}

#[tokio::test]
async fn slow_byte_at_a_time_stream_is_ok_with_ttft_and_itl_matching_the_delays() {
    // One byte per HTTP chunk (so "é" is split mid-character), 80 ms before each event.
    let events = [
        text("h\u{e9}"),
        text("l"),
        text("o"),
        finish("stop"),
        DONE.to_owned(),
    ];
    let srv = serve(move |_| {
        let mut steps = vec![w(SSE_CHUNKED)];
        for e in &events {
            steps.push(Step::Sleep(ms(80)));
            steps.push(Step::Dribble(one_byte_chunks(e)));
        }
        steps.push(w(CHUNKED_END));
        steps
    })
    .await;
    let (rec, gaps) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (3, TokenSource::Stream)
    );
    assert_between("ttft", rec.ttft_us.unwrap(), ms(80), ms(600));
    assert_eq!(gaps.len(), 2);
    for g in &gaps {
        assert_between("gap", *g, ms(80), ms(600));
    }
    assert_between("e2e", rec.e2e_us, ms(5 * 80), ms(3000));
    assert_eq!(rec.itl_max_us, *gaps.iter().max().unwrap());
    assert_eq!(rec.itl_mean_us, gaps.iter().sum::<u64>() / 2);
}

#[tokio::test]
async fn crlf_line_endings_in_a_chunked_stream_are_understood() {
    let body = ok_stream().replace('\n', "\r\n");
    let srv = serve(move |_| {
        let mut steps = vec![w(SSE_CHUNKED)];
        // Cut every 7 bytes, so some cuts fall between \r and \n.
        for piece in body.as_bytes().chunks(7) {
            steps.push(w(chunk(piece)));
        }
        steps.push(w(CHUNKED_END));
        steps
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(rec.output_tokens, 3);
}

#[tokio::test]
async fn chat_stream_with_role_chunk_counts_only_content() {
    let d = |c: &str| event(&format!(r#"{{"choices":[{{"index":0,"delta":{c}}}]}}"#));
    let body = [
        d(r#"{"role":"assistant","content":""}"#),
        d(r#"{"content":"Hi"}"#),
        d(r#"{"content":" there"}"#),
        event(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
        DONE.into(),
    ]
    .concat();
    let srv = serve(move |_| vec![w(SSE_CLOSE_DELIMITED), w(&body)]).await;
    let (rec, _) = send(&client(&srv.base, |c| c.api = Api::Chat)).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(rec.output_tokens, 2);
    let req = srv.requests.lock().unwrap()[0].clone();
    assert!(req.starts_with("POST /v1/chat/completions "), "{req}");
}

#[tokio::test]
async fn garbage_instead_of_http_is_invalid_response() {
    let srv = serve(|_| vec![w("SSH-2.0-OpenSSH_9.2p1 Debian\r\n\r\n"), Step::Hang]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("invalid http response"),
        "{rec:?}"
    );
    assert_eq!(rec.ttft_us, None);
}

#[tokio::test]
async fn html_page_behind_a_200_is_invalid_response() {
    let page = "<html>\n<head><title>Gateway</title></head>\n<body>oops</body>\n</html>\n";
    let srv = serve(move |_| vec![response("200 OK", "text/html", page)]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("not an event stream"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn http_500_is_http_status_with_a_body_snippet() {
    let body = r#"{"error":{"message":"engine dead","type":"InternalServerError"}}"#;
    let srv = serve(move |_| {
        vec![response(
            "500 Internal Server Error",
            "application/json",
            body,
        )]
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::HttpStatus { code: 500 });
    let err = rec.error.unwrap();
    assert!(
        err.starts_with("http 500: ") && err.contains("engine dead"),
        "{err}"
    );
    assert_eq!((rec.ttft_us, rec.output_tokens), (None, 0));
}

#[tokio::test]
async fn http_429_is_http_status() {
    let srv = serve(|_| {
        vec![w(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n",
        )]
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::HttpStatus { code: 429 });
    assert_eq!(rec.error.as_deref(), Some("http 429"));
}

#[tokio::test]
async fn server_that_accepts_and_hangs_is_a_timeout_at_the_timeout() {
    let srv = serve(|_| vec![Step::Hang]).await;
    let c = client(&srv.base, |c| c.timeout = ms(300));
    let (rec, _) = send(&c).await;
    assert_eq!(rec.outcome, Outcome::Timeout, "{rec:?}");
    assert_between("e2e", rec.e2e_us, ms(300), ms(800));
    assert_eq!(
        rec.error.as_deref(),
        Some("no response headers within 300ms")
    );
}

#[tokio::test]
async fn stream_that_stalls_is_a_timeout_that_keeps_what_arrived() {
    let srv = serve(|_| vec![w(SSE_CHUNKED), w(chunk(text("a") + &text("b"))), Step::Hang]).await;
    let c = client(&srv.base, |c| c.timeout = ms(300));
    let (rec, _) = send(&c).await;
    assert_eq!(rec.outcome, Outcome::Timeout, "{rec:?}");
    assert_eq!(rec.output_tokens, 2);
    assert!(rec.ttft_us.unwrap() < rec.e2e_us);
    assert!(
        rec.error.as_deref().unwrap().starts_with("stream stalled"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn timeout_runs_from_the_send_but_latency_from_the_intended_start() {
    let srv = serve(|_| vec![Step::Hang]).await;
    let c = client(&srv.base, |c| c.timeout = ms(200));
    let intended = Instant::now() - ms(1000); // the engine was a second late
    let (rec, _) = send_intended(&c, intended).await;
    assert_eq!(rec.outcome, Outcome::Timeout);
    assert_between("dispatch lag", rec.dispatch_lag_us, ms(1000), ms(1500));
    assert_between("e2e", rec.e2e_us, ms(1200), ms(1800));
}

#[tokio::test]
async fn chunked_stream_cut_off_mid_body_is_connection_reset() {
    // The chunked framing tells the transport the body is incomplete: the connection broke.
    let srv = serve(|_| vec![w(SSE_CHUNKED), w(chunk(text("a") + &text("b")))]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::ConnectionReset, "{rec:?}");
    assert_eq!(rec.output_tokens, 2);
}

#[tokio::test]
async fn stream_reset_mid_body_is_connection_reset() {
    let srv = serve(|_| {
        vec![
            w(SSE_CHUNKED),
            w(chunk(text("a"))),
            Step::Sleep(ms(20)),
            Step::Reset,
        ]
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::ConnectionReset, "{rec:?}");
    assert_eq!(rec.output_tokens, 1);
}

#[tokio::test]
async fn close_delimited_stream_ending_without_done_is_stream_ended_early() {
    // Without framing, EOF is a legal end of the body: only the missing [DONE] and
    // finish_reason show that the answer was cut short.
    let srv = serve(|_| {
        vec![
            w(SSE_CLOSE_DELIMITED),
            w(text("a") + &text("b") + "data: {\"cho"),
        ]
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::StreamEndedEarly, "{rec:?}");
    assert_eq!(rec.output_tokens, 2);
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("in the middle of an event"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn finish_reason_without_done_is_ok() {
    let srv = serve(|_| vec![w(SSE_CLOSE_DELIMITED), w(text("a") + &finish("stop"))]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
}

#[tokio::test]
async fn connection_closed_before_any_response_is_connection_reset() {
    let srv = serve(|_| vec![]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::ConnectionReset, "{rec:?}");
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("before the response headers"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn error_object_mid_stream_is_invalid_response_with_its_message() {
    let body = text("a") + &event(r#"{"error":{"message":"kv cache exhausted","code":500}}"#);
    let srv = serve(move |_| vec![w(SSE_CHUNKED), w(chunk(&body)), Step::Hang]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert_eq!(
        rec.error.as_deref(),
        Some("error in stream: kv cache exhausted")
    );
    assert_eq!(rec.output_tokens, 1);
}

#[tokio::test]
async fn bad_json_in_an_event_is_invalid_response() {
    let srv = serve(|_| {
        vec![
            w(SSE_CHUNKED),
            w(chunk(event("{\"choices\": [oops"))),
            Step::Hang,
        ]
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert!(rec.error.as_deref().unwrap().contains("[oops"), "{rec:?}");
}

#[tokio::test]
async fn connection_refused_is_connect_error() {
    let base = refused_base().await;
    let (rec, _) = send(&client(&base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::ConnectError, "{rec:?}");
    assert!(
        rec.error.as_deref().unwrap().contains("connection refused"),
        "{rec:?}"
    );
}

/// A loopback address where nothing listens.
async fn refused_base() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[tokio::test]
async fn done_without_end_of_body_is_ok_and_e2e_stops_at_done() {
    let srv = serve(|_| vec![w(SSE_CHUNKED), w(chunk(ok_stream())), Step::Hang]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert!(rec.e2e_us < 200_000, "{rec:?}");
}

#[tokio::test]
async fn streaming_request_answered_with_plain_json_is_measured_as_whole() {
    let body = r#"{"choices":[{"index":0,"text":"hi","finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":9}}"#;
    let srv = serve(move |_| vec![response("200 OK", "application/json", body)]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(rec.ttft_us, Some(rec.e2e_us));
    assert_eq!(
        (rec.output_tokens, rec.token_source, rec.input_tokens),
        (9, TokenSource::Usage, 3)
    );
}

#[tokio::test]
async fn non_streaming_response_has_ttft_equal_to_e2e_and_usage_counts() {
    let body = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":16}}"#;
    let srv = serve(move |_| {
        vec![
            Step::Sleep(ms(50)),
            response("200 OK", "application/json", body),
        ]
    })
    .await;
    let c = client(&srv.base, |c| {
        c.stream = false;
        c.api = Api::Chat;
    });
    let (rec, gaps) = send(&c).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(rec.ttft_us, Some(rec.e2e_us));
    assert_between("e2e", rec.e2e_us, ms(50), ms(1000));
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (16, TokenSource::Usage)
    );
    assert_eq!(rec.finish_reason.as_deref(), Some("length"));
    assert!(gaps.is_empty());
}

#[tokio::test]
async fn non_streaming_response_without_usage_reports_zero_tokens_not_a_guess() {
    let body = r#"{"choices":[{"index":0,"text":"a b c","finish_reason":"stop"}]}"#;
    let srv = serve(move |_| vec![response("200 OK", "application/json", body)]).await;
    let (rec, _) = send(&client(&srv.base, |c| c.stream = false)).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (0, TokenSource::Stream)
    );
}

#[tokio::test]
async fn connections_are_reused_across_requests() {
    let srv = serve(|_| {
        vec![
            w(SSE_CHUNKED),
            w(chunk(ok_stream())),
            w(CHUNKED_END),
            Step::KeepAlive,
        ]
    })
    .await;
    let c = client(&srv.base, |_| {});
    for _ in 0..50 {
        let (rec, _) = send(&c).await;
        assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    }
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_concurrent_request_gets_exactly_one_record() {
    // A server that misbehaves differently on each request.
    let n = AtomicUsize::new(0);
    let srv = serve(move |_| match n.fetch_add(1, Ordering::SeqCst) % 5 {
        0 => vec![w(SSE_CHUNKED), w(chunk(ok_stream())), w(CHUNKED_END)],
        1 => vec![response("503 Service Unavailable", "text/plain", "busy")],
        2 => vec![w("garbage\r\n\r\n")],
        3 => vec![w(SSE_CHUNKED), w(chunk(text("a")))],
        _ => vec![Step::Hang],
    })
    .await;
    let c = client(&srv.base, |c| c.timeout = ms(500));
    let tasks: Vec<_> = (0..100u64)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let s = spec();
                c.send(i, &s, c.body(&s), Instant::now(), |_| {}).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("no panic").id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
}

// ---- check ----

#[tokio::test]
async fn check_lists_the_served_models() {
    let body = r#"{"object":"list","data":[{"id":"llama-3-8b","object":"model"},{"id":"qwen"}]}"#;
    let srv = serve(move |_| vec![response("200 OK", "application/json", body)]).await;
    let models = client(&format!("{}/v1/", srv.base), |_| {})
        .check()
        .await
        .unwrap();
    assert_eq!(models, vec!["llama-3-8b", "qwen"]);
    assert!(srv.requests.lock().unwrap()[0].starts_with("GET /v1/models HTTP/1.1\r\n"));
}

#[tokio::test]
async fn check_names_the_url_and_the_reason_when_unreachable() {
    let base = refused_base().await;
    let err = client(&base, |_| {}).check().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach {base}/v1/models: connection refused")
    );
}

#[tokio::test]
async fn check_reports_a_non_2xx_status() {
    let srv = serve(|_| vec![response("404 Not Found", "text/plain", "no such route")]).await;
    let err = client(&srv.base, |_| {}).check().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Status { code: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no such route"), "{err}");
}

// ---- secrets ----

#[tokio::test]
async fn api_key_is_sent_as_bearer_and_never_printed() {
    const KEY: &str = "sk-faultline-test-7f3a9c";
    let srv = serve(|req: &str| {
        if req.contains("/models") {
            vec![response(
                "401 Unauthorized",
                "text/plain",
                "bad credentials",
            )]
        } else {
            vec![w(SSE_CHUNKED), w(chunk(ok_stream())), w(CHUNKED_END)]
        }
    })
    .await;
    let mut cfg = ClientConfig::new(srv.base.clone(), Api::Completions, "m");
    cfg.api_key = Some(ApiKey::new(KEY).unwrap());
    cfg.headers = vec![("x-tenant".into(), "t-secret-1".into())];
    let c = Client::new(cfg.clone(), Instant::now()).unwrap();
    let (rec, _) = send(&c).await;
    assert_eq!(rec.outcome, Outcome::Ok);
    let req = srv.requests.lock().unwrap()[0].to_lowercase();
    assert!(
        req.contains(&format!("authorization: bearer {}\r\n", KEY.to_lowercase())),
        "{req}"
    );
    assert!(req.contains("x-tenant: t-secret-1\r\n"), "{req}");

    let check_err = c.check().await.unwrap_err();
    let refused = Client::new(
        ClientConfig {
            base_url: refused_base().await,
            ..cfg.clone()
        },
        Instant::now(),
    )
    .unwrap();
    let (failed, _) = send(&refused).await;
    let printed = [
        format!("{cfg:?}"),
        format!("{c:?}"),
        format!("{rec:?}"),
        format!("{failed:?}"),
        serde_json::to_string(&failed).unwrap(),
        format!("{check_err} {check_err:?}"),
    ];
    for p in printed {
        assert!(
            !p.contains(KEY) && !p.contains("t-secret-1"),
            "secret in: {p}"
        );
    }
}

#[tokio::test]
async fn api_key_from_env_reads_the_named_variable() {
    // SAFETY: only this test uses this variable name.
    unsafe { std::env::set_var("FAULTLINE_TEST_KEY_VAR", "  sk-env  ") };
    let k = ApiKey::from_env("FAULTLINE_TEST_KEY_VAR").unwrap().unwrap();
    assert_eq!(format!("{k}"), "***");
    unsafe { std::env::set_var("FAULTLINE_TEST_KEY_VAR", "") };
    let e = ApiKey::from_env("FAULTLINE_TEST_KEY_VAR").unwrap_err();
    assert!(
        e.to_string()
            .contains("\"FAULTLINE_TEST_KEY_VAR\" holding the api key is empty")
    );
}

#[tokio::test]
async fn error_status_with_a_stalled_body_is_still_http_status() {
    let srv = serve(|_| {
        vec![
            w("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\n\r\npartial"),
            Step::Hang,
        ]
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |c| c.timeout = ms(3000))).await;
    assert_eq!(rec.outcome, Outcome::HttpStatus { code: 503 }, "{rec:?}");
    assert_eq!(rec.error.as_deref(), Some("http 503"));
    assert!(rec.e2e_us < 2_000_000, "{rec:?}");
}

#[tokio::test]
async fn connect_timeout_is_connect_error_not_timeout() {
    // A listener whose accept queue is full drops further SYNs, as a partitioned node does.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(ms(100), TcpStream::connect(addr)).await {
            fillers.push(s);
        }
    }
    let c = client(&format!("http://{addr}"), |c| {
        c.connect_timeout = ms(200);
        c.timeout = ms(2000);
    });
    let (rec, _) = send(&c).await;
    assert_eq!(rec.outcome, Outcome::ConnectError, "{rec:?}");
    assert_eq!(rec.error.as_deref(), Some("connect timed out after 200ms"));
    assert_between("e2e", rec.e2e_us, ms(200), ms(1000));
    drop(listener);
}
