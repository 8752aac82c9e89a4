//! The gray-failure kinds through a real OpenSSH server on loopback, as on a GPU node:
//! `gpu-degrade` on the sim's `nvidia-smi` and `process-pause` on a real process, each injected,
//! verified, restored exactly, and — the part only a real ssh session proves — undone by the
//! node-side dead-man timer after the session that armed it has closed.

use crate::sshd::Sshd;
use faultline::fault::exec::Hosts;
use faultline::fault::{FaultContext, FaultSpec, Verification};
use faultline::sim::nvsmi::GpuState;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn ctx(sshd: &Sshd, test: &str, deadline_in: chrono::Duration) -> FaultContext {
    let hosts = BTreeMap::from([("node".to_string(), sshd.spec())]);
    let mut c = FaultContext::new(
        &format!("gray-{test}-{}", std::process::id()),
        "f1",
        Arc::new(Hosts::new(hosts)),
        chrono::Utc::now() + deadline_in,
    );
    c.command_timeout = Duration::from_secs(20);
    c
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

/// `(SM clock, power limit)` of `gpu` as the sim's state holds them.
fn clocks(gpus: &GpuState, gpu: usize) -> (u32, f64) {
    let s = gpus.load().unwrap();
    let g = &s.gpus[gpu];
    (g.sm_clock_mhz(), g.power_limit_w)
}

#[tokio::test]
async fn gpu_degrade_over_ssh_restores_exactly_and_its_dead_man_timer_outlives_the_session() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 4).unwrap();
    let nvsmi = format!("{BIN} nvidia-smi --state {}", gpus.dir().display());
    let before: Vec<(u32, f64)> = (0..4).map(|g| clocks(&gpus, g)).collect();
    let spec = |margin: &str| -> FaultSpec {
        serde_json::from_value(serde_json::json!({
            "kind": "gpu-degrade",
            "targets": [{"host": "node", "gpus": [2]}],
            "clocks": {"min_mhz": 1200, "max_mhz": 1200},
            "power_limit_w": 400,
            "nvidia_smi": nvsmi,
            "deadman_margin": margin,
        }))
        .unwrap()
    };
    let s = spec("60s");
    let c = ctx(&sshd, "degrade", chrono::Duration::seconds(60));
    s.preflight(&c).await.unwrap();
    let undo = s.prepare(&c).await.unwrap();
    s.inject(&c, &undo).await.unwrap();
    assert_eq!(s.verify(&c, &undo).await.unwrap(), Verification::Verified);
    assert_eq!(clocks(&gpus, 2), (1200, 400.0));
    for g in [0, 1, 3] {
        assert_eq!(clocks(&gpus, g), before[g], "GPU {g} untouched");
    }
    s.restore(&c, &undo).await.unwrap();
    assert_eq!(clocks(&gpus, 2), before[2]);
    s.restore(&c, &undo).await.unwrap();
    assert_eq!(clocks(&gpus, 2), before[2], "restore twice is harmless");

    // Deadline 1 s away, margin 1 s: the timer armed through ssh restores on its own, after
    // this process has dropped every connection to the node.
    let s = spec("1s");
    let c = ctx(&sshd, "degrade-deadman", chrono::Duration::seconds(1));
    let undo = s.prepare(&c).await.unwrap();
    s.inject(&c, &undo).await.unwrap();
    assert_eq!(clocks(&gpus, 2), (1200, 400.0));
    drop(c);
    assert!(
        wait_for(Duration::from_secs(15), || clocks(&gpus, 2) == before[2]),
        "the dead-man timer did not restore GPU 2: {:?}",
        clocks(&gpus, 2)
    );
}

/// The state letter of `/proc/PID/stat` (`S` sleeping, `T` stopped).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[tokio::test]
async fn process_pause_over_ssh_freezes_one_process_and_its_dead_man_timer_outlives_the_session() {
    let sshd = Sshd::start();
    // A command line no other test has: the pid in the seconds value.
    let secs = format!("907.{}", std::process::id());
    let mut target = Command::new("sleep").arg(&secs).spawn().unwrap();
    let pid = target.id();
    let spec = |margin: &str| -> FaultSpec {
        serde_json::from_value(serde_json::json!({
            "kind": "process-pause",
            "host": "node",
            "pattern": format!("sleep {}", secs.replace('.', "\\.")),
            "deadman_margin": margin,
        }))
        .unwrap()
    };
    let s = spec("60s");
    let c = ctx(&sshd, "pause", chrono::Duration::seconds(60));
    s.preflight(&c).await.unwrap();
    let undo = s.prepare(&c).await.unwrap();
    assert_eq!(undo["processes"][0]["pid"], pid, "{undo}");
    s.inject(&c, &undo).await.unwrap();
    assert_eq!(s.verify(&c, &undo).await.unwrap(), Verification::Verified);
    assert_eq!(state(pid), 'T');
    s.restore(&c, &undo).await.unwrap();
    assert_ne!(state(pid), 'T');
    s.restore(&c, &undo).await.unwrap();
    assert_ne!(state(pid), 'T', "restore twice is harmless");

    let s = spec("1s");
    let c = ctx(&sshd, "pause-deadman", chrono::Duration::seconds(1));
    let undo = s.prepare(&c).await.unwrap();
    s.inject(&c, &undo).await.unwrap();
    assert_eq!(state(pid), 'T');
    drop(c);
    assert!(
        wait_for(Duration::from_secs(15), || state(pid) != 'T'),
        "the dead-man timer did not continue {pid}"
    );
    target.kill().unwrap();
    target.wait().unwrap();
}
