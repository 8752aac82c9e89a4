//! `faultline cost`: cost per million output tokens, for one configuration given by flags or a
//! table of them from a YAML file. The formula is in `analysis::cost`.

use crate::analysis::cost::{self, CostTable};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CostArgs {
    /// A YAML file of configurations (see costs/example.yaml).
    #[arg(long, conflicts_with_all = ["gpus", "price", "tok_s", "ramp"])]
    pub file: Option<PathBuf>,
    /// Number of GPUs.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Price per GPU-hour (any currency; the result is in the same one).
    #[arg(long)]
    pub price: Option<f64>,
    /// Output tokens per second the configuration sustains (ideally its max, from a ramp).
    #[arg(long)]
    pub tok_s: Option<f64>,
    /// Take the throughput from a ramp.json's max throughput instead of --tok-s.
    #[arg(long, conflicts_with = "tok_s")]
    pub ramp: Option<PathBuf>,
    /// Share of that throughput production runs at on average (e.g. 0.7); omitted = flat out.
    #[arg(long)]
    pub utilization: Option<f64>,
    /// Name of the configuration in the table.
    #[arg(long, default_value = "configuration")]
    pub name: String,
    /// Also write cost.json here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print cost.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CostArgs) -> anyhow::Result<ExitCode> {
    let mut table = match &args.file {
        Some(path) => cost::load_file(path)?,
        None => {
            let (Some(gpus), Some(price)) = (args.gpus, args.price) else {
                bail!("give --gpus and --price (and --tok-s or --ramp), or --file");
            };
            let tok_s = match (&args.tok_s, &args.ramp) {
                (Some(t), _) => *t,
                (None, Some(path)) => {
                    let text =
                        crate::limits::read_text_capped(path, crate::limits::MAX_SMALL_FILE_BYTES)?;
                    let r: crate::analysis::saturation::RampResult = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a ramp.json", path.display()))?;
                    r.max_throughput.output_tok_s
                }
                (None, None) => bail!("give --tok-s or --ramp"),
            };
            // A subnormal throughput made the cost per token `inf`.
            if !(tok_s.is_finite() && tok_s >= 0.001) {
                bail!(
                    "invalid value '{tok_s:e}' for --tok-s: must be at least 0.001 output tokens per second"
                );
            }
            CostTable {
                rows: vec![cost::cost_row(
                    &args.name,
                    gpus,
                    price,
                    tok_s,
                    args.utilization,
                )?],
            }
        }
    };
    if args.file.is_some()
        && let Some(u) = args.utilization
    {
        // A command-line utilization applies to rows that did not set their own.
        for row in table.rows.iter_mut().filter(|r| r.utilization.is_none()) {
            *row = cost::cost_row(
                &row.name,
                row.gpus,
                row.price_per_gpu_hour,
                row.output_tok_s,
                Some(u),
            )?;
        }
    }
    if let Some(out) = &args.out {
        crate::runner::ramp::write_json(out, &table)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else {
        print!("{}", cost_table(&table));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn cost_table(t: &CostTable) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let width = t
        .rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "{:<width$} {:>5} {:>10} {:>10} {:>11} {:>12}",
        "name", "gpus", "$/GPU-h", "tok/s", "utilization", "$/M out tok"
    );
    for r in &t.rows {
        let _ = writeln!(
            s,
            "{:<width$} {:>5} {:>10.2} {:>10.0} {:>11} {:>12.3}",
            r.name,
            r.gpus,
            r.price_per_gpu_hour,
            r.output_tok_s,
            r.utilization
                .map(|u| format!("{:.0}%", u * 100.0))
                .unwrap_or_else(|| "flat out".into()),
            r.cost_per_million_output_tokens
        );
    }
    let _ = writeln!(
        s,
        "  cost per million output tokens = gpus × price / (tok/s × utilization × 3600) × 1e6"
    );
    s
}
