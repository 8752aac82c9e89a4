//! Reads a results folder back into one value the reports render from.
//!
//! Why one loader for every kind of folder: `faultline load`, `run`, `ramp`, `sla` and `bench`
//! all leave different subsets of the same files, and a report is rebuilt later, maybe by a
//! newer faultline. So the loader reads whatever is present (also in the `ramp/`, `sla/` and
//! `baseline/` subfolders a bench writes), decides what kind of run it was from the files, and
//! fails only when nothing it knows is there or a file that is there is broken.

use super::inputs::{Bench, Bottleneck, Cost, Ramp, Sla};
use crate::analysis::summary::Summary;
use crate::analysis::window::WindowStats;
use crate::load::recorder::{REQUESTS_FILE, WINDOWS_FILE, read_windows};
use crate::runner::result::RunResult;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoadDirError {
    #[error("'{0}' is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}:{line} is not a request record: {source}")]
    BrokenLine {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("cannot read windows: {0}")]
    Windows(String),
    #[error(
        "no results in '{0}' (expected result.json, bench.json, ramp.json, sla.json or summary.json)"
    )]
    Empty(PathBuf),
}

/// What produced the folder, which decides the report's headline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Experiment,
    Bench,
    Ramp,
    Sla,
    Load,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Experiment => "experiment",
            Kind::Bench => "bench",
            Kind::Ramp => "ramp",
            Kind::Sla => "SLA check",
            Kind::Load => "load run",
        }
    }
}

/// Everything found in a results folder.
#[derive(Clone, Debug)]
pub struct Results {
    pub dir: PathBuf,
    pub kind: Kind,
    pub run: Option<RunResult>,
    /// The load's summary (for a bench: the baseline's).
    pub summary: Option<Summary>,
    /// Per-window digests of the load, in time order.
    pub windows: Vec<WindowStats>,
    pub ramp: Option<Ramp>,
    pub sla: Option<Sla>,
    pub cost: Option<Cost>,
    pub bottleneck: Option<Bottleneck>,
    pub bench: Option<Bench>,
    /// `run.json` as written (what was asked for), shown as key/value pairs.
    pub run_info: Option<serde_json::Map<String, serde_json::Value>>,
    /// Requests per window of *completion* time, from `requests.jsonl` (empty without it).
    pub completed: Vec<Completed>,
}

/// The requests that ended in one window: when their users saw the answer or the error.
///
/// Why beside the windows of intended start: a phase holds the requests *meant* to start in
/// it (so a fault's cost is charged to the fault), but a request that hangs until the fault
/// resets it fails seconds after it started; drawn at its start, the error curve rises before
/// the fault's line. A chart of what users saw over time counts requests where they ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completed {
    pub start_s: f64,
    pub requests: u64,
    pub errors: u64,
}

impl Completed {
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// The few fields of a `requests.jsonl` line the completion chart needs. The outcome is read
/// by its tag only, so a class added by a newer faultline still counts (as an error).
#[derive(serde::Deserialize)]
struct RequestEnd {
    intended_s: f64,
    e2e_us: u64,
    outcome: OutcomeTag,
}

#[derive(serde::Deserialize)]
struct OutcomeTag {
    kind: String,
}

/// Buckets `requests.jsonl` by completion time (intended start + end-to-end time) into windows
/// of `len_s`, from 0 to the last completion. A torn last line (a crashed run) is skipped;
/// any other broken line is an error naming the line.
fn read_completed(path: &Path, len_s: f64) -> Result<Vec<Completed>, LoadDirError> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).map_err(|source| LoadDirError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out: Vec<Completed> = Vec::new();
    let mut broken: Option<(usize, serde_json::Error)> = None;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| LoadDirError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((line, source)) = broken.take() {
            return Err(LoadDirError::BrokenLine {
                path: path.to_path_buf(),
                line,
                source,
            });
        }
        let r: RequestEnd = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                broken = Some((i + 1, e));
                continue;
            }
        };
        let end = r.intended_s + r.e2e_us as f64 / 1e6;
        if !end.is_finite() || end < 0.0 {
            continue;
        }
        let idx = (end / len_s).floor() as usize;
        if out.len() <= idx {
            out.extend((out.len()..=idx).map(|k| Completed {
                start_s: k as f64 * len_s,
                ..Completed::default()
            }));
        }
        // A client error never reached the server: it is not in the server's error rate.
        if r.outcome.kind == "client_error" {
            continue;
        }
        out[idx].requests += 1;
        if r.outcome.kind != "ok" {
            out[idx].errors += 1;
        }
    }
    Ok(out)
}

impl Results {
    /// A name for the report's title: the experiment's name, else the folder's.
    pub fn title(&self) -> String {
        if let Some(r) = &self.run {
            return r.experiment.clone();
        }
        self.dir
            .canonicalize()
            .unwrap_or_else(|_| self.dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }
}

/// The first of `candidates` (relative to `dir`) that exists.
fn find(dir: &Path, candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(|c| dir.join(c)).find(|p| p.is_file())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, LoadDirError> {
    let bytes = std::fs::read(path).map_err(|source| LoadDirError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| LoadDirError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn opt_json<T: DeserializeOwned>(
    dir: &Path,
    candidates: &[&str],
) -> Result<Option<T>, LoadDirError> {
    find(dir, candidates).map(|p| read_json(&p)).transpose()
}

/// Reads the results folder `dir`.
pub fn load(dir: &Path) -> Result<Results, LoadDirError> {
    if !dir.is_dir() {
        return Err(LoadDirError::NotADirectory(dir.to_path_buf()));
    }
    let run: Option<RunResult> = opt_json(dir, &["result.json"])?;
    let bench: Option<Bench> = opt_json(dir, &["bench.json"])?;
    let ramp: Option<Ramp> = opt_json(dir, &["ramp.json", "ramp/ramp.json"])?;
    let sla: Option<Sla> = opt_json(dir, &["sla.json", "sla/sla.json"])?;
    let cost: Option<Cost> = opt_json(dir, &["cost.json", "ramp/cost.json"])?;
    let bottleneck: Option<Bottleneck> =
        opt_json(dir, &["bottleneck.json", "ramp/bottleneck.json"])?;
    let summary: Option<Summary> = opt_json(dir, &["summary.json", "baseline/summary.json"])?;
    let run_info = opt_json(dir, &["run.json", "baseline/run.json"])?;
    let windows = match find(dir, &[WINDOWS_FILE, &format!("baseline/{WINDOWS_FILE}")]) {
        Some(p) => read_windows(&p)
            .map_err(LoadDirError::Windows)?
            .iter()
            .map(|w| w.stats())
            .collect(),
        None => Vec::new(),
    };
    // The window length the recorder used (1 s unless it was set otherwise).
    let len_s = match windows.as_slice() {
        [a, b, ..] if b.start_s > a.start_s => {
            (b.start_s - a.start_s) / (b.index - a.index).max(1) as f64
        }
        _ => 1.0,
    };
    let completed = match find(dir, &[REQUESTS_FILE]) {
        Some(p) => read_completed(&p, len_s)?,
        None => Vec::new(),
    };
    let kind = if run.is_some() {
        Kind::Experiment
    } else if bench.is_some() {
        Kind::Bench
    } else if ramp.is_some() {
        Kind::Ramp
    } else if sla.is_some() {
        Kind::Sla
    } else if summary.is_some() || !windows.is_empty() {
        Kind::Load
    } else {
        return Err(LoadDirError::Empty(dir.to_path_buf()));
    };
    // An experiment's result carries the load summary too; prefer the file, fall back to it.
    let summary = summary.or_else(|| run.as_ref().map(|r| r.load.clone()));
    Ok(Results {
        dir: dir.to_path_buf(),
        kind,
        run,
        summary,
        windows,
        ramp,
        sla,
        cost,
        bottleneck,
        bench,
        run_info,
        completed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_folder_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, LoadDirError::Empty(_)), "{e}");
    }

    #[test]
    fn a_bench_folder_reads_its_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ramp")).unwrap();
        std::fs::create_dir_all(dir.path().join("sla")).unwrap();
        // bench.json as `faultline bench` writes it (the report reads the writer's type).
        let bench = crate::runner::bench::BenchResult {
            profile: "quick".into(),
            phases: vec![],
            baseline: crate::analysis::summary::Summary::new(
                &crate::analysis::window::Window::default(),
                1.0,
                None,
            ),
            ramp: "ramp".into(),
            sla: "sla".into(),
            cost: None,
            bottleneck: None,
            notes: vec![],
        };
        std::fs::write(
            dir.path().join("bench.json"),
            serde_json::to_string(&bench).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ramp/ramp.json"),
            serde_json::to_string(&crate::analysis::saturation::RampResult::example(vec![]))
                .unwrap(),
        )
        .unwrap();
        let sla = crate::analysis::sla::SlaResult::example(
            10.0,
            vec![crate::analysis::sla::Check {
                metric: "ttft_p99_ms".into(),
                limit: 500.0,
                actual: None,
                passed: false,
            }],
        );
        std::fs::write(
            dir.path().join("sla/sla.json"),
            serde_json::to_string(&sla).unwrap(),
        )
        .unwrap();
        let r = load(dir.path()).unwrap();
        assert_eq!(r.kind, Kind::Bench);
        assert!(r.ramp.is_some());
        assert_eq!(r.sla.unwrap().checks[0].actual, None);
    }

    #[test]
    fn requests_are_counted_in_the_window_they_ended_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary.json"), "{}").ok();
        let line = |intended: f64, e2e_us: u64, kind: &str| {
            format!(
                r#"{{"intended_s": {intended}, "e2e_us": {e2e_us}, "outcome": {{"kind": "{kind}"}}, "id": 1}}"#
            )
        };
        let text = [
            line(0.2, 300_000, "ok"),          // ends 0.5 s: window 0
            line(0.5, 2_700_000, "timeout"),   // started in window 0, ends 3.2 s: window 3
            line(1.1, 100_000, "http_status"), // ends 1.2 s: window 1
            line(1.5, 100_000, "a_new_class"), // an outcome this build does not know: an error
        ]
        .join("\n");
        let path = dir.path().join("requests.jsonl");
        std::fs::write(&path, format!("{text}\n{{\"intended_s\": 4.0, \"e2")).unwrap();
        let c = read_completed(&path, 1.0).unwrap();
        let counts: Vec<(u64, u64)> = c.iter().map(|w| (w.requests, w.errors)).collect();
        assert_eq!(
            counts,
            vec![(1, 0), (2, 2), (0, 0), (1, 1)],
            "torn last line skipped"
        );
        assert_eq!(c[3].start_s, 3.0);
        assert_eq!(c[2].error_rate(), None, "no requests ended: no rate, not 0");

        std::fs::write(&path, format!("not json\n{}\n", line(0.1, 1, "ok"))).unwrap();
        let e = read_completed(&path, 1.0).unwrap_err().to_string();
        assert!(e.contains("requests.jsonl:1 "), "{e}");
    }

    #[test]
    fn a_broken_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sla.json"), "{not json").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("sla.json"), "{e}");
    }
}
