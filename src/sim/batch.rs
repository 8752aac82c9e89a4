//! One worker's continuous-batching model, as pure step math (no clock, no tokio).
//!
//! Kept free of I/O so the latency curve can be checked in unit tests on a virtual clock, and so
//! the same code drives the real server (`cluster.rs` sleeps for each step's duration).
//!
//! The model, per step:
//! 1. drop sequences whose client went away; drop waiting requests older than the queue timeout;
//! 2. admit waiting requests in FIFO order while the batch has a free slot and the KV cache has
//!    room for prompt + `max_tokens` (reserved up front, so nothing is ever preempted; the first
//!    request that does not fit blocks the ones behind it — head-of-line blocking, as in the
//!    article);
//! 3. prefill is chunked: at most `prefill_chunk_tokens` prompt tokens per step, oldest sequence
//!    first; a sequence whose prefill completes in a step emits its first token at the end of it;
//! 4. step time = `decode_step_base` + `decode_step_per_seq` × decoding sequences +
//!    `prefill_per_token` × prompt tokens prefilled in this step; every decoding sequence emits one
//!    token at the end of the step.
//!
//! So ITL grows with the batch, new prompts slow everybody's next token a little, and once the
//! batch or KV cache is full the waiting queue — and with it TTFT — grows without bound.

use std::collections::VecDeque;
use std::time::Duration;

use super::SimConfig;

/// Whoever receives a sequence's tokens; the batcher only needs to know whether it is gone.
pub(crate) trait Sink {
    fn is_gone(&self) -> bool;
}

/// What happened to a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A token was generated; `index` counts from 0, `last` = `max_tokens` reached.
    Token { index: u32, last: bool },
    /// The request waited longer than the queue timeout and was dropped.
    QueueTimeout,
    /// The worker serving it died (never produced by the batcher itself).
    WorkerFailed,
}

pub(crate) struct Seq<S> {
    pub sink: S,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    /// When the request reached the worker (on the batcher's clock).
    pub arrived: Duration,
    prefill_left: u32,
    generated: u32,
    /// Prompt tokens prefilled in the current step.
    chunk: u32,
    /// Emits a token at the end of the current step.
    emits: bool,
}

impl<S> Seq<S> {
    pub fn new(sink: S, prompt_tokens: u32, max_tokens: u32, arrived: Duration) -> Self {
        Seq {
            sink,
            prompt_tokens,
            max_tokens,
            arrived,
            prefill_left: prompt_tokens,
            generated: 0,
            chunk: 0,
            emits: false,
        }
    }

    fn kv_reserved(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.max_tokens)
    }

    fn kv_held(&self) -> u64 {
        u64::from(self.prompt_tokens - self.prefill_left) + u64::from(self.generated)
    }
}

/// The parameters of the step math (a copy of the relevant [`SimConfig`] fields).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepParams {
    pub max_batch: usize,
    pub kv_tokens: u64,
    pub prefill_per_token: Duration,
    pub prefill_chunk: u32,
    pub base: Duration,
    pub per_seq: Duration,
    pub queue_timeout: Option<Duration>,
}

impl StepParams {
    pub fn from_config(c: &SimConfig) -> Self {
        StepParams {
            max_batch: c.max_batch_size as usize,
            kv_tokens: u64::from(c.kv_cache_tokens),
            prefill_per_token: c.prefill_per_token,
            prefill_chunk: c.prefill_chunk_tokens,
            base: c.decode_step_base,
            per_seq: c.decode_step_per_seq,
            queue_timeout: c.queue_timeout,
        }
    }
}

pub(crate) struct Batcher<S> {
    p: StepParams,
    waiting: VecDeque<Seq<S>>,
    running: Vec<Seq<S>>,
    kv_reserved: u64,
}

impl<S: Sink> Batcher<S> {
    pub fn new(p: StepParams) -> Self {
        Batcher {
            p,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_reserved: 0,
        }
    }

    /// Whether a request of this size could ever be admitted.
    pub fn fits(&self, prompt_tokens: u32, max_tokens: u32) -> bool {
        u64::from(prompt_tokens) + u64::from(max_tokens) <= self.p.kv_tokens
    }

    pub fn enqueue(&mut self, seq: Seq<S>) {
        self.waiting.push_back(seq);
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Share of the KV cache holding tokens right now (0..1).
    pub fn kv_usage(&self) -> f64 {
        let held: u64 = self.running.iter().map(Seq::kv_held).sum();
        held as f64 / self.p.kv_tokens as f64
    }

    /// Takes every sequence out (a dead worker hands them back to fail them).
    pub fn drain(&mut self) -> Vec<Seq<S>> {
        self.kv_reserved = 0;
        let mut all: Vec<_> = self.running.drain(..).collect();
        all.extend(self.waiting.drain(..));
        all
    }

    /// Drops every sequence (their sinks see the channel close).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.running.clear();
        self.kv_reserved = 0;
    }

    /// Starts a step at `now`: expires, admits and plans. Returns the step's duration, or `None`
    /// when there is nothing to run (the worker can sleep until a request arrives).
    pub fn begin_step(
        &mut self,
        now: Duration,
        out: &mut impl FnMut(&Seq<S>, Event),
    ) -> Option<Duration> {
        self.running.retain(|s| !s.sink.is_gone());
        self.kv_reserved = self.running.iter().map(Seq::kv_reserved).sum();
        self.waiting.retain(|s| !s.sink.is_gone());
        if let Some(timeout) = self.p.queue_timeout {
            self.waiting.retain(|s| {
                let expired = now.saturating_sub(s.arrived) >= timeout;
                if expired {
                    out(s, Event::QueueTimeout);
                }
                !expired
            });
        }
        while let Some(next) = self.waiting.front() {
            let need = next.kv_reserved();
            if self.running.len() >= self.p.max_batch || self.kv_reserved + need > self.p.kv_tokens
            {
                break;
            }
            self.kv_reserved += need;
            self.running.extend(self.waiting.pop_front());
        }
        if self.running.is_empty() {
            return None;
        }
        let mut budget = self.p.prefill_chunk;
        let mut prefill_tokens = 0u32;
        let mut decoding = 0u32;
        for seq in &mut self.running {
            seq.chunk = 0;
            seq.emits = false;
            if seq.prefill_left == 0 {
                decoding += 1;
                seq.emits = true;
            } else if budget > 0 {
                seq.chunk = seq.prefill_left.min(budget);
                budget -= seq.chunk;
                prefill_tokens += seq.chunk;
                seq.emits = seq.chunk == seq.prefill_left;
            }
        }
        Some(self.p.base + self.p.per_seq * decoding + self.p.prefill_per_token * prefill_tokens)
    }

    /// Ends the step begun by [`Batcher::begin_step`]: applies prefill, emits tokens, retires
    /// finished sequences.
    pub fn end_step(&mut self, out: &mut impl FnMut(&Seq<S>, Event)) {
        for seq in &mut self.running {
            seq.prefill_left -= seq.chunk;
            seq.chunk = 0;
            if std::mem::take(&mut seq.emits) {
                seq.generated += 1;
                let last = seq.generated >= seq.max_tokens;
                out(
                    seq,
                    Event::Token {
                        index: seq.generated - 1,
                        last,
                    },
                );
            }
        }
        self.running.retain(|s| s.generated < s.max_tokens);
        self.kv_reserved = self.running.iter().map(Seq::kv_reserved).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    struct TestSink(Rc<Cell<bool>>);
    impl Sink for TestSink {
        fn is_gone(&self) -> bool {
            self.0.get()
        }
    }

    fn params() -> StepParams {
        StepParams {
            max_batch: 2,
            kv_tokens: 1000,
            prefill_per_token: Duration::from_micros(10),
            prefill_chunk: 100,
            base: Duration::from_millis(10),
            per_seq: Duration::from_millis(1),
            queue_timeout: Some(Duration::from_secs(1)),
        }
    }

    fn seq(prompt: u32, max: u32) -> (Seq<TestSink>, Rc<Cell<bool>>) {
        let gone = Rc::new(Cell::new(false));
        (
            Seq::new(TestSink(gone.clone()), prompt, max, Duration::ZERO),
            gone,
        )
    }

    #[test]
    fn step_time_grows_with_the_batch_and_with_prefill() {
        let mut b = Batcher::new(params());
        let mut tokens = 0;
        let mut count = |_: &Seq<TestSink>, e: Event| {
            if matches!(e, Event::Token { .. }) {
                tokens += 1
            }
        };
        b.enqueue(seq(150, 3).0);
        // first step: 100 prompt tokens of prefill, nobody decodes yet
        assert_eq!(
            b.begin_step(Duration::ZERO, &mut count),
            Some(Duration::from_millis(11))
        );
        b.end_step(&mut count);
        // second: the remaining 50 prompt tokens, then the first token
        assert_eq!(
            b.begin_step(Duration::ZERO, &mut count),
            Some(Duration::from_micros(10_500))
        );
        b.end_step(&mut count);
        b.enqueue(seq(10, 3).0);
        // third: one decoding sequence + 10 prompt tokens
        assert_eq!(
            b.begin_step(Duration::ZERO, &mut count),
            Some(Duration::from_micros(11_100))
        );
        b.end_step(&mut count);
        // fourth: two decoding sequences
        assert_eq!(
            b.begin_step(Duration::ZERO, &mut count),
            Some(Duration::from_millis(12))
        );
        b.end_step(&mut count);
        assert_eq!(tokens, 5);
        assert_eq!(b.running(), 1, "first sequence finished after 3 tokens");
    }

    #[test]
    fn full_batch_or_full_kv_cache_makes_requests_wait() {
        let mut b = Batcher::new(params());
        let mut none = |_: &Seq<TestSink>, _| {};
        for _ in 0..3 {
            b.enqueue(seq(10, 10).0);
        }
        b.begin_step(Duration::ZERO, &mut none);
        assert_eq!((b.running(), b.waiting()), (2, 1), "batch of 2");

        let mut b = Batcher::new(params());
        b.enqueue(seq(450, 100).0);
        b.enqueue(seq(450, 100).0);
        b.enqueue(seq(10, 10).0);
        b.begin_step(Duration::ZERO, &mut none);
        assert_eq!((b.running(), b.waiting()), (1, 2), "kv holds one 550");
        assert!(!b.fits(900, 101));
    }

    #[test]
    fn waiting_requests_time_out_and_gone_clients_are_dropped() {
        let mut b = Batcher::new(params());
        let mut events = Vec::new();
        let (a, a_gone) = seq(10, 10);
        b.enqueue(a);
        b.enqueue(seq(10, 10).0);
        b.enqueue(seq(10, 10).0);
        b.begin_step(Duration::ZERO, &mut |_, e| events.push(e));
        b.end_step(&mut |_, e| events.push(e));
        a_gone.set(true);
        b.begin_step(Duration::from_millis(20), &mut |_, e| events.push(e));
        assert_eq!(b.running(), 2, "gone client's slot went to the waiting one");
        assert!(!events.contains(&Event::QueueTimeout));
        let (late, _) = seq(10, 10);
        b.enqueue(late);
        b.end_step(&mut |_, _| {});
        b.begin_step(Duration::from_secs(2), &mut |_, e| events.push(e));
        assert!(events.contains(&Event::QueueTimeout));
        assert_eq!(b.waiting(), 0);
    }
}
