//! `faultline bottleneck`: which resource ran out first over a window, from a Prometheus that
//! scraped the cluster. Prints ranked bars (or the JSON report) and can write `bottleneck.json`.

use crate::analysis::bottleneck::{self, BottleneckReport, Signal, Status, Window};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BottleneckArgs {
    /// Base URL of the Prometheus that scrapes the cluster (e.g. http://127.0.0.1:9090, or
    /// https://… with --ca-cert / --client-cert / --insecure as it needs).
    #[arg(
        long,
        env = "FAULTLINE_PROMETHEUS",
        required_unless_present = "print_default_signals"
    )]
    pub prometheus: Option<String>,
    /// Start of the window: RFC 3339 (2025-01-31T12:00:00Z) or relative to now (-5m).
    #[arg(long, default_value = "-5m", allow_hyphen_values = true)]
    pub from: String,
    /// End of the window: RFC 3339, relative (-30s) or `now`.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub to: String,
    /// Signals file (YAML or JSON, `signals: [{name, query, saturated_at}]`) instead of the
    /// built-in vLLM + DCGM signals.
    #[arg(long)]
    pub signals: Option<PathBuf>,
    /// Print the report as JSON instead of bars.
    #[arg(long)]
    pub json: bool,
    /// Write bottleneck.json into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
    /// Print the built-in signals as a signals file and exit (needs no Prometheus; other
    /// options are ignored).
    #[arg(long)]
    pub print_default_signals: bool,
}

pub fn run(args: BottleneckArgs) -> anyhow::Result<ExitCode> {
    if args.print_default_signals {
        let file = serde_json::json!({ "signals": bottleneck::default_signals() });
        println!("{}", serde_json::to_string_pretty(&file)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(prometheus) = args.prometheus.as_deref() else {
        bail!("--prometheus (or FAULTLINE_PROMETHEUS) is required");
    };
    let now = Utc::now();
    let window = Window {
        start: parse_time(&args.from, now).context("invalid --from")?,
        end: parse_time(&args.to, now).context("invalid --to")?,
    };
    let signals: Vec<Signal> = match &args.signals {
        Some(path) => bottleneck::load_signals(path)?,
        None => bottleneck::default_signals(),
    };
    let tls = args.tls.checked()?;
    let rt = super::runtime()?;
    let report = rt.block_on(bottleneck::analyze(prometheus, &tls, window, &signals))?;
    if report.signals.iter().all(|s| s.status == Status::Error) {
        bail!(
            "every query to {} failed; the first: {}",
            report.prometheus,
            report.signals[0].detail.as_deref().unwrap_or("?")
        );
    }
    if let Some(dir) = &args.out {
        let path = report.write(dir)?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 3339, `now`, or `-<humantime duration>` before `now`.
fn parse_time(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let d = crate::duration::parse(ago)
            .with_context(|| format!("'{text}' is not a duration before now (like -5m)"))?;
        return Ok(now - chrono::Duration::from_std(d)?);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("'{text}' is neither RFC 3339, 'now' nor '-<duration>'"))
}

const BAR: usize = 30;

/// Ranked bars: signals with data by saturation, then the missing and failed ones.
fn render(r: &BottleneckReport) -> String {
    let mut out = String::new();
    let secs = (r.window.end - r.window.start).num_seconds();
    let _ = writeln!(
        out,
        "bottleneck analysis {} → {} ({secs} s, step {} s, p{:.0} of each signal) from {}",
        r.window
            .start
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        r.window
            .end
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        r.step_s,
        r.quantile * 100.0,
        r.prometheus
    );
    let width = r.signals.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let ranked = r.ranking.iter().filter_map(|n| r.signal(n));
    let rest = r.signals.iter().filter(|s| s.status != Status::Ok);
    for s in ranked.chain(rest) {
        match (s.status, s.saturation, s.p95) {
            (Status::Ok, Some(sat), Some(p95)) => {
                let filled = (sat * BAR as f64).round() as usize;
                let mark = if r.primary.as_deref() == Some(s.name.as_str()) {
                    "  ← primary"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "  {:width$}  {}{} {:>4.0}%  p95 {} / {}{mark}",
                    s.name,
                    "█".repeat(filled),
                    "·".repeat(BAR - filled),
                    sat * 100.0,
                    num(p95),
                    num(s.saturated_at),
                );
            }
            (status, ..) => {
                let what = if status == Status::Error {
                    "error"
                } else {
                    "missing"
                };
                let _ = writeln!(
                    out,
                    "  {:width$}  {what}: {}",
                    s.name,
                    s.detail.as_deref().unwrap_or("")
                );
            }
        }
    }
    let _ = match &r.primary {
        Some(p) => writeln!(out, "primary bottleneck: {p}"),
        None => writeln!(
            out,
            "primary bottleneck: none (no signal had non-zero data)"
        ),
    };
    out
}

fn num(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{:.2}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::bottleneck::{Signal, summarize};
    use std::time::Duration;

    #[test]
    fn times_parse_as_rfc3339_now_or_before_now() {
        let now = DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(
            parse_time("-5m", now).unwrap(),
            now - chrono::Duration::minutes(5)
        );
        assert_eq!(
            parse_time("2025-01-31T11:00:00+01:00", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        let e = format!("{:#}", parse_time("yesterday", now).unwrap_err());
        assert!(e.contains("'yesterday'"), "{e}");
    }

    #[test]
    fn bars_show_ranked_signals_then_missing_and_the_primary() {
        let sig = |name: &str, at: f64| Signal {
            name: name.into(),
            query: "q".into(),
            saturated_at: at,
            description: None,
        };
        let series = |v: f64| {
            Ok(vec![crate::analysis::prometheus::Series {
                labels: Default::default(),
                points: vec![(1.0, v), (2.0, v)],
            }])
        };
        let results = vec![
            summarize(&sig("nvlink", 450e9), Ok(vec![])),
            summarize(&sig("gpu", 1.0), series(0.5)),
            summarize(&sig("kv", 1.0), series(1.0)),
        ];
        let start = DateTime::from_timestamp(0, 0).unwrap();
        let window = Window {
            start,
            end: start + chrono::Duration::seconds(30),
        };
        let r = bottleneck::report("http://p".into(), window, Duration::from_secs(1), results);
        let text = render(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].contains("kv") && lines[1].contains("100%") && lines[1].contains("primary")
        );
        assert!(
            lines[2].contains("gpu") && lines[2].contains(" 50%"),
            "{text}"
        );
        assert!(
            lines[3].contains("nvlink") && lines[3].contains("missing"),
            "{text}"
        );
        assert_eq!(lines[4], "primary bottleneck: kv");
    }
}
