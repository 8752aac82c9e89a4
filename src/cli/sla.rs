//! `faultline sla`: hold a rate, check the SLA, exit 0 on pass and 1 on violation — so a CI
//! job or a pre-release gate can run it as is. `--find` bisects for the highest passing rate.

use super::load::{Connected, TargetArgs, stop_on_ctrl_c};
use super::ramp::ShapeArgs;
use crate::analysis::sla::{SlaLimits, SlaResult};
use crate::load::engine::Control;
use crate::runner::sla::{self, FindPlan, SlaPlan};
use anyhow::bail;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The limits; shared with `bench`.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// TTFT p99 limit.
    #[arg(long, default_value = "1s", value_parser = crate::duration::parse_positive)]
    pub ttft_p99: Duration,
    /// Inter-token latency p99 limit.
    #[arg(long, default_value = "100ms", value_parser = crate::duration::parse_positive)]
    pub itl_p99: Duration,
    /// Highest acceptable error rate (0.001 = 0.1%).
    #[arg(long, default_value_t = 0.001)]
    pub max_error_rate: f64,
    /// End-to-end latency p99 limit (not checked unless given).
    #[arg(long, value_parser = crate::duration::parse_positive)]
    pub e2e_p99: Option<Duration>,
    /// Lowest acceptable goodput: the share of requests that were ok with TTFT, their own mean
    /// ITL and e2e within the limits (not checked unless given).
    #[arg(long)]
    pub goodput_min: Option<f64>,
}

impl LimitArgs {
    pub(crate) fn limits(&self) -> SlaLimits {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        SlaLimits {
            ttft_p99_ms: ms(self.ttft_p99),
            itl_p99_ms: ms(self.itl_p99),
            max_error_rate: self.max_error_rate,
            e2e_p99_ms: self.e2e_p99.map(ms),
            goodput_min: self.goodput_min,
        }
    }
}

#[derive(Args, Debug)]
pub struct SlaArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Rate to hold (req/s). With --find, the default upper end of the search.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to hold it (with --find: each trial's length).
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse_positive)]
    pub duration: Duration,
    /// Search for the highest rate that meets the SLA (bisection of short trials).
    #[arg(long)]
    pub find: bool,
    /// Lowest rate of the search.
    #[arg(long, default_value_t = 1.0, requires = "find")]
    pub find_from: f64,
    /// Highest rate of the search (default --rate).
    #[arg(long, requires = "find")]
    pub find_to: Option<f64>,
    /// Stop searching when passing and failing rates are within this fraction.
    #[arg(long, default_value_t = 0.05, requires = "find")]
    pub precision: f64,
    /// Most trials the search runs.
    #[arg(long, default_value_t = 10, requires = "find")]
    pub max_trials: usize,
    /// Results folder (default results/sla-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print sla.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SlaArgs) -> anyhow::Result<ExitCode> {
    let limits = args.limits.limits();
    limits.check()?;
    let find = if args.find {
        let Some(to) = args.find_to.or(args.rate) else {
            bail!("--find needs --find-to (or --rate) as the upper end of the search");
        };
        // Checked here, before a target starts, by the search's own rules.
        crate::analysis::sla::Bisection::new(args.find_from, to, args.precision, args.max_trials)?;
        Some(FindPlan {
            from: args.find_from,
            to,
            precision: args.precision,
            max_trials: args.max_trials,
            trial_duration: args.duration,
        })
    } else {
        None
    };
    let rate = match (args.rate, &find) {
        (Some(r), _) => r,
        (None, Some(f)) => f.to,
        (None, None) => bail!("--rate is required (or --find with --find-to)"),
    };
    if !(rate.is_finite() && rate > 0.0) {
        bail!("invalid value '{rate}' for --rate: must be a positive number");
    }
    let (workload, arrival, seed) = args.shape.parts()?;
    args.target.check()?;
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| super::load::default_out("sla"));
    let plan = SlaPlan {
        overload: args.target.overload(),
        rate,
        duration: args.duration,
        arrival,
        workload,
        seed,
        window_s: args.shape.window.as_secs_f64(),
        limits,
        find,
        out_dir: out_dir.clone(),
    };
    let tty = std::io::stderr().is_terminal() && !args.json;
    super::runtime()?.block_on(async move {
        let target = args.target.connect().await?;
        let result = run_sla(plan, &target, tty, "").await;
        target.close().await;
        let result = result?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            print!("{}", sla_table(&result));
            println!("  results in {}", out_dir.display());
        }
        Ok(if result.passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// Runs the validation with a progress line on stderr (`prefix` names the phase in `bench`).
pub(crate) async fn run_sla(
    plan: SlaPlan,
    target: &Connected,
    tty: bool,
    prefix: &str,
) -> anyhow::Result<SlaResult> {
    let control = Arc::new(Control::default());
    stop_on_ctrl_c(&control);
    let result = sla::run(plan, &target.cfg, control, |t| {
        if tty {
            let what = match t.trial {
                Some(i) => format!("trial {} at {:.2} req/s", i + 1, t.rate),
                None => format!("{:.2} req/s", t.rate),
            };
            eprint!(
                "\r  {prefix}{what}: {:>6.1}/{:.0} s  sent {}  in flight {}  errors {}   ",
                t.now_s, t.total_s, t.progress.sent, t.progress.in_flight, t.progress.errors
            );
        }
    })
    .await;
    if tty {
        eprint!("\r{:100}\r", "");
    }
    Ok(result?)
}

fn fmt_value(metric: &str, v: Option<f64>) -> String {
    match v {
        None => "no data".into(),
        Some(v) if metric.ends_with("_ms") => format!("{v:.1} ms"),
        Some(v) => format!("{:.3}%", v * 100.0),
    }
}

/// PASS/FAIL per metric, the trials of a search, and the verdict.
pub(crate) fn sla_table(r: &SlaResult) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for t in &r.trials {
        let _ = writeln!(
            s,
            "  trial {:>8.2} req/s: {}{}",
            t.rate,
            if t.passed { "PASS" } else { "FAIL" },
            if t.failed_metrics.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.failed_metrics.join(", "))
            }
        );
    }
    let _ = writeln!(
        s,
        "SLA at {:.2} req/s for {:.0} s ({} requests):",
        r.rate, r.duration_s, r.summary.requests
    );
    let _ = writeln!(
        s,
        "  {:<12} {:>14} {:>14}  result",
        "metric", "limit", "actual"
    );
    for c in &r.checks {
        let limit = if c.metric == "goodput" {
            format!("≥ {}", fmt_value(&c.metric, Some(c.limit)))
        } else {
            format!("≤ {}", fmt_value(&c.metric, Some(c.limit)))
        };
        let _ = writeln!(
            s,
            "  {:<12} {:>14} {:>14}  {}",
            c.metric,
            limit,
            fmt_value(&c.metric, c.actual),
            if c.passed { "PASS" } else { "FAIL" }
        );
    }
    if let Some(end) = r.search_end {
        let _ = writeln!(
            s,
            "  highest rate meeting the SLA: {}",
            end.describe(r.max_rate_meeting_sla, r.lowest_failing_rate)
        );
    }
    let _ = writeln!(
        s,
        "  overall: {}",
        if r.passed {
            "PASS (all SLAs met)".to_string()
        } else {
            format!("FAIL ({})", r.failed_metrics.join(", "))
        }
    );
    s
}
