//! Turns the results into chart inputs and wraps each SVG in a `<figure>` with an id (the
//! browser test finds them by it). A chart that cannot be drawn says why instead of vanishing.

use super::{esc, section};
use crate::report::charts::{
    self, Band, Bar, ChartError, Marker, Phase, Series, StepPoint, YFormat,
};
use crate::report::inputs::{Bottleneck, Ramp};
use crate::report::load_dir::Results;
use std::fmt::Write as _;

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

/// Windows the throughput line averages over (centred: a change shows where it happened).
pub const SMOOTH_WINDOWS: usize = 5;

/// Phase bands and fault lines of an experiment (deduplicated: faults may share a `pre`).
///
/// A fault's recovery band ends where the next fault's first band begins: with per-fault
/// baselines the next `pre` starts inside the previous recovery, and two translucent bands over
/// each other read as a third colour.
fn shading(r: &Results) -> (Vec<Band>, Vec<Marker>) {
    let mut bands: Vec<Band> = Vec::new();
    let mut markers = Vec::new();
    let Some(run) = &r.run else {
        return (bands, markers);
    };
    let starts: Vec<Option<f64>> = run
        .faults
        .iter()
        .map(|f| {
            f.analysis
                .as_ref()
                .map(|a| a.pre.from_s.min(a.during.from_s))
        })
        .collect();
    for (i, f) in run.faults.iter().enumerate() {
        if let Some(a) = &f.analysis {
            let next = starts[i + 1..]
                .iter()
                .flatten()
                .copied()
                .find(|&s| s > a.during.from_s);
            for (p, phase) in [
                (&a.pre, Phase::Pre),
                (&a.during, Phase::During),
                (&a.recovery, Phase::Recovery),
            ] {
                let to = match (phase, next) {
                    (Phase::Recovery, Some(n)) => p.to_s.min(n),
                    _ => p.to_s,
                };
                let dup = bands
                    .iter()
                    .any(|b| b.phase == phase && b.from_s == p.from_s && b.to_s == to);
                if !dup && to > p.from_s {
                    bands.push(Band {
                        from_s: p.from_s,
                        to_s: to,
                        phase,
                    });
                }
            }
        }
        if let Some(t) = f.effective_s {
            markers.push(Marker {
                t_s: t,
                label: f.id.clone(),
                clear: false,
            });
        }
        if let Some(t) = f.cleared_s {
            markers.push(Marker {
                t_s: t,
                label: String::new(),
                clear: true,
            });
        }
    }
    (bands, markers)
}

/// The mean of each point and its neighbours, `n` windows centred on it (fewer at the ends);
/// windows without a value are left out of the mean, and a point with no value stays a gap.
pub fn rolling_mean(points: &[(f64, Option<f64>)], n: usize) -> Vec<(f64, Option<f64>)> {
    let half = n / 2;
    (0..points.len())
        .map(|i| {
            let (t, v) = points[i];
            let near = &points[i.saturating_sub(half)..(i + half + 1).min(points.len())];
            let vals: Vec<f64> = near.iter().filter_map(|p| p.1).collect();
            let mean =
                v.and((!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64));
            (t, mean)
        })
        .collect()
}

/// Error rate, throughput and TTFT p99 per window, phases shaded for experiments.
pub fn over_time(r: &Results) -> String {
    let (bands, markers) = shading(r);
    let w = &r.windows;
    let len_s = match w.as_slice() {
        [a, b, ..] if b.start_s > a.start_s => b.start_s - a.start_s,
        _ => 1.0,
    };
    let tput: Vec<(f64, Option<f64>)> = w
        .iter()
        .map(|s| (s.start_s, Some(s.output_tok_s)))
        .collect();
    let smooth = rolling_mean(&tput, SMOOTH_WINDOWS);
    let ttft: Vec<(f64, Option<f64>)> = w.iter().map(|s| (s.start_s, s.ttft_p99_ms)).collect();
    // Errors where users saw them: by completion time when requests.jsonl is there.
    let by_completion = !r.completed.is_empty();
    // Requests that end after the last window (cut off when the load stopped) fall outside
    // the run's time axis; clipping them keeps the three charts' axes aligned.
    let last = w.last().map_or(f64::INFINITY, |l| l.start_s);
    let err: Vec<(f64, Option<f64>)> = if by_completion {
        r.completed
            .iter()
            .filter(|c| c.start_s <= last)
            .map(|c| (c.start_s, c.error_rate()))
            .collect()
    } else {
        w.iter().map(|s| (s.start_s, s.error_rate)).collect()
    };
    let window = format!("{} s", crate::report::inputs::num(len_s));
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=\"note\">One point per {window} window. {errors} Throughput: the mean of \
         {SMOOTH_WINDOWS} windows around each point, the raw per-window value faint behind it; \
         throughput and TTFT p99 are counted by intended start time.",
        errors = if by_completion {
            "<b>Error rate by completion time</b>: each request counts in the window it ended in, \
             when its user saw the error."
        } else {
            "Error rate by intended start time (no <code>requests.jsonl</code> to place \
             requests by completion)."
        },
    );
    if r.run.is_some() {
        body.push_str(
            " Shaded by intended start time, as the phase tables count: <b>pre</b> (baseline), \
             <b>during</b> (fault in effect), <b>recovery</b>; a request cut off by a fault \
             ends (and shows as an error) up to its timeout after it started, so errors can \
             run past the shading. Red lines: a fault taking effect, numbered as in the key \
             above the chart; green lines: its clearing.",
        );
    }
    body.push_str("</p>");
    let err_title = if by_completion {
        "Error rate (by completion time)"
    } else {
        "Error rate (by intended start)"
    };
    body.push_str(&figure(
        "chart-error-rate",
        charts::timeline(
            err_title,
            "error rate",
            &[Series {
                points: &err,
                name: "error rate",
                faint: false,
            }],
            YFormat::Percent,
            &bands,
            &markers,
        ),
    ));
    let smooth_name = format!("output tok/s, {SMOOTH_WINDOWS}-window mean");
    let raw_name = format!("per {window}");
    body.push_str(&figure(
        "chart-throughput",
        charts::timeline(
            "Throughput",
            "output tok/s",
            &[
                Series {
                    points: &tput,
                    name: &raw_name,
                    faint: true,
                },
                Series {
                    points: &smooth,
                    name: &smooth_name,
                    faint: false,
                },
            ],
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
            &[Series {
                points: &ttft,
                name: "TTFT p99 per window",
                faint: false,
            }],
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
        .map(|st| &st.summary)
        .map(|s| StepPoint {
            x: x(s),
            p50: s.ttft_ms.p50,
            p99: s.ttft_ms.p99,
        })
        .collect();
    let sat = ramp
        .saturation
        .as_ref()
        .map(|s| s.step)
        .filter(|i| *i < ramp.steps.len());
    let recommended =
        Some(ramp.recommended_rate).filter(|_| ramp.steps.iter().any(|s| s.rate.is_some()));
    let ttft: Vec<(f64, [Option<f64>; 3])> = ramp
        .steps
        .iter()
        .map(|st| &st.summary)
        .map(|s| (x(s), [s.ttft_ms.p50, s.ttft_ms.p95, s.ttft_ms.p99]))
        .collect();
    let itl: Vec<(f64, [Option<f64>; 3])> = ramp
        .steps
        .iter()
        .map(|st| &st.summary)
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
                .filter(|_| s.status == crate::analysis::bottleneck::Status::Ok),
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
            esc(s.status.as_str()),
            f(s.mean),
            f(s.p95.or(s.max)),
            f(s.saturation),
            esc(&s.query)
        ));
    }
    body.push_str("</tbody></table>\n");
    section("bottleneck-section", "Bottleneck", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_mean_is_centred_and_keeps_gaps() {
        let pts = [
            (0.0, Some(10.0)),
            (1.0, Some(20.0)),
            (2.0, Some(30.0)),
            (3.0, None),
            (4.0, Some(60.0)),
        ];
        let m = rolling_mean(&pts, 3);
        assert_eq!(
            m[0],
            (0.0, Some(15.0)),
            "the first point: itself and one neighbour"
        );
        assert_eq!(m[1], (1.0, Some(20.0)));
        assert_eq!(m[2], (2.0, Some(25.0)), "the gap is left out of the mean");
        assert_eq!(m[3], (3.0, None), "a gap stays a gap");
        assert_eq!(m[4], (4.0, Some(60.0)));
        // A -9% step shows in the mean where it happened (centred: no lag).
        let step: Vec<(f64, Option<f64>)> = (0..20)
            .map(|i| (i as f64, Some(if i < 10 { 100.0 } else { 91.0 })))
            .collect();
        let m = rolling_mean(&step, 5);
        assert_eq!(m[7].1, Some(100.0));
        assert_eq!(m[12].1, Some(91.0));
        assert!(m[9].1.unwrap() < 100.0 && m[10].1.unwrap() > 91.0);
    }
}
