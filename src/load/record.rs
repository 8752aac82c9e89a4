//! What one request records. Shared by the client (which fills it in), the recorder (which
//! streams it to `requests.jsonl` and folds it into windows) and the analysis.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The classified result of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// A complete response (stream ended with a finish reason or `[DONE]`).
    Ok,
    /// The server answered with a non-2xx HTTP status.
    HttpStatus { code: u16 },
    /// The per-request timeout expired (connect, first byte or whole response).
    Timeout,
    /// The TCP/TLS connection could not be established.
    ConnectError,
    /// The connection was reset or closed while the response was being read.
    ConnectionReset,
    /// The stream ended without a finish reason or `[DONE]`.
    StreamEndedEarly,
    /// The response could not be understood (bad JSON, bad SSE, an error object mid-stream).
    InvalidResponse,
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// The key used in `errors_by_kind`: `http_503`, `timeout`, `connect_error`, ...
    pub fn key(&self) -> Cow<'static, str> {
        match self {
            Outcome::Ok => Cow::Borrowed("ok"),
            Outcome::HttpStatus { code } => Cow::Owned(format!("http_{code}")),
            Outcome::Timeout => Cow::Borrowed("timeout"),
            Outcome::ConnectError => Cow::Borrowed("connect_error"),
            Outcome::ConnectionReset => Cow::Borrowed("connection_reset"),
            Outcome::StreamEndedEarly => Cow::Borrowed("stream_ended_early"),
            Outcome::InvalidResponse => Cow::Borrowed("invalid_response"),
        }
    }
}

/// Where an output-token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage` object.
    Usage,
    /// Counted from the stream's content chunks (no `usage` was sent).
    Stream,
}

/// One request, as measured. Times are microseconds; offsets are from the run's start.
/// Latencies (`ttft_us`, `e2e_us`) are measured from the *intended* start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: u64,
    /// Workload class that produced the request (`chat`, `code`, `corpus`, ...).
    pub class: String,
    /// Intended start, seconds from the run's start.
    pub intended_s: f64,
    /// Actual send time minus intended start.
    pub dispatch_lag_us: u64,
    /// Intended start to the first chunk that carried content. `None` when none arrived.
    pub ttft_us: Option<u64>,
    /// Intended start to the end of the response (or the failure).
    pub e2e_us: u64,
    /// Number of inter-token gaps fed to the ITL histogram, and their mean and max.
    pub itl_count: u64,
    pub itl_mean_us: u64,
    pub itl_max_us: u64,
    pub output_tokens: u64,
    pub token_source: TokenSource,
    pub input_tokens: u64,
    pub finish_reason: Option<String>,
    pub outcome: Outcome,
    /// A short description of what went wrong (never contains secrets).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}
