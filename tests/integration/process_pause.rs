//! `process-pause` against real processes on this machine (a `local` host): the kind freezes
//! exactly the matched process (the kernel's `/proc/PID/stat` says `T`), thaws it on restore,
//! twice without harm, from the ledger in a new process after the injecting one is gone, and
//! by the dead-man timer on its own.

use faultline::fault::exec::{HostSpec, Hosts};
use faultline::fault::ledger::Ledger;
use faultline::fault::{FaultContext, FaultSpec, Verification};
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A process with a command line no other test uses: `sleep` under a unique `argv[0]`-free
/// pattern (the seconds value carries the test's tag).
fn sleeper(secs: &str) -> Child {
    Command::new("sleep").arg(secs).spawn().expect("sleep runs")
}

/// The state letter of `pid` in `/proc/PID/stat` (`S` sleeping, `T` stopped).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.chars().next().unwrap()
}

fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok()
}

fn spec(pattern: &str, margin: &str) -> FaultSpec {
    serde_json::from_value(serde_json::json!({
        "kind": "process-pause",
        "host": "local",
        "pattern": pattern,
        "deadman_margin": margin,
    }))
    .unwrap()
}

fn ctx(id: &str, deadline_in: chrono::Duration) -> FaultContext {
    let hosts: BTreeMap<String, HostSpec> = [("local".to_string(), HostSpec::Local)].into();
    FaultContext::new(
        &format!("pp-{id}-{}", std::process::id()),
        "pause",
        Arc::new(Hosts::new(hosts)),
        chrono::Utc::now() + deadline_in,
    )
}

#[tokio::test]
async fn pauses_exactly_the_matched_process_and_restore_thaws_it_twice_safely() {
    let mut target = sleeper("901.25");
    let mut other = sleeper("901.5");
    let (pid, other_pid) = (target.id(), other.id());
    let s = spec("sleep 901\\.25", "60s");
    let c = ctx("life", chrono::Duration::seconds(60));
    s.preflight(&c).await.unwrap();
    let undo = s.prepare(&c).await.unwrap();
    assert_eq!(undo["processes"][0]["pid"], pid);
    assert_eq!(undo["processes"].as_array().unwrap().len(), 1);
    s.inject(&c, &undo).await.unwrap();
    assert_eq!(s.verify(&c, &undo).await.unwrap(), Verification::Verified);
    assert_eq!(state(pid), 'T', "the matched process is stopped");
    assert_ne!(
        state(other_pid),
        'T',
        "a process that does not match is untouched"
    );
    s.restore(&c, &undo).await.unwrap();
    assert_ne!(state(pid), 'T');
    s.restore(&c, &undo).await.unwrap();
    // After the process is gone, restore still succeeds (nothing to thaw).
    target.kill().unwrap();
    target.wait().unwrap();
    s.restore(&c, &undo).await.unwrap();
    other.kill().unwrap();
    other.wait().unwrap();
}

#[tokio::test]
async fn no_match_and_too_many_matches_are_refused_before_anything_is_paused() {
    let c = ctx("refuse", chrono::Duration::seconds(60));
    let err = spec("sleep 902\\.0", "60s").prepare(&c).await.unwrap_err();
    assert!(err.to_string().contains("no process"), "{err}");
    let mut a = sleeper("902.25");
    let mut b = sleeper("902.5");
    let err = spec("sleep 902\\.(25|5)", "60s")
        .prepare(&c)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("more than max_processes 1"),
        "{err}"
    );
    assert_ne!(state(a.id()), 'T');
    assert_ne!(state(b.id()), 'T');
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
}

/// `faultline inject` without `--for` leaves the fault in the ledger and exits; `recover` in a
/// new process thaws the process from the ledger alone. Then the dead-man timer, armed on the
/// host by a second inject, thaws it by itself after the deadline plus the margin.
#[test]
fn recover_from_the_ledger_and_the_dead_man_timer_each_thaw_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let mut target = sleeper("903.25");
    let pid = target.id();
    let inject = |max: &str, margin: &str| {
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["inject", "process-pause", "--set", "host=local"])
            .args(["--set", "pattern=sleep 903\\.25", "--set"])
            .arg(format!("deadman_margin={margin}"))
            .args(["--max", max, "--ledger"])
            .arg(&ledger)
            .output()
            .unwrap()
    };
    let out = inject("1h", "60s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(pid), 'T');
    assert_eq!(Ledger::at(&ledger).outstanding().unwrap().len(), 1);
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["recover", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_ne!(state(pid), 'T', "recover thawed it");
    assert!(Ledger::at(&ledger).outstanding().unwrap().is_empty());

    let out = inject("1s", "1s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(pid), 'T');
    assert!(
        wait_for(Duration::from_secs(20), || state(pid) != 'T'),
        "the dead-man timer did not thaw the process"
    );
    target.kill().unwrap();
    target.wait().unwrap();
}

/// `faultline run` of a `process-pause` bound to the embedded sim (`pattern: faultline sim-worker
/// 0` on a `local` host): the kind finds and stops worker 0's real process, and the sim reacts
/// like a hung engine — worker 0 steps nothing, its health checks time out so the router takes
/// it out, requests it held stall until the client gives up — and comes back once continued.
/// Ground truth: the sim's event log.
#[test]
fn a_paused_sim_worker_hangs_until_thawed_and_the_router_routes_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("hung.yaml");
    std::fs::write(
        &exp,
        r#"name: hung-worker
target:
  sim: {preset: small, gpus: 2, health_check_interval: 250ms}
  api: completions
  timeout: 3s
hosts:
  local: local
load:
  rate: 6
  arrival: constant
  workload: fixed:64:16
  duration: 24s
warmup: 2s
faults:
  - id: hang
    fault: {kind: process-pause, host: local, pattern: "faultline sim-worker 0", deadman_margin: 30s}
    at: 6s
    duration: 6s
criteria:
  max_recovery: 10s
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", exp.to_str().unwrap(), "--out"])
        .arg(dir.path().join("out"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/result.json")).unwrap())
            .unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let f = &r["faults"][0];
    let eff = f["effective_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("{f:#}\n{stderr}"));
    let cleared = f["cleared_s"].as_f64().unwrap();
    assert!(
        f["action"]
            .as_str()
            .unwrap()
            .contains("/bin/sim-worker-0( .*)?"),
        "{f:#}"
    );
    let events: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("out/sim-events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let at = |kind: &str, worker: u64| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["worker"] == worker)
            .map(|e| e["t_s"].as_f64().unwrap())
            .unwrap_or_else(|| panic!("no {kind} for worker {worker} in {events:#?}"))
    };
    // Only worker 0 was frozen, from the injection to the restore (the sim reads /proc every
    // 100 ms), and its process was never killed.
    let paused = at("worker_paused", 0);
    let resumed = at("worker_resumed", 0);
    assert!(
        paused >= eff - 0.5 && paused <= eff + 1.0,
        "paused {paused}, injected {eff}"
    );
    assert!(
        resumed >= cleared - 0.5 && resumed <= cleared + 1.0,
        "resumed {resumed}, restored {cleared}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["worker"] == 1
                && (e["kind"] == "worker_paused" || e["kind"] == "router_removed")),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e["kind"] == "worker_failed"),
        "{events:#?}"
    );
    // The router took it out on timed-out health checks and put it back after the thaw.
    let removed = events
        .iter()
        .find(|e| e["kind"] == "router_removed" && e["worker"] == 0)
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        removed["detail"]
            .as_str()
            .unwrap()
            .contains("process stopped"),
        "{removed}"
    );
    let removed_at = removed["t_s"].as_f64().unwrap();
    assert!(
        removed_at > paused && removed_at < paused + 2.0,
        "{removed_at} vs {paused}"
    );
    let added = events
        .iter()
        .find(|e| e["kind"] == "router_added" && e["worker"] == 0)
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(added["t_s"].as_f64().unwrap() >= resumed, "{added}");
    // Users saw it: the requests held by the frozen worker timed out (3 s), nothing else failed.
    let a = &f["analysis"];
    let errors = a["during"]["errors"].as_u64().unwrap();
    assert!(errors >= 1, "{a:#}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/summary.json")).unwrap())
            .unwrap();
    let kinds = &summary["errors_by_kind"];
    let timeouts = kinds
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("timeout"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(timeouts, summary["errors"].as_u64().unwrap(), "{kinds}");
    assert!(timeouts >= 1, "{kinds}");
    // Thawed on restore: nothing left in the ledger.
    let ledger = Ledger::at(dir.path().join("ledger.jsonl"));
    assert!(ledger.outstanding().unwrap().is_empty());
}
