//! Arrival schedules: *when* each request is meant to start.
//!
//! One engine loop serves every load shape, so the shape lives here as data. A schedule yields
//! **intended** start times (seconds from the run start); the engine sends each request at its
//! time and measures latency from it, so a slow client can never hide a slow server (no
//! coordinated omission).
//!
//! Open schedules are built as a *time change* of a unit-rate renewal process: each gap draws an
//! amount of "work" with mean 1 (exactly 1 for `constant`, `Exp(1)` for `poisson`,
//! `Gamma(b, 1/b)` for `gamma`), and the next arrival is the time at which the integral of the
//! rate since the previous arrival reaches that work. For a fixed rate this is the textbook
//! process; for ramps and steps it is the inhomogeneous process with exactly the intended rate
//! curve (a cheap "rate at the current time" draw would let one long gap drawn in a slow step
//! skip over a fast one). A step with rate 0 simply accumulates no work, so nothing arrives until
//! it ends. The runtime `multiplier` (from a `load-spike` fault) scales the rate for the gap being
//! drawn, i.e. from "now" on.
//!
//! Everything random comes from one seeded [`StdRng`], so `--seed` reproduces a run's schedule.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp1, Gamma};
use serde::Serialize;

/// Times closer than this to a boundary count as the boundary (float sums of gaps drift by ~1e-15
/// per step; without this a constant 10 req/s for 10 s could yield a 101st arrival at 9.99999…).
const EPS: f64 = 1e-9;

/// Burstiness is clamped into this range when a schedule that was not [`Schedule::validate`]d is
/// run anyway (the gamma sampler cannot take 0 or infinity).
const BURSTINESS_RANGE: (f64, f64) = (1e-3, 1e3);

/// Errors from building schedules (CLI parsing and trace files).
#[derive(thiserror::Error, Debug)]
pub enum ScheduleError {
    #[error("cannot read trace {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    TraceLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("trace {} has no entries", path.display())]
    EmptyTrace { path: PathBuf },
    #[error("unknown arrival process \"{name}\" (expected constant, poisson or gamma)")]
    UnknownProcess { name: String },
    #[error("arrival process \"gamma\" needs a burstiness (e.g. 0.5 for bursty, 4 for smooth)")]
    MissingBurstiness,
    #[error("burstiness {value} only applies to the gamma process, not \"{process}\"")]
    BurstinessNotApplicable { process: String, value: f64 },
    #[error("invalid burstiness {value}: must be a finite number > 0")]
    InvalidBurstiness { value: f64 },
    #[error("invalid rate {value}: must be a finite number >= 0 (requests per second)")]
    InvalidRate { value: f64 },
    #[error("invalid step {index} \"{text}\": {reason} (expected RATExDURATION, e.g. 10x30s)")]
    InvalidStep {
        index: usize,
        text: String,
        reason: String,
    },
    #[error("no steps given (expected e.g. \"10x30s,20x30s,40x1m\")")]
    EmptySteps,
    #[error(transparent)]
    InvalidDuration(#[from] crate::duration::DurationError),
    #[error("invalid schedule: {0}")]
    Invalid(String),
}

/// How gaps between arrivals are distributed around the mean gap `1/rate`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArrivalProcess {
    /// Evenly spaced; the first arrival is at the start.
    Constant,
    /// Exponential gaps (memoryless, coefficient of variation 1).
    Poisson,
    /// Gamma gaps with shape = `burstiness` and mean `1/rate`: CV = 1/sqrt(burstiness).
    /// 1 is Poisson, < 1 is burstier (clusters and lulls), > 1 is smoother.
    Gamma { burstiness: f64 },
}

impl ArrivalProcess {
    /// Parses a CLI process name (`constant`, `poisson`, `gamma`; case-insensitive).
    /// `burstiness` is required for `gamma` and rejected for the others, so a mistyped flag does
    /// not silently do nothing.
    pub fn parse(name: &str, burstiness: Option<f64>) -> Result<ArrivalProcess, ScheduleError> {
        let lower = name.trim().to_ascii_lowercase();
        let process = match lower.as_str() {
            "constant" => ArrivalProcess::Constant,
            "poisson" => ArrivalProcess::Poisson,
            "gamma" => {
                let b = burstiness.ok_or(ScheduleError::MissingBurstiness)?;
                return ArrivalProcess::gamma(b);
            }
            _ => {
                return Err(ScheduleError::UnknownProcess {
                    name: name.to_string(),
                });
            }
        };
        match burstiness {
            Some(value) => Err(ScheduleError::BurstinessNotApplicable {
                process: lower,
                value,
            }),
            None => Ok(process),
        }
    }

    /// A gamma process with a checked burstiness.
    pub fn gamma(burstiness: f64) -> Result<ArrivalProcess, ScheduleError> {
        if burstiness.is_finite() && burstiness > 0.0 {
            Ok(ArrivalProcess::Gamma { burstiness })
        } else {
            Err(ScheduleError::InvalidBurstiness { value: burstiness })
        }
    }
}

/// One step of a step schedule: `rate` req/s held for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub rate: f64,
    #[serde(with = "crate::duration::serde")]
    pub duration: Duration,
}

/// The intended rate (req/s) over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateShape {
    Fixed(f64),
    /// Linear from `from` to `to` over the schedule's duration.
    Ramp {
        from: f64,
        to: f64,
    },
    /// Consecutive steps; the schedule lasts their total.
    Steps(Vec<Step>),
}

/// One line of a replayed production trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEntry {
    /// Seconds from the trace start.
    pub at_s: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// A load shape, checked and ready to drive the engine loop. Serialized (into `run.json`) as
/// what was asked for: `{"mode": "open", "shape": {"fixed": 20}, …}`; a trace as its length.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Schedule {
    /// Requests arrive on their own clock regardless of responses (what real users do).
    /// For [`RateShape::Steps`] the schedule lasts the steps' total and `duration` is ignored.
    Open {
        shape: RateShape,
        process: ArrivalProcess,
        #[serde(with = "crate::duration::serde")]
        duration: Duration,
        max_in_flight: Option<usize>,
    },
    /// `users` virtual users, each sending its next request as soon as the previous one ends.
    Closed {
        users: usize,
        #[serde(with = "crate::duration::serde")]
        duration: Duration,
    },
    /// Replay of recorded arrival times (with their lengths).
    Trace {
        #[serde(serialize_with = "count")]
        entries: Vec<TraceEntry>,
        max_in_flight: Option<usize>,
    },
}

/// A trace is recorded by its length, not its (possibly millions of) entries.
fn count<S: serde::Serializer>(entries: &[TraceEntry], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(entries.len() as u64)
}

/// What the engine should do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Start a request at `at_s` seconds after the run start (carrying the trace entry when
    /// replaying a trace, so the generator can match its lengths).
    At {
        at_s: f64,
        trace: Option<TraceEntry>,
    },
    /// Closed loop: start a request as soon as a user slot is free.
    WhenSlotFree,
    /// No more arrivals.
    Done,
}

impl Schedule {
    /// Checks the parameters a hand-built schedule might get wrong (negative or non-finite rates,
    /// zero users, bad burstiness, unsorted trace). CLI parsers already produce valid values.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let check_rate = |r: f64| {
            if r.is_finite() && r >= 0.0 {
                Ok(())
            } else {
                Err(ScheduleError::InvalidRate { value: r })
            }
        };
        match self {
            Schedule::Open { shape, process, .. } => {
                if let ArrivalProcess::Gamma { burstiness } = process {
                    ArrivalProcess::gamma(*burstiness)?;
                }
                match shape {
                    RateShape::Fixed(r) => check_rate(*r),
                    RateShape::Ramp { from, to } => check_rate(*from).and(check_rate(*to)),
                    RateShape::Steps(steps) => {
                        if steps.is_empty() {
                            return Err(ScheduleError::EmptySteps);
                        }
                        steps.iter().try_for_each(|s| check_rate(s.rate))
                    }
                }
            }
            Schedule::Closed { users, .. } => {
                if *users == 0 {
                    Err(ScheduleError::Invalid(
                        "closed loop needs at least 1 user".into(),
                    ))
                } else {
                    Ok(())
                }
            }
            Schedule::Trace { entries, .. } => {
                if entries.windows(2).any(|w| w[1].at_s < w[0].at_s) {
                    Err(ScheduleError::Invalid(
                        "trace entries are not sorted by time".into(),
                    ))
                } else if entries.iter().any(|e| !e.at_s.is_finite() || e.at_s < 0.0) {
                    Err(ScheduleError::Invalid(
                        "trace times must be finite and >= 0".into(),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The arrival sequence for one run; the same seed gives the same sequence.
    pub fn arrivals(&self, seed: u64) -> Arrivals {
        let state = match self {
            Schedule::Open { shape, process, .. } => {
                let work = match *process {
                    ArrivalProcess::Constant => Work::Constant,
                    ArrivalProcess::Poisson => Work::Exp,
                    ArrivalProcess::Gamma { burstiness } => {
                        let b = if burstiness.is_finite() {
                            burstiness.clamp(BURSTINESS_RANGE.0, BURSTINESS_RANGE.1)
                        } else {
                            1.0
                        };
                        match Gamma::new(b, 1.0 / b) {
                            Ok(g) => Work::Gamma(g),
                            Err(_) => Work::Exp,
                        }
                    }
                };
                State::Open {
                    shape: shape.clone(),
                    duration_s: self.duration().as_secs_f64(),
                    work,
                    t: 0.0,
                    started: false,
                }
            }
            Schedule::Closed { .. } => State::Closed,
            Schedule::Trace { entries, .. } => State::Trace {
                entries: entries.clone(),
                idx: 0,
                last_src: 0.0,
                last_at: 0.0,
            },
        };
        Arrivals {
            state,
            rng: StdRng::seed_from_u64(seed),
            done: false,
        }
    }

    /// How long the schedule lasts: the configured duration; for steps their total; for a trace
    /// the time of its last entry.
    pub fn duration(&self) -> Duration {
        match self {
            Schedule::Open {
                shape: RateShape::Steps(steps),
                ..
            } => steps.iter().map(|s| s.duration).sum(),
            Schedule::Open { duration, .. } | Schedule::Closed { duration, .. } => *duration,
            Schedule::Trace { entries, .. } => entries
                .last()
                .map(|e| Duration::from_secs_f64(e.at_s.max(0.0)))
                .unwrap_or_default(),
        }
    }

    /// Mean intended request rate (req/s) over the duration; `None` for a closed loop (its rate
    /// is whatever the server allows) and for a trace with no time span.
    pub fn nominal_rate(&self) -> Option<f64> {
        match self {
            Schedule::Open { shape, .. } => Some(match shape {
                RateShape::Fixed(r) => *r,
                RateShape::Ramp { from, to } => (from + to) / 2.0,
                RateShape::Steps(steps) => {
                    let total = self.duration().as_secs_f64();
                    if total <= 0.0 {
                        return None;
                    }
                    steps
                        .iter()
                        .map(|s| s.rate * s.duration.as_secs_f64())
                        .sum::<f64>()
                        / total
                }
            }),
            Schedule::Closed { .. } => None,
            Schedule::Trace { entries, .. } => {
                let d = self.duration().as_secs_f64();
                (d > 0.0).then(|| entries.len() as f64 / d)
            }
        }
    }

    /// The in-flight cap the engine must respect: a closed loop's user count, otherwise the
    /// configured cap (if any).
    pub fn max_in_flight(&self) -> Option<usize> {
        match self {
            Schedule::Open { max_in_flight, .. } | Schedule::Trace { max_in_flight, .. } => {
                *max_in_flight
            }
            Schedule::Closed { users, .. } => Some(*users),
        }
    }

    /// Intended rate (req/s, before any runtime multiplier) at `t_s` seconds: 0 outside
    /// `[0, duration)`; for a trace the number of entries in the whole second containing `t_s`;
    /// `None` for a closed loop.
    pub fn rate_at(&self, t_s: f64) -> Option<f64> {
        match self {
            Schedule::Closed { .. } => None,
            Schedule::Trace { entries, .. } => {
                if !t_s.is_finite() || t_s < 0.0 {
                    return Some(0.0);
                }
                let lo = t_s.floor();
                let a = entries.partition_point(|e| e.at_s < lo);
                let b = entries.partition_point(|e| e.at_s < lo + 1.0);
                Some((b - a) as f64)
            }
            Schedule::Open { shape, .. } => {
                let d = self.duration().as_secs_f64();
                if !(0.0..d).contains(&t_s) {
                    return Some(0.0);
                }
                Some(shape_rate(shape, d, t_s))
            }
        }
    }
}

fn shape_rate(shape: &RateShape, duration_s: f64, t: f64) -> f64 {
    match shape {
        RateShape::Fixed(r) => r.max(0.0),
        RateShape::Ramp { from, to } => (from + (to - from) * t / duration_s).max(0.0),
        RateShape::Steps(steps) => {
            let mut start = 0.0;
            for s in steps {
                let end = start + s.duration.as_secs_f64();
                if t < end {
                    return s.rate.max(0.0);
                }
                start = end;
            }
            0.0
        }
    }
}

/// Distribution of the unit-rate "work" between arrivals (mean 1).
#[derive(Debug, Clone)]
enum Work {
    Constant,
    Exp,
    Gamma(Gamma<f64>),
}

#[derive(Debug, Clone)]
enum State {
    Open {
        shape: RateShape,
        duration_s: f64,
        work: Work,
        /// Time of the previous arrival.
        t: f64,
        started: bool,
    },
    Closed,
    Trace {
        entries: Vec<TraceEntry>,
        idx: usize,
        /// Trace time of the previous entry and the replay time it was scheduled at.
        last_src: f64,
        last_at: f64,
    },
}

/// Successive intended start times of one run (see [`Arrivals::next`]).
#[derive(Debug, Clone)]
pub struct Arrivals {
    state: State,
    rng: StdRng,
    done: bool,
}

impl Arrivals {
    /// The next arrival, with the runtime rate `multiplier` in force from now on (1.0 normally;
    /// 2.0 = twice the rate). A multiplier that is not finite and > 0 is treated as 1.0 (the
    /// `load-spike` fault's config check rejects such values before a run).
    ///
    /// - Open schedules: times strictly increase (or stay equal for a zero-gap draw) and lie in
    ///   `[0, duration)`; then [`Next::Done`] forever.
    /// - Trace: every entry, in order, with gaps divided by the multiplier (the last one lands on
    ///   the trace's duration when the multiplier is 1); then `Done`.
    /// - Closed: always [`Next::WhenSlotFree`]; it never returns `Done` itself. The engine owns
    ///   the clock and ends a closed run when the duration is over.
    pub fn next(&mut self, multiplier: f64) -> Next {
        if self.done {
            return Next::Done;
        }
        let m = if multiplier.is_finite() && multiplier > 0.0 {
            multiplier
        } else {
            1.0
        };
        match &mut self.state {
            State::Closed => Next::WhenSlotFree,
            State::Trace {
                entries,
                idx,
                last_src,
                last_at,
            } => {
                let Some(entry) = entries.get(*idx).copied() else {
                    self.done = true;
                    return Next::Done;
                };
                let gap = if *idx == 0 {
                    entry.at_s.max(0.0)
                } else {
                    (entry.at_s - *last_src).max(0.0)
                };
                let at = *last_at + gap / m;
                *idx += 1;
                *last_src = entry.at_s;
                *last_at = at;
                Next::At {
                    at_s: at,
                    trace: Some(entry),
                }
            }
            State::Open {
                shape,
                duration_s,
                work,
                t,
                started,
            } => {
                let w = match work {
                    // The first constant arrival is at the start (of the first non-zero rate).
                    Work::Constant if !*started => 0.0,
                    Work::Constant => 1.0,
                    Work::Exp => Exp1.sample(&mut self.rng),
                    Work::Gamma(g) => g.sample(&mut self.rng),
                };
                *started = true;
                match advance(shape, *duration_s, *t, w / m) {
                    Some(at) if at < *duration_s - EPS => {
                        *t = at;
                        Next::At {
                            at_s: at,
                            trace: None,
                        }
                    }
                    _ => {
                        self.done = true;
                        Next::Done
                    }
                }
            }
        }
    }
}

/// The time `t' >= t` at which the integral of the rate over `[t, t']` reaches `w`, or `None` if
/// that never happens within the schedule.
fn advance(shape: &RateShape, duration_s: f64, t: f64, w: f64) -> Option<f64> {
    match shape {
        RateShape::Fixed(r) => (*r > 0.0).then(|| t + w / r),
        RateShape::Ramp { from, to } => {
            if duration_s <= 0.0 {
                return None;
            }
            // rate(t + x) = a + k x, so the integral is a x + k x^2 / 2 = w.
            let k = (to - from) / duration_s;
            let a = (from + k * t).max(0.0);
            if w <= 0.0 {
                return (a > 0.0 || k > 0.0).then_some(t);
            }
            let disc = a * a + 2.0 * k * w;
            if disc < 0.0 {
                return None; // a falling ramp reaches 0 first
            }
            // Stable form of (-a + sqrt(disc)) / k, also valid for k = 0.
            let denom = a + disc.sqrt();
            (denom > 0.0).then(|| t + 2.0 * w / denom)
        }
        RateShape::Steps(steps) => {
            let (mut t, mut w) = (t, w);
            let mut start = 0.0;
            for s in steps {
                let end = start + s.duration.as_secs_f64();
                start = end;
                if t >= end - EPS {
                    continue;
                }
                let r = s.rate.max(0.0);
                if r > 0.0 {
                    let cand = t + w / r;
                    if cand < end - EPS {
                        return Some(cand);
                    }
                    w = (w - r * (end - t)).max(0.0);
                }
                t = end;
            }
            None
        }
    }
}

/// Parses step syntax: comma-separated `RATExDURATION` items, where RATE is requests per second
/// (a number >= 0, decimals allowed) and DURATION is a humantime duration > 0.
/// Example: `"10x30s,20x30s,40x1m"` = 10 req/s for 30 s, then 20 req/s for 30 s, then 40 req/s
/// for a minute. `0x10s` is a 10-second pause. Step indices in errors count from 1.
pub fn parse_steps(text: &str) -> Result<Vec<Step>, ScheduleError> {
    let mut steps = Vec::new();
    for (i, raw) in text.split(',').enumerate() {
        let item = raw.trim();
        let err = |reason: &str| ScheduleError::InvalidStep {
            index: i + 1,
            text: item.to_string(),
            reason: reason.to_string(),
        };
        if item.is_empty() {
            if text.trim().is_empty() {
                return Err(ScheduleError::EmptySteps);
            }
            return Err(err("empty step"));
        }
        let Some((rate_s, dur_s)) = item.split_once(['x', 'X']) else {
            return Err(err("missing 'x' between rate and duration"));
        };
        let rate: f64 = rate_s
            .trim()
            .parse()
            .map_err(|_| err(&format!("rate \"{}\" is not a number", rate_s.trim())))?;
        if !rate.is_finite() || rate < 0.0 {
            return Err(err(&format!("rate {rate} must be finite and >= 0")));
        }
        let duration = crate::duration::parse(dur_s).map_err(|e| err(&e.to_string()))?;
        if duration.is_zero() {
            return Err(err("duration must be > 0"));
        }
        steps.push(Step { rate, duration });
    }
    Ok(steps)
}

/// Loads a JSONL arrival trace. Each non-blank line is an object with a time — `"timestamp"`
/// (seconds, float) or `"timestamp_ms"` (milliseconds) — and lengths `"input_tokens"` (or
/// `"input_length"`) and `"output_tokens"` (or `"output_length"`). Other fields are ignored.
/// Entries are sorted by time and made relative to the first, so absolute epoch timestamps work.
pub fn load_trace(path: &Path) -> Result<Vec<TraceEntry>, ScheduleError> {
    let io_err = |source| ScheduleError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Capped, regular files only: `--trace /dev/zero` read forever.
    let file = crate::limits::open_regular(path, crate::limits::MAX_TRACE_BYTES)
        .map_err(|e| io_err(e.into_io()))?;
    let reader = BufReader::new(file);
    let mut entries = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = parse_trace_line(&line).map_err(|message| ScheduleError::TraceLine {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        })?;
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(ScheduleError::EmptyTrace {
            path: path.to_path_buf(),
        });
    }
    entries.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let t0 = entries[0].at_s;
    for e in &mut entries {
        e.at_s -= t0;
    }
    Ok(entries)
}

fn parse_trace_line(line: &str) -> Result<TraceEntry, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid json: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| format!("expected a json object, found {}", short(&value)))?;
    let at_s = match (obj.get("timestamp"), obj.get("timestamp_ms")) {
        (Some(v), _) => number(v, "timestamp")?,
        (None, Some(v)) => number(v, "timestamp_ms")? / 1000.0,
        (None, None) => return Err("missing \"timestamp\" or \"timestamp_ms\"".into()),
    };
    let tokens = |names: [&str; 2]| -> Result<u32, String> {
        let (name, v) = names
            .iter()
            .find_map(|n| obj.get(*n).map(|v| (*n, v)))
            .ok_or_else(|| format!("missing \"{}\" or \"{}\"", names[0], names[1]))?;
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                format!(
                    "\"{name}\" must be a whole number of tokens, found {}",
                    short(v)
                )
            })
    };
    Ok(TraceEntry {
        at_s,
        input_tokens: tokens(["input_tokens", "input_length"])?,
        output_tokens: tokens(["output_tokens", "output_length"])?,
    })
}

fn number(v: &serde_json::Value, name: &str) -> Result<f64, String> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("\"{name}\" must be a number, found {}", short(v)))
}

/// The offending value for an error message, cut to a readable length.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn open(shape: RateShape, process: ArrivalProcess, secs: u64) -> Schedule {
        Schedule::Open {
            shape,
            process,
            duration: Duration::from_secs(secs),
            max_in_flight: None,
        }
    }

    fn times(s: &Schedule, seed: u64, multiplier: f64) -> Vec<f64> {
        let mut a = s.arrivals(seed);
        let mut out = Vec::new();
        loop {
            match a.next(multiplier) {
                Next::At { at_s, .. } => out.push(at_s),
                Next::Done => return out,
                Next::WhenSlotFree => panic!("open schedule asked for a slot"),
            }
        }
    }

    fn gaps(t: &[f64]) -> Vec<f64> {
        t.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn mean_sd(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    fn counts_in(t: &[f64], edges: &[f64]) -> Vec<usize> {
        edges
            .windows(2)
            .map(|w| t.iter().filter(|&&x| x >= w[0] && x < w[1]).count())
            .collect()
    }

    #[test]
    fn constant_gaps_are_exact_and_start_at_zero() {
        let t = times(
            &open(RateShape::Fixed(10.0), ArrivalProcess::Constant, 10),
            1,
            1.0,
        );
        assert_eq!(t.len(), 100);
        assert_eq!(t[0], 0.0);
        for g in gaps(&t) {
            assert!((g - 0.1).abs() < 1e-9, "gap {g}");
        }
    }

    #[test]
    fn open_arrivals_stay_within_duration_then_done_forever() {
        let s = open(RateShape::Fixed(100.0), ArrivalProcess::Poisson, 5);
        let mut a = s.arrivals(3);
        let mut last = -1.0;
        loop {
            match a.next(1.0) {
                Next::At { at_s, trace } => {
                    assert!(trace.is_none());
                    assert!((0.0..5.0).contains(&at_s) && at_s >= last);
                    last = at_s;
                }
                Next::Done => break,
                Next::WhenSlotFree => panic!(),
            }
        }
        for _ in 0..3 {
            assert_eq!(a.next(1.0), Next::Done);
        }
    }

    #[test]
    fn same_seed_reproduces_the_schedule_and_other_seeds_differ() {
        let s = open(RateShape::Fixed(20.0), ArrivalProcess::Poisson, 10);
        assert_eq!(times(&s, 42, 1.0), times(&s, 42, 1.0));
        assert_ne!(times(&s, 42, 1.0), times(&s, 43, 1.0));
    }

    #[test]
    fn poisson_counts_have_dispersion_near_one_and_gaps_mean_inverse_rate_cv_one() {
        let rate = 50.0;
        let t = times(
            &open(RateShape::Fixed(rate), ArrivalProcess::Poisson, 400),
            7,
            1.0,
        );
        // ~20 000 arrivals in 400 one-second windows.
        let edges: Vec<f64> = (0..=400).map(f64::from).collect();
        let c: Vec<f64> = counts_in(&t, &edges)
            .into_iter()
            .map(|c| c as f64)
            .collect();
        let (cm, csd) = mean_sd(&c);
        let dispersion = csd * csd / cm;
        // For Poisson counts the sampling sd of variance/mean over n=400 windows is about
        // sqrt(2/(n-1)) = 0.07; 0.25 is > 3.5 sd yet rejects e.g. gamma(0.5) (dispersion ~2).
        assert!((dispersion - 1.0).abs() < 0.25, "dispersion {dispersion}");
        assert!((cm - rate).abs() < 1.5, "mean count {cm}"); // sd of the mean ≈ sqrt(50/400)=0.35
        let (gm, gsd) = mean_sd(&gaps(&t));
        // Relative sd of the mean gap is 1/sqrt(20000) = 0.7%; 3% is > 4 sd.
        assert!((gm * rate - 1.0).abs() < 0.03, "gap mean {gm}");
        // The sample CV of exponential gaps has sd ≈ 1/sqrt(n) as well; 5% is > 7 sd.
        let cv = gsd / gm;
        assert!((cv - 1.0).abs() < 0.05, "cv {cv}");
    }

    fn gamma_cv(b: f64) -> (f64, f64) {
        let rate = 100.0;
        let p = ArrivalProcess::parse("gamma", Some(b)).unwrap();
        let t = times(&open(RateShape::Fixed(rate), p, 300), 11, 1.0);
        let (m, sd) = mean_sd(&gaps(&t));
        (m * rate, sd / m)
    }

    #[test]
    fn gamma_gap_cv_is_inverse_sqrt_burstiness() {
        // ~30 000 gaps each. The relative sd of a sample variance is sqrt((excess kurtosis + 2)/n)
        // with excess kurtosis 6/b: for b=0.25 that is sqrt(26/30000) ≈ 3% on the variance, 1.5%
        // on the CV, so 8% is > 5 sd; for b=4 it is well under 1%, so 5% is generous.
        let (mean_b025, cv_b025) = gamma_cv(0.25);
        assert!((cv_b025 - 2.0).abs() / 2.0 < 0.08, "cv {cv_b025}");
        // The mean gap stays 1/rate (relative sd 2/sqrt(30000) ≈ 1.2%).
        assert!((mean_b025 - 1.0).abs() < 0.05, "mean {mean_b025}");
        let (mean_b4, cv_b4) = gamma_cv(4.0);
        assert!((cv_b4 - 0.5).abs() / 0.5 < 0.05, "cv {cv_b4}");
        assert!((mean_b4 - 1.0).abs() < 0.02, "mean {mean_b4}");
    }

    #[test]
    fn ramp_counts_per_fifth_follow_the_rate_integral() {
        // 10 → 90 req/s over 100 s: each fifth's integral is 20 s × the rate at its midpoint.
        let shape = RateShape::Ramp {
            from: 10.0,
            to: 90.0,
        };
        let edges: Vec<f64> = (0..=5).map(|i| f64::from(i) * 20.0).collect();
        let expected = [360.0, 680.0, 1000.0, 1320.0, 1640.0];
        let poisson = times(&open(shape.clone(), ArrivalProcess::Poisson, 100), 5, 1.0);
        for (c, e) in counts_in(&poisson, &edges).into_iter().zip(expected) {
            // Poisson counts: sd = sqrt(expected); allow 4 sd.
            assert!((c as f64 - e).abs() < 4.0 * e.sqrt(), "count {c} vs {e}");
        }
        // The constant process is the deterministic time change: off by at most one per fifth.
        let constant = times(&open(shape, ArrivalProcess::Constant, 100), 5, 1.0);
        for (c, e) in counts_in(&constant, &edges).into_iter().zip(expected) {
            assert!((c as f64 - e).abs() <= 1.0, "count {c} vs {e}");
        }
    }

    #[test]
    fn step_counts_match_rate_times_duration_and_zero_steps_pause() {
        let steps = parse_steps("10x30s,20x30s,0x10s,40x30s").unwrap();
        let s = open(RateShape::Steps(steps), ArrivalProcess::Poisson, 0);
        assert_eq!(s.duration(), Duration::from_secs(100));
        let edges = [0.0, 30.0, 60.0, 70.0, 100.0];
        let expected = [300.0, 600.0, 0.0, 1200.0];
        let t = times(&s, 9, 1.0);
        for (c, e) in counts_in(&t, &edges).into_iter().zip(expected) {
            // Poisson counts: sd = sqrt(expected); 4 sd. A zero-rate step must be empty.
            assert!((c as f64 - e).abs() <= 4.0 * e.sqrt(), "count {c} vs {e}");
        }
        let Schedule::Open { shape, .. } = s else {
            unreachable!()
        };
        let constant = open(shape, ArrivalProcess::Constant, 0);
        let t = times(&constant, 9, 1.0);
        assert_eq!(counts_in(&t, &edges), vec![300, 600, 0, 1200]);
        assert!(
            t.contains(&70.0),
            "first arrival after the pause is at its end"
        );
    }

    #[test]
    fn multiplier_two_halves_every_gap() {
        let s = open(RateShape::Fixed(20.0), ArrivalProcess::Poisson, 1000);
        let base = times(&s, 21, 1.0);
        let fast = times(&s, 21, 2.0);
        // Same seed draws the same unit work per gap, so each gap is exactly half.
        for (a, b) in base.iter().zip(&fast).take(500) {
            assert!((a / 2.0 - b).abs() < 1e-9);
        }
        assert!((fast.len() as f64 / base.len() as f64 - 2.0).abs() < 0.05);
    }

    #[test]
    fn multiplier_applies_from_the_call_on() {
        let s = open(RateShape::Fixed(10.0), ArrivalProcess::Constant, 20);
        let mut a = s.arrivals(0);
        let mut t = Vec::new();
        while let Next::At { at_s, .. } = a.next(if t.len() >= 100 { 2.0 } else { 1.0 }) {
            t.push(at_s);
        }
        // 100 arrivals at 0..=9.9 s; the 101st gap is drawn at 2× (9.95 s), then 20 req/s.
        assert!((t[100] - 9.95).abs() < 1e-9);
        assert_eq!(counts_in(&t, &[0.0, 10.0 - 1e-6, 20.0]), vec![101, 200]);
    }

    #[test]
    fn trace_replay_reproduces_timestamps_and_multiplier_compresses_gaps() {
        let e = |at_s| TraceEntry {
            at_s,
            input_tokens: 5,
            output_tokens: 7,
        };
        let entries = vec![e(0.0), e(0.5), e(0.5), e(1.75), e(4.0)];
        let s = Schedule::Trace {
            entries: entries.clone(),
            max_in_flight: Some(8),
        };
        assert_eq!(s.duration(), Duration::from_secs(4));
        assert_eq!(s.max_in_flight(), Some(8));
        assert_eq!(s.nominal_rate(), Some(5.0 / 4.0));
        let mut a = s.arrivals(0);
        for want in &entries {
            assert_eq!(
                a.next(1.0),
                Next::At {
                    at_s: want.at_s,
                    trace: Some(*want)
                }
            );
        }
        assert_eq!(a.next(1.0), Next::Done);
        let halved: Vec<f64> = times(&s, 0, 2.0);
        assert_eq!(halved, vec![0.0, 0.25, 0.25, 0.875, 2.0]);
    }

    #[test]
    fn closed_loop_never_ends_by_itself() {
        let s = Schedule::Closed {
            users: 16,
            duration: Duration::from_secs(1),
        };
        assert_eq!(s.max_in_flight(), Some(16));
        assert_eq!(s.nominal_rate(), None);
        assert_eq!(s.rate_at(0.5), None);
        let mut a = s.arrivals(0);
        for _ in 0..10_000 {
            assert_eq!(a.next(1.0), Next::WhenSlotFree);
        }
    }

    #[test]
    fn nominal_rate_and_rate_at_describe_the_shape() {
        let ramp = open(
            RateShape::Ramp {
                from: 10.0,
                to: 30.0,
            },
            ArrivalProcess::Poisson,
            10,
        );
        assert_eq!(ramp.nominal_rate(), Some(20.0));
        assert_eq!(ramp.rate_at(5.0), Some(20.0));
        assert_eq!(ramp.rate_at(10.0), Some(0.0));
        let steps = open(
            RateShape::Steps(parse_steps("10x10s,30x30s").unwrap()),
            ArrivalProcess::Constant,
            0,
        );
        assert_eq!(steps.nominal_rate(), Some(25.0));
        assert_eq!(steps.rate_at(9.9), Some(10.0));
        assert_eq!(steps.rate_at(10.0), Some(30.0));
    }

    #[test]
    fn parse_steps_accepts_the_documented_syntax() {
        let s = parse_steps(" 10x30s, 2.5x1m ,0x500ms").unwrap();
        assert_eq!(
            s,
            vec![
                Step {
                    rate: 10.0,
                    duration: Duration::from_secs(30)
                },
                Step {
                    rate: 2.5,
                    duration: Duration::from_secs(60)
                },
                Step {
                    rate: 0.0,
                    duration: Duration::from_millis(500)
                },
            ]
        );
    }

    #[test]
    fn parse_steps_errors_name_the_step_and_value() {
        let msg = parse_steps("10x30s,40@1m").unwrap_err().to_string();
        assert!(msg.contains("step 2") && msg.contains("40@1m"), "{msg}");
        let msg = parse_steps("10x30s,abcx1m").unwrap_err().to_string();
        assert!(msg.contains("\"abc\""), "{msg}");
        let msg = parse_steps("10x3 parsecs").unwrap_err().to_string();
        assert!(msg.contains("step 1") && msg.contains("3 parsecs"), "{msg}");
        assert!(parse_steps("-1x10s").is_err());
        assert!(parse_steps("1x0s").is_err());
        assert!(matches!(parse_steps(""), Err(ScheduleError::EmptySteps)));
    }

    #[test]
    fn process_parse_requires_burstiness_only_for_gamma() {
        assert_eq!(
            ArrivalProcess::parse("Poisson", None).unwrap(),
            ArrivalProcess::Poisson
        );
        assert_eq!(
            ArrivalProcess::parse("gamma", Some(0.5)).unwrap(),
            ArrivalProcess::Gamma { burstiness: 0.5 }
        );
        assert!(matches!(
            ArrivalProcess::parse("gamma", None),
            Err(ScheduleError::MissingBurstiness)
        ));
        assert!(ArrivalProcess::parse("gamma", Some(0.0)).is_err());
        assert!(ArrivalProcess::parse("constant", Some(2.0)).is_err());
        let msg = ArrivalProcess::parse("poison", None)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"poison\""), "{msg}");
    }

    fn write_tmp(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn load_trace_sorts_makes_times_relative_and_accepts_aliases() {
        let f = write_tmp(
            "{\"timestamp\": 1000.5, \"input_tokens\": 10, \"output_tokens\": 20}\n\
             \n\
             {\"timestamp_ms\": 1000000, \"input_length\": 30, \"output_length\": 40, \"x\": 1}\n\
             {\"timestamp\": 1002, \"input_tokens\": 50, \"output_tokens\": 60}\n",
        );
        let t = load_trace(f.path()).unwrap();
        assert_eq!(
            t,
            vec![
                TraceEntry {
                    at_s: 0.0,
                    input_tokens: 30,
                    output_tokens: 40
                },
                TraceEntry {
                    at_s: 0.5,
                    input_tokens: 10,
                    output_tokens: 20
                },
                TraceEntry {
                    at_s: 2.0,
                    input_tokens: 50,
                    output_tokens: 60
                },
            ]
        );
    }

    #[test]
    fn load_trace_errors_name_file_line_and_value() {
        let f = write_tmp(
            "{\"timestamp\": 1, \"input_tokens\": 10, \"output_tokens\": 20}\n\
             \n\
             {\"timestamp\": 2, \"input_tokens\": -3, \"output_tokens\": 20}\n",
        );
        let msg = load_trace(f.path()).unwrap_err().to_string();
        let name = f.path().display().to_string();
        assert!(msg.contains(&format!("{name}:3:")), "{msg}");
        assert!(msg.contains("input_tokens") && msg.contains("-3"), "{msg}");

        let f = write_tmp("{\"timestamp\": \"noon\", \"input_tokens\": 1, \"output_tokens\": 1}");
        let msg = load_trace(f.path()).unwrap_err().to_string();
        assert!(msg.contains(":1:") && msg.contains("\"noon\""), "{msg}");

        let f = write_tmp("{\"input_tokens\": 1, \"output_tokens\": 1}\n");
        let msg = load_trace(f.path()).unwrap_err().to_string();
        assert!(msg.contains("timestamp"), "{msg}");

        let f = write_tmp("not json\n");
        assert!(
            load_trace(f.path())
                .unwrap_err()
                .to_string()
                .contains(":1:")
        );

        let f = write_tmp("\n\n");
        assert!(matches!(
            load_trace(f.path()),
            Err(ScheduleError::EmptyTrace { .. })
        ));
    }

    #[test]
    fn validate_rejects_what_the_types_allow_but_runs_cannot_use() {
        assert!(
            open(RateShape::Fixed(-1.0), ArrivalProcess::Poisson, 1)
                .validate()
                .is_err()
        );
        assert!(
            open(
                RateShape::Fixed(1.0),
                ArrivalProcess::Gamma { burstiness: 0.0 },
                1
            )
            .validate()
            .is_err()
        );
        assert!(
            Schedule::Closed {
                users: 0,
                duration: Duration::from_secs(1)
            }
            .validate()
            .is_err()
        );
        assert!(
            open(RateShape::Fixed(1.0), ArrivalProcess::Constant, 1)
                .validate()
                .is_ok()
        );
    }
}
