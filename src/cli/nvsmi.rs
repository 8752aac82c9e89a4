//! `faultline nvidia-smi [--state DIR] ARGS`: the sim's stand-in for `nvidia-smi`, over the GPU
//! state in `DIR` (default `$FAULTLINE_SIM_STATE`). Takes the options `gpu-lockout` uses, spelled
//! as the real tool spells them, so a fault definition works unchanged against the sim.

use crate::sim::nvsmi::{GpuState, Request, run as run_nvsmi};
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct NvsmiArgs {
    /// Directory holding the sim's GPU state (gpus.json).
    #[arg(long, env = "FAULTLINE_SIM_STATE", value_name = "DIR")]
    state: PathBuf,
    /// GPU indices (comma-separated), UUIDs or PCI bus ids; default: all.
    #[arg(short = 'i', long = "id")]
    id: Option<String>,
    /// Set the compute mode: 0/DEFAULT, 2/PROHIBITED, 3/EXCLUSIVE_PROCESS.
    #[arg(short = 'c', long = "compute-mode", value_name = "MODE")]
    compute_mode: Option<String>,
    /// Fields to query: index, uuid, name, compute_mode, pci.bus_id.
    #[arg(long = "query-gpu", value_name = "FIELDS")]
    query_gpu: Option<String>,
    /// Fields to query: pid, gpu_uuid, gpu_name, gpu_bus_id, process_name.
    #[arg(long = "query-compute-apps", value_name = "FIELDS")]
    query_compute_apps: Option<String>,
    /// Output format of queries: csv[,noheader][,nounits].
    #[arg(long)]
    format: Option<String>,
    /// List the GPUs.
    #[arg(short = 'L', long = "list-gpus")]
    list: bool,
}

pub fn run(args: NvsmiArgs) -> anyhow::Result<ExitCode> {
    let state = GpuState::open(&args.state)
        .with_context(|| format!("no sim GPU state in {:?}", args.state))?;
    let resp = run_nvsmi(
        &state,
        &Request {
            id: args.id,
            compute_mode: args.compute_mode,
            query_gpu: args.query_gpu,
            query_compute_apps: args.query_compute_apps,
            format: args.format,
            list: args.list,
        },
    );
    std::io::stdout().write_all(resp.stdout.as_bytes())?;
    std::io::stderr().write_all(resp.stderr.as_bytes())?;
    Ok(ExitCode::from(resp.code))
}
