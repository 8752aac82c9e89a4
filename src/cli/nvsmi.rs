//! `faultline nvidia-smi [--state DIR] ARGS`: the sim's stand-in for `nvidia-smi`, over the GPU
//! state in `DIR` (default `$FAULTLINE_SIM_STATE`). Takes the options `gpu-lockout` uses, spelled
//! as the real tool spells them, so a fault definition works unchanged against the sim.

use crate::sim::nvsmi::{GpuState, Request, run as run_nvsmi};
use anyhow::Context;
use clap::Args;
use std::ffi::OsString;
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
    /// Lock the GPU clocks: MIN,MAX in MHz.
    #[arg(long = "lock-gpu-clocks", value_name = "MIN,MAX")]
    lock_gpu_clocks: Option<String>,
    /// Reset the GPU clocks.
    #[arg(long = "reset-gpu-clocks")]
    reset_gpu_clocks: bool,
    /// Set the power limit, W.
    #[arg(long = "power-limit", value_name = "W")]
    power_limit: Option<String>,
}

/// The real tool's multi-letter short options (`-lgc 900,900`, `-rgc`, `-pl 500`) in their
/// long spellings, which clap parses; only for `faultline nvidia-smi`, every other argument list
/// is passed through untouched.
pub fn long_spellings(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).and_then(|a| a.to_str()) != Some("nvidia-smi") {
        return args;
    }
    args.into_iter()
        .map(|a| match a.to_str() {
            Some("-lgc") => "--lock-gpu-clocks".into(),
            Some("-rgc") => "--reset-gpu-clocks".into(),
            Some("-pl") => "--power-limit".into(),
            _ => a,
        })
        .collect()
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
            lock_gpu_clocks: args.lock_gpu_clocks,
            reset_gpu_clocks: args.reset_gpu_clocks,
            power_limit: args.power_limit,
        },
    );
    std::io::stdout().write_all(resp.stdout.as_bytes())?;
    std::io::stderr().write_all(resp.stderr.as_bytes())?;
    Ok(ExitCode::from(resp.code))
}
