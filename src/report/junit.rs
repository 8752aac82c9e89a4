//! `junit.xml`: the verdicts in the format every CI system already renders, so a failed game
//! day or SLA sign-off shows up as a red test in the pipeline without a custom plugin.
//!
//! One `<testsuite>`: a test case per fault (failed unless its status is `pass`, with the
//! failed checks as the message), per SLA metric, and one for the ramp's saturation point
//! (failed when the ramp never saturated: its recommended rate is then an extrapolation).

use super::inputs::num;
use super::load_dir::Results;
use crate::runner::result::FaultStatus;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

struct Case {
    class: String,
    name: String,
    time_s: f64,
    failure: Option<(String, String)>,
    out: String,
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
            let limit = num(c.limit);
            cases.push(Case {
                class: "faultline.sla".into(),
                name: c.metric.clone(),
                time_s: sla.duration_s,
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
                    "saturated at {} req/s ({}: {})",
                    num(s.rate),
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

/// Renders the results as one JUnit `<testsuite>` inside `<testsuites>` (quick-junit writes
/// and escapes the XML).
pub fn render(r: &Results) -> String {
    let cases = cases(r);
    let total_time = r.summary.as_ref().map(|s| s.duration_s).unwrap_or(0.0);
    let mut suite = TestSuite::new(format!("{} ({})", r.title(), r.kind.name()));
    suite.set_time(secs(total_time));
    if let Some(ts) = r
        .run
        .as_ref()
        .and_then(|run| chrono::DateTime::parse_from_rfc3339(&run.started_at).ok())
    {
        suite.set_timestamp(ts);
    }
    for c in cases {
        let status = match c.failure {
            None => TestCaseStatus::success(),
            Some((message, detail)) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(message)
                    .set_type("failed")
                    .set_description(detail);
                s
            }
        };
        let mut case = TestCase::new(c.name, status);
        case.set_classname(c.class).set_time(secs(c.time_s));
        if !c.out.is_empty() {
            case.set_system_out(c.out);
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("faultline");
    report.set_time(secs(total_time)).add_test_suite(suite);
    // Serialising to a String cannot fail short of a bug in quick-junit; fall back to an empty,
    // still valid report rather than panic in the middle of writing the reports.
    report.to_string().unwrap_or_else(|e| {
        tracing::error!(error = %e, "junit: serialising the report failed");
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"faultline\"/>\n".into()
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() { s.max(0.0) } else { 0.0 })
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

    /// Parses `xml` with an independent XML parser and returns (tests, failures) of the one
    /// `<testsuite>`, checking that the counts in the attributes match the elements.
    fn parse_counts(xml: &str) -> (usize, usize) {
        let doc = roxmltree::Document::parse(xml).expect("junit.xml is well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let suites: Vec<_> = root
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        assert_eq!(suites.len(), 1, "{xml}");
        let suite = suites[0];
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        let failed = cases
            .iter()
            .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
            .count();
        let attr = |n: roxmltree::Node, k: &str| -> usize {
            n.attribute(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX)
        };
        assert_eq!(attr(suite, "tests"), cases.len(), "{xml}");
        assert_eq!(attr(suite, "failures"), failed, "{xml}");
        assert_eq!(attr(root, "tests"), cases.len(), "{xml}");
        assert_eq!(attr(root, "failures"), failed, "{xml}");
        for c in &cases {
            assert!(c.attribute("name").is_some() && c.attribute("classname").is_some());
        }
        (cases.len(), failed)
    }

    #[test]
    fn markup_quotes_and_control_characters_survive_a_real_xml_parser() {
        let mut r = results();
        r.sla = Some(Sla::example(
            1.0,
            vec![SlaCheck {
                metric: "a<b>&\"c'\u{1}d".into(),
                limit: 1.0,
                actual: Some(2.0),
                passed: false,
            }],
        ));
        let xml = render(&r);
        assert_eq!(parse_counts(&xml), (1, 1));
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let case = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase"))
            .unwrap();
        assert_eq!(case.attribute("name"), Some("a<b>&\"c'd"));
        let failure = case.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(failure.attribute("type"), Some("failed"));
        assert_eq!(
            failure.attribute("message"),
            Some("a<b>&\"c'd = 2 exceeds the limit 1")
        );
    }

    #[test]
    fn sla_metrics_are_test_cases_and_failures_carry_the_numbers() {
        let mut r = results();
        r.sla = Some(Sla::example(
            1.0,
            vec![
                SlaCheck {
                    metric: "ttft_p99_ms".into(),
                    limit: 500.0,
                    actual: Some(812.0),
                    passed: false,
                },
                SlaCheck {
                    metric: "error_rate<&>".into(),
                    limit: 0.01,
                    actual: Some(0.0),
                    passed: true,
                },
                SlaCheck {
                    metric: "itl_p99_ms".into(),
                    limit: 50.0,
                    actual: None,
                    passed: false,
                },
            ],
        ));
        let xml = render(&r);
        assert!(xml.starts_with("<?xml version=\"1.0\""));
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert!(xml.contains("ttft_p99_ms = 812 exceeds the limit 500"));
        assert!(xml.contains("error_rate&lt;&amp;&gt;"), "{xml}");
        assert!(xml.contains("actual no data"));
        assert_eq!(parse_counts(&xml), (3, 2));
    }

    #[test]
    fn a_ramp_that_never_saturated_is_a_failed_case() {
        let mut r = results();
        r.kind = Kind::Ramp;
        r.ramp = Some(Ramp::example(vec![]));
        let xml = render(&r);
        assert!(xml.contains("name=\"saturation point found\""));
        assert!(xml.contains("no saturation point within the ramp"));
        assert_eq!(parse_counts(&xml), (1, 1));
    }
}
