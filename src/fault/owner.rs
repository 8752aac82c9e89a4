//! One owner per target: which run holds which GPU, host, namespace — and whether the process
//! that holds it is really alive.
//!
//! Why: two runs on one ledger that both lock GPU 0 each read the mode to restore *before*
//! injecting; the second reads the first's `Prohibited` as "the mode before" and restores that,
//! leaving the GPU locked while the ledger says all is clean. The ledger's "refuse to start while
//! anything is outstanding" check cannot stop it: both runs pass it before either has injected.
//!
//! How: a run claims the targets of its whole timeline *before any load starts* and holds them
//! until after its last restore. A claim is an exclusive `flock` on one small file per target in
//! a directory beside the ledger (`<ledger>.owners/`), which holds the holder's identity as JSON.
//! The kernel drops the lock when the holder exits, however it exits (SIGKILL included), so a
//! claim never outlives its process and there is no pid to trust. What a dead process left
//! injected is still held, by its ledger entry: a claim is also refused while an outstanding
//! entry of another run names the target (`faultline recover` first).
//!
//! Targets (what two runs must not share):
//! - `gpu-lockout`: `gpu:<host>|<nvidia-smi command>|<gpu>` per GPU — the host as reached (local
//!   on which machine, or `ssh://user@host:port`), not its name in one experiment; the command
//!   too, since two simulated clusters on one machine have different GPUs behind it;
//! - `ssh-command`: `host:<host>` per host;
//! - `pod-kill`, `network-partition`: `kube:<API server>/<namespace>` — conservatively the whole
//!   namespace, since two label selectors can select the same pods;
//! - `load-spike` acts on the run's own load engine and claims nothing.
//!
//! Liveness ([`Process::is_running`]): a pid is not enough. A zombie (state `Z`) has exited; a
//! pid whose start time differs from the recorded one was reused; a process recorded on another
//! machine (or before a reboot: another boot id) cannot be checked here and is never "running".

use crate::fault::{FaultContext, FaultSpec, Target};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "refused: {target} is held by run {run_id} (pid {pid} on {host}, since {since}); wait for it to end, or stop it"
    )]
    Held {
        target: String,
        run_id: String,
        pid: u32,
        host: String,
        since: String,
    },
    #[error(
        "refused: {target} is still injected by run {run_id} (fault {fault_id}, ledger {ledger}); run `faultline recover` first"
    )]
    Outstanding {
        target: String,
        run_id: String,
        fault_id: String,
        ledger: PathBuf,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] crate::fault::ledger::LedgerError),
}

/// A process as the ledger and the owner files record it: enough to tell, later and from another
/// process, whether it is still the same live process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    /// `/proc/PID/stat` field 22 (clock ticks after boot): a reused pid has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// The machine's hostname.
    #[serde(default)]
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: another machine, or this one after a reboot, differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl Process {
    /// This process.
    pub fn current() -> Process {
        let pid = std::process::id();
        Process {
            pid,
            start_ticks: proc_stat(pid).map(|s| s.start_ticks),
            host: hostname(),
            boot_id: boot_id(),
        }
    }

    /// Is this the same process, alive and not a zombie, on this machine in this boot?
    pub fn is_running(&self) -> bool {
        if let (Some(recorded), Some(here)) = (&self.boot_id, boot_id()) {
            if *recorded != here {
                return false;
            }
        } else if !self.host.is_empty() && self.host != hostname() {
            return false;
        }
        match proc_stat(self.pid) {
            None => false,
            Some(s) if s.state == 'Z' || s.state == 'X' => false,
            Some(s) => self.start_ticks.is_none_or(|t| t == s.start_ticks),
        }
    }

    /// Why [`Process::is_running`] said no, for messages.
    pub fn why_not_running(&self) -> String {
        if let (Some(recorded), Some(here)) = (&self.boot_id, boot_id())
            && *recorded != here
        {
            return if self.host == hostname() {
                "recorded before this machine rebooted".into()
            } else {
                format!("recorded on another machine ({})", self.host)
            };
        }
        match proc_stat(self.pid) {
            None => format!("pid {} is gone", self.pid),
            Some(s) if s.state == 'Z' || s.state == 'X' => {
                format!("pid {} has exited (a zombie)", self.pid)
            }
            Some(_) => format!("pid {} is now another process (reused)", self.pid),
        }
    }
}

pub(crate) struct Stat {
    pub state: char,
    pub start_ticks: u64,
}

/// State (field 3) and start time (field 22) of `pid` from `/proc/PID/stat`.
pub(crate) fn proc_stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `comm` is in parentheses and may hold anything, spaces and ')' included: the fields after
    // it start after the *last* ')'.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

/// When `pid` started (None: no such process).
pub(crate) fn process_start(pid: u32) -> Option<DateTime<Utc>> {
    let ticks = proc_stat(pid)?.start_ticks as i64;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as i64 } else { 100 };
    DateTime::from_timestamp(btime + ticks / hz, 0)
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL or the end.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    if !ok {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The targets `spec` acts on, as seen from `ctx` (hosts as reached, the cluster's API server).
pub fn target_keys(spec: &FaultSpec, ctx: &FaultContext) -> Vec<String> {
    let host = |name: &str| match ctx.hosts.spec(name) {
        Ok(crate::fault::exec::HostSpec::Local) => format!("local@{}", hostname()),
        Ok(s) => s.to_string(),
        Err(_) => format!("unknown:{name}"),
    };
    let kube = |ns: &Option<String>| match &ctx.kube {
        Some(k) => format!("kube:{}/{}", k.server, k.namespace_for(ns.as_deref())),
        None => format!("kube:?/{}", ns.as_deref().unwrap_or("?")),
    };
    let mut keys: Vec<String> = spec
        .reach()
        .targets
        .iter()
        .filter_map(|t| match t {
            Target::Gpu {
                host: h,
                gpu,
                nvidia_smi,
            } => Some(format!("gpu:{}|{nvidia_smi}|{gpu}", host(h))),
            Target::Host(h) => Some(format!("host:{}", host(h))),
            Target::Pods { namespace, .. } => Some(kube(namespace)),
            Target::Node(n) => Some(format!("{}|node:{n}", kube(&None))),
            // Lives and dies with this process: nothing another process could share.
            Target::Load => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Who holds a target, as written in its owner file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub target: String,
    pub process: Process,
    pub since: DateTime<Utc>,
}

/// The targets a run holds; dropping it (or the process ending) releases them.
#[derive(Debug)]
pub struct Ownership {
    files: Vec<File>,
    pub targets: Vec<String>,
}

/// The directory beside the ledger that holds one lock file per target.
pub fn owners_dir(ledger: &Path) -> PathBuf {
    let mut name = ledger
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "ledger".into());
    name.push(".owners");
    ledger.with_file_name(name)
}

/// A file name for `target`: readable prefix plus a stable hash of the whole key.
fn file_for(target: &str) -> String {
    // FNV-1a, 64 bit: stable across builds and processes (std's hasher is not).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in target.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let prefix: String = target
        .chars()
        .take(40)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}-{h:016x}.lock")
}

impl Ownership {
    /// Claims every target in `targets` for `run_id`, or none: refused when another live process
    /// holds one, or when an outstanding ledger entry of another run names one.
    pub fn claim(
        ledger: &crate::fault::ledger::Ledger,
        run_id: &str,
        targets: &[String],
    ) -> Result<Ownership, OwnerError> {
        let mut targets = targets.to_vec();
        targets.sort();
        targets.dedup();
        let mut own = Ownership {
            files: Vec::new(),
            targets: targets.clone(),
        };
        if targets.is_empty() {
            return Ok(own);
        }
        let dir = owners_dir(ledger.path());
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OwnerError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let me = Process::current();
        for target in &targets {
            let path = dir.join(file_for(target));
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io(&path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let h: Option<Holder> = serde_json::from_str(&text).ok();
                    return Err(OwnerError::Held {
                        target: target.clone(),
                        run_id: h.as_ref().map_or("?".into(), |h| h.run_id.clone()),
                        pid: h.as_ref().map_or(0, |h| h.process.pid),
                        host: h.as_ref().map_or("?".into(), |h| h.process.host.clone()),
                        since: h.map_or("?".into(), |h| h.since.to_rfc3339()),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
            let holder = Holder {
                run_id: run_id.to_string(),
                target: target.clone(),
                process: me.clone(),
                since: Utc::now(),
            };
            let text = serde_json::to_string(&holder).expect("holders serialize");
            file.set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(text.as_bytes()))
                .map_err(io(&path))?;
            own.files.push(file);
        }
        // What a dead run left injected is still its target until `recover` puts it back.
        for e in ledger.outstanding()? {
            if e.run_id == run_id {
                continue;
            }
            if let Some(t) = e.targets.iter().find(|t| targets.contains(t)) {
                return Err(OwnerError::Outstanding {
                    target: t.clone(),
                    run_id: e.run_id.clone(),
                    fault_id: e.fault_id.clone(),
                    ledger: ledger.path().to_path_buf(),
                });
            }
        }
        Ok(own)
    }

    /// Holds the targets of `other` too (released with this).
    pub fn absorb(&mut self, mut other: Ownership) {
        self.files.append(&mut other.files);
        self.targets.append(&mut other.targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::ledger::Ledger;

    #[test]
    fn a_held_target_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::at(dir.path().join("l.jsonl"));
        let t = vec!["gpu:local@x|nvidia-smi|0".to_string()];
        let first = Ownership::claim(&ledger, "run-a", &t).unwrap();
        let e = Ownership::claim(&ledger, "run-b", &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("run-a"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("gpu:local@x|nvidia-smi|0"), "{e}");
        // A different target is free.
        Ownership::claim(&ledger, "run-b", &["host:ssh://n1".to_string()]).unwrap();
        drop(first);
        Ownership::claim(&ledger, "run-b", &t).unwrap();
    }

    #[test]
    fn this_process_is_running_and_a_reused_or_foreign_pid_is_not() {
        let me = Process::current();
        assert!(me.start_ticks.is_some());
        assert!(me.is_running());
        let reused = Process {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused.is_running());
        assert!(reused.why_not_running().contains("reused"));
        let foreign = Process {
            boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
            host: "elsewhere".into(),
            ..me.clone()
        };
        assert!(!foreign.is_running());
        assert!(foreign.why_not_running().contains("another machine"));
        let gone = Process {
            pid: u32::MAX - 1,
            ..me
        };
        assert!(!gone.is_running());
    }

    #[test]
    fn a_comm_with_parentheses_and_spaces_still_parses() {
        // The parser must find fields after the last ')'; check against our own stat line.
        let s = proc_stat(std::process::id()).unwrap();
        assert!(matches!(s.state, 'R' | 'S'));
    }

    #[test]
    fn owner_files_sit_beside_the_ledger_with_stable_names() {
        assert_eq!(
            owners_dir(Path::new("/x/.faultline/ledger.jsonl")),
            PathBuf::from("/x/.faultline/ledger.jsonl.owners")
        );
        assert_eq!(file_for("gpu:a|b|0"), file_for("gpu:a|b|0"));
        assert_ne!(file_for("gpu:a|b|0"), file_for("gpu:a|b|1"));
    }
}
