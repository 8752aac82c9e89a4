//! The readable end-of-run table printed by `faultline load`.

use crate::analysis::hist::Percentiles;
use crate::analysis::summary::Summary;
use std::fmt::Write;

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

fn latency_row(out: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "  {name:<15} {:>9} {:>9} {:>9} {:>9} {:>9}",
        ms(p.p50),
        ms(p.p95),
        ms(p.p99),
        ms(p.max),
        ms(p.mean)
    );
}

/// Renders the summary as a fixed-width table.
pub fn summary_table(s: &Summary) -> String {
    let mut out = String::new();
    let target = s
        .target_rate
        .map(|r| format!("{r:.1} req/s target, "))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  requests        {} in {:.1} s ({target}{:.1} req/s achieved)",
        s.requests, s.duration_s, s.achieved_rate
    );
    let rate = s
        .error_rate
        .map(|r| format!("{:.2}%", r * 100.0))
        .unwrap_or_else(|| "-".into());
    let kinds: Vec<String> = s
        .errors_by_kind
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let kinds = if kinds.is_empty() {
        String::new()
    } else {
        format!(" ({})", kinds.join(", "))
    };
    let _ = writeln!(out, "  errors          {} = {rate}{kinds}", s.errors);
    let _ = writeln!(
        out,
        "  throughput      {:.0} output tok/s ({} output, {} input tokens; counts from {})",
        s.output_tok_s, s.output_tokens, s.input_tokens, s.token_count_source
    );
    let _ = writeln!(
        out,
        "\n  {:<15} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p95", "p99", "max", "mean"
    );
    latency_row(&mut out, "TTFT", &s.ttft_ms);
    latency_row(&mut out, "ITL", &s.itl_ms);
    latency_row(&mut out, "end-to-end", &s.e2e_ms);
    latency_row(&mut out, "dispatch lag", &s.dispatch_lag_ms);
    out
}

use crate::analysis::phases::{Detection, FaultAnalysis, Recovery};
use crate::runner::result::{FaultResult, RunResult};

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:+.0}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// Cells of the failure-injection table for one fault (shared by the terminal and Markdown).
pub fn failure_row(f: &FaultResult) -> [String; 7] {
    let (detection, recovery, err, tput, ttft) = match &f.analysis {
        Some(a) => cells(a),
        None => {
            let why = f.reason.clone().unwrap_or_else(|| "-".into());
            (why, "-".into(), "-".into(), "-".into(), "-".into())
        }
    };
    [
        format!("{} ({})", f.id, f.kind),
        detection,
        recovery,
        err,
        tput,
        ttft,
        format!("{:?}", f.status).to_lowercase(),
    ]
}

fn cells(a: &FaultAnalysis) -> (String, String, String, String, String) {
    let detection = match &a.detection {
        Detection::Detected { after_s, signal } => format!("{after_s:.1} s ({signal})"),
        Detection::NotDetected => "not detected".into(),
        Detection::NoSignal => "no failure seen".into(),
    };
    let recovery = match &a.recovery_time {
        Recovery::Recovered { after_s } => format!("{after_s:.1} s"),
        Recovery::NotRecovered { within_s } => format!("not within {within_s:.0} s"),
        Recovery::NoBaseline => "no baseline".into(),
    };
    let err = a
        .impact
        .error_rate_during
        .map(|e| format!("{:.1}%", e * 100.0))
        .unwrap_or_else(|| "-".into());
    (
        detection,
        recovery,
        err,
        pct(a.impact.throughput_change),
        pct(a.impact.ttft_p99_change),
    )
}

/// Which baseline a fault was compared with, in one line (`None` for results written before
/// per-fault baselines).
pub fn baseline_line(f: &FaultResult) -> Option<String> {
    let b = f.analysis.as_ref()?.baseline.as_ref()?;
    let range = format!(
        "{:.0}–{:.0} s, {} windows, {} requests",
        b.from_s, b.to_s, b.windows, b.requests
    );
    Some(match (&b.reason, b.fell_back) {
        (Some(why), true) => format!("the run's first baseline ({range}); fell back: {why}"),
        (Some(why), false) => format!("{range} ({why})"),
        (None, _) => range,
    })
}

pub const FAILURE_HEADER: [&str; 7] = [
    "fault",
    "detection",
    "recovery",
    "error rate during",
    "throughput impact",
    "TTFT p99 impact",
    "verdict",
];

/// The article's failure-injection table, fixed-width for a terminal.
pub fn failure_table(r: &RunResult) -> String {
    let rows: Vec<[String; 7]> = r.faults.iter().map(failure_row).collect();
    let mut widths: Vec<usize> = FAILURE_HEADER.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", parts.join("  "))
    };
    let mut out = line(FAILURE_HEADER.iter().map(|s| s.to_string()).collect());
    out += &line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        out += &line(row.to_vec());
    }
    let _ = writeln!(
        out,
        "\n  {}: {}{}",
        r.experiment,
        format!("{:?}", r.status).to_uppercase(),
        r.reason
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    for f in &r.faults {
        for c in f.checks.iter().filter(|c| !c.passed) {
            let _ = writeln!(
                out,
                "  {}: {} {} (limit {})",
                f.id, c.name, c.actual, c.limit
            );
        }
        if let Some(reason) = &f.reason {
            let _ = writeln!(out, "  {}: {reason}", f.id);
        }
    }
    for f in &r.faults {
        if let Some(b) = baseline_line(f) {
            let _ = writeln!(out, "  {} baseline: {b}", f.id);
        }
    }
    out
}
