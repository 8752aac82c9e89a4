//! The smaller sections of an experiment: probes, stop conditions, analysis settings.

use std::collections::BTreeSet;
use std::time::Duration;

use super::check::{dur, keys};
use super::error::SpecError;
use super::model::*;
use super::raw::{ExperimentSpec, ProbeSpec};
use super::timeline;
use super::yaml::{Doc, Seg};

pub fn probes(spec: &ExperimentSpec, doc: &Doc, errors: &mut Vec<SpecError>) -> Vec<Probe> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, p) in spec.probes.iter().enumerate() {
        let base = vec![Seg::key("probes"), Seg::Index(i)];
        let at = |k: &[&str]| doc.locate(&[base.clone(), keys(k)].concat());
        if !names.insert(p.name.clone()) {
            errors.push(SpecError::invalid(
                at(&["name"]),
                format!("probe name '{}' is used twice", p.name),
            ));
        }
        let ProbeSpec {
            http,
            prometheus,
            kube_ready,
            command,
            ..
        } = p;
        let checks: Vec<ProbeCheck> = [
            http.clone().map(ProbeCheck::Http),
            prometheus.clone().map(ProbeCheck::Prometheus),
            kube_ready.clone().map(ProbeCheck::KubeReady),
            command.clone().map(ProbeCheck::Command),
        ]
        .into_iter()
        .flatten()
        .collect();
        if checks.len() != 1 {
            errors.push(SpecError::invalid(
                at(&[]),
                format!(
                    "probe '{}' needs exactly one of 'http', 'prometheus', 'kube_ready', 'command'",
                    p.name
                ),
            ));
            continue;
        }
        let mut check = checks.into_iter().next().expect("one");
        let resolved = match &mut check {
            ProbeCheck::Http(h) => Some((&mut h.tls, "http")),
            ProbeCheck::Prometheus(q) => Some((&mut q.tls, "prometheus")),
            _ => None,
        };
        if let Some((opts, kind)) = resolved {
            let path = [base.clone(), keys(&[kind, "tls"])].concat();
            match super::check::tls(opts, doc, &path) {
                Ok(o) => *opts = o,
                Err(e) => errors.push(e),
            }
        }
        match &check {
            ProbeCheck::Command(c) => {
                if let Err(e) = timeline::check_host(
                    &c.host,
                    &spec.hosts,
                    at(&["command", "host"]),
                    format!("probe '{}'", p.name),
                ) {
                    errors.push(e);
                }
            }
            ProbeCheck::KubeReady(_) if spec.kubernetes.is_none() => {
                errors.push(SpecError::NoKubernetes {
                    at: at(&["kube_ready"]),
                    what: format!("probe '{}' (kube_ready)", p.name),
                })
            }
            _ => {}
        }
        out.push(Probe {
            name: p.name.clone(),
            every: dur(p.every, Duration::from_secs(1)),
            detection: p.detection,
            check,
        });
    }
    out
}

pub fn stop_conditions(
    spec: &ExperimentSpec,
    doc: &Doc,
    errors: &mut Vec<SpecError>,
) -> Vec<StopCondition> {
    let mut out = Vec::new();
    for (i, s) in spec.stop_conditions.iter().enumerate() {
        let at = doc.locate(&[Seg::key("stop_conditions"), Seg::Index(i)]);
        match (s.error_rate_above, s.ttft_p99_above) {
            (Some(rate), None) => out.push(StopCondition::ErrorRateAbove {
                rate,
                for_: s.for_.0,
            }),
            (None, Some(ttft)) => out.push(StopCondition::TtftP99Above {
                ttft: ttft.0,
                for_: s.for_.0,
            }),
            _ => errors.push(SpecError::invalid(
                at,
                "a stop condition needs exactly one of 'error_rate_above', 'ttft_p99_above'",
            )),
        }
    }
    out
}

/// The shortest stretch of windows before a fault that serves as its own baseline.
pub const DEFAULT_BASELINE_MIN: Duration = Duration::from_secs(20);

pub fn analysis(spec: &ExperimentSpec, doc: &Doc, errors: &mut Vec<SpecError>) -> Analysis {
    let a = spec.analysis.as_ref();
    let t = a.and_then(|a| a.tolerance.as_ref());
    let d = Tolerance::default();
    let tol = |v: Option<f64>, def: f64, k: &str, errors: &mut Vec<SpecError>| match v {
        Some(v) if !(v.is_finite() && v >= 0.0) => {
            errors.push(SpecError::WrongType {
                at: doc.locate(&keys(&["analysis", "tolerance", k])),
                key: k.into(),
                value: format!("'{v}'"),
                message: "must be a fraction >= 0".into(),
            });
            def
        }
        v => v.unwrap_or(def),
    };
    let tolerance = Tolerance {
        error_rate: tol(
            t.and_then(|t| t.error_rate),
            d.error_rate,
            "error_rate",
            errors,
        ),
        ttft_p50: tol(t.and_then(|t| t.ttft_p50), d.ttft_p50, "ttft_p50", errors),
        ttft_p99: tol(t.and_then(|t| t.ttft_p99), d.ttft_p99, "ttft_p99", errors),
        throughput: tol(
            t.and_then(|t| t.throughput),
            d.throughput,
            "throughput",
            errors,
        ),
    };
    let recovery_windows = a.and_then(|a| a.recovery_windows).unwrap_or(5);
    if recovery_windows == 0 {
        errors.push(SpecError::invalid(
            doc.locate(&keys(&["analysis", "recovery_windows"])),
            "'recovery_windows' must be at least 1",
        ));
    }
    let window = dur(a.and_then(|a| a.window), Duration::from_secs(1));
    let baseline_min = a
        .and_then(|a| a.baseline_min.as_ref())
        .map_or(DEFAULT_BASELINE_MIN.max(window), |d| d.0);
    if baseline_min < window {
        errors.push(SpecError::invalid(
            doc.locate(&keys(&["analysis", "baseline_min"])),
            format!(
                "'baseline_min' {} is shorter than one analysis window ({})",
                humantime::format_duration(baseline_min),
                humantime::format_duration(window)
            ),
        ));
    }
    Analysis {
        window,
        recovery_windows,
        tolerance,
        recovery_timeout: a.and_then(|a| a.recovery_timeout).map(|d| d.0),
        baseline_min,
    }
}
