//! Issue 9, items 4, 7 and 8: every value that `validate` used to accept and `run` then broke on
//! (or that exhausted memory) is refused at validate time, with its `file:line:column`, its value
//! and the limit — one table row per repro.

use faultline::runner::spec::load_experiment;
use std::time::{Duration, Instant};

/// A valid experiment (sim target, one load-spike); rows append or replace lines.
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
  - fault: {kind: load-spike, multiplier: 2}
    at: 60s
    duration: 10s
";

fn refused(text: &str) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, text).unwrap();
    let t0 = Instant::now();
    let err = load_experiment(&file)
        .expect_err("must be refused")
        .to_string();
    (
        err.replace(&format!("{}/", dir.path().display()), ""),
        t0.elapsed(),
    )
}

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

fn fault(line: &str) -> String {
    with("  - fault: {kind: load-spike, multiplier: 2}", line)
}

#[test]
fn base_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, BASE).unwrap();
    load_experiment(&file).unwrap();
}

#[test]
fn range_checks_happen_at_validate_time_with_value_and_position() {
    let pod = |mode: &str| {
        fault(&format!(
            "  - fault: {{kind: pod-kill, selector: app=x{mode}}}"
        ))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "probe every: 0s",
            format!(
                "{BASE}probes: [{{name: p, every: 0s, http: {{url: 'http://127.0.0.1:1/'}}}}]\n"
            ),
            "t.yaml:16:27: invalid value '0s' for 'every': must be longer than 0s",
        ),
        (
            "analysis window: 0s",
            format!("{BASE}analysis: {{window: 0s}}\n"),
            "t.yaml:16:20: invalid value '0s' for 'window': must be longer than 0s",
        ),
        (
            "empty pod selector",
            fault("  - fault: {kind: pod-kill, selector: ''}"),
            "t.yaml:13:39: invalid value '' for 'selector': an empty selector selects every pod in the namespace; say `all_pods: true` if that is meant",
        ),
        (
            "unparseable selector",
            fault("  - fault: {kind: pod-kill, selector: 'app in (x'}"),
            "t.yaml:13:39: invalid value 'app in (x' for 'selector': not a label selector",
        ),
        (
            "empty kube_ready selector",
            format!("{BASE}probes: [{{name: p, kube_ready: {{selector: ''}}}}]\n"),
            "t.yaml:16:43: invalid value '' for 'selector': an empty selector",
        ),
        (
            "max_error_rate: 2",
            format!("{BASE}steady_state: {{max_error_rate: 2}}\n"),
            "t.yaml:16:32: invalid value '2' for 'max_error_rate': must be a fraction in [0, 1]",
        ),
        (
            "max_error_rate: -0.5",
            format!("{BASE}steady_state: {{max_error_rate: -0.5}}\n"),
            "invalid value '-0.5' for 'max_error_rate': must be a fraction in [0, 1]",
        ),
        (
            "error_rate_above: -1",
            format!("{BASE}stop_conditions: [{{error_rate_above: -1, for: 5s}}]\n"),
            "t.yaml:16:38: invalid value '-1' for 'error_rate_above': must be a fraction in [0, 1]",
        ),
        (
            "negative ttft increase",
            format!("{BASE}criteria: {{max_ttft_p99_increase: -2}}\n"),
            "invalid value '-2' for 'max_ttft_p99_increase': must be a number >= 0",
        ),
        (
            "multiplier: 1e15",
            fault("  - fault: {kind: load-spike, multiplier: 1e15}"),
            "t.yaml:13:43: invalid value '1000000000000000' for 'multiplier': must be at most 1000",
        ),
        (
            "fault duration: 0s",
            with("    duration: 10s", "    duration: 0s"),
            "t.yaml:15:15: 'duration' must be longer than 0s",
        ),
        (
            "pod-kill count: 0",
            pod(", mode: {count: 0}"),
            "invalid value '0' for 'mode.count': must be at least 1",
        ),
        (
            "pod-kill percent: 150",
            pod(", mode: {percent: 150}"),
            "invalid value '150' for 'mode.percent': must be in (0, 100]",
        ),
        (
            "gpus: []",
            fault("  - fault: {kind: gpu-lockout, targets: [{host: local, gpus: []}]}"),
            "invalid value [] for 'targets.0.gpus': needs at least one GPU",
        ),
        (
            "rate 1e23",
            with("  rate: 30", "  rate: 1e23"),
            "t.yaml:9:9: invalid value '1e23' for 'rate': must be between 0.001 and 100000 requests per second",
        ),
        (
            "rate 4.9e-324",
            with("  rate: 30", "  rate: 4.9e-324"),
            "invalid value '5e-324' for 'rate': must be between 0.001 and 100000",
        ),
        (
            "concurrency 1e9",
            with("  rate: 30", "  concurrency: 1000000000"),
            "invalid value '1000000000' for 'concurrency': must be at most 100000",
        ),
        (
            "duration 100000h",
            with("  duration: 90s", "  duration: 100000h"),
            "t.yaml:10:13: invalid value '11years 4months 27days 3h 45m 36s' for 'duration': must be at most 7days",
        ),
        (
            "repeat every: 0s (was: missing key 'every')",
            with(
                "    duration: 10s",
                "    duration: 1s\n    repeat: {times: 3, every: 0s}",
            ),
            "t.yaml:16:31: 'every' must be longer than 0s",
        ),
        (
            "repeat times 4e9 (was: a 64 GB allocation)",
            with(
                "    duration: 10s",
                "    duration: 1ms\n    repeat: {times: 4000000000, every: 1ms}",
            ),
            "t.yaml:13:3: the timeline would hold 4000000000 fault occurrences (1 fault entries, repeats expanded); the limit is 1000",
        ),
        (
            "a huge repeat of a long duration (was: 8.8 GB)",
            with(
                "    duration: 10s",
                "    duration: 100000h\n    repeat: {times: 100, every: 100000h}",
            ),
            "for 'duration': must be at most 7days",
        ),
        (
            "a name with a terminal escape",
            with("name: t", "name: \"t\\e[31mred\""),
            "invalid value 't\\u{1b}[31mred' for 'name': the name holds a '/' or a control character",
        ),
        (
            "!!binary (was: dangling alias)",
            format!("{BASE}description: !!binary aGVsbG8=\n"),
            "t.yaml:16:14: invalid YAML: a value faultline cannot read: an unsupported YAML tag (such as !!binary)",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, expected) in &cases {
        let (got, took) = refused(text);
        if !got.contains(expected) {
            failures.push(format!(
                "{name}:\n  expected: {expected}\n  got:      {got}"
            ));
        }
        if took > Duration::from_secs(2) {
            failures.push(format!("{name}: took {took:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_range_problem_in_a_file_is_reported_at_once() {
    let text = format!(
        "{}steady_state: {{max_error_rate: 2, window: 0s}}\nanalysis: {{window: 0s}}\ncriteria: {{max_error_rate_during: -0.5}}\n",
        fault("  - fault: {kind: pod-kill, selector: '', mode: {percent: 150}}")
    );
    let (err, _) = refused(&text);
    for needle in [
        "'selector'",
        "'mode.percent'",
        "'max_error_rate'",
        "'0s' for 'window'",
        "t.yaml:17:20: invalid value '0s' for 'window'",
        "'max_error_rate_during'",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(err.lines().count(), 6, "{err}");
}

#[test]
fn files_are_read_with_a_size_cap_and_special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A 2 MB file (over the 1 MiB cap) is refused before it is parsed.
    let big = dir.path().join("big.yaml");
    let mut text = BASE.to_string();
    text.push_str(&format!("description: '{}'\n", "x".repeat(2 << 20)));
    std::fs::write(&big, &text).unwrap();
    let t0 = Instant::now();
    let e = load_experiment(&big).unwrap_err().to_string();
    assert!(
        e.contains("bytes is over the limit of 1048576 bytes"),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(1));
    for special in ["/dev/zero", "/dev/urandom"] {
        let e = load_experiment(special.as_ref()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{special}: {e}");
    }
    // Non-UTF-8 text is located.
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"name: t\ndescription: caf\xe9\n").unwrap();
    let e = load_experiment(&latin1).unwrap_err().to_string();
    assert!(
        e.contains("latin1.yaml:2:17: invalid YAML: not UTF-8 text"),
        "{e}"
    );
}

#[test]
fn fifty_thousand_faults_are_refused_quickly() {
    let entries = |n: usize| {
        let mut text = BASE.to_string();
        for i in 0..n {
            text.push_str(&format!(
                "  - {{fault: {{kind: load-spike, multiplier: 2}}, id: f{i}, at: 20s, duration: 1s}}\n"
            ));
        }
        text
    };
    // 50,000 entries (3.7 MB) took 15 s to validate: now over the size cap, refused unread.
    let (err, took) = refused(&entries(50_000));
    assert!(
        err.contains("bytes is over the limit of 1048576 bytes"),
        "{err}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Within the size cap, the count of timeline events is the limit, checked before any entry
    // is resolved.
    let (err, took) = refused(&entries(5_000));
    assert!(
        err.contains("the timeline would hold 5001 fault occurrences (5001 fault entries, repeats expanded); the limit is 1000"),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_long_name_is_refused_and_truncated_in_the_message() {
    let long = "n".repeat(100_000);
    let (err, _) = refused(&with("name: t", &format!("name: {long}")));
    assert!(
        err.contains("the name is longer than 100 characters"),
        "{err}"
    );
    assert!(err.contains("…(99800 more characters)"), "{err}");
    assert!(err.len() < 1000, "{}", err.len());
}

mod property {
    //! The experiment parser on arbitrary input: never a panic, always `Ok` or an `Err` that
    //! names the file. 256 cases of each strategy run in the normal test command (a few
    //! seconds); a longer run: `PROPTEST_CASES=20000 cargo test --test integration spec::limits::property`.

    use faultline::runner::spec::{load_experiment, validate_file};
    use proptest::prelude::*;

    /// Fragments that steer random text into the parser's interesting corners.
    const PIECES: &[&str] = &[
        "name: x\n",
        "target: {sim: {}}\n",
        "load: {rate: 5, duration: 30s}\n",
        "warmup: 1s\n",
        "faults:\n",
        "  - fault: {kind: load-spike, multiplier: 2}\n",
        "    at: 10s\n",
        "    duration: 5s\n",
        "    repeat: {times: 3, every: 1s}\n",
        "probes: []\n",
        "kind: pod-kill\n",
        "selector: ''\n",
        "analysis: {window: 0s}\n",
        "&a [1, *a]\n",
        "!!binary x\n",
        "- \n",
        ": :\n",
        "{{{{\n",
        "'\n",
        "\"\\u\n",
        "\t\n",
        "999999999999999999999999\n",
        "-.inf\n",
        "0x1p-1074\n",
        "\u{feff}",
        "\u{0}",
        "? [a]\n",
        "--- \n",
        "...\n",
        "%YAML 1.2\n",
    ];

    fn check(text: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, text).unwrap();
        if let Err(e) = load_experiment(&file) {
            assert!(e.to_string().contains("p.yaml"), "{e}");
        }
        let _ = validate_file(&file);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }

        #[test]
        fn arbitrary_yaml_like_text_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(PIECES).prop_map(str::to_string),
                    "[ -~\n]{0,40}",
                ],
                0..24,
            )
        ) {
            check(parts.concat().as_bytes());
        }
    }
}
