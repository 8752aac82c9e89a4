//! `report.html`: one self-contained page an engineer can attach to a launch review or a game
//! day write-up: the verdict first, then the numbers and the charts that back it.
//!
//! Why self-contained: the report is archived by CI and opened months later, offline, maybe in
//! a locked-down network. So the CSS is inlined, the charts are inline SVG, and there are no
//! scripts, fonts or images from anywhere; every piece of text from the results is escaped.

mod capacity;
mod figures;
mod tables;

use super::inputs::num;
use super::load_dir::{Kind, Results};
use crate::runner::result::Status;
use std::fmt::Write;

const STYLE: &str = include_str!("html/style.css");

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) if v >= 10.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.2} ms"),
        None => "–".into(),
    }
}

pub(crate) fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// The verdict badge: text and CSS class.
fn verdict(r: &Results) -> (String, &'static str) {
    match r.kind {
        Kind::Experiment => match r.run.as_ref().map(|x| &x.status) {
            Some(Status::Pass) => ("PASS".into(), "pass"),
            Some(Status::Failed) => ("FAILED".into(), "fail"),
            Some(Status::Invalid) => ("INVALID".into(), "warn"),
            _ => ("ABORTED".into(), "warn"),
        },
        Kind::Sla | Kind::Bench if r.sla.is_some() => {
            if r.sla.as_ref().is_some_and(|s| s.passed) {
                ("SLA PASS".into(), "pass")
            } else {
                ("SLA FAIL".into(), "fail")
            }
        }
        Kind::Ramp | Kind::Bench => match r.ramp.as_ref().and_then(|x| x.saturation.as_ref()) {
            Some(s) => (format!("SATURATED AT {} REQ/S", num(s.rate)), "info"),
            None if r.ramp.is_some() => ("NO SATURATION FOUND".into(), "warn"),
            None => ("DONE".into(), "info"),
        },
        Kind::Sla | Kind::Load => match r.summary.as_ref().and_then(|s| s.error_rate) {
            Some(e) if e > 0.0 => (format!("{:.2}% ERRORS", e * 100.0), "warn"),
            Some(_) => ("NO ERRORS".into(), "pass"),
            None => ("NO REQUESTS".into(), "warn"),
        },
    }
}

fn header(r: &Results) -> String {
    let (text, class) = verdict(r);
    let mut meta = Vec::new();
    if let Some(run) = &r.run {
        meta.push(format!("run <code>{}</code>", esc(&run.run_id)));
        meta.push(format!(
            "started {}",
            esc(&super::fmt::timestamp(&run.started_at))
        ));
    } else if let Some(started) = r
        .run_info
        .as_ref()
        .and_then(|i| i.get("started_at"))
        .and_then(|v| v.as_str())
    {
        meta.push(format!("started {}", esc(&super::fmt::timestamp(started))));
    }
    if let Some(b) = &r.bench {
        meta.push(format!("profile <code>{}</code>", esc(&b.profile)));
    }
    meta.push(format!(
        "results <code>{}</code>",
        esc(&r.dir.display().to_string())
    ));
    let reason = r
        .run
        .as_ref()
        .and_then(|x| x.reason.as_ref())
        .map(|s| format!("<div class=\"reason\">{}</div>", esc(s)))
        .unwrap_or_default();
    format!(
        "<header><div class=\"kind\">faultline {kind} report</div>\
         <h1><span id=\"title\">{title}</span><span id=\"verdict\" class=\"verdict {class}\">{text}</span></h1>\
         <div class=\"meta\">{meta}</div>{reason}</header>\n",
        kind = esc(r.kind.name()),
        title = esc(&r.title()),
        text = esc(&text),
        meta = meta.join(" · "),
    )
}

/// A bench's headline: what a capacity review asks first — where it saturates, what rate to
/// run at, whether the SLA holds and what a token costs. (The single-user baseline is in the
/// load summary further down; as a headline it answered a question nobody asked.)
fn bench_cards(r: &Results) -> Vec<(String, String)> {
    let mut cards: Vec<(String, String)> = Vec::new();
    let ramp = r.ramp.as_ref();
    let saturation = match ramp.and_then(|x| x.saturation.as_ref()) {
        Some(s) => format!("{} req/s", num(s.rate)),
        None if ramp.is_some() => "not reached".into(),
        None => "no ramp".into(),
    };
    cards.push(("saturation point".into(), saturation));
    let recommended = match ramp.map(|x| x.recommended_rate) {
        Some(v) if ramp.is_some_and(|x| x.recommended_is_extrapolated) => {
            format!("{} req/s (extrapolated)", num(v))
        }
        Some(v) => format!("{} req/s", num(v)),
        None => "–".into(),
    };
    cards.push(("recommended rate".into(), recommended));
    let sla = match &r.sla {
        Some(s) => {
            let at = format!(" at {} req/s", num(s.rate));
            if s.passed {
                format!("PASS{at}")
            } else {
                format!("FAIL{at}")
            }
        }
        None => "not checked".into(),
    };
    cards.push(("SLA".into(), sla));
    // The cheapest configuration with a number.
    let cheapest = r.cost.as_ref().and_then(|c| {
        c.rows
            .iter()
            .map(|row| (row, row.cost_per_million_output_tokens))
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1))
    });
    match cheapest {
        Some((row, v)) if r.cost.as_ref().is_some_and(|c| c.rows.len() > 1) => cards.push((
            format!("cost ({})", row.name),
            format!("${v:.2} / 1M output tokens"),
        )),
        Some((_, v)) => cards.push(("cost".into(), format!("${v:.2} / 1M output tokens"))),
        None => cards.push(("cost".into(), "–".into())),
    }
    // A ramp that measured no tokens has no maximum worth a card.
    if let Some(t) = ramp
        .map(|x| x.max_throughput.output_tok_s)
        .filter(|t| *t > 0.0)
    {
        cards.push(("max output tok/s".into(), format!("{t:.0}")));
    }
    cards
}

fn cards(r: &Results) -> String {
    let cards = if r.kind == Kind::Bench {
        bench_cards(r)
    } else {
        other_cards(r)
    };
    if cards.is_empty() {
        return String::new();
    }
    let mut out = String::from("<div class=\"cards\" id=\"cards\">");
    for (label, value) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>",
            esc(&label),
            esc(&value)
        );
    }
    out.push_str("</div>\n");
    out
}

fn other_cards(r: &Results) -> Vec<(String, String)> {
    let mut cards: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &r.summary {
        cards.push(("requests", s.requests.to_string()));
        cards.push(("achieved rate", format!("{:.1} req/s", s.achieved_rate)));
        cards.push(("error rate", pct(s.error_rate)));
        cards.push(("TTFT p50", ms(s.ttft_ms.p50)));
        cards.push(("TTFT p99", ms(s.ttft_ms.p99)));
        cards.push(("ITL p99", ms(s.itl_ms.p99)));
        cards.push(("output tok/s", format!("{:.0}", s.output_tok_s)));
    }
    if let Some(ramp) = &r.ramp {
        if ramp.max_throughput.output_tok_s > 0.0 {
            cards.push((
                "max output tok/s",
                format!("{:.0}", ramp.max_throughput.output_tok_s),
            ));
        }
        let ext = if ramp.recommended_is_extrapolated {
            " (extrapolated)"
        } else {
            ""
        };
        cards.push((
            "recommended rate",
            format!("{} req/s{ext}", num(ramp.recommended_rate)),
        ));
    }
    cards.into_iter().map(|(l, v)| (l.to_string(), v)).collect()
}

/// A `<section>` with a heading.
pub(crate) fn section(id: &str, title: &str, body: &str) -> String {
    format!(
        "<section id=\"{}\"><h2>{}</h2>\n{body}</section>\n",
        esc(id),
        esc(title)
    )
}

/// Renders the whole page.
pub fn render(r: &Results) -> String {
    let mut body = String::new();
    body.push_str(&cards(r));
    match r.kind {
        Kind::Experiment => {
            if let Some(run) = &r.run {
                body.push_str(&tables::experiment(run));
                body.push_str(&figures::over_time(r));
                body.push_str(&tables::fault_details(run));
            }
        }
        _ => {
            if let Some(b) = &r.bench {
                body.push_str(&capacity::bench(b));
            }
            if let Some(sla) = &r.sla {
                body.push_str(&capacity::sla(sla));
            }
            if let Some(ramp) = &r.ramp {
                body.push_str(&figures::ramp(ramp));
                body.push_str(&capacity::ramp_steps(ramp));
            }
            if r.kind == Kind::Load || !r.windows.is_empty() {
                body.push_str(&figures::over_time(r));
            }
        }
    }
    if let Some(b) = &r.bottleneck {
        body.push_str(&figures::bottleneck(b));
    }
    if let Some(c) = &r.cost {
        body.push_str(&capacity::cost(c));
    }
    if let Some(s) = &r.summary {
        body.push_str(&tables::load_summary(s, r.run_info.as_ref()));
    }
    if let Some(run) = &r.run {
        body.push_str(&tables::timeline(run));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — faultline report</title><style>{STYLE}</style></head>\n<body>\n{header}<main>\n{body}</main>\
         <footer>faultline {version} · generated from the results folder by <code>faultline report</code></footer>\n</body></html>\n",
        title = esc(&r.title()),
        header = header(r),
        version = env!("CARGO_PKG_VERSION"),
    )
}

#[cfg(test)]
mod tests;
