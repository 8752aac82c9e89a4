//! The HTTP surface: OpenAI-compatible completions and chat completions (streaming or not),
//! `/v1/models`, `/health` and `/metrics`.
//!
//! A streaming response's headers are sent with its first token, not before: that way every
//! refusal (no healthy worker, full queue, queue timeout) is an HTTP status a client can
//! classify, rather than an error hidden inside a 200 stream. Status codes:
//! - 400 bad JSON / missing fields / request longer than a worker's KV cache;
//! - 404 unknown model or path;
//! - 429 the chosen worker's queue holds `max_queue_len` requests (like TGI's "model is
//!   overloaded");
//! - 502 the worker it was routed to is dead (crashed, or restarting and not yet removed by the
//!   router's health checks) — what a gateway answers when its upstream refuses the connection
//!   or resets it before the response headers;
//! - 503 no healthy worker, the request waited past `queue_timeout`, or the sim shut down.
//!
//! A worker that dies mid-stream takes its streams with it: the connection is dropped without
//! the terminating chunk or `[DONE]`, as when a vLLM process crashes. A request routed to a
//! cut-off worker gets no byte at all until the worker is reconnected (then it is served) or the
//! client gives up; streams already running on it stall the same way (TCP holds the bytes).
//!
//! `GET /sim/events` is the ground truth (a JSON array of events), `GET /sim/workers` the
//! workers' states.
//!
//! Prompt length in tokens ≈ characters / 4 (rounded up; chat: all message contents summed).
//! The answer is always `max_tokens` tokens (default 16) with `finish_reason: "length"`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::watch;

use super::batch::Event;
use super::cluster::{Cluster, Refusal, Tokens, Worker};
use super::metrics;
use super::sse::{Api, Response};

pub(crate) struct AppState {
    pub cluster: Arc<Cluster>,
    /// The model name, JSON-quoted once.
    model_json: String,
}

pub(crate) fn router(cluster: Arc<Cluster>) -> Router {
    let model_json = serde_json::Value::from(cluster.config.model.as_str()).to_string();
    let state = Arc::new(AppState {
        cluster,
        model_json,
    });
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .route("/sim/events", get(sim_events))
        .route("/sim/workers", get(sim_workers))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such path") })
        .with_state(state)
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// An OpenAI error object with a status.
fn error(status: StatusCode, kind: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": status.as_u16() }
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn completions(State(s): State<Arc<AppState>>, body: Bytes) -> HttpResponse {
    serve(s, Api::Completions, body).await
}

async fn chat(State(s): State<Arc<AppState>>, body: Bytes) -> HttpResponse {
    serve(s, Api::Chat, body).await
}

fn prompt_tokens(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX).max(1)
}

async fn serve(s: Arc<AppState>, api: Api, body: Bytes) -> HttpResponse {
    let req: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("invalid request body: {e}"),
            );
        }
    };
    let cluster = &s.cluster;
    if let Some(model) = &req.model
        && *model != cluster.config.model
    {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("the model {model:?} does not exist"),
        );
    }
    let chars = match api {
        Api::Completions => req.prompt.as_ref().map(|p| p.chars().count()),
        Api::Chat => req.messages.as_ref().map(|m| {
            m.iter()
                .filter_map(|m| m.content.as_ref())
                .map(|c| c.chars().count())
                .sum()
        }),
    };
    let Some(chars) = chars else {
        let field = if api == Api::Chat {
            "messages"
        } else {
            "prompt"
        };
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("missing field {field:?}"),
        );
    };
    let max_tokens = req.max_tokens.or(req.max_completion_tokens).unwrap_or(16);
    if max_tokens == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens \"0\" must be at least 1",
        );
    }
    let stream = req.stream.unwrap_or(false);
    let usage = req
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let resp = Response::new(
        api,
        stream,
        &s.model_json,
        prompt_tokens(chars),
        max_tokens,
        usage,
    );

    if cluster.config.zero_latency {
        return match cluster.pick_round_robin() {
            Ok(w) => {
                w.stats.whole_request(resp.prompt_tokens, max_tokens);
                if stream {
                    sse_response(Body::from(resp.whole_stream()))
                } else {
                    json_response(resp.whole_json())
                }
            }
            Err(refusal) => refused(refusal),
        };
    }

    let (worker, mut tokens) = match cluster.submit(resp.prompt_tokens, max_tokens) {
        Ok(routed) => routed,
        Err(Refusal::Unreachable(i)) => {
            // No byte reaches the worker while it is cut off; the request goes through when
            // the network comes back (if the client is still waiting).
            let w = &cluster.workers[i];
            let _hanging = w.hang();
            if !w.reachable(&cluster.stop).await {
                return stopped();
            }
            match cluster.submit_to(i, resp.prompt_tokens, max_tokens) {
                Ok(routed) => routed,
                Err(refusal) => return refused(refusal),
            }
        }
        Err(refusal) => return refused(refusal),
    };
    let w = cluster.workers[worker].clone();
    // Wait for the first token (or the refusal) before answering.
    let event = tokens.recv().await;
    if !w.reachable(&cluster.stop).await {
        return stopped();
    }
    let first = match event {
        Some(Event::Token { last, .. }) => last,
        Some(Event::QueueTimeout) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_overloaded",
                "request timed out waiting in the queue",
            );
        }
        Some(Event::WorkerFailed) => return worker_died(),
        None => return stopped(),
    };
    if stream {
        let mut buf = String::with_capacity(512);
        resp.start(&mut buf);
        resp.token(&mut buf, first);
        let rest = token_stream(resp, tokens, first, w, cluster.stop.clone());
        let head =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(buf)) });
        sse_response(Body::from_stream(futures_util::StreamExt::chain(
            head, rest,
        )))
    } else {
        let mut done = first;
        while !done {
            match tokens.recv().await {
                Some(Event::Token { last, .. }) => done = last,
                Some(Event::WorkerFailed) => return worker_died(),
                _ => return stopped(),
            }
        }
        if !w.reachable(&cluster.stop).await {
            return stopped();
        }
        json_response(resp.whole_json())
    }
}

/// The rest of a stream: every token event becomes a chunk; the stream ends after the last one.
/// If the worker dies it ends with an error, which drops the connection without the terminating
/// chunk (as a crashed server would); if the sim shuts down it ends early without `[DONE]`.
/// While the worker is cut off, nothing is sent. Dropping it — the client went away — drops the
/// receiver, and the worker drops the sequence at its next step.
fn token_stream(
    resp: Response,
    tokens: Tokens,
    done: bool,
    worker: Arc<Worker>,
    stop: watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let state = if done { Flow::Done } else { Flow::Open };
    futures_util::stream::unfold((resp, tokens, state), move |(resp, mut tokens, state)| {
        let worker = worker.clone();
        let stop = stop.clone();
        async move {
            match state {
                Flow::Done => return None,
                Flow::Dead => {
                    let lost = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "the sim worker died mid-stream",
                    );
                    return Some((Err(lost), (resp, tokens, Flow::Done)));
                }
                Flow::Open => {}
            }
            let mut buf = String::with_capacity(256);
            let mut event = tokens.recv().await;
            if !worker.reachable(&stop).await {
                return None;
            }
            let mut next = Flow::Open;
            loop {
                match event {
                    Some(Event::Token { last, .. }) => {
                        resp.token(&mut buf, last);
                        if last {
                            next = Flow::Done;
                            break;
                        }
                    }
                    Some(Event::WorkerFailed) => {
                        next = Flow::Dead;
                        break;
                    }
                    Some(Event::QueueTimeout) | None if buf.is_empty() => return None,
                    _ => break,
                }
                event = tokens.try_recv().ok();
            }
            if buf.is_empty() {
                // Only `Dead` gets here: the error goes out on the next poll.
                return Some((Ok(Bytes::new()), (resp, tokens, next)));
            }
            Some((Ok(Bytes::from(buf)), (resp, tokens, next)))
        }
    })
}

/// Where a token stream stands.
#[derive(Clone, Copy)]
enum Flow {
    Open,
    Done,
    /// The worker died: the next item is the error that drops the connection.
    Dead,
}

fn sse_response(body: Body) -> HttpResponse {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json_response(body: String) -> HttpResponse {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn refused(refusal: Refusal) -> HttpResponse {
    match refusal {
        Refusal::NoHealthyWorker => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "no healthy worker",
        ),
        Refusal::QueueFull => error(
            StatusCode::TOO_MANY_REQUESTS,
            "server_overloaded",
            "the worker queue is full",
        ),
        Refusal::TooLong => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "prompt plus max_tokens exceed the worker's kv cache",
        ),
        Refusal::WorkerDown => error(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream connect error: the worker refused the connection",
        ),
        // Only reached if a hanging request's worker was cut off again at once.
        Refusal::Unreachable(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_error",
            "the worker is unreachable",
        ),
    }
}

fn worker_died() -> HttpResponse {
    error(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "upstream reset before response headers: the worker died",
    )
}

fn stopped() -> HttpResponse {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "the simulated cluster stopped",
    )
}

async fn models(State(s): State<Arc<AppState>>) -> HttpResponse {
    let body = serde_json::json!({
        "object": "list",
        "data": [{
            "id": s.cluster.config.model,
            "object": "model",
            "created": 0,
            "owned_by": "faultline-sim",
            "max_model_len": s.cluster.config.kv_cache_tokens,
        }]
    });
    json_response(body.to_string())
}

async fn health(State(s): State<Arc<AppState>>) -> HttpResponse {
    if s.cluster.any_healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no healthy worker\n").into_response()
    }
}

async fn sim_events(State(s): State<Arc<AppState>>) -> HttpResponse {
    json_response(serde_json::to_string(&s.cluster.events.events()).expect("events serialize"))
}

async fn sim_workers(State(s): State<Arc<AppState>>) -> HttpResponse {
    let now = s.cluster.now();
    let workers: Vec<_> = s.cluster.workers.iter().map(|w| w.status(now)).collect();
    json_response(serde_json::to_string(&workers).expect("statuses serialize"))
}

async fn prometheus(State(s): State<Arc<AppState>>) -> HttpResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&s.cluster),
    )
        .into_response()
}
