//! `faultline plan`: the resolved timeline and every action a run would take, in words, touching
//! nothing — what an operator reads before pointing the tool at production.

use std::fmt::Write;
use std::time::Duration;

use humantime::format_duration as hd;

use super::model::*;
use crate::fault::{DescribeCx, Lifetime};
use crate::load::schedule::{ArrivalProcess, RateShape, Schedule};

fn t(d: Duration) -> String {
    format!("t={}", hd(d))
}

/// What one fault does, e.g. `gpu-lockout 'gpu-1' on host local GPUs [0] (mode PROHIBITED, kill process; …)`.
pub fn describe_fault(f: &ScheduledFault, exp: &Experiment) -> String {
    let cx = DescribeCx {
        namespace: exp
            .kubernetes
            .as_ref()
            .and_then(|k| k.namespace.clone())
            .unwrap_or_else(|| "of the kubeconfig context".into()),
    };
    format!("{} '{}' {}", f.spec.kind(), f.id, f.spec.describe(&cx))
}

fn restore(f: &ScheduledFault) -> String {
    let end = match (f.spec.lifetime(), f.duration) {
        (Lifetime::OneShot, None) => None,
        (_, _) => Some(t(f.end())),
    };
    f.spec.describe_end(end.as_deref())
}

fn schedule(s: &Schedule) -> String {
    let process = |p: &ArrivalProcess| match p {
        ArrivalProcess::Constant => "constant".to_string(),
        ArrivalProcess::Poisson => "poisson".to_string(),
        ArrivalProcess::Gamma { burstiness } => format!("gamma (burstiness {burstiness})"),
    };
    match s {
        Schedule::Open {
            shape,
            process: p,
            duration,
            ..
        } => match shape {
            RateShape::Fixed(r) => format!("{r} req/s {} for {}", process(p), hd(*duration)),
            RateShape::Ramp { from, to } => {
                format!("{from} → {to} req/s {} over {}", process(p), hd(*duration))
            }
            RateShape::Steps(steps) => {
                let st: Vec<String> = steps
                    .iter()
                    .map(|s| format!("{}×{}", s.rate, hd(s.duration)))
                    .collect();
                format!("steps {} req/s ({})", st.join(", "), process(p))
            }
        },
        Schedule::Closed { users, duration } => {
            format!("{users} concurrent users for {}", hd(*duration))
        }
        Schedule::Trace { entries, .. } => format!(
            "trace replay of {} requests ({})",
            entries.len(),
            hd(s.duration())
        ),
    }
}

/// Renders the resolved experiment: target, load, timeline with every action, probes, stop
/// conditions and criteria.
/// Which cluster, and why: the server and context a run would use (reads the kubeconfig, opens
/// no connection).
fn kubernetes(k: &Kubernetes) -> String {
    let ns = k
        .namespace
        .as_deref()
        .map(|n| format!("namespace \"{n}\""))
        .unwrap_or_else(|| "the context's namespace".into());
    match k.resolve() {
        None => format!("the embedded sim's API (HTTPS, started with the run), {ns}"),
        Some(Err(e)) => format!("no cluster: {e}"),
        Some(Ok(spec)) => match spec.peek() {
            Ok((server, context)) => {
                format!(
                    "cluster {server} (context \"{context}\", {ns}) from {}",
                    spec.why()
                )
            }
            Err(e) => format!("{}: {e}", spec.why()),
        },
    }
}

pub fn plan(exp: &Experiment) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "experiment '{}' ({})", exp.name, exp.source.display());
    if let Some(d) = &exp.description {
        let _ = writeln!(o, "  {}", d.trim());
    }
    let target = match &exp.target {
        Target::Sim { preset, config, .. } => format!(
            "embedded sim, preset {preset} ({} GPUs, model {})",
            config.gpus, config.model
        ),
        Target::Endpoint {
            url, model, tls, ..
        } => {
            let mut tls_parts = Vec::new();
            if let Some(ca) = &tls.ca_cert {
                tls_parts.push(format!("CA {}", ca.display()));
            }
            if let Some(cert) = &tls.client_cert {
                tls_parts.push(format!("client certificate {}", cert.display()));
            }
            if tls.insecure {
                tls_parts.push("certificates NOT verified".to_string());
            }
            if tls_parts.is_empty() {
                format!("{url} (model {model})")
            } else {
                format!("{url} (model {model}; TLS: {})", tls_parts.join(", "))
            }
        }
    };
    let _ = writeln!(o, "target: {target}");
    if let Some(k) = &exp.kubernetes {
        let _ = writeln!(o, "kubernetes: {}", kubernetes(k));
    }
    for (name, h) in &exp.hosts {
        let how = match h {
            Host::Local => "this machine".to_string(),
            Host::Ssh(s) => {
                format!(
                    "ssh {}{}{}{}",
                    s.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
                    s.host,
                    s.port.map(|p| format!(":{p}")).unwrap_or_default(),
                    if s.strict_host_key_checking {
                        ""
                    } else {
                        " (host key NOT checked)"
                    }
                ) + &s
                    .jump
                    .as_ref()
                    .map(|j| format!(" via {j}"))
                    .unwrap_or_default()
                    + if s.sudo {
                        " (root commands under sudo -n)"
                    } else {
                        ""
                    }
            }
        };
        let _ = writeln!(o, "host {name}: {how}");
    }
    let total = exp.load.schedule.duration();
    let _ = writeln!(o, "load: {}", schedule(&exp.load.schedule));
    let _ = writeln!(o, "\ntimeline:");
    let _ = writeln!(
        o,
        "  t=0s start load; warm-up until {} (not part of the baseline)",
        t(exp.warmup)
    );
    if let Some(s) = &exp.steady_state {
        let _ = writeln!(
            o,
            "  before each fault: check steady state over {} (error rate ≤ {}, TTFT p99 ≤ {})",
            hd(s.window),
            s.max_error_rate.map_or("-".into(), |x| x.to_string()),
            s.max_ttft_p99.map_or("-".into(), |x| hd(x).to_string())
        );
    }
    for f in &exp.timeline {
        let _ = writeln!(
            o,
            "  {} inject {}{}",
            t(f.at),
            describe_fault(f, exp),
            restore(f)
        );
    }
    let _ = writeln!(
        o,
        "  {} stop load; restore anything still injected",
        t(total)
    );
    let _ = writeln!(
        o,
        "\nprobes:{}",
        if exp.probes.is_empty() { " none" } else { "" }
    );
    for p in &exp.probes {
        let what = match &p.check {
            ProbeCheck::Http(h) => format!("GET {} expects {}", h.url, h.expect_status),
            ProbeCheck::Prometheus(q) => format!(
                "prometheus {}{} query `{}`{}",
                q.url(),
                q.url_env
                    .as_ref()
                    .map(|v| format!(" (${v}, default {})", q.url))
                    .unwrap_or_default(),
                q.query,
                q.threshold
                    .map(|x| format!(" fails above {x}"))
                    .unwrap_or_default()
            ),
            ProbeCheck::KubeReady(k) => format!("pods '{}' Ready", k.selector),
            ProbeCheck::Command(c) => format!("on {}: `{}`", c.host, c.run),
        };
        let _ = writeln!(
            o,
            "  {} every {}: {what}{}",
            p.name,
            hd(p.every),
            if p.detection { " (detection)" } else { "" }
        );
    }
    let _ = writeln!(
        o,
        "\nstop conditions:{}",
        if exp.stop_conditions.is_empty() {
            " none"
        } else {
            ""
        }
    );
    for s in &exp.stop_conditions {
        let _ = match s {
            StopCondition::ErrorRateAbove { rate, for_ } => {
                writeln!(o, "  stop if error rate > {rate} for {}", hd(*for_))
            }
            StopCondition::TtftP99Above { ttft, for_ } => {
                writeln!(o, "  stop if TTFT p99 > {} for {}", hd(*ttft), hd(*for_))
            }
        };
    }
    let _ = writeln!(o, "\ncriteria:\n  {}", criteria_line(&exp.criteria));
    for f in &exp.timeline {
        if let Some(c) = &f.criteria {
            let _ = writeln!(o, "  for '{}' instead: {}", f.id, criteria_line(c));
        }
    }
    let a = &exp.analysis;
    let _ = writeln!(
        o,
        "analysis: {} windows, recovered after {} in band (error rate ±{}, TTFT p50 ±{:.0}%, p99 ±{:.0}%, throughput ±{:.0}%), timeout {}, baselines of at least {}",
        hd(a.window),
        a.recovery_windows,
        a.tolerance.error_rate,
        a.tolerance.ttft_p50 * 100.0,
        a.tolerance.ttft_p99 * 100.0,
        a.tolerance.throughput * 100.0,
        a.recovery_timeout
            .map_or("end of load".to_string(), |d| hd(d).to_string()),
        hd(a.baseline_min)
    );
    o
}

fn criteria_line(c: &super::model::Criteria) -> String {
    let opt = |d: Option<Duration>| d.map_or("-".to_string(), |d| hd(d).to_string());
    format!(
        "detection ≤ {}, recovery ≤ {}, error rate during ≤ {}, TTFT p99 increase ≤ {}, must recover: {}",
        opt(c.max_detection),
        opt(c.max_recovery),
        c.max_error_rate_during
            .map_or("-".into(), |x| x.to_string()),
        c.max_ttft_p99_increase
            .map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
        c.must_recover
    )
}
