//! `faultline engine-bench`: the load engine's own ceiling on this machine.
//!
//! Starts the sim in zero-latency mode as a separate process (so client and server CPU can be
//! told apart), then runs constant-rate steps of short fixed-length streams and reports, per
//! step, what was achieved, the dispatch lag, the TTFT the client measured (with a server that
//! answers instantly, that is the client's own overhead) and the CPU each side used. The
//! ceiling is the highest rate with achieved ≥ 99% of target and dispatch-lag p99 ≤ 2 ms.
//!
//! With `--endpoint URL` it measures against any server instead (the standalone
//! `faultline-zero-sse`, a sim started elsewhere, or a real one). Server CPU is then known when
//! `--server-pid` names its process or the server answers `GET /cpu` as `faultline-zero-sse`
//! does. Every step is also written as JSON (`--out`, version-stamped) with the lag and TTFT
//! percentiles, both sides' CPU, CPU per request and per million tokens, and the peak number of
//! open sockets of this process (sampled from `/proc/self/fd` every 10 ms).

use crate::load::client::{Api, Client, ClientConfig};
use crate::load::engine::{self, Control, EngineConfig};
use crate::load::schedule::{ArrivalProcess, RateShape, Schedule};
use crate::load::workload::Workload;
use anyhow::{Context, bail};
use clap::Args;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Layout of the `--out` file. 1: first version.
pub const ENGINE_BENCH_SCHEMA_VERSION: u32 = 1;

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
    #[arg(long, conflicts_with = "endpoint")]
    pub tls: bool,
    /// Measure against this server (base URL, e.g. `http://127.0.0.1:8000` or `…/v1`) instead
    /// of starting a zero-latency sim.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// With `--endpoint`: the server's process id, to read its CPU time from /proc.
    #[arg(long, requires = "endpoint")]
    pub server_pid: Option<u32>,
    /// Which API to stream from: `completions` or `chat`.
    #[arg(long, default_value = "completions")]
    pub api: Api,
    /// Where to write the per-step figures as JSON.
    #[arg(long, default_value = "engine-bench.json")]
    pub out: PathBuf,
}

/// One step's figures, as printed and as written to `--out`.
#[derive(serde::Serialize, Debug)]
pub struct StepFigures {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub requests: u64,
    pub errors: u64,
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    pub dispatch_lag_p50_ms: Option<f64>,
    pub dispatch_lag_p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub output_tokens: u64,
    pub output_tok_s: f64,
    pub client_cpu_s: f64,
    /// None when the server's CPU cannot be read.
    pub server_cpu_s: Option<f64>,
    pub client_cpu_us_per_request: Option<f64>,
    pub client_cpu_s_per_million_tokens: Option<f64>,
    pub peak_connections: usize,
    pub meets_criteria: bool,
}

#[derive(serde::Serialize)]
struct BenchFile<'a> {
    endpoint: &'a str,
    server: &'a str,
    api: String,
    tokens: u32,
    step_s: f64,
    cores: usize,
    steps: &'a [StepFigures],
    ceiling_rate: Option<f64>,
}

/// Where the server's CPU time comes from.
enum ServerCpu {
    Pid(String),
    Http(reqwest::Client, String),
}

impl ServerCpu {
    async fn read(&self) -> Option<f64> {
        match self {
            ServerCpu::Pid(pid) => cpu_seconds_of(pid),
            ServerCpu::Http(client, url) => {
                #[derive(serde::Deserialize)]
                struct Cpu {
                    cpu_seconds: f64,
                }
                let r = client.get(url).send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                r.json::<Cpu>().await.ok().map(|c| c.cpu_seconds)
            }
        }
    }
}

/// Open file descriptors of this process, and how many of them are sockets when `sockets`.
fn open_fds(sockets: bool) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return (0, 0);
    };
    let (mut all, mut socks) = (0, 0);
    for e in dir.filter_map(Result::ok) {
        all += 1;
        if sockets
            && std::fs::read_link(e.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
        {
            socks += 1;
        }
    }
    (all, socks)
}

/// Samples the open sockets of this process every 50 ms until finished. Cheap on purpose: the
/// first profile showed a sampler that resolved every fd's link every 10 ms costing the client
/// more than its SSE parsing. So links are resolved once at the start (to learn how many fds are
/// not sockets) and afterwards only the directory is counted; the few files a step opens itself
/// (`requests.jsonl`, `windows.jsonl`) count as sockets, so the figure may be high by 2–3. The
/// sampler's own CPU time is measured and taken out of the client's.
struct SocketSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<f64>>,
}

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

impl SocketSampler {
    fn start() -> SocketSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            let (all, socks) = open_fds(true);
            let other = all - socks;
            p.fetch_max(socks, Ordering::Relaxed);
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                p.fetch_max(open_fds(false).0.saturating_sub(other), Ordering::Relaxed);
            }
            thread_cpu_seconds()
        });
        SocketSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }
    /// The peak socket count and the CPU-seconds the sampler itself used.
    fn finish(mut self) -> (usize, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let cpu = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(0.0);
        (self.peak.load(Ordering::Relaxed), cpu)
    }
}

/// The server root of a base URL (`…/v1` and a trailing slash removed), for `GET /cpu`.
fn server_root(url: &str) -> &str {
    let u = url.trim_end_matches('/');
    u.strip_suffix("/v1").unwrap_or(u)
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
    if let Some(url) = args.endpoint.clone() {
        let tmp = std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id()));
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let server = match args.server_pid {
            Some(pid) => {
                if cpu_seconds_of(&pid.to_string()).is_none() {
                    bail!("--server-pid {pid}: no such process (cannot read /proc/{pid}/stat)");
                }
                ServerCpu::Pid(pid.to_string())
            }
            None => ServerCpu::Http(
                crate::tls::http_client_builder(&Default::default())?
                    .no_proxy()
                    .timeout(Duration::from_secs(2))
                    .build()?,
                format!("{}/cpu", server_root(&url)),
            ),
        };
        let result = steps(&args, &rates, &url, &Default::default(), server, &tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        return result;
    }
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
    let result = steps(&args, &rates, &url, &tls, ServerCpu::Pid(sim_pid), &tmp);
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
    server: ServerCpu,
    tmp: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    let workload = Workload::parse_mix(&format!("fixed:128:{}", args.tokens))?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let server_desc = match &args.endpoint {
        Some(e) => format!(
            "{e} ({})",
            if matches!(server, ServerCpu::Pid(_)) {
                "server CPU from --server-pid"
            } else {
                "server CPU from GET /cpu if it answers"
            }
        ),
        None => format!(
            "a zero-latency sim (separate process, {})",
            if args.tls { "HTTPS" } else { "plain HTTP" }
        ),
    };
    println!(
        "engine ceiling: {}-token {} streams from {server_desc}, {} s steps, {cores} cores",
        args.tokens,
        args.api,
        args.step.as_secs_f64(),
    );
    let mut all: Vec<StepFigures> = Vec::new();
    println!(
        "{:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>11} {:>10} {:>6}",
        "target",
        "achieved",
        "errors",
        "lag p50",
        "lag p99",
        "TTFT p50",
        "TTFT p99",
        "tok/s",
        "client s",
        "server s",
        "CPU s/Mtok",
        "CPU µs/req",
        "conns"
    );
    let mut ceiling: Option<(f64, f64, f64)> = None;
    for (i, &rate) in rates.iter().enumerate() {
        let cfg = ClientConfig {
            base_url: url.to_string(),
            api: args.api,
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
            let srv0 = server.read().await;
            let me0 = cpu_seconds_of("self").unwrap_or(0.0);
            let sockets = SocketSampler::start();
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
            let (peak, sampler_cpu) = sockets.finish();
            let me = cpu_seconds_of("self").unwrap_or(0.0) - me0 - sampler_cpu;
            let srv = match (srv0, server.read().await) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            anyhow::Ok((out.summary, me, srv, peak))
        })?;
        let (s, me, srv, peak) = summary;
        let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        let per_m = (s.output_tokens > 0).then(|| me / (s.output_tokens as f64 / 1e6));
        let per_req = (s.requests > 0).then(|| me * 1e6 / s.requests as f64);
        println!(
            "{:>8.0} {:>9.0} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10.0} {:>9.2} {:>9} {:>11} {:>10} {:>6}",
            rate,
            s.achieved_rate,
            s.errors,
            f(s.dispatch_lag_ms.p50),
            f(s.dispatch_lag_ms.p99),
            f(s.ttft_ms.p50),
            f(s.ttft_ms.p99),
            s.output_tok_s,
            me,
            f(srv),
            f(per_m),
            per_req
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into()),
            peak
        );
        let ok = s.errors == 0
            && s.achieved_rate >= 0.99 * rate
            && s.dispatch_lag_ms.p99.is_some_and(|l| l <= 2.0);
        all.push(StepFigures {
            target_rate: rate,
            achieved_rate: s.achieved_rate,
            requests: s.requests,
            errors: s.errors,
            errors_by_kind: s.errors_by_kind.clone(),
            dispatch_lag_p50_ms: s.dispatch_lag_ms.p50,
            dispatch_lag_p99_ms: s.dispatch_lag_ms.p99,
            ttft_p50_ms: s.ttft_ms.p50,
            ttft_p99_ms: s.ttft_ms.p99,
            output_tokens: s.output_tokens,
            output_tok_s: s.output_tok_s,
            client_cpu_s: me,
            server_cpu_s: srv,
            client_cpu_us_per_request: per_req,
            client_cpu_s_per_million_tokens: per_m,
            peak_connections: peak,
            meets_criteria: ok,
        });
        write_file(args, url, &server_desc, cores, &all, ceiling.map(|c| c.0))?;
        if ok {
            ceiling = Some((rate, s.output_tok_s, per_m.unwrap_or(f64::NAN)));
        } else if args.stop_at_ceiling {
            break;
        }
    }
    write_file(args, url, &server_desc, cores, &all, ceiling.map(|c| c.0))?;
    match ceiling {
        Some((rate, tok_s, per_m)) => println!(
            "\nceiling: {rate:.0} req/s ({tok_s:.0} output tok/s ingested, {per_m:.2} client CPU-seconds per million tokens)"
        ),
        None => println!("\nceiling: below the lowest rate tried"),
    }
    println!("figures written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn write_file(
    args: &BenchArgs,
    url: &str,
    server: &str,
    cores: usize,
    steps: &[StepFigures],
    ceiling_rate: Option<f64>,
) -> anyhow::Result<()> {
    let file = BenchFile {
        endpoint: url,
        server,
        api: args.api.to_string(),
        tokens: args.tokens,
        step_s: args.step.as_secs_f64(),
        cores,
        steps,
        ceiling_rate,
    };
    let text =
        serde_json::to_vec_pretty(&crate::version::stamped(&file, ENGINE_BENCH_SCHEMA_VERSION))?;
    std::fs::write(&args.out, text).with_context(|| format!("cannot write {}", args.out.display()))
}
