//! Turns the results into chart inputs and wraps each SVG in a `<figure>` with an id (the
//! browser test finds them by it). A chart that cannot be drawn says why instead of vanishing.

use super::{esc, section};
use crate::report::charts::{self, Band, Bar, ChartError, Marker, Phase, StepPoint, YFormat};
use crate::report::inputs::{Bottleneck, Ramp};
use crate::report::load_dir::Results;

fn figure(id: &str, chart: Result<String, ChartError>) -> String {
    match chart {
        Ok(svg) => format!("<figure id=\"{}\">{svg}</figure>\n", esc(id)),
        Err(e) => format!(
            "<figure id=\"{}\"><p class=\"note\">{}</p></figure>\n",
            esc(id),
            esc(&e.to_string())
        ),
    }
}

/// Phase bands and fault lines of an experiment (deduplicated: every fault shares `pre`).
fn shading(r: &Results) -> (Vec<Band>, Vec<Marker>) {
    let mut bands: Vec<Band> = Vec::new();
    let mut markers = Vec::new();
    let Some(run) = &r.run else {
        return (bands, markers);
    };
    for f in &run.faults {
        if let Some(a) = &f.analysis {
            for (p, phase) in [
                (&a.pre, Phase::Pre),
                (&a.during, Phase::During),
                (&a.recovery, Phase::Recovery),
            ] {
                let dup = bands
                    .iter()
                    .any(|b| b.phase == phase && b.from_s == p.from_s && b.to_s == p.to_s);
                if !dup && p.to_s > p.from_s {
                    bands.push(Band {
                        from_s: p.from_s,
                        to_s: p.to_s,
                        phase,
                    });
                }
            }
        }
        if let Some(t) = f.effective_s {
            markers.push(Marker {
                t_s: t,
                label: format!(" {} injected", f.id),
                clear: false,
            });
        }
        if let Some(t) = f.cleared_s {
            markers.push(Marker {
                t_s: t,
                label: format!(" {} cleared", f.id),
                clear: true,
            });
        }
    }
    (bands, markers)
}

/// Error rate, throughput and TTFT p99 per window, phases shaded for experiments.
pub fn over_time(r: &Results) -> String {
    let (bands, markers) = shading(r);
    let w = &r.windows;
    let err: Vec<(f64, Option<f64>)> = w.iter().map(|s| (s.start_s, s.error_rate)).collect();
    let tput: Vec<(f64, Option<f64>)> = w
        .iter()
        .map(|s| (s.start_s, Some(s.output_tok_s)))
        .collect();
    let ttft: Vec<(f64, Option<f64>)> = w.iter().map(|s| (s.start_s, s.ttft_p99_ms)).collect();
    let mut body = String::new();
    if r.run.is_some() {
        body.push_str("<p class=\"note\">One point per window of intended start time. Shaded: <b>pre</b> (baseline), <b>during</b> (fault in effect), <b>recovery</b>; red lines mark a fault taking effect, green lines its clearing.</p>");
    } else {
        body.push_str("<p class=\"note\">One point per window of intended start time.</p>");
    }
    body.push_str(&figure(
        "chart-error-rate",
        charts::timeline(
            "Error rate",
            "error rate",
            &err,
            YFormat::Percent,
            &bands,
            &markers,
        ),
    ));
    body.push_str(&figure(
        "chart-throughput",
        charts::timeline(
            "Throughput",
            "output tok/s",
            &tput,
            YFormat::Number,
            &bands,
            &markers,
        ),
    ));
    body.push_str(&figure(
        "chart-ttft",
        charts::timeline(
            "TTFT p99",
            "TTFT p99 (ms)",
            &ttft,
            YFormat::Number,
            &bands,
            &markers,
        ),
    ));
    section("over-time", "Over time", &body)
}

/// The hockey stick and the per-step percentiles of a ramp.
pub fn ramp(ramp: &Ramp) -> String {
    let x = |s: &crate::analysis::summary::Summary| s.achieved_rate;
    let points: Vec<StepPoint> = ramp
        .steps
        .iter()
        .filter_map(|st| st.summary.as_ref())
        .map(|s| StepPoint {
            x: x(s),
            p50: s.ttft_ms.p50,
            p99: s.ttft_ms.p99,
        })
        .collect();
    // The saturation index counts steps; map it onto the steps that have a summary.
    let sat = ramp.saturation.as_ref().and_then(|s| s.step).and_then(|i| {
        ramp.steps.get(i)?.summary.as_ref()?;
        Some(
            ramp.steps[..i]
                .iter()
                .filter(|s| s.summary.is_some())
                .count(),
        )
    });
    let recommended = ramp
        .recommended_rate
        .filter(|_| ramp.steps.iter().any(|s| s.rate.is_some()));
    let ttft: Vec<(f64, [Option<f64>; 3])> = ramp
        .steps
        .iter()
        .filter_map(|st| st.summary.as_ref())
        .map(|s| (x(s), [s.ttft_ms.p50, s.ttft_ms.p95, s.ttft_ms.p99]))
        .collect();
    let itl: Vec<(f64, [Option<f64>; 3])> = ramp
        .steps
        .iter()
        .filter_map(|st| st.summary.as_ref())
        .map(|s| (x(s), [s.itl_ms.p50, s.itl_ms.p95, s.itl_ms.p99]))
        .collect();
    let mut body = figure(
        "chart-hockey",
        charts::hockey(
            "Latency vs throughput",
            "achieved load (req/s)",
            &points,
            sat,
            recommended,
        ),
    );
    body.push_str("<div class=\"charts2\">");
    body.push_str(&figure(
        "chart-ttft-steps",
        charts::step_percentiles("TTFT per step", "achieved req/s", "ms", &ttft),
    ));
    body.push_str(&figure(
        "chart-itl-steps",
        charts::step_percentiles("ITL per step", "achieved req/s", "ms", &itl),
    ));
    body.push_str("</div>");
    section("ramp", "Capacity (ramp)", &body)
}

/// Saturation per server-side signal, and the table behind it.
pub fn bottleneck(b: &Bottleneck) -> String {
    let mut signals: Vec<_> = b.signals.iter().collect();
    // Ranked first, then the rest by saturation; signals without data last.
    let rank = |name: &str| {
        b.ranking
            .iter()
            .position(|r| r == name)
            .unwrap_or(usize::MAX)
    };
    signals.sort_by(|x, y| {
        rank(&x.name).cmp(&rank(&y.name)).then(
            y.saturation
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&x.saturation.unwrap_or(f64::NEG_INFINITY)),
        )
    });
    let bars: Vec<Bar> = signals
        .iter()
        .map(|s| Bar {
            name: s.name.clone(),
            value: s
                .saturation
                .filter(|_| s.status == "ok" || s.status.is_empty()),
            primary: b.primary.as_deref() == Some(s.name.as_str()),
        })
        .collect();
    let mut body = match &b.primary {
        Some(p) => format!(
            "<p class=\"note\">Primary bottleneck: <b>{}</b>.</p>",
            esc(p)
        ),
        None => "<p class=\"note\">No primary bottleneck identified.</p>".to_string(),
    };
    body.push_str(&figure(
        "chart-bottleneck",
        charts::bottleneck("Saturation per signal", &bars),
    ));
    body.push_str("<table id=\"bottleneck\"><thead><tr><th>signal</th><th>status</th><th class=\"num\">mean</th><th class=\"num\">p95 / max</th><th class=\"num\">saturation</th><th>query</th></tr></thead><tbody>");
    let f = |v: Option<f64>| {
        v.map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "no data".into())
    };
    for s in signals {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>",
            esc(&s.name),
            esc(&s.status),
            f(s.mean),
            f(s.p95.or(s.max)),
            f(s.saturation),
            esc(&s.query)
        ));
    }
    body.push_str("</tbody></table>\n");
    section("bottleneck-section", "Bottleneck", &body)
}
