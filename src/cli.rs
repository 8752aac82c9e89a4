//! The command line: the edge of the program, where flags become checked types and errors
//! become exit codes (anyhow lives here and nowhere else).
//!
//! Exit codes: 0 success; 1 a check failed (criteria, SLA); 2 invalid input or a run error.

mod bench;
mod load;
mod nvsmi;
mod sim;

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
    /// Keep OpenAI-compatible streaming load on an endpoint (or the embedded sim) and measure it.
    Load(Box<load::LoadArgs>),
    /// Run the simulated LLM serving cluster on a socket.
    Sim(sim::SimArgs),
    /// Measure the load engine's own ceiling against the sim's zero-latency mode.
    EngineBench(bench::BenchArgs),
    /// The sim's nvidia-smi: query and set the compute mode of simulated GPUs.
    #[command(name = "nvidia-smi")]
    NvidiaSmi(nvsmi::NvsmiArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Load(args) => load::run(*args),
        Command::Sim(args) => sim::run(args),
        Command::EngineBench(args) => bench::run(args),
        Command::NvidiaSmi(args) => nvsmi::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
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
