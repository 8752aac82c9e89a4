//! Runs and injects that share a ledger: one owner per target, unique run ids, and a `recover`
//! that is not fooled by a zombie injector (issue 9, items 1–3).

use faultline::fault::ledger::{Ledger, Record};
use faultline::sim::nvsmi::GpuState;
use faultline::sim::{self, SimConfig};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faultline"));
    c.env_remove("OPENAI_API_KEY")
        .env_remove("FAULTLINE_LEDGER");
    c
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `index, mode` lines of the GPUs behind `nvidia_smi`.
fn modes(nvidia_smi: &str) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{nvidia_smi} --query-gpu=index,compute_mode --format=csv,noheader"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all_default(n: u32) -> String {
    (0..n).map(|i| format!("{i}, Default\n")).collect()
}

fn status(ledger: &Path) -> String {
    let o = bin()
        .args(["status", "--ledger"])
        .arg(ledger)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Issue 9, scenario 1: `faultline run exp --ledger L & sleep 0.5; faultline run exp --ledger L`
/// against one standalone sim. Before: both PASSed and GPUs 0 and 2 stayed `Prohibited` while
/// `status` said all was clean (the second run read the first's lock as the mode to restore).
#[test]
fn a_second_run_on_one_ledger_is_refused_naming_the_holder_and_nothing_leaks() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = SimConfig::preset("h100x4-70b").unwrap();
    // Its `nvidia-smi` wrapper calls the faultline binary (not this test binary).
    config.faultline_bin = Some(env!("CARGO_BIN_EXE_faultline").into());
    let sim = rt
        .block_on(sim::start(config, "127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let wrapper = sim.state_dir().join("bin").join("nvidia-smi");
    let nvsmi = wrapper.to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.yaml");
    std::fs::write(
        &exp,
        format!(
            "name: owner-test
target: {{endpoint: 'http://{}', model: sim-llama-70b, api: chat}}
hosts: {{local: local}}
load: {{rate: 4, duration: 6s, workload: 'fixed:16:4'}}
warmup: 1s
faults:
  - id: lock
    fault:
      kind: gpu-lockout
      targets: [{{host: local, gpus: [0, 2]}}]
      kill_process: false
      nvidia_smi: '{nvsmi}'
    at: 2s
    duration: 2s
",
            sim.addr
        ),
    )
    .unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let run = |out: &str| {
        let mut c = bin();
        c.arg("run")
            .arg(&exp)
            .arg("--ledger")
            .arg(&ledger)
            .arg("--out")
            .arg(dir.path().join(out))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let first = run("a").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = run("b").output().unwrap();
    let first = first.wait_with_output().unwrap();
    // Normally the second is refused. On a loaded machine the first may not have claimed its
    // GPUs within the 0.5 s; then the first is refused instead — either way exactly one runs.
    let (winner, loser, loser_dir) = if second.status.code() == Some(2) {
        (&first, &second, "b")
    } else {
        (&second, &first, "a")
    };
    let (a, b) = (text(winner), text(loser));
    // Refused up front with exit 2, naming the GPU, the holder's run id and pid.
    assert_eq!(loser.status.code(), Some(2), "{b}\n{a}");
    assert!(
        b.contains("refused: gpu:") && b.contains("is held by run owner-test-"),
        "{b}"
    );
    assert!(b.contains(&format!("pid {}", first_pid_of(&ledger))), "{b}");
    assert!(
        !dir.path().join(loser_dir).join("result.json").exists(),
        "{b}"
    );
    // The first ran its fault (injected and restored normally).
    let records = Ledger::at(&ledger).records().unwrap();
    let injects = records
        .iter()
        .filter(|r| matches!(r, Record::Inject(_)))
        .count();
    let dones = records
        .iter()
        .filter(|r| matches!(r, Record::Done(_)))
        .count();
    assert_eq!((injects, dones), (1, 1), "{a}");
    // Nothing leaked: every GPU back to Default, the ledger clean.
    assert_eq!(modes(&nvsmi), all_default(4), "{a}\n{b}");
    assert!(status(&ledger).contains("no faults in effect"));
    rt.block_on(sim.shutdown());
}

/// The pid recorded by the (single) inject record of `ledger`.
fn first_pid_of(ledger: &Path) -> u32 {
    Ledger::at(ledger)
        .records()
        .unwrap()
        .into_iter()
        .find_map(|r| match r {
            Record::Inject(e) => Some(e.pid),
            _ => None,
        })
        .expect("the first run injected")
}

fn gpu_state(dir: &Path, n: u32) -> String {
    GpuState::create(dir, n).unwrap();
    format!(
        "{} nvidia-smi --state {}",
        env!("CARGO_BIN_EXE_faultline"),
        dir.display()
    )
}

fn inject(ledger: &Path, nvsmi: &str, gpus: &str, hold: &str) -> Command {
    let mut c = bin();
    c.args(["inject", "gpu-lockout", "--set"])
        .arg(format!("targets=[{{host: local, gpus: [{gpus}]}}]"))
        .args(["--set", "kill_process=false", "--set"])
        .arg(format!("nvidia_smi={nvsmi}"))
        .args(["--set", "deadman_margin=30s", "--for", hold, "--ledger"])
        .arg(ledger)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn outstanding(ledger: &Path) -> usize {
    Ledger::at(ledger).outstanding().map_or(0, |o| o.len())
}

#[test]
fn a_second_inject_on_a_held_gpu_is_refused_and_another_gpu_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let nvsmi = gpu_state(&dir.path().join("gpus"), 4);
    let ledger = dir.path().join("ledger.jsonl");
    let first = inject(&ledger, &nvsmi, "1", "3s").spawn().unwrap();
    assert!(wait_for(Duration::from_secs(20), || outstanding(&ledger) == 1));
    let second = inject(&ledger, &nvsmi, "1", "1s").output().unwrap();
    let s = text(&second);
    assert_eq!(second.status.code(), Some(2), "{s}");
    assert!(
        s.contains("refused: gpu:") && s.contains("|1 is held by run manual-"),
        "{s}"
    );
    // GPU 1 is still the first inject's: its mode is the lock, not restored by the refused one.
    assert_eq!(
        modes(&nvsmi),
        "0, Default\n1, Prohibited\n2, Default\n3, Default\n"
    );
    let other = inject(&ledger, &nvsmi, "2", "1s").output().unwrap();
    assert_eq!(other.status.code(), Some(0), "{}", text(&other));
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(modes(&nvsmi), all_default(4));
    assert_eq!(outstanding(&ledger), 0);
}

/// Issue 9, item 2: two injects started in the same second shared a run id and a dead-man marker;
/// after SIGKILLing one and finishing the other, `status` and `recover` saw nothing, and the
/// survivor's restore cancelled the killed one's timer.
#[test]
fn same_second_injects_get_distinct_ids_and_recover_restores_the_killed_one() {
    let dir = tempfile::tempdir().unwrap();
    let nvsmi = gpu_state(&dir.path().join("gpus"), 4);
    let ledger = dir.path().join("ledger.jsonl");
    let mut a = inject(&ledger, &nvsmi, "0", "30s").spawn().unwrap();
    let b = inject(&ledger, &nvsmi, "3", "2s").spawn().unwrap();
    assert!(wait_for(Duration::from_secs(20), || outstanding(&ledger) == 2));
    let entries = Ledger::at(&ledger).outstanding().unwrap();
    assert_ne!(entries[0].run_id, entries[1].run_id);
    assert_ne!(entries[0].fault_id, entries[1].fault_id);
    let killed = entries.iter().find(|e| e.pid == a.id()).unwrap().clone();
    // The ledger entry is written before the inject: kill only once the lock is in effect, or
    // a slow machine kills it in between and GPU 0 was never locked.
    assert!(wait_for(Duration::from_secs(20), || modes(&nvsmi)
        .starts_with("0, Prohibited")));
    a.kill().unwrap();
    a.wait().unwrap();
    let b = b.wait_with_output().unwrap();
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    // The killed inject's entry and its dead-man timer are still there.
    let left = Ledger::at(&ledger).outstanding().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].run_id, killed.run_id);
    let marker = faultline::fault::deadman::marker(&killed.run_id, &killed.fault_id, "local");
    assert!(
        !crate::leftovers::timers(&marker).is_empty(),
        "the survivor's restore cancelled the killed inject's timer"
    );
    assert_eq!(
        modes(&nvsmi),
        "0, Prohibited\n1, Default\n2, Default\n3, Default\n"
    );
    let r = bin()
        .args(["recover", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert!(String::from_utf8_lossy(&r.stdout).contains(&format!("restored {}", killed.run_id)));
    assert_eq!(modes(&nvsmi), all_default(4));
    assert!(wait_for(Duration::from_secs(5), || {
        crate::leftovers::timers(&marker).is_empty()
    }));
}

/// Issue 9, item 3: after `kill -9` of `inject --for`, its pid lingers as a zombie until its
/// parent reaps it; `recover` said "still running" and exited 0 without restoring.
#[test]
fn recover_restores_what_a_zombie_injector_left() {
    let dir = tempfile::tempdir().unwrap();
    let nvsmi = gpu_state(&dir.path().join("gpus"), 2);
    let ledger = dir.path().join("ledger.jsonl");
    let mut child: Child = inject(&ledger, &nvsmi, "1", "60s").spawn().unwrap();
    assert!(wait_for(Duration::from_secs(20), || modes(&nvsmi)
        .contains("1, Prohibited")));
    child.kill().unwrap();
    // Not reaped: the pid exists in state Z while this test is its parent.
    let stat = format!("/proc/{}/stat", child.id());
    assert!(wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
    }));
    let r = bin()
        .args(["recover", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    let t = text(&r);
    assert_eq!(r.status.code(), Some(0), "{t}");
    assert!(t.contains("restored manual-"), "{t}");
    assert!(!t.contains("still running"), "{t}");
    assert_eq!(modes(&nvsmi), all_default(2));
    assert_eq!(outstanding(&ledger), 0);
    child.wait().unwrap();
}

/// `recover` that leaves anything unrestored — here: skipped, its injector is alive — exits
/// non-zero and says what and why.
#[test]
fn recover_exits_non_zero_when_it_skips_a_live_injectors_fault() {
    let dir = tempfile::tempdir().unwrap();
    let nvsmi = gpu_state(&dir.path().join("gpus"), 2);
    let ledger = dir.path().join("ledger.jsonl");
    let child = inject(&ledger, &nvsmi, "0", "4s").spawn().unwrap();
    assert!(wait_for(Duration::from_secs(20), || outstanding(&ledger) == 1));
    let r = bin()
        .args(["recover", "--ledger"])
        .arg(&ledger)
        .output()
        .unwrap();
    let t = text(&r);
    assert_eq!(r.status.code(), Some(2), "{t}");
    assert!(
        t.contains("skipped manual-") && t.contains("is still running"),
        "{t}"
    );
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert_eq!(modes(&nvsmi), all_default(2));
}
