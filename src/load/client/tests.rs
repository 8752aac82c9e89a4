//! Unit tests of the client: request bodies, base URLs, secrets, chunk measurement.

use super::measure::{Measure, snippet};
use super::*;
use crate::load::redact::Redactor;
use crate::load::sse::SseEvent;

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
    assert!(
        r.is_err_and(|f| f.outcome == Outcome::InvalidResponse && f.message.contains("overloaded"))
    );
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
