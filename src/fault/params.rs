//! Range checks on a fault definition's parameters that serde cannot express, shared by
//! `validate`/`run` (located at `file:line:column` by the spec reader) and by `faultline inject`,
//! so that nothing is accepted on one path and refused — or worse, run — on another.
//!
//! Why each: an empty pod selector selects *every* pod in the namespace (a `run` deleted them all),
//! so it must be asked for explicitly with `all_pods: true`; a selector that does not parse was
//! caught only at preflight; `count: 0`, `percent: 150`, `gpus: []` and a multiplier of `1e15`
//! were accepted and failed (or exploded) at run time.

use crate::fault::{FaultSpec, pod_kill::KillMode};
use crate::limits::{MAX_MULTIPLIER, quoted};
use crate::sim::kube::Selector;

/// One problem: the key path inside the definition (e.g. `["targets", "0", "gpus"]`), the value
/// as written, and what is wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub path: Vec<String>,
    pub value: String,
    pub message: String,
}

fn problem(path: &[&str], value: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.iter().map(|s| s.to_string()).collect(),
        value: value.into(),
        message: message.into(),
    }
}

fn selector(selector: &str, all_pods: bool, out: &mut Vec<Problem>) {
    let v = format!("'{}'", quoted(selector));
    if selector.trim().is_empty() {
        if !all_pods {
            out.push(problem(
                &["selector"],
                v,
                "an empty selector selects every pod in the namespace; say `all_pods: true` if that is meant",
            ));
        }
    } else if all_pods {
        out.push(problem(
            &["all_pods"],
            "'true'",
            "`all_pods: true` needs an empty selector (it selects every pod)",
        ));
    } else if let Err(reason) = Selector::parse(selector) {
        out.push(problem(
            &["selector"],
            v,
            format!("not a label selector: {reason}"),
        ));
    }
}

/// Every problem with `spec`'s parameters (empty: fine).
pub fn problems(spec: &FaultSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    match spec {
        FaultSpec::LoadSpike(p) => {
            if !(p.multiplier.is_finite() && p.multiplier > 0.0) {
                out.push(problem(
                    &["multiplier"],
                    format!("'{}'", p.multiplier),
                    "must be a positive number (2.0 = twice the traffic)",
                ));
            } else if p.multiplier > MAX_MULTIPLIER {
                out.push(problem(
                    &["multiplier"],
                    format!("'{}'", p.multiplier),
                    format!("must be at most {MAX_MULTIPLIER}"),
                ));
            }
        }
        FaultSpec::GpuLockout(p) => {
            if p.targets.is_empty() {
                out.push(problem(
                    &["targets"],
                    "[]",
                    "needs at least one {host, gpus}",
                ));
            }
            for (i, t) in p.targets.iter().enumerate() {
                if t.gpus.is_empty() {
                    out.push(problem(
                        &["targets", &i.to_string(), "gpus"],
                        "[]",
                        "needs at least one GPU (an index, UUID or PCI bus id)",
                    ));
                }
            }
        }
        FaultSpec::SshCommand(p) => {
            if p.hosts.is_empty() {
                out.push(problem(&["hosts"], "[]", "needs at least one host"));
            }
        }
        FaultSpec::PodKill(p) => {
            selector(&p.selector, p.all_pods, &mut out);
            match p.mode {
                KillMode::Count(0) => {
                    out.push(problem(&["mode", "count"], "'0'", "must be at least 1"))
                }
                KillMode::Percent(pct) if !(pct > 0.0 && pct <= 100.0) => out.push(problem(
                    &["mode", "percent"],
                    format!("'{pct}'"),
                    "must be in (0, 100]",
                )),
                _ => {}
            }
        }
        FaultSpec::NetworkPartition(p) => selector(&p.selector, p.all_pods, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: serde_json::Value) -> FaultSpec {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn each_out_of_range_parameter_is_one_problem_naming_its_key() {
        use serde_json::json;
        for (fault, key, needle) in [
            (
                json!({"kind": "pod-kill", "selector": ""}),
                "selector",
                "all_pods: true",
            ),
            (
                json!({"kind": "pod-kill", "selector": "app in (x"}),
                "selector",
                "not a label selector",
            ),
            (
                json!({"kind": "pod-kill", "selector": "a=b", "mode": {"count": 0}}),
                "mode.count",
                "at least 1",
            ),
            (
                json!({"kind": "pod-kill", "selector": "a=b", "mode": {"percent": 150.0}}),
                "mode.percent",
                "(0, 100]",
            ),
            (
                json!({"kind": "network-partition", "selector": " "}),
                "selector",
                "every pod",
            ),
            (
                json!({"kind": "network-partition", "selector": "a=b", "all_pods": true}),
                "all_pods",
                "empty selector",
            ),
            (
                json!({"kind": "load-spike", "multiplier": 1e15}),
                "multiplier",
                "at most 1000",
            ),
            (
                json!({"kind": "load-spike", "multiplier": -1.0}),
                "multiplier",
                "positive",
            ),
            (
                json!({"kind": "gpu-lockout", "targets": [{"host": "h", "gpus": []}]}),
                "targets.0.gpus",
                "at least one GPU",
            ),
        ] {
            let p = problems(&spec(fault.clone()));
            assert_eq!(p.len(), 1, "{fault}: {p:?}");
            assert_eq!(p[0].path.join("."), key, "{fault}");
            assert!(p[0].message.contains(needle), "{fault}: {}", p[0].message);
        }
        let ok = json!({"kind": "pod-kill", "selector": "", "all_pods": true});
        assert!(problems(&spec(ok)).is_empty());
    }
}
