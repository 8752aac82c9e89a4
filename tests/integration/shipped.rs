//! Running a shipped experiment file in a test: only what ties the file to one machine (ports,
//! URLs, timings) is replaced, each replacement checked to hit exactly once, and the result is
//! read with the sim's ground truth beside it.

use faultline::fault::ledger::Ledger;
use faultline::runner::execute::{self, RunOptions};
use faultline::runner::result::RunResult;
use faultline::runner::spec;
use faultline::sim::SimEvent;
use std::path::{Path, PathBuf};

/// The repository (where `experiments/`, `faults/` and `deploy/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
pub fn once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in:\n{text}");
    text.replacen(from, to, 1)
}

/// The shipped `experiments/NAME.yaml`.
pub fn experiment(name: &str) -> String {
    std::fs::read_to_string(root().join("experiments").join(format!("{name}.yaml"))).unwrap()
}

/// A finished run of an experiment's text (its `use:`s resolved from the shipped `faults/`).
pub struct Run {
    pub result: RunResult,
    /// The results folder.
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    /// The sim's ground truth (`sim-events.jsonl` in the results).
    pub fn sim_events(&self) -> Vec<SimEvent> {
        sim_events(&self.out)
    }
}

/// Runs `text` (an experiment) in-process with the real `faultline` binary for the dead-man
/// switches; `run_id` names it in the ledger.
pub async fn run(text: &str, run_id: &str) -> Run {
    let mut text = text.to_string();
    text.push_str(&format!(
        "faults_dir: \"{}\"\n",
        root().join("faults").display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("experiment.yaml");
    std::fs::write(&path, &text).unwrap();
    let exp = spec::load_experiment(&path).unwrap();
    let out = dir.path().join("out");
    let result = execute::run(
        &exp,
        &RunOptions {
            out_dir: out.clone(),
            ledger: Ledger::at(dir.path().join("ledger.jsonl")),
            run_id: run_id.into(),
            faultline_bin: Some(env!("CARGO_BIN_EXE_faultline").into()),
        },
    )
    .await
    .unwrap();
    Run {
        result,
        out,
        _dir: dir,
    }
}

/// The sim's ground truth in a results folder.
pub fn sim_events(out: &Path) -> Vec<SimEvent> {
    std::fs::read_to_string(out.join("sim-events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
