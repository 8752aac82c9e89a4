//! One time window (1 s by default) of a run: counts, tokens and latency histograms of the
//! requests *intended* to start in it. Windows are the unit of everything downstream: phases,
//! detection and recovery are computed by merging windows, and shards merge window by window.

use super::hist::{Hist, Percentiles};
use crate::record::{RequestRecord, TokenSource};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything measured for the requests intended to start in `[start_s, start_s + len_s)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub index: u64,
    pub start_s: f64,
    pub len_s: f64,
    pub requests: u64,
    pub ok: u64,
    /// Failures the server is answerable for (every class but `ok` and `client_error`).
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests that failed on the client (out of ports or file descriptors) before reaching
    /// the server: counted in `requests`, not in `errors` nor in the error rate.
    #[serde(default)]
    pub client_errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests whose output tokens came from the server's `usage` / were counted from the stream.
    pub tokens_from_usage: u64,
    pub tokens_from_stream: u64,
    /// Latest actual send time (seconds from run start) of any request in the window.
    pub last_send_s: f64,
    pub ttft: Hist,
    pub itl: Hist,
    pub e2e: Hist,
    pub dispatch_lag: Hist,
}

/// A readable digest of a window: what `windows.jsonl` shows next to the exact histograms and
/// what live displays and detection use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    pub index: u64,
    pub start_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub output_tok_s: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    /// Dispatch lag p99 (intended start → actual send) of the window's requests.
    #[serde(default)]
    pub dispatch_lag_p99_ms: Option<f64>,
    /// The client could not keep to the schedule in this window: its dispatch lag p99 was
    /// above the run's `max_dispatch_lag` (see [`Window::client_limited`]).
    #[serde(default)]
    pub client_limited: bool,
}

/// One line of `windows.jsonl`: the digest plus the exact histograms.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowLine {
    #[serde(flatten)]
    pub stats: WindowStats,
    pub window: Window,
}

impl Window {
    pub fn new(index: u64, len_s: f64) -> Window {
        Window {
            index,
            start_s: index as f64 * len_s,
            len_s,
            ..Window::default()
        }
    }

    /// Folds one finished request in (its inter-token gaps arrive separately via `record_itl`).
    pub fn record(&mut self, r: &RequestRecord) {
        self.requests += 1;
        if r.outcome.is_ok() {
            self.ok += 1;
        } else if r.outcome.is_client_error() {
            self.client_errors += 1;
        } else {
            self.errors += 1;
            *self
                .errors_by_kind
                .entry(r.outcome.key().into_owned())
                .or_default() += 1;
        }
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        // Where the count came from matters only for requests that produced tokens.
        if r.outcome.is_ok() || r.output_tokens > 0 {
            match r.token_source {
                TokenSource::Usage => self.tokens_from_usage += 1,
                TokenSource::Stream => self.tokens_from_stream += 1,
            }
        }
        self.last_send_s = self
            .last_send_s
            .max(r.intended_s + r.dispatch_lag_us as f64 / 1e6);
        if let Some(t) = r.ttft_us {
            self.ttft.record(t);
        }
        self.e2e.record(r.e2e_us);
        self.dispatch_lag.record(r.dispatch_lag_us);
    }

    pub fn record_itl(&mut self, gaps_us: &[u64]) {
        for &g in gaps_us {
            self.itl.record(g);
        }
    }

    /// Adds another window's counts and histograms (exact; used for phases and shards).
    pub fn merge(&mut self, o: &Window) {
        self.requests += o.requests;
        self.ok += o.ok;
        self.errors += o.errors;
        self.client_errors += o.client_errors;
        for (k, v) in &o.errors_by_kind {
            *self.errors_by_kind.entry(k.clone()).or_default() += v;
        }
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.tokens_from_usage += o.tokens_from_usage;
        self.tokens_from_stream += o.tokens_from_stream;
        self.last_send_s = self.last_send_s.max(o.last_send_s);
        self.ttft.merge(&o.ttft);
        self.itl.merge(&o.itl);
        self.e2e.merge(&o.e2e);
        self.dispatch_lag.merge(&o.dispatch_lag);
    }

    /// Merges the windows whose start lies in `[from_s, to_s)`; the result spans that range.
    pub fn merge_range<'a>(
        windows: impl IntoIterator<Item = &'a Window>,
        from_s: f64,
        to_s: f64,
    ) -> Window {
        let mut out = Window {
            start_s: from_s,
            len_s: (to_s - from_s).max(0.0),
            ..Window::default()
        };
        for w in windows {
            if w.start_s >= from_s && w.start_s < to_s {
                out.merge(w);
            }
        }
        out
    }

    /// The server's error rate: errors over the requests that reached it (client errors are
    /// the client's, and not in either count); `None` when none did.
    pub fn error_rate(&self) -> Option<f64> {
        let reached = self.requests - self.client_errors.min(self.requests);
        (reached > 0).then(|| self.errors as f64 / reached as f64)
    }

    /// Whether the client, not the server, set the pace in this window: its dispatch lag p99
    /// is above `max_lag_ms`. Latencies count from the intended start, so they stay honest,
    /// but the server got less load than the schedule meant, at other times than meant; the
    /// window measures the client. An empty window is not client-limited.
    pub fn client_limited(&self, max_lag_ms: f64) -> bool {
        self.dispatch_lag
            .quantile_ms(0.99)
            .is_some_and(|p99| p99 > max_lag_ms)
    }

    /// The digest, with `client_limited` judged against `max_lag_ms`.
    pub fn stats_with(&self, max_lag_ms: f64) -> WindowStats {
        WindowStats {
            client_limited: self.client_limited(max_lag_ms),
            ..self.stats()
        }
    }

    pub fn stats(&self) -> WindowStats {
        let p = |h: &Hist, q| h.quantile_ms(q);
        WindowStats {
            index: self.index,
            start_s: self.start_s,
            requests: self.requests,
            ok: self.ok,
            errors: self.errors,
            error_rate: self.error_rate(),
            output_tok_s: if self.len_s > 0.0 {
                self.output_tokens as f64 / self.len_s
            } else {
                0.0
            },
            ttft_p50_ms: p(&self.ttft, 0.5),
            ttft_p99_ms: p(&self.ttft, 0.99),
            itl_p50_ms: p(&self.itl, 0.5),
            itl_p99_ms: p(&self.itl, 0.99),
            dispatch_lag_p99_ms: p(&self.dispatch_lag, 0.99),
            client_limited: false,
        }
    }

    pub fn ttft_percentiles(&self) -> Percentiles {
        self.ttft.percentiles()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;

    fn rec(intended_s: f64, outcome: Outcome, ttft_ms: u64, tokens: u64) -> RequestRecord {
        RequestRecord {
            id: 0,
            class: "chat".into(),
            intended_s,
            dispatch_lag_us: 100,
            ttft_us: outcome.is_ok().then_some(ttft_ms * 1000),
            e2e_us: ttft_ms * 2000,
            itl_count: 0,
            itl_mean_us: 0,
            itl_max_us: 0,
            output_tokens: tokens,
            token_source: TokenSource::Usage,
            input_tokens: 10,
            finish_reason: None,
            outcome,
            error: None,
        }
    }

    #[test]
    fn merge_range_counts_only_windows_starting_inside_the_range() {
        let mut ws: Vec<Window> = (0..10).map(|i| Window::new(i, 1.0)).collect();
        for w in &mut ws {
            let t = w.start_s;
            w.record(&rec(t + 0.5, Outcome::Ok, 100, 50));
            w.record(&rec(t + 0.6, Outcome::HttpStatus { code: 503 }, 0, 0));
        }
        let m = Window::merge_range(&ws, 2.0, 5.0);
        assert_eq!(m.requests, 6);
        assert_eq!(m.errors, 3);
        assert_eq!(m.errors_by_kind["http_503"], 3);
        assert_eq!(m.output_tokens, 150);
        assert_eq!(m.stats().output_tok_s, 50.0);
        assert_eq!(m.error_rate(), Some(0.5));
    }

    #[test]
    fn window_line_round_trips_through_json_exactly() {
        let mut w = Window::new(3, 1.0);
        w.record(&rec(3.2, Outcome::Ok, 120, 40));
        w.record_itl(&[20_000, 25_000, 31_000]);
        let line = WindowLine {
            stats: w.stats(),
            window: w.clone(),
        };
        let text = serde_json::to_string(&line).unwrap();
        let back: WindowLine = serde_json::from_str(&text).unwrap();
        assert_eq!(back.window, w);
        assert_eq!(back.stats, w.stats());
    }
}
