//! Experiment and fault-definition files: every shipped file validates and matches the JSON
//! schemas; bad files are refused with `file:line:column`, the offending value and a hint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline::runner::spec::{Validated, load_experiment, plan, validate_file};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_shipped_experiment_and_fault_definition_validates() {
    let faults = yaml_files("faults");
    let experiments = yaml_files("experiments");
    assert!(faults.len() >= 6 && experiments.len() >= 7);
    for f in &faults {
        match validate_file(f) {
            Ok(Validated::FaultDefinition(_)) => {}
            other => panic!("{}: {other:?}", f.display()),
        }
    }
    for e in &experiments {
        match validate_file(e) {
            Ok(Validated::Experiment(_)) => {}
            Err(err) => panic!("{err}"),
            other => panic!("{}: {other:?}", e.display()),
        }
    }
}

fn yaml_to_json(path: &Path) -> serde_json::Value {
    // The loader's own tree, so the schema sees exactly what the loader sees.
    let text = std::fs::read_to_string(path).unwrap();
    faultline::runner::spec::yaml_to_json(&text).unwrap()
}

#[test]
fn every_shipped_file_matches_its_json_schema() {
    for (schema, dir) in [
        ("schemas/experiment.schema.json", "experiments"),
        ("schemas/fault.schema.json", "faults"),
    ] {
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root().join(schema)).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for f in yaml_files(dir) {
            let doc = yaml_to_json(&f);
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
        }
    }
}

#[test]
fn schemas_reject_an_unknown_key() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/experiment.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut doc = yaml_to_json(&root().join("experiments/gpu-1-of-4.yaml"));
    doc["faults"][0]["durtion"] = "20s".into();
    assert!(!validator.is_valid(&doc));
}

#[test]
fn game_day_runs_the_faults_one_after_another() {
    let exp = load_experiment(&root().join("experiments/game-day.yaml")).unwrap();
    let starts: Vec<(String, u64)> = exp
        .timeline
        .iter()
        .map(|f| (f.id.clone(), f.at.as_secs()))
        .collect();
    assert_eq!(
        starts,
        [
            ("gpu-lockout-1".to_string(), 45),
            ("gpu-lockout-2".into(), 150),
            ("pod-kill-one".into(), 255),
            ("network-partition-worker-0".into(), 360),
            ("load-spike-2x".into(), 465),
        ]
    );
    // 45 s gaps give every fault a baseline of its own (analysis.baseline_min 20 s).
    assert_eq!(exp.analysis.baseline_min.as_secs(), 20);
    // Each fault holds (a pod kill: is observed for) a minute; the load ends a minute after the
    // last one, under ten minutes in all.
    assert!(
        exp.timeline
            .iter()
            .all(|f| f.duration == Some(Duration::from_secs(60)))
    );
    assert_eq!(exp.load.schedule.duration().as_secs(), 585);
    // A fault's own criteria replace the experiment's for it, and only for it.
    assert!(exp.criteria.max_detection.is_some());
    let spike = exp
        .timeline
        .iter()
        .find(|f| f.id == "load-spike-2x")
        .unwrap();
    let own = spike
        .criteria
        .as_ref()
        .expect("the spike has its own criteria");
    assert_eq!(own.max_detection, None);
    assert_eq!(own.max_error_rate_during, Some(0.2));
    assert!(
        exp.timeline
            .iter()
            .filter(|f| f.id != "load-spike-2x")
            .all(|f| f.criteria.is_none())
    );
}

#[test]
fn plan_lists_every_action_with_its_time() {
    let exp = load_experiment(&root().join("experiments/gpu-1-of-4.yaml")).unwrap();
    let text = plan(&exp);
    for needle in [
        "t=0s start load; warm-up until t=15s",
        "t=45s inject gpu-lockout 'gpu-lockout-1' on host local GPUs [0] (mode PROHIBITED, kill process; via `faultline nvidia-smi`), restore the recorded compute mode at t=1m 45s",
        "t=2m 15s stop load; restore anything still injected",
        "pods-ready every 1s: pods 'app=sim-llm' Ready (detection)",
        "stop if error rate > 0.5 for 10s",
        "detection ≤ 10s, recovery ≤ 30s",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

mod bad_files;
mod limits;

#[test]
#[ignore = "prints plans for eyeballing"]
fn print_plans() {
    for f in [
        "experiments/game-day.yaml",
        "experiments/example-annotated.yaml",
    ] {
        println!("{}", plan(&load_experiment(&root().join(f)).unwrap()));
    }
}

/// Every registered kind's example validates against the checked-in fault schema (which
/// `schemas::` holds current with the types).
#[test]
fn every_registered_kinds_example_validates_against_the_fault_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/fault.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for spec in faultline::fault::FaultSpec::examples() {
        let v = serde_json::to_value(&spec).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", spec.kind());
    }
}
