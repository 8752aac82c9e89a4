//! Measured against the sim's ground truth: a GPU lockout over a real sshd (strict known_hosts)
//! against the embedded sim's `nvidia-smi`, end to end through the runner — mode changed, worker
//! failed, detected, restored, recovered — and faultline's detection and recovery times within
//! one window of what the sim logged.

use crate::leftovers;
use crate::sshd::Sshd;
use faultline::analysis::phases::{Detection, Recovery};
use faultline::fault::deadman;
use faultline::fault::ledger::Ledger;
use faultline::runner::execute::{self, RunOptions};
use faultline::runner::result::{FaultStatus, Status};
use faultline::runner::spec;
use faultline::sim::SimEvent;

fn truth(dir: &std::path::Path) -> Vec<SimEvent> {
    std::fs::read_to_string(dir.join("sim-events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn first(events: &[SimEvent], kind: &str, after: f64) -> f64 {
    events
        .iter()
        .find(|e| e.kind == kind && e.worker == Some(0) && e.t_s >= after)
        .unwrap_or_else(|| panic!("no {kind} after {after} in {events:?}"))
        .t_s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_lockout_over_ssh_is_detected_and_recovered_within_one_window_of_the_sims_truth() {
    let sshd = Sshd::start();
    let ssh = sshd.ssh_spec();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim-state");
    // Two workers of one GPU each; 8 req/s of short answers is comfortable for one of them, so
    // what users see is the dead worker's errors until the router stops using it, then a slower
    // TTFT p50 (one worker batches what two served apart) until it is back in rotation: that
    // p50 is the recovery signal. The TTFT p99 band is opened wide (10x): a 3-window block
    // holds 24 requests, so its "p99" is its single slowest request, and on 2 cores shared with
    // the runner, sshd, nvidia-smi and other builds one request held up by the scheduler is
    // routine (observed 1.5-5.2x the baseline's p99: 232 ms against 44 ms). At the default +50%
    // of a ~16 ms baseline p99 that judged the machine, not the cluster: "recovery 8.999 s,
    // truth 0.808 s", every block after the restore out of band on p99 alone, p50 back at
    // baseline. Errors, throughput and p50 keep their default bands.
    let exp = format!(
        r#"name: gpu-over-ssh
target:
  sim: {{preset: small, gpus: 2, state_dir: "{state}"}}
  api: completions
hosts:
  node:
    ssh:
      user: {user}
      host: 127.0.0.1
      port: {port}
      identity_file: "{key}"
      known_hosts: "{known}"
load:
  rate: 8
  arrival: constant
  workload: fixed:64:16
  duration: 30s
warmup: 3s
faults:
  - id: gpu0
    fault:
      kind: gpu-lockout
      targets: [{{host: node, gpus: [0]}}]
      kill_process: true
      nvidia_smi: "{state}/bin/nvidia-smi"
    at: 8s
    duration: 8s
criteria:
  max_detection: 5s
  max_recovery: 10s
analysis:
  recovery_windows: 3
  tolerance:
    ttft_p99: 10.0
"#,
        state = state.display(),
        user = ssh.user.clone().unwrap(),
        port = ssh.port.unwrap(),
        key = ssh.identity_file.clone().unwrap().display(),
        known = ssh.known_hosts.clone().unwrap().display(),
    );
    let path = dir.path().join("gpu.yaml");
    std::fs::write(&path, exp).unwrap();
    let exp = spec::load_experiment(&path).unwrap();
    let out = dir.path().join("out");
    let opts = RunOptions {
        out_dir: out.clone(),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: "t-truth".into(),
        faultline_bin: Some(env!("CARGO_BIN_EXE_faultline").into()),
    };
    let timers = leftovers::Watch::start(deadman::marker("t-truth", "gpu0", "node"));
    let r = execute::run(&exp, &opts).await.unwrap();
    let armed = timers.stop();
    let f = &r.faults[0];
    assert_eq!(f.status, FaultStatus::Pass, "{f:#?}");
    assert_eq!(r.status, Status::Pass);
    let a = f.analysis.as_ref().unwrap();
    let eff = f.effective_s.unwrap();
    let cleared = f.cleared_s.unwrap();

    // The fault is effective from the start of its inject; the verify confirmed it later.
    let verified = r
        .events
        .iter()
        .find(|e| e.kind == "verified" && e.fault.as_deref() == Some("gpu0"))
        .expect("a verified event")
        .t_s;
    let events = truth(&out);
    let failed = first(&events, "worker_failed", eff - 1.0);
    let removed = first(&events, "router_removed", failed);
    let start_refused = first(&events, "worker_start_failed", failed);
    let back = first(&events, "router_added", cleared);
    assert!(
        eff <= failed && failed <= verified,
        "the worker died while the fault was injected ({failed} vs {eff}..{verified})"
    );
    assert!(start_refused < cleared, "a locked GPU refuses the restart");

    // Users saw errors while requests still went to the dead worker.
    assert!(a.during.errors > 0, "{:?}", a.during);
    assert_eq!(a.pre.errors, 0);
    let window = 1.0;
    match &a.detection {
        Detection::Detected { after_s, .. } => {
            let truth = removed - eff;
            assert!(
                (after_s - truth).abs() <= window,
                "detection {after_s} s, truth {truth} s"
            );
        }
        other => panic!("not detected: {other:?}"),
    }
    match &a.recovery_time {
        Recovery::Recovered { after_s } => {
            let truth = back - cleared;
            assert!(
                (after_s - truth).abs() <= window,
                "recovery {after_s} s, truth {truth} s"
            );
        }
        other => panic!("not recovered: {other:?}"),
    }
    // Restored: the mode that was read (Default) is back and the ledger is clean.
    let modes = std::process::Command::new(state.join("bin/nvidia-smi"))
        .args(["--query-gpu=index,compute_mode", "--format=csv,noheader"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&modes.stdout).trim(),
        "0, Default\n1, Default"
    );
    assert!(opts.ledger.outstanding().unwrap().is_empty());
    // And the node keeps no timer: neither the dead-man shell nor its sleep.
    assert!(!armed.is_empty(), "no dead-man timer was armed on the node");
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "the run left its dead-man timer's processes on the node"
    );
}

fn opts(dir: &std::path::Path, id: &str) -> RunOptions {
    RunOptions {
        out_dir: dir.join("out"),
        ledger: Ledger::at(dir.join("ledger.jsonl")),
        run_id: id.into(),
        faultline_bin: Some(env!("CARGO_BIN_EXE_faultline").into()),
    }
}

async fn run_text(
    dir: &std::path::Path,
    id: &str,
    yaml: &str,
) -> faultline::runner::result::RunResult {
    let path = dir.join("exp.yaml");
    std::fs::write(&path, yaml).unwrap();
    let exp = spec::load_experiment(&path).unwrap();
    execute::run(&exp, &opts(dir, id)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_kill_detection_and_recovery_are_within_one_window_of_the_sims_truth() {
    let dir = tempfile::tempdir().unwrap();
    // 24 req/s needs both workers (one alone refuses part of it: a queue of 2), so users see
    // errors until the replacement is back in rotation; the tiny queue drains at once.
    let r = run_text(
        dir.path(),
        "t-pk",
        r#"name: pk
target:
  sim: {preset: small, gpus: 2, max_queue_len: 2, restart_delay: 4s, health_check_interval: 200ms}
  api: completions
kubernetes:
  kubeconfig: sim
  namespace: default
load:
  rate: 24
  arrival: constant
  workload: fixed:64:16
  duration: 24s
warmup: 3s
faults:
  - id: kill
    fault: {kind: pod-kill, selector: "worker=0", grace_period: 0s}
    at: 8s
probes:
  - name: pods-ready
    every: 200ms
    detection: true
    kube_ready: {selector: app=sim-llm}
analysis:
  recovery_windows: 3
"#,
    )
    .await;
    let f = &r.faults[0];
    assert_eq!(f.status, FaultStatus::Pass, "{f:#?}");
    let a = f.analysis.as_ref().unwrap();
    let eff = f.effective_s.unwrap();
    let events = truth(&dir.path().join("out"));
    let deleted = first(&events, "pod_deleted", eff - 1.0);
    let ready = first(&events, "pod_ready", deleted);
    let back = first(&events, "router_added", deleted);
    // The pod was cleared (replacement Ready) when the sim says so.
    assert!(
        (f.cleared_s.unwrap() - ready).abs() <= 1.0,
        "cleared {:?}, pod_ready {ready}",
        f.cleared_s
    );
    assert!(a.during.errors > 0);
    match &a.detection {
        Detection::Detected { after_s, signal } => {
            assert_eq!(signal, "probe pods-ready");
            let truth = deleted - eff;
            assert!(
                (after_s - truth).abs() <= 1.0,
                "detection {after_s} s, truth {truth} s"
            );
        }
        other => panic!("not detected: {other:?}"),
    }
    match &a.recovery_time {
        // One-shot: recovery counts from the injection.
        Recovery::Recovered { after_s } => {
            let truth = back - eff;
            assert!(
                (after_s - truth).abs() <= 1.0,
                "recovery {after_s} s, truth {truth} s"
            );
        }
        other => panic!("not recovered: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_partition_detection_and_recovery_are_within_one_window_of_the_sims_truth() {
    let dir = tempfile::tempdir().unwrap();
    // One worker carries 10 req/s; requests routed to the cut-off worker before the router
    // notices time out after 1 s (that is what users see); afterwards the other worker serves.
    let r = run_text(
        dir.path(),
        "t-np",
        r#"name: np
target:
  sim: {preset: small, gpus: 2, health_check_interval: 200ms}
  api: completions
  timeout: 1s
kubernetes:
  kubeconfig: sim
  namespace: default
load:
  rate: 10
  arrival: constant
  workload: fixed:64:16
  duration: 24s
warmup: 3s
faults:
  - id: cut
    fault: {kind: network-partition, selector: "worker=0", direction: ingress}
    at: 8s
    duration: 8s
analysis:
  recovery_windows: 3
"#,
    )
    .await;
    let f = &r.faults[0];
    assert_eq!(f.status, FaultStatus::Pass, "{f:#?}");
    let a = f.analysis.as_ref().unwrap();
    let eff = f.effective_s.unwrap();
    let cleared = f.cleared_s.unwrap();
    let events = truth(&dir.path().join("out"));
    let applied = first(&events, "policy_applied", eff - 1.0);
    let removed = first(&events, "router_removed", applied);
    let back = first(&events, "router_added", cleared - 0.5);
    assert!(
        a.during.errors > 0,
        "requests to the cut-off worker timed out"
    );
    match &a.detection {
        Detection::Detected { after_s, .. } => {
            let truth = removed - eff;
            assert!(
                (after_s - truth).abs() <= 1.0,
                "detection {after_s} s, truth {truth} s"
            );
        }
        other => panic!("not detected: {other:?}"),
    }
    match &a.recovery_time {
        Recovery::Recovered { after_s } => {
            let truth = (back - cleared).max(0.0);
            assert!(
                (after_s - truth).abs() <= 1.0,
                "recovery {after_s} s, truth {truth} s"
            );
        }
        other => panic!("not recovered: {other:?}"),
    }
}
