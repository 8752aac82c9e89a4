//! The OpenAI response bodies, written from string templates.
//!
//! The zero-latency mode must serve thousands of streamed requests per second on a core shared
//! with the client being measured, so nothing here builds JSON trees: the constant head of every
//! chunk (`{"id":…,"model":…`) is formatted once per request and each chunk is appended to one
//! buffer. Every generated token is the text `"tok "`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The text of every generated token.
pub(crate) const TOKEN: &str = "tok ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Completions,
    Chat,
}

/// One response being written.
pub(crate) struct Response {
    api: Api,
    /// `{"id":"…","object":"…","created":…,"model":"…"` (no closing brace).
    head: String,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    include_usage: bool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Response {
    /// `model_json` is the model name already JSON-quoted (`"sim-llama-70b"`).
    pub fn new(
        api: Api,
        stream: bool,
        model_json: &str,
        prompt_tokens: u32,
        max_tokens: u32,
        include_usage: bool,
    ) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (prefix, object) = match (api, stream) {
            (Api::Completions, _) => ("cmpl", "text_completion"),
            (Api::Chat, true) => ("chatcmpl", "chat.completion.chunk"),
            (Api::Chat, false) => ("chatcmpl", "chat.completion"),
        };
        let mut head = String::with_capacity(96 + model_json.len());
        let _ = write!(
            head,
            r#"{{"id":"{prefix}-{id:x}","object":"{object}","created":{created},"model":{model_json}"#
        );
        Response {
            api,
            head,
            prompt_tokens,
            max_tokens,
            include_usage,
        }
    }

    /// What is sent before the first token (chat: the assistant role chunk).
    pub fn start(&self, buf: &mut String) {
        if self.api == Api::Chat {
            buf.push_str("data: ");
            buf.push_str(&self.head);
            buf.push_str(r#","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#);
            buf.push_str("\n\n");
        }
    }

    /// One token's chunk; the last one carries `finish_reason` (as vLLM does).
    pub fn token(&self, buf: &mut String, last: bool) {
        buf.push_str("data: ");
        buf.push_str(&self.head);
        buf.push_str(match self.api {
            Api::Completions => r#","choices":[{"index":0,"text":"tok ","logprobs":null,"finish_reason":"#,
            Api::Chat => r#","choices":[{"index":0,"delta":{"content":"tok "},"logprobs":null,"finish_reason":"#,
        });
        buf.push_str(if last { r#""length"}]}"# } else { "null}]}" });
        buf.push_str("\n\n");
        if last {
            self.finish(buf);
        }
    }

    /// The usage chunk (if asked for) and `[DONE]`.
    fn finish(&self, buf: &mut String) {
        if self.include_usage {
            buf.push_str("data: ");
            buf.push_str(&self.head);
            buf.push_str(r#","choices":[],"usage":"#);
            self.usage(buf);
            buf.push_str("}\n\n");
        }
        buf.push_str("data: [DONE]\n\n");
    }

    fn usage(&self, buf: &mut String) {
        let _ = write!(
            buf,
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
            self.prompt_tokens,
            self.max_tokens,
            u64::from(self.prompt_tokens) + u64::from(self.max_tokens)
        );
    }

    /// Size hint for a whole streamed body.
    pub fn stream_len_hint(&self) -> usize {
        (self.head.len() + 100) * (self.max_tokens as usize + 2) + 20
    }

    /// The whole stream at once (zero-latency mode).
    pub fn whole_stream(&self) -> String {
        let mut buf = String::with_capacity(self.stream_len_hint());
        self.start(&mut buf);
        for i in 1..=self.max_tokens {
            self.token(&mut buf, i == self.max_tokens);
        }
        buf
    }

    /// The non-streaming JSON body.
    pub fn whole_json(&self) -> String {
        let text_len = TOKEN.len() * self.max_tokens as usize;
        let mut buf = String::with_capacity(self.head.len() + text_len + 200);
        buf.push_str(&self.head);
        buf.push_str(match self.api {
            Api::Completions => r#","choices":[{"index":0,"text":""#,
            Api::Chat => r#","choices":[{"index":0,"message":{"role":"assistant","content":""#,
        });
        for _ in 0..self.max_tokens {
            buf.push_str(TOKEN);
        }
        buf.push_str(match self.api {
            Api::Completions => r#"","logprobs":null,"finish_reason":"length"}],"usage":"#,
            Api::Chat => r#""},"logprobs":null,"finish_reason":"length"}],"usage":"#,
        });
        self.usage(&mut buf);
        buf.push('}');
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn events(body: &str) -> Vec<&str> {
        body.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").expect("data line"))
            .collect()
    }

    #[test]
    fn completion_stream_has_openai_shape_usage_and_done() {
        let r = Response::new(Api::Completions, true, "\"m\"", 7, 3, true);
        let body = r.whole_stream();
        let ev = events(&body);
        assert_eq!(ev.len(), 5);
        assert_eq!(ev[4], "[DONE]");
        for (i, e) in ev[..3].iter().enumerate() {
            let v: Value = serde_json::from_str(e).unwrap();
            assert_eq!(v["object"], "text_completion");
            assert_eq!(v["model"], "m");
            assert_eq!(v["choices"][0]["text"], "tok ");
            let want = if i == 2 {
                Value::from("length")
            } else {
                Value::Null
            };
            assert_eq!(v["choices"][0]["finish_reason"], want);
        }
        let usage: Value = serde_json::from_str(ev[3]).unwrap();
        assert_eq!(usage["choices"], Value::Array(vec![]));
        assert_eq!(usage["usage"]["total_tokens"], 10);
    }

    #[test]
    fn chat_stream_starts_with_role_and_omits_usage_unless_asked() {
        let r = Response::new(Api::Chat, true, "\"m\"", 7, 2, false);
        let body = r.whole_stream();
        let ev = events(&body);
        assert_eq!(ev.len(), 4);
        let first: Value = serde_json::from_str(ev[0]).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        let tok: Value = serde_json::from_str(ev[2]).unwrap();
        assert_eq!(tok["choices"][0]["delta"]["content"], "tok ");
        assert_eq!(tok["choices"][0]["finish_reason"], "length");
        assert_eq!(ev[3], "[DONE]");
    }

    #[test]
    fn non_stream_bodies_are_valid_json_with_usage() {
        for api in [Api::Completions, Api::Chat] {
            let r = Response::new(api, false, "\"m\"", 5, 4, false);
            let v: Value = serde_json::from_str(&r.whole_json()).unwrap();
            assert_eq!(v["usage"]["completion_tokens"], 4);
            assert_eq!(v["choices"][0]["finish_reason"], "length");
            let text = match api {
                Api::Completions => &v["choices"][0]["text"],
                Api::Chat => &v["choices"][0]["message"]["content"],
            };
            assert_eq!(text, "tok tok tok tok ");
        }
    }
}
