//! `faultline run`, `plan` and `validate`: experiment files in, results and exit codes out.
//!
//! `run` exit codes: 0 pass; 1 criteria failed or not recovered; 2 invalid input, an invalid
//! run (a fault did not take effect or was skipped) or a run error; 3 aborted (stop condition
//! or signal; everything was restored).

use crate::fault::ledger::Ledger;
use crate::report::table::{failure_table, summary_table};
use crate::runner::execute::{self, RunOptions};
use crate::runner::result::FaultStatus;
use crate::runner::spec::{self, Validated};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    /// Results folder (default results/<experiment>-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The ledger file (default $FAULTLINE_LEDGER or ./.faultline/ledger.jsonl).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Print result.json on stdout instead of the tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The experiment file.
    pub experiment: PathBuf,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Experiment or fault-definition files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn ledger_at(path: &Option<PathBuf>) -> Ledger {
    match path {
        Some(p) => Ledger::at(p.clone()),
        None => Ledger::at(Ledger::default_path()),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let exp = spec::load_experiment(&args.experiment)?;
    if let spec::Target::Endpoint { tls, .. } = &exp.target {
        super::tls::warn_if_insecure(tls, "target.tls.insecure");
    }
    for p in &exp.probes {
        let tls = match &p.check {
            spec::ProbeCheck::Http(h) => &h.tls,
            spec::ProbeCheck::Prometheus(q) => &q.tls,
            _ => continue,
        };
        super::tls::warn_if_insecure(tls, &format!("probe '{}' tls.insecure", p.name));
    }
    // Unique even for two runs started in the same second: the ledger, the dead-man markers and
    // the results folder all key on it.
    let run_id = crate::fault::ledger::new_run_id(&exp.name);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(&run_id));
    let opts = RunOptions {
        out_dir: out_dir.clone(),
        ledger: ledger_at(&args.ledger),
        run_id,
        faultline_bin: None,
    };
    let rt = super::runtime()?;
    // Progress on stderr: in place on a terminal, a plain line every 10 s otherwise.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let observer = super::progress::observer(tty, std::time::Duration::from_secs(10));
    let result = rt.block_on(execute::run_observed(&exp, &opts, Some(observer)));
    super::progress::finish();
    let result = result?;
    // The HTML report and JUnit XML come with every run; a failure to draw them is reported but
    // does not change the run's verdict (`faultline report DIR` rebuilds them).
    if let Err(e) = crate::report::build::build(&out_dir, None) {
        eprintln!(
            "warning: cannot build the report in {}: {e}",
            out_dir.display()
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::version::stamped(
                &result,
                crate::version::RESULT_SCHEMA_VERSION
            ))?
        );
    } else {
        println!("{}", summary_table(&result.load));
        println!("{}", failure_table(&result));
        // Why a fault did not pass, in its own words (e.g. nvidia-smi's error on a failed inject).
        for f in &result.faults {
            if let Some(reason) = f
                .reason
                .as_deref()
                .filter(|_| f.status != FaultStatus::Pass)
            {
                let status = serde_json::to_value(&f.status)?;
                println!(
                    "  fault {} ({}): {}: {reason}",
                    f.id,
                    f.kind,
                    status.as_str().unwrap_or("?")
                );
            }
        }
        println!("  results in {}", out_dir.display());
    }
    Ok(ExitCode::from(result.status.exit_code()))
}

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let exp = match spec::validate_file(&args.experiment)? {
        Validated::Experiment(e) => e,
        Validated::FaultDefinition(d) => anyhow::bail!(
            "{} is a fault definition ('{}', {}), not an experiment: `faultline inject {}` runs it by hand, or `use: {}` in an experiment's faults",
            args.experiment.display(),
            crate::limits::quoted(&d.name),
            d.spec.kind(),
            args.experiment.display(),
            crate::limits::quoted(&d.name)
        ),
    };
    print!("{}", spec::plan(&exp));
    Ok(ExitCode::SUCCESS)
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut bad = 0;
    for f in &args.files {
        match spec::validate_file(f) {
            Ok(Validated::Experiment(e)) => println!(
                "{}: ok (experiment '{}', {} fault(s))",
                f.display(),
                e.name,
                e.timeline.len()
            ),
            Ok(Validated::FaultDefinition(d)) => println!(
                "{}: ok (fault definition '{}', {})",
                f.display(),
                d.name,
                d.spec.kind()
            ),
            Err(e) => {
                bad += 1;
                eprintln!("{}", crate::limits::printable(&e.to_string(), 100_000));
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
