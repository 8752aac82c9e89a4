//! The OpenAI-compatible client that sends one request and measures what the user would have
//! seen: dispatch lag, time to first token, every inter-token gap, end-to-end time, tokens, and
//! one classified [`Outcome`].
//!
//! Why it is written this way:
//! - **Measured from the intended start.** `send` takes the instant the schedule meant the
//!   request to start; TTFT and e2e run from there, so a client that falls behind cannot hide
//!   a slow server (no coordinated omission). How late we were is reported on its own
//!   (`dispatch_lag_us`). The per-request timeout, by contrast, runs from the actual send: it is
//!   the budget a real client gives the server, and the server is not to blame for our lag.
//! - **Exactly one record per call, never a panic.** Every failure is classified, because the
//!   analysis counts errors by kind during each fault; an unclassified error is a lost fact.
//! - **Cheap on the hot path.** The engine must keep thousands of streaming requests per second
//!   going on two cores. Request bodies are serialized ahead of time ([`Client::body`]); chunks
//!   are parsed with borrowed structs that only look at what is measured (is there content, a
//!   finish reason, usage, an error), strings are not built on the success path, and the
//!   inter-token gaps go straight to a callback instead of a list.
//! - **Honest token counts.** Output tokens come from the server's `usage` when it sends one
//!   (`TokenSource::Usage`), else from counting content chunks (`TokenSource::Stream`). When the
//!   server reports cumulative usage per chunk (vLLM's `continuous_usage_stats`), a chunk that
//!   carries k tokens counts k and its gap is split into k gaps. In non-streaming mode without
//!   `usage` nothing can be counted: the record says 0 tokens from `Stream` (we counted, and saw
//!   no token boundaries) rather than guess from the text — a visibly missing number is better
//!   than a plausible invented one.
//!
//! ## Base URL
//! `base_url` is the server root or its `/v1` prefix: `http://127.0.0.1:8000`,
//! `http://127.0.0.1:8000/`, `http://127.0.0.1:8000/v1` and `http://gw/llama/v1/` all work; the
//! client appends `/v1` unless the path already ends with it, then `/completions`,
//! `/chat/completions` or `/models`. Query strings, fragments and credentials in the URL are
//! rejected (use `api_key`). No proxy is used, whatever the environment says: the point is to
//! measure the target.
//!
//! ## Outcome mapping
//! The classes and the server behaviour behind each are documented in [`crate::load::record`];
//! how the client tells them apart:
//! | what happened | outcome |
//! |---|---|
//! | 2xx and a `finish_reason` arrived (also when the connection broke after it) | `Ok` |
//! | non-2xx status (body read up to 64 KiB for at most 0.5 s, a redacted snippet kept in `error`) | `HttpStatus{code}` |
//! | the per-request timeout expired (whole request: connect, headers, body) | `Timeout` |
//! | TCP connect refused, unreachable, DNS failure, TLS handshake failure, or `connect_timeout` expired | `ConnectError` |
//! | this machine ran out before the request left: `EADDRNOTAVAIL` (ephemeral ports), `EMFILE`/`ENFILE` (file descriptors), `ENOBUFS` | `ClientError` (not the server's) |
//! | connection reset or closed while reading headers or body (including a chunked body cut short) | `ConnectionReset` |
//! | `[DONE]` or a clean EOF without a `finish_reason`; a whole response whose `finish_reason` is null | `StreamEndedEarly` |
//! | not HTTP; `text/html`; a body with no SSE event that is not labelled `text/event-stream` or has non-SSE lines; bad JSON; invalid UTF-8; a `content-encoding` that does not decode; an event past `max_event_bytes`; an error object or `event: error` | `InvalidResponse` |
//!
//! Compression: requests say `accept-encoding: identity` (a server compressing a stream must
//! buffer it, which would show as TTFT); a gzip body sent anyway is decoded.
//!
//! Secrets: every server text that goes into `error` (or a [`ClientError`]) is first passed
//! through a [`Redactor`] holding the API key and every header value, then shortened.
//!
//! A connect timeout is a `ConnectError`, not a `Timeout`: the connection could not be made (a
//! partitioned node drops SYNs), which is a different story from a server that is slow to answer.

use crate::load::record::{Outcome, RequestRecord, TokenSource};
use crate::load::redact::Redactor;
use crate::load::sse::DEFAULT_MAX_EVENT_BYTES;
use crate::load::workload::RequestSpec;
use crate::tls::TlsOptions;
use bytes::Bytes;
use measure::{Measure, fmt_duration, micros, read_limited, reason, root_message};
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
    USER_AGENT,
};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{Message, ModelList, RequestBody, StreamOptions};

/// Which OpenAI endpoint to speak (`completions` or `chat` in files and flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/v1/completions` with a `prompt`.
    Completions,
    /// `/v1/chat/completions` with one user message.
    Chat,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Completions => "completions",
            Api::Chat => "chat/completions",
        }
    }
}

impl FromStr for Api {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "completions" => Ok(Api::Completions),
            "chat" => Ok(Api::Chat),
            other => Err(ClientError::UnknownApi(other.to_owned())),
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::Completions => "completions",
            Api::Chat => "chat",
        })
    }
}

/// Errors building the client or checking the target. Messages quote the offending value,
/// except secrets: the API key and header values are never printed.
#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error("unknown api {0:?}: expected \"completions\" or \"chat\"")]
    UnknownApi(String),
    #[error("invalid base url {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("invalid header name {name:?}")]
    HeaderName { name: String },
    #[error("invalid value for header {name:?} (value not shown)")]
    HeaderValue { name: String },
    #[error("header {name:?} conflicts with the api key; set one or the other")]
    HeaderConflict { name: String },
    #[error("environment variable {var:?} holding the api key is not valid unicode")]
    ApiKeyNotUnicode { var: String },
    #[error("environment variable {var:?} holding the api key is empty")]
    ApiKeyEmpty { var: String },
    #[error("the api key is not a valid header value (printable ascii only; key not shown)")]
    ApiKeyInvalid,
    #[error("{what} must be greater than zero")]
    ZeroDuration { what: &'static str },
    #[error("{what} must be greater than zero")]
    ZeroSize { what: &'static str },
    #[error("cannot build the http client: {0}")]
    Build(String),
    #[error("TLS settings: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered http {code}: {snippet}")]
    Status {
        url: String,
        code: u16,
        snippet: String,
    },
    #[error("{url} returned an invalid model list: {reason}")]
    Models { url: String, reason: String },
    #[error(
        "{source}; this endpoint does not list its models: pass --model NAME (`model:` in a file)"
    )]
    NoModelList { source: Box<ClientError> },
    #[error("{url} lists no models; pass --model NAME (`model:` in a file)")]
    NoModels { url: String },
}

/// An API key. It prints as `***` and is only ever written into the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key given directly (it must be a valid header value).
    pub fn new(key: impl Into<String>) -> Result<ApiKey, ClientError> {
        let key = ApiKey(key.into());
        key.header_value()?;
        Ok(key)
    }

    /// The key in environment variable `var`: `None` when it is unset; an error when it is
    /// set but empty or not unicode (both are mistakes worth stopping for).
    pub fn from_env(var: &str) -> Result<Option<ApiKey>, ClientError> {
        match std::env::var(var) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ClientError::ApiKeyNotUnicode {
                var: var.to_owned(),
            }),
            Ok(v) if v.trim().is_empty() => Err(ClientError::ApiKeyEmpty {
                var: var.to_owned(),
            }),
            Ok(v) => ApiKey::new(v.trim()).map(Some),
        }
    }

    fn header_value(&self) -> Result<HeaderValue, ClientError> {
        let mut v = HeaderValue::try_from(format!("Bearer {}", self.0))
            .map_err(|_| ClientError::ApiKeyInvalid)?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What the client needs to know about the target. See the module docs for `base_url`.
#[derive(Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub api: Api,
    pub model: String,
    pub stream: bool,
    /// Ask for `stream_options.include_usage` (only sent when streaming).
    pub include_usage: bool,
    pub api_key: Option<ApiKey>,
    /// Extra headers sent with every request (values are treated as secrets in output).
    pub headers: Vec<(String, String)>,
    /// Budget for the whole request, from the actual send to the last byte.
    pub timeout: Duration,
    /// Budget for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// How to speak TLS to an `https://` base URL (CA, client certificate, `insecure`).
    pub tls: TlsOptions,
    /// Cap on one SSE line and one event's data; past it the request is `InvalidResponse`.
    pub max_event_bytes: usize,
}

impl ClientConfig {
    /// A streaming config with usage, no key, 60 s timeout and 5 s connect timeout.
    pub fn new(base_url: impl Into<String>, api: Api, model: impl Into<String>) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            api,
            model: model.into(),
            stream: true,
            include_usage: true,
            api_key: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            tls: TlsOptions::default(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, _)| (n.as_str(), "***"))
            .collect();
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api", &self.api)
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("include_usage", &self.include_usage)
            .field("api_key", &self.api_key)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish()
    }
}

/// Sends requests and measures them. Cloning is cheap (one `Arc`); all clones share one
/// connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    models_url: reqwest::Url,
    cfg: ClientConfig,
    run_start: Instant,
    /// The API key and header values, kept out of every stored or printed server text.
    redactor: Redactor,
    /// Counts the TCP connections made (see [`Client::connections_opened`]).
    connects: crate::load::pool::CountConnects,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// Bodies of non-2xx responses are read up to this much.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Model lists (a gateway may serve hundreds) are read up to this much.
const MODELS_LIMIT: usize = 1024 * 1024;
/// Whole (non-streaming) responses are read up to this much.
const RESPONSE_LIMIT: usize = 16 * 1024 * 1024;
/// After `[DONE]`, how long to wait for the end of the body so the connection can be reused;
/// also how long to wait for the body of a non-2xx response.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// A per-chunk usage jump larger than this is not believed (it would mean that many gaps).
const MAX_TOKENS_PER_CHUNK: u64 = 65_536;
/// Length of snippets of server output in `error`.
const SNIPPET: usize = 200;
/// How much of a body's start is kept for the message when it turns out not to be a stream.
const HEAD: usize = 4096;

impl Client {
    /// Checks the config and builds the connection pool. `run_start` is the instant that
    /// `intended_s` in records counts from (or the moment the client is ready, if later).
    pub fn new(cfg: ClientConfig, run_start: Instant) -> Result<Client, ClientError> {
        let prefix = api_prefix(&cfg.base_url)?;
        let join = |tail: &str| {
            reqwest::Url::parse(&format!("{prefix}/{tail}")).map_err(|e| ClientError::BaseUrl {
                url: cfg.base_url.clone(),
                reason: e.to_string(),
            })
        };
        let endpoint = join(cfg.api.path())?;
        let models_url = join("models")?;
        if cfg.timeout.is_zero() {
            return Err(ClientError::ZeroDuration { what: "timeout" });
        }
        if cfg.connect_timeout.is_zero() {
            return Err(ClientError::ZeroDuration {
                what: "connect timeout",
            });
        }
        if cfg.max_event_bytes == 0 {
            return Err(ClientError::ZeroSize {
                what: "max event size",
            });
        }

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(if cfg.stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("faultline/", env!("CARGO_PKG_VERSION"))),
        );
        // Ask for the body as it is: a server that compresses an event stream has to buffer
        // it, which would show in TTFT. A body that comes compressed anyway is decoded (gzip),
        // and one that does not decode is an `InvalidResponse`. `--header` can override this.
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        for (name, value) in &cfg.headers {
            let n = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| ClientError::HeaderName { name: name.clone() })?;
            if n == AUTHORIZATION && cfg.api_key.is_some() {
                return Err(ClientError::HeaderConflict { name: name.clone() });
            }
            let mut v = HeaderValue::from_str(value.trim())
                .map_err(|_| ClientError::HeaderValue { name: name.clone() })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        if let Some(key) = &cfg.api_key {
            headers.insert(AUTHORIZATION, key.header_value()?);
        }

        let connects = crate::load::pool::CountConnects::default();
        let http = crate::tls::http_client_builder(&cfg.tls)?
            .connector_layer(connects.clone())
            .no_proxy()
            .retry(reqwest::retry::never())
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Build(root_message(&e)))?;
        let redactor = Redactor::new(
            cfg.api_key
                .iter()
                .map(|k| k.0.as_str())
                .chain(cfg.headers.iter().map(|(_, v)| v.as_str())),
        );
        // The run's clock starts when the client is ready: building it (TLS roots, the pool)
        // takes tens of ms, and a clock started before that would make the first requests of
        // every run late by that much (client-limited, at 10 ms of dispatch lag).
        let run_start = run_start.max(Instant::now());
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoint,
                models_url,
                cfg,
                run_start,
                redactor,
                connects,
            }),
        })
    }

    /// TCP connections this client (all its clones) has made so far.
    pub fn connections_opened(&self) -> u64 {
        self.inner.connects.opened()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The instant the run's offsets (`intended_s`) are measured from.
    pub fn run_start(&self) -> Instant {
        self.inner.run_start
    }

    /// The URL requests go to (`…/v1/completions` or `…/v1/chat/completions`).
    pub fn endpoint(&self) -> &str {
        self.inner.endpoint.as_str()
    }

    /// The JSON request body for `spec`, built ahead of the request's start.
    pub fn body(&self, spec: &RequestSpec) -> Bytes {
        let cfg = &self.inner.cfg;
        let message = [Message {
            role: "user",
            content: &spec.prompt,
        }];
        let body = RequestBody {
            model: &cfg.model,
            prompt: (cfg.api == Api::Completions).then_some(spec.prompt.as_str()),
            messages: (cfg.api == Api::Chat).then_some(&message),
            max_tokens: spec.max_tokens,
            stream: cfg.stream,
            stream_options: (cfg.stream && cfg.include_usage).then_some(StreamOptions {
                include_usage: true,
            }),
            temperature: 0,
        };
        // Serializing plain strings and numbers into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// Sends one request and measures it from `intended`. Every inter-token gap (µs) is handed
    /// to `on_gap`. Always returns exactly one record.
    pub async fn send(
        &self,
        id: u64,
        spec: &RequestSpec,
        body: Bytes,
        intended: Instant,
        mut on_gap: impl FnMut(u64),
    ) -> RequestRecord {
        let inner = &*self.inner;
        let sent = Instant::now();
        let mut m = Measure::new();
        let timeout = inner.cfg.timeout;
        let result = tokio::time::timeout(timeout, inner.exchange(body, &mut m, &mut on_gap)).await;
        let now = Instant::now();
        let (outcome, error) = match result {
            Ok(Ok(())) => (Outcome::Ok, None),
            // Server texts were redacted when they were cut to snippets; this pass covers the
            // rest of the message (transport errors quote no server text, but cost nothing).
            Ok(Err(f)) => (
                f.outcome,
                Some(inner.redactor.redact(&f.message).into_owned()),
            ),
            Err(_) if m.complete => (Outcome::Ok, None),
            Err(_) => (Outcome::Timeout, Some(m.timeout_message(timeout))),
        };
        // `end` is set when the answer was over (complete, or a whole response found wanting).
        let end = m.end.unwrap_or(now);
        let (output_tokens, token_source) = match m.usage_completion {
            Some(c) => (c, TokenSource::Usage),
            None => (m.stream_tokens, TokenSource::Stream),
        };
        RequestRecord {
            id,
            class: spec.class.to_string(),
            intended_s: intended
                .saturating_duration_since(inner.run_start)
                .as_secs_f64(),
            dispatch_lag_us: micros(sent.saturating_duration_since(intended)),
            ttft_us: m
                .first
                .map(|t| micros(t.saturating_duration_since(intended))),
            e2e_us: micros(end.saturating_duration_since(intended)),
            itl_count: m.itl_count,
            itl_mean_us: m.itl_sum.checked_div(m.itl_count).unwrap_or(0),
            itl_max_us: m.itl_max,
            output_tokens,
            token_source,
            input_tokens: m
                .usage_prompt
                .unwrap_or_else(|| u64::from(spec.input_tokens)),
            finish_reason: m.finish_reason,
            outcome,
            error,
        }
    }

    /// `GET …/v1/models`: can the target be reached, and which models does it serve? For clear
    /// errors before any load starts.
    pub async fn check(&self) -> Result<Vec<String>, ClientError> {
        let inner = &*self.inner;
        let url = inner.models_url.as_str();
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let fetch = async {
            let resp = inner
                .http
                .get(inner.models_url.clone())
                .header(ACCEPT, "application/json")
                .send()
                .await;
            let mut resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    let mut why = reason(&e);
                    if crate::tls::explain(&e).is_none()
                        && let Some(tls) =
                            crate::tls::diagnose(&inner.models_url, &inner.cfg.tls).await
                    {
                        why = tls;
                    }
                    return Err(unreachable(why));
                }
            };
            let status = resp.status();
            let (body, truncated) = read_limited(&mut resp, MODELS_LIMIT)
                .await
                .map_err(|e| unreachable(reason(&e)))?;
            let shown = || inner.snippet(&String::from_utf8_lossy(&body), truncated);
            if !status.is_success() {
                return Err(ClientError::Status {
                    url: url.to_owned(),
                    code: status.as_u16(),
                    snippet: shown(),
                });
            }
            let list: ModelList =
                serde_json::from_slice(&body).map_err(|e| ClientError::Models {
                    url: url.to_owned(),
                    reason: format!("{e}: {}", shown()),
                })?;
            Ok(list.data.into_iter().map(|m| m.id).collect())
        };
        match tokio::time::timeout(inner.cfg.timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!(
                "no answer within {}",
                fmt_duration(inner.cfg.timeout)
            ))),
        }
    }
}

impl Client {
    /// The model to request: the configured one, else the first the endpoint lists.
    ///
    /// `GET …/v1/models` is tried either way: it shows before any load starts that the endpoint
    /// can be reached (DNS, TCP, TLS), with a clear reason when it cannot. With a model
    /// configured, an endpoint that does not serve the list (a gateway that only routes
    /// completions: 404, 403, an HTML page…) is fine; only a refused API key (401) still stops,
    /// because every request would carry the same key. Without a model, the error says to pass
    /// one.
    pub async fn resolve_model(&self) -> Result<String, ClientError> {
        let model = &self.inner.cfg.model;
        match self.check().await {
            Ok(models) if model.is_empty() => {
                models
                    .into_iter()
                    .next()
                    .ok_or_else(|| ClientError::NoModels {
                        url: self.inner.models_url.to_string(),
                    })
            }
            Ok(_) => Ok(model.clone()),
            Err(e @ (ClientError::Status { .. } | ClientError::Models { .. }))
                if model.is_empty() =>
            {
                Err(ClientError::NoModelList {
                    source: Box::new(e),
                })
            }
            Err(ClientError::Status { code, .. }) if code != 401 => Ok(model.clone()),
            Err(ClientError::Models { .. }) => Ok(model.clone()),
            Err(e) => Err(e),
        }
    }
}

/// `…/v1` for a base URL, without a trailing slash.
fn api_prefix(base: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BaseUrl {
        url: base.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(base.trim()).map_err(|e| ClientError::BaseUrl {
        url: base.to_owned(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it holds a credential.
        return Err(ClientError::BaseUrl {
            url: format!(
                "{}://***@{}",
                url.scheme(),
                url.host_str().unwrap_or_default()
            ),
            reason: "credentials in the url are not supported; use an api key".into(),
        });
    }
    match url.scheme() {
        "http" | "https" => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query string or fragment is not allowed"));
    }
    let mut s = url.as_str().trim_end_matches('/').to_owned();
    if !s.ends_with("/v1") {
        s.push_str("/v1");
    }
    Ok(s)
}

mod exchange;
mod measure;
#[cfg(test)]
mod tests;
mod wire;
