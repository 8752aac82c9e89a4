//! `faultline load`: flags → a checked schedule, workload and client; run; print; write files.

use crate::load::client::{Api, ApiKey, Client, ClientConfig};
use crate::load::engine::{self, Control, EngineConfig};
use crate::load::schedule::Schedule;
use crate::load::schedule_spec::ScheduleSpec;
use crate::load::workload::Workload;
use crate::report::table::summary_table;
use crate::sim::{self, SimConfig};
use anyhow::{Context, bail};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the load goes: an endpoint, or the embedded sim when none is given. Flattened into
/// every command that sends load, so `load`, `ramp`, `sla` and `bench` take the same flags.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8000 or
    /// https://gateway.example/v1). Without it, the embedded simulated cluster is started
    /// in-process and loaded.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Model name to request; default: the first model the endpoint lists at /v1/models. With
    /// it, an endpoint that does not serve /v1/models is fine.
    #[arg(long)]
    pub model: Option<String>,
    /// Which API to call.
    #[arg(long, default_value = "completions", value_parser = parse_api)]
    pub api: Api,
    /// Ask for a whole response instead of an SSE stream.
    #[arg(long)]
    pub no_stream: bool,
    /// Do not send `stream_options.include_usage` (tokens are then counted from the stream).
    #[arg(long)]
    pub no_usage: bool,
    /// Per-request timeout (whole request).
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse_positive)]
    pub timeout: Duration,
    /// Connect timeout.
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse_positive)]
    pub connect_timeout: Duration,
    /// Environment variable holding the API key (sent as a bearer token, never printed).
    /// [default: OPENAI_API_KEY; a variable named here that is not set gets a warning]
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Largest SSE event (or line) accepted from the server, e.g. 1MiB, 64KiB, 2000000; a
    /// larger one fails the request as invalid_response.
    #[arg(long, default_value = "1MiB", value_parser = parse_event_size)]
    pub max_event_size: usize,
    /// Embedded sim preset (when no --endpoint is given).
    #[arg(long, default_value = "h100x4-70b")]
    pub sim_preset: String,
    /// Embedded sim configuration file (JSON), instead of a preset.
    #[arg(long)]
    pub sim_config: Option<PathBuf>,
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
    /// Connection pool: requests in flight (one HTTP/1.1 connection each) at most. A request
    /// that finds every connection busy waits, and the wait shows as dispatch lag, never as an
    /// error. Default: peak rate × --timeout × 1.25 (what a server answering nothing until the
    /// timeout would need), at least 64, at most 4096 and the open-file limit less 256 (half of
    /// it with the embedded sim); a closed loop's default is its user count. The pool opens up
    /// gradually (256 at first, doubling every 250 ms while all are busy, at most +1024).
    #[arg(long, value_parser = parse_max_connections)]
    pub max_connections: Option<usize>,
    /// A window whose dispatch-lag p99 (intended start → actual send) is above this is marked
    /// client_limited: the load generator, not the server, set the pace there. It is warned
    /// about while it happens, counted in summary.json, and makes an experiment invalid.
    #[arg(long, default_value = "10ms", value_parser = crate::duration::parse_positive)]
    pub max_dispatch_lag: Duration,
}

/// `--max-connections`: a whole number from 1 to the concurrency limit.
pub(crate) fn parse_max_connections(s: &str) -> Result<usize, String> {
    let max = crate::limits::MAX_CONCURRENCY;
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n as usize),
        _ => Err(format!("'{s}': expected a whole number from 1 to {max}")),
    }
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Requests per second (open-loop modes). Default 20.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to send requests, e.g. 30s, 5m. Default 30s.
    #[arg(long, value_parser = crate::duration::parse_positive)]
    pub duration: Option<Duration>,
    /// Arrival process: constant, poisson or gamma. Default poisson.
    #[arg(long)]
    pub arrival: Option<String>,
    /// Gamma shape (with --arrival gamma): 1 = Poisson, below 1 burstier, above 1 smoother.
    #[arg(long)]
    pub burstiness: Option<f64>,
    /// Ramp the rate linearly from --rate to this rate over the duration.
    #[arg(long, conflicts_with_all = ["steps", "concurrency", "trace"])]
    pub ramp_to: Option<f64>,
    /// Rate steps, e.g. "10x30s,20x30s,40x1m" (rate x duration, comma-separated).
    #[arg(long, conflicts_with_all = ["concurrency", "trace", "rate"])]
    pub steps: Option<String>,
    /// Closed loop: N users, each sending its next request when the previous one ends.
    #[arg(long, conflicts_with_all = ["trace", "rate"])]
    pub concurrency: Option<usize>,
    /// Cap on requests in flight for open-loop modes (waiting for a slot shows as dispatch lag).
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Replay a trace: JSONL of {"timestamp", "input_tokens", "output_tokens"}.
    #[arg(long, conflicts_with = "rate")]
    pub trace: Option<PathBuf>,
    /// Workload mix ("chat=0.7,code=0.2,summarization=0.1") or fixed lengths ("fixed:128:32").
    #[arg(long, default_value = "chat=0.7,code=0.2,summarization=0.1")]
    pub workload: String,
    /// Prompts from a file instead: JSONL {"prompt", "max_tokens"?} or ShareGPT JSON.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Seed for arrivals and request contents (a run with the same seed is the same run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Results folder (default results/load-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Window length for the time series.
    #[arg(long, default_value = "1s", value_parser = crate::duration::parse_positive)]
    pub window: Duration,
}

pub(crate) fn parse_api(s: &str) -> Result<Api, String> {
    s.parse::<Api>().map_err(|e| e.to_string())
}

/// The environment variable read when `--api-key-env` is not given.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Bounds of `--max-event-size`: below 1 KiB not even a chunk with logprobs fits; above 1 GiB
/// the limit no longer protects the client's memory.
const EVENT_SIZE_RANGE: std::ops::RangeInclusive<usize> = 1024..=1 << 30;

/// A byte size: a number of bytes, or a number with `KiB`, `MiB` or `GiB` (or `B`).
pub(crate) fn parse_event_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_bytes: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "'{s}': expected bytes, or a number with KiB, MiB or GiB"
            ));
        }
    };
    let n = num
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| format!("'{s}': expected bytes, or a number with KiB, MiB or GiB"))?;
    if !EVENT_SIZE_RANGE.contains(&n) {
        return Err(format!("'{s}': must be between 1KiB and 1GiB"));
    }
    Ok(n)
}

pub(crate) fn positive(name: &str, v: f64) -> anyhow::Result<f64> {
    use crate::limits::{MAX_RATE, MIN_RATE};
    if !v.is_finite() || v <= 0.0 {
        bail!("invalid value '{v}' for --{name}: must be a positive number");
    }
    // `--rate 1e12` was accepted and then grew memory without end.
    if !(MIN_RATE..=MAX_RATE).contains(&v) {
        bail!(
            "invalid value '{v:e}' for --{name}: must be between {MIN_RATE} and {MAX_RATE} requests per second"
        );
    }
    Ok(v)
}

impl LoadArgs {
    /// The checked schedule these flags describe (the same conversion, defaults and limits as
    /// an experiment's `load:` section).
    pub fn schedule(&self) -> anyhow::Result<Schedule> {
        ScheduleSpec {
            rate: self.rate,
            duration: self.duration,
            arrival: self.arrival.clone(),
            burstiness: self.burstiness,
            ramp_to: self.ramp_to,
            steps: self.steps.clone(),
            concurrency: self.concurrency,
            max_in_flight: self.max_in_flight,
            trace: self.trace.clone(),
        }
        .to_schedule()
        .map_err(|e| anyhow::anyhow!(e.for_flags()))
    }

    pub fn workload(&self) -> anyhow::Result<Workload> {
        Ok(match &self.corpus {
            Some(path) => Workload::load_corpus(path)?,
            None => Workload::parse_mix(&self.workload)?,
        })
    }
}

/// A connected target: the checked client configuration (model resolved) and the embedded sim
/// when one was started. Shut the sim down with [`Connected::close`] when done.
pub(crate) struct Connected {
    pub cfg: ClientConfig,
    pub sim: Option<sim::SimHandle>,
    /// What was loaded, for run files: the endpoint or "embedded sim (<preset>)".
    pub label: String,
}

impl Connected {
    pub async fn close(self) {
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }

    /// A fresh client whose run clock starts now (one per engine run).
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(self.cfg.clone(), Instant::now())?)
    }
}

impl TargetArgs {
    /// The connection pool and dispatch-lag threshold these flags ask for.
    pub(crate) fn overload(&self) -> crate::load::pool::Overload {
        crate::load::pool::Overload {
            max_connections: self.max_connections,
            max_dispatch_lag: self.max_dispatch_lag,
            embedded_server: self.endpoint.is_none(),
        }
    }

    pub(crate) fn headers(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.headers
            .iter()
            .map(|h| match h.split_once(':') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Ok((k.trim().to_string(), v.trim().to_string()))
                }
                _ => bail!("invalid value '{h}' for --header: expected 'Name: value'"),
            })
            .collect()
    }

    /// The embedded sim's configuration (a file or a preset).
    pub(crate) fn sim_config(&self) -> anyhow::Result<SimConfig> {
        match &self.sim_config {
            Some(path) => Ok(SimConfig::load(path)?),
            None => SimConfig::preset(&self.sim_preset).with_context(|| {
                format!(
                    "unknown sim preset '{}' (known: {})",
                    self.sim_preset,
                    SimConfig::preset_names().join(", ")
                )
            }),
        }
    }

    /// The environment variable holding the API key, and whether the user named it.
    fn api_key_var(&self) -> (&str, bool) {
        match &self.api_key_env {
            Some(v) => (v.as_str(), true),
            None => (DEFAULT_API_KEY_ENV, false),
        }
    }

    /// Checks the flags that need no network (model, headers, API key, sim config); call
    /// before anything starts so a typo costs nothing. Warns on stderr when `--api-key-env`
    /// names a variable that is not set (the default one unset is normal: a server without
    /// keys).
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if let Some(m) = &self.model
            && m.trim().is_empty()
        {
            bail!(
                "invalid value '{m}' for --model: must not be empty (leave --model out to use \
                 the first model the endpoint lists)"
            );
        }
        if let Some(v) = &self.api_key_env
            && v.trim().is_empty()
        {
            bail!(
                "invalid value '{v}' for --api-key-env: must name an environment variable \
                 (leave it out for {DEFAULT_API_KEY_ENV})"
            );
        }
        self.headers()?;
        let (var, named) = self.api_key_var();
        if ApiKey::from_env(var)?.is_none() && named {
            eprintln!(
                "warning: --api-key-env {var}: the variable is not set; requests are sent \
                 without an api key"
            );
        }
        crate::tls::client_config(&self.tls.options())?;
        if self.endpoint.is_none() {
            self.sim_config()?;
        }
        Ok(())
    }

    /// Starts the embedded sim if no endpoint was given, checks the endpoint answers and
    /// resolves the model name. Must run inside the tokio runtime.
    pub(crate) async fn connect(&self) -> anyhow::Result<Connected> {
        let headers = self.headers()?;
        let api_key = ApiKey::from_env(self.api_key_var().0)?;
        let tls = self.tls.checked()?;
        let sim = match &self.endpoint {
            Some(_) => None,
            None => Some(
                sim::start(
                    self.sim_config()?,
                    "127.0.0.1:0".parse().expect("a valid address"),
                )
                .await
                .context("cannot start the embedded sim")?,
            ),
        };
        let (base_url, label) = match (&self.endpoint, &sim) {
            (Some(url), _) => (url.clone(), url.clone()),
            (None, Some(s)) => (
                format!("http://{}", s.addr),
                format!(
                    "embedded sim ({})",
                    self.sim_config
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| self.sim_preset.clone())
                ),
            ),
            (None, None) => unreachable!("the sim starts when no endpoint is given"),
        };
        let mut cfg = ClientConfig {
            base_url,
            api: self.api,
            model: self.model.clone().unwrap_or_default(),
            stream: !self.no_stream,
            include_usage: !self.no_usage,
            api_key,
            headers,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            tls,
            max_event_bytes: self.max_event_size,
        };
        let checked = async {
            cfg.model = Client::new(cfg.clone(), Instant::now())?
                .resolve_model()
                .await?;
            anyhow::Ok(())
        }
        .await;
        let connected = Connected { cfg, sim, label };
        if let Err(e) = checked {
            connected.close().await;
            return Err(e);
        }
        Ok(connected)
    }
}

/// Ctrl-C stops dispatching on `control` (requests in flight finish).
pub(crate) fn stop_on_ctrl_c(control: &Arc<Control>) {
    let control = control.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: no new requests; waiting for those in flight");
            control.stop();
        }
    });
}

pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    // Check everything the user gave before anything starts.
    let schedule = args.schedule()?;
    let workload = args.workload()?;
    args.target.check()?;
    let window_s = args.window.as_secs_f64();
    let seed = args.seed.unwrap_or_else(rand::random);
    let out_dir = args.out.clone().unwrap_or_else(|| default_out("load"));
    let rt = super::runtime()?;
    rt.block_on(async move {
        let target = args.target.connect().await?;
        let control = Arc::new(Control::default());
        stop_on_ctrl_c(&control);
        write_run_info(&out_dir, &args, &target, &schedule, seed)?;
        let tty = std::io::stderr().is_terminal() && !args.json;
        let total_s = schedule.duration().as_secs_f64();
        let client = target.client()?;
        let engine_cfg = EngineConfig {
            schedule,
            workload,
            seed,
            window_s,
            out_dir: out_dir.clone(),
            overload: args.target.overload(),
        };
        let out = engine::run(engine_cfg, client, control, |now, p| {
            if tty {
                let last = p
                    .last
                    .as_ref()
                    .and_then(|w| w.ttft_p99_ms)
                    .map(|v| format!("{v:.0} ms"))
                    .unwrap_or_else(|| "-".into());
                super::progress::draw(&format!(
                    "  {now:>6.1}/{total_s:.0} s  sent {}  in flight {}  done {}  errors {}  TTFT p99 (last window) {last}",
                    p.sent, p.in_flight, p.completed, p.errors
                ));
            }
        })
        .await;
        if tty {
            super::progress::finish();
        }
        target.close().await;
        let out = out?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&out.summary)?);
        } else {
            println!("{}", summary_table(&out.summary));
            println!("  results in {}", out.out_dir.display());
        }
        if let Some(note) = super::progress::client_limited_note(&out.summary) {
            eprintln!("warning: {note}");
        }
        if out.summary.client_errors > 0 {
            eprintln!(
                "warning: {} requests failed on this machine before reaching the server (client_error: out of ports or file descriptors); they are not in the error rate. Lower --max-connections or raise `ulimit -n`.",
                out.summary.client_errors
            );
        }
        if out.summary.errors > 0
            && let Some((kind, message)) = first_error(&out.out_dir)
        {
            // Once, not per request: 4000 identical TLS failures need one explanation.
            eprintln!("first error ({kind}): {message}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The first failed request's outcome and message in `requests.jsonl`.
pub(crate) fn first_error(dir: &std::path::Path) -> Option<(String, String)> {
    use std::io::BufRead;
    let file = std::fs::File::open(dir.join(crate::load::recorder::REQUESTS_FILE)).ok()?;
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<crate::load::record::RequestRecord>(&l).ok())
        .find(|r| !r.outcome.is_ok())
        .map(|r| (r.outcome.key().into_owned(), r.error.unwrap_or_default()))
}

/// `results/<kind>-<timestamp>`: the default results folder of a command.
pub(crate) fn default_out(kind: &str) -> PathBuf {
    // Unique even for two commands started in the same second.
    PathBuf::from("results").join(crate::fault::ledger::new_run_id(kind))
}

/// `run.json`: what was asked for, so a run can be understood and repeated. No secrets.
fn write_run_info(
    dir: &std::path::Path,
    args: &LoadArgs,
    target: &Connected,
    schedule: &Schedule,
    seed: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg = &target.cfg;
    let info = serde_json::json!({
        "faultline_version": crate::version::FAULTLINE_VERSION,
        "schema_version": crate::version::RUN_INFO_SCHEMA_VERSION,
        "started_at": chrono::Local::now().to_rfc3339(),
        "endpoint": target.label,
        "model": cfg.model,
        "api": format!("{:?}", cfg.api).to_lowercase(),
        "stream": cfg.stream,
        "schedule": schedule,
        "workload": args.corpus.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| args.workload.clone()),
        "seed": seed,
        "timeout_s": args.target.timeout.as_secs_f64(),
        // True whenever credentials went out, also as `--header "Authorization: …"` (or
        // `api-key`, `x-api-key`).
        "api_key_sent": cfg.api_key.is_some() || sends_authorization(&cfg.headers),
        "api_key_source": api_key_source(args.target.api_key_var().0, cfg),
        // Names only: the values are secrets as far as faultline knows.
        "headers": cfg.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect::<Vec<_>>(),
        "max_event_bytes": cfg.max_event_bytes,
        // Paths and the insecure switch only, never key material.
        "tls": cfg.tls,
        "tls_insecure": cfg.tls.insecure,
    });
    let path = dir.join("run.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Headers that carry credentials: the bearer token, and the key headers of Azure OpenAI and
/// of gateways that follow it.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "api-key", "x-api-key"];

/// The credential header `--header` sends, if any (lowercase).
fn credential_header(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .map(|(n, _)| n.trim().to_ascii_lowercase())
        .find(|n| CREDENTIAL_HEADERS.contains(&n.as_str()))
}

/// Whether `--header` sends credentials.
fn sends_authorization(headers: &[(String, String)]) -> bool {
    credential_header(headers).is_some()
}

/// Where the credentials came from, for `run.json`.
fn api_key_source(var: &str, cfg: &ClientConfig) -> String {
    if cfg.api_key.is_some() {
        format!("environment variable {var}")
    } else if let Some(h) = credential_header(&cfg.headers) {
        format!("--header {h}")
    } else {
        "none".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_size_takes_bytes_or_binary_units() {
        assert_eq!(parse_event_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_event_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_event_size("2000000"), Ok(2_000_000));
        assert_eq!(parse_event_size("4096B"), Ok(4096));
        assert_eq!(parse_event_size("1GiB"), Ok(1 << 30));
    }

    #[test]
    fn event_size_out_of_range_or_malformed_is_refused_quoting_the_value() {
        for (v, why) in [
            ("100", "must be between 1KiB and 1GiB"),
            ("2GiB", "must be between 1KiB and 1GiB"),
            ("1MB", "expected bytes, or a number with KiB, MiB or GiB"),
            ("", "expected bytes"),
            ("-5", "expected bytes"),
            ("99999999999999999999MiB", "expected bytes"),
        ] {
            let e = parse_event_size(v).unwrap_err();
            assert!(
                e.starts_with(&format!("'{v}': ")) && e.contains(why),
                "{v}: {e}"
            );
        }
    }

    #[test]
    fn authorization_header_counts_as_credentials_sent() {
        let h = |n: &str| vec![(n.to_owned(), "v".to_owned())];
        assert!(sends_authorization(&h("Authorization")));
        assert!(sends_authorization(&h("authorization")));
        assert!(sends_authorization(&h("X-Api-Key")));
        assert!(sends_authorization(&h("api-key")));
        assert!(!sends_authorization(&h("x-tenant")));
    }
}
