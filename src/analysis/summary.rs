//! `summary.json`: the headline numbers of one load run, computed from merged windows.
//! The fields are documented in README.md and checked against `schemas/summary.schema.json`.

use super::hist::Percentiles;
use super::window::Window;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    /// Requests whose intended start fell inside the run.
    pub requests: u64,
    pub ok: u64,
    /// Failures the server is answerable for (every outcome but `ok` and `client_error`).
    pub errors: u64,
    /// errors / (requests − client_errors): the server's error rate; `null` when no request
    /// reached it.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: Option<f64>,
    /// Errors per outcome class (`http_<code>`, `timeout`, `connect_error`, …).
    #[schemars(extend("propertyNames" = {"pattern": "^(http_[0-9]{3}|timeout|connect_error|connection_reset|stream_ended_early|invalid_response)$"}))]
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Seconds from the run's start to the last send (at least the schedule's duration).
    #[schemars(range(min = 0.0))]
    pub duration_s: f64,
    /// The schedule's mean intended rate (req/s); `null` for closed-loop concurrency.
    pub target_rate: Option<f64>,
    /// requests / duration_s: what was really sent.
    #[schemars(range(min = 0.0))]
    pub achieved_rate: f64,
    pub ttft_ms: Percentiles,
    pub itl_ms: Percentiles,
    pub e2e_ms: Percentiles,
    pub dispatch_lag_ms: Percentiles,
    pub output_tokens: u64,
    pub input_tokens: u64,
    /// Output tokens per second over `duration_s`.
    pub output_tok_s: f64,
    /// `usage` (server-reported), `stream` (counted from chunks), `mixed`, or `none`.
    pub token_count_source: String,
    /// Requests that failed on the client before reaching the server (no free ephemeral port,
    /// no file descriptor): outcome `client_error`, kept out of `errors` and the error rate.
    #[serde(default)]
    pub client_errors: u64,
    /// The client was the bottleneck somewhere in the run: at least one window's dispatch-lag
    /// p99 was above `max_dispatch_lag_ms`. Its numbers in those windows measure the client.
    #[serde(default)]
    pub client_limited: bool,
    /// Windows (with requests) that were client-limited, and their share of all windows with
    /// requests (`null` when there were none).
    #[serde(default)]
    pub client_limited_windows: u64,
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub client_limited_share: Option<f64>,
    /// The threshold a window's dispatch-lag p99 was judged against (`--max-dispatch-lag`);
    /// `null` in files written before it existed.
    #[serde(default)]
    pub max_dispatch_lag_ms: Option<f64>,
    /// The connection-pool limit (`--max-connections`): requests in flight never exceed it.
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// The most requests in flight at once; under HTTP/1.1 each holds one connection, so this
    /// is the peak number of connections in use.
    #[serde(default)]
    pub peak_connections: Option<u64>,
    /// TCP connections the client opened during the run (each reused while the server keeps
    /// it alive). Above `max_connections` when the server closed connections, or when the
    /// HTTP client opened spares while the client was saturated (see the README).
    #[serde(default)]
    pub connections_opened: Option<u64>,
}

impl Summary {
    /// `total` is all windows merged; `schedule_s` the schedule's nominal length.
    pub fn new(total: &Window, schedule_s: f64, target_rate: Option<f64>) -> Summary {
        let duration_s = schedule_s.max(total.last_send_s).max(1e-9);
        let token_count_source = match (total.tokens_from_usage, total.tokens_from_stream) {
            (0, 0) => "none",
            (_, 0) => "usage",
            (0, _) => "stream",
            _ => "mixed",
        }
        .to_string();
        Summary {
            requests: total.requests,
            ok: total.ok,
            errors: total.errors,
            error_rate: total.error_rate(),
            errors_by_kind: total.errors_by_kind.clone(),
            duration_s,
            target_rate,
            achieved_rate: total.requests as f64 / duration_s,
            ttft_ms: total.ttft.percentiles(),
            itl_ms: total.itl.percentiles(),
            e2e_ms: total.e2e.percentiles(),
            dispatch_lag_ms: total.dispatch_lag.percentiles(),
            output_tokens: total.output_tokens,
            input_tokens: total.input_tokens,
            output_tok_s: total.output_tokens as f64 / duration_s,
            token_count_source,
            client_errors: total.client_errors,
            client_limited: false,
            client_limited_windows: 0,
            client_limited_share: None,
            max_dispatch_lag_ms: None,
            max_connections: None,
            peak_connections: None,
            connections_opened: None,
        }
    }

    /// Judges the run's windows against `max_lag_ms` (see [`Window::client_limited`]) and
    /// records the threshold, the count and the share of client-limited windows.
    pub fn judge_client(&mut self, windows: &[Window], max_lag_ms: f64) {
        let with_requests = windows.iter().filter(|w| w.requests > 0).count() as u64;
        let limited = windows
            .iter()
            .filter(|w| w.requests > 0 && w.client_limited(max_lag_ms))
            .count() as u64;
        self.set_client_limited(limited, with_requests, max_lag_ms);
    }

    /// Records that `limited` of the `with_requests` windows that had requests were
    /// client-limited against `max_lag_ms`.
    pub fn set_client_limited(&mut self, limited: u64, with_requests: u64, max_lag_ms: f64) {
        self.max_dispatch_lag_ms = Some(max_lag_ms);
        self.client_limited = limited > 0;
        self.client_limited_windows = limited;
        self.client_limited_share =
            (with_requests > 0).then(|| limited as f64 / with_requests as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Outcome, RequestRecord, TokenSource};

    fn window(index: u64, lags_us: &[u64], outcome: Outcome) -> Window {
        let mut w = Window::new(index, 1.0);
        for &lag in lags_us {
            w.record(&RequestRecord {
                id: 0,
                class: "chat".into(),
                intended_s: index as f64,
                dispatch_lag_us: lag,
                ttft_us: Some(1000),
                e2e_us: 2000,
                itl_count: 0,
                itl_mean_us: 0,
                itl_max_us: 0,
                output_tokens: 1,
                token_source: TokenSource::Stream,
                input_tokens: 1,
                finish_reason: None,
                outcome,
                error: None,
            });
        }
        w
    }

    #[test]
    fn a_window_is_client_limited_when_its_dispatch_lag_p99_is_above_the_threshold() {
        // 99 prompt dispatches and 1 late one: p99 is the 99th value, still prompt.
        let mut lags = vec![200u64; 99];
        lags.push(50_000);
        assert!(!window(0, &lags, Outcome::Ok).client_limited(10.0));
        // Two late ones out of 100: p99 is late.
        lags[0] = 50_000;
        assert!(window(0, &lags, Outcome::Ok).client_limited(10.0));
        assert!(!window(0, &lags, Outcome::Ok).client_limited(60.0));
        assert!(!Window::new(0, 1.0).client_limited(10.0), "empty window");
    }

    #[test]
    fn summary_reports_the_share_of_client_limited_windows() {
        let ws = vec![
            window(0, &[100; 10], Outcome::Ok),
            window(1, &[20_000; 10], Outcome::Ok),
            window(2, &[], Outcome::Ok),
            window(3, &[100; 10], Outcome::Ok),
        ];
        let mut total = Window::default();
        ws.iter().for_each(|w| total.merge(w));
        let mut s = Summary::new(&total, 4.0, Some(10.0));
        s.judge_client(&ws, 10.0);
        assert!(s.client_limited);
        assert_eq!(s.client_limited_windows, 1);
        assert_eq!(s.client_limited_share, Some(1.0 / 3.0));
        assert_eq!(s.max_dispatch_lag_ms, Some(10.0));
        s.judge_client(&ws, 25.0);
        assert!(!s.client_limited);
        assert_eq!(s.client_limited_share, Some(0.0));
    }

    #[test]
    fn client_errors_stay_out_of_the_servers_errors_and_error_rate() {
        let mut w = window(0, &[100; 6], Outcome::Ok);
        w.merge(&window(0, &[100; 2], Outcome::ClientError));
        w.merge(&window(0, &[100; 2], Outcome::ConnectError));
        let s = Summary::new(&w, 1.0, None);
        assert_eq!((s.requests, s.errors, s.client_errors), (10, 2, 2));
        assert_eq!(
            s.error_rate,
            Some(0.25),
            "2 connect errors of 8 requests that left"
        );
        assert!(!s.errors_by_kind.contains_key("client_error"));
    }

    #[test]
    fn a_summary_written_before_the_client_fields_still_loads() {
        let s = Summary::new(&window(0, &[100], Outcome::Ok), 1.0, Some(1.0));
        let mut v = serde_json::to_value(&s).unwrap();
        let o = v.as_object_mut().unwrap();
        for k in [
            "client_errors",
            "client_limited",
            "client_limited_windows",
            "client_limited_share",
            "max_dispatch_lag_ms",
            "max_connections",
            "peak_connections",
            "connections_opened",
        ] {
            assert!(o.remove(k).is_some(), "{k}");
        }
        let back: Summary = serde_json::from_value(v).unwrap();
        assert!(!back.client_limited);
        assert_eq!(back.max_connections, None);
    }
}
