use super::*;
use crate::analysis::bottleneck::Status;
use crate::analysis::saturation::Reason;
use crate::analysis::summary::Summary;
use crate::analysis::window::Window;
use crate::report::inputs::{
    Bottleneck, BottleneckSignal, Cost, CostRow, Ramp, RampStep, Saturation, Sla, SlaCheck,
};

fn summary(rate: f64) -> Summary {
    let mut s = Summary::new(&Window::default(), 10.0, Some(rate));
    s.ttft_ms.p50 = Some(100.0 * rate);
    s.ttft_ms.p99 = Some(150.0 * rate * rate);
    s.achieved_rate = rate;
    s
}

fn everything() -> Results {
    let info: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"endpoint": "http://10.0.0.1:8000/v1", "model": "<script>alert(1)</script>"}"#,
    )
    .unwrap();
    Results {
        dir: "results/bench-<1>&".into(),
        kind: Kind::Bench,
        run: None,
        summary: Some(summary(4.0)),
        windows: vec![],
        ramp: Some(Ramp {
            saturation: Some(Saturation {
                step: 3,
                rate: 8.0,
                reason: Reason::TtftP99,
                detail: "p99 > 3x".into(),
            }),
            recommended_rate: 5.6,
            recommended_is_extrapolated: false,
            ..Ramp::example(
                (1..=4)
                    .map(|i| RampStep {
                        rate: Some(i as f64 * 2.0),
                        concurrency: None,
                        summary: summary(i as f64 * 2.0),
                        out_dir: format!("step-{i}"),
                    })
                    .collect(),
            )
        }),
        sla: Some(Sla::example(
            4.0,
            vec![
                SlaCheck {
                    metric: "ttft_p99_ms".into(),
                    limit: 500.0,
                    actual: Some(2400.0),
                    passed: false,
                },
                SlaCheck {
                    metric: "error_rate".into(),
                    limit: 0.01,
                    actual: None,
                    passed: false,
                },
            ],
        )),
        cost: Some(Cost {
            rows: vec![cost_row("4xH100 <tp4>", 4, 1.234)],
        }),
        bottleneck: Some(Bottleneck {
            prometheus: "http://127.0.0.1:9090".into(),
            window: crate::analysis::bottleneck::Window {
                start: chrono::DateTime::UNIX_EPOCH,
                end: chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(60),
            },
            step_s: 1.0,
            quantile: 0.95,
            signals: vec![
                signal("kv_cache", Status::Missing, None),
                signal("gpu_util", Status::Ok, Some(0.98)),
            ],
            primary: Some("gpu_util".into()),
            ranking: vec!["gpu_util".into()],
        }),
        bench: None,
        run_info: Some(info),
        completed: vec![],
    }
}

/// Is byte offset `at` inside a tag (`<...>`) rather than in text?
fn inside_tag(html: &str, at: usize) -> bool {
    let before = &html[..at];
    match (before.rfind('<'), before.rfind('>')) {
        (Some(lt), Some(gt)) => lt > gt,
        (Some(_), None) => true,
        _ => false,
    }
}

#[test]
fn html_references_no_url_outside_text() {
    let html = render(&everything());
    for scheme in ["http://", "https://"] {
        for (at, _) in html.match_indices(scheme) {
            assert!(
                !inside_tag(&html, at),
                "a URL in markup at {at}: {}",
                &html[at.saturating_sub(80)..at + 40]
            );
        }
    }
    // The endpoint is shown, as text.
    assert!(html.contains("http://10.0.0.1:8000/v1"));
    for bad in [
        "<script", "<link", "<img", "@import", "url(", " src=", " href=",
    ] {
        assert!(!html.contains(bad), "found {bad}");
    }
}

#[test]
fn text_from_the_results_is_escaped() {
    let html = render(&everything());
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("4xH100 &lt;tp4&gt;"));
    assert!(html.contains("bench-&lt;1&gt;&amp;"));
}

#[test]
fn sla_table_says_pass_or_fail_per_metric_and_no_data_for_missing_numbers() {
    let html = render(&everything());
    let sla = html
        .split("<table id=\"sla\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(sla.matches(">FAIL<").count(), 2);
    assert!(sla.contains("no data"));
    assert!(html.contains("id=\"verdict\" class=\"verdict fail\">SLA FAIL<"));
}

#[test]
fn ramp_bench_report_has_its_charts_and_the_missing_signal_is_no_data() {
    let html = render(&everything());
    for id in [
        "chart-hockey",
        "chart-ttft-steps",
        "chart-itl-steps",
        "chart-bottleneck",
    ] {
        let fig = html
            .split(&format!("<figure id=\"{id}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("{id} missing"));
        let fig = fig.split("</figure>").next().unwrap();
        assert!(fig.starts_with("<svg"), "{id}: {fig}");
    }
    let bars = html
        .split("<figure id=\"chart-bottleneck\">")
        .nth(1)
        .unwrap()
        .split("</figure>")
        .next()
        .unwrap();
    assert!(bars.contains("no data"));
}

#[test]
fn a_load_folder_without_windows_renders_no_data_charts() {
    let mut r = everything();
    r.kind = Kind::Load;
    r.ramp = None;
    r.sla = None;
    r.bottleneck = None;
    r.cost = None;
    let html = render(&r);
    let fig = html
        .split("<figure id=\"chart-throughput\">")
        .nth(1)
        .unwrap();
    assert!(fig.split("</figure>").next().unwrap().contains("no data"));
}

/// The cards' (label, value) pairs, in order.
fn card_pairs(html: &str) -> Vec<(String, String)> {
    let cards = html
        .split("<div class=\"cards\" id=\"cards\">")
        .nth(1)
        .unwrap()
        .split("</div>\n")
        .next()
        .unwrap();
    cards
        .split("<div class=\"card\">")
        .skip(1)
        .map(|c| {
            let field = |class: &str| {
                c.split(&format!("<div class=\"{class}\">"))
                    .nth(1)
                    .unwrap()
                    .split("</div>")
                    .next()
                    .unwrap()
                    .to_string()
            };
            (field("label"), field("value"))
        })
        .collect()
}

#[test]
fn bench_headline_is_saturation_recommended_rate_sla_and_cost_not_the_baseline() {
    let html = render(&everything());
    let cards = card_pairs(&html);
    assert_eq!(
        cards,
        vec![
            ("saturation point".to_string(), "8 req/s".to_string()),
            ("recommended rate".into(), "5.6 req/s".into()),
            ("SLA".into(), "FAIL at 4 req/s".into()),
            ("cost".into(), "$1.23 / 1M output tokens".into()),
        ]
    );
    // The baseline's numbers are no headline (they stay in the load summary).
    assert!(
        !cards
            .iter()
            .any(|(l, _)| l == "TTFT p50" || l == "requests")
    );

    // A ramp that never saturated says so; the cheapest of several configurations is named.
    let mut r = everything();
    r.ramp.as_mut().unwrap().saturation = None;
    r.ramp.as_mut().unwrap().recommended_is_extrapolated = true;
    r.sla.as_mut().unwrap().passed = true;
    r.cost
        .as_mut()
        .unwrap()
        .rows
        .push(cost_row("8xA100", 8, 0.5));
    let cards = card_pairs(&render(&r));
    assert_eq!(cards[0].1, "not reached");
    assert_eq!(cards[1].1, "5.6 req/s (extrapolated)");
    assert_eq!(cards[2].1, "PASS at 4 req/s");
    assert_eq!(
        cards[3],
        ("cost (8xA100)".into(), "$0.50 / 1M output tokens".into())
    );
}

#[test]
fn started_at_reads_as_a_human_utc_time() {
    let mut r = everything();
    r.kind = Kind::Load;
    r.run_info.as_mut().unwrap().insert(
        "started_at".into(),
        "2026-11-28T18:40:12.353407241+01:00".into(),
    );
    let html = render(&r);
    assert!(html.contains("started 2026-11-28 17:40:12 UTC"), "header");
    assert!(!html.contains(".353407241"), "no nanoseconds anywhere");
}

/// A `cost.json` row (the writer's type: every number is there).
fn cost_row(name: &str, gpus: u32, per_million: f64) -> CostRow {
    CostRow {
        name: name.into(),
        gpus,
        price_per_gpu_hour: 2.0,
        output_tok_s: 3000.0,
        utilization: None,
        cost_per_million_output_tokens: per_million,
    }
}

/// A `bottleneck.json` signal; numbers only when it has data.
fn signal(name: &str, status: Status, saturation: Option<f64>) -> BottleneckSignal {
    BottleneckSignal {
        name: name.into(),
        query: format!("{name}_query"),
        saturated_at: 1.0,
        status,
        detail: None,
        series: 1,
        points: 60,
        mean: saturation,
        p95: saturation,
        max: saturation,
        saturation,
        pressure: saturation,
    }
}
