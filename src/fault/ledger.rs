//! The ledger: what faultline injected and has not yet put back, on disk, so that nothing is
//! left behind even when the runner is killed with SIGKILL.
//!
//! An append-only JSONL file (default `$FAULTLINE_LEDGER`, else `./.faultline/ledger.jsonl`),
//! one record per line:
//! - `{"record":"inject", run_id, fault_id, kind, spec, hosts, undo, deadline, injected_at, pid}`
//!   — written and fsynced *before* inject. `hosts` holds only the hosts this fault uses, as
//!   their specs (paths, never secrets), so `recover` needs nothing but this file;
//! - `{"record":"done", run_id, fault_id, how, at[, inject_error]}` — after a verified restore;
//!   `how` is `normal`, `recover` or `deadman`; `inject_error` says why the inject failed when
//!   the entry is closed after a failed inject (whatever part of it happened was put back).
//! - `{"record":"resolved", run_id, fault_id, reason, by, at}` — an operator undid the fault by
//!   hand after a restore that failed permanently (a 403, a deleted namespace) and closed the
//!   entry with `faultline ledger resolve`; `by` is `user@host`.
//!
//! Folding the file gives the outstanding entries: the latest `inject` per (run, fault) with no
//! `done` after it. Writers take an exclusive `flock` so two processes never interleave lines.
//!
//! A line that is not valid JSON can only be a write torn by a crash. It is ignored with a
//! warning: a torn `inject` was never fsynced, so its inject never ran; a torn `done` leaves its
//! entry outstanding, and restores are idempotent. Appends first terminate a torn last line.
//! A line that *is* JSON but not a record (a newer format?) is an error, never skipped.

use crate::fault::exec::{HostSpec, Hosts};
use crate::fault::{FaultContext, FaultSpec, Restoration, Undo};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const ENV: &str = "FAULTLINE_LEDGER";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open ledger {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write ledger {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read ledger {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no outstanding fault '{id}' in ledger {path} (see `faultline status`)")]
    NoSuchEntry { path: PathBuf, id: String },
    #[error("'{id}' names several outstanding faults ({candidates}); give RUN_ID/FAULT_ID")]
    Ambiguous { id: String, candidates: String },
    #[error("ledger {path} line {line}: not a ledger record: {source}")]
    BadRecord {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// What was injected, with everything needed to undo it in a fresh process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: String,
    pub fault_id: String,
    pub kind: String,
    pub spec: FaultSpec,
    pub hosts: BTreeMap<String, HostSpec>,
    /// The cluster, for Kubernetes kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube: Option<crate::fault::kube_target::KubeSpec>,
    pub undo: Undo,
    pub deadline: DateTime<Utc>,
    pub injected_at: DateTime<Utc>,
    pub pid: u32,
    /// The injecting process in full (start time, host, boot id), so that `recover` never takes
    /// a zombie, a reused pid or a process on another machine for the live injector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<crate::fault::owner::Process>,
    /// The targets it holds ([`crate::fault::owner::target_keys`]): no other run may claim them
    /// while this entry is outstanding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

impl Entry {
    /// An entry for `spec` about to be injected by this process, with the hosts it uses only.
    pub fn new(
        ctx: &FaultContext,
        spec: &FaultSpec,
        undo: &Undo,
    ) -> Result<Entry, crate::fault::exec::ExecError> {
        Ok(Entry {
            run_id: ctx.run_id.clone(),
            fault_id: ctx.fault_id.clone(),
            kind: spec.kind().to_string(),
            spec: spec.clone(),
            hosts: ctx.hosts.subset(&spec.host_names())?,
            kube: if spec.uses_kubernetes() {
                ctx.kube.as_ref().map(|k| k.spec.clone())
            } else {
                None
            },
            undo: undo.clone(),
            deadline: ctx.deadline,
            injected_at: Utc::now(),
            pid: std::process::id(),
            process: Some(crate::fault::owner::Process::current()),
            targets: crate::fault::owner::target_keys(spec, ctx),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub run_id: String,
    pub fault_id: String,
    pub how: Restoration,
    pub at: DateTime<Utc>,
    /// The inject failed with this error; the restore after it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_error: Option<String>,
}

/// An entry closed by an operator: no restore ran, a person says it is undone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub run_id: String,
    pub fault_id: String,
    pub reason: String,
    /// `user@host` of whoever resolved it.
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
pub enum Record {
    Inject(Box<Entry>),
    Done(Done),
    Resolved(Resolved),
}

/// The folded ledger.
#[derive(Clone, Debug, Default)]
pub struct Fold {
    pub outstanding: Vec<Entry>,
    /// Entries closed by hand (`faultline ledger resolve`), with the record that closed them.
    pub resolved: Vec<(Entry, Resolved)>,
    /// Torn lines that were skipped, as human-readable warnings.
    pub warnings: Vec<String>,
}

/// Folds ledger text into the outstanding entries (in the order they were injected).
pub fn fold(path: &Path, text: &str) -> Result<Fold, LedgerError> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut open: HashMap<(String, String), Entry> = HashMap::new();
    let mut warnings = Vec::new();
    let mut resolved = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                let w = format!(
                    "ledger {} line {}: ignoring a torn write ({e})",
                    path.display(),
                    i + 1
                );
                tracing::warn!("{w}");
                warnings.push(w);
                continue;
            }
        };
        let record: Record =
            serde_json::from_value(value).map_err(|source| LedgerError::BadRecord {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
        match record {
            Record::Inject(e) => {
                let key = (e.run_id.clone(), e.fault_id.clone());
                order.retain(|k| k != &key);
                order.push(key.clone());
                open.insert(key, *e);
            }
            Record::Done(d) => {
                open.remove(&(d.run_id, d.fault_id));
            }
            Record::Resolved(r) => {
                if let Some(e) = open.remove(&(r.run_id.clone(), r.fault_id.clone())) {
                    resolved.push((e, r));
                }
            }
        }
    }
    let outstanding = order.into_iter().filter_map(|k| open.remove(&k)).collect();
    Ok(Fold {
        outstanding,
        resolved,
        warnings,
    })
}

/// The ledger file.
#[derive(Clone, Debug)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// `$FAULTLINE_LEDGER`, else `./.faultline/ledger.jsonl`.
    pub fn default_path() -> PathBuf {
        std::env::var_os(ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".faultline").join("ledger.jsonl"))
    }

    /// The ledger at `path` (created, with its directory, on first write).
    pub fn at(path: impl Into<PathBuf>) -> Ledger {
        Ledger { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and fsyncs the entry. Returns only once it is on disk: then inject may run.
    pub fn record_inject(&self, entry: &Entry) -> Result<(), LedgerError> {
        self.append(&Record::Inject(Box::new(entry.clone())))
    }

    /// Marks (run_id, fault_id) restored.
    pub fn record_done(
        &self,
        run_id: &str,
        fault_id: &str,
        how: Restoration,
    ) -> Result<(), LedgerError> {
        self.append(&Record::Done(Done {
            run_id: run_id.to_string(),
            fault_id: fault_id.to_string(),
            how,
            at: Utc::now(),
            inject_error: None,
        }))
    }

    /// Closes (run_id, fault_id) after its inject failed with `error` and the restore that
    /// followed put back whatever part of it had happened.
    pub fn record_failed_inject(
        &self,
        run_id: &str,
        fault_id: &str,
        error: &str,
    ) -> Result<(), LedgerError> {
        self.append(&Record::Done(Done {
            run_id: run_id.to_string(),
            fault_id: fault_id.to_string(),
            how: Restoration::Normal,
            at: Utc::now(),
            inject_error: Some(error.to_string()),
        }))
    }

    /// Every record, in order (for tests and `status`-like tools).
    pub fn records(&self) -> Result<Vec<Record>, LedgerError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(LedgerError::Open {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Closes an outstanding entry by hand: `id` is a fault id or `run_id/fault_id`; `by` is
    /// who (`user@host`). Refuses an id that matches nothing outstanding, or several entries.
    pub fn resolve(&self, id: &str, reason: &str, by: &str) -> Result<Resolved, LedgerError> {
        let fold = self.read()?;
        let matches: Vec<&Entry> = fold
            .outstanding
            .iter()
            .filter(|e| e.fault_id == id || format!("{}/{}", e.run_id, e.fault_id) == id)
            .collect();
        let entry = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(LedgerError::NoSuchEntry {
                    path: self.path.clone(),
                    id: id.to_string(),
                });
            }
            many => {
                return Err(LedgerError::Ambiguous {
                    id: id.to_string(),
                    candidates: many
                        .iter()
                        .map(|e| format!("{}/{}", e.run_id, e.fault_id))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        let r = Resolved {
            run_id: entry.run_id.clone(),
            fault_id: entry.fault_id.clone(),
            reason: reason.to_string(),
            by: by.to_string(),
            at: Utc::now(),
        };
        self.append(&Record::Resolved(r.clone()))?;
        Ok(r)
    }

    /// The entries not yet done, plus warnings about torn lines.
    pub fn read(&self) -> Result<Fold, LedgerError> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Fold::default()),
            Err(source) => {
                return Err(LedgerError::Open {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let read_err = |source| LedgerError::Read {
            path: self.path.clone(),
            source,
        };
        file.lock_shared().map_err(read_err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(read_err)?;
        fold(&self.path, &String::from_utf8_lossy(&bytes))
    }

    /// The entries not yet done.
    pub fn outstanding(&self) -> Result<Vec<Entry>, LedgerError> {
        Ok(self.read()?.outstanding)
    }

    fn append(&self, record: &Record) -> Result<(), LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: self.path.clone(),
            source,
        };
        let write_err = |source| LedgerError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let existed = self.path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(open_err)?;
        file.lock().map_err(write_err)?;
        let mut line = serde_json::to_string(record).expect("records serialize");
        line.push('\n');
        // Terminate a torn last line so this record starts on its own.
        let len = file.metadata().map_err(write_err)?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1)).map_err(write_err)?;
            file.read_exact(&mut last).map_err(write_err)?;
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
        }
        file.write_all(line.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        if !existed {
            // Make the new file's directory entry durable too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(write_err)?;
        }
        Ok(())
    }
}

/// How `recover` retries.
#[derive(Clone, Debug)]
pub struct RecoverOptions {
    /// Tries per entry (at least one).
    pub attempts: u32,
    /// Wait before the second try; doubles after each failure.
    pub backoff: Duration,
    pub command_timeout: Duration,
    /// Also restore entries whose injecting process is still alive (another run in progress).
    pub force: bool,
    /// Only entries whose fault id, or `run_id/fault_id`, is this.
    pub only: Option<String>,
    /// Reach the cluster this way instead of as each Kubernetes entry recorded it
    /// (`--kubeconfig`/`--context` on `restore` and `recover`).
    pub kube: Option<crate::fault::kube_target::KubeSpec>,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            attempts: 4,
            backoff: Duration::from_secs(1),
            command_timeout: Duration::from_secs(30),
            force: false,
            only: None,
            kube: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoverReport {
    pub restored: Vec<Recovered>,
    /// Entries that could not be restored: they stay outstanding.
    pub failed: Vec<NotRecovered>,
    /// Entries left alone because the process that injected them is still running.
    pub skipped: Vec<NotRecovered>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Recovered {
    pub run_id: String,
    pub fault_id: String,
    pub kind: String,
    pub how: Restoration,
    pub attempts: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct NotRecovered {
    pub run_id: String,
    pub fault_id: String,
    pub kind: String,
    pub reason: String,
}

/// Restores every outstanding entry from the ledger alone (hosts built from the entry's own
/// host specs), retrying each failing restore with backoff, and marks the restored ones done.
pub async fn recover(ledger: &Ledger, opts: &RecoverOptions) -> Result<RecoverReport, LedgerError> {
    let fold = ledger.read()?;
    let mut report = RecoverReport {
        warnings: fold.warnings,
        ..Default::default()
    };
    for entry in fold.outstanding {
        if let Some(id) = &opts.only
            && *id != entry.fault_id
            && *id != format!("{}/{}", entry.run_id, entry.fault_id)
        {
            continue;
        }
        let not = |reason: String| NotRecovered {
            run_id: entry.run_id.clone(),
            fault_id: entry.fault_id.clone(),
            kind: entry.kind.clone(),
            reason,
        };
        if !opts.force && owner_is_running(&entry) {
            report.skipped.push(not(format!(
                "the process that injected it (pid {}) is still running; stop it, or `faultline restore {}/{}` to restore anyway",
                entry.pid, entry.run_id, entry.fault_id
            )));
            continue;
        }
        let mut ctx = FaultContext::new(
            &entry.run_id,
            &entry.fault_id,
            Arc::new(Hosts::new(entry.hosts.clone())),
            entry.deadline,
        );
        ctx.command_timeout = opts.command_timeout;
        if let Some(recorded) = &entry.kube {
            let k = opts.kube.as_ref().unwrap_or(recorded);
            match crate::fault::kube_target::KubeTarget::connect(k).await {
                Ok(t) => ctx.kube = Some(t),
                Err(e) => {
                    report
                        .failed
                        .push(not(format!("cannot reach the cluster: {e}")));
                    continue;
                }
            }
        }
        // Past the dead-man's time and no longer in effect: the node restored it by itself.
        let deadman_fired = entry
            .spec
            .deadman_at(entry.deadline)
            .is_some_and(|at| Utc::now() > at)
            && entry.spec.verify(&ctx, &entry.undo).await.is_err();
        let outcome = entry
            .spec
            .restore_with_retries(&ctx, &entry.undo, opts.attempts, opts.backoff, |n, e| {
                // A permanent failure is reported once, in the result below.
                if !e.is_permanent() {
                    tracing::warn!(fault = %entry.fault_id, attempt = n, error = %e, "restore failed");
                }
            })
            .await;
        match outcome {
            Ok(attempts) => {
                let how = if deadman_fired {
                    Restoration::Deadman
                } else {
                    Restoration::Recover
                };
                ledger.record_done(&entry.run_id, &entry.fault_id, how)?;
                report.restored.push(Recovered {
                    run_id: entry.run_id.clone(),
                    fault_id: entry.fault_id.clone(),
                    kind: entry.kind.clone(),
                    how,
                    attempts,
                });
            }
            Err(e) if e.is_permanent() => report.failed.push(not(format!(
                "{e} — permanent, not retried; undo it by hand, then `faultline ledger resolve {}/{} --reason \"...\"`",
                entry.run_id, entry.fault_id
            ))),
            Err(e) => report.failed.push(not(format!(
                "{e} (after {} attempts)",
                opts.attempts.max(1)
            ))),
        }
    }
    Ok(report)
}

/// Is the process that injected `entry` alive, and not this one? A zombie, a reused pid and a
/// process recorded on another machine are not ([`crate::fault::owner::Process::is_running`]).
fn owner_is_running(entry: &Entry) -> bool {
    if entry.pid == std::process::id() {
        return false;
    }
    match &entry.process {
        Some(p) => p.is_running(),
        // An entry written before processes were recorded in full: the pid must be alive, not a
        // zombie, and have started before the entry was written.
        None => {
            crate::fault::owner::proc_stat(entry.pid)
                .is_some_and(|s| s.state != 'Z' && s.state != 'X')
                && crate::fault::owner::process_start(entry.pid).is_some_and(|started| {
                    started <= entry.injected_at + chrono::Duration::seconds(1)
                })
        }
    }
}

/// A run id: `<prefix>-YYYYMMDD-HHMMSS-<8 random hex digits>` (local time). The random part makes
/// two runs started in the same second distinct — in the ledger and in dead-man markers.
pub fn new_run_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:08x}",
        chrono::Local::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::load_spike;

    fn entry(fault: &str) -> Entry {
        Entry {
            run_id: "r1".into(),
            fault_id: fault.into(),
            kind: "load-spike".into(),
            spec: FaultSpec::LoadSpike(load_spike::Params { multiplier: 2.0 }),
            hosts: BTreeMap::new(),
            kube: None,
            undo: serde_json::json!({"previous": 1.0}),
            deadline: Utc::now(),
            injected_at: Utc::now(),
            pid: 1,
            process: None,
            targets: vec![],
        }
    }

    fn line(r: &Record) -> String {
        serde_json::to_string(r).unwrap()
    }

    fn done(fault: &str) -> Record {
        Record::Done(Done {
            run_id: "r1".into(),
            fault_id: fault.into(),
            how: Restoration::Normal,
            at: Utc::now(),
            inject_error: None,
        })
    }

    #[test]
    fn run_ids_made_in_the_same_second_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_run_id("exp")).collect();
        // 1000 draws of a 32-bit suffix within one second: one collision has probability ~1e-4,
        // two ~1e-8 (time-only ids were all equal).
        assert!(ids.len() >= 999, "{}", ids.len());
        let id = ids.iter().next().unwrap();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 4, "{id}");
        assert_eq!(
            (parts[1].len(), parts[2].len(), parts[3].len()),
            (8, 6, 8),
            "{id}"
        );
    }

    #[test]
    fn fold_keeps_injects_without_done() {
        let text = [
            line(&Record::Inject(Box::new(entry("a")))),
            line(&Record::Inject(Box::new(entry("b")))),
            line(&done("a")),
        ]
        .join("\n");
        let f = fold(Path::new("l"), &text).unwrap();
        assert_eq!(f.outstanding.len(), 1);
        assert_eq!(f.outstanding[0].fault_id, "b");
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_ignored_with_a_warning() {
        let full = line(&Record::Inject(Box::new(entry("b"))));
        let text = format!(
            "{}\n{}",
            line(&Record::Inject(Box::new(entry("a")))),
            &full[..full.len() / 2]
        );
        let f = fold(Path::new("l"), &text).unwrap();
        assert_eq!(f.outstanding.len(), 1);
        assert_eq!(f.warnings.len(), 1);
        assert!(f.warnings[0].contains("line 2"), "{:?}", f.warnings);
    }

    #[test]
    fn json_that_is_not_a_record_is_an_error_naming_the_line() {
        let e = fold(Path::new("l"), "{\"record\":\"bogus\"}\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn a_resolved_entry_is_no_longer_outstanding_and_says_who_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::at(dir.path().join("l.jsonl"));
        ledger.record_inject(&entry("a")).unwrap();
        ledger.record_inject(&entry("b")).unwrap();
        let e = ledger
            .resolve("nosuch", "x", "u@h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no outstanding fault 'nosuch'"), "{e}");
        ledger
            .resolve("r1/a", "deleted by hand", "ops@node1")
            .unwrap();
        let f = ledger.read().unwrap();
        assert_eq!(f.outstanding.len(), 1);
        assert_eq!(f.outstanding[0].fault_id, "b");
        assert_eq!(f.resolved.len(), 1);
        let (entry_a, r) = &f.resolved[0];
        assert_eq!(entry_a.fault_id, "a");
        assert_eq!(
            (r.reason.as_str(), r.by.as_str()),
            ("deleted by hand", "ops@node1")
        );
        // The same record type is what is on disk.
        let text = std::fs::read_to_string(ledger.path()).unwrap();
        let last: Record = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert!(matches!(last, Record::Resolved(_)));
        assert!(
            text.lines()
                .last()
                .unwrap()
                .contains(r#""record":"resolved""#)
        );
    }

    #[test]
    fn the_record_format_is_tagged_and_carries_the_spec() {
        let v: serde_json::Value =
            serde_json::from_str(&line(&Record::Inject(Box::new(entry("a"))))).unwrap();
        assert_eq!(v["record"], "inject");
        assert_eq!(v["spec"]["kind"], "load-spike");
        assert_eq!(v["undo"]["previous"], 1.0);
        let v: serde_json::Value = serde_json::from_str(&line(&done("a"))).unwrap();
        assert_eq!(v["how"], "normal");
    }
}
