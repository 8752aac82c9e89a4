//! Outcome classes that never flatter: each misbehaviour a real server shows, produced on a
//! loopback socket, and the class, tokens and TTFT it must be recorded with.

use super::*;
use std::io::Write;

/// `n` content chunks, 30 ms apart, then `tail`, on a close-delimited SSE body.
fn tokens_then(n: usize, tail: &str) -> impl Fn(&str) -> Vec<Step> + use<> {
    let tail = tail.to_owned();
    move |_| {
        let mut steps = vec![w(SSE_CLOSE_DELIMITED)];
        for i in 0..n {
            steps.push(Step::Sleep(ms(30)));
            steps.push(w(text(&format!("t{i}"))));
        }
        steps.push(w(&tail));
        steps
    }
}

#[tokio::test]
async fn done_after_tokens_without_a_finish_reason_is_stream_ended_early() {
    // llama.cpp's server, when a new request interrupts a running one: 7 of 16 tokens, then
    // [DONE] and no finish_reason.
    let srv = serve(tokens_then(7, DONE)).await;
    let (rec, gaps) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::StreamEndedEarly, "{rec:?}");
    assert_eq!(
        rec.error.as_deref(),
        Some("stream ended with [DONE] after 7 tokens without a finish_reason")
    );
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (7, TokenSource::Stream)
    );
    assert_eq!((rec.finish_reason.as_deref(), gaps.len()), (None, 6));
    assert_between("ttft", rec.ttft_us.unwrap(), ms(30), ms(1000));
    assert!(rec.ttft_us.unwrap() < rec.e2e_us, "{rec:?}");
}

#[tokio::test]
async fn done_with_no_content_at_all_is_stream_ended_early_without_ttft() {
    let srv = serve(tokens_then(0, DONE)).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::StreamEndedEarly, "{rec:?}");
    assert_eq!((rec.output_tokens, rec.ttft_us), (0, None));
    assert_eq!(
        rec.error.as_deref(),
        Some("stream ended with [DONE] after 0 tokens without a finish_reason")
    );
}

#[tokio::test]
async fn usage_and_done_without_a_finish_reason_is_stream_ended_early() {
    // Usage says 16 tokens were produced, but the stream never said the answer ended.
    let srv = serve(tokens_then(2, &(usage(5, 16) + DONE))).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::StreamEndedEarly, "{rec:?}");
    assert_eq!(
        (rec.output_tokens, rec.token_source),
        (16, TokenSource::Usage)
    );
}

#[tokio::test]
async fn empty_event_stream_is_stream_ended_early() {
    let srv = serve(|_| vec![w(SSE_CLOSE_DELIMITED)]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::StreamEndedEarly, "{rec:?}");
    assert_eq!((rec.output_tokens, rec.ttft_us), (0, None));
    assert_eq!(
        rec.error.as_deref(),
        Some("stream ended after 0 bytes and 0 tokens without finish_reason or [DONE]")
    );
}

#[tokio::test]
async fn one_line_html_page_behind_a_200_is_invalid_response() {
    // No newline at all: the page is one partial line, which the old client took for a cut
    // stream.
    let page = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>";
    let srv = serve(move |_| vec![response("200 OK", "text/html; charset=utf-8", page)]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert_eq!(
        rec.error.as_deref(),
        Some(format!(
            "response is not an event stream (content-type text/html; charset=utf-8): {page}"
        ))
        .as_deref()
    );
    assert_eq!((rec.output_tokens, rec.ttft_us), (0, None));
}

#[tokio::test]
async fn html_labelled_as_an_event_stream_is_invalid_response() {
    let page = "<html>\n<body>maintenance</body>\n</html>\n";
    let srv = serve(move |_| vec![w(SSE_CLOSE_DELIMITED), w(page)]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert!(
        rec.error.as_deref().unwrap().starts_with(
            "response is not an event stream (content-type text/event-stream): <html>"
        ),
        "{rec:?}"
    );
}

#[tokio::test]
async fn plain_text_without_a_content_type_is_invalid_response() {
    let srv = serve(|_| vec![w("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK")]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert_eq!(
        rec.error.as_deref(),
        Some("response is not an event stream (content-type none): OK")
    );
}

#[tokio::test]
async fn invalid_utf8_in_a_data_line_is_invalid_response() {
    let srv = serve(|_| {
        vec![
            w(SSE_CHUNKED),
            w(chunk(text("a"))),
            w(chunk(b"data: {\"choices\":[{\"text\":\"\xff\xfe\"}]}\n\n")),
            Step::Hang,
        ]
    })
    .await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .starts_with("invalid utf-8 in stream: "),
        "{rec:?}"
    );
    assert_eq!(rec.output_tokens, 1, "the valid chunk before it counts");
    assert!(rec.ttft_us.is_some());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const SSE_GZIP: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
     content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn gzip_encoded_event_stream_is_decoded_and_measured() {
    let body = gzip(ok_stream().as_bytes());
    let srv = serve(move |_| {
        let mut steps = vec![w(SSE_GZIP)];
        for piece in body.chunks(9) {
            steps.push(w(chunk(piece)));
        }
        steps.push(w(CHUNKED_END));
        steps
    })
    .await;
    let (rec, gaps) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!((rec.output_tokens, gaps.len()), (3, 2));
    assert_eq!(rec.finish_reason.as_deref(), Some("stop"));
    let req = srv.requests.lock().unwrap()[0].to_lowercase();
    assert!(req.contains("accept-encoding: identity\r\n"), "{req}");
}

#[tokio::test]
async fn gzip_header_on_a_plain_body_is_invalid_response() {
    let srv = serve(|_| vec![w(SSE_GZIP), w(chunk(ok_stream())), w(CHUNKED_END)]).await;
    let (rec, _) = send(&client(&srv.base, |_| {})).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert_eq!((rec.output_tokens, rec.ttft_us), (0, None));
    assert!(
        rec.error.as_deref().unwrap().contains("cannot be decoded"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn event_larger_than_the_limit_fails_at_once_with_the_reason() {
    // A data line that never ends: the request fails as soon as it passes the limit, not at
    // the timeout, and the client's memory stays bounded.
    let srv = serve(|_| {
        let mut steps = vec![w(SSE_CHUNKED), w(chunk(text("a"))), w(chunk("data: "))];
        for _ in 0..40 {
            steps.push(w(chunk(vec![b'x'; 4096])));
        }
        steps.push(Step::Hang);
        steps
    })
    .await;
    let c = client(&srv.base, |c| {
        c.max_event_bytes = 64 * 1024;
        c.timeout = Duration::from_secs(10);
    });
    let (rec, _) = send(&c).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    let err = rec.error.as_deref().unwrap();
    assert!(
        err.contains("an event or line longer than the limit of 65536 bytes"),
        "{err}"
    );
    assert_eq!(rec.output_tokens, 1);
    assert!(
        rec.e2e_us < 5_000_000,
        "failed at the limit, not the timeout: {rec:?}"
    );
}

#[tokio::test]
async fn event_within_the_limit_is_accepted() {
    let big = "y".repeat(60 * 1024);
    let body = [text(&big), finish("stop"), DONE.into()].concat();
    let srv = serve(move |_| vec![w(SSE_CLOSE_DELIMITED), w(&body)]).await;
    let (rec, _) = send(&client(&srv.base, |c| c.max_event_bytes = 64 * 1024)).await;
    assert_eq!(rec.outcome, Outcome::Ok, "{rec:?}");
    assert_eq!(rec.output_tokens, 1);
}

#[tokio::test]
async fn whole_response_without_a_finish_reason_is_stream_ended_early() {
    let body = r#"{"choices":[{"index":0,"text":"a b","finish_reason":null}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    let srv = serve(move |_| vec![response("200 OK", "application/json", body)]).await;
    let (rec, _) = send(&client(&srv.base, |c| c.stream = false)).await;
    assert_eq!(rec.outcome, Outcome::StreamEndedEarly, "{rec:?}");
    assert_eq!((rec.output_tokens, rec.finish_reason.as_deref()), (2, None));
    assert_eq!(rec.ttft_us, Some(rec.e2e_us));
}

#[tokio::test]
async fn whole_response_with_invalid_utf8_is_invalid_response() {
    let body = b"{\"choices\":[{\"index\":0,\"text\":\"\xff\",\"finish_reason\":\"stop\"}]}";
    let mut head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(body);
    let srv = serve(move |_| vec![Step::Write(head.clone())]).await;
    let (rec, _) = send(&client(&srv.base, |c| c.stream = false)).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .starts_with("invalid json in response"),
        "{rec:?}"
    );
}

#[tokio::test]
async fn html_for_a_non_streaming_request_is_invalid_response() {
    let srv = serve(|_| vec![response("200 OK", "text/html", "<html>login</html>")]).await;
    let (rec, _) = send(&client(&srv.base, |c| c.stream = false)).await;
    assert_eq!(rec.outcome, Outcome::InvalidResponse, "{rec:?}");
    assert!(
        rec.error.as_deref().unwrap().contains("<html>login"),
        "{rec:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_counts_the_unflattering_classes_as_errors() {
    use faultline::load::engine::{self, Control, EngineConfig};
    use faultline::load::schedule::{ArrivalProcess, RateShape, Schedule};
    use faultline::load::workload::Workload;
    // A server that answers in turn: a complete stream, a cut-off one ending in [DONE], an HTML
    // page behind a 200, and a stream with a byte that is not UTF-8.
    let n = AtomicUsize::new(0);
    let srv = serve(move |_| match n.fetch_add(1, Ordering::SeqCst) % 4 {
        0 => vec![w(SSE_CLOSE_DELIMITED), w(ok_stream())],
        1 => vec![w(SSE_CLOSE_DELIMITED), w(text("a") + DONE)],
        2 => vec![response("200 OK", "text/html", "<html>hi</html>")],
        _ => vec![w(SSE_CLOSE_DELIMITED), w(b"data: \"\xc3\"\n\n")],
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = engine::run(
        EngineConfig {
            schedule: Schedule::Open {
                shape: RateShape::Fixed(20.0),
                process: ArrivalProcess::Constant,
                duration: Duration::from_secs(2),
                max_in_flight: Some(1),
            },
            workload: Workload::parse_mix("fixed:8:4").unwrap(),
            seed: 1,
            window_s: 1.0,
            out_dir: dir.path().to_path_buf(),
            overload: Default::default(),
        },
        client(&srv.base, |_| {}),
        Arc::new(Control::default()),
        |_, _| {},
    )
    .await
    .unwrap();
    let s = &out.summary;
    assert_eq!((s.requests, s.ok, s.errors), (40, 10, 30), "{s:?}");
    assert_eq!(s.error_rate, Some(0.75));
    assert_eq!(
        s.errors_by_kind,
        [
            ("invalid_response".to_owned(), 20),
            ("stream_ended_early".to_owned(), 10)
        ]
        .into()
    );
}
