//! `faultline sim`: the simulated serving cluster on a socket, until Ctrl-C.

use crate::sim::{self, SimConfig};
use anyhow::Context;
use clap::Args;
use std::io::Write;
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
    /// Where the Kubernetes-compatible API for the sim's pods and NetworkPolicies listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub kube_listen: SocketAddr,
    /// Where to write its kubeconfig (default: the sim's state directory).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// RBAC policy for the Kubernetes API: users (tokens, groups) and Role-style rules (YAML;
    /// see the README). Without it every authenticated client may do everything.
    #[arg(long)]
    pub kube_rbac: Option<PathBuf>,
    /// The sim's state directory (GPU state, nvidia-smi wrapper, ground-truth events);
    /// default: a fresh temporary directory, removed on exit.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Serve the OpenAI API over HTTPS with a CA made at start; its certificate is written to
    /// ca.pem in the state directory (and --tls-ca-out), for clients' --ca-cert.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: refuse clients without a certificate signed by the sim's CA (mutual TLS).
    /// One is written beside the CA: client.pem and client-key.pem.
    #[arg(long, requires = "tls")]
    pub tls_client_auth: bool,
    /// With --tls: also write the CA certificate here (the state directory may be temporary).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca_out: Option<PathBuf>,
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
    if args.state_dir.is_some() {
        cfg.state_dir = args.state_dir.clone();
    }
    let rbac = match &args.kube_rbac {
        Some(path) => Some(sim::kube::Policy::load(path)?),
        None => None,
    };
    let rt = super::runtime()?;
    rt.block_on(async move {
        let tls = match (args.tls, args.tls_client_auth) {
            (false, _) => sim::SimTls::Off,
            (true, false) => sim::SimTls::On,
            (true, true) => sim::SimTls::RequireClientCert,
        };
        let handle = sim::start_with_tls(cfg, args.listen, tls)
            .await
            .with_context(|| format!("cannot start the sim on {}", args.listen))?;
        let kubeconfig = args
            .kubeconfig
            .clone()
            .unwrap_or_else(|| handle.state_dir().join("kubeconfig"));
        let kube = if args.zero_latency {
            None
        } else {
            Some(
                sim::kube::serve_with(
                    handle.control(),
                    args.kube_listen,
                    &kubeconfig,
                    sim::kube::KubeApiOptions { rbac },
                )
                .await
                .context("cannot start the sim's Kubernetes API")?,
            )
        };
        // The files are in place before the first line announces the sim.
        if let (Some(files), Some(copy)) = (handle.tls_files(), &args.tls_ca_out) {
            std::fs::copy(&files.ca_cert, copy)
                .with_context(|| format!("cannot write --tls-ca-out {}", copy.display()))?;
        }
        // Scripts read the first line to find the port. A reader that went away is not a
        // reason to stop serving, so write errors are ignored.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {}", handle.url());
        let _ = writeln!(out, "state dir {}", handle.state_dir().display());
        if let Some(files) = handle.tls_files() {
            let _ = writeln!(
                out,
                "ca cert {}{}",
                args.tls_ca_out.as_ref().unwrap_or(&files.ca_cert).display(),
                if args.tls_client_auth {
                    " (client certificates required)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                out,
                "client cert {} key {}",
                files.client_cert.display(),
                files.client_key.display()
            );
        }
        if let Some(k) = &kube {
            let _ = writeln!(
                out,
                "kubeconfig {} (API on {})",
                k.kubeconfig.display(),
                k.url()
            );
        }
        let _ = out.flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if let Some(k) = kube {
            k.shutdown().await;
        }
        handle.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
