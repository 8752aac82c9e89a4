//! `junit.xml`: the verdicts in the format every CI system already renders, so a failed game
//! day or SLA sign-off shows up as a red test in the pipeline without a custom plugin.
//!
//! One `<testsuite>`: a test case per fault (failed unless its status is `pass`, with the
//! failed checks as the message), per SLA metric, and one for the ramp's saturation point
//! (failed when the ramp never saturated: its recommended rate is then an extrapolation).

use super::inputs::num;
use super::load_dir::Results;
use crate::runner::result::FaultStatus;
use std::fmt::Write;

struct Case {
    class: String,
    name: String,
    time_s: f64,
    failure: Option<(String, String)>,
    out: String,
}

/// Escapes text for XML 1.0 attributes and text; drops the characters XML 1.0 cannot carry.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn cases(r: &Results) -> Vec<Case> {
    let mut cases = Vec::new();
    if let Some(run) = &r.run {
        for f in &run.faults {
            let failed: Vec<String> = f
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{}: {} (limit {})", c.name, c.actual, c.limit))
                .collect();
            let status = format!("{:?}", f.status).to_lowercase();
            let failure = (f.status != FaultStatus::Pass).then(|| {
                let mut lines = failed.clone();
                if let Some(reason) = &f.reason {
                    lines.push(reason.clone());
                }
                let message = if lines.is_empty() {
                    format!("fault {status}")
                } else {
                    format!("fault {status}: {}", lines.join("; "))
                };
                (message, lines.join("\n"))
            });
            let time_s = match (f.effective_s, f.cleared_s) {
                (Some(a), Some(b)) => (b - a).max(0.0),
                _ => 0.0,
            };
            cases.push(Case {
                class: format!("faultline.{}", run.experiment),
                name: format!("{} ({})", f.id, f.kind),
                time_s,
                failure,
                out: f
                    .checks
                    .iter()
                    .map(|c| {
                        format!(
                            "{}: {} (limit {}) {}",
                            c.name,
                            c.actual,
                            c.limit,
                            if c.passed { "PASS" } else { "FAIL" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
    }
    if let Some(sla) = &r.sla {
        for c in &sla.checks {
            let actual = c.actual.map(num).unwrap_or_else(|| "no data".into());
            let limit = c.limit.map(num).unwrap_or_else(|| "-".into());
            cases.push(Case {
                class: "faultline.sla".into(),
                name: c.metric.clone(),
                time_s: sla.duration_s.unwrap_or(0.0),
                failure: (!c.passed).then(|| {
                    (
                        format!("{} = {actual} exceeds the limit {limit}", c.metric),
                        format!("metric {}: actual {actual}, limit {limit}", c.metric),
                    )
                }),
                out: format!("actual {actual}, limit {limit}"),
            });
        }
    }
    if let Some(ramp) = &r.ramp {
        let max_rate = ramp
            .steps
            .iter()
            .filter_map(|s| s.rate)
            .fold(0.0_f64, f64::max);
        let (failure, out) = match &ramp.saturation {
            Some(s) => (
                None,
                format!(
                    "saturated at {} ({}: {})",
                    s.rate
                        .map(|r| format!("{} req/s", num(r)))
                        .unwrap_or_else(|| "-".into()),
                    s.reason,
                    s.detail
                ),
            ),
            None => {
                let msg = format!(
                    "no saturation point within the ramp (up to {} req/s); the recommended rate is extrapolated",
                    num(max_rate)
                );
                (Some((msg.clone(), msg.clone())), msg)
            }
        };
        cases.push(Case {
            class: "faultline.ramp".into(),
            name: "saturation point found".into(),
            time_s: 0.0,
            failure,
            out,
        });
    }
    if cases.is_empty()
        && let Some(s) = &r.summary
    {
        // A plain load run has no criteria; it passes when it measured anything at all.
        cases.push(Case {
            class: "faultline.load".into(),
            name: "load run measured requests".into(),
            time_s: s.duration_s,
            failure: (s.requests == 0).then(|| {
                (
                    "no request was sent".to_string(),
                    "requests = 0".to_string(),
                )
            }),
            out: format!("{} requests, {} errors", s.requests, s.errors),
        });
    }
    cases
}

/// Renders the results as one JUnit `<testsuite>`.
pub fn render(r: &Results) -> String {
    let cases = cases(r);
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let total_time = r.summary.as_ref().map(|s| s.duration_s).unwrap_or(0.0);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let timestamp = r
        .run
        .as_ref()
        .map(|run| format!(" timestamp=\"{}\"", escape(&run.started_at)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<testsuites name=\"faultline\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total_time:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total_time:.3}\"{timestamp}>",
        escape(&format!("{} ({})", r.title(), r.kind.name())),
        cases.len()
    );
    for c in &cases {
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            escape(&c.class),
            escape(&c.name),
            c.time_s
        );
        if let Some((message, detail)) = &c.failure {
            let _ = write!(
                out,
                "\n      <failure message=\"{}\" type=\"failed\">{}</failure>",
                escape(message),
                escape(detail)
            );
        }
        if !c.out.is_empty() {
            let _ = write!(out, "\n      <system-out>{}</system-out>", escape(&c.out));
        }
        out.push_str("\n    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::inputs::{Ramp, Sla, SlaCheck};
    use crate::report::load_dir::Kind;

    fn results() -> Results {
        Results {
            dir: "x".into(),
            kind: Kind::Sla,
            run: None,
            summary: None,
            windows: vec![],
            ramp: None,
            sla: None,
            cost: None,
            bottleneck: None,
            bench: None,
            run_info: None,
            completed: vec![],
        }
    }

    #[test]
    fn escape_handles_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}d\n"),
            "a&lt;b&gt;&amp;&quot;c&apos;d\n"
        );
    }

    #[test]
    fn sla_metrics_are_test_cases_and_failures_carry_the_numbers() {
        let mut r = results();
        r.sla = Some(Sla {
            duration_s: Some(30.0),
            checks: vec![
                SlaCheck {
                    metric: "ttft_p99_ms".into(),
                    limit: Some(500.0),
                    actual: Some(812.0),
                    passed: false,
                },
                SlaCheck {
                    metric: "error_rate<&>".into(),
                    limit: Some(0.01),
                    actual: Some(0.0),
                    passed: true,
                },
                SlaCheck {
                    metric: "itl_p99_ms".into(),
                    limit: Some(50.0),
                    actual: None,
                    passed: false,
                },
            ],
            ..Sla::default()
        });
        let xml = render(&r);
        assert!(xml.starts_with("<?xml version=\"1.0\""));
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert!(xml.contains("tests=\"3\" failures=\"2\""));
        assert!(xml.contains("ttft_p99_ms = 812 exceeds the limit 500"));
        assert!(xml.contains("error_rate&lt;&amp;&gt;"), "{xml}");
        assert!(xml.contains("actual no data"));
        // Balanced elements.
        assert_eq!(
            xml.matches("<testcase").count(),
            xml.matches("</testcase>").count()
        );
        assert_eq!(
            xml.matches("<failure").count(),
            xml.matches("</failure>").count()
        );
    }

    #[test]
    fn a_ramp_that_never_saturated_is_a_failed_case() {
        let mut r = results();
        r.kind = Kind::Ramp;
        r.ramp = Some(Ramp::default());
        let xml = render(&r);
        assert!(xml.contains("name=\"saturation point found\""));
        assert!(xml.contains("no saturation point within the ramp"));
    }
}
