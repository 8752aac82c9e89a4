//! `summary.md` for the folders the runner does not write one for (load, ramp, SLA, bench):
//! the same headline numbers as the HTML report, in a form that pastes into a PR or a ticket.

use super::inputs::num;
use super::load_dir::Results;
use super::table::summary_table;
use crate::report::fmt::{ms, pct};
use std::fmt::Write;

/// Markdown cells must not break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(r: &Results) -> String {
    let mut out = format!("# {} — {}\n\n", r.title(), r.kind.name());
    if let Some(b) = &r.bench {
        let _ = writeln!(out, "Profile `{}`.\n", b.profile);
        if !b.phases.is_empty() {
            let _ = writeln!(out, "| phase | duration |\n|---|---|");
            for p in &b.phases {
                let _ = writeln!(out, "| {} | {:.1} s |", cell(&p.name), p.seconds);
            }
            out.push('\n');
        }
    }
    if let Some(sla) = &r.sla {
        let _ = writeln!(
            out,
            "## SLA: {}\n\nAt {} req/s.{}\n\n| metric | limit | actual | |\n|---|---|---|---|",
            if sla.passed { "PASS" } else { "FAIL" },
            num(sla.rate),
            sla.find_answer()
                .map(|a| format!(" Highest rate meeting the SLA: {a}."))
                .unwrap_or_default()
        );
        for c in &sla.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&c.metric),
                num(c.limit),
                c.actual.map(num).unwrap_or_else(|| "no data".into()),
                if c.passed { "PASS" } else { "FAIL" }
            );
        }
        out.push('\n');
    }
    if let Some(ramp) = &r.ramp {
        let _ = writeln!(out, "## Ramp\n");
        match &ramp.saturation {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "Saturated at {} req/s ({}: {}).",
                    num(s.rate),
                    s.reason,
                    s.detail
                );
            }
            None => out.push_str("No saturation point within the ramp.\n"),
        }
        let _ = writeln!(
            out,
            "Recommended rate: {} req/s{}.",
            num(ramp.recommended_rate),
            if ramp.recommended_is_extrapolated {
                " (extrapolated)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "\n| step | asked | achieved req/s | error rate | TTFT p50 | TTFT p99 | ITL p99 | output tok/s |\n|---|---|---|---|---|---|---|---|"
        );
        for (i, st) in ramp.steps.iter().enumerate() {
            let s = &st.summary;
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {:.0} |",
                i + 1,
                super::inputs::step_label(st),
                s.achieved_rate,
                pct(s.error_rate),
                ms(s.ttft_ms.p50),
                ms(s.ttft_ms.p99),
                ms(s.itl_ms.p99),
                s.output_tok_s
            );
        }
        out.push('\n');
    }
    if let Some(c) = &r.cost {
        let _ = writeln!(
            out,
            "## Cost\n\n| configuration | GPUs | output tok/s | $ per 1M output tokens |\n|---|---|---|---|"
        );
        for row in &c.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | ${:.2} |",
                cell(&row.name),
                row.gpus,
                row.output_tok_s,
                row.cost_per_million_output_tokens
            );
        }
        out.push('\n');
    }
    if let Some(b) = &r.bottleneck {
        let _ = writeln!(
            out,
            "## Bottleneck\n\nPrimary: {}.\n\n| signal | status | saturation |\n|---|---|---|",
            b.primary.as_deref().unwrap_or("none identified")
        );
        for s in &b.signals {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&s.name),
                cell(s.status.as_str()),
                s.saturation
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "no data".into())
            );
        }
        out.push('\n');
    }
    if let Some(s) = &r.summary {
        let _ = writeln!(out, "## Load\n\n```\n{}```", summary_table(s));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::inputs::{Sla, SlaCheck};
    use crate::report::load_dir::Kind;

    #[test]
    fn sla_folder_summary_lists_every_metric_with_its_verdict() {
        let r = Results {
            dir: "sla-run".into(),
            kind: Kind::Sla,
            run: None,
            summary: None,
            windows: vec![],
            ramp: None,
            sla: Some(Sla::example(
                10.0,
                vec![SlaCheck {
                    metric: "ttft_p99_ms".into(),
                    limit: 500.0,
                    actual: None,
                    passed: false,
                }],
            )),
            cost: None,
            bottleneck: None,
            bench: None,
            run_info: None,
            completed: vec![],
        };
        let md = render(&r);
        assert!(md.contains("## SLA: FAIL"), "{md}");
        assert!(
            md.contains("| ttft_p99_ms | 500 | no data | FAIL |"),
            "{md}"
        );
    }
}
