//! `gpu-degrade`: a *gray* GPU failure — the GPU keeps serving, only slower — made on a real
//! node by locking its clocks (`nvidia-smi -i N -lgc MIN,MAX`) and/or lowering its power limit
//! (`nvidia-smi -i N -pl W`) over SSH. It is the practical lever for the reference article's
//! "NVLink/GPU degradation" row (persists, −15% throughput, +22% TTFT): no readiness probe sees
//! it, a Prometheus probe on DCGM's clock/power gauges does.
//!
//! Prepare reads each GPU's SM clock, maximum SM clock and power limits
//! (`--query-gpu=index,uuid,pci.bus_id,clocks.sm,clocks.max.sm,power.limit,power.min_limit,power.max_limit
//! --format=csv,noheader,nounits`); a power limit above what the GPU reports as `power.max_limit`
//! or below `power.min_limit` is refused before anything changes. Restore puts back exactly what
//! was read: the recorded power limit (`-pl` with that value), and `-rgc` for clocks.
//! `nvidia-smi` cannot report a locked clock range, so a GPU whose clocks an operator had
//! already locked comes back unlocked — the price of using the tool as it is.
//!
//! The node-side dead-man switch (`deadman.rs`) runs the same restore commands after the
//! deadline plus a margin, as for `gpu-lockout`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::fault::deadman;
use crate::fault::exec::{ExecError, Host, Output, quote_output};
use crate::fault::gpu_lockout::{GpuId, GpuTarget};
use crate::fault::{DescribeCx, FaultContext, Lifetime, Problem, Reach, SimBinding, Verification};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Hosts (names from the experiment's `hosts` section) and the GPUs on each.
    pub targets: Vec<GpuTarget>,
    /// Lock the SM clocks to this range while the fault lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clocks: Option<ClockRange>,
    /// Lower the power limit to this many watts while the fault lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit_w: Option<u32>,
    /// The nvidia-smi command on the node.
    #[serde(default = "default_nvidia_smi")]
    pub nvidia_smi: String,
    /// The node-side dead-man switch restores this long after the fault's deadline.
    #[serde(default = "default_margin", with = "crate::duration::serde")]
    #[schemars(with = "String")]
    pub deadman_margin: Duration,
}

/// A locked SM clock range, MHz (`-lgc MIN,MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockRange {
    pub min_mhz: u32,
    pub max_mhz: u32,
}

fn default_nvidia_smi() -> String {
    "nvidia-smi".into()
}
fn default_margin() -> Duration {
    Duration::from_secs(60)
}

/// Undo data: per host, what each GPU had before, and the dead-man timer's marker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub hosts: Vec<HostUndo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostUndo {
    pub host: String,
    pub gpus: Vec<GpuUndo>,
    pub deadman: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuUndo {
    pub index: u32,
    /// What `-i` is given (survives a re-enumeration of indices).
    pub uuid: String,
    /// Clocks were locked: restore resets them (`-rgc`).
    pub reset_clocks: bool,
    /// The power limit read before, W; restore sets it back (`None`: not changed).
    pub power_limit_w: Option<f64>,
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
        "power_limit_w {want} W is outside what GPU {index} on host {host:?} allows ({min:.2} W to {max:.2} W, as nvidia-smi reports power.min_limit/power.max_limit)"
    )]
    PowerOutOfRange {
        host: String,
        index: u32,
        want: u32,
        min: f64,
        max: f64,
    },
    #[error(
        "GPU {index} on host {host:?} cannot have its power limit changed: nvidia-smi reports power.limit as {reading}"
    )]
    PowerUnavailable {
        host: String,
        index: u32,
        reading: String,
    },
    #[error(
        "nvidia-smi on host {host:?} says \"Insufficient Permissions\" for {cmd:?}: locking clocks and power limits needs root; log in as root or set `sudo: true` on the host (with a NOPASSWD sudoers rule for nvidia-smi)"
    )]
    NeedsRoot { host: String, cmd: String },
    #[error("{cmd:?} on host {host:?} failed ({status}): {output}")]
    NvidiaSmi {
        host: String,
        cmd: String,
        status: String,
        output: String,
    },
    #[error("gpu-degrade did not take effect: GPU {index} on host {host:?} {what}")]
    NotInEffect {
        host: String,
        index: u32,
        what: String,
    },
    #[error("restore did not take effect: GPU {index} on host {host:?} {what}")]
    NotRestored {
        host: String,
        index: u32,
        what: String,
    },
}

/// One line of the clock/power query. Readings nvidia-smi cannot give (`[N/A]`) are `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuRow {
    pub index: u32,
    pub uuid: String,
    pub bus_id: String,
    pub sm_mhz: Option<u32>,
    pub max_sm_mhz: Option<u32>,
    pub power_limit_w: Option<f64>,
    pub min_limit_w: Option<f64>,
    pub max_limit_w: Option<f64>,
    /// The power limit as printed (for messages).
    pub power_reading: String,
}

impl GpuRow {
    fn as_lockout_row(&self) -> crate::fault::gpu_lockout::GpuRow {
        crate::fault::gpu_lockout::GpuRow {
            index: self.index,
            uuid: self.uuid.clone(),
            bus_id: self.bus_id.clone(),
            mode: crate::fault::gpu_lockout::ModeReading::Unavailable(String::new()),
            mig: None,
        }
    }
}

pub const QUERY_FIELDS: &str =
    "index,uuid,pci.bus_id,clocks.sm,clocks.max.sm,power.limit,power.min_limit,power.max_limit";

/// Parses `--query-gpu=QUERY_FIELDS --format=csv,noheader,nounits`; returns the offending line.
/// Units are tolerated too (`1980 MHz`, `700.00 W`), in case a wrapper drops `nounits`.
pub fn parse_rows(text: &str) -> Result<Vec<GpuRow>, String> {
    let num = |s: &str| -> Option<f64> {
        s.trim_end_matches("MHz")
            .trim_end_matches('W')
            .trim()
            .parse()
            .ok()
    };
    let mut rows = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() < 8 {
            return Err(line.to_string());
        }
        let index = f[0].parse().map_err(|_| line.to_string())?;
        let reading = |s: &str| -> Result<Option<f64>, String> {
            match num(s) {
                Some(v) => Ok(Some(v)),
                None if s.starts_with('[') || s == "N/A" => Ok(None),
                None => Err(line.to_string()),
            }
        };
        rows.push(GpuRow {
            index,
            uuid: f[1].to_string(),
            bus_id: f[2].to_string(),
            sm_mhz: reading(f[3])?.map(|v| v as u32),
            max_sm_mhz: reading(f[4])?.map(|v| v as u32),
            power_limit_w: reading(f[5])?,
            min_limit_w: reading(f[6])?,
            max_limit_w: reading(f[7])?,
            power_reading: f[5].to_string(),
        });
    }
    Ok(rows)
}

pub async fn query(host: &Host, nvsmi: &str, timeout: Duration) -> Result<Vec<GpuRow>, Error> {
    let cmd = format!("{nvsmi} --query-gpu={QUERY_FIELDS} --format=csv,noheader,nounits");
    let out = host.run(&cmd, timeout).await?;
    if !out.success() {
        return Err(failure(host, &cmd, &out));
    }
    parse_rows(&out.stdout).map_err(|line| Error::Parse {
        host: host.name().to_string(),
        cmd,
        line,
    })
}

fn failure(host: &Host, cmd: &str, out: &Output) -> Error {
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

/// A power limit as `-pl` takes it: whole watts without decimals.
fn watts(w: f64) -> String {
    if (w - w.round()).abs() < 0.005 {
        format!("{}", w.round() as i64)
    } else {
        format!("{w:.2}")
    }
}

/// The commands that put one host's GPUs back, each through `sudo -n` when `sudo`.
pub fn restore_commands(nvsmi: &str, gpus: &[GpuUndo], sudo: bool) -> Vec<String> {
    let mut out = Vec::new();
    for g in gpus {
        if g.reset_clocks {
            out.push(format!("{nvsmi} -i {} -rgc", g.uuid));
        }
        if let Some(w) = g.power_limit_w {
            out.push(format!("{nvsmi} -i {} -pl {}", g.uuid, watts(w)));
        }
    }
    if sudo {
        out.iter().map(|c| format!("sudo -n {c}")).collect()
    } else {
        out
    }
}

fn inject_commands(p: &Params, gpus: &[GpuUndo]) -> Vec<String> {
    let mut out = Vec::new();
    for g in gpus {
        if let Some(c) = p.clocks {
            out.push(format!(
                "{} -i {} -lgc {},{}",
                p.nvidia_smi, g.uuid, c.min_mhz, c.max_mhz
            ));
        }
        if let Some(w) = p.power_limit_w {
            out.push(format!("{} -i {} -pl {w}", p.nvidia_smi, g.uuid));
        }
    }
    out
}

async fn run_all(host: &Host, cmds: &[String], t: Duration) -> Result<(), Error> {
    for c in cmds {
        let cmd = host.privileged(c);
        let out = host.run(&cmd, t).await?;
        if !out.success() {
            return Err(failure(host, &cmd, &out));
        }
    }
    Ok(())
}

/// Reachable, every GPU present, the power limit within range (touches nothing).
pub async fn preflight(p: &Params, ctx: &FaultContext) -> Result<(), Error> {
    prepare(p, ctx).await.map(|_| ())
}

pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    let mut hosts = Vec::new();
    for t in &p.targets {
        let host = ctx.hosts.get(&t.host)?;
        let rows = query(&host, &p.nvidia_smi, ctx.command_timeout).await?;
        let mut gpus: Vec<GpuUndo> = Vec::new();
        for id in &t.gpus {
            let row = find(&rows, id).ok_or_else(|| Error::NoSuchGpu {
                host: t.host.clone(),
                id: id.to_string(),
                present: rows
                    .iter()
                    .map(|r| format!("{} {} {}", r.index, r.uuid, r.bus_id))
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
            let mut power = None;
            if let Some(want) = p.power_limit_w {
                let (Some(cur), Some(min), Some(max)) =
                    (row.power_limit_w, row.min_limit_w, row.max_limit_w)
                else {
                    return Err(Error::PowerUnavailable {
                        host: t.host.clone(),
                        index: row.index,
                        reading: row.power_reading.clone(),
                    });
                };
                if f64::from(want) < min || f64::from(want) > max {
                    return Err(Error::PowerOutOfRange {
                        host: t.host.clone(),
                        index: row.index,
                        want,
                        min,
                        max,
                    });
                }
                power = Some(cur);
            }
            if !gpus.iter().any(|g| g.index == row.index) {
                gpus.push(GpuUndo {
                    index: row.index,
                    uuid: row.uuid.clone(),
                    reset_clocks: p.clocks.is_some(),
                    power_limit_w: power,
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

fn find<'a>(rows: &'a [GpuRow], id: &GpuId) -> Option<&'a GpuRow> {
    rows.iter().find(|r| id.matches(&r.as_lockout_row()))
}

fn row_of<'a>(rows: &'a [GpuRow], g: &GpuUndo) -> Option<&'a GpuRow> {
    rows.iter().find(|r| r.uuid.eq_ignore_ascii_case(&g.uuid))
}

pub async fn inject(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    futures_util::future::try_join_all(undo.hosts.iter().map(|h| async move {
        let host = ctx.hosts.get(&h.host)?;
        let t = ctx.command_timeout;
        if let Some(marker) = &h.deadman {
            let delay = deadman::delay_secs(ctx.deadline, p.deadman_margin, chrono::Utc::now());
            let restore = restore_commands(&p.nvidia_smi, &h.gpus, host.sudo()).join("; ");
            let out = host
                .run_ok(&deadman::arm_command(marker, delay, &restore), t)
                .await?;
            tracing::info!(host = %h.host, pid = %out.stdout.trim(), delay_s = delay, "dead-man timer armed");
        }
        run_all(&host, &inject_commands(p, &h.gpus), t).await
    }))
    .await?;
    Ok(())
}

/// In effect: the SM clock at or below the locked maximum, the power limit the one set.
pub async fn verify(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
    for h in &undo.hosts {
        let host = ctx.hosts.get(&h.host)?;
        let rows = query(&host, &p.nvidia_smi, ctx.command_timeout).await?;
        for g in &h.gpus {
            let not = |what: String| Error::NotInEffect {
                host: h.host.clone(),
                index: g.index,
                what,
            };
            let row = row_of(&rows, g).ok_or_else(|| not("is missing".into()))?;
            if let Some(c) = p.clocks {
                match row.sm_mhz {
                    Some(sm) if sm <= c.max_mhz => {}
                    other => {
                        return Err(not(format!(
                            "runs its SM clock at {other:?} MHz, above the locked {} MHz",
                            c.max_mhz
                        )));
                    }
                }
            }
            if let Some(w) = p.power_limit_w {
                match row.power_limit_w {
                    Some(l) if (l - f64::from(w)).abs() < 0.5 => {}
                    _ => {
                        return Err(not(format!(
                            "has power.limit {}, not {w} W",
                            row.power_reading
                        )));
                    }
                }
            }
        }
    }
    Ok(Verification::Verified)
}

/// Idempotent: resets the clocks and sets the recorded power limit back where it differs,
/// checks the limit by query, then cancels the dead-man timer.
pub async fn restore(p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    futures_util::future::try_join_all(undo.hosts.iter().map(|h| async move {
        let host = ctx.hosts.get(&h.host)?;
        let t = ctx.command_timeout;
        let before = query(&host, &p.nvidia_smi, t).await?;
        let todo: Vec<GpuUndo> = h
            .gpus
            .iter()
            .map(|g| {
                let cur = row_of(&before, g).and_then(|r| r.power_limit_w);
                let same =
                    matches!((cur, g.power_limit_w), (Some(c), Some(w)) if (c - w).abs() < 0.5);
                GpuUndo {
                    power_limit_w: if same { None } else { g.power_limit_w },
                    ..g.clone()
                }
            })
            .collect();
        run_all(&host, &restore_commands(&p.nvidia_smi, &todo, false), t).await?;
        let after = query(&host, &p.nvidia_smi, t).await?;
        for g in &h.gpus {
            if let Some(w) = g.power_limit_w {
                let now = row_of(&after, g).and_then(|r| r.power_limit_w);
                if !now.is_some_and(|n| (n - w).abs() < 0.5) {
                    return Err(Error::NotRestored {
                        host: h.host.clone(),
                        index: g.index,
                        what: format!("has power.limit {now:?} W, not the {w:.2} W read before"),
                    });
                }
            }
        }
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
        if self.clocks.is_none() && self.power_limit_w.is_none() {
            out.push(Problem::new(
                &["clocks"],
                "(none)",
                "give `clocks: {min_mhz, max_mhz}`, `power_limit_w`, or both: without either nothing degrades",
            ));
        }
        if let Some(c) = self.clocks {
            if c.min_mhz == 0 {
                out.push(Problem::new(
                    &["clocks", "min_mhz"],
                    "0",
                    "a clock of 0 MHz is not a clock",
                ));
            }
            if c.max_mhz == 0 {
                out.push(Problem::new(
                    &["clocks", "max_mhz"],
                    "0",
                    "a clock of 0 MHz is not a clock",
                ));
            }
            if c.min_mhz > c.max_mhz {
                out.push(Problem::new(
                    &["clocks", "min_mhz"],
                    c.min_mhz.to_string(),
                    format!("is above max_mhz {}", c.max_mhz),
                ));
            }
        }
        if self.power_limit_w == Some(0) {
            out.push(Problem::new(
                &["power_limit_w"],
                "0",
                "a power limit of 0 W is below every GPU's minimum",
            ));
        }
        out
    }

    fn reach(&self) -> Reach {
        GpuTarget::reach(&self.targets, &self.nvidia_smi)
    }

    fn describe(&self, _cx: &DescribeCx) -> String {
        let targets = GpuTarget::describe(&self.targets);
        let mut what = Vec::new();
        if let Some(c) = self.clocks {
            what.push(format!("lock SM clocks to {}-{} MHz", c.min_mhz, c.max_mhz));
        }
        if let Some(w) = self.power_limit_w {
            what.push(format!("power limit {w} W"));
        }
        format!(
            "{} on {} (via `{}`)",
            what.join(" and "),
            targets.join(", "),
            self.nvidia_smi
        )
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(
            ", reset the clocks and restore the power limit read before at {}",
            end.unwrap_or("the end")
        )
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    fn deadman_margin(&self) -> Option<Duration> {
        Some(self.deadman_margin)
    }

    /// As for `gpu-lockout`: `faultline nvidia-smi` on local hosts becomes the sim's wrapper.
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
            clocks: Some(ClockRange {
                min_mhz: 1700,
                max_mhz: 1700,
            }),
            power_limit_w: None,
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
    use crate::fault::FaultKind;

    /// `--query-gpu=QUERY_FIELDS --format=csv,noheader,nounits` on an H100 with GPU 1 locked
    /// and capped, and a GPU whose power limit reads `[N/A]`.
    const QUERY: &str = "\
0, GPU-6f3b2a51-9c1e-4d2f-8a7b-0e1d2c3b4a59, 00000000:18:00.0, 1980, 1980, 700.00, 200.00, 700.00
1, GPU-b7e2c4d8-1f3a-4e5b-9c6d-7a8b9c0d1e2f, 00000000:2A:00.0, 1410, 1980, 500.00, 200.00, 700.00
2, GPU-3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f, 00000000:3A:00.0, 345, 1755, [N/A], [N/A], [N/A]
";

    #[test]
    fn the_clock_and_power_query_parses_with_na_readings() {
        let rows = parse_rows(QUERY).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].sm_mhz, Some(1410));
        assert_eq!(rows[1].power_limit_w, Some(500.0));
        assert_eq!(rows[2].power_limit_w, None);
        assert_eq!(rows[2].power_reading, "[N/A]");
        // With units, too.
        let rows = parse_rows(
            "0, GPU-x, 00000000:18:00.0, 1980 MHz, 1980 MHz, 700.00 W, 200.00 W, 700.00 W",
        )
        .unwrap();
        assert_eq!(rows[0].max_limit_w, Some(700.0));
        assert_eq!(
            parse_rows("No devices were found").unwrap_err(),
            "No devices were found"
        );
    }

    #[test]
    fn restore_commands_reset_clocks_and_set_back_the_limit_read() {
        let gpus = [
            GpuUndo {
                index: 0,
                uuid: "GPU-a".into(),
                reset_clocks: true,
                power_limit_w: Some(700.0),
            },
            GpuUndo {
                index: 1,
                uuid: "GPU-b".into(),
                reset_clocks: false,
                power_limit_w: Some(612.5),
            },
        ];
        assert_eq!(
            restore_commands("nvidia-smi", &gpus, true),
            [
                "sudo -n nvidia-smi -i GPU-a -rgc",
                "sudo -n nvidia-smi -i GPU-a -pl 700",
                "sudo -n nvidia-smi -i GPU-b -pl 612.50"
            ]
        );
    }

    #[test]
    fn zero_clocks_zero_power_and_nothing_to_change_are_problems_with_key_paths() {
        let mut p = Params::example();
        p.clocks = Some(ClockRange {
            min_mhz: 0,
            max_mhz: 0,
        });
        p.power_limit_w = Some(0);
        let paths: Vec<String> = p.problems().iter().map(|x| x.path.join(".")).collect();
        assert_eq!(paths, ["clocks.min_mhz", "clocks.max_mhz", "power_limit_w"]);
        p.clocks = Some(ClockRange {
            min_mhz: 1800,
            max_mhz: 900,
        });
        p.power_limit_w = None;
        let probs = p.problems();
        assert_eq!(probs.len(), 1);
        assert_eq!(probs[0].path, ["clocks", "min_mhz"]);
        assert!(probs[0].message.contains("max_mhz 900"), "{probs:?}");
        p.clocks = None;
        let probs = p.problems();
        assert_eq!(probs[0].path, ["clocks"]);
        assert!(probs[0].message.contains("power_limit_w"));
        p.targets[0].gpus.clear();
        p.clocks = Some(ClockRange {
            min_mhz: 900,
            max_mhz: 900,
        });
        assert_eq!(p.problems()[0].path, ["targets", "0", "gpus"]);
    }
}
