//! `faultline bench`: the whole benchmark in one command (see `runner::bench` for the phases),
//! with a progress line (phase, step, elapsed) and a closing summary of every phase.

use super::load::{TargetArgs, stop_on_ctrl_c};
use super::ramp::{ShapeArgs, ramp_table, reason_name};
use super::sla::{LimitArgs, sla_table};
use crate::analysis::saturation::Criteria;
use crate::load::engine::Control;
use crate::report::table::summary_table;
use crate::runner::bench::{self, BenchEvent, BenchPlan, Pricing, Profile};
use anyhow::bail;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Default GPU-hour price when benchmarking the embedded sim without --price (an H100's
/// on-demand price at the time of writing); the result says it was assumed.
const ASSUMED_PRICE: f64 = 2.49;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// quick (≈ 2–3 min on the embedded sim) or production (the article's ≈ 54 min plan).
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Saturation: TTFT p99 above k × the ramp's first step.
    #[arg(long, default_value_t = 2.0)]
    pub k: f64,
    /// Saturation: error rate above this.
    #[arg(long = "saturation-error-rate", default_value_t = 0.01)]
    pub saturation_error_rate: f64,
    /// SLA validation runs at this fraction of the saturation rate.
    #[arg(long, default_value_t = 0.7)]
    pub fraction: f64,
    /// GPUs in the cluster (for cost; the sim preset's count when benchmarking the sim).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Price per GPU-hour (for cost).
    #[arg(long)]
    pub price: Option<f64>,
    /// Prometheus base URL, for the bottleneck analysis. An https:// Prometheus is reached with
    /// the same TLS flags as the endpoint (--ca-cert takes a bundle: put both CAs in one file).
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Results folder (default results/bench-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let profile = Profile::named(&args.profile)?;
    let (workload, arrival, seed) = args.shape.parts()?;
    let limits = args.limits.limits();
    limits.check()?;
    let criteria = Criteria {
        ttft_k: Some(args.k),
        max_error_rate: Some(args.saturation_error_rate),
        ..Criteria::default()
    };
    criteria.check()?;
    if !(args.fraction > 0.0 && args.fraction <= 1.0) {
        bail!(
            "invalid value '{}' for --fraction: must be in (0, 1]",
            args.fraction
        );
    }
    args.target.check()?;
    let pricing = match (args.gpus, args.price, &args.target.endpoint) {
        (Some(gpus), Some(price), _) => Some(Pricing {
            gpus,
            price_per_gpu_hour: price,
            assumed: false,
        }),
        (gpus, price, None) => Some(Pricing {
            gpus: gpus.unwrap_or(args.target.sim_config()?.gpus),
            price_per_gpu_hour: price.unwrap_or(ASSUMED_PRICE),
            assumed: price.is_none(),
        }),
        (_, _, Some(_)) => None,
    };
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| super::load::default_out("bench"));
    let plan = BenchPlan {
        overload: args.target.overload(),
        profile,
        workload,
        arrival,
        seed,
        window_s: args.shape.window.as_secs_f64(),
        criteria,
        fraction: args.fraction,
        limits,
        pricing,
        prometheus: args.prometheus.clone(),
        out_dir: out_dir.clone(),
    };
    let tty = std::io::stderr().is_terminal();
    super::runtime()?.block_on(async move {
        let target = args.target.connect().await?;
        eprintln!(
            "bench ({} profile) against {}, results in {}",
            plan.profile.name,
            target.label,
            out_dir.display()
        );
        let control = Arc::new(Control::default());
        stop_on_ctrl_c(&control);
        let started = Instant::now();
        let mut phase_no = 0;
        let out = bench::run(plan, &target.cfg, control, |ev| match ev {
            BenchEvent::PhaseStarted { name } => {
                phase_no += 1;
                eprintln!("[{phase_no}/4 {name}] started at {}", clock(started));
            }
            BenchEvent::Tick {
                phase,
                what,
                now_s,
                total_s,
                progress,
            } if tty => eprint!(
                "\r  [{phase_no}/4 {phase}] {what} {now_s:>5.1}/{total_s:.0} s  sent {}  errors {}  elapsed {}   ",
                progress.sent,
                progress.errors,
                clock(started)
            ),
            BenchEvent::RampStepDone {
                what,
                step,
                saturated,
            } => {
                if tty {
                    eprint!("\r{:110}\r", "");
                }
                eprintln!(
                    "  {what}: TTFT p99 {}, {:.0} tok/s, errors {:.2}%{}",
                    step.summary
                        .ttft_ms
                        .p99
                        .map(|v| format!("{v:.0} ms"))
                        .unwrap_or_else(|| "-".into()),
                    step.summary.output_tok_s,
                    step.summary.error_rate.unwrap_or(0.0) * 100.0,
                    saturated
                        .map(|r| format!("  ← saturated ({})", reason_name(r)))
                        .unwrap_or_default()
                );
            }
            BenchEvent::PhaseDone { name, seconds } => {
                if tty {
                    eprint!("\r{:110}\r", "");
                }
                eprintln!("[{phase_no}/4 {name}] done in {seconds:.1} s");
            }
            _ => {}
        })
        .await;
        target.close().await;
        let out = out?;
        println!("\n== baseline (1 user) ==\n{}", summary_table(&out.result.baseline));
        println!("== ramp ==\n{}", ramp_table(&out.ramp));
        if let Some(sla) = &out.sla {
            println!("== SLA at the recommended point ==\n{}", sla_table(sla));
        }
        if let Some(cost) = &out.cost {
            println!("== cost ==\n{}", super::cost::cost_table(cost));
        }
        for note in &out.result.notes {
            println!("  note: {note}");
        }
        let phases: Vec<String> = out
            .result
            .phases
            .iter()
            .map(|p| format!("{} {:.0} s", p.name, p.seconds))
            .collect();
        println!("  phases: {}; total {}", phases.join(", "), clock(started));
        println!("  results in {}", out_dir.display());
        let sla_failed = out.sla.as_ref().is_some_and(|s| !s.passed);
        Ok(if sla_failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn clock(since: Instant) -> String {
    let s = since.elapsed().as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}
