//! `gpu-degrade` against the sim's `nvidia-smi` (the real `faultline` binary on a state
//! directory, reached through a `local` host): clocks locked and the power limit lowered as
//! the query reads them back, restored to exactly the values read before, from the ledger in a
//! new process, and by the dead-man timer on its own.

use faultline::fault::exec::{HostSpec, Hosts};
use faultline::fault::ledger::Ledger;
use faultline::fault::{FaultContext, FaultSpec, Verification};
use faultline::sim::nvsmi::GpuState;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn nvsmi(dir: &Path) -> String {
    GpuState::create(dir, 4).unwrap();
    format!(
        "{} nvidia-smi --state {}",
        env!("CARGO_BIN_EXE_faultline"),
        dir.display()
    )
}

/// `index, clocks.sm, clocks.max.sm, power.limit` of every GPU, as the query prints them.
fn readings(nvsmi: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{nvsmi} --query-gpu=index,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader,nounits"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn line(readings: &str, gpu: usize) -> String {
    readings.lines().nth(gpu).unwrap().to_string()
}

fn spec(nvsmi: &str, margin: &str) -> FaultSpec {
    serde_json::from_value(serde_json::json!({
        "kind": "gpu-degrade",
        "targets": [{"host": "local", "gpus": [1]}],
        "clocks": {"min_mhz": 900, "max_mhz": 900},
        "power_limit_w": 350,
        "nvidia_smi": nvsmi,
        "deadman_margin": margin,
    }))
    .unwrap()
}

fn ctx(id: &str) -> FaultContext {
    let hosts: BTreeMap<String, HostSpec> = [("local".to_string(), HostSpec::Local)].into();
    FaultContext::new(
        &format!("gd-{id}-{}", std::process::id()),
        "degrade",
        Arc::new(Hosts::new(hosts)),
        chrono::Utc::now() + chrono::Duration::seconds(60),
    )
}

#[tokio::test]
async fn locks_clocks_and_power_on_the_named_gpu_and_restores_the_values_read_before() {
    let dir = tempfile::tempdir().unwrap();
    let nvsmi = nvsmi(dir.path());
    let before = readings(&nvsmi);
    let s = spec(&nvsmi, "60s");
    let c = ctx("life");
    s.preflight(&c).await.unwrap();
    let undo = s.prepare(&c).await.unwrap();
    s.inject(&c, &undo).await.unwrap();
    assert_eq!(s.verify(&c, &undo).await.unwrap(), Verification::Verified);
    let during = readings(&nvsmi);
    let gpu1: Vec<String> = line(&during, 1)
        .split(',')
        .map(|f| f.trim().to_string())
        .collect();
    assert_eq!(gpu1[1], "900", "SM clock locked: {during}");
    assert_eq!(
        gpu1[3].parse::<f64>().unwrap(),
        350.0,
        "power limit: {during}"
    );
    for g in [0, 2, 3] {
        assert_eq!(line(&during, g), line(&before, g), "GPU {g} untouched");
    }
    s.restore(&c, &undo).await.unwrap();
    assert_eq!(readings(&nvsmi), before);
    s.restore(&c, &undo).await.unwrap();
    assert_eq!(readings(&nvsmi), before, "restore is idempotent");
}

/// `faultline inject` without `--for` leaves the fault in the ledger; `recover` in a new
/// process restores from it alone. A second inject with a 1 s deadline and margin is undone by
/// the node-side dead-man timer by itself.
#[test]
fn recover_from_the_ledger_and_the_dead_man_timer_each_restore_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let nvsmi = nvsmi(&dir.path().join("gpus"));
    let before = readings(&nvsmi);
    let ledger = dir.path().join("ledger.jsonl");
    let inject = |max: &str, margin: &str| {
        Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args([
                "inject",
                "gpu-degrade",
                "--set",
                "targets=[{host: local, gpus: [2]}]",
            ])
            .args(["--set", "power_limit_w=300", "--set"])
            .arg(format!("nvidia_smi={nvsmi}"))
            .arg("--set")
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
    assert_ne!(readings(&nvsmi), before);
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
    assert_eq!(readings(&nvsmi), before, "recover restored the power limit");
    assert!(Ledger::at(&ledger).outstanding().unwrap().is_empty());

    let out = inject("1s", "1s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(readings(&nvsmi), before);
    let start = Instant::now();
    while readings(&nvsmi) != before && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        readings(&nvsmi),
        before,
        "the dead-man timer did not restore"
    );
}
