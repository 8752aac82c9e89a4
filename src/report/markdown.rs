//! `summary.md`: the experiment's result for people, readable on GitHub or in a launch review.

use crate::report::fmt::{ms, pct};
use crate::report::table::{FAILURE_HEADER, baseline_line, failure_row};
use crate::runner::result::RunResult;
use std::fmt::Write;

pub fn experiment(r: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {} — {:?}\n", r.experiment, r.status);
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "**{reason}**\n");
    }
    let _ = writeln!(
        out,
        "Run `{}`, started {}. Load: {} requests, {:.1} req/s achieved, error rate {}, TTFT p50/p99 {} / {}, {:.0} output tok/s. Warm-up: {:.0} s (excluded from the baseline).\n",
        r.run_id,
        crate::report::fmt::timestamp(&r.started_at),
        r.load.requests,
        r.load.achieved_rate,
        pct(r.load.error_rate),
        ms(r.load.ttft_ms.p50),
        ms(r.load.ttft_ms.p99),
        r.load.output_tok_s,
        r.warmup_s
    );
    let _ = writeln!(out, "## Faults\n");
    let _ = writeln!(out, "| {} |", FAILURE_HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(FAILURE_HEADER.len()));
    for f in &r.faults {
        let _ = writeln!(out, "| {} |", failure_row(f).join(" | "));
    }
    for f in &r.faults {
        let _ = writeln!(out, "\n### {}\n\n{}\n", f.id, f.action);
        if let Some(reason) = &f.reason {
            let _ = writeln!(out, "- {reason}");
        }
        if let Some(b) = baseline_line(f) {
            let _ = writeln!(out, "- baseline: {b}\n");
        }
        if let Some(a) = &f.analysis {
            let _ = writeln!(
                out,
                "| phase | from | to | requests | error rate | TTFT p50 | TTFT p99 | ITL p99 | output tok/s |\n|---|---|---|---|---|---|---|---|---|"
            );
            for (name, p) in [
                ("pre", &a.pre),
                ("during", &a.during),
                ("recovery", &a.recovery),
            ] {
                let _ = writeln!(
                    out,
                    "| {name} | {:.1} s | {:.1} s | {} | {} | {} | {} | {} | {:.0} |",
                    p.from_s,
                    p.to_s,
                    p.requests,
                    pct(p.error_rate),
                    ms(p.ttft_ms.p50),
                    ms(p.ttft_ms.p99),
                    ms(p.itl_ms.p99),
                    p.output_tok_s
                );
            }
        }
        if !f.checks.is_empty() {
            let _ = writeln!(out, "\n| criterion | limit | actual | |\n|---|---|---|---|");
            for c in &f.checks {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    c.name,
                    c.limit,
                    c.actual,
                    if c.passed { "PASS" } else { "FAIL" }
                );
            }
        }
    }
    let _ = writeln!(out, "\n## Timeline\n");
    for e in &r.events {
        let _ = writeln!(
            out,
            "- {:7.2} s `{}`{} {}",
            e.t_s,
            e.kind,
            e.fault
                .as_ref()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default(),
            e.detail
        );
    }
    let _ = writeln!(out, "\n## Definitions\n");
    for d in &r.definitions {
        let _ = writeln!(out, "- {d}");
    }
    out
}
