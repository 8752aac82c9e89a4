//! `summary.json`: the headline numbers of one load run, computed from merged windows.
//! The fields are documented in README.md and checked against `schemas/summary.schema.json`.

use super::hist::Percentiles;
use super::window::Window;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    /// Requests whose intended start fell inside the run.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// errors / requests; `null` when no request was sent.
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
        }
    }
}
