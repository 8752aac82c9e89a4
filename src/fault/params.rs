//! Range checks on a fault definition's parameters that serde cannot express, shared by
//! `validate`/`run` (located at `file:line:column` by the spec reader) and by `faultline inject`,
//! so that nothing is accepted on one path and refused — or worse, run — on another.
//!
//! Why each: an empty pod selector selects *every* pod in the namespace (a `run` deleted them all),
//! so it must be asked for explicitly with `all_pods: true`; a selector that does not parse was
//! caught only at preflight; `count: 0`, `percent: 150`, `gpus: []` and a multiplier of `1e15`
//! were accepted and failed (or exploded) at run time.

use crate::common::Selector;
use crate::fault::Problem;
use crate::limits::quoted;

/// A pod selector as `pod-kill` and `network-partition` take it (with `all_pods`).
pub fn selector_problems(selector: &str, all_pods: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let v = format!("'{}'", quoted(selector));
    if selector.trim().is_empty() {
        if !all_pods {
            out.push(Problem::new(
                &["selector"],
                v,
                "an empty selector selects every pod in the namespace; say `all_pods: true` if that is meant",
            ));
        }
    } else if all_pods {
        out.push(Problem::new(
            &["all_pods"],
            "'true'",
            "`all_pods: true` needs an empty selector (it selects every pod)",
        ));
    } else if let Err(reason) = Selector::parse(selector) {
        out.push(Problem::new(
            &["selector"],
            v,
            format!("not a label selector: {reason}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::fault::FaultSpec;

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
            let p = spec(fault.clone()).problems();
            assert_eq!(p.len(), 1, "{fault}: {p:?}");
            assert_eq!(p[0].path.join("."), key, "{fault}");
            assert!(p[0].message.contains(needle), "{fault}: {}", p[0].message);
        }
        let ok = json!({"kind": "pod-kill", "selector": "", "all_pods": true});
        assert!(spec(ok).problems().is_empty());
    }
}
