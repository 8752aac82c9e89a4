//! [`ExperimentSpec`] → [`Experiment`]: every section checked, every problem collected with its
//! position, before anything runs. The fault timeline lives in [`super::timeline`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::de::{Source, from_value};
use super::error::SpecError;
use super::model::*;
use super::raw::{ExperimentSpec, LoadSpec, TargetSpec};
use super::sections::{analysis, probes, stop_conditions};
use super::suggest::closest;
use super::timeline;
use super::yaml::{Doc, Seg};
use crate::duration::Dur;
use crate::load::schedule_spec::{ScheduleSpec, ScheduleSpecError};
use crate::load::workload::Workload;
use crate::sim::SimConfig;

/// A key path from plain keys.
pub fn keys(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|k| Seg::key(k)).collect()
}

fn keep<T>(r: Result<T, SpecError>, errors: &mut Vec<SpecError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

pub fn dur(d: Option<Dur>, default: Duration) -> Duration {
    d.map(|d| d.0).unwrap_or(default)
}

/// Relative paths in a spec are relative to the spec file.
pub fn relative(doc: &Doc, p: &Path) -> PathBuf {
    doc.path.parent().unwrap_or(Path::new(".")).join(p)
}

/// A `tls:` section at `at`: relative paths resolved against the file, then the files read and
/// checked now (a CA file that is not PEM should stop the run before anything starts, with the
/// key that names it).
pub fn tls(t: &TlsOptions, doc: &Doc, at: &[Seg]) -> Result<TlsOptions, SpecError> {
    use crate::tls::TlsError as E;
    let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| relative(doc, p));
    let opts = TlsOptions {
        ca_cert: resolve(&t.ca_cert),
        client_cert: resolve(&t.client_cert),
        client_key: resolve(&t.client_key),
        insecure: t.insecure,
    };
    crate::tls::client_config(&opts).map_err(|e| {
        let key = match &e {
            E::Read { what, .. } | E::Pem { what, .. } if what.starts_with("CA") => "ca_cert",
            E::BadCa { .. } | E::NoRoots => "ca_cert",
            E::Read { what, .. } | E::Pem { what, .. } if what.contains("key") => "client_key",
            E::Read { .. } | E::Pem { .. } | E::ClientIdentity { .. } => "client_cert",
            E::HalfClientIdentity | E::Config(_) => "",
        };
        let mut path = at.to_vec();
        if !key.is_empty() {
            path.push(Seg::key(key));
        }
        SpecError::invalid(doc.locate(&path), e.to_string())
    })?;
    Ok(opts)
}

pub fn check(doc: &Doc) -> Result<Experiment, SpecError> {
    let spec: ExperimentSpec = from_value(doc.root.to_json(), &Source::new(doc, vec![]))?;
    let mut errors = Vec::new();
    super::limits::check(&spec, doc, &mut errors);
    let target = keep(target(&spec.target, doc), &mut errors);
    let kubernetes = spec.kubernetes.as_ref().map(|k| Kubernetes {
        kubeconfig: match k.kubeconfig.as_deref() {
            None => Kubeconfig::Default,
            Some("sim") => Kubeconfig::Sim,
            Some(p) => Kubeconfig::Path(relative(doc, Path::new(p))),
        },
        context: k.context.clone(),
        namespace: k.namespace.clone(),
    });
    let load = keep(load(&spec.load, doc), &mut errors);
    let warmup = dur(spec.warmup, Duration::from_secs(10));
    let load_duration = load.as_ref().map(|l| l.schedule.duration());
    if let Some(total) = load_duration
        && warmup >= total
    {
        errors.push(SpecError::invalid(
            doc.locate(&keys(&["warmup"])),
            format!(
                "warmup {} is not shorter than the load ({})",
                humantime::format_duration(warmup),
                humantime::format_duration(total)
            ),
        ));
    }
    let ctx = timeline::Context {
        doc,
        spec: &spec,
        warmup,
        load_duration,
    };
    let timeline = timeline::build(&ctx, &mut errors);
    jumps(&spec, doc, &mut errors);
    let probes = probes(&spec, doc, &mut errors);
    let steady_state = spec.steady_state.as_ref().map(|s| SteadyState {
        max_error_rate: s.max_error_rate,
        max_ttft_p99: s.max_ttft_p99.map(|d| d.0),
        window: dur(s.window, Duration::from_secs(10)),
    });
    let stop_conditions = stop_conditions(&spec, doc, &mut errors);
    let criteria = spec
        .criteria
        .as_ref()
        .map(criteria_from)
        .unwrap_or(Criteria {
            max_detection: None,
            max_recovery: None,
            max_error_rate_during: None,
            max_ttft_p99_increase: None,
            must_recover: true,
        });
    let analysis = analysis(&spec, doc, &mut errors);
    SpecError::collect(errors)?;
    let stem = doc.path.file_stem().unwrap_or_default().to_string_lossy();
    Ok(Experiment {
        name: spec.name.clone().unwrap_or_else(|| stem.into_owned()),
        description: spec.description.clone(),
        source: doc.path.clone(),
        target: target.expect("no errors"),
        hosts: spec.hosts.clone(),
        kubernetes,
        load: load.expect("no errors"),
        warmup,
        sequence: spec.sequence,
        timeline,
        probes,
        steady_state,
        stop_conditions,
        criteria,
        analysis,
    })
}

fn target(t: &TargetSpec, doc: &Doc) -> Result<Target, SpecError> {
    let at = |k: &[&str]| doc.locate(&keys(k));
    // Experiments default to chat: it is what serving teams put in front of users.
    let api = t.api.unwrap_or(super::raw::Api::Chat);
    let timeout = t.timeout.map(|d| d.0);
    match (&t.sim, &t.endpoint) {
        (Some(_), Some(_)) => Err(SpecError::invalid(
            at(&["target", "endpoint"]),
            "a target is either 'sim' or 'endpoint', not both",
        )),
        (None, None) => Err(SpecError::MissingKey {
            at: at(&["target"]),
            key: "sim' or 'endpoint".into(),
            context: "'target'".into(),
        }),
        (Some(sim), None) => {
            if t.model.is_some()
                || t.api_key_env.is_some()
                || !t.headers.is_empty()
                || t.tls.is_some()
            {
                return Err(SpecError::invalid(
                    at(&["target"]),
                    "'model', 'api_key_env', 'headers' and 'tls' apply to an endpoint target; the sim's model comes from its config",
                ));
            }
            let mut overrides = sim.clone();
            let preset = match overrides.remove("preset") {
                None => "h100x4-70b".to_string(),
                Some(Value::String(p)) => p,
                Some(v) => format!("{v}"),
            };
            let Some(base) = SimConfig::preset(&preset) else {
                let known = SimConfig::preset_names();
                return Err(SpecError::WrongType {
                    at: at(&["target", "sim", "preset"]),
                    key: "preset".into(),
                    value: format!("'{preset}'"),
                    message: match closest(&preset, known.iter().copied()) {
                        Some(s) => format!(
                            "unknown sim preset; did you mean '{s}'? (known: {})",
                            known.join(", ")
                        ),
                        None => format!("unknown sim preset (known: {})", known.join(", ")),
                    },
                });
            };
            let Ok(Value::Object(mut merged)) = serde_json::to_value(&base) else {
                unreachable!("a sim config serializes to a mapping")
            };
            super::fault::merge(&mut merged, &overrides);
            let src = Source::new(doc, keys(&["target", "sim"]));
            let config: SimConfig = from_value(Value::Object(merged), &src)?;
            config
                .validate()
                .map_err(|e| SpecError::invalid(at(&["target", "sim"]), e.to_string()))?;
            Ok(Target::Sim {
                preset,
                config,
                api,
                timeout,
            })
        }
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SpecError::WrongType {
                    at: at(&["target", "endpoint"]),
                    key: "endpoint".into(),
                    value: format!("'{url}'"),
                    message: "expected an http:// or https:// URL".into(),
                });
            }
            let model = t.model.clone().ok_or_else(|| SpecError::MissingKey {
                at: at(&["target"]),
                key: "model".into(),
                context: "'target' (the model name the endpoint serves)".into(),
            })?;
            let tls = match &t.tls {
                Some(opts) => tls(opts, doc, &keys(&["target", "tls"]))?,
                None => TlsOptions::default(),
            };
            Ok(Target::Endpoint {
                url: url.clone(),
                model,
                api,
                timeout,
                api_key_env: t.api_key_env.clone(),
                headers: t.headers.clone(),
                tls,
            })
        }
    }
}

fn load(l: &LoadSpec, doc: &Doc) -> Result<Load, SpecError> {
    let at = |k: &str| doc.locate(&keys(&["load", k]));
    let conflict = |a: &str, b: &str| {
        SpecError::invalid(
            at(b),
            format!("'{b}' cannot be combined with '{a}' in 'load'"),
        )
    };
    let bad = |k: &str, e: &dyn std::fmt::Display| SpecError::invalid(at(k), e.to_string());
    // The one conversion (and its defaults) that `faultline load` uses too.
    let shape = ScheduleSpec {
        rate: l.rate,
        duration: l.duration.map(|d| d.0),
        arrival: l.arrival.clone(),
        burstiness: l.burstiness,
        ramp_to: l.ramp_to,
        steps: l.steps.clone(),
        concurrency: l.concurrency,
        max_in_flight: l.max_in_flight,
        trace: l.trace.as_ref().map(|p| relative(doc, p)),
    };
    let schedule = shape.to_schedule().map_err(|e| match e {
        ScheduleSpecError::Invalid {
            key,
            value,
            message,
        } => SpecError::WrongType {
            at: at(key),
            key: key.to_string(),
            value,
            message,
        },
        ScheduleSpecError::Conflict { key, with } => conflict(with, key),
        ScheduleSpecError::Parse { key, source } => bad(key, &source),
    })?;
    let workload = match (&l.corpus, &l.workload) {
        (Some(_), Some(_)) => return Err(conflict("workload", "corpus")),
        (Some(p), None) => {
            Workload::load_corpus(&relative(doc, p)).map_err(|e| bad("corpus", &e))?
        }
        (None, Some(mix)) => Workload::parse_mix(mix).map_err(|e| bad("workload", &e))?,
        (None, None) => Workload::default_mix(),
    };
    if l.max_connections == Some(0)
        || l.max_connections
            .is_some_and(|n| n as u64 > crate::limits::MAX_CONCURRENCY)
    {
        return Err(SpecError::invalid(
            at("max_connections"),
            format!(
                "'max_connections' {} must be from 1 to {}",
                l.max_connections.unwrap_or_default(),
                crate::limits::MAX_CONCURRENCY
            ),
        ));
    }
    if l.max_dispatch_lag.is_some_and(|d| d.0.is_zero()) {
        return Err(SpecError::invalid(
            at("max_dispatch_lag"),
            "'max_dispatch_lag' must be greater than zero".to_string(),
        ));
    }
    let mut overload = crate::load::pool::Overload {
        max_connections: l.max_connections,
        ..Default::default()
    };
    if let Some(d) = l.max_dispatch_lag {
        overload.max_dispatch_lag = d.0;
    }
    Ok(Load {
        schedule,
        workload,
        seed: l.seed,
        overload,
    })
}

/// The checked form of a `criteria` section (the experiment's, or a fault entry's own).
pub(super) fn criteria_from(c: &super::raw::CriteriaSpec) -> Criteria {
    Criteria {
        max_detection: c.max_detection.map(|d| d.0),
        max_recovery: c.max_recovery.map(|d| d.0),
        max_error_rate_during: c.max_error_rate_during,
        max_ttft_p99_increase: c.max_ttft_p99_increase,
        must_recover: c.must_recover,
    }
}

/// Every `jump` names an ssh host of the section that has no jump of its own.
fn jumps(spec: &ExperimentSpec, doc: &super::yaml::Doc, errors: &mut Vec<SpecError>) {
    use super::raw::HostSpec;
    use super::yaml::Seg;
    for (name, h) in &spec.hosts {
        let HostSpec::Ssh(s) = h else { continue };
        let Some(j) = &s.jump else { continue };
        let at = doc.locate(&[
            Seg::key("hosts"),
            Seg::key(name),
            Seg::key("ssh"),
            Seg::key("jump"),
        ]);
        if let Err(e) =
            timeline::check_host(j, &spec.hosts, at.clone(), format!("host '{name}' (jump)"))
        {
            errors.push(e);
            continue;
        }
        match spec.hosts.get(j) {
            Some(HostSpec::Ssh(js)) if js.jump.is_none() && j != name => {}
            _ => errors.push(SpecError::invalid(
                at,
                format!(
                    "jump '{j}' of host '{name}' must be an ssh host of the hosts section without a jump of its own"
                ),
            )),
        }
    }
}
