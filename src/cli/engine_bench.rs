//! `faultline engine-bench`: the load engine's own ceiling on this machine.
//!
//! Starts the sim in zero-latency mode as a separate process (so client and server CPU can be
//! told apart), then runs constant-rate steps of short fixed-length streams and reports, per
//! step, what was achieved, the dispatch lag, the TTFT the client measured (with a server that
//! answers instantly, that is the client's own overhead) and the CPU each side used. The
//! ceiling is the highest rate with achieved ≥ 99% of target and dispatch-lag p99 ≤ 2 ms.

use crate::load::client::{Api, Client, ClientConfig};
use crate::load::engine::{self, Control, EngineConfig};
use crate::load::schedule::{ArrivalProcess, RateShape, Schedule};
use crate::load::workload::Workload;
use anyhow::{Context, bail};
use clap::Args;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Request rates to try, comma-separated.
    #[arg(long, default_value = "1000,2000,3000,4000,5000,6000,7000,8000,10000")]
    pub rates: String,
    /// Length of each step.
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse_positive)]
    pub step: Duration,
    /// Output tokens per request.
    #[arg(long, default_value_t = 32)]
    pub tokens: u32,
    /// Stop after the first step that misses the criteria.
    #[arg(long)]
    pub stop_at_ceiling: bool,
    /// Over HTTPS: the sim serves TLS (`sim --tls`) and the client trusts its CA, so the
    /// ceiling includes handshakes and encryption (HTTP/2 through ALPN).
    #[arg(long)]
    pub tls: bool,
}

fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "pid (comm) ".
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let rates: Vec<f64> = args
        .rates
        .split(',')
        .map(|r| {
            r.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0)
                .with_context(|| format!("invalid rate '{r}' in --rates"))
        })
        .collect::<anyhow::Result<_>>()?;
    let exe = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let ca = tmp.join("sim-ca.pem");
    let mut sim = Command::new(exe);
    sim.args(["sim", "--zero-latency", "--listen", "127.0.0.1:0"]);
    if args.tls {
        sim.arg("--tls").arg("--tls-ca-out").arg(&ca);
    }
    let mut child = sim
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the sim process")?;
    let sim_pid = child.id().to_string();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().context("sim has no stdout")?);
    out.read_line(&mut line)?;
    // Keep draining what the sim prints after its address, so it never writes into a closed
    // pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let Some(url) = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_string)
    else {
        let _ = child.kill();
        bail!("the sim did not report its address (said {line:?})");
    };
    let tls = crate::tls::TlsOptions {
        ca_cert: args.tls.then_some(ca),
        ..Default::default()
    };
    let result = steps(&args, &rates, &url, &tls, &sim_pid, &tmp);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn steps(
    args: &BenchArgs,
    rates: &[f64],
    url: &str,
    tls: &crate::tls::TlsOptions,
    sim_pid: &str,
    tmp: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    let workload = Workload::parse_mix(&format!("fixed:128:{}", args.tokens))?;
    println!(
        "engine ceiling: {}-token streams from a zero-latency sim (separate process, {}), {} s steps, {} cores",
        args.tokens,
        if args.tls { "HTTPS" } else { "plain HTTP" },
        args.step.as_secs(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>11} {:>10}",
        "target",
        "achieved",
        "errors",
        "lag p99",
        "TTFT p50",
        "TTFT p99",
        "tok/s",
        "client s",
        "sim s",
        "CPU s/Mtok",
        "CPU µs/req"
    );
    let mut ceiling: Option<(f64, f64, f64)> = None;
    for (i, &rate) in rates.iter().enumerate() {
        let cfg = ClientConfig {
            base_url: url.to_string(),
            api: Api::Completions,
            model: String::new(),
            stream: true,
            include_usage: true,
            api_key: None,
            headers: vec![],
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            tls: tls.clone(),
            max_event_bytes: crate::load::sse::DEFAULT_MAX_EVENT_BYTES,
        };
        let summary = rt.block_on(async {
            let probe = Client::new(cfg.clone(), Instant::now())?;
            let models = probe.check().await?;
            let mut cfg = cfg;
            cfg.model = models.first().cloned().unwrap_or_default();
            let client = Client::new(cfg, Instant::now())?;
            let sim0 = cpu_seconds_of(sim_pid).unwrap_or(0.0);
            let me0 = cpu_seconds_of("self").unwrap_or(0.0);
            let out = engine::run(
                EngineConfig {
                    schedule: Schedule::Open {
                        shape: RateShape::Fixed(rate),
                        process: ArrivalProcess::Constant,
                        duration: args.step,
                        max_in_flight: None,
                    },
                    workload: workload.clone(),
                    seed: i as u64,
                    window_s: 1.0,
                    out_dir: tmp.join(format!("step-{i}")),
                    overload: Default::default(),
                },
                client,
                Arc::new(Control::default()),
                |_, _| {},
            )
            .await?;
            let me = cpu_seconds_of("self").unwrap_or(0.0) - me0;
            let sim = cpu_seconds_of(sim_pid).unwrap_or(0.0) - sim0;
            anyhow::Ok((out.summary, me, sim))
        })?;
        let (s, me, sim) = summary;
        let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        let per_m = if s.output_tokens > 0 {
            me / (s.output_tokens as f64 / 1e6)
        } else {
            f64::NAN
        };
        let per_req = if s.requests > 0 {
            me * 1e6 / s.requests as f64
        } else {
            f64::NAN
        };
        println!(
            "{:>8.0} {:>9.0} {:>8} {:>9} {:>9} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>11.2} {:>10.0}",
            rate,
            s.achieved_rate,
            s.errors,
            f(s.dispatch_lag_ms.p99),
            f(s.ttft_ms.p50),
            f(s.ttft_ms.p99),
            s.output_tok_s,
            me,
            sim,
            per_m,
            per_req
        );
        let ok = s.errors == 0
            && s.achieved_rate >= 0.99 * rate
            && s.dispatch_lag_ms.p99.is_some_and(|l| l <= 2.0);
        if ok {
            ceiling = Some((rate, s.output_tok_s, per_m));
        } else if args.stop_at_ceiling {
            break;
        }
    }
    match ceiling {
        Some((rate, tok_s, per_m)) => println!(
            "\nceiling: {rate:.0} req/s ({tok_s:.0} output tok/s ingested, {per_m:.2} client CPU-seconds per million tokens)"
        ),
        None => println!("\nceiling: below the lowest rate tried"),
    }
    Ok(ExitCode::SUCCESS)
}
