//! A small client for the Prometheus HTTP API (`/api/v1/query_range`, `/api/v1/query`).
//!
//! Why our own and not a crate: we need two endpoints and one result shape, and we need the
//! failure modes spelled out. A query that names a series nobody exports answers *success with
//! an empty result*, and the bottleneck analysis must report that as "missing", not as zero; a
//! bad query or an overloaded server answers `status: error`, which must reach the operator with
//! the URL and the query that failed. Sample values arrive as strings (`"NaN"`, `"+Inf"`
//! included) and are parsed here, once, so callers only ever see `f64`.

use crate::tls::TlsOptions;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One time series of a result: its labels and its `(unix seconds, value)` samples in time
/// order. An instant query gives one sample per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("invalid Prometheus URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    #[error("TLS settings for Prometheus at {url}: {source}")]
    Tls {
        url: String,
        source: Box<crate::tls::TlsError>,
    },
    #[error("cannot reach Prometheus at {url} for query '{query}': {reason}")]
    Http {
        url: String,
        query: String,
        reason: String,
    },
    #[error("Prometheus at {url} answered HTTP {status} to query '{query}': {body}")]
    Status {
        url: String,
        query: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus at {url} refused query '{query}': {error_type}: {error}")]
    Api {
        url: String,
        query: String,
        error_type: String,
        error: String,
    },
    #[error("unexpected answer from Prometheus at {url} to query '{query}': {reason}")]
    Decode {
        url: String,
        query: String,
        reason: String,
    },
}

/// How long one API call may take (Prometheus' own default query timeout is 2 minutes; a load
/// test's window is far smaller).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies quoted in errors are cut to this many characters.
const SNIPPET: usize = 300;

/// A Prometheus server, by its base URL (`http://host:9090`, `https://prom.example` with the
/// TLS options it needs, or with a path prefix for one behind a proxy).
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
    tls: TlsOptions,
}

impl PromClient {
    pub fn new(base_url: &str, tls: &TlsOptions) -> Result<PromClient, PromError> {
        let bad = |reason: String| PromError::BadUrl {
            url: base_url.to_string(),
            reason,
        };
        let url = reqwest::Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme '{}' is not http or https",
                url.scheme()
            )));
        }
        let http = crate::tls::http_client_builder(tls)
            .map_err(|source| PromError::Tls {
                url: base_url.to_string(),
                source: Box::new(source),
            })?
            .no_proxy()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(PromClient {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            tls: tls.clone(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A range query: every series with its samples at `start, start+step, … ≤ end`.
    pub async fn query_range(
        &self,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<Series>, PromError> {
        let params = [
            ("query", promql.to_string()),
            ("start", unix(start)),
            ("end", unix(end)),
            ("step", format!("{:.3}", step.as_secs_f64())),
        ];
        self.call("query_range", promql, &params).await
    }

    /// An instant query at `at`: each series with one sample.
    pub async fn query(&self, promql: &str, at: DateTime<Utc>) -> Result<Vec<Series>, PromError> {
        let params = [("query", promql.to_string()), ("time", unix(at))];
        self.call("query", promql, &params).await
    }

    async fn call(
        &self,
        endpoint: &str,
        promql: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Series>, PromError> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        // POST with a form body: long queries do not hit URL length limits.
        let resp = match self.http.post(&url).form(params).send().await {
            Ok(r) => r,
            Err(e) => {
                let mut reason = error_chain(&e);
                // A TLS 1.3 refusal after the handshake (no client certificate) reaches an
                // HTTP/2 request as "channel closed": ask once more to learn the reason.
                if crate::tls::explain(&e).is_none()
                    && let Ok(u) = reqwest::Url::parse(&url)
                    && let Some(tls) = crate::tls::diagnose(&u, &self.tls).await
                {
                    reason = tls;
                }
                return Err(PromError::Http {
                    url,
                    query: promql.to_string(),
                    reason,
                });
            }
        };
        let status = resp.status();
        let body = resp.text().await.map_err(|e| PromError::Http {
            url: url.clone(),
            query: promql.to_string(),
            reason: error_chain(&e),
        })?;
        parse_response(status.as_u16(), &body).map_err(|p| p.into_error(url, promql))
    }
}

/// A range query against the Prometheus at `base_url` (see [`PromClient::query_range`]).
pub async fn query_range(
    base_url: &str,
    tls: &TlsOptions,
    promql: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Duration,
) -> Result<Vec<Series>, PromError> {
    PromClient::new(base_url, tls)?
        .query_range(promql, start, end, step)
        .await
}

fn unix(t: DateTime<Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

/// reqwest's top-level message hides the cause ("error sending request for url …") and its
/// middle layers repeat the URL; the innermost cause says "Connection refused".
fn error_chain(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {TIMEOUT:?}");
    }
    if let Some(why) = crate::tls::explain(e) {
        return why;
    }
    let mut root: &dyn std::error::Error = e;
    while let Some(s) = root.source() {
        root = s;
    }
    root.to_string()
}

/// What was wrong with an answer, before the URL and the query are attached.
#[derive(Debug, PartialEq)]
pub(crate) enum Problem {
    Status { status: u16, body: String },
    Api { error_type: String, error: String },
    Decode(String),
}

impl Problem {
    fn into_error(self, url: String, query: &str) -> PromError {
        let query = query.to_string();
        match self {
            Problem::Status { status, body } => PromError::Status {
                url,
                query,
                status,
                body,
            },
            Problem::Api { error_type, error } => PromError::Api {
                url,
                query,
                error_type,
                error,
            },
            Problem::Decode(reason) => PromError::Decode { url, query, reason },
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// Parses an API answer (any HTTP status: Prometheus sends `status: error` bodies with 400, 422
/// and 503) into series. `matrix`, `vector` and `scalar` results are accepted.
pub(crate) fn parse_response(http_status: u16, body: &str) -> Result<Vec<Series>, Problem> {
    let envelope: Envelope = match serde_json::from_str(body) {
        Ok(e) => e,
        Err(e) => {
            return Err(if (200..300).contains(&http_status) {
                Problem::Decode(format!("not an API answer ({e}): {}", snippet(body)))
            } else {
                Problem::Status {
                    status: http_status,
                    body: snippet(body),
                }
            });
        }
    };
    if envelope.status != "success" {
        return Err(Problem::Api {
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            error: envelope
                .error
                .unwrap_or_else(|| format!("status '{}' without a message", envelope.status)),
        });
    }
    if !(200..300).contains(&http_status) {
        return Err(Problem::Status {
            status: http_status,
            body: snippet(body),
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| Problem::Decode("'data' is missing".into()))?;
    match data.result_type.as_str() {
        "matrix" | "vector" => {
            let raw: Vec<RawSeries> = serde_json::from_value(data.result)
                .map_err(|e| Problem::Decode(format!("{} result: {e}", data.result_type)))?;
            raw.into_iter()
                .map(|s| {
                    let samples = s.values.into_iter().chain(s.value);
                    let points = samples
                        .map(|(t, v)| parse_value(&v).map(|v| (t, v)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Series {
                        labels: s.metric,
                        points,
                    })
                })
                .collect()
        }
        "scalar" => {
            let (t, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| Problem::Decode(format!("scalar result: {e}")))?;
            Ok(vec![Series {
                labels: BTreeMap::new(),
                points: vec![(t, parse_value(&v)?)],
            }])
        }
        other => Err(Problem::Decode(format!(
            "result type '{other}' is not a number series"
        ))),
    }
}

/// Prometheus' float format: Go's `strconv.FormatFloat` plus `NaN`, `+Inf`, `-Inf`.
fn parse_value(v: &str) -> Result<f64, Problem> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => v
            .parse()
            .map_err(|_| Problem::Decode(format!("sample value '{v}' is not a number"))),
    }
}

fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(SNIPPET) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_values_parse_including_nan_and_infinities() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"worker":"0"},"values":[[1700000000,"0.5"],[1700000001.5,"NaN"],[1700000003,"+Inf"],[1700000004,"-Inf"],[1700000005,"1e+06"]]},
            {"metric":{},"values":[[1700000000,"2"]]}]}}"#;
        let series = parse_response(200, body).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels["worker"], "0");
        let p = &series[0].points;
        assert_eq!(p[0], (1_700_000_000.0, 0.5));
        assert_eq!(p[1].0, 1_700_000_001.5);
        assert!(p[1].1.is_nan());
        assert_eq!(p[2].1, f64::INFINITY);
        assert_eq!(p[3].1, f64::NEG_INFINITY);
        assert_eq!(p[4].1, 1e6);
        assert!(series[1].labels.is_empty());
    }

    #[test]
    fn empty_result_is_no_series_not_an_error() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse_response(200, body).unwrap(), vec![]);
    }

    #[test]
    fn error_status_keeps_the_error_type_and_message() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#;
        assert_eq!(
            parse_response(400, body).unwrap_err(),
            Problem::Api {
                error_type: "bad_data".into(),
                error: "invalid parameter \"query\": 1:5: parse error".into(),
            }
        );
    }

    #[test]
    fn api_error_names_the_url_and_the_query() {
        let p = parse_response(
            422,
            r#"{"status":"error","errorType":"execution","error":"boom"}"#,
        )
        .unwrap_err();
        let msg = p
            .into_error("http://127.0.0.1:9/api/v1/query_range".into(), "sum(x)")
            .to_string();
        assert!(
            msg.contains("http://127.0.0.1:9/api/v1/query_range"),
            "{msg}"
        );
        assert!(msg.contains("'sum(x)'"), "{msg}");
        assert!(msg.contains("execution: boom"), "{msg}");
    }

    #[test]
    fn non_json_error_page_is_an_http_status_error() {
        let p = parse_response(502, "<html>Bad Gateway</html>").unwrap_err();
        assert_eq!(
            p,
            Problem::Status {
                status: 502,
                body: "<html>Bad Gateway</html>".into()
            }
        );
    }

    #[test]
    fn vector_and_scalar_results_become_one_point_series() {
        let v = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"gpu":"1"},"value":[1700000000,"42"]}]}}"#;
        assert_eq!(
            parse_response(200, v).unwrap()[0].points,
            vec![(1_700_000_000.0, 42.0)]
        );
        let s = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#;
        assert_eq!(
            parse_response(200, s).unwrap()[0].points,
            vec![(1_700_000_000.0, 3.0)]
        );
    }

    #[test]
    fn garbage_sample_value_is_a_decode_error() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"lots"]]}]}}"#;
        assert!(matches!(
            parse_response(200, body),
            Err(Problem::Decode(m)) if m.contains("'lots'")
        ));
    }

    #[test]
    fn client_refuses_a_url_that_is_not_http() {
        let e = PromClient::new("ftp://prom:9090", &TlsOptions::default()).unwrap_err();
        assert!(e.to_string().contains("'ftp://prom:9090'"), "{e}");
        assert!(PromClient::new("not a url", &TlsOptions::default()).is_err());
    }
}
