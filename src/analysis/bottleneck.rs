//! Which resource ran out first: the serving cluster's own metrics over a load test's window,
//! each turned into a 0..1 "saturation" score and ranked.
//!
//! Why it is built this way:
//! - **A high quantile, not the mean.** A resource that sits at its limit for most of the window
//!   is the bottleneck even if the window also holds a quiet ramp-up; one that spiked for a
//!   second is not. The 95th percentile of the window's points says "sustained"; the mean
//!   dilutes a sustained plateau and the max crowns a spike.
//! - **Missing is not zero.** A query that matches nothing (no NVLink exporter, a misspelt
//!   metric) yields no points; it is reported `missing`, with null numbers, and is never ranked
//!   or primary. Reading it as 0 % would silently claim the resource had headroom.
//! - **One knob to normalize.** Each signal says at which value it counts as saturated
//!   (`saturated_at`: 1 for ratios, a peak bandwidth in bytes/s, a queue depth); saturation is
//!   `p95 / saturated_at`, clamped to 0..1. Ranking uses the unclamped ratio (`pressure`), so a
//!   queue three times past its saturated depth outranks a GPU that is merely 100 % busy —
//!   `DCGM_FI_DEV_GPU_UTIL` reads 100 % whenever any kernel runs, which is not the same as
//!   having no room left. Equal pressures keep the configured order.
//! - **Defaults for vLLM and DCGM, overridable by file**, because metric names differ between
//!   servers (SGLang, TGI) and exporter versions; the PromQL is data, not code.
//! - Several series from one query (no aggregation) are combined by taking, at each instant,
//!   the highest value: the most saturated worker or GPU is what limits it.

use super::prometheus::{PromClient, PromError, Series};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file the report is written to.
pub const BOTTLENECK_FILE: &str = "bottleneck.json";

/// The quantile of a window's points that a signal's saturation is read from.
pub const QUANTILE: f64 = 0.95;

#[derive(Debug, thiserror::Error)]
pub enum BottleneckError {
    #[error("{}: cannot read: {source}", path.display())]
    ReadSignals {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    ParseSignals { path: PathBuf, message: String },
    #[error("{}: signal '{name}': {reason}", path.display())]
    InvalidSignal {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("empty window: from {} to {}", start.to_rfc3339(), end.to_rfc3339())]
    EmptyWindow {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error(transparent)]
    Prometheus(#[from] PromError),
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One thing that can run out, and how to read it from Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    pub name: String,
    /// PromQL; should return one series (several are combined by their maximum).
    pub query: String,
    /// The value at which the resource counts as fully used: 1 for ratios (the default), 100
    /// for percentages, a peak bandwidth, a queue depth.
    #[serde(default = "one")]
    pub saturated_at: f64,
    /// What the signal means, for people reading the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// The cluster-wide waiting-request count at which the queue counts as saturated: at 32
/// requests queued, admission has been blocked for a while on any cluster of a few workers.
pub const DEFAULT_QUEUE_SATURATED_AT: f64 = 32.0;
/// NVLink 4 (H100): 900 GB/s per GPU both ways, 450 GB/s transmit.
pub const DEFAULT_NVLINK_TX_PEAK: f64 = 450e9;

/// The built-in signals for vLLM and NVIDIA's dcgm-exporter.
pub fn default_signals() -> Vec<Signal> {
    let s = |name: &str, query: &str, saturated_at: f64, description: &str| Signal {
        name: name.into(),
        query: query.into(),
        saturated_at,
        description: Some(description.into()),
    };
    vec![
        s(
            "kv_cache",
            "max(vllm:gpu_cache_usage_perc)",
            1.0,
            "KV-cache usage of the fullest worker; when full, new requests wait",
        ),
        s(
            "queue_depth",
            "sum(vllm:num_requests_waiting)",
            DEFAULT_QUEUE_SATURATED_AT,
            "requests waiting for admission, summed over workers",
        ),
        s(
            "gpu_memory_bw",
            "avg(DCGM_FI_PROF_DRAM_ACTIVE) or avg(DCGM_FI_DEV_MEM_COPY_UTIL) / 100",
            1.0,
            "device-memory bandwidth in use (DRAM active where profiling metrics exist, \
             otherwise memory-copy utilization)",
        ),
        s(
            "nvlink",
            "avg(DCGM_FI_PROF_NVLINK_TX_BYTES)",
            DEFAULT_NVLINK_TX_PEAK,
            "NVLink transmit bytes/s per GPU (a rate already) against the NVLink 4 peak",
        ),
        s(
            "gpu_compute",
            "avg(DCGM_FI_DEV_GPU_UTIL) / 100",
            1.0,
            "share of time a kernel was running (100 % does not mean no room left)",
        ),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalsFile {
    signals: Vec<Signal>,
}

/// Reads a signals file (YAML or JSON): `signals: [{name, query, saturated_at?, description?}]`.
pub fn load_signals(path: &Path) -> Result<Vec<Signal>, BottleneckError> {
    let text = std::fs::read_to_string(path).map_err(|source| BottleneckError::ReadSignals {
        path: path.to_path_buf(),
        source,
    })?;
    parse_signals(path, &text)
}

/// Parses and checks a signals file's text; `path` is only for messages.
pub fn parse_signals(path: &Path, text: &str) -> Result<Vec<Signal>, BottleneckError> {
    let parse = |message: String| BottleneckError::ParseSignals {
        path: path.to_path_buf(),
        message,
    };
    let value = crate::yaml::to_json(text).map_err(|e| parse(e.to_string()))?;
    let file: SignalsFile = serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        parse(format!("at '{at}': {}", e.inner()))
    })?;
    let invalid = |name: &str, reason: String| BottleneckError::InvalidSignal {
        path: path.to_path_buf(),
        name: name.to_string(),
        reason,
    };
    if file.signals.is_empty() {
        return Err(parse("'signals' is empty".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &file.signals {
        if s.name.trim().is_empty() {
            return Err(invalid(&s.name, "the name is empty".into()));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(invalid(&s.name, "the name is used twice".into()));
        }
        if s.query.trim().is_empty() {
            return Err(invalid(&s.name, "the query is empty".into()));
        }
        if !(s.saturated_at.is_finite() && s.saturated_at > 0.0) {
            return Err(invalid(
                &s.name,
                format!("saturated_at {} is not a positive number", s.saturated_at),
            ));
        }
    }
    Ok(file.signals)
}

/// The stretch of time analysed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The query returned data.
    Ok,
    /// The query succeeded and matched nothing in the window.
    Missing,
    /// The query failed.
    Error,
}

impl Status {
    /// As written in `bottleneck.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Error => "error",
        }
    }
}

/// One signal over the window. Every number is null unless `status` is `ok`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalResult {
    pub name: String,
    pub query: String,
    pub saturated_at: f64,
    pub status: Status,
    /// Why a signal is missing or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Series the query returned, and points after combining them (NaN and infinities dropped).
    pub series: usize,
    pub points: usize,
    pub mean: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    /// `p95 / saturated_at`, clamped to 0..1.
    pub saturation: Option<f64>,
    /// `p95 / saturated_at`, unclamped: above 1 = past the saturated point. The ranking key.
    pub pressure: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BottleneckReport {
    pub prometheus: String,
    pub window: Window,
    pub step_s: f64,
    pub quantile: f64,
    /// In the configured order.
    pub signals: Vec<SignalResult>,
    /// The most saturated signal with data; none when no signal has data or all read zero.
    pub primary: Option<String>,
    /// Signals with data, most saturated first.
    pub ranking: Vec<String>,
}

impl BottleneckReport {
    pub fn signal(&self, name: &str) -> Option<&SignalResult> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// Writes `bottleneck.json` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<PathBuf, BottleneckError> {
        let path = dir.join(BOTTLENECK_FILE);
        let write = |source| BottleneckError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(write)?;
        let json = serde_json::to_string_pretty(self).expect("the report serializes");
        std::fs::write(&path, json + "\n").map_err(write)?;
        Ok(path)
    }
}

/// Query resolution for a window: one point a second, coarser for windows over ~17 minutes so
/// that no query asks for more than about a thousand points.
pub fn step_for(window: &Window) -> Duration {
    let secs = (window.end - window.start).num_milliseconds().max(0) as f64 / 1000.0;
    Duration::from_secs((secs / 1000.0).ceil().max(1.0) as u64)
}

/// Queries every signal over `window` from the Prometheus at `prometheus_url` (concurrently)
/// and ranks them. A failing query makes that signal `error`, not the analysis; only a bad URL
/// or an empty window is an error.
pub async fn analyze(
    prometheus_url: &str,
    tls: &crate::tls::TlsOptions,
    window: Window,
    signals: &[Signal],
) -> Result<BottleneckReport, BottleneckError> {
    if window.end <= window.start {
        return Err(BottleneckError::EmptyWindow {
            start: window.start,
            end: window.end,
        });
    }
    let client = PromClient::new(prometheus_url, tls)?;
    let step = step_for(&window);
    let answers = futures_util::future::join_all(signals.iter().map(|s| {
        let client = &client;
        async move {
            client
                .query_range(&s.query, window.start, window.end, step)
                .await
        }
    }))
    .await;
    let results = signals
        .iter()
        .zip(answers)
        .map(|(s, answer)| summarize(s, answer))
        .collect();
    Ok(report(client.base_url().to_string(), window, step, results))
}

/// Ranks summarized signals into a report.
pub fn report(
    prometheus: String,
    window: Window,
    step: Duration,
    signals: Vec<SignalResult>,
) -> BottleneckReport {
    let ranking = rank(&signals);
    let primary = ranking
        .first()
        .and_then(|name| signals.iter().find(|s| &s.name == name))
        .filter(|s| s.saturation.is_some_and(|v| v > 0.0))
        .map(|s| s.name.clone());
    BottleneckReport {
        prometheus,
        window,
        step_s: step.as_secs_f64(),
        quantile: QUANTILE,
        signals,
        primary,
        ranking,
    }
}

/// Names of the signals with data, highest pressure first; ties keep the given order.
pub fn rank(signals: &[SignalResult]) -> Vec<String> {
    let mut ok: Vec<(&str, f64)> = signals
        .iter()
        .filter(|s| s.status == Status::Ok)
        .filter_map(|s| s.pressure.map(|p| (s.name.as_str(), p)))
        .collect();
    ok.sort_by(|a, b| b.1.total_cmp(&a.1));
    ok.into_iter().map(|(n, _)| n.to_string()).collect()
}

/// One signal's answer turned into statistics and a saturation score.
pub fn summarize(signal: &Signal, answer: Result<Vec<Series>, PromError>) -> SignalResult {
    let mut r = SignalResult {
        name: signal.name.clone(),
        query: signal.query.clone(),
        saturated_at: signal.saturated_at,
        status: Status::Missing,
        detail: None,
        series: 0,
        points: 0,
        mean: None,
        p95: None,
        max: None,
        saturation: None,
        pressure: None,
    };
    let series = match answer {
        Ok(series) => series,
        Err(e) => {
            r.status = Status::Error;
            r.detail = Some(e.to_string());
            return r;
        }
    };
    r.series = series.len();
    let values = combine(&series);
    r.points = values.len();
    if values.is_empty() {
        r.detail = Some(if series.is_empty() {
            "the query matched no series in the window".into()
        } else {
            "the query returned only NaN or infinite values".into()
        });
        return r;
    }
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let p95 = quantile(&sorted, QUANTILE);
    let pressure = p95 / signal.saturated_at;
    r.status = Status::Ok;
    r.mean = Some(values.iter().sum::<f64>() / values.len() as f64);
    r.p95 = Some(p95);
    r.max = sorted.last().copied();
    r.saturation = Some(pressure.clamp(0.0, 1.0));
    r.pressure = Some(pressure);
    r
}

/// The highest finite value at each timestamp across series, in time order.
fn combine(series: &[Series]) -> Vec<f64> {
    let mut at: BTreeMap<i64, f64> = BTreeMap::new();
    for (t, v) in series.iter().flat_map(|s| &s.points) {
        if !v.is_finite() {
            continue;
        }
        let key = (t * 1000.0).round() as i64;
        at.entry(key).and_modify(|m| *m = m.max(*v)).or_insert(*v);
    }
    at.into_values().collect()
}

/// Nearest-rank quantile of sorted, non-empty values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(name: &str, saturated_at: f64) -> Signal {
        Signal {
            name: name.into(),
            query: format!("q_{name}"),
            saturated_at,
            description: None,
        }
    }

    fn series(values: &[f64]) -> Vec<Series> {
        vec![Series {
            labels: BTreeMap::new(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, &v)| (1000.0 + i as f64, v))
                .collect(),
        }]
    }

    fn window() -> Window {
        let start = DateTime::from_timestamp(1000, 0).unwrap();
        Window {
            start,
            end: start + chrono::Duration::seconds(60),
        }
    }

    #[test]
    fn normalization_divides_by_saturated_at_and_clamps_to_one() {
        let r = summarize(&signal("queue", 32.0), Ok(series(&[16.0; 20])));
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.saturation, Some(0.5));
        let r = summarize(&signal("queue", 32.0), Ok(series(&[96.0; 20])));
        assert_eq!(r.saturation, Some(1.0));
        assert_eq!(r.pressure, Some(3.0));
        let r = summarize(&signal("util", 1.0), Ok(series(&[-0.2; 3])));
        assert_eq!(r.saturation, Some(0.0));
    }

    #[test]
    fn sustained_plateau_counts_and_a_brief_spike_does_not() {
        // 100 points: 3 spiking to 1.0 → p95 ignores them.
        let mut spiky = vec![0.2; 97];
        spiky.extend([1.0; 3]);
        let r = summarize(&signal("spiky", 1.0), Ok(series(&spiky)));
        assert_eq!(r.p95, Some(0.2));
        assert_eq!(r.max, Some(1.0));
        // 30 quiet points of ramp-up then 70 at the limit → p95 at the limit.
        let mut plateau = vec![0.1; 30];
        plateau.extend([0.9; 70]);
        let r = summarize(&signal("plateau", 1.0), Ok(series(&plateau)));
        assert_eq!(r.p95, Some(0.9));
        assert!((r.mean.unwrap() - 0.66).abs() < 1e-9);
    }

    #[test]
    fn empty_result_is_missing_with_null_numbers_not_zero() {
        let r = summarize(&signal("nvlink", 450e9), Ok(vec![]));
        assert_eq!(r.status, Status::Missing);
        assert_eq!((r.saturation, r.p95, r.mean), (None, None, None));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["saturation"].is_null(), "{json}");
    }

    #[test]
    fn only_nan_points_are_missing() {
        let r = summarize(&signal("frac", 1.0), Ok(series(&[f64::NAN, f64::NAN])));
        assert_eq!(r.status, Status::Missing);
        assert!(r.detail.unwrap().contains("NaN"));
    }

    #[test]
    fn nan_points_are_dropped_and_the_rest_count() {
        let r = summarize(&signal("frac", 1.0), Ok(series(&[f64::NAN, 0.5, 0.5])));
        assert_eq!(
            (r.status, r.points, r.saturation),
            (Status::Ok, 2, Some(0.5))
        );
    }

    #[test]
    fn several_series_combine_by_the_most_saturated_at_each_instant() {
        let mut s = series(&[0.1, 0.9]);
        s.extend(series(&[0.8, 0.2]));
        let r = summarize(&signal("kv", 1.0), Ok(s));
        assert_eq!((r.series, r.points, r.max), (2, 2, Some(0.9)));
        assert!((r.mean.unwrap() - 0.85).abs() < 1e-12);
    }

    #[test]
    fn query_error_is_an_error_status_with_the_message() {
        let e = PromError::Api {
            url: "http://p/api/v1/query_range".into(),
            query: "q_x".into(),
            error_type: "bad_data".into(),
            error: "parse error".into(),
        };
        let r = summarize(&signal("x", 1.0), Err(e));
        assert_eq!(r.status, Status::Error);
        assert!(r.detail.unwrap().contains("parse error"));
        assert_eq!(r.saturation, None);
    }

    #[test]
    fn ranking_skips_missing_signals_and_never_makes_them_primary() {
        let results = vec![
            summarize(&signal("nvlink", 450e9), Ok(vec![])),
            summarize(&signal("gpu", 1.0), Ok(series(&[0.4; 10]))),
            summarize(&signal("kv", 1.0), Ok(series(&[0.7; 10]))),
        ];
        let r = report("http://p".into(), window(), Duration::from_secs(1), results);
        assert_eq!(r.ranking, vec!["kv", "gpu"]);
        assert_eq!(r.primary.as_deref(), Some("kv"));
    }

    #[test]
    fn all_missing_means_no_primary() {
        let results = vec![
            summarize(&signal("a", 1.0), Ok(vec![])),
            summarize(&signal("b", 1.0), Ok(vec![])),
        ];
        let r = report("http://p".into(), window(), Duration::from_secs(1), results);
        assert!(r.ranking.is_empty());
        assert_eq!(r.primary, None);
    }

    #[test]
    fn an_idle_cluster_has_no_primary_but_its_zeros_are_ranked() {
        let results = vec![
            summarize(&signal("a", 1.0), Ok(series(&[0.0; 5]))),
            summarize(&signal("b", 1.0), Ok(vec![])),
        ];
        let r = report("http://p".into(), window(), Duration::from_secs(1), results);
        assert_eq!(r.ranking, vec!["a"]);
        assert_eq!(r.primary, None);
    }

    #[test]
    fn a_queue_past_its_saturated_depth_outranks_a_fully_busy_gpu() {
        let results = vec![
            summarize(&signal("gpu_compute", 1.0), Ok(series(&[1.0; 10]))),
            summarize(&signal("queue_depth", 32.0), Ok(series(&[90.0; 10]))),
        ];
        let r = report("http://p".into(), window(), Duration::from_secs(1), results);
        assert_eq!(r.primary.as_deref(), Some("queue_depth"));
        assert_eq!(r.signal("gpu_compute").unwrap().saturation, Some(1.0));
    }

    #[test]
    fn equal_pressure_keeps_the_configured_order() {
        let results = vec![
            summarize(&signal("kv_cache", 1.0), Ok(series(&[1.0; 10]))),
            summarize(&signal("gpu_compute", 1.0), Ok(series(&[1.0; 10]))),
        ];
        assert_eq!(rank(&results), vec!["kv_cache", "gpu_compute"]);
    }

    #[test]
    fn step_is_one_second_up_to_a_thousand_seconds_then_grows() {
        let mut w = window();
        assert_eq!(step_for(&w), Duration::from_secs(1));
        w.end = w.start + chrono::Duration::seconds(3600);
        assert_eq!(step_for(&w), Duration::from_secs(4));
    }

    #[test]
    fn defaults_are_valid_signal_files_too() {
        let json = serde_json::json!({ "signals": default_signals() }).to_string();
        let parsed = parse_signals(Path::new("d.json"), &json).unwrap();
        assert_eq!(parsed, default_signals());
    }

    #[test]
    fn signals_file_in_yaml_defaults_saturated_at_to_one() {
        let text = "signals:\n  - name: kv\n    query: max(vllm:gpu_cache_usage_perc)\n  - name: q\n    query: sum(vllm:num_requests_waiting)\n    saturated_at: 64\n";
        let s = parse_signals(Path::new("s.yaml"), text).unwrap();
        assert_eq!(s[0].saturated_at, 1.0);
        assert_eq!(s[1].saturated_at, 64.0);
    }

    #[test]
    fn signals_file_errors_name_the_file_and_the_problem() {
        let e = parse_signals(
            Path::new("s.yaml"),
            "signals:\n  - name: kv\n    qurey: x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("s.yaml: "), "{e}");
        assert!(e.contains("qurey"), "{e}");
        let e = parse_signals(
            Path::new("s.yaml"),
            "signals:\n  - {name: a, query: x, saturated_at: 0}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("signal 'a'") && e.contains("saturated_at 0"),
            "{e}"
        );
        let e = parse_signals(
            Path::new("s.yaml"),
            "signals:\n  - {name: a, query: x}\n  - {name: a, query: y}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("used twice"), "{e}");
    }
}
