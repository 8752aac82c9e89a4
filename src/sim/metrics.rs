//! Prometheus text exposition of the sim, in the names real clusters use: vLLM's per-worker
//! series and DCGM's per-GPU ones, so the same queries and dashboards work on the sim and on a
//! real cluster. Written by hand: the format is simple and the sim needs no metrics crate.
//!
//! Counters are atomics so the zero-latency path can count without taking a lock.
//!
//! A worker that is not `running` has no `vllm:*` series at all — on a real cluster its
//! process is gone, so its scrape target is down and its series go stale — and its counters
//! start again from zero when it restarts (a new process). `faultline_sim_worker_up{worker}`
//! says which workers are up (like Prometheus' `up`); DCGM's per-GPU series stay (the GPUs are
//! still there), idle and with no framebuffer used while the worker has no process.
//! `faultline_sim_router_*` is the router's view (healthy workers, per-worker routing state),
//! the signal a real gateway exports and an operator alerts on.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::cluster::{Cluster, Gauges};

/// vLLM's TTFT histogram buckets, in seconds.
const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    success: AtomicU64,
    ttft_buckets: [AtomicU64; TTFT_BUCKETS.len()],
    ttft_sum_us: AtomicU64,
    ttft_count: AtomicU64,
}

impl WorkerStats {
    /// A request's first token: its prompt was processed after `ttft`.
    pub fn first_token(&self, prompt_tokens: u32, ttft: Duration) {
        self.prompt_tokens
            .fetch_add(u64::from(prompt_tokens), Relaxed);
        let secs = ttft.as_secs_f64();
        if let Some(i) = TTFT_BUCKETS.iter().position(|&b| secs <= b) {
            self.ttft_buckets[i].fetch_add(1, Relaxed);
        }
        self.ttft_sum_us.fetch_add(ttft.as_micros() as u64, Relaxed);
        self.ttft_count.fetch_add(1, Relaxed);
    }

    /// One generated token; `last` = the request finished.
    pub fn token(&self, last: bool) {
        self.generation_tokens.fetch_add(1, Relaxed);
        if last {
            self.success.fetch_add(1, Relaxed);
        }
    }

    /// A new process starts counting from zero (Prometheus' `rate()` handles counter resets).
    pub fn reset(&self) {
        for c in [
            &self.prompt_tokens,
            &self.generation_tokens,
            &self.success,
            &self.ttft_sum_us,
            &self.ttft_count,
        ]
        .into_iter()
        .chain(&self.ttft_buckets)
        {
            c.store(0, Relaxed);
        }
    }

    /// A whole request served at once (zero-latency mode).
    pub fn whole_request(&self, prompt_tokens: u32, completion_tokens: u32) {
        self.first_token(prompt_tokens, Duration::ZERO);
        self.generation_tokens
            .fetch_add(u64::from(completion_tokens), Relaxed);
        self.success.fetch_add(1, Relaxed);
    }
}

/// The whole `/metrics` page.
pub(crate) fn render(cluster: &Cluster) -> String {
    let c = &cluster.config;
    let now = cluster.now();
    let gauges: Vec<_> = cluster.workers.iter().map(|w| w.gauges(now)).collect();
    let up: Vec<bool> = cluster.workers.iter().map(|w| w.is_up()).collect();
    let model = escape(&c.model);
    let mut out = String::with_capacity(8 * 1024);
    let lbl = |w: usize| format!("model_name=\"{model}\",worker=\"{w}\"");

    family(
        &mut out,
        "faultline_sim_worker_up",
        "gauge",
        "1 if the simulated worker's process is up and serving, 0 while failed or starting.",
        up.iter()
            .enumerate()
            .map(|(i, &u)| (format!("worker=\"{i}\""), if u { 1.0 } else { 0.0 })),
    );
    router(&mut out, cluster);
    dcgm(&mut out, cluster);
    let gauges: Vec<_> = gauges
        .into_iter()
        .zip(&up)
        .map(|(g, &u)| if u { Some(g) } else { None })
        .collect();
    let live = || {
        gauges
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (i, g)))
    };

    family(
        &mut out,
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in the model execution batch.",
        live().map(|(i, g)| (lbl(i), g.running as f64)),
    );
    family(
        &mut out,
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        live().map(|(i, g)| (lbl(i), g.waiting as f64)),
    );
    family(
        &mut out,
        "vllm:gpu_cache_usage_perc",
        "gauge",
        "GPU KV-cache usage. 1 means 100 percent usage.",
        live().map(|(i, g)| (lbl(i), g.kv_usage)),
    );
    let counter = |f: fn(&WorkerStats) -> &AtomicU64| {
        cluster
            .workers
            .iter()
            .filter(|w| up[w.id])
            .map(move |w| (lbl(w.id), f(&w.stats).load(Relaxed) as f64))
            .collect::<Vec<_>>()
    };
    family(
        &mut out,
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        counter(|s| &s.prompt_tokens),
    );
    family(
        &mut out,
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        counter(|s| &s.generation_tokens),
    );
    family(
        &mut out,
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        counter(|s| &s.success)
            .into_iter()
            .map(|(l, v)| (format!("{l},finished_reason=\"length\""), v)),
    );

    let name = "vllm:time_to_first_token_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Histogram of time to first token in seconds.\n# TYPE {name} histogram"
    );
    for w in cluster.workers.iter().filter(|w| up[w.id]) {
        let l = lbl(w.id);
        let mut cumulative = 0;
        for (i, bound) in TTFT_BUCKETS.iter().enumerate() {
            cumulative += w.stats.ttft_buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{bound}\"}} {cumulative}");
        }
        let count = w.stats.ttft_count.load(Relaxed);
        let sum = w.stats.ttft_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{l}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{l}}} {count}");
    }

    // DCGM: one series per GPU; a GPU shows its worker's state.
    let gpu = |g: usize, w: usize| {
        format!(
            "gpu=\"{g}\",UUID=\"GPU-00000000-0000-0000-0000-{g:012}\",device=\"nvidia{g}\",modelName=\"{}\",Hostname=\"sim\",worker=\"{w}\"",
            escape(&c.gpu_name)
        )
    };
    // `None`: the worker has no process on the GPU.
    let per_gpu = |f: &dyn Fn(Option<&Gauges>) -> f64| {
        cluster
            .workers
            .iter()
            .flat_map(|w| w.gpus.clone().map(move |g| (g, w.id)))
            .map(|(g, w)| (gpu(g, w), f(gauges[w].as_ref())))
            .collect::<Vec<_>>()
    };
    family(
        &mut out,
        "DCGM_FI_DEV_GPU_UTIL",
        "gauge",
        "GPU utilization (in %).",
        per_gpu(&|g| g.map_or(0.0, |g| (g.busy * 100.0).round())),
    );
    // Decode is memory-bound: bandwidth use follows how busy the GPU is and how much KV it reads.
    family(
        &mut out,
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "gauge",
        "Memory utilization (in %).",
        per_gpu(&|g| g.map_or(0.0, |g| (g.busy * (35.0 + 55.0 * g.kv_usage)).round())),
    );
    family(
        &mut out,
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "gauge",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
        per_gpu(&|g| g.map_or(0.0, |g| g.busy * (0.35 + 0.55 * g.kv_usage))),
    );
    let fb_used = |g: Option<&Gauges>| {
        g.map_or(0.0, |g| {
            (f64::from(c.weights_mib_per_gpu) + g.kv_usage * f64::from(c.kv_cache_mib_per_gpu))
                .round()
        })
    };
    family(
        &mut out,
        "DCGM_FI_DEV_FB_USED",
        "gauge",
        "Framebuffer memory used (in MiB).",
        per_gpu(&fb_used),
    );
    family(
        &mut out,
        "DCGM_FI_DEV_FB_FREE",
        "gauge",
        "Framebuffer memory free (in MiB).",
        per_gpu(&|g| f64::from(c.gpu_memory_mib) - fb_used(g)),
    );
    out
}

/// The router's view, as a gateway exports it (Envoy's `membership_healthy` /
/// `membership_total`, a router's per-backend health): which workers it sends requests to.
///
/// Why: a worker can be `up` and still out of rotation (cut off by a network policy), and the
/// moment the router drops a worker is what an operator's alert fires on; without these series
/// the only detection signal an experiment had for a partition was its users' errors.
fn router(out: &mut String, cluster: &Cluster) {
    let routed: Vec<(usize, bool, u32)> = cluster
        .workers
        .iter()
        .map(|w| {
            let core = w.core();
            (
                w.id,
                core.life.routed && w.health().is_healthy(),
                core.life.failed_checks,
            )
        })
        .collect();
    let healthy = routed.iter().filter(|r| r.1).count();
    family(
        out,
        "faultline_sim_router_workers_healthy",
        "gauge",
        "Workers the router sends requests to (passing its health checks, not marked unavailable).",
        [(String::new(), healthy as f64)],
    );
    family(
        out,
        "faultline_sim_router_workers_total",
        "gauge",
        "Workers the router knows, in rotation or not.",
        [(String::new(), routed.len() as f64)],
    );
    family(
        out,
        "faultline_sim_router_worker_routed",
        "gauge",
        "1 while the router sends the worker requests, 0 while it has removed it.",
        routed
            .iter()
            .map(|&(i, r, _)| (format!("worker=\"{i}\""), if r { 1.0 } else { 0.0 })),
    );
    family(
        out,
        "faultline_sim_router_worker_health_check_failures",
        "gauge",
        "Consecutive failed health checks of the worker (0 once one passes).",
        routed
            .iter()
            .map(|&(i, _, f)| (format!("worker=\"{i}\""), f64::from(f))),
    );
}

/// The GPUs as NVIDIA's dcgm-exporter names them (`DCGM_FI_DEV_SM_CLOCK`,
/// `DCGM_FI_DEV_POWER_USAGE`, `DCGM_FI_DEV_POWER_MGMT_LIMIT`, labelled `gpu`, `UUID`,
/// `Hostname`), read from the sim's GPU state on each scrape. Why: a throttled GPU (`gpu-degrade`)
/// is a gray failure — pods stay Ready, the router keeps it — and these are the series an
/// operator's alert on a degraded GPU would watch.
fn dcgm(out: &mut String, cluster: &Cluster) {
    let Ok(gpus) = cluster.gpus.load() else {
        return;
    };
    let lbl = |g: &super::nvsmi::Gpu| {
        format!(
            "gpu=\"{}\",UUID=\"{}\",Hostname=\"sim\"",
            g.index,
            escape(&g.uuid)
        )
    };
    family(
        out,
        "DCGM_FI_DEV_SM_CLOCK",
        "gauge",
        "SM clock frequency (in MHz).",
        gpus.gpus
            .iter()
            .map(|g| (lbl(g), f64::from(g.sm_clock_mhz()))),
    );
    family(
        out,
        "DCGM_FI_DEV_POWER_USAGE",
        "gauge",
        "Power draw (in W).",
        gpus.gpus.iter().map(|g| (lbl(g), g.power_draw_w())),
    );
    family(
        out,
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        "gauge",
        "Power management limit (in W).",
        gpus.gpus.iter().map(|g| (lbl(g), g.power_limit_w)),
    );
}

fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    values: impl IntoIterator<Item = (String, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in values {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// Escapes a Prometheus label value.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
