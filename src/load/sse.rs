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
//! **Linear and bounded**, whatever the server sends: the search for a line ending resumes where
//! the previous search stopped (a 50 MB line arriving in 16 KiB reads is scanned once, not once
//! per read), and no line and no event's data may grow past a limit ([`DEFAULT_MAX_EVENT_BYTES`],
//! 1 MiB by default) — past it the parser fails with [`SseError::TooLarge`] and drops what it
//! holds, so a server that never ends a line cannot grow the client's memory. The bytes held at
//! any time are at most about twice the limit plus the last read.
//!
//! What it adds beyond the spec: a count of lines whose field is not one of `data`, `event`,
//! `id`, `retry` (the spec ignores them, but a response made only of such lines is not an event
//! stream at all — an HTML error page behind a 200, say — and the client wants to say so), and a
//! flag on each event whose `data` or `event` was not valid UTF-8 (the spec's decoder replaces
//! such bytes; the client treats them as a broken response rather than measure mangled text).

use memchr::memchr2;

/// The default cap on one line and on one event's data, in bytes (1 MiB): far above any chunk a
/// real LLM server sends (a few hundred bytes; a few KiB with logprobs), far below what hurts.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Why the parser stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event or line longer than the limit of {limit} bytes (--max-event-size)")]
    TooLarge { limit: usize },
}

/// One dispatched event, borrowing the parser's buffers until the next call on the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, when one was given (the spec's default type `message` is `None`).
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
    /// The `data` or `event` bytes were not valid UTF-8 (they were replaced with U+FFFD).
    pub invalid_utf8: bool,
}

/// An event with owned fields, for callers that keep events around (tests, tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSseEvent {
    pub event: Option<String>,
    pub data: String,
    pub invalid_utf8: bool,
}

impl SseEvent<'_> {
    pub fn to_owned_event(&self) -> OwnedSseEvent {
        OwnedSseEvent {
            event: self.event.map(str::to_owned),
            data: self.data.to_owned(),
            invalid_utf8: self.invalid_utf8,
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
#[derive(Debug)]
pub struct SseParser {
    /// Received bytes not yet consumed; `pos` is where the unconsumed part starts.
    buf: Vec<u8>,
    pos: usize,
    /// Where the search for the next line ending resumes: `pos..scan` holds none.
    scan: usize,
    /// The cap on one line and on one event's data.
    max: usize,
    /// Set once the cap was passed; the parser then ignores further input.
    failed: Option<SseError>,
    /// Data buffer of the event being built (each `data` value followed by `\n`).
    data: String,
    /// Event type of the event being built.
    event: String,
    /// Whether a `data` field was seen for the event being built.
    has_data: bool,
    /// Whether the event being built had bytes that are not UTF-8.
    invalid_utf8: bool,
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
    /// Bytes searched for line endings so far (tests check the parser is linear).
    #[cfg(test)]
    scanned: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that fails on a line or an event's data longer than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            max: max_event_bytes.max(1),
            failed: None,
            data: String::new(),
            event: String::new(),
            has_data: false,
            invalid_utf8: false,
            after_cr: false,
            started: false,
            lent: false,
            pending_fields: false,
            last_event_id: String::new(),
            retry_ms: None,
            unknown_fields: 0,
            first_unknown: None,
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// Appends received bytes. Cheap: one `memcpy` into a buffer that is reused. Ignored once
    /// the parser has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.scan = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            // Keep the buffer from growing without bound across a long stream: move the partial
            // line (usually short) to the front once the consumed part dominates.
            self.buf.drain(..self.pos);
            self.scan = self.scan.saturating_sub(self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes pushed so far contain one; an error (for good)
    /// once a line or an event's data is longer than the limit.
    pub fn next_event(&mut self) -> Result<Option<SseEvent<'_>>, SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.lent {
            self.lent = false;
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            self.invalid_utf8 = false;
        }
        if !self.started && !self.skip_bom() {
            return Ok(None);
        }
        loop {
            if self.after_cr && self.pos < self.buf.len() {
                self.after_cr = false;
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
            }
            let from = self.scan.max(self.pos);
            let found = memchr2(b'\r', b'\n', &self.buf[from..]);
            #[cfg(test)]
            {
                self.scanned += found.map_or(self.buf.len() - from, |off| off + 1);
            }
            let Some(off) = found else {
                // Everything from `pos` is one unterminated line: remember how far it was
                // searched, and refuse it once it is already too long.
                self.scan = self.buf.len();
                if self.buf.len() - self.pos > self.max {
                    return Err(self.fail());
                }
                return Ok(None);
            };
            let line_start = self.pos;
            let line_end = from + off;
            if line_end - line_start > self.max {
                return Err(self.fail());
            }
            let mut next = line_end + 1;
            if self.buf[line_end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.pos = next;
            self.scan = next;
            if line_end == line_start {
                if self.dispatch() {
                    return Ok(Some(self.lend()));
                }
            } else {
                self.process_line(line_start, line_end)?;
            }
        }
    }

    /// Ends the stream: whatever is not a complete event is discarded (per the spec, an event
    /// is only dispatched at a blank line). Returns what was discarded; the parser is reset.
    pub fn finish(&mut self) -> Finish {
        // Call after draining `next_event`: unconsumed bytes are then an unterminated line.
        let discarded_partial_event = self.buf.len() > self.pos || self.pending_fields;
        let last_event_id = std::mem::take(&mut self.last_event_id);
        let first_unknown = self.first_unknown.take();
        *self = SseParser {
            last_event_id,
            unknown_fields: self.unknown_fields,
            first_unknown,
            retry_ms: self.retry_ms,
            ..SseParser::new(self.max)
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

    /// Bytes the parser holds for the stream (received but not consumed, and the event being
    /// built): what the size limit bounds.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() + self.data.len() + self.event.len()
    }

    /// Gives up for good: drops what is held (so the memory goes back at once).
    fn fail(&mut self) -> SseError {
        let e = SseError::TooLarge { limit: self.max };
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.data = String::new();
        self.event = String::new();
        self.pos = 0;
        self.scan = 0;
        e
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

    fn process_line(&mut self, start: usize, end: usize) -> Result<(), SseError> {
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return Ok(()); // comment
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
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(self.fail());
                }
                self.invalid_utf8 |= !push_utf8(&mut self.data, value);
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.invalid_utf8 |= !push_utf8(&mut self.event, value);
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
        Ok(())
    }

    /// A blank line: true when there is an event to hand out; otherwise resets the event state.
    fn dispatch(&mut self) -> bool {
        self.pending_fields = false;
        if !self.has_data {
            self.event.clear();
            self.invalid_utf8 = false;
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
            invalid_utf8: self.invalid_utf8,
        }
    }
}

/// Appends a complete line's value; false when it was not valid UTF-8. Lines are whole
/// characters (see the module docs), so each byte is validated once, here; invalid UTF-8 is
/// replaced, as the spec's decoder does, and reported.
fn push_utf8(out: &mut String, bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            out.push_str(s);
            true
        }
        Err(_) => {
            out.push_str(&String::from_utf8_lossy(bytes));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(parser: &mut SseParser) -> Vec<OwnedSseEvent> {
        let mut out = Vec::new();
        while let Some(e) = parser.next_event().unwrap() {
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
            invalid_utf8: false,
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
                    data: "boom".into(),
                    invalid_utf8: false,
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
    fn invalid_utf8_is_replaced_and_flagged_on_its_event_only() {
        let bad = OwnedSseEvent {
            invalid_utf8: true,
            ..ev("a\u{FFFD}b")
        };
        assert_eq!(parse(b"data: a\xFFb\n\ndata: ok\n\n"), vec![bad, ev("ok")]);
        assert!(parse(b"event: \xC3\ndata: x\n\n")[0].invalid_utf8);
        assert_eq!(
            parse(b"id: \xFF\n: \xFF\ndata: x\n\n"),
            vec![ev("x")],
            "only data and event count"
        );
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
            while p.next_event().unwrap().is_some() {}
            p.push(b"tial\n\n");
            while p.next_event().unwrap().is_some() {}
        }
        assert!(p.buf.capacity() < 4096, "capacity {}", p.buf.capacity());
    }

    #[test]
    fn line_longer_than_the_limit_fails_and_frees_what_was_held() {
        let mut p = SseParser::new(16);
        p.push(b"data: a\n\ndata: 0123456789abcdef\n\ndata: b\n\n");
        assert_eq!(p.next_event().unwrap().unwrap().data, "a");
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 16 }));
        assert_eq!(p.buffered_bytes(), 0);
        p.push(b"data: c\n\n");
        assert_eq!(
            p.next_event(),
            Err(SseError::TooLarge { limit: 16 }),
            "for good"
        );
        assert_eq!(p.buffered_bytes(), 0);
    }

    #[test]
    fn line_at_the_limit_passes() {
        let mut p = SseParser::new(16);
        p.push(b"data: 0123456789\n\n");
        assert_eq!(p.next_event().unwrap().unwrap().data, "0123456789");
    }

    #[test]
    fn endless_line_fails_as_soon_as_it_passes_the_limit() {
        let mut p = SseParser::new(4096);
        let mut pushed = 0;
        let err = loop {
            p.push(&[b'x'; 1000]);
            pushed += 1000;
            match p.next_event() {
                Ok(None) => assert!(p.buffered_bytes() <= 4096),
                Ok(Some(_)) => panic!("no event in an endless line"),
                Err(e) => break e,
            }
        };
        assert_eq!((err, pushed), (SseError::TooLarge { limit: 4096 }, 5000));
    }

    #[test]
    fn data_lines_adding_up_past_the_limit_fail() {
        let mut p = SseParser::new(64);
        p.push(&b"data: 0123456789\n".repeat(5));
        assert_eq!(
            p.next_event(),
            Ok(None),
            "55 bytes of data so far: still under"
        );
        p.push(b"data: 0123456789\n\n");
        assert_eq!(p.next_event(), Err(SseError::TooLarge { limit: 64 }));
    }

    #[test]
    fn long_line_in_small_reads_is_scanned_once() {
        // The old parser searched the whole partial line again on every read: quadratic.
        let line = [b"data: ".as_slice(), &[b'x'; 1 << 20], b"\n\n"].concat();
        let mut p = SseParser::new(2 << 20);
        let mut events = 0;
        for piece in line.chunks(1024) {
            p.push(piece);
            while p.next_event().unwrap().is_some() {
                events += 1;
            }
        }
        assert_eq!(events, 1);
        assert!(
            p.scanned <= line.len(),
            "scanned {} of {}",
            p.scanned,
            line.len()
        );
    }

    #[test]
    fn default_limit_is_one_mebibyte() {
        assert_eq!(SseParser::default().max, 1 << 20);
    }

    /// Arbitrary bytes and arbitrary read boundaries, against the same input in one read.
    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// What a whole stream amounts to.
        #[derive(Debug, PartialEq)]
        struct Parsed {
            events: Vec<OwnedSseEvent>,
            error: Option<SseError>,
            discarded: Option<bool>,
            last_event_id: String,
            retry_ms: Option<u64>,
            unknown_fields: u64,
        }

        /// Parses `input` cut at `cuts`, checking the bounds after every read.
        fn run(input: &[u8], cuts: &[usize], limit: usize) -> Parsed {
            let mut p = SseParser::new(limit);
            let mut events = Vec::new();
            let mut error = None;
            let mut last = 0;
            let mut largest_read = 0;
            for &c in cuts.iter().chain(std::iter::once(&input.len())) {
                let piece = &input[last..c];
                largest_read = largest_read.max(piece.len());
                last = c;
                p.push(piece);
                loop {
                    match p.next_event() {
                        Ok(Some(e)) => events.push(e.to_owned_event()),
                        Ok(None) => break,
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                // Held: at most the partial line twice over (before compaction), the event
                // being built, a BOM, and the last read.
                let bound = 4 * limit + largest_read + 3;
                assert!(
                    p.buffered_bytes() <= bound,
                    "holds {} bytes, bound {bound}",
                    p.buffered_bytes()
                );
                assert!(
                    p.scanned <= input.len(),
                    "scanned {} of {}",
                    p.scanned,
                    input.len()
                );
            }
            let (last_event_id, retry_ms, unknown_fields) = (
                p.last_event_id().to_owned(),
                p.retry_ms(),
                p.unknown_fields(),
            );
            let finish = p.finish();
            Parsed {
                events,
                discarded: error.is_none().then_some(finish.discarded_partial_event),
                error,
                last_event_id,
                retry_ms,
                unknown_fields,
            }
        }

        /// Bytes that look like SSE often enough to reach every branch, and raw bytes.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"data: ".to_vec()),
                Just(b"data:".to_vec()),
                Just(b"data".to_vec()),
                Just(b"event: e".to_vec()),
                Just(b": c".to_vec()),
                Just(b"id: 1".to_vec()),
                Just(b"retry: 50".to_vec()),
                Just(b"<html>".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\n\n".to_vec()),
                Just(BOM.to_vec()),
                Just(b"[DONE]".to_vec()),
                "[a-z{}\":, \u{e9}\u{1F600}]{0,16}".prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..8),
            ];
            prop_oneof![
                4 => prop::collection::vec(piece, 0..48).prop_map(|v| v.concat()),
                1 => prop::collection::vec(any::<u8>(), 0..256),
            ]
        }

        fn cut_points(len: usize, picks: &[prop::sample::Index]) -> Vec<usize> {
            let mut cuts: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
            cuts.sort_unstable();
            cuts
        }

        proptest! {
            // 512 cases take about a second; a longer run (20000 cases: 47 s):
            // PROPTEST_CASES=20000 cargo test --lib load::sse::tests::props
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(512),
                ..ProptestConfig::default()
            })]

            #[test]
            fn any_split_gives_the_events_of_one_read(
                input in stream(),
                picks in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
                limit in prop_oneof![1usize..40, Just(DEFAULT_MAX_EVENT_BYTES)],
            ) {
                let whole = run(&input, &[], limit);
                let split = run(&input, &cut_points(input.len(), &picks), limit);
                prop_assert_eq!(&split, &whole);
                let bytes: Vec<usize> = (1..input.len()).collect();
                prop_assert_eq!(run(&input, &bytes, limit), whole, "one byte per read");
            }
        }
    }
}
