//! What one request records. Shared by the client (which fills it in), the recorder (which
//! streams it to `requests.jsonl` and folds it into windows) and the analysis.
//!
//! ## Outcome classes
//! Every request ends in exactly one class. Only `ok` is a success: the analysis counts every
//! other class as an error (error rate = non-`ok` share), so a class must never flatter — an
//! answer the server did not say was complete is not `ok`, whatever arrived before. The one
//! exception is `client_error`: the request never reached the server, so it is counted on its
//! own (`client_errors`) and kept out of the server's error rate (errors / (requests −
//! client_errors)) and out of `errors_by_kind`; a run with client errors measured the client.
//!
//! | class (`errors_by_kind` key) | what the server did |
//! |---|---|
//! | `ok` | 2xx, and the answer carried a `finish_reason` (streamed: before `[DONE]` or the end of the body; a connection lost *after* the finish reason is still `ok`) |
//! | `http_<code>` | answered with a non-2xx status (429, 500, 503…); up to 200 characters of its body are kept |
//! | `timeout` | sent nothing more within `--timeout` (counted from the actual send): no headers, no first token, or a stream that stalled |
//! | `connect_error` | the connection could not be made: refused, unreachable, DNS, TLS handshake, or no SYN-ACK within `--connect-timeout` |
//! | `client_error` | nothing the server did: the client ran out of a local resource before the request left (no free ephemeral port `EADDRNOTAVAIL`, no file descriptor `EMFILE`/`ENFILE`, no socket buffer `ENOBUFS`) |
//! | `connection_reset` | the connection broke before the answer was complete: RST, or EOF before the headers or inside a chunked/length-framed body |
//! | `stream_ended_early` | the answer ended without a `finish_reason`: `[DONE]` after some or no tokens (llama.cpp when a new request interrupts one), a close-delimited stream that just stops, an empty event stream, a whole JSON response with `finish_reason: null` |
//! | `invalid_response` | a 2xx that is not what was asked for: not HTTP at all; HTML (or any body without a single SSE event) instead of an event stream; bad JSON in an event or the response; bytes that are not UTF-8; a body whose `content-encoding` does not decode; an event or line larger than `--max-event-size` (1 MiB); an error object or `event: error` in the stream |

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The classified result of one request (see the table in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// A complete response: it carried a `finish_reason`.
    Ok,
    /// The server answered with a non-2xx HTTP status.
    HttpStatus { code: u16 },
    /// The per-request timeout expired (connect, first byte or whole response).
    Timeout,
    /// The TCP/TLS connection could not be established.
    ConnectError,
    /// The connection was reset or closed while the response was being read.
    ConnectionReset,
    /// The client ran out of a local resource (ephemeral ports, file descriptors) before the
    /// request left: not the server's error.
    ClientError,
    /// The answer ended without a `finish_reason` (`[DONE]` or EOF without one).
    StreamEndedEarly,
    /// The response could not be understood (not HTTP, not SSE or JSON, bad JSON, invalid
    /// UTF-8, undecodable content encoding, an oversized event, an error object mid-stream).
    InvalidResponse,
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// The client's own failure (see [`Outcome::ClientError`]): not a server error.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Outcome::ClientError)
    }

    /// A failure the server is answerable for: every class but `ok` and `client_error`.
    pub fn is_server_error(&self) -> bool {
        !self.is_ok() && !self.is_client_error()
    }

    /// The key used in `errors_by_kind`: `http_503`, `timeout`, `connect_error`, ...
    pub fn key(&self) -> Cow<'static, str> {
        match self {
            Outcome::Ok => Cow::Borrowed("ok"),
            Outcome::HttpStatus { code } => Cow::Owned(format!("http_{code}")),
            Outcome::Timeout => Cow::Borrowed("timeout"),
            Outcome::ConnectError => Cow::Borrowed("connect_error"),
            Outcome::ConnectionReset => Cow::Borrowed("connection_reset"),
            Outcome::ClientError => Cow::Borrowed("client_error"),
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
    /// A short description of what went wrong. Server text in it has the API key and every
    /// header value masked (`***`) before it is stored.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}
