//! Range checks on an experiment that serde cannot express, all reported at once with the value
//! and its `file:line:column`, so that `validate` accepts exactly what `run` will run.
//!
//! Each one is a value that used to pass `validate` and then broke at run time: `every: 0s`
//! (panicked the probe watcher), `analysis.window: 0s` (a result.json faultline could not read
//! back), `max_error_rate: 2`, `error_rate_above: -1`, rates of `1e23` or `4.9e-324`, durations
//! of `100000h` (memory for every window). The limits themselves live in [`crate::limits`].

use super::check::keys;
use super::error::SpecError;
use super::raw::{CriteriaSpec, ExperimentSpec};
use super::yaml::{Doc, Seg};
use crate::limits::*;
use humantime::format_duration as hd;
use std::time::Duration;

/// A number quoted as a person would write it (`'1e23'`, not 24 digits; `'5e-324'`, not 324).
fn num(v: f64) -> String {
    if v != 0.0 && !(1e-4..1e15).contains(&v.abs()) {
        format!("'{v:e}'")
    } else {
        format!("'{v}'")
    }
}

struct Checker<'a> {
    doc: &'a Doc,
    errors: &'a mut Vec<SpecError>,
}

impl Checker<'_> {
    fn push(&mut self, path: Vec<Seg>, value: String, message: String) {
        let key = match path.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => super::yaml::path_string(&path),
        };
        self.errors.push(SpecError::WrongType {
            at: self.doc.locate(&path),
            key,
            value,
            message,
        });
    }

    /// A fraction in [0, 1] (an error rate).
    fn fraction(&mut self, path: Vec<Seg>, v: Option<f64>) {
        if let Some(v) = v
            && !(v.is_finite() && (0.0..=1.0).contains(&v))
        {
            self.push(path, num(v), "must be a fraction in [0, 1]".into());
        }
    }

    /// A finite number >= 0 (a factor or threshold).
    fn non_negative(&mut self, path: Vec<Seg>, v: Option<f64>) {
        if let Some(v) = v
            && !(v.is_finite() && v >= 0.0)
        {
            self.push(path, num(v), "must be a number >= 0".into());
        }
    }

    /// A duration at most [`MAX_DURATION`], and longer than zero when `positive`.
    fn duration(&mut self, path: Vec<Seg>, d: Option<Duration>, positive: bool) {
        let Some(d) = d else { return };
        if positive && d.is_zero() {
            self.push(path, "'0s'".into(), "must be longer than 0s".into());
        } else if d > MAX_DURATION {
            self.push(
                path,
                format!("'{}'", hd(d)),
                format!("must be at most {}", hd(MAX_DURATION)),
            );
        }
    }

    fn criteria(&mut self, base: Vec<Seg>, c: &CriteriaSpec) {
        let at = |k: &str| [base.clone(), keys(&[k])].concat();
        self.fraction(at("max_error_rate_during"), c.max_error_rate_during);
        self.non_negative(at("max_ttft_p99_increase"), c.max_ttft_p99_increase);
        self.duration(at("max_detection"), c.max_detection.map(|d| d.0), false);
        self.duration(at("max_recovery"), c.max_recovery.map(|d| d.0), false);
    }
}

/// Every range problem of `spec`, pushed to `errors`.
pub fn check(spec: &ExperimentSpec, doc: &Doc, errors: &mut Vec<SpecError>) {
    let mut c = Checker { doc, errors };
    if let Some(name) = &spec.name {
        let bad = if name.chars().count() > MAX_NAME_CHARS {
            Some(format!("is longer than {MAX_NAME_CHARS} characters"))
        } else if name.trim().is_empty() {
            Some("is empty".to_string())
        } else if name.chars().any(|ch| ch.is_control() || ch == '/') {
            Some("holds a '/' or a control character (it names the results folder)".to_string())
        } else {
            None
        };
        if let Some(why) = bad {
            c.push(
                keys(&["name"]),
                format!("'{}'", quoted(name)),
                format!("the name {why}"),
            );
        }
    }
    // The `load` section's limits are checked by its conversion to a schedule
    // (`crate::load::schedule_spec`), the same one `faultline load` uses.
    c.duration(keys(&["warmup"]), spec.warmup.map(|d| d.0), false);
    c.duration(keys(&["gap"]), spec.gap.map(|d| d.0), false);
    c.duration(
        keys(&["target", "timeout"]),
        spec.target.timeout.map(|d| d.0),
        true,
    );
    for (i, e) in spec.faults.iter().enumerate() {
        let at = |k: &[&str]| [vec![Seg::key("faults"), Seg::Index(i)], keys(k)].concat();
        c.duration(at(&["at"]), e.at.map(|d| d.0), false);
        // A zero `duration` and a zero `every` are reported by the timeline, with their meaning.
        c.duration(at(&["duration"]), e.duration.map(|d| d.0), false);
        if let Some(r) = &e.repeat {
            c.duration(at(&["repeat", "every"]), r.every.map(|d| d.0), false);
        }
        if let Some(cr) = &e.criteria {
            c.criteria(at(&["criteria"]), cr);
        }
    }
    for (i, p) in spec.probes.iter().enumerate() {
        let at = |k: &[&str]| [vec![Seg::key("probes"), Seg::Index(i)], keys(k)].concat();
        c.duration(at(&["every"]), p.every.map(|d| d.0), true);
        if let Some(k) = &p.kube_ready {
            if k.selector.trim().is_empty() {
                c.push(
                    at(&["kube_ready", "selector"]),
                    "''".into(),
                    "an empty selector; name the pods (e.g. app=vllm)".into(),
                );
            } else if let Err(reason) = crate::common::Selector::parse(&k.selector) {
                c.push(
                    at(&["kube_ready", "selector"]),
                    format!("'{}'", quoted(&k.selector)),
                    format!("not a label selector: {reason}"),
                );
            }
        }
    }
    if let Some(s) = &spec.steady_state {
        c.fraction(keys(&["steady_state", "max_error_rate"]), s.max_error_rate);
        c.duration(
            keys(&["steady_state", "window"]),
            s.window.map(|d| d.0),
            true,
        );
        c.duration(
            keys(&["steady_state", "max_ttft_p99"]),
            s.max_ttft_p99.map(|d| d.0),
            false,
        );
    }
    for (i, s) in spec.stop_conditions.iter().enumerate() {
        let at = |k: &str| [vec![Seg::key("stop_conditions"), Seg::Index(i)], keys(&[k])].concat();
        c.fraction(at("error_rate_above"), s.error_rate_above);
        c.duration(at("for"), Some(s.for_.0), false);
        c.duration(at("ttft_p99_above"), s.ttft_p99_above.map(|d| d.0), false);
    }
    if let Some(cr) = &spec.criteria {
        c.criteria(keys(&["criteria"]), cr);
    }
    if let Some(a) = &spec.analysis {
        c.duration(keys(&["analysis", "window"]), a.window.map(|d| d.0), true);
        c.duration(
            keys(&["analysis", "recovery_timeout"]),
            a.recovery_timeout.map(|d| d.0),
            true,
        );
        if let Some(n) = a.recovery_windows
            && u64::from(n) > MAX_TIMELINE_EVENTS
        {
            c.push(
                keys(&["analysis", "recovery_windows"]),
                format!("'{n}'"),
                format!("must be at most {MAX_TIMELINE_EVENTS}"),
            );
        }
    }
}
