//! Experiments through the runner, end to end against the embedded sim: phases consistent with
//! the requests recorded, verdicts, and faults restored on every exit path (end, stop condition,
//! Ctrl-C, SIGKILL + `faultline recover`).

use crate::leftovers;
use faultline::fault::deadman;
use faultline::fault::gpu_lockout::ComputeMode;
use faultline::fault::ledger::Ledger;
use faultline::load::record::RequestRecord;
use faultline::runner::execute::{self, RunOptions};
use faultline::runner::result::{FaultStatus, RunResult, Status};
use faultline::runner::spec;
use faultline::sim::nvsmi::GpuState;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn spike_experiment(multiplier: f64, stop: &str) -> String {
    format!(
        r#"name: spike
target:
  sim: {{preset: small}}
  api: completions
load:
  rate: 4
  arrival: constant
  workload: fixed:64:8
  duration: 16s
  seed: 3
warmup: 2s
faults:
  - id: spike
    fault: {{kind: load-spike, multiplier: {multiplier}}}
    at: 6s
    duration: 4s
{stop}criteria:
  must_recover: true
analysis:
  recovery_windows: 2
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spike_run_splits_phases_consistently_with_the_requests_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "spike.yaml", &spike_experiment(2.0, ""));
    let exp = spec::load_experiment(&path).unwrap();
    let out = dir.path().join("out");
    let opts = RunOptions {
        out_dir: out.clone(),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: "t-spike".into(),
        faultline_bin: None,
    };
    let r = execute::run(&exp, &opts).await.unwrap();
    assert_eq!(r.faults.len(), 1);
    let f = &r.faults[0];
    let a = f.analysis.as_ref().expect("analysed");
    let eff = f.effective_s.unwrap();
    let cleared = f.cleared_s.unwrap();
    assert!((eff - 6.0).abs() < 0.5, "effective at {eff}");
    assert!((cleared - 10.0).abs() < 0.5, "cleared at {cleared}");

    // Count the requests on disk by intended start and compare with each phase.
    let recs: Vec<RequestRecord> = std::fs::read_to_string(out.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len() as u64, r.load.requests);
    // Phases are merged whole windows, so count requests in the windows the phase covers.
    let count = |from: f64, to: f64| {
        recs.iter()
            .filter(|q| {
                let w = q.intended_s.floor();
                w >= from && w < to
            })
            .count() as u64
    };
    assert_eq!(a.pre.requests, count(a.pre.from_s, a.pre.to_s));
    assert_eq!(a.during.requests, count(a.during.from_s, a.during.to_s));
    assert_eq!(
        a.recovery.requests,
        count(a.recovery.from_s, a.recovery.to_s)
    );
    // Twice the rate while the spike lasts: ~8 req/s during against 4 before.
    let pre_rate = a.pre.requests as f64 / (a.pre.to_s - a.pre.from_s);
    let during_rate = a.during.requests as f64 / (a.during.to_s - a.during.from_s);
    assert!((pre_rate - 4.0).abs() < 0.6, "pre {pre_rate} req/s");
    assert!(
        (during_rate / pre_rate - 2.0).abs() < 0.35,
        "during {during_rate} req/s"
    );

    // The outputs exist, and the ledger slice shows the fault injected and restored.
    let result: RunResult =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(result.faults[0].id, "spike");
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/result.schema.json")).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "result.json violates the schema: {errors:?}"
    );
    assert!(
        std::fs::read_to_string(out.join("summary.md"))
            .unwrap()
            .contains("| spike (load-spike)")
    );
    let slice = std::fs::read_to_string(out.join("ledger.jsonl")).unwrap();
    assert!(
        slice.contains("\"record\":\"inject\"") && slice.contains("\"record\":\"done\""),
        "{slice}"
    );
    assert!(opts.ledger.outstanding().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_condition_aborts_the_run_and_restores_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    // Twenty times the traffic overwhelms the small sim (8 req/s of capacity): refusals.
    let path = write(
        dir.path(),
        "spike.yaml",
        &spike_experiment(
            20.0,
            "stop_conditions:\n  - {error_rate_above: 0.2, for: 2s}\n",
        )
        .replace("duration: 4s", "duration: 8s"),
    );
    let exp = spec::load_experiment(&path).unwrap();
    let opts = RunOptions {
        out_dir: dir.path().join("out"),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: "t-stop".into(),
        faultline_bin: None,
    };
    let started = Instant::now();
    let r = execute::run(&exp, &opts).await.unwrap();
    assert_eq!(r.status, Status::Aborted, "{:?}", r.reason);
    assert!(
        r.reason.as_deref().unwrap().contains("stop condition"),
        "{:?}",
        r.reason
    );
    assert_eq!(r.faults[0].status, FaultStatus::Aborted);
    assert!(started.elapsed() < Duration::from_secs(15), "stopped early");
    assert!(
        opts.ledger.outstanding().unwrap().is_empty(),
        "restored and marked done"
    );
    assert!(r.events.iter().any(|e| e.kind == "restored"));
}

/// A GPU lockout of the sim's GPUs from the `local` host, through the real binary.
fn gpu_experiment(state: &Path, stop_at: &str) -> String {
    format!(
        r#"name: gpu
target:
  sim: {{preset: small}}
  api: completions
hosts:
  local: local
load:
  rate: 4
  arrival: constant
  workload: fixed:32:4
  duration: {stop_at}
warmup: 1s
faults:
  - id: gpu0
    fault:
      kind: gpu-lockout
      targets: [{{host: local, gpus: [0]}}]
      kill_process: false
      nvidia_smi: "{bin} nvidia-smi --state {state}"
    at: 2s
    duration: 20s
"#,
        bin = env!("CARGO_BIN_EXE_faultline"),
        state = state.display()
    )
}

fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The dead-man timers of the fault the ledger holds (one, on host `local`).
fn armed_timers(ledger: &Path) -> std::collections::BTreeSet<u32> {
    let e = Ledger::at(ledger).outstanding().unwrap().remove(0);
    let armed = leftovers::armed(&deadman::marker(&e.run_id, &e.fault_id, "local"));
    assert!(!armed.is_empty(), "no dead-man timer armed");
    armed
}

fn start_run(dir: &Path, exp: &Path, ledger: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", exp.to_str().unwrap(), "--out"])
        .arg(dir.join("out"))
        .arg("--ledger")
        .arg(ledger)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_mid_fault_then_recover_restores_the_gpu_and_cleans_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gpus");
    let gpus = GpuState::create(&state, 2).unwrap();
    gpus.set_mode(0, ComputeMode::ExclusiveProcess).unwrap();
    let exp = write(dir.path(), "gpu.yaml", &gpu_experiment(&state, "30s"));
    let ledger_path = dir.path().join("ledger.jsonl");
    let mut child = start_run(dir.path(), &exp, &ledger_path);
    let ledger = Ledger::at(ledger_path.clone());
    assert!(
        wait_for(Duration::from_secs(20), || gpus.mode(0).ok()
            == Some(ComputeMode::Prohibited)),
        "the lockout took effect"
    );
    let armed = armed_timers(&ledger_path);
    // The embedded sim's workers: a `sleep` each, the run's children.
    let workers = leftovers::sim_workers(child.id());
    assert!(!workers.is_empty(), "no sim worker processes");
    child.kill().unwrap(); // SIGKILL: no restore can run.
    child.wait().unwrap();
    assert_eq!(
        leftovers::alive(&workers),
        Vec::<String>::new(),
        "the killed run's sim workers live on"
    );
    assert_eq!(
        gpus.mode(0).unwrap(),
        ComputeMode::Prohibited,
        "left behind by the kill"
    );
    assert_eq!(ledger.outstanding().unwrap().len(), 1);

    // Every run checks the ledger first.
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "run",
            exp.to_str().unwrap(),
            "--ledger",
            ledger_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("faultline recover"));

    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["recover", "--ledger", ledger_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        gpus.mode(0).unwrap(),
        ComputeMode::ExclusiveProcess,
        "the mode that was read, not DEFAULT"
    );
    assert!(ledger.outstanding().unwrap().is_empty());
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "recover left the dead-man timer's processes"
    );
}

#[test]
fn ctrl_c_mid_fault_restores_and_exits_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gpus");
    let gpus = GpuState::create(&state, 2).unwrap();
    let exp = write(dir.path(), "gpu.yaml", &gpu_experiment(&state, "30s"));
    let ledger_path = dir.path().join("ledger.jsonl");
    let mut child = start_run(dir.path(), &exp, &ledger_path);
    assert!(wait_for(Duration::from_secs(20), || gpus.mode(0).ok()
        == Some(ComputeMode::Prohibited)));
    let armed = armed_timers(&ledger_path);
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "aborted");
    assert_eq!(gpus.mode(0).unwrap(), ComputeMode::Default);
    assert!(Ledger::at(&ledger_path).outstanding().unwrap().is_empty());
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "the restore left the dead-man timer's processes"
    );
    let result: RunResult =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/result.json")).unwrap())
            .unwrap();
    assert_eq!(result.status, Status::Aborted);
}

#[test]
fn sigkill_mid_ssh_command_then_recover_runs_the_restore_command() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("injected");
    let exp = format!(
        r#"name: cmd
target:
  sim: {{preset: small}}
  api: completions
hosts:
  local: local
load:
  rate: 4
  arrival: constant
  workload: fixed:32:4
  duration: 30s
warmup: 1s
faults:
  - id: touch
    fault:
      kind: ssh-command
      hosts: [local]
      inject: "touch '{flag}'"
      verify: "test -f '{flag}'"
      restore: "rm -f '{flag}'"
    at: 2s
    duration: 20s
"#,
        flag = flag.display()
    );
    let exp = write(dir.path(), "cmd.yaml", &exp);
    let ledger_path = dir.path().join("ledger.jsonl");
    let mut child = start_run(dir.path(), &exp, &ledger_path);
    assert!(
        wait_for(Duration::from_secs(20), || flag.exists()),
        "injected"
    );
    let armed = armed_timers(&ledger_path);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(flag.exists(), "left behind by the kill");
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["recover", "--ledger", ledger_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!flag.exists(), "the restore command ran");
    assert!(Ledger::at(&ledger_path).outstanding().unwrap().is_empty());
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "recover left the dead-man timer's processes"
    );
}

/// A standalone sim (its own process, so it outlives the runner) with its Kubernetes API.
struct StandaloneSim {
    child: std::process::Child,
    url: String,
    kubeconfig: std::path::PathBuf,
}

impl StandaloneSim {
    fn start(dir: &Path) -> StandaloneSim {
        use std::io::BufRead;
        let kubeconfig = dir.join("sim-kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args([
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--preset",
                "small",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.strip_prefix("listening on ").unwrap().to_string();
        // Keep reading so the pipe never fills.
        std::thread::spawn(move || for _ in lines {});
        assert!(wait_for(Duration::from_secs(10), || kubeconfig.exists()));
        StandaloneSim {
            child,
            url,
            kubeconfig,
        }
    }
}

impl Drop for StandaloneSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn policies(kubeconfig: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = faultline::fault::kube_target::KubeTarget::from_kubeconfig(kubeconfig, None)
            .await
            .unwrap();
        let api: kube::Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
            kube::Api::namespaced(t.client.clone(), "default");
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    })
}

#[test]
fn sigkill_mid_network_partition_then_recover_deletes_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let sim = StandaloneSim::start(dir.path());
    let exp = format!(
        r#"name: partition
target:
  endpoint: {url}
  model: sim-small
  api: completions
  timeout: 2s
kubernetes:
  kubeconfig: "{kc}"
  namespace: default
load:
  rate: 4
  arrival: constant
  workload: fixed:32:4
  duration: 30s
warmup: 1s
faults:
  - id: cut
    fault: {{kind: network-partition, selector: "worker=0", direction: ingress}}
    at: 2s
    duration: 20s
"#,
        url = sim.url,
        kc = sim.kubeconfig.display()
    );
    let exp = write(dir.path(), "partition.yaml", &exp);
    let ledger_path = dir.path().join("ledger.jsonl");
    let mut child = start_run(dir.path(), &exp, &ledger_path);
    assert!(
        wait_for(Duration::from_secs(20), || !policies(&sim.kubeconfig)
            .is_empty()),
        "the policy was created"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let left = policies(&sim.kubeconfig);
    assert_eq!(left.len(), 1, "left behind by the kill: {left:?}");
    assert!(left[0].starts_with("faultline-"), "{left:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["recover", "--ledger", ledger_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(policies(&sim.kubeconfig).is_empty(), "the policy is gone");
    assert!(Ledger::at(ledger_path).outstanding().unwrap().is_empty());
}

#[test]
fn sigkill_mid_load_spike_then_recover_cleans_the_ledger() {
    // The spike lived in the killed process, so nothing is left on any target; the ledger
    // entry still must not block the next run.
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        "spike.yaml",
        &spike_experiment(2.0, "").replace("duration: 4s", "duration: 8s"),
    );
    let ledger_path = dir.path().join("ledger.jsonl");
    let ledger = Ledger::at(ledger_path.clone());
    let mut child = start_run(dir.path(), &exp, &ledger_path);
    assert!(wait_for(Duration::from_secs(20), || ledger
        .outstanding()
        .is_ok_and(|o| o.len() == 1)));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["recover", "--ledger", ledger_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(ledger.outstanding().unwrap().is_empty());
}

#[test]
fn recover_with_kubeconfig_sweeps_expired_faultline_policies_even_without_a_ledger() {
    use faultline::fault::network_partition::{self, Direction, Params};
    let dir = tempfile::tempdir().unwrap();
    let sim = StandaloneSim::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = faultline::fault::kube_target::KubeTarget::from_kubeconfig(&sim.kubeconfig, None)
            .await
            .unwrap();
        let p = Params {
            namespace: None,
            selector: "worker=0".into(),
            all_pods: false,
            direction: Direction::Ingress,
        };
        let undo = network_partition::Undo {
            namespace: "default".into(),
            name: network_partition::policy_name("lost-run", "cut"),
            selector: "worker=0".into(),
            direction: Direction::Ingress,
        };
        let expired = chrono::Utc::now() - chrono::Duration::seconds(5);
        let policy = network_partition::policy(&p, &undo, "lost-run", "cut", expired).unwrap();
        let api: kube::Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
            kube::Api::namespaced(t.client.clone(), "default");
        api.create(&Default::default(), &policy).await.unwrap();
    });
    assert_eq!(policies(&sim.kubeconfig).len(), 1);
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["recover", "--ledger"])
        .arg(dir.path().join("empty-ledger.jsonl"))
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("undid expired NetworkPolicy"));
    assert!(policies(&sim.kubeconfig).is_empty());
}

/// A pod kill whose replacement never becomes Ready: the windows come back (the other worker
/// serves), but the cluster did not recover, so the fault fails and the run exits 1.
#[test]
fn a_pod_kill_whose_replacement_never_becomes_ready_is_not_recovered_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write(
        dir.path(),
        "never.yaml",
        r#"name: never-ready
target:
  sim: {preset: small, gpus: 2, restart_delay: 1s, health_check_interval: 200ms, replacements_never_ready: true}
  api: completions
kubernetes:
  kubeconfig: sim
  namespace: default
load:
  rate: 4
  arrival: constant
  workload: fixed:64:8
  duration: 22s
warmup: 2s
faults:
  - id: kill
    fault: {kind: pod-kill, selector: "worker=0", grace_period: 0s}
    at: 6s
criteria:
  max_recovery: 6s
analysis:
  recovery_windows: 2
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", exp.to_str().unwrap(), "--out"])
        .arg(dir.path().join("out"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r: RunResult =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/result.json")).unwrap())
            .unwrap();
    assert_eq!(r.status, Status::Failed);
    let f = &r.faults[0];
    assert_eq!(f.status, FaultStatus::Failed, "{f:#?}");
    assert!(
        f.reason
            .as_deref()
            .unwrap()
            .starts_with("not recovered within 6.0s: pod-kill: only "),
        "{:?}",
        f.reason
    );
    assert_eq!(f.cleared_s, None);
    let gave_up = f.gave_up_s.unwrap() - f.effective_s.unwrap();
    assert!((gave_up - 6.0).abs() < 1.0, "gave up after {gave_up} s");
    let a = f.analysis.as_ref().unwrap();
    match a.recovery_time {
        faultline::analysis::phases::Recovery::NotRecovered { within_s } => {
            assert!((within_s - 6.0).abs() < 1.0, "{within_s}")
        }
        ref other => panic!("{other:?}"),
    }
    assert!(r.events.iter().any(|e| e.kind == "not_cleared"));
    // The stamps are in result.json and summary.json.
    for file in ["result.json", "summary.json"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("out").join(file)).unwrap())
                .unwrap();
        assert_eq!(v["faultline_version"], env!("CARGO_PKG_VERSION"), "{file}");
        assert_eq!(v["schema_version"], 1, "{file}");
    }
    // Not a terminal: plain progress lines every 10 s, with time, phase and the live numbers.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("progress: 10/22 s  "), "{}", lines[0]);
    assert!(lines[1].starts_with("progress: 20/22 s  "), "{}", lines[1]);
    // At 10 s the runner still waits for the replacement: the pod kill is in effect.
    assert!(
        lines[0].contains("  during kill (pod-kill)  last 5 s: errors "),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("  recovery kill (pod-kill)  "),
        "{}",
        lines[1]
    );
    assert!(lines[0].contains("last window: TTFT p99 ") && lines[0].contains(" ms  sent "));
}

/// A pod kill with `duration: D` and a replacement Ready after `restart_delay`.
fn pod_kill_with_window(dir: &std::path::Path, restart: &str, window: &str) -> RunResult {
    let exp = write(
        dir,
        "window.yaml",
        &format!(
            r#"name: kill-window
target:
  sim: {{preset: small, gpus: 2, restart_delay: {restart}, health_check_interval: 200ms}}
  api: completions
kubernetes:
  kubeconfig: sim
  namespace: default
load:
  rate: 4
  arrival: constant
  workload: fixed:64:8
  duration: 20s
warmup: 2s
faults:
  - id: kill
    fault: {{kind: pod-kill, selector: "worker=0", grace_period: 0s}}
    at: 6s
    duration: {window}
criteria:
  max_recovery: 12s
"#
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", exp.to_str().unwrap(), "--out"])
        .arg(dir.join("out"))
        .arg("--ledger")
        .arg(dir.join("ledger.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(dir.join("out/result.json")).unwrap()).unwrap()
}

/// With a `duration`, a pod kill is judged over that window (its "during" phase) even when the
/// replacement is Ready sooner; its recovery still counts from the kill.
#[test]
fn a_pod_kill_with_a_duration_is_judged_over_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let r = pod_kill_with_window(dir.path(), "1s", "8s");
    let f = &r.faults[0];
    let eff = f.effective_s.unwrap();
    let cleared = f.cleared_s.expect("cleared");
    let ready = r
        .events
        .iter()
        .find(|e| e.kind == "cleared")
        .expect("a cleared event");
    assert!((cleared - ready.t_s).abs() < 0.5, "{cleared} vs {ready:?}");
    assert!(cleared - eff < 4.0, "cleared {cleared}, effective {eff}");
    let a = f.analysis.as_ref().unwrap();
    // The during phase is the 8 s window (6 s to 14 s, in whole windows), not the 1–2 s restart.
    assert_eq!((a.during.from_s, a.during.to_s), (6.0, 14.0), "{a:#?}");
    // Recovery still counts from the kill, and no sooner than the replacement was Ready.
    match a.recovery_time {
        faultline::analysis::phases::Recovery::Recovered { after_s } => {
            assert!(
                after_s >= cleared - eff - 1e-9 && after_s < 6.0,
                "{after_s}"
            )
        }
        ref other => panic!("{other:?}"),
    }
}

/// With a `duration` shorter than the restart, the pod kill still ends only when the
/// replacement is Ready: a window that closes early does not make the cluster recovered.
#[test]
fn a_pod_kill_with_a_short_duration_waits_for_the_replacement_to_be_ready() {
    let dir = tempfile::tempdir().unwrap();
    let r = pod_kill_with_window(dir.path(), "6s", "2s");
    let f = &r.faults[0];
    let eff = f.effective_s.unwrap();
    let cleared = f.cleared_s.expect("cleared");
    let ready = r
        .events
        .iter()
        .find(|e| e.kind == "cleared")
        .expect("a cleared event");
    assert!(cleared - eff > 5.0, "cleared {cleared}, effective {eff}");
    assert!((cleared - ready.t_s).abs() < 0.5, "{cleared} vs {ready:?}");
}

/// Results written before the stamps and per-fault baselines still make a report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_without_stamps_or_baselines_still_makes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "spike.yaml", &spike_experiment(1.5, ""));
    let exp = spec::load_experiment(&path).unwrap();
    let out = dir.path().join("out");
    let opts = RunOptions {
        out_dir: out.clone(),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: "t-old".into(),
        faultline_bin: None,
    };
    let r = execute::run(&exp, &opts).await.unwrap();
    let b = r.faults[0]
        .analysis
        .as_ref()
        .unwrap()
        .baseline
        .clone()
        .unwrap();
    // The first fault's baseline is the run's first: warm-up (2 s) to the fault (6 s), short.
    assert_eq!((b.from_s, b.fell_back), (2.0, false));
    assert!(b.reason.unwrap().contains("baseline_min 20 s"));
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("faultline_version");
    o.remove("schema_version");
    for f in o["faults"].as_array_mut().unwrap() {
        f["analysis"].as_object_mut().unwrap().remove("baseline");
    }
    std::fs::write(out.join("result.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let mut s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    s.as_object_mut().unwrap().remove("faultline_version");
    s.as_object_mut().unwrap().remove("schema_version");
    std::fs::write(out.join("summary.json"), serde_json::to_vec(&s).unwrap()).unwrap();
    faultline::report::build::build(&out, None).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("spike (load-spike)"));
    assert!(!html.contains("baseline (pre):"), "no baseline to show");
}

/// Each fault is compared with the stretch after the previous one recovered; one that follows
/// too closely falls back to the run's first baseline and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_gets_its_own_baseline_and_one_too_close_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "three.yaml",
        r#"name: three
target:
  sim: {preset: small}
  api: completions
load:
  rate: 4
  arrival: constant
  workload: fixed:64:8
  duration: 34s
  seed: 3
warmup: 2s
faults:
  - {id: a, fault: {kind: load-spike, multiplier: 1.5}, at: 8s, duration: 2s}
  - {id: b, fault: {kind: load-spike, multiplier: 1.5}, at: 20s, duration: 2s}
  - {id: c, fault: {kind: load-spike, multiplier: 1.5}, at: 25s, duration: 2s}
analysis:
  recovery_windows: 2
  baseline_min: 5s
  tolerance: {ttft_p50: 3.0, ttft_p99: 5.0}
"#,
    );
    let exp = spec::load_experiment(&path).unwrap();
    let opts = RunOptions {
        out_dir: dir.path().join("out"),
        ledger: Ledger::at(dir.path().join("ledger.jsonl")),
        run_id: "t-three".into(),
        faultline_bin: None,
    };
    let r = execute::run(&exp, &opts).await.unwrap();
    let base = |i: usize| {
        let a = r.faults[i].analysis.as_ref().unwrap();
        (a.baseline.clone().unwrap(), a.pre.clone(), a)
    };
    let (first, pre_a, _) = base(0);
    assert_eq!(
        (first.from_s, first.fell_back, &first.reason),
        (2.0, false, &None)
    );
    assert!(first.to_s <= 8.0 && first.to_s > 7.0, "{first:?}");
    let (b, pre_b, a_b) = base(1);
    let a_recovered = match base(0).2.recovery_time {
        faultline::analysis::phases::Recovery::Recovered { after_s } => {
            r.faults[0].cleared_s.unwrap() + after_s
        }
        ref other => panic!("a did not recover: {other:?}"),
    };
    assert!(!b.fell_back, "{b:?}");
    assert_eq!(b.from_s, a_recovered.ceil());
    assert!(b.to_s > 19.0 && b.to_s <= 20.0, "{b:?}");
    assert_eq!(b.requests, a_b.pre.requests);
    assert!(b.windows >= 5 && b.requests > 20, "{b:?}");
    assert_ne!(pre_b.from_s, pre_a.from_s, "not the first baseline");
    assert_ne!(pre_b.requests, pre_a.requests);
    let (c, pre_c, _) = base(2);
    assert!(c.fell_back);
    assert_eq!(
        (c.from_s, c.to_s, c.requests),
        (first.from_s, first.to_s, first.requests)
    );
    assert_eq!(pre_c.requests, pre_a.requests);
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .contains("between the recovery of b")
            && c.reason.as_deref().unwrap().contains("(baseline_min 5 s)"),
        "{c:?}"
    );
}
