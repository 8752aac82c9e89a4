//! The fault timeline: resolve `use:` (with `set:` overrides) or inline faults, expand repeats,
//! place entries (`parallel`: their own `at`; `serial`: one after another), and check what can
//! only be checked against the whole experiment — hosts that exist, a `kubernetes` section for
//! kube faults, windows inside the load and after the warm-up, no two faults on one target at
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use humantime::format_duration as hd;

use super::check::{keys, relative};
use super::de::Source;
use super::error::{Location, SpecError};
use super::fault::{RawDefinition, available, find_definition, merge, param_path, parse_fault};
use super::model::{FaultSource, Host, ScheduledFault};
use super::raw::{ExperimentSpec, FaultEntrySpec, Sequence};
use super::suggest::closest;
use super::yaml::{Doc, Seg};
use crate::fault::{FaultSpec, Lifetime};
use crate::limits::{MAX_DURATION, MAX_TIMELINE_EVENTS};

pub struct Context<'a> {
    pub doc: &'a Doc,
    pub spec: &'a ExperimentSpec,
    pub warmup: Duration,
    /// `None` when the load section itself was invalid.
    pub load_duration: Option<Duration>,
}

/// Default pause between faults in `sequence: serial`.
pub const DEFAULT_GAP: Duration = Duration::from_secs(30);

pub fn check_host(
    host: &str,
    hosts: &BTreeMap<String, Host>,
    at: Location,
    used_by: String,
) -> Result<(), SpecError> {
    if hosts.contains_key(host) {
        return Ok(());
    }
    Err(SpecError::UnknownHost {
        at,
        host: host.to_string(),
        used_by,
        suggestion: closest(host, hosts.keys().map(String::as_str)),
        known: hosts.keys().cloned().collect(),
    })
}

/// The faults directory: `faults_dir`, else `faults/` beside the experiment's directory.
fn faults_dir(cx: &Context) -> PathBuf {
    match &cx.spec.faults_dir {
        Some(d) => relative(cx.doc, d),
        None => relative(cx.doc, "../faults".as_ref()),
    }
}

/// One resolved entry, before placement.
struct Resolved {
    index: usize,
    id: String,
    spec: FaultSpec,
    definition: Option<(String, PathBuf)>,
    criteria: Option<super::model::Criteria>,
}

fn resolve(
    cx: &Context,
    i: usize,
    e: &FaultEntrySpec,
    defs: &mut Vec<RawDefinition>,
) -> Result<Resolved, SpecError> {
    let base = vec![Seg::key("faults"), Seg::Index(i)];
    let path = |k: &[&str]| [base.clone(), keys(k)].concat();
    let doc = cx.doc;
    let (spec, definition) = match (&e.use_, &e.fault) {
        (Some(_), Some(_)) => {
            return Err(SpecError::invalid(
                doc.locate_key(&path(&["fault"])),
                "give either 'use' or 'fault', not both",
            ));
        }
        (None, None) => {
            return Err(SpecError::MissingKey {
                at: doc.locate(&base),
                key: "use' or 'fault".into(),
                context: format!("'faults[{i}]'"),
            });
        }
        (None, Some(map)) => {
            if e.set.is_some() {
                return Err(SpecError::invalid(
                    doc.locate_key(&path(&["set"])),
                    "'set' overrides a used definition; edit the inline 'fault' instead",
                ));
            }
            let src = Source::new(doc, path(&["fault"]));
            (parse_fault(map.clone(), &src)?, None)
        }
        (Some(name), None) => {
            let dir = faults_dir(cx);
            let Some(file) = find_definition(&dir, name) else {
                let avail: Vec<String> = available(&dir).into_iter().map(|(n, _)| n).collect();
                return Err(SpecError::UnknownDefinition {
                    at: doc.locate(&path(&["use"])),
                    name: name.clone(),
                    dir,
                    suggestion: closest(name, avail.iter().map(String::as_str)),
                    available: avail,
                });
            };
            defs.push(RawDefinition::read(&file)?);
            let def = defs.last().expect("just pushed");
            let mut fault = def.fault.clone();
            if let Some(set) = &e.set {
                if set.contains_key("kind") {
                    return Err(SpecError::invalid(
                        doc.locate_key(&path(&["set", "kind"])),
                        "'set' cannot change a definition's kind",
                    ));
                }
                merge(&mut fault, set);
            }
            let src = Source {
                layers: vec![(doc, path(&["set"])), (&def.doc, vec![])],
            };
            let spec = parse_fault(fault, &src)?;
            (spec, Some((def.name.clone(), file)))
        }
    };
    let id = e.id.clone().unwrap_or_else(|| match &definition {
        Some((n, _)) => n.clone(),
        None => spec.kind().to_string(),
    });
    Ok(Resolved {
        index: i,
        id,
        spec,
        definition,
        criteria: e.criteria.as_ref().map(super::check::criteria_from),
    })
}

pub fn build(cx: &Context, errors: &mut Vec<SpecError>) -> Vec<ScheduledFault> {
    let doc = cx.doc;
    let entry_path = |i: usize, k: &str| vec![Seg::key("faults"), Seg::Index(i), Seg::key(k)];
    let mut defs = Vec::new();
    let mut out: Vec<(ScheduledFault, usize)> = Vec::new();
    let mut ids = BTreeSet::new();
    let mut cursor: Option<Duration> = None;
    let gap = cx.spec.gap.map(|g| g.0).unwrap_or(DEFAULT_GAP);
    // Counted before anything is built: `repeat: {times: 4000000000}` asked for 64 GB.
    let total: u64 = cx
        .spec
        .faults
        .iter()
        .map(|e| e.repeat.as_ref().map_or(1, |r| u64::from(r.times.max(1))))
        .sum();
    if total > MAX_TIMELINE_EVENTS {
        errors.push(SpecError::invalid(
            doc.locate(&keys(&["faults"])),
            format!(
                "the timeline would hold {total} fault occurrences ({} fault entries, repeats expanded); the limit is {MAX_TIMELINE_EVENTS}",
                cx.spec.faults.len()
            ),
        ));
        return Vec::new();
    }
    for (i, e) in cx.spec.faults.iter().enumerate() {
        // Reported by `limits::check`; skipped here so no offset arithmetic can overflow.
        let too_long = [e.at, e.duration, e.repeat.as_ref().and_then(|r| r.every)]
            .iter()
            .flatten()
            .any(|d| d.0 > MAX_DURATION);
        if too_long {
            continue;
        }
        let r = match resolve(cx, i, e, &mut defs) {
            Ok(r) => r,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        // Where the parameters live, to point at a bad host.
        let params_src: Source = match &r.definition {
            None => Source::new(doc, entry_path(i, "fault")),
            Some(_) => {
                let def = defs.last().expect("resolved a definition");
                Source {
                    layers: vec![(doc, entry_path(i, "set")), (&def.doc, vec![])],
                }
            }
        };
        for h in r.spec.reach().hosts {
            let (host, p) = (h.name, param_path(&h.path));
            let used_by = match &r.definition {
                Some(_) => format!(
                    "fault '{}' (used at {})",
                    r.id,
                    doc.locate(&[Seg::key("faults"), Seg::Index(i)])
                ),
                None => format!("fault '{}'", r.id),
            };
            if let Err(err) = check_host(&host, &cx.spec.hosts, params_src.locate(&p), used_by) {
                errors.push(err);
            }
        }
        let head = if e.use_.is_some() { "use" } else { "fault" };
        if r.spec.uses_kubernetes() && cx.spec.kubernetes.is_none() {
            errors.push(SpecError::NoKubernetes {
                at: doc.locate_key(&entry_path(i, head)),
                what: format!("fault '{}' ({})", r.id, r.spec.kind()),
            });
        }
        let id = if e.id.is_none() && ids.contains(&r.id) {
            format!("{}-{}", r.id, i + 1)
        } else {
            r.id.clone()
        };
        if !ids.insert(id.clone()) {
            errors.push(SpecError::invalid(
                doc.locate(&entry_path(i, "id")),
                format!("fault id '{id}' is used twice"),
            ));
        }
        let duration = e.duration.map(|d| d.0);
        if duration.is_some_and(|d| d.is_zero()) {
            errors.push(SpecError::invalid(
                doc.locate(&entry_path(i, "duration")),
                "'duration' must be longer than 0s (leave it out for a one-shot fault such as pod-kill)",
            ));
            continue;
        }
        if duration.is_none() && r.spec.lifetime() == Lifetime::Held {
            errors.push(SpecError::MissingKey {
                at: doc.locate(&[Seg::key("faults"), Seg::Index(i)]),
                key: "duration".into(),
                context: format!(
                    "'faults[{i}]' (a {} fault lasts until it is restored)",
                    r.spec.kind()
                ),
            });
            continue;
        }
        let start = match (cx.spec.sequence, e.at, cursor) {
            (Sequence::Serial, _, Some(c)) => c,
            (_, Some(at), _) => at.0,
            (Sequence::Serial, None, None) => cx.warmup,
            (Sequence::Parallel, None, _) => {
                errors.push(SpecError::MissingKey {
                    at: doc.locate(&[Seg::key("faults"), Seg::Index(i)]),
                    key: "at".into(),
                    context: format!("'faults[{i}]' (offset from the load's start, e.g. at: 30s)"),
                });
                continue;
            }
        };
        let (times, every) = match &e.repeat {
            None => (1, Duration::ZERO),
            Some(rep) => match (rep.times, rep.every) {
                (0, _) => {
                    errors.push(SpecError::invalid(
                        doc.locate(&[entry_path(i, "repeat"), keys(&["times"])].concat()),
                        "'times' must be at least 1",
                    ));
                    continue;
                }
                (1, e) => (1, e.map(|d| d.0).unwrap_or_default()),
                (n, Some(every)) if !every.0.is_zero() => (n, every.0),
                (_, Some(_)) => {
                    errors.push(SpecError::invalid(
                        doc.locate(&[entry_path(i, "repeat"), keys(&["every"])].concat()),
                        "'every' must be longer than 0s (the pause between repeats, e.g. every: 45s)",
                    ));
                    continue;
                }
                (_, None) => {
                    errors.push(SpecError::MissingKey {
                        at: doc.locate(&entry_path(i, "repeat")),
                        key: "every".into(),
                        context: format!("'faults[{i}].repeat'"),
                    });
                    continue;
                }
            },
        };
        for (k, occ) in expand(start, every, times).into_iter().enumerate() {
            let f = ScheduledFault {
                id: if k == 0 {
                    id.clone()
                } else {
                    format!("{id}#{}", k + 1)
                },
                spec: r.spec.clone(),
                at: occ,
                duration,
                criteria: r.criteria.clone(),
                source: FaultSource {
                    entry: doc.locate(&[Seg::key("faults"), Seg::Index(r.index)]),
                    definition: r.definition.clone(),
                    occurrence: k as u32 + 1,
                },
            };
            cursor = Some(f.end() + gap);
            out.push((f, i));
        }
    }
    check_windows(cx, &out, errors);
    check_overlaps(cx, &out, errors);
    let mut timeline: Vec<ScheduledFault> = out.into_iter().map(|(f, _)| f).collect();
    timeline.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    timeline
}

/// Start offsets of `times` occurrences, `every` apart.
pub fn expand(start: Duration, every: Duration, times: u32) -> Vec<Duration> {
    (0..times).map(|k| start + every * k).collect()
}

fn window(f: &ScheduledFault) -> String {
    match f.duration {
        Some(_) => format!("t={}..{}", hd(f.at), hd(f.end())),
        None => format!("t={}", hd(f.at)),
    }
}

fn check_windows(cx: &Context, all: &[(ScheduledFault, usize)], errors: &mut Vec<SpecError>) {
    let serial = cx.spec.sequence == Sequence::Serial;
    for (f, i) in all {
        let at = |k: &str| {
            let p = vec![Seg::key("faults"), Seg::Index(*i), Seg::key(k)];
            if !serial && cx.doc.root.get(&p).is_some() {
                cx.doc.locate(&p)
            } else {
                cx.doc.locate(&p[..2])
            }
        };
        if f.at < cx.warmup {
            errors.push(SpecError::OutsideLoad {
                at: at("at"),
                id: f.id.clone(),
                problem: format!(
                    "starts at t={}, during the warm-up (until t={}); faults must start after it",
                    hd(f.at),
                    hd(cx.warmup)
                ),
            });
        }
        if let Some(total) = cx.load_duration
            && f.end() > total
        {
            let what = if f.duration.is_some() {
                format!("ends at t={} ({})", hd(f.end()), window(f))
            } else {
                format!("fires at t={}", hd(f.at))
            };
            errors.push(SpecError::OutsideLoad {
                at: at(if f.duration.is_some() {
                    "duration"
                } else {
                    "at"
                }),
                id: f.id.clone(),
                problem: format!("{what}, after the load ends at t={}", hd(total)),
            });
        }
    }
}

fn check_overlaps(cx: &Context, all: &[(ScheduledFault, usize)], errors: &mut Vec<SpecError>) {
    // One-shot faults occupy an instant; give it a width so that it can collide.
    let span = |f: &ScheduledFault| (f.at, f.end().max(f.at + Duration::from_millis(1)));
    let mut reported = BTreeSet::new();
    for (a_idx, (a, ia)) in all.iter().enumerate() {
        for (b, ib) in &all[a_idx + 1..] {
            let ((a0, a1), (b0, b1)) = (span(a), span(b));
            if !(a0 < b1 && b0 < a1) {
                continue;
            }
            let ta = a.spec.targets();
            let Some(target) = b.spec.targets().into_iter().find(|t| ta.contains(t)) else {
                continue;
            };
            let (first, second, i_second) = if (a.at, ia) <= (b.at, ib) {
                (a, b, ib)
            } else {
                (b, a, ia)
            };
            if !reported.insert((*ia.min(ib), *ia.max(ib))) {
                continue;
            }
            errors.push(SpecError::Overlap {
                at: cx.doc.locate(&[Seg::key("faults"), Seg::Index(*i_second)]),
                id: second.id.clone(),
                window: window(second),
                other: first.id.clone(),
                other_window: window(first),
                target,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_expands_to_evenly_spaced_starts() {
        let s = |n| Duration::from_secs(n);
        assert_eq!(expand(s(30), s(20), 3), vec![s(30), s(50), s(70)]);
        assert_eq!(expand(s(30), Duration::ZERO, 1), vec![s(30)]);
    }
}
