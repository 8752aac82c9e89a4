//! The report's tables. The failure table reuses the cells of the terminal and Markdown tables
//! (`table::failure_row`), so all three say the same thing in the same words.

use super::{esc, ms, pct, section};
use crate::analysis::hist::Percentiles;
use crate::analysis::summary::Summary;
use crate::report::inputs::num;
use crate::report::table::{FAILURE_HEADER, failure_row};
use crate::runner::result::{FaultStatus, RunResult};
use std::fmt::Write;

/// A cell: text (escaped) with an optional class (`num` right-aligns).
pub(super) type Cell = (String, &'static str);

pub(super) fn t(s: impl Into<String>) -> Cell {
    (s.into(), "")
}

pub(super) fn n(s: impl Into<String>) -> Cell {
    (s.into(), "num")
}

/// A table with an id, a header row and rows of already-escaped HTML (`raw`) or text cells.
pub(super) fn table(id: &str, header: &[&str], rows: &[(Vec<Cell>, bool)]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    let numeric: Vec<bool> = rows
        .first()
        .map(|(r, _)| r.iter().map(|c| c.1 == "num").collect())
        .unwrap_or_default();
    for (i, h) in header.iter().enumerate() {
        let class = if numeric.get(i).copied().unwrap_or(false) {
            " class=\"num\""
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (cells, failed) in rows {
        out.push_str(if *failed {
            "<tr class=\"failed\">"
        } else {
            "<tr>"
        });
        for (text, class) in cells {
            match *class {
                "raw" => {
                    let _ = write!(out, "<td>{text}</td>");
                }
                "" => {
                    let _ = write!(out, "<td>{}</td>", esc(text));
                }
                c => {
                    let _ = write!(out, "<td class=\"{c}\">{}</td>", esc(text));
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
    out
}

pub(super) fn badge(text: &str, class: &str) -> Cell {
    (
        format!("<span class=\"badge {class}\">{}</span>", esc(text)),
        "raw",
    )
}

pub(super) fn pass_fail(passed: bool) -> Cell {
    if passed {
        badge("PASS", "pass")
    } else {
        badge("FAIL", "fail")
    }
}

fn status_badge(s: &FaultStatus) -> Cell {
    let text = format!("{s:?}").to_lowercase();
    let class = match s {
        FaultStatus::Pass => "pass",
        FaultStatus::Failed => "fail",
        _ => "warn",
    };
    badge(&text, class)
}

/// The article's failure-injection table and the checks that failed.
pub fn experiment(run: &RunResult) -> String {
    let rows: Vec<(Vec<Cell>, bool)> = run
        .faults
        .iter()
        .map(|f| {
            let cells = failure_row(f);
            let mut row: Vec<Cell> = cells[..6].iter().map(|c| t(c.clone())).collect();
            row.push(status_badge(&f.status));
            (row, f.status != FaultStatus::Pass)
        })
        .collect();
    let mut body = if rows.is_empty() {
        "<p class=\"note\">No faults in this run.</p>".to_string()
    } else {
        table("failures", &FAILURE_HEADER, &rows)
    };
    let failed: Vec<String> = run
        .faults
        .iter()
        .flat_map(|f| {
            f.checks.iter().filter(|c| !c.passed).map(move |c| {
                format!(
                    "<li><b>{}</b>: {} {} (limit {})</li>",
                    esc(&f.id),
                    esc(&c.name),
                    esc(&c.actual),
                    esc(&c.limit)
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        let _ = write!(
            body,
            "<h3>Failed checks</h3><ul id=\"failed-checks\">{}</ul>",
            failed.join("")
        );
    }
    section("faults", "Faults", &body)
}

fn phase_row(name: &str, p: &crate::analysis::phases::PhaseStats) -> Vec<Cell> {
    vec![
        t(name),
        n(format!("{:.1} s", p.from_s)),
        n(format!("{:.1} s", p.to_s)),
        n(p.requests.to_string()),
        n(p.errors.to_string()),
        n(pct(p.error_rate)),
        n(ms(p.ttft_ms.p50)),
        n(ms(p.ttft_ms.p99)),
        n(ms(p.itl_ms.p99)),
        n(format!("{:.0}", p.output_tok_s)),
    ]
}

/// Per fault: what was done, the phase table and the checks.
pub fn fault_details(run: &RunResult) -> String {
    let mut body = String::new();
    for (i, f) in run.faults.iter().enumerate() {
        let _ = write!(
            body,
            "<h3 id=\"fault-{i}\">{} ({}) {}</h3><p class=\"note\">{}</p>",
            esc(&f.id),
            esc(&f.kind),
            status_badge(&f.status).0,
            esc(&f.action)
        );
        if let Some(reason) = &f.reason {
            let _ = write!(body, "<p class=\"note\"><b>{}</b></p>", esc(reason));
        }
        if let Some(b) = crate::report::table::baseline_line(f) {
            let _ = write!(
                body,
                "<p class=\"note\" id=\"baseline-{i}\">baseline (pre): {}</p>",
                esc(&b)
            );
        }
        if let Some(a) = &f.analysis {
            let rows = vec![
                (phase_row("pre", &a.pre), false),
                (phase_row("during", &a.during), false),
                (phase_row("recovery", &a.recovery), false),
            ];
            body.push_str(&table(
                &format!("phases-{i}"),
                &[
                    "phase",
                    "from",
                    "to",
                    "requests",
                    "errors",
                    "error rate",
                    "TTFT p50",
                    "TTFT p99",
                    "ITL p99",
                    "output tok/s",
                ],
                &rows,
            ));
        }
        if !f.checks.is_empty() {
            let rows: Vec<(Vec<Cell>, bool)> = f
                .checks
                .iter()
                .map(|c| {
                    (
                        vec![t(&c.name), t(&c.limit), t(&c.actual), pass_fail(c.passed)],
                        !c.passed,
                    )
                })
                .collect();
            body.push_str(&table(
                &format!("checks-{i}"),
                &["criterion", "limit", "actual", "result"],
                &rows,
            ));
        }
    }
    if body.is_empty() {
        return String::new();
    }
    section("fault-details", "Phases and checks per fault", &body)
}

fn latency_row(name: &str, p: &Percentiles) -> Vec<Cell> {
    vec![
        t(name),
        n(p.count.to_string()),
        n(ms(p.p50)),
        n(ms(p.p90)),
        n(ms(p.p95)),
        n(ms(p.p99)),
        n(ms(p.max)),
        n(ms(p.mean)),
    ]
}

/// The load's headline numbers and what was asked for (`run.json`).
pub fn load_summary(
    s: &Summary,
    info: Option<&serde_json::Map<String, serde_json::Value>>,
) -> String {
    let kinds: Vec<String> = s
        .errors_by_kind
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let mut body = format!(
        "<p class=\"note\">{} requests in {:.1} s ({}{:.1} req/s achieved); {} ok, {} errors{}; {:.0} output tok/s ({} output, {} input tokens; counts from {}).</p>",
        s.requests,
        s.duration_s,
        s.target_rate
            .map(|r| format!("{} req/s target, ", num(r)))
            .unwrap_or_default(),
        s.achieved_rate,
        s.ok,
        s.errors,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&kinds.join(", ")))
        },
        s.output_tok_s,
        s.output_tokens,
        s.input_tokens,
        esc(&s.token_count_source),
    );
    body.push_str(&table(
        "latency",
        &[
            "latency", "samples", "p50", "p90", "p95", "p99", "max", "mean",
        ],
        &[
            (latency_row("TTFT", &s.ttft_ms), false),
            (latency_row("ITL", &s.itl_ms), false),
            (latency_row("end-to-end", &s.e2e_ms), false),
            (latency_row("dispatch lag", &s.dispatch_lag_ms), false),
        ],
    ));
    if let Some(info) = info {
        let rows: Vec<(Vec<Cell>, bool)> = info
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) if k.ends_with("_at") => {
                        crate::report::fmt::timestamp(s)
                    }
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                let v: String = if v.chars().count() > 240 {
                    v.chars().take(240).chain("…".chars()).collect()
                } else {
                    v
                };
                (vec![t(k.as_str()), t(v)], false)
            })
            .collect();
        body.push_str("<h3>What was asked for (run.json)</h3>");
        body.push_str(&table("run-info", &["setting", "value"], &rows));
    }
    section("load", "Load summary", &body)
}

/// The run's events on the load's clock, with the wall-clock time beside it (to line up with
/// dashboards and logs), and the definitions behind the numbers.
pub fn timeline(run: &RunResult) -> String {
    let start = chrono::DateTime::parse_from_rfc3339(run.started_at.trim()).ok();
    let clock = |t_s: f64| match start {
        Some(s) if t_s.is_finite() => (s + chrono::Duration::milliseconds((t_s * 1000.0) as i64))
            .with_timezone(&chrono::Utc)
            .format("%H:%M:%S")
            .to_string(),
        _ => "–".into(),
    };
    let rows: Vec<(Vec<Cell>, bool)> = run
        .events
        .iter()
        .map(|e| {
            (
                vec![
                    n(format!("{:.2} s", e.t_s)),
                    n(clock(e.t_s)),
                    t(&e.kind),
                    t(e.fault.clone().unwrap_or_default()),
                    t(&e.detail),
                ],
                false,
            )
        })
        .collect();
    let mut body = table(
        "events",
        &["time", "UTC", "event", "fault", "detail"],
        &rows,
    );
    body.push_str("<h3>Definitions</h3><ul class=\"defs\">");
    for d in &run.definitions {
        let _ = write!(body, "<li>{}</li>", esc(d));
    }
    body.push_str("</ul>");
    section("timeline", "Timeline", &body)
}
