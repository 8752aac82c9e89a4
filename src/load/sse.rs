//! An incremental Server-Sent Events parser (WHATWG HTML, "9.2 Server-sent events").
//!
//! Why our own: the client parses every byte a streaming LLM endpoint sends, at tens of thousands
//! of events per second on two cores, and it must stay correct whatever way the network slices
//! the stream — a read may end anywhere, also in the middle of a UTF-8 character or between the
//! `\r` and `\n` of a CRLF. The parser therefore works on bytes, splits lines on `\r`, `\n` or
//! `\r\n` (those bytes never occur inside a multi-byte UTF-8 sequence, so a complete line is
//! always whole characters), and decodes UTF-8 only when an event is complete.
//!
//! It allocates nothing per byte or per event once its buffers have grown: events are lent out
//! ([`SseParser::next_event`] returns an [`SseEvent`] borrowing the parser's buffers), which is
//! what the client needs to deserialize each chunk with borrowed `serde` structs.
//!
//! What it adds beyond the spec is a count of lines whose field is not one of `data`, `event`,
//! `id`, `retry`: the spec ignores them, but a response made only of such lines is not an event
//! stream at all (an HTML error page behind a 200, say), and the client wants to say so.

use memchr::memchr2;

/// One dispatched event, borrowing the parser's buffers until the next call on the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, when one was given (the spec's default type `message` is `None`).
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
}

/// An event with owned fields, for callers that keep events around (tests, tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent<'_> {
    pub fn to_owned_event(&self) -> OwnedSseEvent {
        OwnedSseEvent {
            event: self.event.map(str::to_owned),
            data: self.data.to_owned(),
        }
    }
}

/// What [`SseParser::finish`] found at the end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    /// The stream ended inside an event (a field line without the blank line that ends the
    /// event, or a partial line). Per the spec that event is discarded.
    pub discarded_partial_event: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Incremental SSE parser: [`push`](Self::push) bytes as they arrive, then drain complete events
/// with [`next_event`](Self::next_event); call [`finish`](Self::finish) at end of stream.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Received bytes not yet consumed; `pos` is where the unconsumed part starts.
    buf: Vec<u8>,
    pos: usize,
    /// Data buffer of the event being built (each `data` value followed by `\n`).
    data: String,
    /// Event type of the event being built.
    event: String,
    /// Whether a `data` field was seen for the event being built.
    has_data: bool,
    /// The last line ended with `\r` at the end of the buffer: a `\n` that follows belongs to it.
    after_cr: bool,
    /// The BOM check at the very start of the stream is done.
    started: bool,
    /// The previously returned event must be cleared before parsing on.
    lent: bool,
    /// Whether there are field lines since the last dispatch (for `finish`).
    pending_fields: bool,
    last_event_id: String,
    retry_ms: Option<u64>,
    unknown_fields: u64,
    first_unknown: Option<String>,
}

impl SseParser {
    /// Appends received bytes. Cheap: one `memcpy` into a buffer that is reused.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            // Keep the buffer from growing without bound across a long stream: move the partial
            // line (usually short) to the front once the consumed part dominates.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes pushed so far contain one.
    pub fn next_event(&mut self) -> Option<SseEvent<'_>> {
        if self.lent {
            self.lent = false;
            self.data.clear();
            self.event.clear();
            self.has_data = false;
        }
        if !self.started && !self.skip_bom() {
            return None;
        }
        loop {
            if self.after_cr && self.pos < self.buf.len() {
                self.after_cr = false;
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
            }
            let rest = &self.buf[self.pos..];
            let end = memchr2(b'\r', b'\n', rest)?;
            let line_start = self.pos;
            let line_end = self.pos + end;
            let mut next = line_end + 1;
            if rest[end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.pos = next;
            if line_end == line_start {
                if self.dispatch() {
                    return Some(self.lend());
                }
            } else {
                self.process_line(line_start, line_end);
            }
        }
    }

    /// Ends the stream: whatever is not a complete event is discarded (per the spec, an event
    /// is only dispatched at a blank line). Returns what was discarded; the parser is reset.
    pub fn finish(&mut self) -> Finish {
        // Call after draining `next_event`: unconsumed bytes are then an unterminated line.
        let discarded_partial_event = self.buf.len() > self.pos || self.pending_fields;
        let last_event_id = std::mem::take(&mut self.last_event_id);
        let unknown_fields = self.unknown_fields;
        let first_unknown = self.first_unknown.take();
        let retry_ms = self.retry_ms;
        *self = SseParser {
            last_event_id,
            unknown_fields,
            first_unknown,
            retry_ms,
            ..SseParser::default()
        };
        Finish {
            discarded_partial_event,
        }
    }

    /// The last `id:` seen (the spec's "last event ID").
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The last valid `retry:` value, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Number of lines whose field name is not `data`, `event`, `id` or `retry`.
    pub fn unknown_fields(&self) -> u64 {
        self.unknown_fields
    }

    /// The first such line (truncated), for error messages.
    pub fn first_unknown_line(&self) -> Option<&str> {
        self.first_unknown.as_deref()
    }

    /// Strips a UTF-8 BOM at the start of the stream; false while it cannot yet tell.
    fn skip_bom(&mut self) -> bool {
        let rest = &self.buf[self.pos..];
        let n = rest.len().min(BOM.len());
        if rest[..n] != BOM[..n] {
            self.started = true;
            return true;
        }
        if n < BOM.len() {
            return false;
        }
        self.pos += BOM.len();
        self.started = true;
        true
    }

    fn process_line(&mut self, start: usize, end: usize) {
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return; // comment
        }
        self.pending_fields = true;
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                push_utf8(&mut self.data, value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                push_utf8(&mut self.event, value);
            }
            b"id" => {
                if !value.contains(&0) {
                    self.last_event_id = String::from_utf8_lossy(value).into_owned();
                }
            }
            b"retry" => {
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                    self.retry_ms = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                }
            }
            _ => {
                self.unknown_fields += 1;
                if self.first_unknown.is_none() {
                    let shown = &line[..line.len().min(80)];
                    self.first_unknown = Some(String::from_utf8_lossy(shown).into_owned());
                }
            }
        }
    }

    /// A blank line: true when there is an event to hand out; otherwise resets the event state.
    fn dispatch(&mut self) -> bool {
        self.pending_fields = false;
        if !self.has_data {
            self.event.clear();
            return false;
        }
        self.data.pop(); // the spec removes the last `\n`
        self.lent = true;
        true
    }

    fn lend(&self) -> SseEvent<'_> {
        SseEvent {
            event: (!self.event.is_empty()).then_some(self.event.as_str()),
            data: &self.data,
        }
    }
}

/// Appends a complete line's value. Lines are whole characters (see the module docs), so each
/// byte is validated once, here; invalid UTF-8 is replaced, as the spec's decoder does.
fn push_utf8(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(parser: &mut SseParser) -> Vec<OwnedSseEvent> {
        let mut out = Vec::new();
        while let Some(e) = parser.next_event() {
            out.push(e.to_owned_event());
        }
        out
    }

    fn parse(input: &[u8]) -> Vec<OwnedSseEvent> {
        let mut p = SseParser::default();
        p.push(input);
        parse_all(&mut p)
    }

    /// Feeds `input` in pieces cut at every given offset.
    fn parse_split(input: &[u8], cuts: &[usize]) -> Vec<OwnedSseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            p.push(&input[last..c]);
            out.extend(parse_all(&mut p));
            last = c;
        }
        out
    }

    fn ev(data: &str) -> OwnedSseEvent {
        OwnedSseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn single_event_with_lf_is_parsed() {
        assert_eq!(parse(b"data: hello\n\n"), vec![ev("hello")]);
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        assert_eq!(
            parse(b"data: a\r\n\r\ndata: b\r\n\r\n"),
            vec![ev("a"), ev("b")]
        );
    }

    #[test]
    fn bare_cr_line_endings_are_accepted() {
        assert_eq!(parse(b"data: a\r\rdata: b\r\r"), vec![ev("a"), ev("b")]);
    }

    #[test]
    fn mixed_line_endings_in_one_stream_are_accepted() {
        assert_eq!(
            parse(b"data: a\r\n\ndata: b\r\rdata: c\n\r\n"),
            vec![ev("a"), ev("b"), ev("c")]
        );
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_ending() {
        let input = b"data: a\r\n\r\ndata: b\r\n\r\n";
        for cut in 1..input.len() {
            assert_eq!(
                parse_split(input, &[cut]),
                vec![ev("a"), ev("b")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn cr_at_end_of_read_followed_by_data_line_is_a_line_ending() {
        // "\r" ends the read; the next read starts with a field, not "\n".
        assert_eq!(
            parse_split(b"data: a\r\rdata: b\r\r", &[8]),
            vec![ev("a"), ev("b")]
        );
    }

    #[test]
    fn event_split_across_reads_at_every_byte_is_reassembled() {
        let input = b"event: x\r\ndata: {\"a\": 1}\r\ndata: two\r\n\r\n: c\n\ndata:z\n\n";
        let whole = parse(input);
        assert_eq!(whole.len(), 2);
        for a in 0..input.len() {
            for b in a..input.len() {
                assert_eq!(parse_split(input, &[a, b]), whole, "cuts {a},{b}");
            }
        }
    }

    #[test]
    fn event_split_across_reads_mid_utf8_is_reassembled() {
        let input = "data: h\u{e9}llo \u{1F600} \u{4e16}\n\n".as_bytes();
        for cut in 0..input.len() {
            assert_eq!(
                parse_split(input, &[cut]),
                vec![ev("h\u{e9}llo \u{1F600} \u{4e16}")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn byte_at_a_time_feeding_yields_the_same_events() {
        let input = b"data: a\n\nevent: e\ndata: b\ndata: c\r\n\r\n";
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(parse_split(input, &cuts), parse(input));
    }

    #[test]
    fn comment_lines_are_ignored() {
        assert_eq!(
            parse(b": keep-alive\n\n:ping\ndata: x\n: mid\n\n"),
            vec![ev("x")]
        );
    }

    #[test]
    fn data_without_space_after_colon_is_accepted() {
        assert_eq!(parse(b"data:x\n\n"), vec![ev("x")]);
    }

    #[test]
    fn only_one_leading_space_is_stripped() {
        assert_eq!(parse(b"data:  x \n\n"), vec![ev(" x ")]);
    }

    #[test]
    fn multi_line_data_is_joined_with_lf() {
        assert_eq!(
            parse(b"data: a\ndata: b\ndata\ndata: c\n\n"),
            vec![ev("a\nb\n\nc")]
        );
    }

    #[test]
    fn field_without_colon_is_a_field_with_empty_value() {
        assert_eq!(parse(b"data\n\n"), vec![ev("")]);
        assert_eq!(
            parse(b"event\ndata: x\n\n"),
            vec![ev("x")],
            "`event` alone sets an empty type, which is the default"
        );
    }

    #[test]
    fn event_name_is_reported_and_reset_after_dispatch() {
        assert_eq!(
            parse(b"event: error\ndata: boom\n\ndata: next\n\n"),
            vec![
                OwnedSseEvent {
                    event: Some("error".into()),
                    data: "boom".into()
                },
                ev("next")
            ]
        );
    }

    #[test]
    fn blank_line_without_data_dispatches_nothing_and_resets_event_name() {
        assert_eq!(parse(b"event: x\n\ndata: y\n\n"), vec![ev("y")]);
        assert_eq!(parse(b"\n\n\r\n"), vec![]);
    }

    #[test]
    fn id_and_retry_are_recorded_not_dispatched() {
        let mut p = SseParser::default();
        p.push(b"id: 7\nretry: 1500\nretry: x1\n\ndata: a\nid: 8\n\n");
        assert_eq!(parse_all(&mut p), vec![ev("a")]);
        assert_eq!(p.last_event_id(), "8");
        assert_eq!(p.retry_ms(), Some(1500));
    }

    #[test]
    fn unknown_fields_are_ignored_but_counted() {
        let mut p = SseParser::default();
        p.push(b"<html>\nfoo: bar\ndata: ok\n\n");
        assert_eq!(parse_all(&mut p), vec![ev("ok")]);
        assert_eq!(p.unknown_fields(), 2);
        assert_eq!(p.first_unknown_line(), Some("<html>"));
    }

    #[test]
    fn leading_bom_is_stripped_even_when_split() {
        let input = b"\xEF\xBB\xBFdata: a\n\n";
        for cut in 0..4 {
            assert_eq!(parse_split(input, &[cut]), vec![ev("a")], "cut at {cut}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        assert_eq!(parse(b"data: a\xFFb\n\n"), vec![ev("a\u{FFFD}b")]);
    }

    #[test]
    fn finish_discards_an_event_without_its_blank_line() {
        let mut p = SseParser::default();
        p.push(b"data: a\n\ndata: [DONE]\n");
        assert_eq!(parse_all(&mut p), vec![ev("a")]);
        assert!(p.finish().discarded_partial_event);
        assert_eq!(parse_all(&mut p), vec![]);
    }

    #[test]
    fn finish_discards_a_partial_line() {
        let mut p = SseParser::default();
        p.push(b"data: a\n\ndata: [DO");
        assert_eq!(parse_all(&mut p), vec![ev("a")]);
        assert!(p.finish().discarded_partial_event);
    }

    #[test]
    fn finish_after_complete_events_discards_nothing() {
        let mut p = SseParser::default();
        p.push(b"data: a\n\n: trailing comment\n");
        assert_eq!(parse_all(&mut p), vec![ev("a")]);
        assert!(!p.finish().discarded_partial_event);
    }

    #[test]
    fn long_stream_does_not_grow_the_buffer_without_bound() {
        let mut p = SseParser::default();
        for _ in 0..10_000 {
            p.push(b"data: {\"choices\":[{\"text\":\"x\"}]}\n\ndata: par");
            while p.next_event().is_some() {}
            p.push(b"tial\n\n");
            while p.next_event().is_some() {}
        }
        assert!(p.buf.capacity() < 4096, "capacity {}", p.buf.capacity());
    }
}
