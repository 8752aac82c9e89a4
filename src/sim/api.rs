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
//! - 503 no healthy worker, the request waited past `queue_timeout`, or the sim shut down.
//!
//! Prompt length in tokens ≈ characters / 4 (rounded up; chat: all message contents summed).
//! The answer is always `max_tokens` tokens (default 16) with `finish_reason: "length"`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use serde::Deserialize;

use super::batch::Event;
use super::cluster::{Cluster, Refusal, Tokens};
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

    let mut tokens = match cluster.submit(resp.prompt_tokens, max_tokens) {
        Ok((_, rx)) => rx,
        Err(refusal) => return refused(refusal),
    };
    // Wait for the first token (or the refusal) before answering.
    let first = match tokens.recv().await {
        Some(Event::Token { last, .. }) => last,
        Some(Event::QueueTimeout) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_overloaded",
                "request timed out waiting in the queue",
            );
        }
        None => return stopped(),
    };
    if stream {
        let mut buf = String::with_capacity(512);
        resp.start(&mut buf);
        resp.token(&mut buf, first);
        let rest = token_stream(resp, tokens, first);
        let head = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(buf)) });
        sse_response(Body::from_stream(futures_util::StreamExt::chain(
            head, rest,
        )))
    } else {
        let mut done = first;
        while !done {
            match tokens.recv().await {
                Some(Event::Token { last, .. }) => done = last,
                _ => return stopped(),
            }
        }
        json_response(resp.whole_json())
    }
}

/// The rest of a stream: every token event becomes a chunk; the stream ends after the last one
/// (or abruptly, without `[DONE]`, if the sim shuts down). Dropping it — the client went away —
/// drops the receiver, and the worker drops the sequence at its next step.
fn token_stream(
    resp: Response,
    tokens: Tokens,
    done: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::unfold(
        (resp, tokens, done),
        |(resp, mut tokens, done)| async move {
            if done {
                return None;
            }
            let mut buf = String::with_capacity(256);
            let mut event = tokens.recv().await;
            let mut done = false;
            while let Some(Event::Token { last, .. }) = event {
                resp.token(&mut buf, last);
                if last {
                    done = true;
                    break;
                }
                event = tokens.try_recv().ok();
            }
            if buf.is_empty() {
                return None;
            }
            Some((Ok(Bytes::from(buf)), (resp, tokens, done)))
        },
    )
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
    }
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
