//! A table of bad experiment files, each refused with its position and the key phrase.

use std::path::PathBuf;

use faultline::runner::spec::load_experiment;

/// A valid experiment; each case replaces one line (`from` → `to`).
const BASE: &str = "\
name: t
target:
  sim: {preset: h100x4-70b}
hosts:
  local: local
kubernetes:
  kubeconfig: sim
load:
  rate: 30
  duration: 90s
warmup: 15s
faults:
  - use: gpu-lockout-1
    at: 30s
    duration: 20s
  - fault: {kind: load-spike, multiplier: 2}
    at: 60s
    duration: 10s
";

/// Writes `experiments/t.yaml` (with `faults/` copied from the repository) and loads it.
fn error_for(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("faults");
    std::fs::create_dir_all(&faults).unwrap();
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("faults");
    for e in std::fs::read_dir(shipped).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, faults.join(p.file_name().unwrap())).unwrap();
    }
    let file = dir.path().join("experiments/t.yaml");
    std::fs::write(&file, text).unwrap();
    let err = load_experiment(&file)
        .expect_err("must be refused")
        .to_string();
    err.replace(&format!("{}/", dir.path().display()), "")
}

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn base_experiment_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    let file = dir.path().join("experiments/t.yaml");
    std::fs::write(
        &file,
        BASE.replace(
            "  - use: gpu-lockout-1\n",
            "  - fault: {kind: gpu-lockout, targets: [{host: local, gpus: [0]}]}\n",
        ),
    )
    .unwrap();
    load_experiment(&file).unwrap();
}

#[test]
fn bad_files_are_refused_with_position_value_and_hint() {
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown key with suggestion",
            with("    duration: 20s", "    durtion: 20s"),
            "experiments/t.yaml:15:5: unknown key 'durtion' in 'faults[0]'; did you mean 'duration'?",
        ),
        (
            "wrong type",
            with("  rate: 30", "  rate: fast"),
            "experiments/t.yaml:9:9: invalid value 'fast' for 'rate': invalid type: string \"fast\", expected f64",
        ),
        (
            "bad duration",
            with("    at: 30s", "    at: 3 mintues"),
            "experiments/t.yaml:14:9: invalid duration '3 mintues' for 'at': unknown unit 'mintues' (use ms, s, m, h); try 3m",
        ),
        (
            "bare number as duration",
            with("  duration: 90s", "  duration: 90"),
            "experiments/t.yaml:10:13: invalid duration '90' for 'duration': a number needs a unit (ms, s, m, h); try 90s",
        ),
        (
            "unknown kind",
            with("kind: load-spike", "kind: load-spik"),
            "experiments/t.yaml:16:19: unknown fault kind 'load-spik'; did you mean 'load-spike'? (known: gpu-lockout, ssh-command, pod-kill, network-partition, load-spike", // kinds added later follow
        ),
        (
            "unknown use",
            with("use: gpu-lockout-1", "use: gpu-lockout-3"),
            "experiments/t.yaml:13:10: unknown fault definition 'gpu-lockout-3' in experiments/../faults; did you mean 'gpu-lockout-1'? (available: gpu-degrade-1, gpu-lockout-1, gpu-lockout-2, load-spike-2x, netem-delay, network-partition-worker-0, node-drain-1, pod-kill-one, process-pause-worker)",
        ),
        (
            "unknown host",
            with("  local: local", "  node-1: local"),
            "experiments/../faults/gpu-lockout-1.yaml:5:11: unknown host 'local' in fault 'gpu-lockout-1' (used at experiments/t.yaml:13:5) (hosts: node-1)",
        ),
        (
            "overlap on one GPU",
            with(
                "  - fault: {kind: load-spike, multiplier: 2}",
                "  - fault: {kind: gpu-lockout, targets: [{host: local, gpus: [1, 0]}]}",
            )
            .replace("    at: 60s", "    at: 40s"),
            "experiments/t.yaml:16:5: fault 'gpu-lockout' (t=40s..50s) overlaps fault 'gpu-lockout-1' (t=30s..50s) on gpu:local/0",
        ),
        (
            "fault past the load's end",
            with("    at: 60s", "    at: 85s"),
            "experiments/t.yaml:18:15: fault 'load-spike' ends at t=1m 35s (t=1m 25s..1m 35s), after the load ends at t=1m 30s",
        ),
        (
            "fault during warmup",
            with("    at: 30s", "    at: 10s"),
            "experiments/t.yaml:14:9: fault 'gpu-lockout-1' starts at t=10s, during the warm-up (until t=15s); faults must start after it",
        ),
        (
            "kube fault without kubernetes",
            with("kubernetes:\n  kubeconfig: sim\n", "")
                .replace("use: gpu-lockout-1", "use: pod-kill-one"),
            "experiments/t.yaml:11:5: fault 'pod-kill-one' (pod-kill) needs a 'kubernetes' section",
        ),
        (
            "YAML syntax error",
            with("  rate: 30", "  rate: [30"),
            "experiments/t.yaml:10:",
        ),
        (
            "bad override through set",
            with("    at: 30s", "    set: {mode: LOCKED}\n    at: 30s"),
            "experiments/t.yaml:14:17: invalid value 'LOCKED' for 'mode': expected one of PROHIBITED, EXCLUSIVE_PROCESS",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, expected) in cases {
        let got = error_for(text);
        if !got.contains(expected) {
            failures.push(format!(
                "{name}:\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_semantic_problems_are_reported_at_once() {
    let text = with("  local: local", "  node-1: local").replace("    at: 60s", "    at: 85s");
    let err = error_for(&text);
    assert!(err.contains("unknown host 'local'"), "{err}");
    assert!(err.contains("after the load ends"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
}

#[test]
fn a_jump_must_name_an_ssh_host_and_exclusive_thread_is_no_lock_mode() {
    let err = error_for(&with(
        "  local: local\n",
        "  local: local\n  node-7:\n    ssh: {host: node-7.example.com, jump: bastoin}\n  bastion:\n    ssh: {host: bastion.example.com}\n",
    ));
    assert!(
        err.contains(
            "experiments/t.yaml:7:43: unknown host 'bastoin' in host 'node-7' (jump); did you mean 'bastion'?"
        ),
        "{err}"
    );
    let err = error_for(&with(
        "  local: local\n",
        "  local: local\n  node-7:\n    ssh: {host: node-7.example.com, jump: local}\n",
    ));
    assert!(
        err.contains("jump 'local' of host 'node-7' must be an ssh host"),
        "{err}"
    );
    let err = error_for(&BASE.replace(
        "  - use: gpu-lockout-1\n",
        "  - fault: {kind: gpu-lockout, targets: [{host: local, gpus: [0]}], mode: EXCLUSIVE_THREAD}\n",
    ));
    assert!(
        err.contains("EXCLUSIVE_THREAD is no longer supported"),
        "{err}"
    );
}
