//! What one request has shown so far ([`Measure`]), how a failure is classified
//! ([`Failure`], [`classify`]), and the small helpers around them.

use super::wire::Chunk;
use super::{ClientConfig, MAX_TOKENS_PER_CHUNK, SNIPPET};
use crate::load::record::Outcome;
use crate::load::redact::Redactor;
use crate::load::sse::SseEvent;
use std::error::Error as StdError;
use std::time::{Duration, Instant};

/// Where the request was when it failed (for messages only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Connecting, sending, waiting for the response headers.
    Headers,
    /// Reading the body.
    Body,
}

/// What one request has shown so far.
pub(super) struct Measure {
    pub(super) phase: Phase,
    /// Arrival of the first and the latest content chunk.
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
    pub(super) stream_tokens: u64,
    pub(super) usage_prompt: Option<u64>,
    pub(super) usage_completion: Option<u64>,
    pub(super) itl_count: u64,
    pub(super) itl_sum: u64,
    pub(super) itl_max: u64,
    pub(super) finish_reason: Option<String>,
    pub(super) data_events: u64,
    pub(super) body_bytes: u64,
    /// The response is complete (a timeout after this point is not a failure).
    pub(super) complete: bool,
    /// When it became complete.
    pub(super) end: Option<Instant>,
}

impl Measure {
    pub(super) fn new() -> Measure {
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
    pub(super) fn on_event(
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
    pub(super) fn content(&mut self, now: Instant, k: u64, on_gap: &mut impl FnMut(u64)) {
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

    pub(super) fn timeout_message(&self, timeout: Duration) -> String {
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
pub(super) struct Failure {
    pub(super) outcome: Outcome,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn invalid(message: String) -> Failure {
        Failure {
            outcome: Outcome::InvalidResponse,
            message,
        }
    }
}

/// Classifies a transport error from reqwest (see the table in the module docs).
pub(super) fn classify(e: &reqwest::Error, m: &Measure, cfg: &ClientConfig) -> Failure {
    let root = root_message(e);
    if let Some(why) = local_exhaustion(e) {
        // Our own machine ran out (ports, descriptors): the request never reached the server,
        // so it must not count as the server's connect error.
        return Failure {
            outcome: Outcome::ClientError,
            message: format!("client out of resources: {why}"),
        };
    }
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

/// The local resource whose exhaustion caused `e`, if any: an OS error anywhere in its chain
/// that says this machine (not the network or the server) is out of ephemeral ports, file
/// descriptors or socket buffers.
pub(crate) fn local_exhaustion(e: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(why) = io.raw_os_error().and_then(exhausted_resource)
        {
            return Some(why);
        }
        cur = err.source();
    }
    None
}

/// What an errno says ran out on this machine, for the errnos that mean exactly that.
pub(crate) fn exhausted_resource(errno: i32) -> Option<&'static str> {
    match errno {
        libc::EADDRNOTAVAIL => {
            Some("no free local port (EADDRNOTAVAIL: ephemeral ports exhausted)")
        }
        libc::EMFILE => Some(
            "too many open files in this process (EMFILE: raise `ulimit -n` or lower --max-connections)",
        ),
        libc::ENFILE => Some("too many open files on this machine (ENFILE)"),
        libc::ENOBUFS => Some("no socket buffer space (ENOBUFS)"),
        _ => None,
    }
}

/// Reads the body up to `limit` bytes; true when there was more (the rest is not read).
pub(super) async fn read_limited(
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
pub(super) fn root_message(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A short reason for a transport error: the TLS reason with its fix when the handshake failed,
/// the I/O error kind when there is one ("connection refused"), else the innermost message.
pub(super) fn reason(e: &reqwest::Error) -> String {
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
pub(super) fn snippet(s: &str) -> String {
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

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(super) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod exhaustion_tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp connect error")
        }
    }
    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn port_and_descriptor_exhaustion_deep_in_the_chain_is_the_clients_not_the_servers() {
        for errno in [libc::EADDRNOTAVAIL, libc::EMFILE, libc::ENFILE] {
            let e = Wrapped(std::io::Error::from_raw_os_error(errno));
            assert!(local_exhaustion(&e).is_some(), "errno {errno}");
        }
        for errno in [libc::ECONNREFUSED, libc::ENETUNREACH, libc::ETIMEDOUT] {
            let e = Wrapped(std::io::Error::from_raw_os_error(errno));
            assert_eq!(local_exhaustion(&e), None, "errno {errno} is the network's");
        }
    }
}
