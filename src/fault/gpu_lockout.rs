//! `gpu-lockout`: make GPUs unusable for new contexts by setting their compute mode over SSH
//! (`nvidia-smi -i N -c PROHIBITED`), optionally killing the serving process on them (a mode
//! change does not affect a context that is already running), and restore the mode that was
//! read before — never an assumed DEFAULT.
//!
//! Written against what `nvidia-smi` really prints (the fixtures in the tests are its texts):
//! - compute modes as its queries spell them (`Default`, `Exclusive_Process`, `Prohibited`,
//!   the legacy `Exclusive_Thread`), and `[N/A]` / `[Not Supported]` where a GPU cannot say:
//!   such a GPU is refused with the reason, the other GPUs still parse;
//! - GPUs addressed by index, UUID (`GPU-…`) or PCI bus id (`00000000:3B:00.0`), as `-i` takes
//!   them; the undo data records the UUID, which survives a re-enumeration of indices;
//! - a MIG-enabled GPU (`mig.mode.current` = `Enabled`) is refused: compute modes do not apply
//!   to it, and locking it would not lock its MIG instances;
//! - its errors go to stdout, so both streams are quoted; "Insufficient Permissions" means the
//!   login user is not root (→ `sudo: true` on the host); "already set" is a success;
//! - `EXCLUSIVE_THREAD` cannot be a lock mode (current drivers no longer support it), and a GPU
//!   already in it is refused, since restore could not set it back.
//!
//! Preflight proves the permission without changing anything: it sets every target GPU to the
//! mode it already has (`nvidia-smi` answers "already set"), through `sudo -n` on a `sudo: true`
//! host, so a missing sudoers rule or a missing `sudo: true` is found before any load starts.
//!
//! Restore reads the modes first and sets back only the GPUs that differ, so restoring after an
//! inject that failed half-way (or never changed anything) succeeds, closes the ledger entry and
//! cancels the dead-man timer instead of failing the same way inject did.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Hosts (names from the experiment's `hosts` section) and the GPU indices on each.
    pub targets: Vec<GpuTarget>,
    /// The mode to set while the fault lasts.
    #[serde(default)]
    pub mode: LockMode,
    /// Kill the processes holding these GPUs so that the lockout bites.
    #[serde(default = "yes")]
    pub kill_process: bool,
    /// The nvidia-smi command on the node.
    #[serde(default = "default_nvidia_smi")]
    pub nvidia_smi: String,
    /// The node-side dead-man switch restores the mode this long after the fault's deadline.
    #[serde(default = "default_margin", with = "crate::duration::serde")]
    #[schemars(with = "String")]
    pub deadman_margin: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuTarget {
    pub host: String,
    /// GPUs as `nvidia-smi -i` takes them: index, UUID or PCI bus id.
    pub gpus: Vec<GpuId>,
}

impl GpuTarget {
    /// What a GPU kind on `targets` through `nvidia_smi` touches: each GPU, and each host with
    /// the key path naming it (`targets.N.host`).
    pub fn reach(targets: &[GpuTarget], nvidia_smi: &str) -> Reach {
        Reach {
            targets: targets
                .iter()
                .flat_map(|t| {
                    t.gpus.iter().map(move |g| Target::Gpu {
                        host: t.host.clone(),
                        gpu: g.to_string(),
                        nvidia_smi: nvidia_smi.trim().to_string(),
                    })
                })
                .collect(),
            hosts: targets
                .iter()
                .enumerate()
                .map(|(k, t)| HostRef::new(&t.host, &["targets", &k.to_string(), "host"]))
                .collect(),
            kube: Vec::new(),
            load: false,
        }
    }

    /// `host H GPUs [0, 1]`, one per target, for plan texts.
    pub fn describe(targets: &[GpuTarget]) -> Vec<String> {
        targets
            .iter()
            .map(|t| {
                let gpus: Vec<String> = t.gpus.iter().map(ToString::to_string).collect();
                format!("host {} GPUs [{}]", t.host, gpus.join(", "))
            })
            .collect()
    }
}

/// One GPU as the user names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GpuId {
    Index(u32),
    /// A UUID (`GPU-…`), a PCI bus id (`00000000:3B:00.0`), or an index written as a string.
    Name(String),
}

impl From<u32> for GpuId {
    fn from(i: u32) -> Self {
        GpuId::Index(i)
    }
}

impl std::fmt::Display for GpuId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuId::Index(i) => write!(f, "{i}"),
            GpuId::Name(s) => f.write_str(s),
        }
    }
}

impl GpuId {
    /// Whether `row` is the GPU this names.
    pub fn matches(&self, row: &GpuRow) -> bool {
        match self {
            GpuId::Index(i) => row.index == *i,
            GpuId::Name(s) => {
                let s = s.trim();
                s.parse::<u32>().is_ok_and(|i| i == row.index)
                    || s.eq_ignore_ascii_case(&row.uuid)
                    || (!row.bus_id.is_empty()
                        && bus_id_key(s).is_some()
                        && bus_id_key(s) == bus_id_key(&row.bus_id))
            }
        }
    }
}

/// A PCI bus id as (domain, bus, device, function), whatever the spelling
/// (`00000000:3B:00.0`, `0000:3b:00.0`, `3B:00.0`).
pub fn bus_id_key(s: &str) -> Option<(u32, u32, u32, u32)> {
    let (rest, func) = s.trim().rsplit_once('.')?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (dom, bus, dev) = match parts.as_slice() {
        [d, b, v] => (*d, *b, *v),
        [b, v] => ("0", *b, *v),
        _ => return None,
    };
    let h = |x: &str| u32::from_str_radix(x, 16).ok();
    Some((h(dom)?, h(bus)?, h(dev)?, h(func)?))
}

/// The mode to set while the fault lasts: `PROHIBITED` or `EXCLUSIVE_PROCESS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", try_from = "String")]
pub enum LockMode {
    #[default]
    Prohibited,
    ExclusiveProcess,
}

impl TryFrom<String> for LockMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match ComputeMode::parse(&s) {
            Some(ComputeMode::Prohibited) => Ok(LockMode::Prohibited),
            Some(ComputeMode::ExclusiveProcess) => Ok(LockMode::ExclusiveProcess),
            Some(ComputeMode::ExclusiveThread) => Err(format!(
                "mode {s:?}: EXCLUSIVE_THREAD is no longer supported by nvidia-smi; use PROHIBITED or EXCLUSIVE_PROCESS"
            )),
            Some(ComputeMode::Default) => Err(format!(
                "mode {s:?} locks nothing; use PROHIBITED or EXCLUSIVE_PROCESS"
            )),
            None => Err("expected one of PROHIBITED, EXCLUSIVE_PROCESS".to_string()),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_nvidia_smi() -> String {
    "nvidia-smi".into()
}
fn default_margin() -> Duration {
    Duration::from_secs(60)
}

// ---------------------------------------------------------------------------------------------
// Implementation. Every node command goes through `nvidia_smi` (a command prefix, used as
// written, e.g. `faultline nvidia-smi --state DIR`); commands that change something run through
// `Host::privileged` (`sudo -n …` on a `sudo: true` host).

use crate::fault::deadman;
use crate::fault::exec::{ExecError, Host, Output, quote_output};
use crate::fault::{
    DescribeCx, FaultContext, HostRef, Lifetime, Problem, Reach, SimBinding, Target, Verification,
};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::common::ComputeMode;

impl From<LockMode> for ComputeMode {
    fn from(m: LockMode) -> Self {
        match m {
            LockMode::Prohibited => ComputeMode::Prohibited,
            LockMode::ExclusiveProcess => ComputeMode::ExclusiveProcess,
        }
    }
}

/// Undo data: per host, the mode each GPU had before, and the dead-man timer's marker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub hosts: Vec<HostUndo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostUndo {
    pub host: String,
    pub gpus: Vec<GpuUndo>,
    /// The marker of the dead-man timer on this host (`None`: disabled by a zero margin).
    pub deadman: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuUndo {
    pub index: u32,
    /// The GPU's UUID, which `-i` is given (indices can change when GPUs are re-enumerated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The mode read in `prepare`; restore sets exactly this back.
    pub mode: ComputeMode,
}

impl GpuUndo {
    /// What `-i` is given.
    fn id(&self) -> String {
        self.uuid.clone().unwrap_or_else(|| self.index.to_string())
    }
    fn is(&self, row: &GpuRow) -> bool {
        match &self.uuid {
            Some(u) => u.eq_ignore_ascii_case(&row.uuid),
            None => row.index == self.index,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("host {host:?} has no GPU {id} (it has {present})")]
    NoSuchGpu {
        host: String,
        id: String,
        present: String,
    },
    #[error("cannot read the output of {cmd:?} on host {host:?}: line {line:?}")]
    Parse {
        host: String,
        cmd: String,
        line: String,
    },
    #[error(
        "GPU {index} on host {host:?} cannot be locked: nvidia-smi reports its compute mode as {reading} (the GPU does not support compute modes or the driver cannot read it)"
    )]
    ModeUnavailable {
        host: String,
        index: u32,
        reading: String,
    },
    #[error(
        "GPU {index} on host {host:?} cannot be locked: MIG is enabled on it (mig.mode.current = Enabled); compute modes do not apply to MIG instances — target a GPU without MIG, or disable MIG"
    )]
    MigEnabled { host: String, index: u32 },
    #[error(
        "GPU {index} on host {host:?} is in compute mode Exclusive_Thread, which current drivers can no longer set: restore could not put it back, so it is not touched"
    )]
    LegacyMode { host: String, index: u32 },
    #[error(
        "nvidia-smi on host {host:?} says \"Insufficient Permissions\" for {cmd:?}: changing compute modes needs root; log in as root or set `sudo: true` on the host (with a NOPASSWD sudoers rule for nvidia-smi and kill)"
    )]
    NeedsRoot { host: String, cmd: String },
    #[error("{cmd:?} on host {host:?} failed ({status}): {output}")]
    NvidiaSmi {
        host: String,
        cmd: String,
        status: String,
        output: String,
    },
    #[error("gpu-lockout did not take effect: GPU {index} on host {host:?} is {mode}, not {want}")]
    NotInEffect {
        host: String,
        index: u32,
        mode: String,
        want: ComputeMode,
    },
    #[error("restore did not take effect: GPU {index} on host {host:?} is {mode}, not {want}")]
    NotRestored {
        host: String,
        index: u32,
        mode: String,
        want: ComputeMode,
    },
    #[error("processes {pids:?} on host {host:?} survived kill -KILL")]
    KillFailed { host: String, pids: Vec<u32> },
    #[error("gpu-lockout has no targets")]
    NoTargets,
}

/// What `--query-gpu=compute_mode` said about one GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeReading {
    Mode(ComputeMode),
    /// `[N/A]`, `[Not Supported]`, … as printed.
    Unavailable(String),
}

impl std::fmt::Display for ModeReading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModeReading::Mode(m) => m.fmt(f),
            ModeReading::Unavailable(s) => f.write_str(s),
        }
    }
}

/// One line of the GPU query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuRow {
    pub index: u32,
    pub uuid: String,
    pub bus_id: String,
    pub mode: ModeReading,
    /// `mig.mode.current`: `Some(true)` when `Enabled`; `None` when `[N/A]` or not queried.
    pub mig: Option<bool>,
}

const QUERY_FIELDS: &str = "index,uuid,pci.bus_id,compute_mode,mig.mode.current";
/// For drivers older than MIG (they reject the field).
const QUERY_FIELDS_NO_MIG: &str = "index,uuid,pci.bus_id,compute_mode";

/// Parses `--query-gpu=index,uuid,pci.bus_id,compute_mode[,mig.mode.current]
/// --format=csv,noheader`; returns the offending line on error. A value in brackets (`[N/A]`,
/// `[Not Supported]`) is a reading, not an error.
pub fn parse_gpu_rows(text: &str) -> Result<Vec<GpuRow>, String> {
    let mut rows = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() < 4 {
            return Err(line.to_string());
        }
        let index = f[0].parse().map_err(|_| line.to_string())?;
        let mode = match ComputeMode::parse(f[3]) {
            Some(m) => ModeReading::Mode(m),
            None if f[3].starts_with('[') || f[3] == "N/A" => {
                ModeReading::Unavailable(f[3].to_string())
            }
            None => return Err(line.to_string()),
        };
        let mig = match f.get(4) {
            Some(&"Enabled") => Some(true),
            Some(&"Disabled") => Some(false),
            _ => None,
        };
        rows.push(GpuRow {
            index,
            uuid: f[1].to_string(),
            bus_id: f[2].to_string(),
            mode,
            mig,
        });
    }
    Ok(rows)
}

/// Every GPU on the host as `nvidia-smi` reports it.
pub async fn query_gpus(host: &Host, nvsmi: &str, timeout: Duration) -> Result<Vec<GpuRow>, Error> {
    let mut cmd = format!("{nvsmi} --query-gpu={QUERY_FIELDS} --format=csv,noheader");
    let mut out = host.run(&cmd, timeout).await?;
    if !out.success() && quote_output(&out.stdout, &out.stderr).contains("is not a valid field") {
        cmd = format!("{nvsmi} --query-gpu={QUERY_FIELDS_NO_MIG} --format=csv,noheader");
        out = host.run(&cmd, timeout).await?;
    }
    if !out.success() {
        return Err(nvsmi_failure(host, &cmd, &out));
    }
    parse_gpu_rows(&out.stdout).map_err(|line| Error::Parse {
        host: host.name().to_string(),
        cmd: cmd.clone(),
        line,
    })
}

/// `index -> mode` of every GPU on the host that can say its mode.
pub async fn query_modes(
    host: &Host,
    nvsmi: &str,
    timeout: Duration,
) -> Result<BTreeMap<u32, ComputeMode>, Error> {
    Ok(query_gpus(host, nvsmi, timeout)
        .await?
        .into_iter()
        .filter_map(|r| match r.mode {
            ModeReading::Mode(m) => Some((r.index, m)),
            ModeReading::Unavailable(_) => None,
        })
        .collect())
}

/// Turns a failed nvidia-smi run into the error that says what to do.
fn nvsmi_failure(host: &Host, cmd: &str, out: &Output) -> Error {
    let said = quote_output(&out.stdout, &out.stderr);
    if said.contains("Insufficient Permissions") {
        return Error::NeedsRoot {
            host: host.name().to_string(),
            cmd: cmd.to_string(),
        };
    }
    match host.failure(cmd, out) {
        e @ ExecError::SudoRefused { .. } => Error::Exec(e),
        _ => Error::NvidiaSmi {
            host: host.name().to_string(),
            cmd: cmd.to_string(),
            status: out.status.to_string(),
            output: said,
        },
    }
}

/// Whether a failed `-c` run still means the GPU is in the mode asked for ("already set").
pub fn already_set(out: &Output) -> bool {
    quote_output(&out.stdout, &out.stderr)
        .to_ascii_lowercase()
        .contains("already set")
}

/// Sets one GPU's mode; "already set" counts as success.
async fn set_mode(
    host: &Host,
    nvsmi: &str,
    id: &str,
    mode: ComputeMode,
    t: Duration,
) -> Result<(), Error> {
    let cmd = host.privileged(&set_command(nvsmi, id, mode));
    let out = host.run(&cmd, t).await?;
    if out.success() || already_set(&out) {
        Ok(())
    } else {
        Err(nvsmi_failure(host, &cmd, &out))
    }
}

/// Pids of the compute processes on the GPUs with these UUIDs.
async fn processes_on(
    host: &Host,
    nvsmi: &str,
    uuids: &[String],
    timeout: Duration,
) -> Result<Vec<u32>, Error> {
    let parse_err = |cmd: &str, line: String| Error::Parse {
        host: host.name().to_string(),
        cmd: cmd.to_string(),
        line,
    };
    let cmd = format!("{nvsmi} --query-compute-apps=pid,gpu_uuid --format=csv,noheader");
    let out = host.run(&cmd, timeout).await?;
    if !out.success() {
        return Err(nvsmi_failure(host, &cmd, &out));
    }
    let mut pids = Vec::new();
    for line in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("No running") {
            continue; // some drivers print this instead of an empty list
        }
        let (pid, uuid) = line
            .split_once(',')
            .ok_or_else(|| parse_err(&cmd, line.to_string()))?;
        let Ok(pid) = pid.trim().parse::<u32>() else {
            if pid.trim().starts_with('[') {
                continue; // `[N/A]`: a process the driver cannot name (e.g. in another container)
            }
            return Err(parse_err(&cmd, line.to_string()));
        };
        if uuids.iter().any(|u| u.eq_ignore_ascii_case(uuid.trim())) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn set_command(nvsmi: &str, id: &str, mode: ComputeMode) -> String {
    format!("{nvsmi} -i {id} -c {}", mode.set_name())
}

/// The command the dead-man timer runs: every GPU of the host back to its recorded mode, each
/// through `sudo -n` when `sudo` (the timer itself runs as the login user).
pub fn restore_command(nvsmi: &str, gpus: &[GpuUndo], sudo: bool) -> String {
    gpus.iter()
        .map(|g| {
            let c = set_command(nvsmi, &g.id(), g.mode);
            if sudo { format!("sudo -n {c}") } else { c }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reachable, every target GPU lockable, and the permission to change modes (proved by setting
/// each GPU to the mode it already has).
pub async fn preflight(p: &Params, ctx: &FaultContext) -> Result<(), Error> {
    let undo = prepare(p, ctx).await?;
    for h in &undo.hosts {
        let host = ctx.hosts.get(&h.host)?;
        for g in &h.gpus {
            set_mode(&host, &p.nvidia_smi, &g.id(), g.mode, ctx.command_timeout).await?;
        }
        if p.kill_process && host.sudo() {
            let cmd = "sudo -n -l kill";
            let out = host.run(cmd, ctx.command_timeout).await?;
            if !out.success() {
                return Err(Error::Exec(match host.failure(cmd, &out) {
                    e @ ExecError::SudoRefused { .. } => e,
                    _ => ExecError::SudoRefused {
                        host: h.host.clone(),
                        cmd: "sudo -n kill".into(),
                        said: format!(
                            "`sudo -n -l kill` says kill is not allowed ({})",
                            quote_output(&out.stdout, &out.stderr)
                        ),
                    },
                }));
            }
        }
    }
    Ok(())
}

pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    if p.targets.iter().all(|t| t.gpus.is_empty()) {
        return Err(Error::NoTargets);
    }
    let mut hosts = Vec::new();
    for t in &p.targets {
        let host = ctx.hosts.get(&t.host)?;
        let rows = query_gpus(&host, &p.nvidia_smi, ctx.command_timeout).await?;
        let mut gpus: Vec<GpuUndo> = Vec::new();
        for id in &t.gpus {
            let row = rows
                .iter()
                .find(|r| id.matches(r))
                .ok_or_else(|| Error::NoSuchGpu {
                    host: t.host.clone(),
                    id: id.to_string(),
                    present: rows
                        .iter()
                        .map(|r| format!("{} {} {}", r.index, r.uuid, r.bus_id))
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
            if row.mig == Some(true) {
                return Err(Error::MigEnabled {
                    host: t.host.clone(),
                    index: row.index,
                });
            }
            let mode = match &row.mode {
                ModeReading::Mode(ComputeMode::ExclusiveThread) => {
                    return Err(Error::LegacyMode {
                        host: t.host.clone(),
                        index: row.index,
                    });
                }
                ModeReading::Mode(m) => *m,
                ModeReading::Unavailable(r) => {
                    return Err(Error::ModeUnavailable {
                        host: t.host.clone(),
                        index: row.index,
                        reading: r.clone(),
                    });
                }
            };
            if !gpus.iter().any(|g| g.index == row.index) {
                gpus.push(GpuUndo {
                    index: row.index,
                    uuid: (!row.uuid.is_empty() && !row.uuid.starts_with('['))
                        .then(|| row.uuid.clone()),
                    mode,
                });
            }
        }
        hosts.push(HostUndo {
            host: t.host.clone(),
            gpus,
            deadman: (!p.deadman_margin.is_zero())
                .then(|| deadman::marker(&ctx.run_id, &ctx.fault_id, &t.host)),
        });
    }
    Ok(Undo { hosts })
}

pub async fn inject(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    let lock = ComputeMode::from(p.mode);
    futures_util::future::try_join_all(undo.hosts.iter().map(|h| async move {
        let host = ctx.hosts.get(&h.host)?;
        let t = ctx.command_timeout;
        // The safety net first: if faultline dies between here and restore, the node puts
        // the recorded modes back by itself.
        if let Some(marker) = &h.deadman {
            let delay = deadman::delay_secs(ctx.deadline, p.deadman_margin, chrono::Utc::now());
            let restore = restore_command(&p.nvidia_smi, &h.gpus, host.sudo());
            let cmd = deadman::arm_command(marker, delay, &restore);
            let out = host.run_ok(&cmd, t).await?;
            tracing::info!(host = %h.host, pid = %out.stdout.trim(), delay_s = delay, "dead-man timer armed");
        }
        for g in &h.gpus {
            set_mode(&host, &p.nvidia_smi, &g.id(), lock, t).await?;
        }
        if p.kill_process {
            kill_processes(&host, &p.nvidia_smi, &h.gpus, t).await?;
        }
        Ok::<_, Error>(())
    }))
    .await?;
    Ok(())
}

async fn kill_processes(
    host: &Arc<Host>,
    nvsmi: &str,
    gpus: &[GpuUndo],
    t: Duration,
) -> Result<(), Error> {
    let rows = query_gpus(host, nvsmi, t).await?;
    let uuids: Vec<String> = rows
        .iter()
        .filter(|r| gpus.iter().any(|g| g.is(r)))
        .map(|r| r.uuid.clone())
        .collect();
    let pids = processes_on(host, nvsmi, &uuids, t).await?;
    if pids.is_empty() {
        return Ok(());
    }
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    tracing::info!(host = %host.name(), pids = %list, "killing the processes on the locked GPUs");
    // A pid that exited meanwhile makes kill fail; what counts is who is still there after. A
    // refused sudo, though, is an error worth its own message.
    let cmd = host.privileged(&format!("kill -KILL {list}"));
    let out = host.run(&cmd, t).await?;
    if !out.success()
        && let e @ ExecError::SudoRefused { .. } = host.failure(&cmd, &out)
    {
        return Err(Error::Exec(e));
    }
    let mut left = pids.clone();
    for _ in 0..20 {
        let alive = host.run_ok(&alive_command(&list), t).await?;
        left = alive
            .stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::KillFailed {
        host: host.name().to_string(),
        pids: left,
    })
}

/// Prints those of `pids` (space-separated) that are still running; a zombie (killed, not yet
/// reaped by its parent) counts as gone.
fn alive_command(pids: &str) -> String {
    format!(
        "for p in {pids}; do s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -c1); \
         [ -n \"$s\" ] && [ \"$s\" != Z ] && echo $p; done; true"
    )
}

/// The reading of the GPU `g` in `rows` (as text when it is not a mode).
fn reading_of(rows: &[GpuRow], g: &GpuUndo) -> Result<ComputeMode, String> {
    match rows.iter().find(|r| g.is(r)) {
        Some(GpuRow {
            mode: ModeReading::Mode(m),
            ..
        }) => Ok(*m),
        Some(GpuRow {
            mode: ModeReading::Unavailable(s),
            ..
        }) => Err(s.clone()),
        None => Err("missing".into()),
    }
}

pub async fn verify(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
    let want = ComputeMode::from(p.mode);
    for h in &undo.hosts {
        let host = ctx.hosts.get(&h.host)?;
        let rows = query_gpus(&host, &p.nvidia_smi, ctx.command_timeout).await?;
        for g in &h.gpus {
            let mode = reading_of(&rows, g);
            if mode != Ok(want) {
                return Err(Error::NotInEffect {
                    host: h.host.clone(),
                    index: g.index,
                    mode: mode.map_or_else(|s| s, |m| m.to_string()),
                    want,
                });
            }
        }
    }
    Ok(Verification::Verified)
}

pub async fn restore(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    futures_util::future::try_join_all(undo.hosts.iter().map(|h| async move {
        let host = ctx.hosts.get(&h.host)?;
        let t = ctx.command_timeout;
        // Only what differs from the recorded mode is set back: after an inject that failed
        // part-way (or before changing anything) this succeeds without needing what failed.
        let before = query_gpus(&host, &p.nvidia_smi, t).await?;
        for g in &h.gpus {
            if reading_of(&before, g) != Ok(g.mode) {
                set_mode(&host, &p.nvidia_smi, &g.id(), g.mode, t).await?;
            }
        }
        let after = query_gpus(&host, &p.nvidia_smi, t).await?;
        for g in &h.gpus {
            let mode = reading_of(&after, g);
            if mode != Ok(g.mode) {
                return Err(Error::NotRestored {
                    host: h.host.clone(),
                    index: g.index,
                    mode: mode.map_or_else(|s| s, |m| m.to_string()),
                    want: g.mode,
                });
            }
        }
        // Only now that the modes are back is the safety net no longer needed.
        if let Some(marker) = &h.deadman {
            let out = host.run_ok(&deadman::cancel_command(marker), t).await?;
            tracing::info!(host = %h.host, pids = %out.stdout.trim(), "dead-man timer cancelled");
        }
        Ok::<_, Error>(())
    }))
    .await?;
    Ok(())
}

impl crate::fault::FaultKind for Params {
    type Undo = Undo;
    type Error = Error;

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.targets.is_empty() {
            out.push(Problem::new(
                &["targets"],
                "[]",
                "needs at least one {host, gpus}",
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if t.gpus.is_empty() {
                out.push(Problem::new(
                    &["targets", &i.to_string(), "gpus"],
                    "[]",
                    "needs at least one GPU (an index, UUID or PCI bus id)",
                ));
            }
        }
        out
    }

    fn reach(&self) -> Reach {
        GpuTarget::reach(&self.targets, &self.nvidia_smi)
    }

    fn describe(&self, _cx: &DescribeCx) -> String {
        let targets = GpuTarget::describe(&self.targets);
        let mode = match self.mode {
            LockMode::Prohibited => "PROHIBITED",
            LockMode::ExclusiveProcess => "EXCLUSIVE_PROCESS",
        };
        let kill = if self.kill_process {
            ", kill process"
        } else {
            ""
        };
        format!(
            "on {} (mode {mode}{kill}; via `{}`)",
            targets.join(", "),
            self.nvidia_smi
        )
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(
            ", restore the recorded compute mode at {}",
            end.unwrap_or("the end")
        )
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    fn deadman_margin(&self) -> Option<Duration> {
        Some(self.deadman_margin)
    }

    /// `faultline nvidia-smi` on local hosts means the sim's GPUs: the command becomes the
    /// sim's own wrapper (which knows its state directory), so that the ledger holds a command
    /// that `faultline recover` can run from any process.
    fn bind_to_sim(&mut self, sim: &SimBinding) {
        if let Some(cmd) = sim.nvidia_smi(self.targets.iter().map(|t| &t.host), &self.nvidia_smi) {
            self.nvidia_smi = cmd;
        }
    }

    fn is_permanent(_: &Error) -> bool {
        false
    }

    fn example() -> Self {
        Params {
            targets: vec![GpuTarget {
                host: "gpu-node-1".into(),
                gpus: vec![GpuId::Index(0)],
            }],
            mode: LockMode::Prohibited,
            kill_process: true,
            nvidia_smi: default_nvidia_smi(),
            deadman_margin: default_margin(),
        }
    }

    async fn preflight(&self, ctx: &FaultContext) -> Result<(), Error> {
        preflight(self, ctx).await
    }
    async fn prepare(&self, ctx: &FaultContext) -> Result<Undo, Error> {
        prepare(self, ctx).await
    }
    async fn inject(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        inject(self, ctx, undo).await
    }
    async fn verify(&self, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
        verify(self, ctx, undo).await
    }
    async fn restore(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        restore(self, ctx, undo).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    // Outputs of the real nvidia-smi (driver 5xx), as recorded from nodes and bug reports.
    /// `--query-gpu=index,uuid,pci.bus_id,compute_mode,mig.mode.current --format=csv,noheader`
    /// on an 8-GPU H100 node with MIG on GPU 2.
    const QUERY_H100: &str = "\
0, GPU-6f3b2a51-9c1e-4d2f-8a7b-0e1d2c3b4a59, 00000000:18:00.0, Default, Disabled
1, GPU-b7e2c4d8-1f3a-4e5b-9c6d-7a8b9c0d1e2f, 00000000:2A:00.0, Exclusive_Process, Disabled
2, GPU-3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f, 00000000:3A:00.0, Prohibited, Enabled
3, GPU-9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b, 00000000:3B:00.0, Default, Disabled
";
    /// The same query on a Quadro P400 (no MIG: `[N/A]`).
    const QUERY_QUADRO: &str =
        "0, GPU-08283365-4b53-3311-bff5-d5c37f82021d, 00000000:01:00.0, Default, [N/A]\n";
    /// A GPU whose compute mode the driver cannot report (e.g. under WSL).
    const QUERY_NOT_SUPPORTED: &str = "\
0, GPU-431ab665-6377-3138-3e5a-89f61ebd0a72, 00000000:01:00.0, [Not Supported], [N/A]
1, GPU-09673de3-1f59-66aa-9b21-3c4d5e6f7a8b, 00000000:3E:00.0, Default, [N/A]
";
    const SET_OK: &str = "Set compute mode to PROHIBITED for GPU 00000000:3B:00.0.\nAll done.\n";
    const SET_ALREADY: &str =
        "Compute mode is already set to PROHIBITED for GPU 00000000:3B:00.0.\nAll done.\n";
    const SET_NO_PERMISSION: &str = "Unable to set the compute mode for GPU 00000000:3B:00.0: Insufficient Permissions\nTerminating early due to previous errors.\n";

    fn out(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn modes_parse_as_set_and_as_queried() {
        for (s, m) in [
            ("0", ComputeMode::Default),
            ("DEFAULT", ComputeMode::Default),
            ("Default", ComputeMode::Default),
            ("1", ComputeMode::ExclusiveThread),
            ("Exclusive_Thread", ComputeMode::ExclusiveThread),
            ("2", ComputeMode::Prohibited),
            ("Prohibited", ComputeMode::Prohibited),
            ("3", ComputeMode::ExclusiveProcess),
            ("EXCLUSIVE_PROCESS", ComputeMode::ExclusiveProcess),
            ("Exclusive_Process", ComputeMode::ExclusiveProcess),
        ] {
            assert_eq!(ComputeMode::parse(s), Some(m), "{s}");
        }
        assert_eq!(ComputeMode::parse("4"), None);
        assert_eq!(ComputeMode::parse("locked"), None);
    }

    #[test]
    fn the_real_query_output_parses_with_mig_and_bus_ids() {
        let rows = parse_gpu_rows(QUERY_H100).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[1].mode,
            ModeReading::Mode(ComputeMode::ExclusiveProcess)
        );
        assert_eq!(rows[2].mig, Some(true));
        assert_eq!(rows[3].mig, Some(false));
        assert_eq!(rows[3].bus_id, "00000000:3B:00.0");
        let rows = parse_gpu_rows(QUERY_QUADRO).unwrap();
        assert_eq!(rows[0].mig, None, "[N/A] is no MIG");
        assert_eq!(rows[0].mode, ModeReading::Mode(ComputeMode::Default));
    }

    #[test]
    fn a_gpu_whose_mode_reads_not_supported_does_not_break_the_others() {
        let rows = parse_gpu_rows(QUERY_NOT_SUPPORTED).unwrap();
        assert_eq!(
            rows[0].mode,
            ModeReading::Unavailable("[Not Supported]".into())
        );
        assert_eq!(rows[1].mode, ModeReading::Mode(ComputeMode::Default));
        // A line that is not nvidia-smi's is still quoted back.
        assert_eq!(
            parse_gpu_rows("0, GPU-x, 00000000:01:00.0, Weird\n").unwrap_err(),
            "0, GPU-x, 00000000:01:00.0, Weird"
        );
        assert_eq!(
            parse_gpu_rows("No devices were found\n").unwrap_err(),
            "No devices were found"
        );
    }

    #[test]
    fn gpus_are_found_by_index_uuid_or_any_spelling_of_the_bus_id() {
        let rows = parse_gpu_rows(QUERY_H100).unwrap();
        let find = |id: GpuId| rows.iter().find(|r| id.matches(r)).map(|r| r.index);
        assert_eq!(find(GpuId::Index(3)), Some(3));
        assert_eq!(find(GpuId::Name("3".into())), Some(3));
        assert_eq!(
            find(GpuId::Name(
                "GPU-b7e2c4d8-1f3a-4e5b-9c6d-7a8b9c0d1e2f".into()
            )),
            Some(1)
        );
        assert_eq!(find(GpuId::Name("00000000:3B:00.0".into())), Some(3));
        assert_eq!(find(GpuId::Name("0000:3b:00.0".into())), Some(3));
        assert_eq!(find(GpuId::Name("3A:00.0".into())), Some(2));
        assert_eq!(find(GpuId::Name("GPU-nope".into())), None);
        let ids: Vec<GpuId> =
            serde_json::from_str(r#"[0, "GPU-b7e2c4d8-1f3a-4e5b-9c6d-7a8b9c0d1e2f"]"#).unwrap();
        assert_eq!(ids[0], GpuId::Index(0));
    }

    #[test]
    fn exclusive_thread_and_default_are_refused_as_lock_modes() {
        let e = serde_json::from_str::<LockMode>(r#""EXCLUSIVE_THREAD""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no longer supported"), "{e}");
        assert!(serde_json::from_str::<LockMode>(r#""DEFAULT""#).is_err());
        assert_eq!(
            serde_json::from_str::<LockMode>(r#""EXCLUSIVE_PROCESS""#).unwrap(),
            LockMode::ExclusiveProcess
        );
        assert_eq!(
            serde_json::to_value(LockMode::ExclusiveProcess).unwrap(),
            "EXCLUSIVE_PROCESS"
        );
    }

    #[test]
    fn already_set_is_success_and_errors_are_read_from_stdout() {
        assert!(already_set(&out(0, SET_ALREADY, "")));
        assert!(!already_set(&out(0, SET_OK, "")));
        assert!(!already_set(&out(4, SET_NO_PERMISSION, "")));
        let host = Host::new("node-7", crate::fault::exec::HostSpec::Local);
        let e = nvsmi_failure(
            &host,
            "nvidia-smi -i 3 -c PROHIBITED",
            &out(4, SET_NO_PERMISSION, ""),
        );
        let msg = e.to_string();
        assert!(matches!(e, Error::NeedsRoot { .. }), "{msg}");
        assert!(
            msg.contains("sudo: true") && msg.contains("node-7"),
            "{msg}"
        );
        // Any other failure quotes both streams.
        let e = nvsmi_failure(
            &host,
            "nvidia-smi -i 9 -c PROHIBITED",
            &out(6, "No devices were found\n", "extra\n"),
        )
        .to_string();
        assert!(e.contains("No devices were found / extra"), "{e}");
    }

    #[test]
    fn a_refused_sudo_names_the_host_and_the_sudoers_fix() {
        let host = Host::new("node-7", crate::fault::exec::HostSpec::Local);
        let e = nvsmi_failure(
            &host,
            "sudo -n nvidia-smi -i 0 -c DEFAULT",
            &out(1, "", "sudo: a password is required\n"),
        )
        .to_string();
        assert!(
            e.contains("node-7") && e.contains("a password is required"),
            "{e}"
        );
        assert!(
            e.contains("NOPASSWD: /usr/bin/nvidia-smi, /usr/bin/kill"),
            "{e}"
        );
    }

    #[test]
    fn the_deadman_restores_the_recorded_modes_not_default() {
        let gpus = [
            GpuUndo {
                index: 1,
                uuid: None,
                mode: ComputeMode::ExclusiveProcess,
            },
            GpuUndo {
                index: 3,
                uuid: Some("GPU-9e8d".into()),
                mode: ComputeMode::Default,
            },
        ];
        assert_eq!(
            restore_command("nvidia-smi", &gpus, false),
            "nvidia-smi -i 1 -c EXCLUSIVE_PROCESS; nvidia-smi -i GPU-9e8d -c DEFAULT"
        );
        assert_eq!(
            restore_command("nvidia-smi", &gpus, true),
            "sudo -n nvidia-smi -i 1 -c EXCLUSIVE_PROCESS; sudo -n nvidia-smi -i GPU-9e8d -c DEFAULT"
        );
    }

    #[test]
    fn undo_round_trips_through_json_and_reads_old_entries_without_uuid() {
        let u = Undo {
            hosts: vec![HostUndo {
                host: "n".into(),
                gpus: vec![GpuUndo {
                    index: 0,
                    uuid: Some("GPU-1".into()),
                    mode: ComputeMode::ExclusiveProcess,
                }],
                deadman: Some("faultline-deadman:r:f:n".into()),
            }],
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v["hosts"][0]["gpus"][0]["mode"], "Exclusive_Process");
        assert_eq!(serde_json::from_value::<Undo>(v).unwrap(), u);
        let old: GpuUndo = serde_json::from_str(r#"{"index": 2, "mode": "Default"}"#).unwrap();
        assert_eq!(old.id(), "2");
    }
}
