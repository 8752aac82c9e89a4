//! `faultline report DIR`: (re)builds `report.html`, `summary.md` and `junit.xml` from a saved
//! results folder.
//!
//! Why rebuild from files rather than from memory at the end of a run: a report is often wanted
//! later (a newer faultline, a folder copied from CI), and a report built only from what is on
//! disk is proof that the files hold everything the numbers came from.

use super::load_dir::{self, Kind, LoadDirError, Results};
use super::{html, junit, markdown, markdown_dirs};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Load(#[from] LoadDirError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the outputs went.
#[derive(Clone, Debug)]
pub struct Built {
    pub html: PathBuf,
    /// `None` when an experiment's own `summary.md` was kept.
    pub markdown: Option<PathBuf>,
    pub junit: PathBuf,
    pub results: Results,
}

fn write(path: &Path, text: &str) -> Result<(), BuildError> {
    std::fs::write(path, text).map_err(|source| BuildError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the reports for `dir`. The HTML goes to `html_out` (default `DIR/report.html`);
/// `summary.md` and `junit.xml` go beside it.
pub fn build(dir: &Path, html_out: Option<&Path>) -> Result<Built, BuildError> {
    let results = load_dir::load(dir)?;
    let html_path = html_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("report.html"));
    let out_dir = html_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out_dir).map_err(|source| BuildError::Write {
        path: out_dir.clone(),
        source,
    })?;
    write(&html_path, &html::render(&results))?;

    let md_path = out_dir.join("summary.md");
    let same_dir = out_dir.canonicalize().ok() == dir.canonicalize().ok();
    let markdown = match (&results.kind, &results.run) {
        // The runner wrote this one from the same result.json: keep it.
        (Kind::Experiment, Some(_)) if same_dir && md_path.is_file() => None,
        (Kind::Experiment, Some(run)) => {
            write(&md_path, &markdown::experiment(run))?;
            Some(md_path)
        }
        _ => {
            write(&md_path, &markdown_dirs::render(&results))?;
            Some(md_path)
        }
    };
    let junit_path = out_dir.join("junit.xml");
    write(&junit_path, &junit::render(&results))?;
    Ok(Built {
        html: html_path,
        markdown,
        junit: junit_path,
        results,
    })
}
