//! The sim's GPUs and its `nvidia-smi`: a file-backed GPU state (`DIR/gpus.json`) that the sim's
//! workers register their processes in, and an `nvidia-smi`-compatible command line over it
//! (`faultline nvidia-smi --state DIR …`), so `gpu-lockout` runs unchanged against the sim —
//! locally or through a real sshd — and tests see what a real node would show.
//!
//! The state is a file, not memory, because the tool runs as a separate process (often through
//! ssh). Every change is a read-modify-write under an `flock` on `DIR/gpus.lock`, written to a
//! temporary file and renamed over `gpus.json`, so readers never see half a file.
//!
//! Like a real GPU: a `Prohibited` GPU accepts no new process, an `Exclusive_Process` GPU at most
//! one; a mode change does not affect processes already running. Queries list only processes
//! that are still alive.
//!
//! Like the real tool, it has sharp edges that tests can switch on in the state file: a GPU with
//! MIG enabled (`mig_enabled`), one whose compute mode reads `[N/A]` (`compute_mode_reading`),
//! and `-c` refused for a non-root user with "Insufficient Permissions" (`set_requires_root`).
//! It prints its errors on stdout, as the real tool does, says "already set" when the mode is
//! already the one asked for, and no longer sets `EXCLUSIVE_THREAD`.

use crate::common::ComputeMode;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "gpus.json";
const LOCK_FILE: &str = "gpus.lock";

#[derive(Debug, thiserror::Error)]
pub enum NvsmiError {
    #[error("cannot read GPU state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write GPU state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("GPU state {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no GPU {index} (there are {count})")]
    NoSuchGpu { index: u32, count: usize },
    #[error("GPU {index} is in compute mode {mode}: process {pid} may not use it")]
    Refused {
        index: u32,
        mode: ComputeMode,
        pid: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpus {
    pub gpus: Vec<Gpu>,
    /// `-c` needs root (effective uid 0), as on a real node.
    #[serde(default)]
    pub set_requires_root: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub compute_mode: ComputeMode,
    #[serde(default)]
    pub processes: Vec<GpuProcess>,
    /// MIG is enabled: `mig.mode.current` reads `Enabled` and `-c` is not supported.
    #[serde(default)]
    pub mig_enabled: bool,
    /// What `compute_mode` reads instead of the mode (e.g. `[N/A]`); `-c` is not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_mode_reading: Option<String>,
    /// The highest SM clock the GPU runs at (`clocks.max.sm`), MHz.
    #[serde(default = "default_max_sm")]
    pub max_sm_mhz: u32,
    /// `-lgc MIN,MAX` in effect (MHz); `None` after `-rgc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_clocks: Option<[u32; 2]>,
    /// `power.limit`, W.
    #[serde(default = "default_power")]
    pub power_limit_w: f64,
    /// `power.default_limit` (and `power.max_limit`), W.
    #[serde(default = "default_power")]
    pub default_power_limit_w: f64,
    /// `power.min_limit`, W.
    #[serde(default = "default_min_power")]
    pub min_power_limit_w: f64,
}

fn default_max_sm() -> u32 {
    1980
}
fn default_power() -> f64 {
    700.0
}
fn default_min_power() -> f64 {
    200.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
}

impl Gpu {
    /// The PCI bus id `nvidia-smi` prints for this GPU.
    pub fn bus_id(&self) -> String {
        format!("00000000:{:02X}:00.0", self.index)
    }

    /// The SM clock a busy GPU runs at: the top of a locked range (never above the maximum),
    /// else the maximum.
    pub fn sm_clock_mhz(&self) -> u32 {
        match self.locked_clocks {
            Some([_, max]) => max.min(self.max_sm_mhz),
            None => self.max_sm_mhz,
        }
    }

    /// How much slower a step on this GPU is than on an unthrottled one (1.0: not at all).
    ///
    /// The model is deliberately crude: decode steps of a large model are bound by memory
    /// bandwidth as much as by the SM clock, so a step takes `1 / speed` as long, where speed is
    /// the lower of the clock ratio (locked clock / max clock) and the square root of the power
    /// ratio (limit / default limit: power falls roughly with the cube of the clock at high
    /// clocks, but memory-bound work loses less than the clock, so the square root is a middle
    /// way). A 1980 MHz GPU locked to 1700 MHz is 1.16x slower; a 700 W GPU capped at 500 W
    /// 1.18x.
    pub fn slowdown(&self) -> f64 {
        let clock = f64::from(self.sm_clock_mhz()) / f64::from(self.max_sm_mhz.max(1));
        let power = (self.power_limit_w / self.default_power_limit_w.max(1.0)).sqrt();
        let speed = clock.min(power).clamp(0.05, 1.0);
        1.0 / speed
    }

    /// Power drawn under load (`power.draw`), W: the limit scaled by the clock, as a busy GPU
    /// draws close to its limit.
    pub fn power_draw_w(&self) -> f64 {
        let clock = f64::from(self.sm_clock_mhz()) / f64::from(self.max_sm_mhz.max(1));
        (self.default_power_limit_w * 0.9 * clock.powi(2)).min(self.power_limit_w)
    }
}

/// A handle on the GPU state in one directory.
#[derive(Clone, Debug)]
pub struct GpuState {
    dir: PathBuf,
}

impl GpuState {
    /// Creates (or resets) `gpu_count` idle GPUs in `Default` mode.
    pub fn create(dir: impl Into<PathBuf>, gpu_count: u32) -> Result<GpuState, NvsmiError> {
        let state = GpuState { dir: dir.into() };
        std::fs::create_dir_all(&state.dir).map_err(|source| NvsmiError::Write {
            path: state.dir.clone(),
            source,
        })?;
        let gpus = Gpus {
            gpus: (0..gpu_count)
                .map(|index| Gpu {
                    index,
                    uuid: format!("GPU-5a1f0000-fa17-4000-8000-{index:012x}"),
                    name: "NVIDIA H100 80GB HBM3 (sim)".into(),
                    compute_mode: ComputeMode::Default,
                    processes: Vec::new(),
                    mig_enabled: false,
                    compute_mode_reading: None,
                    max_sm_mhz: default_max_sm(),
                    locked_clocks: None,
                    power_limit_w: default_power(),
                    default_power_limit_w: default_power(),
                    min_power_limit_w: default_min_power(),
                })
                .collect(),
            set_requires_root: false,
        };
        let _lock = state.lock()?;
        state.write(&gpus)?;
        Ok(state)
    }

    /// The state in `dir`, which must have been created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<GpuState, NvsmiError> {
        let state = GpuState { dir: dir.into() };
        state.load()?;
        Ok(state)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// A snapshot of all GPUs (processes as recorded, dead ones included).
    pub fn load(&self) -> Result<Gpus, NvsmiError> {
        let path = self.path();
        let text = std::fs::read_to_string(&path).map_err(|source| NvsmiError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| NvsmiError::Corrupt { path, source })
    }

    pub fn mode(&self, gpu: u32) -> Result<ComputeMode, NvsmiError> {
        let gpus = self.load()?;
        Ok(find(&gpus, gpu)?.compute_mode)
    }

    pub fn set_mode(&self, gpu: u32, mode: ComputeMode) -> Result<(), NvsmiError> {
        self.update(|g| {
            find_mut(g, gpu)?.compute_mode = mode;
            Ok(())
        })
    }

    /// Changes one GPU's clocks and power limit (`None` clocks: unlocked).
    pub fn set_throttle(
        &self,
        gpu: u32,
        locked_clocks: Option<[u32; 2]>,
        power_limit_w: f64,
    ) -> Result<(), NvsmiError> {
        self.update(|g| {
            let gpu = find_mut(g, gpu)?;
            gpu.locked_clocks = locked_clocks;
            gpu.power_limit_w = power_limit_w;
            Ok(())
        })
    }

    /// Makes `-c` need root (as on a real node) or not.
    pub fn set_requires_root(&self, yes: bool) -> Result<(), NvsmiError> {
        self.update(|g| {
            g.set_requires_root = yes;
            Ok(())
        })
    }

    /// Changes one GPU's sharp edges: MIG enabled, a compute mode that reads e.g. `[N/A]`.
    pub fn set_quirks(
        &self,
        gpu: u32,
        mig_enabled: bool,
        compute_mode_reading: Option<&str>,
    ) -> Result<(), NvsmiError> {
        self.update(|g| {
            let gpu = find_mut(g, gpu)?;
            gpu.mig_enabled = mig_enabled;
            gpu.compute_mode_reading = compute_mode_reading.map(str::to_string);
            Ok(())
        })
    }

    /// A process starts using `gpu`: refused when the mode forbids it, as a real GPU would.
    pub fn register_process(&self, gpu: u32, pid: u32) -> Result<(), NvsmiError> {
        self.update(|g| {
            let gpu = find_mut(g, gpu)?;
            gpu.processes.retain(|p| alive(p.pid));
            let refused = match gpu.compute_mode {
                ComputeMode::Prohibited => true,
                ComputeMode::ExclusiveProcess | ComputeMode::ExclusiveThread => {
                    gpu.processes.iter().any(|p| p.pid != pid)
                }
                ComputeMode::Default => false,
            };
            if refused {
                return Err(NvsmiError::Refused {
                    index: gpu.index,
                    mode: gpu.compute_mode,
                    pid,
                });
            }
            if !gpu.processes.iter().any(|p| p.pid == pid) {
                gpu.processes.push(GpuProcess { pid });
            }
            Ok(())
        })
    }

    /// The process stopped using every GPU.
    pub fn unregister_process(&self, pid: u32) -> Result<(), NvsmiError> {
        self.update(|g| {
            for gpu in &mut g.gpus {
                gpu.processes.retain(|p| p.pid != pid);
            }
            Ok(())
        })
    }

    fn update(
        &self,
        f: impl FnOnce(&mut Gpus) -> Result<(), NvsmiError>,
    ) -> Result<(), NvsmiError> {
        let _lock = self.lock()?;
        let mut gpus = self.load()?;
        f(&mut gpus)?;
        self.write(&gpus)
    }

    fn lock(&self) -> Result<File, NvsmiError> {
        let path = self.dir.join(LOCK_FILE);
        let err = |source| NvsmiError::Write {
            path: path.clone(),
            source,
        };
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        f.lock().map_err(err)?;
        Ok(f)
    }

    fn write(&self, gpus: &Gpus) -> Result<(), NvsmiError> {
        let path = self.path();
        let tmp = self
            .dir
            .join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
        let err = |source| NvsmiError::Write {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(gpus).expect("state serializes");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }
}

fn find(g: &Gpus, index: u32) -> Result<&Gpu, NvsmiError> {
    g.gpus
        .iter()
        .find(|x| x.index == index)
        .ok_or(NvsmiError::NoSuchGpu {
            index,
            count: g.gpus.len(),
        })
}

fn find_mut(g: &mut Gpus, index: u32) -> Result<&mut Gpu, NvsmiError> {
    let count = g.gpus.len();
    g.gpus
        .iter_mut()
        .find(|x| x.index == index)
        .ok_or(NvsmiError::NoSuchGpu { index, count })
}

/// Running (a zombie, killed but not yet reaped, is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The command line, as a pure function over the state so that its output formats are tested
// without spawning anything.

/// One `nvidia-smi` invocation, already split into its options.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `-i`: GPU indices (comma-separated), default all.
    pub id: Option<String>,
    /// `-c`: the compute mode to set.
    pub compute_mode: Option<String>,
    pub query_gpu: Option<String>,
    pub query_compute_apps: Option<String>,
    /// `--format`, e.g. `csv,noheader`.
    pub format: Option<String>,
    /// `-L`.
    pub list: bool,
    /// `-lgc MIN,MAX`: lock the GPU clocks (MHz).
    pub lock_gpu_clocks: Option<String>,
    /// `-rgc`: reset the GPU clocks.
    pub reset_gpu_clocks: bool,
    /// `-pl W`: set the power limit.
    pub power_limit: Option<String>,
}

/// What the tool prints and its exit code.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl Response {
    /// A failure, printed on stdout as the real tool prints its errors.
    fn fail(code: u8, msg: impl Into<String>) -> Response {
        Response {
            stdout: msg.into() + "\n",
            stderr: String::new(),
            code,
        }
    }
}

/// Exit codes of the real tool.
const EXIT_NOT_SUPPORTED: u8 = 3;
const EXIT_NO_PERMISSION: u8 = 4;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs one invocation against the state in `state`.
pub fn run(state: &GpuState, req: &Request) -> Response {
    match run_inner(state, req) {
        Ok(r) => r,
        Err(e) => Response::fail(
            match e {
                NvsmiError::NoSuchGpu { .. } => 6,
                _ => 2,
            },
            format!("nvidia-smi (sim): {e}"),
        ),
    }
}

fn run_inner(state: &GpuState, req: &Request) -> Result<Response, NvsmiError> {
    let gpus = state.load()?;
    let selected: Vec<&Gpu> = match &req.id {
        None => gpus.gpus.iter().collect(),
        Some(ids) => {
            let mut v = Vec::new();
            for id in ids.split(',').map(str::trim) {
                let gpu = id
                    .parse::<u32>()
                    .ok()
                    .and_then(|i| gpus.gpus.iter().find(|g| g.index == i))
                    .or_else(|| gpus.gpus.iter().find(|g| g.uuid == id || g.bus_id() == id));
                match gpu {
                    Some(g) => v.push(g),
                    None => return Ok(Response::fail(6, "No devices were found")),
                }
            }
            v
        }
    };
    let header = !req
        .format
        .as_deref()
        .unwrap_or("csv")
        .split(',')
        .any(|f| f.trim() == "noheader");
    if req.query_gpu.is_some() || req.query_compute_apps.is_some() {
        match req.format.as_deref() {
            Some(f) if f.split(',').any(|x| x.trim() == "csv") => {}
            _ => {
                return Ok(Response::fail(
                    2,
                    "Invalid combination of input arguments. --format=csv is required with --query-*.",
                ));
            }
        }
    }
    if req.lock_gpu_clocks.is_some() || req.reset_gpu_clocks || req.power_limit.is_some() {
        return set_clocks_or_power(state, &gpus, &selected, req);
    }
    if let Some(mode) = &req.compute_mode {
        let Some(mode) = ComputeMode::parse(mode) else {
            return Ok(Response::fail(
                2,
                format!(
                    "Invalid value {mode:?} for compute mode. Expected 0/DEFAULT, 1/EXCLUSIVE_THREAD, 2/PROHIBITED or 3/EXCLUSIVE_PROCESS."
                ),
            ));
        };
        let mut out = String::new();
        for g in &selected {
            let refuse = |code: u8, why: &str| {
                Response::fail(
                    code,
                    format!(
                        "{out}Unable to set the compute mode for GPU {}: {why}\nTerminating early due to previous errors.",
                        g.bus_id()
                    ),
                )
            };
            if gpus.set_requires_root && !is_root() {
                return Ok(refuse(EXIT_NO_PERMISSION, "Insufficient Permissions"));
            }
            if mode == ComputeMode::ExclusiveThread
                || g.mig_enabled
                || g.compute_mode_reading.is_some()
            {
                return Ok(refuse(EXIT_NOT_SUPPORTED, "Not Supported"));
            }
            if g.compute_mode == mode {
                out += &format!(
                    "Compute mode is already set to {} for GPU {}.\n",
                    mode.set_name(),
                    g.bus_id()
                );
                continue;
            }
            state.set_mode(g.index, mode)?;
            out += &format!(
                "Set compute mode to {} for GPU {}.\n",
                mode.set_name(),
                g.bus_id()
            );
        }
        out += "All done.\n";
        return Ok(ok(out));
    }
    if let Some(fields) = &req.query_gpu {
        let fields: Vec<&str> = fields.split(',').map(str::trim).collect();
        let mut out = String::new();
        if header {
            out += &(fields.join(", ") + "\n");
        }
        let units = !req
            .format
            .as_deref()
            .unwrap_or("csv")
            .split(',')
            .any(|f| f.trim() == "nounits");
        let unit = |v: u32, u: &str| {
            if units {
                format!("{v} {u}")
            } else {
                v.to_string()
            }
        };
        let watts = |v: f64| {
            if units {
                format!("{v:.2} W")
            } else {
                format!("{v:.2}")
            }
        };
        for g in &selected {
            let mut row = Vec::new();
            for f in &fields {
                row.push(match *f {
                    "index" => g.index.to_string(),
                    "uuid" | "gpu_uuid" => g.uuid.clone(),
                    "name" | "gpu_name" => g.name.clone(),
                    "compute_mode" | "compute-mode" => match &g.compute_mode_reading {
                        Some(r) => r.clone(),
                        None => g.compute_mode.query_name().to_string(),
                    },
                    "mig.mode.current" => {
                        if g.mig_enabled { "Enabled" } else { "Disabled" }.to_string()
                    }
                    "pci.bus_id" | "gpu_bus_id" => g.bus_id(),
                    "clocks.sm" | "clocks.current.sm" => unit(g.sm_clock_mhz(), "MHz"),
                    "clocks.max.sm" | "clocks.max.sm_clock" => unit(g.max_sm_mhz, "MHz"),
                    "power.limit" => watts(g.power_limit_w),
                    "enforced.power.limit" => watts(g.power_limit_w),
                    "power.default_limit" => watts(g.default_power_limit_w),
                    "power.min_limit" => watts(g.min_power_limit_w),
                    "power.max_limit" => watts(g.default_power_limit_w),
                    "power.draw" => watts(g.power_draw_w()),
                    _ => return Ok(field_error(f)),
                });
            }
            out += &(row.join(", ") + "\n");
        }
        return Ok(ok(out));
    }
    if let Some(fields) = &req.query_compute_apps {
        let fields: Vec<&str> = fields.split(',').map(str::trim).collect();
        let mut out = String::new();
        if header {
            out += &(fields.join(", ") + "\n");
        }
        for g in &selected {
            for p in g.processes.iter().filter(|p| alive(p.pid)) {
                let mut row = Vec::new();
                for f in &fields {
                    row.push(match *f {
                        "pid" => p.pid.to_string(),
                        "gpu_uuid" => g.uuid.clone(),
                        "gpu_name" => g.name.clone(),
                        "gpu_bus_id" => g.bus_id(),
                        "process_name" | "name" => {
                            std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
                                .map(|s| s.trim().to_string())
                                .unwrap_or_else(|_| "[N/A]".into())
                        }
                        _ => return Ok(field_error(f)),
                    });
                }
                out += &(row.join(", ") + "\n");
            }
        }
        return Ok(ok(out));
    }
    // `-L`, and what the sim prints without options.
    let mut out = String::new();
    for g in &selected {
        out += &format!("GPU {}: {} (UUID: {})\n", g.index, g.name, g.uuid);
    }
    Ok(ok(out))
}

/// `-lgc`, `-rgc`, `-pl`, printed as the real tool prints them (driver 535):
/// `GPU clocks set to "(gpuClkMin 900, gpuClkMax 900)" for GPU 00000000:18:00.0`,
/// `All done.`, `Power limit for GPU 00000000:18:00.0 was set to 500.00 W from 700.00 W.`, and
/// for a limit out of range `Provided power limit 800.00 W is not a valid power limit which
/// should be between 200.00 W and 700.00 W for GPU 00000000:18:00.0`.
fn set_clocks_or_power(
    state: &GpuState,
    gpus: &Gpus,
    selected: &[&Gpu],
    req: &Request,
) -> Result<Response, NvsmiError> {
    if gpus.set_requires_root && !is_root() {
        return Ok(Response::fail(
            EXIT_NO_PERMISSION,
            "Insufficient Permissions\nTerminating early due to previous errors.",
        ));
    }
    let mut out = String::new();
    if let Some(range) = &req.lock_gpu_clocks {
        let parsed: Option<Vec<u32>> = range.split(',').map(|x| x.trim().parse().ok()).collect();
        let [min, max] = match parsed.as_deref() {
            Some([one]) => [*one, *one],
            Some([a, b]) if a <= b => [*a, *b],
            _ => {
                return Ok(Response::fail(
                    2,
                    format!(
                        "Invalid value {range:?} for locked GPU clocks. Expected MIN,MAX in MHz."
                    ),
                ));
            }
        };
        for g in selected {
            state.set_throttle(g.index, Some([min, max]), g.power_limit_w)?;
            out += &format!(
                "GPU clocks set to \"(gpuClkMin {min}, gpuClkMax {max})\" for GPU {}\n",
                g.bus_id()
            );
        }
    }
    if req.reset_gpu_clocks {
        for g in selected {
            let now = state.load()?;
            let pl = find(&now, g.index)?.power_limit_w;
            state.set_throttle(g.index, None, pl)?;
        }
    }
    if let Some(w) = &req.power_limit {
        let Ok(w) = w.trim().parse::<f64>() else {
            return Ok(Response::fail(
                2,
                format!("Invalid value {w:?} for power limit."),
            ));
        };
        for g in selected {
            if w < g.min_power_limit_w || w > g.default_power_limit_w {
                return Ok(Response::fail(
                    2,
                    format!(
                        "{out}Provided power limit {w:.2} W is not a valid power limit which should be between {:.2} W and {:.2} W for GPU {}\nTerminating early due to previous errors.",
                        g.min_power_limit_w,
                        g.default_power_limit_w,
                        g.bus_id()
                    ),
                ));
            }
            let now = state.load()?;
            let cur = find(&now, g.index)?;
            let (before, locked) = (cur.power_limit_w, cur.locked_clocks);
            state.set_throttle(g.index, locked, w)?;
            out += &format!(
                "Power limit for GPU {} was set to {w:.2} W from {before:.2} W.\n",
                g.bus_id()
            );
        }
    }
    out += "All done.\n";
    Ok(ok(out))
}

fn ok(stdout: String) -> Response {
    Response {
        stdout,
        stderr: String::new(),
        code: 0,
    }
}

fn field_error(f: &str) -> Response {
    Response::fail(2, format!("Field \"{f}\" is not a valid field to query."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request::default()
    }

    fn state(n: u32) -> (tempfile::TempDir, GpuState) {
        let dir = tempfile::tempdir().unwrap();
        let s = GpuState::create(dir.path(), n).unwrap();
        (dir, s)
    }

    #[test]
    fn set_mode_prints_like_nvidia_smi() {
        let (_d, s) = state(2);
        let r = run(
            &s,
            &Request {
                id: Some("1".into()),
                compute_mode: Some("PROHIBITED".into()),
                ..req()
            },
        );
        assert_eq!(r.code, 0);
        assert_eq!(
            r.stdout,
            "Set compute mode to PROHIBITED for GPU 00000000:01:00.0.\nAll done.\n"
        );
        assert_eq!(s.mode(1).unwrap(), ComputeMode::Prohibited);
        assert_eq!(s.mode(0).unwrap(), ComputeMode::Default);
        // Numeric modes too.
        run(
            &s,
            &Request {
                id: Some("0".into()),
                compute_mode: Some("3".into()),
                ..req()
            },
        );
        assert_eq!(s.mode(0).unwrap(), ComputeMode::ExclusiveProcess);
    }

    #[test]
    fn bad_index_and_bad_mode_fail_with_messages() {
        let (_d, s) = state(2);
        let r = run(
            &s,
            &Request {
                id: Some("7".into()),
                compute_mode: Some("0".into()),
                ..req()
            },
        );
        assert_ne!(r.code, 0);
        assert!(r.stdout.contains("No devices were found"), "{r:?}");
        let r = run(
            &s,
            &Request {
                id: Some("0".into()),
                compute_mode: Some("LOCKED".into()),
                ..req()
            },
        );
        assert_ne!(r.code, 0);
        assert!(r.stdout.contains("\"LOCKED\""), "{r:?}");
    }

    #[test]
    fn query_gpu_prints_fields_in_the_order_asked() {
        let (_d, s) = state(2);
        s.set_mode(1, ComputeMode::ExclusiveProcess).unwrap();
        let r = run(
            &s,
            &Request {
                query_gpu: Some("compute_mode,index".into()),
                format: Some("csv,noheader".into()),
                ..req()
            },
        );
        assert_eq!(r.stdout, "Default, 0\nExclusive_Process, 1\n");
        let r = run(
            &s,
            &Request {
                query_gpu: Some("index,uuid,name".into()),
                format: Some("csv".into()),
                id: Some("0".into()),
                ..req()
            },
        );
        assert_eq!(
            r.stdout,
            "index, uuid, name\n0, GPU-5a1f0000-fa17-4000-8000-000000000000, NVIDIA H100 80GB HBM3 (sim)\n"
        );
        let r = run(
            &s,
            &Request {
                query_gpu: Some("index,temperature".into()),
                format: Some("csv".into()),
                ..req()
            },
        );
        assert_ne!(r.code, 0);
        assert!(r.stdout.contains("\"temperature\""), "{r:?}");
    }

    #[test]
    fn query_compute_apps_lists_live_processes_with_their_gpu() {
        let (_d, s) = state(2);
        let me = std::process::id();
        s.register_process(1, me).unwrap();
        let r = run(
            &s,
            &Request {
                query_compute_apps: Some("pid,gpu_uuid".into()),
                format: Some("csv,noheader".into()),
                ..req()
            },
        );
        assert_eq!(
            r.stdout,
            format!("{me}, GPU-5a1f0000-fa17-4000-8000-000000000001\n")
        );
        s.unregister_process(me).unwrap();
        let r = run(
            &s,
            &Request {
                query_compute_apps: Some("pid,gpu_uuid".into()),
                format: Some("csv,noheader".into()),
                ..req()
            },
        );
        assert_eq!(r.stdout, "");
    }

    #[test]
    fn a_prohibited_gpu_refuses_new_processes() {
        let (_d, s) = state(1);
        s.set_mode(0, ComputeMode::Prohibited).unwrap();
        let e = s.register_process(0, std::process::id()).unwrap_err();
        assert!(e.to_string().contains("Prohibited"), "{e}");
    }

    #[test]
    fn list_prints_one_line_per_gpu() {
        let (_d, s) = state(2);
        let r = run(
            &s,
            &Request {
                list: true,
                ..req()
            },
        );
        assert_eq!(
            r.stdout.lines().nth(1).unwrap(),
            "GPU 1: NVIDIA H100 80GB HBM3 (sim) (UUID: GPU-5a1f0000-fa17-4000-8000-000000000001)"
        );
    }

    fn set(s: &GpuState, id: &str, mode: &str) -> Response {
        run(
            s,
            &Request {
                id: Some(id.into()),
                compute_mode: Some(mode.into()),
                ..req()
            },
        )
    }

    #[test]
    fn setting_the_mode_a_gpu_already_has_says_already_set_and_succeeds() {
        let (_d, s) = state(1);
        let r = set(&s, "0", "DEFAULT");
        assert_eq!(r.code, 0);
        assert_eq!(
            r.stdout,
            "Compute mode is already set to DEFAULT for GPU 00000000:00:00.0.\nAll done.\n"
        );
    }

    #[test]
    fn mig_na_and_exclusive_thread_are_not_supported_and_errors_go_to_stdout() {
        let (_d, s) = state(3);
        s.set_quirks(1, true, None).unwrap();
        s.set_quirks(2, false, Some("[N/A]")).unwrap();
        let r = run(
            &s,
            &Request {
                query_gpu: Some("index,compute_mode,mig.mode.current".into()),
                format: Some("csv,noheader".into()),
                ..req()
            },
        );
        assert_eq!(
            r.stdout,
            "0, Default, Disabled\n1, Default, Enabled\n2, [N/A], Disabled\n"
        );
        for (id, mode) in [("1", "PROHIBITED"), ("2", "PROHIBITED"), ("0", "1")] {
            let r = set(&s, id, mode);
            assert_eq!(r.code, EXIT_NOT_SUPPORTED, "{r:?}");
            assert!(
                r.stdout.contains(": Not Supported\nTerminating early"),
                "{r:?}"
            );
            assert_eq!(r.stderr, "");
        }
        assert_eq!(s.mode(0).unwrap(), ComputeMode::Default);
    }

    #[test]
    fn set_requires_root_refuses_with_insufficient_permissions_unless_root() {
        let (_d, s) = state(1);
        s.set_requires_root(true).unwrap();
        let r = set(&s, "0", "PROHIBITED");
        if is_root() {
            assert_eq!(r.code, 0, "{r:?}");
        } else {
            assert_eq!(r.code, EXIT_NO_PERMISSION);
            assert_eq!(
                r.stdout,
                "Unable to set the compute mode for GPU 00000000:00:00.0: Insufficient Permissions\nTerminating early due to previous errors.\n"
            );
        }
    }
}
