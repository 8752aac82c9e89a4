//! Fault kinds against real parts: a real sshd on 127.0.0.1, the sim's `nvidia-smi` (this very
//! binary) run through it, real processes, a real ledger file.

use crate::leftovers;
use crate::sshd::Sshd;
use chrono::Utc;
use faultline::fault::deadman;
use faultline::fault::exec::{Host, HostSpec, Hosts};
use faultline::fault::gpu_lockout::{self, ComputeMode, GpuTarget, LockMode};
use faultline::fault::ledger::{Entry, Ledger, RecoverOptions, recover};
use faultline::fault::{
    FaultContext, FaultSpec, Restoration, Verification, load_spike, ssh_command,
};
use faultline::sim::nvsmi::GpuState;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// `faultline nvidia-smi --state DIR` as a command prefix the remote shell can run.
fn nvsmi(state: &Path) -> String {
    format!(
        "{} nvidia-smi --state {}",
        env!("CARGO_BIN_EXE_faultline"),
        state.display()
    )
}

fn hosts(name: &str, spec: HostSpec) -> Arc<Hosts> {
    Arc::new(Hosts::new(BTreeMap::from([(name.to_string(), spec)])))
}

fn ctx(test: &str, hosts: Arc<Hosts>, deadline_in: chrono::Duration) -> FaultContext {
    let mut c = FaultContext::new(
        &format!("{test}-{}", std::process::id()),
        "f1",
        hosts,
        Utc::now() + deadline_in,
    );
    c.command_timeout = T;
    c
}

fn lockout(state: &Path, gpus: Vec<u32>, kill: bool, margin: Duration) -> FaultSpec {
    FaultSpec::GpuLockout(gpu_lockout::Params {
        targets: vec![GpuTarget {
            host: "node".into(),
            gpus: gpus.into_iter().map(Into::into).collect(),
        }],
        mode: LockMode::Prohibited,
        kill_process: kill,
        nvidia_smi: nvsmi(state),
        deadman_margin: margin,
    })
}

/// Polls `f` until it is true or `within` passes.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

async fn timers(marker: &str) -> String {
    Host::new("here", HostSpec::Local)
        .run_ok(&deadman::find_command(marker), T)
        .await
        .unwrap()
        .stdout
        .trim()
        .to_string()
}

#[tokio::test]
async fn gpu_lockout_over_ssh_sets_prohibited_and_restores_the_mode_it_read() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 4).unwrap();
    gpus.set_mode(1, ComputeMode::ExclusiveProcess).unwrap();
    let spec = lockout(gpus.dir(), vec![1, 2], false, Duration::from_secs(60));
    let c = ctx(
        "lockout",
        hosts("node", sshd.spec()),
        chrono::Duration::seconds(30),
    );

    spec.preflight(&c).await.unwrap();
    let undo = spec.prepare(&c).await.unwrap();
    assert_eq!(
        gpus.mode(1).unwrap(),
        ComputeMode::ExclusiveProcess,
        "prepare touched the GPU"
    );
    spec.inject(&c, &undo).await.unwrap();
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Prohibited);
    assert_eq!(gpus.mode(2).unwrap(), ComputeMode::Prohibited);
    assert_eq!(
        gpus.mode(0).unwrap(),
        ComputeMode::Default,
        "an untargeted GPU changed"
    );
    assert_eq!(
        spec.verify(&c, &undo).await.unwrap(),
        Verification::Verified
    );
    let marker = undo["hosts"][0]["deadman"].as_str().unwrap().to_string();
    assert!(!timers(&marker).await.is_empty(), "no dead-man timer armed");
    let armed = leftovers::armed(&marker);

    spec.restore(&c, &undo).await.unwrap();
    assert_eq!(
        gpus.mode(1).unwrap(),
        ComputeMode::ExclusiveProcess,
        "not the mode read"
    );
    assert_eq!(gpus.mode(2).unwrap(), ComputeMode::Default);
    assert!(
        spec.verify(&c, &undo).await.is_err(),
        "verify passes after restore"
    );
    assert_eq!(
        timers(&marker).await,
        "",
        "restore left the dead-man timer running"
    );
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "restore left a process of the dead-man timer (its sleep) running"
    );
}

#[tokio::test]
async fn gpu_lockout_preflight_names_a_gpu_that_does_not_exist() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    let spec = lockout(gpus.dir(), vec![5], false, Duration::from_secs(60));
    let c = ctx(
        "nogpu",
        hosts("node", sshd.spec()),
        chrono::Duration::seconds(30),
    );
    let e = spec.preflight(&c).await.unwrap_err().to_string();
    assert!(e.contains("no GPU 5"), "{e}");
}

#[tokio::test]
async fn kill_process_kills_the_process_holding_the_gpu() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    let mut victim = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let mut bystander = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    gpus.register_process(1, victim.id()).unwrap();
    gpus.register_process(0, bystander.id()).unwrap();
    let spec = lockout(gpus.dir(), vec![1], true, Duration::from_secs(60));
    let c = ctx(
        "kill",
        hosts("node", sshd.spec()),
        chrono::Duration::seconds(30),
    );
    let undo = spec.prepare(&c).await.unwrap();
    spec.inject(&c, &undo).await.unwrap();
    let died = eventually(Duration::from_secs(5), || {
        victim.try_wait().unwrap().is_some()
    })
    .await;
    let bystander_alive = bystander.try_wait().unwrap().is_none();
    // The lockout bites: a restarted server may not take the GPU back...
    let refused = gpus.register_process(1, std::process::id()).is_err();
    spec.restore(&c, &undo).await.unwrap();
    let _ = victim.kill();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(died, "the process on the locked GPU survived");
    assert!(bystander_alive, "a process on another GPU was killed");
    assert!(refused, "a new process got the locked GPU");
    // ...until restore.
    gpus.register_process(1, std::process::id()).unwrap();
}

#[tokio::test]
async fn the_deadman_switch_restores_the_mode_by_itself_when_restore_never_comes() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    gpus.set_mode(1, ComputeMode::ExclusiveProcess).unwrap();
    let spec = lockout(gpus.dir(), vec![1], false, Duration::from_secs(2));
    let undo;
    let armed;
    {
        let c = ctx(
            "deadman",
            hosts("node", sshd.spec()),
            chrono::Duration::zero(),
        );
        undo = spec.prepare(&c).await.unwrap();
        spec.inject(&c, &undo).await.unwrap();
        assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Prohibited);
        armed = leftovers::armed(undo["hosts"][0]["deadman"].as_str().unwrap());
        // faultline "dies" here: the context, its hosts and ssh sessions are dropped.
    }
    let back = eventually(Duration::from_secs(10), || {
        gpus.mode(1).unwrap() == ComputeMode::ExclusiveProcess
    })
    .await;
    assert!(
        back,
        "the dead-man switch did not restore the recorded mode"
    );
    let marker = undo["hosts"][0]["deadman"].as_str().unwrap();
    let mut left = timers(marker).await;
    for _ in 0..30 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = timers(marker).await;
    }
    assert_eq!(left, "", "the timer is still there after firing");
    assert!(!armed.is_empty(), "no dead-man timer armed");
    assert_eq!(leftovers::left_of(&armed), Vec::<String>::new());
}

#[tokio::test]
async fn a_normal_restore_cancels_the_deadman_switch() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    gpus.set_mode(1, ComputeMode::ExclusiveProcess).unwrap();
    let spec = lockout(gpus.dir(), vec![1], false, Duration::from_secs(2));
    let c = ctx(
        "cancel",
        hosts("node", sshd.spec()),
        chrono::Duration::zero(),
    );
    let undo = spec.prepare(&c).await.unwrap();
    spec.inject(&c, &undo).await.unwrap();
    let armed = leftovers::armed(undo["hosts"][0]["deadman"].as_str().unwrap());
    assert!(!armed.is_empty(), "no dead-man timer armed");
    spec.restore(&c, &undo).await.unwrap();
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "the cancelled timer left a process running"
    );
    // An operator changes the GPU afterwards; a timer that still fired would undo that.
    gpus.set_mode(1, ComputeMode::Default).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        gpus.mode(1).unwrap(),
        ComputeMode::Default,
        "the cancelled dead-man timer fired anyway"
    );
}

#[tokio::test]
async fn strict_host_key_checking_rejects_a_wrong_known_hosts() {
    let sshd = Sshd::start();
    let wrong = sshd.dir.path().join("wrong_known_hosts");
    let other = sshd.dir.path().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = other_pub.split_whitespace();
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let mut spec = sshd.ssh_spec();
    spec.known_hosts = Some(wrong.clone());
    let host = Host::new("node", HostSpec::Ssh(spec.clone()));
    let e = host.run("true", T).await.unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");
    // An empty known_hosts (unknown key) is rejected too: nothing is accepted silently.
    std::fs::write(&wrong, "").unwrap();
    let host = Host::new("node", HostSpec::Ssh(spec.clone()));
    assert!(host.run("true", T).await.is_err());
    // The explicit opt-out connects.
    spec.strict_host_key_checking = false;
    let host = Host::new("node", HostSpec::Ssh(spec));
    assert!(host.run_ok("true", T).await.is_ok());
}

fn ssh_command_spec(dir: &Path, verify: bool, margin: Duration) -> FaultSpec {
    let flag = dir.join("flag").display().to_string();
    FaultSpec::SshCommand(ssh_command::Params {
        hosts: vec!["node".into()],
        inject: format!("touch {flag}"),
        restore: format!("rm -f {flag}"),
        verify: verify.then(|| format!("test -f {flag}")),
        deadman_margin: margin,
    })
}

#[tokio::test]
async fn ssh_command_injects_verifies_and_restores_through_sshd() {
    let sshd = Sshd::start();
    let flag = sshd.dir.path().join("flag");
    let spec = ssh_command_spec(sshd.dir.path(), true, Duration::from_secs(60));
    let c = ctx(
        "sshcmd",
        hosts("node", sshd.spec()),
        chrono::Duration::seconds(30),
    );
    spec.preflight(&c).await.unwrap();
    let undo = spec.prepare(&c).await.unwrap();
    spec.inject(&c, &undo).await.unwrap();
    assert!(flag.exists());
    let armed = leftovers::armed(undo["hosts"][0]["deadman"].as_str().unwrap());
    assert!(!armed.is_empty(), "no dead-man timer armed");
    assert_eq!(
        spec.verify(&c, &undo).await.unwrap(),
        Verification::Verified
    );
    spec.restore(&c, &undo).await.unwrap();
    assert!(!flag.exists());
    let e = spec.verify(&c, &undo).await.unwrap_err().to_string();
    assert!(e.contains("did not take effect"), "{e}");
    let marker = undo["hosts"][0]["deadman"].as_str().unwrap();
    assert_eq!(timers(marker).await, "");
    assert_eq!(leftovers::left_of(&armed), Vec::<String>::new());

    let unverifiable = ssh_command_spec(sshd.dir.path(), false, Duration::ZERO);
    let undo = unverifiable.prepare(&c).await.unwrap();
    assert!(matches!(
        unverifiable.verify(&c, &undo).await.unwrap(),
        Verification::NotVerifiable { .. }
    ));
}

#[tokio::test]
async fn restore_is_idempotent() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    gpus.set_mode(0, ComputeMode::ExclusiveProcess).unwrap();
    let spec = lockout(gpus.dir(), vec![0], false, Duration::from_secs(60));
    let c = ctx(
        "idem",
        hosts("node", sshd.spec()),
        chrono::Duration::seconds(30),
    );
    let undo = spec.prepare(&c).await.unwrap();
    // Before inject (a crash right after the ledger write), once, and twice more.
    spec.restore(&c, &undo).await.unwrap();
    spec.inject(&c, &undo).await.unwrap();
    for _ in 0..2 {
        spec.restore(&c, &undo).await.unwrap();
        assert_eq!(gpus.mode(0).unwrap(), ComputeMode::ExclusiveProcess);
    }
    let ssh = ssh_command_spec(sshd.dir.path(), true, Duration::from_secs(60));
    let undo = ssh.prepare(&c).await.unwrap();
    ssh.inject(&c, &undo).await.unwrap();
    ssh.restore(&c, &undo).await.unwrap();
    ssh.restore(&c, &undo).await.unwrap();
}

/// What the runner does up to inject: preflight, prepare, ledger entry fsynced, inject, verify.
async fn inject_with_ledger(ledger: &Ledger, spec: &FaultSpec, c: &FaultContext) {
    spec.preflight(c).await.unwrap();
    let undo = spec.prepare(c).await.unwrap();
    ledger
        .record_inject(&Entry::new(c, spec, &undo).unwrap())
        .unwrap();
    spec.inject(c, &undo).await.unwrap();
    spec.verify(c, &undo).await.unwrap();
}

#[tokio::test]
async fn recover_restores_from_the_ledger_after_the_injecting_code_died() {
    let sshd = Sshd::start();
    let gpus = GpuState::create(sshd.dir.path().join("gpus"), 2).unwrap();
    gpus.set_mode(1, ComputeMode::ExclusiveProcess).unwrap();
    let ledger = Ledger::at(sshd.dir.path().join("state/ledger.jsonl"));
    let spec = lockout(gpus.dir(), vec![1], false, Duration::from_secs(60));
    {
        let c = ctx(
            "recover",
            hosts("node", sshd.spec()),
            chrono::Duration::seconds(30),
        );
        inject_with_ledger(&ledger, &spec, &c).await;
        // Dies: everything is dropped, nothing restored.
    }
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::Prohibited);
    let outstanding = ledger.outstanding().unwrap();
    assert_eq!(outstanding.len(), 1);
    assert_eq!(outstanding[0].hosts.keys().collect::<Vec<_>>(), ["node"]);
    let marker = deadman::marker(&outstanding[0].run_id, "f1", "node");
    let armed = leftovers::armed(&marker);
    assert!(!armed.is_empty(), "no dead-man timer armed");

    let report = recover(&ledger, &RecoverOptions::default()).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.restored.len(), 1, "{report:?}");
    assert_eq!(report.restored[0].how, Restoration::Recover);
    assert_eq!(gpus.mode(1).unwrap(), ComputeMode::ExclusiveProcess);
    assert!(
        ledger.outstanding().unwrap().is_empty(),
        "the ledger still holds it"
    );
    assert_eq!(timers(&marker).await, "", "recover left the dead-man timer");
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "recover left a process of the dead-man timer running"
    );
    // A second recover finds nothing to do.
    let again = recover(&ledger, &RecoverOptions::default()).await.unwrap();
    assert!(again.restored.is_empty() && again.failed.is_empty());
}

#[tokio::test]
async fn recover_retries_a_failing_restore_until_it_succeeds() {
    let sshd = Sshd::start();
    let counter = sshd.dir.path().join("count");
    let c_path = counter.display().to_string();
    let spec = FaultSpec::SshCommand(ssh_command::Params {
        hosts: vec!["node".into()],
        inject: "true".into(),
        // Fails the first time it runs, succeeds after.
        restore: format!(
            "n=$(cat {c_path} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c_path}; [ $n -ge 2 ]"
        ),
        verify: None,
        deadman_margin: Duration::ZERO,
    });
    let ledger = Ledger::at(sshd.dir.path().join("ledger.jsonl"));
    {
        let c = ctx(
            "retry",
            hosts("node", sshd.spec()),
            chrono::Duration::seconds(30),
        );
        inject_with_ledger(&ledger, &spec, &c).await;
    }
    let opts = RecoverOptions {
        attempts: 3,
        backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let report = recover(&ledger, &opts).await.unwrap();
    assert_eq!(report.restored.len(), 1, "{report:?}");
    assert_eq!(report.restored[0].attempts, 2);
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "2");
    assert!(ledger.outstanding().unwrap().is_empty());
}

#[tokio::test]
async fn recover_reports_what_it_could_not_restore_and_keeps_it_outstanding() {
    let sshd = Sshd::start();
    let spec = FaultSpec::SshCommand(ssh_command::Params {
        hosts: vec!["node".into()],
        inject: "true".into(),
        restore: "echo 'restore is broken' >&2; exit 1".into(),
        verify: None,
        deadman_margin: Duration::ZERO,
    });
    let ledger = Ledger::at(sshd.dir.path().join("ledger.jsonl"));
    {
        let c = ctx(
            "fail",
            hosts("node", sshd.spec()),
            chrono::Duration::seconds(30),
        );
        inject_with_ledger(&ledger, &spec, &c).await;
    }
    let opts = RecoverOptions {
        attempts: 2,
        backoff: Duration::from_millis(50),
        ..Default::default()
    };
    let report = recover(&ledger, &opts).await.unwrap();
    assert!(report.restored.is_empty());
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].reason.contains("restore is broken"),
        "{report:?}"
    );
    assert_eq!(ledger.outstanding().unwrap().len(), 1);
}

#[test]
fn a_torn_ledger_line_is_skipped_and_later_records_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::at(dir.path().join("ledger.jsonl"));
    let c = ctx(
        "torn",
        hosts("node", HostSpec::Local),
        chrono::Duration::seconds(30),
    );
    let spec = FaultSpec::LoadSpike(load_spike::Params { multiplier: 2.0 });
    let entry = Entry::new(&c, &spec, &serde_json::json!({"previous": 1.0})).unwrap();
    ledger.record_inject(&entry).unwrap();
    // A crash in the middle of the next write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(ledger.path())
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"record\":\"inject\",\"run_id\":\"x").unwrap();
    let fold = ledger.read().unwrap();
    assert_eq!(fold.outstanding.len(), 1);
    assert_eq!(fold.warnings.len(), 1);
    ledger
        .record_done(&entry.run_id, &entry.fault_id, Restoration::Normal)
        .unwrap();
    let fold = ledger.read().unwrap();
    assert!(fold.outstanding.is_empty(), "{:?}", fold.outstanding);
    assert_eq!(fold.warnings.len(), 1);
}

#[tokio::test]
async fn load_spike_multiplies_the_rate_and_restores_the_previous_one() {
    let mut c = ctx(
        "spike",
        Arc::new(Hosts::default()),
        chrono::Duration::seconds(30),
    );
    let control = Arc::new(faultline::load::engine::Control::default());
    c.control = Some(control.clone());
    control.set_multiplier(1.5);
    let spec = FaultSpec::LoadSpike(load_spike::Params { multiplier: 3.0 });
    spec.preflight(&c).await.unwrap();
    let undo = spec.prepare(&c).await.unwrap();
    spec.inject(&c, &undo).await.unwrap();
    assert_eq!(control.multiplier(), 3.0);
    assert_eq!(
        spec.verify(&c, &undo).await.unwrap(),
        Verification::Verified
    );
    spec.restore(&c, &undo).await.unwrap();
    spec.restore(&c, &undo).await.unwrap();
    assert_eq!(control.multiplier(), 1.5);
    let bad = FaultSpec::LoadSpike(load_spike::Params { multiplier: -1.0 });
    let e = bad.preflight(&c).await.unwrap_err().to_string();
    assert!(e.contains("-1"), "{e}");
}

#[tokio::test]
async fn kube_faults_without_a_cluster_are_refused_in_preflight() {
    let c = ctx(
        "kube",
        Arc::new(Hosts::default()),
        chrono::Duration::seconds(30),
    );
    let spec: FaultSpec =
        serde_json::from_str(r#"{"kind":"pod-kill","selector":"app=vllm"}"#).unwrap();
    let e = spec.preflight(&c).await.unwrap_err().to_string();
    assert!(e.contains("needs a Kubernetes cluster"), "{e}");
}

#[tokio::test]
async fn local_commands_find_faultline_on_path() {
    // The test binary lives in target/debug/deps; the faultline binary one level up is not
    // on PATH by this rule, so check the rule itself: the exe's directory comes first.
    let out = Host::new("here", HostSpec::Local)
        .run_ok("echo \"$PATH\"", T)
        .await
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_str().unwrap().to_string();
    assert!(out.stdout.starts_with(&dir), "{}", out.stdout);
    let e = Host::new("here", HostSpec::Local)
        .run_ok("echo nope >&2; exit 3", T)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn the_nvidia_smi_subcommand_behaves_like_the_real_tool() {
    let dir = tempfile::tempdir().unwrap();
    GpuState::create(dir.path(), 2).unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .arg("nvidia-smi")
            .args(args)
            .env("FAULTLINE_SIM_STATE", dir.path())
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["-i", "1", "-c", "EXCLUSIVE_PROCESS"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "Set compute mode to EXCLUSIVE_PROCESS for GPU 00000000:01:00.0.\nAll done.\n"
    );
    let (_, out, _) = run(&["--query-gpu=index,compute_mode", "--format=csv,noheader"]);
    assert_eq!(out, "0, Default\n1, Exclusive_Process\n");
    // The real tool prints its errors on stdout.
    let (code, out, _) = run(&["-i", "9", "-c", "0"]);
    assert_ne!(code, 0);
    assert!(out.contains("No devices were found"), "{out}");
    let (code, _, _) = run(&["-L"]);
    assert_eq!(code, 0);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["nvidia-smi", "-L"])
        .env_remove("FAULTLINE_SIM_STATE")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--state"));
}
