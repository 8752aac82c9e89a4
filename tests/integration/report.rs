//! `faultline report` end to end: real results (an experiment through the runner against the
//! sim, real `faultline load` runs), the real binary building the report, and the report opened
//! in a real headless Chromium: it loads offline without console errors or network requests,
//! its SVG charts hold the data, and its tables hold the numbers of `result.json`.

mod chromium;

use faultline::load::recorder::read_windows;
use faultline::report::table::failure_row;
use faultline::runner::execute::{self, RunOptions};
use faultline::runner::result::RunResult;
use faultline::{fault::ledger::Ledger, runner::spec};
use std::path::Path;
use std::process::Command;

const SPIKE: &str = r#"name: spike-report
target:
  sim: {preset: small}
  api: completions
load:
  rate: 4
  arrival: constant
  workload: fixed:64:8
  duration: 16s
  seed: 3
warmup: 2s
faults:
  - id: spike
    fault: {kind: load-spike, multiplier: 3}
    at: 6s
    duration: 4s
criteria:
  must_recover: true
analysis:
  recovery_windows: 2
"#;

fn faultline(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "faultline {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The inner HTML of the element that starts with `open` (up to the matching `close`).
fn element<'a>(dom: &'a str, open: &str, close: &str) -> &'a str {
    dom.split(open)
        .nth(1)
        .unwrap_or_else(|| panic!("no {open} in the DOM"))
        .split(close)
        .next()
        .unwrap()
}

fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

/// The text of every cell of table `id`, row by row (header excluded).
fn table(dom: &str, id: &str) -> Vec<Vec<String>> {
    let body = element(dom, &format!("<table id=\"{id}\">"), "</table>");
    let body = element(body, "<tbody>", "</tbody>");
    body.split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| text(&format!("<td{}", cell.split("</td>").next().unwrap())))
                .collect()
        })
        .collect()
}

/// The attributes of the element whose text follows its tag name.
fn attrs(element: &str) -> &str {
    element.split('>').next().unwrap_or("")
}

/// The number of points of the polyline whose attributes start `element`.
fn points(element: &str) -> usize {
    element
        .split("points=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map_or(0, |pts| pts.split_whitespace().count())
}

/// The largest number of points of any polyline in `svg`: the data line, not axes or ticks.
fn longest_polyline(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter_map(|p| p.split("points=\"").nth(1)?.split('"').next())
        .map(|pts| pts.split_whitespace().count())
        .max()
        .unwrap_or(0)
}

fn assert_clean(page: &chromium::Page) {
    assert!(
        page.console.is_empty(),
        "console messages from the page: {:?}",
        page.console
    );
    assert!(
        page.requests.is_empty(),
        "the page made network requests: {:?}",
        page.requests
    );
    assert!(page.dom.contains("</html>"), "no DOM: {}", page.dom);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_report_opens_in_chromium_with_charts_and_the_numbers_of_result_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spike.yaml");
    std::fs::write(&path, SPIKE).unwrap();
    let exp = spec::load_experiment(&path).unwrap();
    let out = dir.path().join("out");
    let opts = RunOptions {
        out_dir: out.clone(),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: "t-report".into(),
        faultline_bin: None,
    };
    execute::run(&exp, &opts).await.unwrap();
    let runner_md = std::fs::read_to_string(out.join("summary.md")).unwrap();

    let printed = faultline(&["report", out.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("report.html") && printed.contains("junit.xml"),
        "{printed}"
    );
    let html = out.join("report.html");
    // The runner's summary.md is kept as it was.
    assert_eq!(
        std::fs::read_to_string(out.join("summary.md")).unwrap(),
        runner_md
    );

    let result: RunResult =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let windows = read_windows(&out.join("windows.jsonl")).unwrap();
    let fault = &result.faults[0];
    let a = fault.analysis.as_ref().expect("analysed");

    let page = chromium::open(&html);
    assert_clean(&page);
    let dom = &page.dom;
    let verdict = format!("{:?}", result.status).to_uppercase();
    assert_eq!(
        text(
            element(dom, "<span id=\"verdict\"", "</span>")
                .split_once('>')
                .unwrap()
                .1
        ),
        if verdict == "FAILED" {
            "FAILED".to_string()
        } else {
            verdict
        }
    );

    // Charts: inline SVG with one point per window and the phases shaded.
    for id in ["chart-error-rate", "chart-throughput", "chart-ttft"] {
        let fig = element(dom, &format!("<figure id=\"{id}\">"), "</figure>");
        assert!(
            fig.trim_start().starts_with("<svg"),
            "{id} is not an inline SVG"
        );
        assert!(!fig.contains("no data"), "{id} says no data");
        assert!(
            fig.matches("<rect").count() >= 4,
            "{id}: background + 3 phase bands"
        );
    }
    let tput = element(dom, "<figure id=\"chart-throughput\">", "</figure>");
    assert_eq!(
        longest_polyline(tput),
        windows.len(),
        "a throughput point per window"
    );
    // Throughput: the raw windows faint behind their rolling mean, both a point per window.
    let faint = tput
        .split("<polyline")
        .skip(1)
        .map(attrs)
        .filter(|p| p.contains("opacity=\"0.35\"") && p.contains("#EA580C"))
        .map(points)
        .max();
    assert_eq!(faint, Some(windows.len()), "the raw line is there, faint");

    // Errors are drawn where users saw them: by completion time, and the page says so.
    let err = element(dom, "<figure id=\"chart-error-rate\">", "</figure>");
    assert!(
        text(err).contains("Error rate (by completion time)"),
        "{}",
        text(err)
    );
    let over_time = text(element(dom, "<section id=\"over-time\">", "</section>"));
    assert!(
        over_time.contains("Error rate by completion time")
            && over_time.contains("Shaded by intended start time"),
        "{over_time}"
    );
    // Completion windows with requests, recomputed from requests.jsonl: one point each (the
    // line is broken only where no request ended).
    let ends: std::collections::BTreeSet<u64> = std::fs::read_to_string(out.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let end = v["intended_s"].as_f64().unwrap() + v["e2e_us"].as_f64().unwrap() / 1e6;
            end.floor() as u64
        })
        .filter(|w| (*w as f64) <= windows.last().unwrap().start_s)
        .collect();
    let err_points: usize = err
        .split("<polyline")
        .skip(1)
        .map(attrs)
        .filter(|p| p.contains("stroke=\"#EA580C\""))
        .map(points)
        .sum();
    assert_eq!(
        err_points - 2,
        ends.len(),
        "a point per window in which requests ended (less the legend's 2-point sample)"
    );
    // The fault is numbered on its line and named in the key, once each; the cleared line
    // carries no label of its own.
    let words = text(err);
    assert_eq!(words.matches("spike").count(), 1, "{words}");
    let badges = err
        .split("<circle")
        .skip(1)
        .map(attrs)
        .filter(|c| c.contains("fill=\"#DC2626\""))
        .count();
    assert_eq!(badges, 2, "a badge in the key and one on the line");

    // Times read as people read them.
    let started = chrono::DateTime::parse_from_rfc3339(&result.started_at)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("started %Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let meta = text(element(dom, "<div class=\"meta\">", "</div>"));
    assert!(meta.contains(&started), "{meta}");

    // Tables: the failure row and the phases are result.json's numbers.
    let failures = table(dom, "failures");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0], failure_row(fault).to_vec());
    let phases = table(dom, "phases-0");
    for (row, (name, p)) in phases.iter().zip([
        ("pre", &a.pre),
        ("during", &a.during),
        ("recovery", &a.recovery),
    ]) {
        assert_eq!(row[0], name);
        assert_eq!(row[1], format!("{:.1} s", p.from_s));
        assert_eq!(row[2], format!("{:.1} s", p.to_s));
        assert_eq!(row[3], p.requests.to_string(), "{name} requests");
        assert_eq!(row[4], p.errors.to_string(), "{name} errors");
        assert_eq!(row[9], format!("{:.0}", p.output_tok_s), "{name} tok/s");
    }
    let latency = table(dom, "latency");
    assert_eq!(latency[0][1], result.load.ttft_ms.count.to_string());

    // JUnit: one case for the fault, failed exactly when the fault did not pass.
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"spike (load-spike)\""), "{junit}");
    let failed = (fault.status != faultline::runner::result::FaultStatus::Pass) as usize;
    assert_eq!(junit.matches("<failure ").count(), failed, "{junit}");

    // The screenshot renders; FAULTLINE_REPORT_SCREENSHOT=path keeps it (docs/report.png).
    let png = chromium::screenshot(&html, dir.path(), (1400, 2400));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("FAULTLINE_REPORT_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}

fn load_run(dir: &Path, rate: &str) -> serde_json::Value {
    faultline(&[
        "load",
        "--sim-preset",
        "small",
        "--rate",
        rate,
        "--duration",
        "3s",
        "--workload",
        "fixed:64:8",
        "--seed",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn load_and_ramp_folders_render_offline_with_the_hockey_stick() {
    let dir = tempfile::tempdir().unwrap();
    // A plain load folder.
    let base = dir.path().join("bench/baseline");
    let baseline = load_run(&base, "4");
    faultline(&["report", base.to_str().unwrap()]);
    let page = chromium::open(&base.join("report.html"));
    assert_clean(&page);
    let windows = read_windows(&base.join("windows.jsonl")).unwrap();
    let tput = element(&page.dom, "<figure id=\"chart-throughput\">", "</figure>");
    assert_eq!(longest_polyline(tput), windows.len());
    assert!(
        std::fs::read_to_string(base.join("summary.md"))
            .unwrap()
            .contains("## Load")
    );

    // A bench folder: the baseline above, a ramp of two real load steps, an SLA result.
    let ramp_dir = dir.path().join("bench/ramp");
    let steps: Vec<serde_json::Value> = [("2", "step-1"), ("8", "step-2")]
        .iter()
        .map(|(rate, name)| {
            let s = load_run(&ramp_dir.join(name), rate);
            serde_json::json!({"rate": rate.parse::<f64>().unwrap(), "concurrency": null, "summary": s, "out_dir": name})
        })
        .chain([serde_json::json!({"rate": 4.0, "summary": baseline, "out_dir": "../baseline"})])
        .collect();
    let ramp = serde_json::json!({
        "steps": steps, "baseline_ttft_p99_ms": null,
        "saturation": {"step": 1, "rate": 8.0, "reason": "ttft_p99", "detail": "test"},
        "max_throughput": {"rate": 8.0, "output_tok_s": 64.0},
        "recommended_rate": 6.0, "fraction": 0.75, "recommended_is_extrapolated": false, "stopped_early": true,
        "criteria": {"ttft_k": 2.0, "baseline_ttft_p99_ms": null, "max_error_rate": 0.01, "plateau": 0.05}
    });
    std::fs::write(ramp_dir.join("ramp.json"), ramp.to_string()).unwrap();
    std::fs::create_dir_all(dir.path().join("bench/sla")).unwrap();
    std::fs::write(
        dir.path().join("bench/sla/sla.json"),
        // As `faultline sla` writes it: the report reads the writer's own type.
        serde_json::json!({"rate": 4.0, "duration_s": 3.0, "passed": false, "failed_metrics": ["itl_p99_ms"],
            "limits": {"ttft_p99_ms": 60000.0, "itl_p99_ms": 0.001, "max_error_rate": 0.01,
                       "e2e_p99_ms": null, "goodput_min": null},
            "checks": [{"metric": "ttft_p99_ms", "limit": 60000.0, "actual": 120.5, "passed": true},
                       {"metric": "itl_p99_ms", "limit": 0.001, "actual": null, "passed": false}],
            "summary": baseline, "max_rate_meeting_sla": null})
        .to_string(),
    )
    .unwrap();
    // bench.json as `faultline bench` writes it: the report reads the writer's own type.
    let bench_json = serde_json::json!({
        "profile": "quick", "phases": [{"name": "ramp", "seconds": 6.0}],
        "baseline": baseline, "ramp": "ramp", "sla": "sla", "cost": null, "bottleneck": null,
        "notes": []
    });
    std::fs::write(dir.path().join("bench/bench.json"), bench_json.to_string()).unwrap();
    let bench = dir.path().join("bench");
    faultline(&["report", bench.to_str().unwrap()]);
    let page = chromium::open(&bench.join("report.html"));
    assert_clean(&page);
    let hockey = element(&page.dom, "<figure id=\"chart-hockey\">", "</figure>");
    assert!(hockey.contains("saturation") && hockey.contains("recommended"));
    assert!(
        hockey.matches("<circle").count() >= 2 * 3,
        "a point per step and percentile"
    );
    let sla = table(&page.dom, "sla");
    assert_eq!(sla[0], ["ttft_p99_ms", "60000", "120.5", "PASS"]);
    assert_eq!(sla[1], ["itl_p99_ms", "0.001", "no data", "FAIL"]);
    let junit = std::fs::read_to_string(bench.join("junit.xml")).unwrap();
    assert_eq!(
        junit.matches("<testcase ").count(),
        3,
        "2 SLA metrics + saturation: {junit}"
    );
    assert_eq!(junit.matches("<failure ").count(), 1, "{junit}");
}

#[test]
fn chromium_checks_catch_console_errors_and_network_requests() {
    // The checks above are only worth something if they can fail.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        r#"<!DOCTYPE html><html><body><img src="http://example.invalid/x.png"><script>console.error("boom")</script></body></html>"#,
    )
    .unwrap();
    let page = chromium::open(&bad);
    assert!(
        page.console.iter().any(|l| l.contains("boom")),
        "{:?}",
        page.console
    );
    assert_eq!(page.requests, ["http://example.invalid/x.png"]);
}
