//! The command line: the edge of the program, where flags become checked types and errors
//! become exit codes (anyhow lives here and nowhere else).
//!
//! Exit codes: 0 success; 1 a check failed (criteria, not recovered); 2 invalid input, an invalid
//! run or a run error; 3 aborted (stop condition or signal).

mod bench;
mod bottleneck;
mod cost;
mod engine_bench;
mod experiment;
mod faults;
mod load;
mod nvsmi;
mod progress;
mod ramp;
mod report;
mod sim;
mod sla;
mod tls;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "faultline",
    version,
    about = "Load and fault-injection testing for LLM serving clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an experiment: steady load while faults fire on a timeline; phases, detection,
    /// recovery and a verdict.
    Run(experiment::RunArgs),
    /// Show the resolved timeline and every action an experiment would take, touching nothing.
    Plan(experiment::PlanArgs),
    /// Check experiment and fault-definition files.
    Validate(experiment::ValidateArgs),
    /// Inject one fault by hand (with --for it restores itself).
    Inject(Box<faults::InjectArgs>),
    /// List the faults in effect according to the ledger (and, with --kubeconfig etc., the
    /// faultline NetworkPolicies in the cluster).
    Status(faults::StatusArgs),
    /// Restore a fault by id (or --all) from the ledger.
    Restore(faults::RestoreArgs),
    /// Restore whatever the ledger still holds (after a crash or SIGKILL).
    Recover(faults::RecoverArgs),
    /// Work on the ledger by hand (`ledger resolve ID --reason ...`).
    #[command(subcommand)]
    Ledger(faults::LedgerCommand),
    /// Keep OpenAI-compatible streaming load on an endpoint (or the embedded sim) and measure it.
    Load(Box<load::LoadArgs>),
    /// Ramp the load step by step until the cluster saturates; recommend an operating point.
    Ramp(Box<ramp::RampArgs>),
    /// Hold a rate and check latency/error SLAs (exit 1 on violation); --find searches the
    /// highest rate that meets them.
    Sla(Box<sla::SlaArgs>),
    /// Cost per million output tokens for one configuration or a file of them.
    Cost(cost::CostArgs),
    /// The whole benchmark: warm-up, baseline, ramp, SLA at the recommended point, cost.
    Bench(Box<bench::BenchArgs>),
    /// Build report.html, summary.md and junit.xml from a results folder.
    Report(report::ReportArgs),
    /// Run the simulated LLM serving cluster on a socket.
    Sim(sim::SimArgs),
    /// Measure the load engine's own ceiling against the sim's zero-latency mode.
    EngineBench(engine_bench::BenchArgs),
    /// The sim's nvidia-smi: query and set the compute mode of simulated GPUs.
    #[command(name = "nvidia-smi")]
    NvidiaSmi(nvsmi::NvsmiArgs),
    /// Which resource ran out first over a window, from the cluster's Prometheus metrics.
    Bottleneck(bottleneck::BottleneckArgs),
}

impl Command {
    /// Commands that change nothing anywhere: when the reader of their output goes away
    /// (`faultline plan x.yaml | head`) they may simply stop. Every other command keeps Rust's
    /// default (a write error instead of death by SIGPIPE), so a run whose terminal went away
    /// still restores its faults and writes its results.
    fn only_reads(&self) -> bool {
        matches!(
            self,
            Command::Plan(_)
                | Command::Validate(_)
                | Command::Status(_)
                | Command::Ledger(_)
                | Command::Cost(_)
        )
    }
}

/// Dies quietly of SIGPIPE like other Unix tools when stdout's reader has gone, instead of
/// panicking with "failed printing to stdout: Broken pipe".
fn quiet_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn main() -> ExitCode {
    // One crypto provider for every TLS client and server in the process (reqwest with
    // `rustls-no-provider` panics on building a client without a process default).
    let _ =
        rustls::crypto::CryptoProvider::install_default(crate::tls::provider().as_ref().clone());
    let cli = Cli::parse_from(nvsmi::long_spellings(std::env::args_os()));
    if cli.command.only_reads() {
        quiet_on_closed_pipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(progress::StderrWriter)
        // Colour codes only on a terminal: a pipe or a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run(args) => experiment::run(args),
        Command::Plan(args) => experiment::plan(args),
        Command::Validate(args) => experiment::validate(args),
        Command::Inject(args) => faults::inject(*args),
        Command::Status(args) => faults::status(args),
        Command::Restore(args) => faults::restore(args),
        Command::Recover(args) => faults::recover(args),
        Command::Ledger(cmd) => faults::ledger(cmd),
        Command::Load(args) => load::run(*args),
        Command::Ramp(args) => ramp::run(*args),
        Command::Sla(args) => sla::run(*args),
        Command::Cost(args) => cost::run(args),
        Command::Bench(args) => bench::run(*args),
        Command::Report(args) => report::run(args),
        Command::Sim(args) => sim::run(args),
        Command::EngineBench(args) => engine_bench::run(args),
        Command::NvidiaSmi(args) => nvsmi::run(args),
        Command::Bottleneck(args) => bottleneck::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Terminal escape sequences in a user's value (a name, a server's text) are shown,
            // not obeyed; a runaway message is cut.
            eprintln!(
                "error: {}",
                crate::limits::printable(&format!("{e:#}"), 20_000)
            );
            ExitCode::from(2)
        }
    }
}

/// A multi-threaded runtime for one command.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(args: &[&str]) -> String {
        Cli::try_parse_from(args).unwrap_err().to_string()
    }

    #[test]
    fn duration_flags_share_the_one_duration_message() {
        let err = parse_error(&["faultline", "load", "--duration", "3 mintues"]);
        assert!(
            err.contains(
                "invalid value '3 mintues' for '--duration <DURATION>': invalid duration '3 mintues': unknown unit 'mintues' (use ms, s, m, h); try 3m"
            ),
            "{err}"
        );
        let err = parse_error(&["faultline", "sla", "--window", "0s"]);
        assert!(
            err.contains("invalid duration '0s': must be longer than zero"),
            "{err}"
        );
    }
}
