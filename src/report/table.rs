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
