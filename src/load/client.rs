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
use crate::load::sse::{DEFAULT_MAX_EVENT_BYTES, SseEvent, SseParser};
use crate::load::workload::RequestSpec;
use crate::tls::TlsOptions;
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
    USER_AGENT,
};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which OpenAI endpoint to speak (`completions` or `chat` in files and flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
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
    /// `intended_s` in records counts from.
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

        let http = crate::tls::http_client_builder(&cfg.tls)?
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
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoint,
                models_url,
                cfg,
                run_start,
                redactor,
            }),
        })
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

impl Inner {
    /// The request itself; fills `m` as it goes so that a timeout keeps what was measured.
    async fn exchange(
        &self,
        body: Bytes,
        m: &mut Measure,
        on_gap: &mut impl FnMut(u64),
    ) -> Result<(), Failure> {
        let mut resp = self
            .http
            .post(self.endpoint.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| classify(&e, m, &self.cfg))?;
        m.phase = Phase::Body;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.http_status_failure(&mut resp, status).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let is = |prefix: &str| {
            content_type
                .as_deref()
                .is_some_and(|t| t.starts_with(prefix))
        };
        if !self.cfg.stream || is("application/json") {
            self.read_whole(&mut resp, m).await
        } else if is("text/html") {
            // A login page, a gateway's error page, a captive portal: never a stream.
            let head = tokio::time::timeout(DRAIN_GRACE, read_limited(&mut resp, HEAD))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            Err(self.not_a_stream(content_type.as_deref(), &head.0, head.1))
        } else {
            let sse = is("text/event-stream");
            self.read_stream(&mut resp, m, on_gap, sse, content_type.as_deref())
                .await
        }
    }

    /// An SSE body. `sse`: the server labelled it `text/event-stream`.
    async fn read_stream(
        &self,
        resp: &mut reqwest::Response,
        m: &mut Measure,
        on_gap: &mut impl FnMut(u64),
        sse: bool,
        content_type: Option<&str>,
    ) -> Result<(), Failure> {
        let mut parser = SseParser::new(self.cfg.max_event_bytes);
        // The start of the body, for the message when it turns out not to be a stream.
        let mut head = Vec::new();
        let mut done = false;
        'read: loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    if m.finish_reason.is_some() {
                        // The answer was complete; only the goodbye was lost.
                        m.complete = true;
                        m.end = Some(Instant::now());
                        return Ok(());
                    }
                    return Err(classify(&e, m, &self.cfg));
                }
            };
            let now = Instant::now();
            m.body_bytes += chunk.len() as u64;
            if head.len() < HEAD {
                head.extend_from_slice(&chunk[..chunk.len().min(HEAD - head.len())]);
            }
            parser.push(&chunk);
            loop {
                match parser.next_event() {
                    Ok(Some(ev)) => {
                        if m.on_event(ev, now, on_gap, &self.redactor)? {
                            done = true;
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(Failure::invalid(format!(
                            "stream refused after {} bytes: {e}",
                            m.body_bytes
                        )));
                    }
                }
            }
        }
        if done {
            // `[DONE]`: complete only if the server also said why the answer ended.
            if m.finish_reason.is_none() {
                return Err(Failure {
                    outcome: Outcome::StreamEndedEarly,
                    message: format!(
                        "stream ended with [DONE] after {} tokens without a finish_reason",
                        m.stream_tokens
                    ),
                });
            }
            m.complete = true;
            m.end = Some(Instant::now());
            // Read the end of the body so the connection goes back to the pool.
            let drain = async { while let Ok(Some(_)) = resp.chunk().await {} };
            let _ = tokio::time::timeout(DRAIN_GRACE, drain).await;
            return Ok(());
        }
        let finish = parser.finish();
        if m.finish_reason.is_some() {
            m.complete = true;
            m.end = Some(Instant::now());
            return Ok(());
        }
        // Nothing that looks like an event: a body in some other format behind a 2xx.
        let foreign = parser.unknown_fields() > 0 || (!sse && m.body_bytes > 0);
        if m.data_events == 0 && foreign {
            let cut = (head.len() as u64) < m.body_bytes;
            return Err(self.not_a_stream(content_type, &head, cut));
        }
        Err(Failure {
            outcome: Outcome::StreamEndedEarly,
            message: format!(
                "stream ended after {} bytes and {} tokens without finish_reason or [DONE]{}",
                m.body_bytes,
                m.stream_tokens,
                if finish.discarded_partial_event {
                    " (in the middle of an event)"
                } else {
                    ""
                }
            ),
        })
    }

    /// A 2xx body that is not an event stream (`cut`: `head` is only its start).
    fn not_a_stream(&self, content_type: Option<&str>, head: &[u8], cut: bool) -> Failure {
        Failure::invalid(format!(
            "response is not an event stream (content-type {}): {}",
            content_type.unwrap_or("none"),
            self.snippet(&String::from_utf8_lossy(head), cut)
        ))
    }

    /// A whole JSON response (non-streaming, or a server that ignored `stream`): TTFT = e2e.
    async fn read_whole(
        &self,
        resp: &mut reqwest::Response,
        m: &mut Measure,
    ) -> Result<(), Failure> {
        let (body, truncated) = read_limited(resp, RESPONSE_LIMIT)
            .await
            .map_err(|e| classify(&e, m, &self.cfg))?;
        let now = Instant::now();
        m.body_bytes = body.len() as u64;
        if truncated {
            return Err(Failure::invalid(format!(
                "response larger than {RESPONSE_LIMIT} bytes"
            )));
        }
        let shown = || self.snippet(&String::from_utf8_lossy(&body), false);
        // From the bytes, not a lossy copy: invalid UTF-8 is a broken response.
        let chunk: Chunk<'_> = serde_json::from_slice(&body).map_err(|e| {
            Failure::invalid(format!("invalid json in response ({e}): {}", shown()))
        })?;
        if let Some(msg) = chunk.error_message() {
            return Err(Failure::invalid(format!(
                "error in response: {}",
                self.snippet(&msg, false)
            )));
        }
        let Some(choices) = chunk.choices else {
            return Err(Failure::invalid(format!(
                "response has no choices: {}",
                shown()
            )));
        };
        if choices.content {
            m.first = Some(now);
        }
        if let Some(u) = chunk.usage {
            m.usage_prompt = u.prompt_tokens.or(m.usage_prompt);
            m.usage_completion = u.completion_tokens;
        }
        m.end = Some(now);
        let Some(f) = choices.finish_reason else {
            return Err(Failure {
                outcome: Outcome::StreamEndedEarly,
                message: "response without a finish_reason: the answer is not complete".into(),
            });
        };
        m.finish_reason = Some(f.into_owned());
        m.complete = true;
        Ok(())
    }

    async fn http_status_failure(
        &self,
        resp: &mut reqwest::Response,
        status: reqwest::StatusCode,
    ) -> Failure {
        // Read (a bounded amount of) the body so the connection can be reused; a failure here
        // does not change what happened: the server said `status`.
        // A server that sends the status and then stalls on the body is still an HTTP error,
        // not a timeout: the body read gets a short grace of its own.
        let (body, cut) = tokio::time::timeout(DRAIN_GRACE, read_limited(resp, ERROR_BODY_LIMIT))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let text = self.snippet(&String::from_utf8_lossy(&body), cut);
        Failure {
            outcome: Outcome::HttpStatus {
                code: status.as_u16(),
            },
            message: if text.is_empty() {
                format!("http {}", status.as_u16())
            } else {
                format!("http {}: {text}", status.as_u16())
            },
        }
    }

    /// Server text as it may be stored or printed: secrets masked (`cut`: the text is only the
    /// start of what the server sent), then shortened to one line.
    fn snippet(&self, text: &str, cut: bool) -> String {
        if cut {
            snippet(&self.redactor.redact_cut(text))
        } else {
            snippet(&self.redactor.redact(text))
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

/// Where the request was when it failed (for messages only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Connecting, sending, waiting for the response headers.
    Headers,
    /// Reading the body.
    Body,
}

/// What one request has shown so far.
struct Measure {
    phase: Phase,
    /// Arrival of the first and the latest content chunk.
    first: Option<Instant>,
    last: Option<Instant>,
    stream_tokens: u64,
    usage_prompt: Option<u64>,
    usage_completion: Option<u64>,
    itl_count: u64,
    itl_sum: u64,
    itl_max: u64,
    finish_reason: Option<String>,
    data_events: u64,
    body_bytes: u64,
    /// The response is complete (a timeout after this point is not a failure).
    complete: bool,
    /// When it became complete.
    end: Option<Instant>,
}

impl Measure {
    fn new() -> Measure {
        Measure {
            phase: Phase::Headers,
            first: None,
            last: None,
            stream_tokens: 0,
            usage_prompt: None,
            usage_completion: None,
            itl_count: 0,
            itl_sum: 0,
            itl_max: 0,
            finish_reason: None,
            data_events: 0,
            body_bytes: 0,
            complete: false,
            end: None,
        }
    }

    /// Handles one event; true at `[DONE]`.
    /// Server text in messages goes through `redactor` before it is shortened.
    fn on_event(
        &mut self,
        ev: SseEvent<'_>,
        now: Instant,
        on_gap: &mut impl FnMut(u64),
        redactor: &Redactor,
    ) -> Result<bool, Failure> {
        let data = ev.data.trim_ascii();
        let shown = |text: &str| snippet(&redactor.redact(text));
        if ev.event == Some("error") {
            return Err(Failure::invalid(format!(
                "error event in stream: {}",
                shown(data)
            )));
        }
        if ev.invalid_utf8 {
            // Measuring mangled text would count tokens the server never meant to send.
            return Err(Failure::invalid(format!(
                "invalid utf-8 in stream: {}",
                shown(data)
            )));
        }
        if data.is_empty() {
            return Ok(false);
        }
        if data == "[DONE]" {
            return Ok(true);
        }
        self.data_events += 1;
        let chunk: Chunk<'_> = serde_json::from_str(data).map_err(|e| {
            Failure::invalid(format!("invalid json in stream ({e}): {}", shown(data)))
        })?;
        if let Some(msg) = chunk.error_message() {
            return Err(Failure::invalid(format!(
                "error in stream: {}",
                shown(&msg)
            )));
        }
        let usage_completion = chunk.usage.as_ref().and_then(|u| u.completion_tokens);
        if let Some(p) = chunk.usage.as_ref().and_then(|u| u.prompt_tokens) {
            self.usage_prompt = Some(p);
        }
        if let Some(choices) = chunk.choices {
            if choices.content {
                let k = match usage_completion {
                    Some(c)
                        if c > self.stream_tokens
                            && c - self.stream_tokens <= MAX_TOKENS_PER_CHUNK =>
                    {
                        c - self.stream_tokens
                    }
                    _ => 1,
                };
                self.content(now, k, on_gap);
            }
            if let Some(f) = choices.finish_reason
                && self.finish_reason.as_deref() != Some(&*f)
            {
                self.finish_reason = Some(f.into_owned());
            }
        }
        if usage_completion.is_some() {
            self.usage_completion = usage_completion;
        }
        Ok(false)
    }

    /// A content chunk carrying `k` tokens arrived at `now`.
    fn content(&mut self, now: Instant, k: u64, on_gap: &mut impl FnMut(u64)) {
        match self.last {
            None => self.first = Some(now),
            Some(prev) => {
                let each = micros(now.saturating_duration_since(prev)) / k;
                for _ in 0..k {
                    on_gap(each);
                }
                self.itl_count += k;
                self.itl_sum += each * k;
                self.itl_max = self.itl_max.max(each);
            }
        }
        self.last = Some(now);
        self.stream_tokens += k;
    }

    fn timeout_message(&self, timeout: Duration) -> String {
        let t = fmt_duration(timeout);
        match (self.phase, self.first) {
            (Phase::Headers, _) => format!("no response headers within {t}"),
            (Phase::Body, None) => format!("no token within {t}"),
            (Phase::Body, Some(_)) => format!(
                "stream stalled: not complete within {t} ({} tokens received)",
                self.stream_tokens
            ),
        }
    }
}

/// A failed request: its class and a short description.
struct Failure {
    outcome: Outcome,
    message: String,
}

impl Failure {
    fn invalid(message: String) -> Failure {
        Failure {
            outcome: Outcome::InvalidResponse,
            message,
        }
    }
}

/// Classifies a transport error from reqwest (see the table in the module docs).
fn classify(e: &reqwest::Error, m: &Measure, cfg: &ClientConfig) -> Failure {
    let root = root_message(e);
    if let Some(why) = crate::tls::explain(e) {
        // A handshake that failed is a connection that could not be made, whatever layer
        // reported it; the reason (unknown CA, no client certificate…) is the message.
        return Failure {
            outcome: Outcome::ConnectError,
            message: format!("connect error: {why}"),
        };
    }
    if e.is_connect() {
        let message = if e.is_timeout() {
            format!(
                "connect timed out after {}",
                fmt_duration(cfg.connect_timeout)
            )
        } else {
            format!("connect error: {}", reason(e))
        };
        return Failure {
            outcome: Outcome::ConnectError,
            message,
        };
    }
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return Failure::invalid(format!("invalid http response: {h}"));
            }
            break; // the transport (a decoder passes the body's errors on wrapped in io errors)
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            // The content decoder (gzip) found bytes that are not what the header announced.
            return Failure::invalid(format!(
                "body cannot be decoded as its content-encoding says: {root}"
            ));
        }
        source = err.source();
    }
    // Everything else is the transport failing under us (reqwest reports body read errors as
    // "decode" errors, so that flag says nothing about the content; we parse the content).
    let place = match m.phase {
        Phase::Headers => "before the response headers",
        Phase::Body => "while reading the body",
    };
    Failure {
        outcome: Outcome::ConnectionReset,
        message: format!("connection broken {place}: {root}"),
    }
}

/// Reads the body up to `limit` bytes; true when there was more (the rest is not read).
async fn read_limited(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > limit {
            out.extend_from_slice(&chunk[..limit - out.len()]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// The innermost error's message: the one that says what happened.
fn root_message(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A short reason for a transport error: the TLS reason with its fix when the handshake failed,
/// the I/O error kind when there is one ("connection refused"), else the innermost message.
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    if let Some(why) = crate::tls::explain(e) {
        return why;
    }
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        source = err.source();
    }
    root_message(e)
}

/// At most [`SNIPPET`] bytes of server output, on one line.
fn snippet(s: &str) -> String {
    let s = s.trim();
    let mut end = s.len().min(SNIPPET);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = s[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if end < s.len() {
        out.push('…');
    }
    out
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

// ---- wire formats ----

#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [Message<'a>; 1]>,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    temperature: u32,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// A streamed chunk or a whole response: only what is measured.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Choices<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<ErrorField>,
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

impl Chunk<'_> {
    /// The message of an error object (`{"error":…}` or `{"object":"error",…}`), if this is one.
    fn error_message(&self) -> Option<String> {
        match &self.error {
            Some(ErrorField::Object { message }) => {
                return Some(message.clone().unwrap_or_else(|| "(no message)".into()));
            }
            Some(ErrorField::Text(t)) => return Some(t.clone()),
            Some(ErrorField::Other(v)) => return Some(v.to_string()),
            None => {}
        }
        if self.object.as_deref() == Some("error") {
            return Some(self.message.as_deref().unwrap_or("(no message)").to_owned());
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object {
        #[serde(default)]
        message: Option<String>,
    },
    Text(String),
    Other(serde_json::Value),
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// `choices`, folded while parsing (no `Vec`): did any choice carry content, and the last
/// finish reason given.
#[derive(Default)]
struct Choices<'a> {
    content: bool,
    finish_reason: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Choices<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices<'a>, A::Error> {
                let mut out = Choices::default();
                while let Some(c) = seq.next_element::<Choice<'de>>()? {
                    out.content |= c.has_content();
                    if c.finish_reason.is_some() {
                        out.finish_reason = c.finish_reason;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    /// `/v1/completions`.
    #[serde(default)]
    text: Option<NonEmpty>,
    /// Streamed chat.
    #[serde(default)]
    delta: Option<Delta>,
    /// Whole chat response.
    #[serde(default)]
    message: Option<Delta>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

impl Choice<'_> {
    fn has_content(&self) -> bool {
        self.text.is_some_and(|t| t.0)
            || self.delta.as_ref().is_some_and(Delta::has_content)
            || self.message.as_ref().is_some_and(Delta::has_content)
    }
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<NonEmpty>,
    #[serde(default)]
    reasoning_content: Option<NonEmpty>,
    #[serde(default)]
    reasoning: Option<NonEmpty>,
}

impl Delta {
    fn has_content(&self) -> bool {
        [self.content, self.reasoning_content, self.reasoning]
            .iter()
            .any(|c| c.is_some_and(|c| c.0))
    }
}

/// Whether a string (or content-part array) is non-empty, without keeping it.
#[derive(Clone, Copy)]
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RequestSpec {
        RequestSpec {
            class: Arc::from("chat"),
            prompt: "Say \"hi\"".into(),
            input_tokens: 3,
            max_tokens: 32,
        }
    }

    fn client(api: Api, stream: bool, usage: bool) -> Client {
        let mut cfg = ClientConfig::new("http://127.0.0.1:8000", api, "m");
        cfg.stream = stream;
        cfg.include_usage = usage;
        Client::new(cfg, Instant::now()).unwrap()
    }

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn completions_body_has_prompt_and_stream_options() {
        let c = client(Api::Completions, true, true);
        assert_eq!(
            json(&c.body(&spec())),
            serde_json::json!({"model":"m","prompt":"Say \"hi\"","max_tokens":32,"stream":true,
                "stream_options":{"include_usage":true},"temperature":0})
        );
    }

    #[test]
    fn chat_body_has_one_user_message() {
        let c = client(Api::Chat, true, false);
        assert_eq!(
            json(&c.body(&spec())),
            serde_json::json!({"model":"m","messages":[{"role":"user","content":"Say \"hi\""}],
                "max_tokens":32,"stream":true,"temperature":0})
        );
    }

    #[test]
    fn stream_options_are_left_out_when_not_streaming() {
        let c = client(Api::Chat, false, true);
        let v = json(&c.body(&spec()));
        assert!(v.get("stream_options").is_none());
        assert_eq!(v["stream"], false);
    }

    #[test]
    fn base_url_with_or_without_v1_reaches_the_same_endpoint() {
        for base in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000/v1",
            "http://127.0.0.1:8000/v1/",
        ] {
            let c = Client::new(ClientConfig::new(base, Api::Chat, "m"), Instant::now()).unwrap();
            assert_eq!(
                c.endpoint(),
                "http://127.0.0.1:8000/v1/chat/completions",
                "{base}"
            );
        }
        let c = Client::new(
            ClientConfig::new("http://gw/llama/v1", Api::Completions, "m"),
            Instant::now(),
        )
        .unwrap();
        assert_eq!(c.endpoint(), "http://gw/llama/v1/completions");
    }

    #[test]
    fn bad_base_urls_are_rejected_quoting_the_url() {
        for base in [
            "ftp://h/",
            "127.0.0.1:8000",
            "http://",
            "http://h/?a=b",
            "nonsense",
        ] {
            let e = Client::new(ClientConfig::new(base, Api::Chat, "m"), Instant::now())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("invalid base url"), "{base}: {e}");
        }
    }

    #[test]
    fn credentials_in_base_url_are_rejected_without_echoing_them() {
        let e = Client::new(
            ClientConfig::new("http://u:hunter2@h/", Api::Chat, "m"),
            Instant::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn bad_header_is_rejected_without_printing_its_value() {
        let mut cfg = ClientConfig::new("http://h", Api::Chat, "m");
        cfg.headers = vec![("x-token".into(), "sec\nret".into())];
        let e = Client::new(cfg.clone(), Instant::now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("x-token") && !e.contains("sec"), "{e}");
        cfg.headers = vec![("bad header".into(), "v".into())];
        let e = Client::new(cfg, Instant::now()).unwrap_err().to_string();
        assert_eq!(e, "invalid header name \"bad header\"");
    }

    #[test]
    fn api_parses_from_its_names() {
        assert_eq!("chat".parse::<Api>().unwrap(), Api::Chat);
        assert_eq!("completions".parse::<Api>().unwrap(), Api::Completions);
        assert!(
            "Chat"
                .parse::<Api>()
                .unwrap_err()
                .to_string()
                .contains("\"Chat\"")
        );
    }

    #[test]
    fn api_key_prints_as_stars() {
        let k = ApiKey::new("sk-secret").unwrap();
        assert_eq!(format!("{k:?} {k}"), "*** ***");
        assert!(matches!(
            ApiKey::new("a\nb"),
            Err(ClientError::ApiKeyInvalid)
        ));
    }

    #[test]
    fn api_key_from_unset_env_var_is_none() {
        assert!(
            ApiKey::from_env("FAULTLINE_TEST_SURELY_UNSET_VAR")
                .unwrap()
                .is_none()
        );
    }

    fn feed(events: &[&str]) -> (Measure, Vec<u64>, Result<bool, String>) {
        feed_at(Instant::now(), events)
    }

    /// Feeds events arriving 10 ms apart, the first 10 ms after `t0`.
    fn feed_at(t0: Instant, events: &[&str]) -> (Measure, Vec<u64>, Result<bool, String>) {
        let mut m = Measure::new();
        let mut gaps = Vec::new();
        let mut last = Ok(false);
        for (i, e) in events.iter().enumerate() {
            let now = t0 + Duration::from_millis(10 * (i as u64 + 1));
            last = m
                .on_event(
                    SseEvent {
                        event: None,
                        data: e,
                        invalid_utf8: false,
                    },
                    now,
                    &mut |g| gaps.push(g),
                    &Redactor::default(),
                )
                .map_err(|f| f.message);
            if last.is_err() {
                break;
            }
        }
        (m, gaps, last)
    }

    #[test]
    fn content_chunks_count_one_token_each_and_gaps_are_between_them() {
        let t0 = Instant::now();
        let (m, gaps, r) = feed_at(
            t0,
            &[
                r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
                r#"{"choices":[{"delta":{"content":"a"}}]}"#,
                r#"{"choices":[{"delta":{"content":"b\n\u00e9"}}]}"#,
                r#"{"choices":[{"delta":{"reasoning_content":"c"}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#,
                "[DONE]",
            ],
        );
        assert_eq!(r, Ok(true));
        assert_eq!(m.stream_tokens, 3);
        assert_eq!(gaps, vec![10_000, 10_000]);
        assert_eq!(m.first, Some(t0 + Duration::from_millis(20)));
        assert_eq!(m.finish_reason.as_deref(), Some("length"));
        assert_eq!(m.usage_completion, None);
    }

    #[test]
    fn cumulative_usage_splits_a_multi_token_chunk_into_equal_gaps() {
        let (m, gaps, _) = feed(&[
            r#"{"choices":[{"text":"a"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
            r#"{"choices":[{"text":"bcd"}],"usage":{"prompt_tokens":5,"completion_tokens":4}}"#,
            r#"{"choices":[{"text":"e"}],"usage":{"prompt_tokens":5,"completion_tokens":5}}"#,
        ]);
        assert_eq!(gaps, vec![3333, 3333, 3333, 10_000]);
        assert_eq!(m.stream_tokens, 5);
        assert_eq!((m.usage_prompt, m.usage_completion), (Some(5), Some(5)));
        assert_eq!((m.itl_count, m.itl_max), (4, 10_000));
    }

    #[test]
    fn final_usage_chunk_without_choices_sets_the_counts() {
        let (m, _, _) = feed(&[
            r#"{"choices":[{"text":"a","finish_reason":null}]}"#,
            r#"{"choices":[{"text":"","finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#,
        ]);
        assert_eq!((m.usage_prompt, m.usage_completion), (Some(7), Some(2)));
        assert_eq!(m.stream_tokens, 1);
        assert_eq!(m.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn error_objects_in_the_stream_are_invalid_responses() {
        for e in [
            r#"{"error":{"message":"boom","type":"x"}}"#,
            r#"{"object":"error","message":"boom","code":500}"#,
            r#"{"error":"boom"}"#,
        ] {
            let (_, _, r) = feed(&[r#"{"choices":[{"text":"a"}]}"#, e]);
            assert_eq!(r, Err("error in stream: boom".to_owned()), "{e}");
        }
    }

    #[test]
    fn error_event_is_an_invalid_response() {
        let mut m = Measure::new();
        let ev = SseEvent {
            event: Some("error"),
            data: r#"{"message":"overloaded"}"#,
            invalid_utf8: false,
        };
        let r = m.on_event(ev, Instant::now(), &mut |_| {}, &Redactor::default());
        assert!(r.is_err_and(
            |f| f.outcome == Outcome::InvalidResponse && f.message.contains("overloaded")
        ));
    }

    #[test]
    fn implausible_usage_jump_counts_one_token() {
        let (m, gaps, _) = feed(&[
            r#"{"choices":[{"text":"a"}]}"#,
            r#"{"choices":[{"text":"b"}],"usage":{"completion_tokens":99999999}}"#,
        ]);
        assert_eq!((m.stream_tokens, gaps.len()), (2, 1));
    }

    #[test]
    fn bad_json_is_an_invalid_response_quoting_the_data() {
        let (_, _, r) = feed(&["{not json"]);
        let msg = r.unwrap_err();
        assert!(
            msg.starts_with("invalid json in stream") && msg.contains("{not json"),
            "{msg}"
        );
    }

    #[test]
    fn snippet_is_short_and_on_one_line() {
        let s = snippet(&format!("a\nb{}", "é".repeat(300)));
        assert!(s.starts_with("a b") && s.ends_with('…') && s.len() <= SNIPPET + 3);
    }
}
