//! `faultline-zero-sse`: a minimal OpenAI-compatible streaming server that answers instantly,
//! for measuring the load client alone (`faultline engine-bench --endpoint`).
//!
//! Why it exists and why it is this small: faultline's own sim does work per token (routing,
//! metrics, fault state), so a ceiling measured against it is partly the sim's. This binary
//! shares no code with faultline: it reads `max_tokens` and `stream` from the body and answers
//! `/v1/chat/completions` and `/v1/completions` with exactly `max_tokens` content events (the
//! last with `finish_reason: "length"`), a usage event when `stream_options.include_usage` is
//! set, and `data: [DONE]`. A body is built once per (api, tokens, usage) and then reused, so the
//! server spends its CPU on HTTP and the socket, not on formatting. It runs one thread by default
//! so that on a 2-core machine the other core is the client's.
//!
//! `GET /cpu` answers `{"cpu_seconds": …, "requests": …}` (this process's user+system CPU), so a
//! benchmark can print server CPU-seconds; the same figures are printed to stderr on exit.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

static REQUESTS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static BODIES: RefCell<HashMap<(bool, u32, bool, bool), Bytes>> = RefCell::new(HashMap::new());
}

#[derive(serde::Deserialize)]
struct Body {
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The whole answer for one (chat?, tokens, usage?, stream?) combination.
fn build(chat: bool, n: u32, usage: bool, stream: bool) -> Bytes {
    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let usage_json = format!(
        r#"{{"prompt_tokens":1,"completion_tokens":{n},"total_tokens":{}}}"#,
        n + 1
    );
    if !stream {
        let text = "tok ".repeat(n as usize);
        let choice = if chat {
            format!(
                r#"{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"length"}}"#
            )
        } else {
            format!(r#"{{"index":0,"text":"{text}","finish_reason":"length"}}"#)
        };
        let object = if chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        return Bytes::from(format!(
            r#"{{"id":"zero","object":"{object}","model":"zero","choices":[{choice}],"usage":{usage_json}}}"#
        ));
    }
    let mut out = String::with_capacity(160 * (n as usize + 2));
    for i in 0..n {
        let finish = if i + 1 == n { r#""length""# } else { "null" };
        let choice = if chat {
            format!(r#"{{"index":0,"delta":{{"content":"tok"}},"finish_reason":{finish}}}"#)
        } else {
            format!(r#"{{"index":0,"text":"tok","finish_reason":{finish}}}"#)
        };
        out.push_str(&format!(
            "data: {{\"id\":\"zero\",\"object\":\"{object}\",\"model\":\"zero\",\"choices\":[{choice}]}}\n\n"
        ));
    }
    if usage {
        out.push_str(&format!(
            "data: {{\"id\":\"zero\",\"object\":\"{object}\",\"model\":\"zero\",\"choices\":[],\"usage\":{usage_json}}}\n\n"
        ));
    }
    out.push_str("data: [DONE]\n\n");
    Bytes::from(out)
}

fn reply(status: StatusCode, ctype: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let chat = match (&method, path.as_str()) {
        (&Method::GET, "/v1/models" | "/models") => {
            return Ok(reply(
                StatusCode::OK,
                "application/json",
                Bytes::from_static(br#"{"object":"list","data":[{"id":"zero","object":"model","owned_by":"faultline-zero-sse"}]}"#),
            ));
        }
        (&Method::GET, "/cpu") => {
            let body = format!(
                r#"{{"cpu_seconds":{},"requests":{}}}"#,
                cpu_seconds(),
                REQUESTS.load(Ordering::Relaxed)
            );
            return Ok(reply(StatusCode::OK, "application/json", Bytes::from(body)));
        }
        (&Method::POST, "/v1/chat/completions") => true,
        (&Method::POST, "/v1/completions") => false,
        _ => {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                "application/json",
                Bytes::from_static(br#"{"error":{"message":"not found"}}"#),
            ));
        }
    };
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", Bytes::new())),
    };
    let body: Body = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            let msg = serde_json::json!({"error": {"message": format!("bad request body: {e}")}});
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                "application/json",
                Bytes::from(msg.to_string()),
            ));
        }
    };
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let n = body.max_tokens.unwrap_or(16).max(1);
    let usage = body.stream_options.is_some_and(|o| o.include_usage);
    let key = (chat, n, usage, body.stream);
    let out = BODIES.with(|b| {
        b.borrow_mut()
            .entry(key)
            .or_insert_with(|| build(chat, n, usage, body.stream))
            .clone()
    });
    let ctype = if body.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    Ok(reply(StatusCode::OK, ctype, out))
}

fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_default(),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| {
                        eprintln!("--threads needs a positive number");
                        std::process::exit(2)
                    })
            }
            "-h" | "--help" => {
                println!(
                    "usage: faultline-zero-sse [--listen ADDR] [--threads N]\n  a zero-latency OpenAI-compatible SSE server for benchmarking the client"
                );
                return Ok(());
            }
            other => {
                eprintln!("unknown argument {other:?} (try --help)");
                std::process::exit(2)
            }
        }
    }
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}"))
        })?;
        println!("listening on http://{}", listener.local_addr()?);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                acc = listener.accept() => {
                    let Ok((stream, _)) = acc else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                            .await;
                    });
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        eprintln!(
            "cpu_seconds {:.3} requests {}",
            cpu_seconds(),
            REQUESTS.load(Ordering::Relaxed)
        );
        Ok(())
    })
}
