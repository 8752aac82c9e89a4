//! The capacity tables: a ramp's steps, the SLA sign-off, cost per configuration and a
//! bench's phases. Missing numbers read "–" or "no data", never 0.

use super::tables::{Cell, n, pass_fail, t, table};
use super::{esc, ms, pct, section};
use crate::report::inputs::{Bench, Cost, Ramp, Sla, num, step_label};
use std::fmt::Write;

/// The SLA sign-off: one row per metric, PASS or FAIL.
pub fn sla(s: &Sla) -> String {
    let rows: Vec<(Vec<Cell>, bool)> = s
        .checks
        .iter()
        .map(|c| {
            let actual = c.actual.map(num).unwrap_or_else(|| "no data".into());
            (
                vec![
                    t(&c.metric),
                    n(num(c.limit)),
                    n(actual),
                    pass_fail(c.passed),
                ],
                !c.passed,
            )
        })
        .collect();
    let mut body = format!(
        "<p class=\"note\">At {} req/s for {} s.{}</p>",
        num(s.rate),
        num(s.duration_s),
        s.find_answer()
            .map(|a| format!(" Highest rate meeting the SLA: <b>{}</b>.", esc(&a)))
            .unwrap_or_default()
    );
    body.push_str(&table(
        "sla",
        &["metric", "limit", "actual", "result"],
        &rows,
    ));
    section("sla-section", "SLA", &body)
}

/// Every ramp step's numbers; the saturation step is highlighted.
pub fn ramp_steps(r: &Ramp) -> String {
    let sat = r.saturation.as_ref().map(|s| s.step);
    let rows: Vec<(Vec<Cell>, bool)> = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let mut row = vec![n((i + 1).to_string()), t(step_label(st))];
            let s = &st.summary;
            row.extend([
                n(format!("{:.1}", s.achieved_rate)),
                n(s.requests.to_string()),
                n(pct(s.error_rate)),
                n(ms(s.ttft_ms.p50)),
                n(ms(s.ttft_ms.p99)),
                n(ms(s.itl_ms.p99)),
                n(format!("{:.0}", s.output_tok_s)),
            ]);
            (row, sat == Some(i))
        })
        .collect();
    let mut body = String::new();
    match &r.saturation {
        Some(s) => {
            let _ = write!(
                body,
                "<p class=\"note\">Saturated at step {} ({} req/s): <b>{}</b> — {}.</p>",
                s.step + 1,
                num(s.rate),
                esc(s.reason.as_str()),
                esc(&s.detail)
            );
        }
        None => body.push_str("<p class=\"note\">No saturation point within the ramp.</p>"),
    }
    let _ = write!(
        body,
        "<p class=\"note\">Low-load TTFT p99 baseline {}; recommended rate {} req/s ({:.0}% of saturation{}){}.</p>",
        ms(r.baseline_ttft_p99_ms),
        num(r.recommended_rate),
        r.fraction * 100.0,
        if r.recommended_is_extrapolated {
            ", extrapolated"
        } else {
            ""
        },
        if r.stopped_early {
            "; the ramp stopped early"
        } else {
            ""
        },
    );
    body.push_str(&table(
        "ramp-steps",
        &[
            "step",
            "asked",
            "achieved req/s",
            "requests",
            "error rate",
            "TTFT p50",
            "TTFT p99",
            "ITL p99",
            "output tok/s",
        ],
        &rows,
    ));
    section("ramp-table", "Ramp steps", &body)
}

/// Cost per million output tokens per configuration.
pub fn cost(c: &Cost) -> String {
    let money = |v: f64| format!("${v:.2}");
    let rows: Vec<(Vec<Cell>, bool)> = c
        .rows
        .iter()
        .map(|r| {
            (
                vec![
                    t(&r.name),
                    n(r.gpus.to_string()),
                    n(money(r.price_per_gpu_hour)),
                    n(format!("{:.0}", r.output_tok_s)),
                    n(r.utilization
                        .map(|u| format!("{:.0}%", u * 100.0))
                        .unwrap_or_else(|| "no data".into())),
                    n(money(r.cost_per_million_output_tokens)),
                ],
                false,
            )
        })
        .collect();
    let body = table(
        "cost",
        &[
            "configuration",
            "GPUs",
            "$/GPU-hour",
            "output tok/s",
            "utilization",
            "$ per 1M output tokens",
        ],
        &rows,
    );
    section("cost-section", "Cost", &body)
}

/// A bench's phases and how long each took.
pub fn bench(b: &Bench) -> String {
    let rows: Vec<(Vec<Cell>, bool)> = b
        .phases
        .iter()
        .map(|p| (vec![t(&p.name), n(format!("{:.1} s", p.seconds))], false))
        .collect();
    section(
        "bench",
        "Bench phases",
        &table("bench-phases", &["phase", "duration"], &rows),
    )
}
