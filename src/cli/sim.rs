//! `faultline sim`: the simulated serving cluster on a socket, until Ctrl-C.

use crate::sim::{self, SimConfig};
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Cluster preset.
    #[arg(long, default_value = "h100x4-70b")]
    pub preset: String,
    /// Cluster configuration file (JSON) instead of a preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// No delays at all: for measuring the client itself.
    #[arg(long)]
    pub zero_latency: bool,
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(path) => SimConfig::load(path)?,
        None => SimConfig::preset(&args.preset).with_context(|| {
            format!(
                "unknown sim preset '{}' (known: {})",
                args.preset,
                SimConfig::preset_names().join(", ")
            )
        })?,
    };
    if args.zero_latency {
        cfg = cfg.zero_latency();
    }
    let rt = super::runtime()?;
    rt.block_on(async move {
        let handle = sim::start(cfg, args.listen)
            .await
            .with_context(|| format!("cannot start the sim on {}", args.listen))?;
        // Scripts read this line to find the port.
        println!("listening on http://{}", handle.addr);
        tokio::signal::ctrl_c().await?;
        handle.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
