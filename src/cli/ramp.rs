//! `faultline ramp`: rising load steps until the cluster saturates; the latency–throughput
//! curve, the saturation point (and which criterion said so), max throughput and the
//! recommended operating point.

use super::load::{Connected, TargetArgs, positive, stop_on_ctrl_c};
use crate::analysis::saturation::{Criteria, RampResult, Reason};
use crate::load::engine::Control;
use crate::load::schedule::ArrivalProcess;
use crate::load::workload::Workload;
use crate::report::fmt::ms;
use crate::runner::ramp::{self, RampEvent, RampPlan, StepLoad};
use anyhow::{Context, bail};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// What each request looks like and how arrivals are spaced; shared by `ramp`, `sla`, `bench`.
#[derive(Args, Debug, Clone)]
pub struct ShapeArgs {
    /// Workload mix ("chat=0.7,code=0.2,summarization=0.1") or fixed lengths ("fixed:128:32").
    #[arg(long, default_value = "chat=0.7,code=0.2,summarization=0.1")]
    pub workload: String,
    /// Arrival process: constant, poisson or gamma.
    #[arg(long, default_value = "poisson")]
    pub arrival: String,
    /// Gamma shape (with --arrival gamma).
    #[arg(long)]
    pub burstiness: Option<f64>,
    /// Seed for arrivals and request contents.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Window length for the time series.
    #[arg(long, default_value = "1s", value_parser = crate::duration::parse_positive)]
    pub window: Duration,
}

impl ShapeArgs {
    pub(crate) fn parts(&self) -> anyhow::Result<(Workload, ArrivalProcess, u64)> {
        Ok((
            Workload::parse_mix(&self.workload)?,
            ArrivalProcess::parse(&self.arrival, self.burstiness)?,
            self.seed.unwrap_or_else(rand::random),
        ))
    }
}

#[derive(Args, Debug)]
pub struct RampArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// First step's rate (req/s).
    #[arg(long, default_value_t = 5.0)]
    pub from: f64,
    /// Last step's rate (req/s), inclusive.
    #[arg(long, default_value_t = 60.0)]
    pub to: f64,
    /// Rate increase per step (req/s).
    #[arg(long, default_value_t = 5.0)]
    pub step: f64,
    /// Explicit rates instead of --from/--to/--step, e.g. "2,4,6,7,7.5,8".
    #[arg(long, conflicts_with = "concurrency_steps")]
    pub rates: Option<String>,
    /// Closed-loop user counts instead of rates, e.g. "1,2,4,8,16".
    #[arg(long)]
    pub concurrency_steps: Option<String>,
    /// Length of each step.
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse_positive)]
    pub step_duration: Duration,
    /// Saturated when TTFT p99 exceeds k × the baseline (first step's p99).
    #[arg(long, default_value_t = 2.0)]
    pub k: f64,
    /// Use this baseline TTFT p99 instead of the first step's, e.g. 120ms.
    #[arg(long, value_parser = crate::duration::parse_positive)]
    pub baseline_ttft_p99: Option<Duration>,
    /// Saturated when the error rate exceeds this.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Saturated when output tok/s grew by less than this fraction while the load grew.
    #[arg(long, default_value_t = 0.05)]
    pub plateau: f64,
    /// Switch off the TTFT criterion.
    #[arg(long)]
    pub no_ttft: bool,
    /// Switch off the error-rate criterion.
    #[arg(long)]
    pub no_error_rate: bool,
    /// Switch off the throughput-plateau criterion.
    #[arg(long)]
    pub no_plateau: bool,
    /// Recommended operating point as a fraction of the saturation rate.
    #[arg(long, default_value_t = 0.7)]
    pub fraction: f64,
    /// Run every step, even past saturation.
    #[arg(long)]
    pub no_early_stop: bool,
    /// Results folder (default results/ramp-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print ramp.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_list<T: std::str::FromStr>(flag: &str, text: &str) -> anyhow::Result<Vec<T>> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<T>()
                .ok()
                .with_context(|| format!("invalid value '{v}' in --{flag}"))
        })
        .collect()
}

impl RampArgs {
    fn loads(&self) -> anyhow::Result<Vec<StepLoad>> {
        if let Some(c) = &self.concurrency_steps {
            return Ok(parse_list::<u64>("concurrency-steps", c)?
                .into_iter()
                .map(StepLoad::Users)
                .collect());
        }
        if let Some(r) = &self.rates {
            return Ok(parse_list::<f64>("rates", r)?
                .into_iter()
                .map(StepLoad::Rate)
                .collect());
        }
        Ok(ramp::rate_steps(
            positive("from", self.from)?,
            positive("to", self.to)?,
            positive("step", self.step)?,
        )?)
    }

    fn criteria(&self) -> Criteria {
        Criteria {
            ttft_k: (!self.no_ttft).then_some(self.k),
            baseline_ttft_p99_ms: self.baseline_ttft_p99.map(|d| d.as_secs_f64() * 1000.0),
            max_error_rate: (!self.no_error_rate).then_some(self.max_error_rate),
            plateau: (!self.no_plateau).then_some(self.plateau),
        }
    }
}

pub fn run(args: RampArgs) -> anyhow::Result<ExitCode> {
    let loads = args.loads()?;
    let criteria = args.criteria();
    criteria.check()?;
    if !(args.fraction > 0.0 && args.fraction <= 1.0) {
        bail!(
            "invalid value '{}' for --fraction: must be in (0, 1]",
            args.fraction
        );
    }
    let (workload, arrival, seed) = args.shape.parts()?;
    args.target.check()?;
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| super::load::default_out("ramp"));
    let plan = RampPlan {
        overload: args.target.overload(),
        loads,
        step_duration: args.step_duration,
        arrival,
        workload,
        seed,
        window_s: args.shape.window.as_secs_f64(),
        criteria,
        fraction: args.fraction,
        early_stop: !args.no_early_stop,
        out_dir: out_dir.clone(),
    };
    let tty = std::io::stderr().is_terminal() && !args.json;
    super::runtime()?.block_on(async move {
        let target = args.target.connect().await?;
        let result = run_ramp(plan, &target, tty, "").await;
        target.close().await;
        let result = result?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            print!("{}", ramp_table(&result));
            println!("  results in {}", out_dir.display());
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs a ramp with a progress line on stderr (`prefix` names the phase in `bench`).
pub(crate) async fn run_ramp(
    plan: RampPlan,
    target: &Connected,
    tty: bool,
    prefix: &str,
) -> anyhow::Result<RampResult> {
    let control = Arc::new(Control::default());
    stop_on_ctrl_c(&control);
    let step_s = plan.step_duration.as_secs_f64();
    let mut current = String::new();
    let result = ramp::run(plan, &target.cfg, control, |ev| match ev {
        RampEvent::StepStarted { index, of, load } => {
            current = format!("{prefix}step {}/{of} at {load}", index + 1);
        }
        RampEvent::Tick {
            now_s, progress, ..
        } if tty => {
            eprint!(
                "\r  {current}: {now_s:>5.1}/{step_s:.0} s  sent {}  in flight {}  errors {}   ",
                progress.sent, progress.in_flight, progress.errors
            );
        }
        RampEvent::StepDone {
            step, saturated, ..
        } => {
            if tty {
                eprint!("\r{:100}\r", "");
            }
            eprintln!(
                "  {current}: TTFT p99 {}, {:.0} tok/s, errors {:.2}%{}",
                ms(step.summary.ttft_ms.p99),
                step.summary.output_tok_s,
                step.summary.error_rate.unwrap_or(0.0) * 100.0,
                if step.summary.client_limited {
                    format!(
                        "  ← client-limited (dispatch lag p99 {}): not a cluster measurement, left out of the saturation search",
                        ms(step.summary.dispatch_lag_ms.p99)
                    )
                } else {
                    saturated
                        .map(|r| format!("  ← saturated ({})", reason_name(r)))
                        .unwrap_or_default()
                }
            );
        }
        _ => {}
    })
    .await?;
    Ok(result)
}

pub(crate) fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::TtftP99 => "TTFT p99",
        Reason::ErrorRate => "error rate",
        Reason::ThroughputPlateau => "throughput plateau",
    }
}

/// The latency–throughput curve as a table, with the saturated and recommended steps marked.
pub(crate) fn ramp_table(r: &RampResult) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>9} {:>9} {:>10} {:>10} {:>9} {:>8} {:>9}  ",
        "load", "achieved", "TTFT p50", "TTFT p99", "ITL p99", "errors", "tok/s"
    );
    // The recommended marker goes on the highest step at or below the recommended rate.
    let rec_step = r
        .steps
        .iter()
        .rposition(|st| st.effective_rate() <= r.recommended_rate + 1e-9);
    for (i, st) in r.steps.iter().enumerate() {
        let load = match (st.rate, st.concurrency) {
            (Some(rate), _) => format!("{rate}/s"),
            (None, Some(c)) => format!("{c} users"),
            _ => "-".into(),
        };
        let mut mark = String::new();
        if r.saturation.as_ref().is_some_and(|sat| sat.step == i) {
            mark.push_str("← saturation");
        }
        if rec_step == Some(i) {
            mark.push_str("← recommended ≤ here");
        }
        if st.summary.client_limited {
            mark.push_str("← client-limited");
        }
        let sm = &st.summary;
        let _ = writeln!(
            s,
            "{load:>9} {:>9.2} {:>10} {:>10} {:>9} {:>7.2}% {:>9.0}  {mark}",
            sm.achieved_rate,
            ms(sm.ttft_ms.p50),
            ms(sm.ttft_ms.p99),
            ms(sm.itl_ms.p99),
            sm.error_rate.unwrap_or(0.0) * 100.0,
            sm.output_tok_s,
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  baseline TTFT p99: {}", ms(r.baseline_ttft_p99_ms));
    match &r.saturation {
        Some(sat) => {
            let _ = writeln!(
                s,
                "  saturation: {:.2} req/s (step {}), {}: {}",
                sat.rate,
                sat.step + 1,
                reason_name(sat.reason),
                sat.detail
            );
        }
        None => {
            let _ = writeln!(s, "  saturation: not reached up to the highest tested load");
        }
    }
    if let Some(c) = &r.client_limited_from {
        let _ = writeln!(
            s,
            "  client-limited from step {} ({:.2} req/s): the load generator could not keep to the schedule there (dispatch lag p99 above --max-dispatch-lag); those steps measure the client and are left out of the saturation search",
            c.step + 1,
            c.rate
        );
    }
    let _ = writeln!(
        s,
        "  max throughput: {:.0} output tok/s at {:.2} req/s",
        r.max_throughput.output_tok_s, r.max_throughput.rate
    );
    let _ = writeln!(
        s,
        "  recommended operating point: {:.2} req/s ({:.0}% of {}){}",
        r.recommended_rate,
        r.fraction * 100.0,
        if r.recommended_is_extrapolated {
            "the highest tested rate"
        } else {
            "saturation"
        },
        if r.recommended_is_extrapolated {
            " — the cluster never saturated; its limit is higher, this is merely safe"
        } else {
            ""
        }
    );
    if r.stopped_early && r.client_limited_from.is_some() && r.saturation.is_none() {
        let _ = writeln!(s, "  stopped early (at the first client-limited step)");
    } else if r.stopped_early {
        let _ = writeln!(s, "  stopped early (after one step past saturation)");
    }
    s
}
