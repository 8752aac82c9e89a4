//! `gpu-lockout`: make GPUs unusable for new contexts by setting their compute mode over SSH
//! (`nvidia-smi -i N -c PROHIBITED`), optionally killing the serving process on them (a mode
//! change does not affect a context that is already running), and restore the mode that was
//! read before — never an assumed DEFAULT.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub deadman_margin: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuTarget {
    pub host: String,
    pub gpus: Vec<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    #[default]
    Prohibited,
    ExclusiveProcess,
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
// written: it may be `sudo -n nvidia-smi` or `faultline nvidia-smi --state DIR`).

use crate::fault::deadman;
use crate::fault::exec::{ExecError, Host};
use crate::fault::{FaultContext, Verification};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A GPU compute mode, spelled as `nvidia-smi` spells it: `Default`, `Prohibited`,
/// `Exclusive_Process` (and the legacy `Exclusive_Thread`) in queries, upper case when set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComputeMode {
    Default,
    #[serde(rename = "Exclusive_Thread")]
    ExclusiveThread,
    Prohibited,
    #[serde(rename = "Exclusive_Process")]
    ExclusiveProcess,
}

impl ComputeMode {
    /// Reads a mode as `nvidia-smi -c` accepts it (`0`–`3`, `DEFAULT`, `PROHIBITED`,
    /// `EXCLUSIVE_PROCESS`…) or as its queries print it (`Default`, `Exclusive_Process`…).
    pub fn parse(s: &str) -> Option<ComputeMode> {
        match s
            .trim()
            .to_ascii_uppercase()
            .replace(['.', ' '], "_")
            .as_str()
        {
            "0" | "DEFAULT" => Some(ComputeMode::Default),
            "1" | "EXCLUSIVE_THREAD" => Some(ComputeMode::ExclusiveThread),
            "2" | "PROHIBITED" => Some(ComputeMode::Prohibited),
            "3" | "EXCLUSIVE_PROCESS" | "E__PROCESS" => Some(ComputeMode::ExclusiveProcess),
            _ => None,
        }
    }
    /// As printed by `--query-gpu=compute_mode`.
    pub fn query_name(self) -> &'static str {
        match self {
            ComputeMode::Default => "Default",
            ComputeMode::ExclusiveThread => "Exclusive_Thread",
            ComputeMode::Prohibited => "Prohibited",
            ComputeMode::ExclusiveProcess => "Exclusive_Process",
        }
    }
    /// As given to `-c`.
    pub fn set_name(self) -> &'static str {
        match self {
            ComputeMode::Default => "DEFAULT",
            ComputeMode::ExclusiveThread => "EXCLUSIVE_THREAD",
            ComputeMode::Prohibited => "PROHIBITED",
            ComputeMode::ExclusiveProcess => "EXCLUSIVE_PROCESS",
        }
    }
}

impl std::fmt::Display for ComputeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.query_name())
    }
}

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
    /// The mode read in `prepare`; restore sets exactly this back.
    pub mode: ComputeMode,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("host {host:?} has no GPU {index} (it has {present:?})")]
    NoSuchGpu {
        host: String,
        index: u32,
        present: Vec<u32>,
    },
    #[error("cannot read the output of {cmd:?} on host {host:?}: line {line:?}")]
    Parse {
        host: String,
        cmd: String,
        line: String,
    },
    #[error("gpu-lockout did not take effect: GPU {index} on host {host:?} is {mode}, not {want}")]
    NotInEffect {
        host: String,
        index: u32,
        mode: ComputeMode,
        want: ComputeMode,
    },
    #[error("restore did not take effect: GPU {index} on host {host:?} is {mode}, not {want}")]
    NotRestored {
        host: String,
        index: u32,
        mode: ComputeMode,
        want: ComputeMode,
    },
    #[error("processes {pids:?} on host {host:?} survived kill -KILL")]
    KillFailed { host: String, pids: Vec<u32> },
    #[error("gpu-lockout has no targets")]
    NoTargets,
}

/// `index -> mode` of every GPU on the host.
pub async fn query_modes(
    host: &Host,
    nvsmi: &str,
    timeout: Duration,
) -> Result<BTreeMap<u32, ComputeMode>, Error> {
    let cmd = format!("{nvsmi} --query-gpu=index,compute_mode --format=csv,noheader");
    let out = host.run_ok(&cmd, timeout).await?;
    parse_pairs(&out.stdout, |i, m| {
        Some((i.parse().ok()?, ComputeMode::parse(m)?))
    })
    .map_err(|line| Error::Parse {
        host: host.name().to_string(),
        cmd: cmd.clone(),
        line,
    })
}

/// Parses `a, b` CSV lines (nvidia-smi's `csv,noheader`); returns the offending line on error.
pub fn parse_pairs<K: Ord, V>(
    text: &str,
    f: impl Fn(&str, &str) -> Option<(K, V)>,
) -> Result<BTreeMap<K, V>, String> {
    let mut map = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("No running") {
            continue; // some drivers print this instead of an empty list
        }
        let (a, b) = line.split_once(',').ok_or_else(|| line.to_string())?;
        let (k, v) = f(a.trim(), b.trim()).ok_or_else(|| line.to_string())?;
        map.insert(k, v);
    }
    Ok(map)
}

/// Pids of the compute processes on the given GPU indices.
async fn processes_on(
    host: &Host,
    nvsmi: &str,
    gpus: &[u32],
    timeout: Duration,
) -> Result<Vec<u32>, Error> {
    let parse_err = |cmd: &str, line: String| Error::Parse {
        host: host.name().to_string(),
        cmd: cmd.to_string(),
        line,
    };
    let cmd = format!("{nvsmi} --query-gpu=index,uuid --format=csv,noheader");
    let out = host.run_ok(&cmd, timeout).await?;
    let uuid_to_index: BTreeMap<String, u32> =
        parse_pairs(&out.stdout, |i, u| Some((u.to_string(), i.parse().ok()?)))
            .map_err(|l| parse_err(&cmd, l))?;
    let cmd = format!("{nvsmi} --query-compute-apps=pid,gpu_uuid --format=csv,noheader");
    let out = host.run_ok(&cmd, timeout).await?;
    let mut pids = Vec::new();
    for line in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("No running") {
            continue;
        }
        let (pid, uuid) = line
            .split_once(',')
            .ok_or_else(|| parse_err(&cmd, line.to_string()))?;
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| parse_err(&cmd, line.to_string()))?;
        if let Some(i) = uuid_to_index.get(uuid.trim())
            && gpus.contains(i)
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn set_command(nvsmi: &str, index: u32, mode: ComputeMode) -> String {
    format!("{nvsmi} -i {index} -c {}", mode.set_name())
}

/// The command the dead-man timer runs: every GPU of the host back to its recorded mode.
pub fn restore_command(nvsmi: &str, gpus: &[GpuUndo]) -> String {
    gpus.iter()
        .map(|g| set_command(nvsmi, g.index, g.mode))
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn preflight(p: &Params, ctx: &FaultContext) -> Result<(), Error> {
    prepare(p, ctx).await.map(|_| ())
}

pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    if p.targets.iter().all(|t| t.gpus.is_empty()) {
        return Err(Error::NoTargets);
    }
    let mut hosts = Vec::new();
    for t in &p.targets {
        let host = ctx.hosts.get(&t.host)?;
        let modes = query_modes(&host, &p.nvidia_smi, ctx.command_timeout).await?;
        let mut gpus = Vec::new();
        for &index in &t.gpus {
            let mode = *modes.get(&index).ok_or_else(|| Error::NoSuchGpu {
                host: t.host.clone(),
                index,
                present: modes.keys().copied().collect(),
            })?;
            gpus.push(GpuUndo { index, mode });
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
            let cmd = deadman::arm_command(marker, delay, &restore_command(&p.nvidia_smi, &h.gpus));
            let out = host.run_ok(&cmd, t).await?;
            tracing::info!(host = %h.host, pid = %out.stdout.trim(), delay_s = delay, "dead-man timer armed");
        }
        for g in &h.gpus {
            host.run_ok(&set_command(&p.nvidia_smi, g.index, lock), t).await?;
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
    let indices: Vec<u32> = gpus.iter().map(|g| g.index).collect();
    let pids = processes_on(host, nvsmi, &indices, t).await?;
    if pids.is_empty() {
        return Ok(());
    }
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    tracing::info!(host = %host.name(), pids = %list, "killing the processes on the locked GPUs");
    // A pid that exited meanwhile makes kill fail; what counts is who is still there after.
    host.run(&format!("kill -KILL {list}"), t).await?;
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

pub async fn verify(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
    let want = ComputeMode::from(p.mode);
    for h in &undo.hosts {
        let host = ctx.hosts.get(&h.host)?;
        let modes = query_modes(&host, &p.nvidia_smi, ctx.command_timeout).await?;
        for g in &h.gpus {
            let mode = *modes.get(&g.index).ok_or_else(|| Error::NoSuchGpu {
                host: h.host.clone(),
                index: g.index,
                present: modes.keys().copied().collect(),
            })?;
            if mode != want {
                return Err(Error::NotInEffect {
                    host: h.host.clone(),
                    index: g.index,
                    mode,
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
        for g in &h.gpus {
            host.run_ok(&set_command(&p.nvidia_smi, g.index, g.mode), t)
                .await?;
        }
        let modes = query_modes(&host, &p.nvidia_smi, t).await?;
        for g in &h.gpus {
            match modes.get(&g.index) {
                Some(&m) if m == g.mode => {}
                other => {
                    return Err(Error::NotRestored {
                        host: h.host.clone(),
                        index: g.index,
                        mode: other.copied().unwrap_or(ComputeMode::Default),
                        want: g.mode,
                    });
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_set_and_as_queried() {
        for (s, m) in [
            ("0", ComputeMode::Default),
            ("DEFAULT", ComputeMode::Default),
            ("Default", ComputeMode::Default),
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
    fn query_output_parses_and_bad_lines_are_quoted() {
        let m = parse_pairs("0, Default\n1, Exclusive_Process\n", |i, m| {
            Some((i.parse::<u32>().ok()?, ComputeMode::parse(m)?))
        })
        .unwrap();
        assert_eq!(m[&1], ComputeMode::ExclusiveProcess);
        let e = parse_pairs("0, Weird", |i, m| {
            Some((i.parse::<u32>().ok()?, ComputeMode::parse(m)?))
        })
        .unwrap_err();
        assert_eq!(e, "0, Weird");
    }

    #[test]
    fn the_deadman_restores_the_recorded_modes_not_default() {
        let c = restore_command(
            "nvidia-smi",
            &[
                GpuUndo {
                    index: 1,
                    mode: ComputeMode::ExclusiveProcess,
                },
                GpuUndo {
                    index: 3,
                    mode: ComputeMode::Default,
                },
            ],
        );
        assert_eq!(
            c,
            "nvidia-smi -i 1 -c EXCLUSIVE_PROCESS; nvidia-smi -i 3 -c DEFAULT"
        );
    }

    #[test]
    fn undo_round_trips_through_json() {
        let u = Undo {
            hosts: vec![HostUndo {
                host: "n".into(),
                gpus: vec![GpuUndo {
                    index: 0,
                    mode: ComputeMode::ExclusiveProcess,
                }],
                deadman: Some("faultline-deadman:r:f:n".into()),
            }],
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v["hosts"][0]["gpus"][0]["mode"], "Exclusive_Process");
        assert_eq!(serde_json::from_value::<Undo>(v).unwrap(), u);
    }
}
