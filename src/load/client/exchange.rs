//! One request on the wire: send, status, then the body as an event stream or a whole JSON
//! response, each turned into measurements or a classified [`Failure`].

use super::measure::{Failure, Measure, Phase, classify, read_limited, snippet};
use super::wire::Chunk;
use super::{DRAIN_GRACE, ERROR_BODY_LIMIT, HEAD, Inner, RESPONSE_LIMIT};
use crate::load::record::Outcome;
use crate::load::sse::SseParser;
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use std::time::Instant;

impl Inner {
    /// The request itself; fills `m` as it goes so that a timeout keeps what was measured.
    pub(super) async fn exchange(
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
    pub(super) fn snippet(&self, text: &str, cut: bool) -> String {
        if cut {
            snippet(&self.redactor.redact_cut(text))
        } else {
            snippet(&self.redactor.redact(text))
        }
    }
}
