//! The `faultline` binary: a user's mistakes get clear messages and exit code 2.

mod concurrency;
use crate::leftovers;
use faultline::fault::deadman;
use faultline::fault::ledger::Ledger;
use std::process::Command;

fn faultline(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_url_is_rejected_with_exit_code_2_naming_the_url() {
    let (code, _, err) = faultline(&["load", "--endpoint", "not a url", "--duration", "1s"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a url"), "{err}");
}

#[test]
fn unreachable_endpoint_is_reported_before_any_load() {
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let (code, _, err) = faultline(&[
        "load",
        "--endpoint",
        "http://127.0.0.1:9",
        "--duration",
        "1s",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn invalid_flag_values_are_named() {
    for (args, needle) in [
        (vec!["load", "--rate", "-3"], "-3"),
        (vec!["load", "--rate", "0"], "--rate"),
        (vec!["load", "--duration", "forever"], "forever"),
        (vec!["load", "--arrival", "sometimes"], "sometimes"),
        (vec!["load", "--workload", "chatt=1"], "chatt"),
        (vec!["load", "--concurrency", "0"], "--concurrency"),
        (vec!["load", "--api", "embeddings"], "embeddings"),
        (vec!["load", "--header", "no-colon"], "no-colon"),
        (vec!["load", "--sim-preset", "h200x1000"], "h200x1000"),
    ] {
        let (code, _, err) = faultline(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} should name {needle:?}: {err}"
        );
    }
}

#[test]
fn unreadable_corpus_file_is_named() {
    let (code, _, err) = faultline(&["load", "--corpus", "/nonexistent/prompts.jsonl"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/prompts.jsonl"), "{err}");
}

#[test]
fn load_without_endpoint_runs_the_embedded_sim_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let (code, out, err) = faultline(&[
        "load",
        "--duration",
        "2s",
        "--rate",
        "5",
        "--seed",
        "3",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&out).expect("stdout is the summary JSON");
    assert!(summary["requests"].as_u64().unwrap() > 0);
    assert_eq!(summary["errors"].as_u64(), Some(0));
    for f in [
        "summary.json",
        "requests.jsonl",
        "windows.jsonl",
        "run.json",
    ] {
        assert!(out_dir.join(f).exists(), "{f} written");
    }
    // run.json records the schedule as data (what `--rate 5 --duration 2s` and the defaults
    // made of it), not as a debug string.
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["schedule"],
        serde_json::json!({
            "mode": "open",
            "shape": {"fixed": 5.0},
            "process": {"kind": "poisson"},
            "duration": "2s",
            "max_in_flight": null
        }),
        "{run}"
    );
}

#[test]
fn api_key_never_reaches_output_or_results() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let secret = "sk-test-very-secret-4242";
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "load",
            "--duration",
            "1s",
            "--rate",
            "5",
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .env("OPENAI_API_KEY", secret)
        .env("FAULTLINE_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all += &String::from_utf8_lossy(&out.stderr);
    for f in std::fs::read_dir(&out_dir).unwrap() {
        all += &std::fs::read_to_string(f.unwrap().path()).unwrap();
    }
    assert!(!all.contains(secret), "the API key leaked");
}

#[test]
fn inject_by_hand_stays_until_restored_and_is_listed_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("on");
    let ledger = dir.path().join("ledger.jsonl");
    let ledger = ledger.to_str().unwrap();
    let sets = [
        "hosts=[local]".to_string(),
        format!("inject=touch '{}'", flag.display()),
        format!("verify=test -f '{}'", flag.display()),
        format!("restore=rm -f '{}'", flag.display()),
    ];
    let mut args = vec!["inject", "ssh-command", "--ledger", ledger];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let (code, out, err) = faultline(&args);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    assert!(id.starts_with("ssh-command-"), "{out}");
    assert!(flag.exists(), "in effect");
    // Its dead-man timer on the host (an hour and a minute by default, without --for).
    let entry = Ledger::at(ledger).outstanding().unwrap().remove(0);
    let armed = leftovers::armed(&deadman::marker(&entry.run_id, &id, "local"));
    assert!(!armed.is_empty(), "no dead-man timer armed");

    let (code, out, _) = faultline(&["status", "--ledger", ledger]);
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");

    let (code, out, err) = faultline(&["restore", &id, "--ledger", ledger]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    assert!(!flag.exists(), "restored");
    let (_, out, _) = faultline(&["status", "--ledger", ledger]);
    assert!(out.contains("no faults in effect"), "{out}");
    assert_eq!(
        leftovers::left_of(&armed),
        Vec::<String>::new(),
        "restore left the dead-man timer's sleep behind"
    );
}

/// Two injects on one host within a second get their own dead-man timers, and restoring one
/// leaves the other's armed. On one ledger the second is now refused (one owner per target), so
/// they use two ledgers — which is also how two teams would collide on one machine.
#[test]
fn two_injects_by_hand_in_one_second_have_their_own_deadman_timers() {
    let dir = tempfile::tempdir().unwrap();
    let ledgers = [dir.path().join("a.jsonl"), dir.path().join("b.jsonl")];
    let ledgers = [ledgers[0].to_str().unwrap(), ledgers[1].to_str().unwrap()];
    let inject = |ledger: &str| {
        faultline(&[
            "inject",
            "ssh-command",
            "--ledger",
            ledger,
            "--set",
            "hosts=[local]",
            "--set",
            "inject=exit 0",
            "--set",
            "restore=exit 0",
        ])
    };
    let (code, first, err) = inject(ledgers[0]);
    assert_eq!(code, 0, "{err}");
    // On the same ledger: refused, naming the holder.
    let (code, _, err) = inject(ledgers[0]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("host:local@") && err.contains("is still injected by run manual-"),
        "{err}"
    );
    let (code, second, err) = inject(ledgers[1]);
    assert_eq!(code, 0, "{err}");
    let entries: Vec<_> = ledgers
        .iter()
        .map(|l| Ledger::at(*l).outstanding().unwrap().remove(0))
        .collect();
    assert_ne!(
        entries[0].run_id, entries[1].run_id,
        "{first} and {second} share a run id"
    );
    let timers = |i: usize| {
        leftovers::armed(&deadman::marker(
            &entries[i].run_id,
            &entries[i].fault_id,
            "local",
        ))
    };
    let (a, b) = (timers(0), timers(1));
    assert!(!a.is_empty() && !b.is_empty(), "a timer each: {a:?} {b:?}");
    assert!(
        a.is_disjoint(&b),
        "{first} and {second} share a dead-man timer"
    );
    let (code, _, err) = faultline(&["restore", "--all", "--ledger", ledgers[0]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(leftovers::left_of(&a), Vec::<String>::new());
    assert!(
        b.iter().any(|p| timers(1).contains(p)),
        "restoring one cancelled the other's timer"
    );
    let (code, _, err) = faultline(&["restore", "--all", "--ledger", ledgers[1]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(leftovers::left_of(&b), Vec::<String>::new());
}

#[test]
fn inject_with_for_restores_itself() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("on");
    let ledger = dir.path().join("ledger.jsonl");
    let sets = [
        "hosts=[local]".to_string(),
        format!("inject=touch '{}'", flag.display()),
        format!("restore=rm -f '{}'", flag.display()),
    ];
    let mut args = vec![
        "inject",
        "ssh-command",
        "--for",
        "1s",
        "--ledger",
        ledger.to_str().unwrap(),
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let (code, _, err) = faultline(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("restored"), "{err}");
    assert!(!flag.exists());
    let (_, out, _) = faultline(&["status", "--ledger", ledger.to_str().unwrap()]);
    assert!(out.contains("no faults in effect"), "{out}");
}

#[test]
fn inject_names_a_host_it_cannot_reach() {
    let (code, _, err) = faultline(&[
        "inject",
        "gpu-lockout",
        "--set",
        "targets=[{host: node-7, gpus: [2]}]",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--host node-7=ssh:"), "{err}");
}

/// Issue 9, item 4: each value that was accepted and then grew memory without end (or read
/// forever, or panicked) is refused up front with exit 2, naming the flag or file.
#[test]
fn limits_on_flags_and_files_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fifo = fifo.to_str().unwrap();
    let pod_kill = format!("{}/faults/pod-kill-one.yaml", env!("CARGO_MANIFEST_DIR"));
    let rows: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["load", "--rate", "1e12"],
            "invalid value '1e12' for --rate: must be between 0.001 and 100000",
        ),
        (
            vec!["load", "--rate", "4.9e-324"],
            "for --rate: must be between 0.001",
        ),
        (
            vec!["load", "--ramp-to", "1e12"],
            "for --ramp-to: must be between",
        ),
        (
            vec!["load", "--concurrency", "1000000000"],
            "invalid value '1000000000' for --concurrency: must be at most 100000",
        ),
        (
            vec!["load", "--max-in-flight", "1000000000"],
            "for --max-in-flight: must be at most 100000",
        ),
        (
            vec!["load", "--duration", "100000h"],
            "for --duration: must be at most 7days",
        ),
        (
            vec!["load", "--trace", "/dev/zero"],
            "/dev/zero: not a regular file",
        ),
        (
            vec!["load", "--corpus", "/dev/zero"],
            "/dev/zero: not a regular file",
        ),
        (
            vec!["load", "--corpus", "/dev/urandom"],
            "/dev/urandom: not a regular file",
        ),
        (vec!["load", "--corpus", fifo], "not a regular file"),
        (
            vec!["load", "--sim-config", "/dev/zero"],
            "not a regular file",
        ),
        (vec!["cost", "--file", "/dev/zero"], "not a regular file"),
        (vec!["validate", "/dev/zero"], "not a regular file"),
        (vec!["validate", fifo], "not a regular file"),
        (
            vec![
                "ramp",
                "--from",
                "1",
                "--to",
                "1000000000",
                "--step",
                "0.000000001",
            ],
            "for --to: must be between 0.001 and 100000",
        ),
        (
            vec!["ramp", "--from", "1", "--to", "100000", "--step", "1"],
            "1e5 steps (at most 10000 steps",
        ),
        // Item 8's smaller messages.
        (
            vec!["sla", "--find", "--max-trials", "0", "--rate", "10"],
            "invalid value '0' for --max-trials: must be at least 2",
        ),
        (
            vec!["cost", "--gpus", "1", "--price", "2", "--tok-s", "1e-320"],
            "invalid value '1e-320' for --tok-s",
        ),
        (
            vec!["plan", pod_kill.as_str()],
            "pod-kill-one.yaml is a fault definition ('pod-kill-one', pod-kill), not an experiment",
        ),
    ];
    let mut failures = Vec::new();
    for (args, needle) in &rows {
        let t0 = std::time::Instant::now();
        let (code, _, err) = faultline(args);
        if code != 2 || !err.contains(needle) || t0.elapsed() > std::time::Duration::from_secs(10) {
            failures.push(format!(
                "{args:?}: exit {code} in {:?}: {err}",
                t0.elapsed()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn terminal_escapes_in_a_name_are_shown_not_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yaml");
    std::fs::write(
        &f,
        "name: \"evil\\e]0;pwned\\a\\e[2J\"\ntarget: {sim: {}}\nload: {rate: 1, duration: 5s}\nwarmup: 1s\n",
    )
    .unwrap();
    let (code, out, err) = faultline(&["validate", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"), "{err}");
}

/// `faultline plan x.yaml | head -1`: a read-only command whose reader went away stops quietly
/// (killed by SIGPIPE, like other Unix tools), with no "failed printing to stdout" panic.
#[test]
fn a_read_only_command_stops_quietly_when_its_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("plan")
        .arg(root.join("experiments/game-day.yaml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the plan is printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}
