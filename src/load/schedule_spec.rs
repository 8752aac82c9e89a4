//! What a user asked for about the load *shape* — `faultline load`'s flags or an experiment's
//! `load:` section — and the one conversion to a checked [`Schedule`].
//!
//! Why one: the CLI and the experiment reader each built schedules with their own defaults and
//! their own checks, so the same `rate`/`steps`/`duration` could be accepted by one and refused
//! (or defaulted differently) by the other. Both front-ends now fill a [`ScheduleSpec`] and call
//! [`ScheduleSpec::to_schedule`]; the defaults ([`DEFAULT_RATE`], [`DEFAULT_DURATION`],
//! [`DEFAULT_ARRIVAL`]), the conflicts between modes and the limits live here. Errors name the
//! key (`rate`, `ramp_to`, …) so the CLI can say `--ramp-to` and the experiment reader can point
//! at `file:line:column`.

use std::path::PathBuf;
use std::time::Duration;

use super::schedule::{self, ArrivalProcess, RateShape, Schedule, ScheduleError};
use crate::limits::{MAX_CONCURRENCY, MAX_DURATION, MAX_RATE, MIN_RATE};

/// Requests per second of an open-loop load when no rate is given.
pub const DEFAULT_RATE: f64 = 20.0;
/// How long the load runs when no duration is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// The arrival process when none is given: independent users arrive as a Poisson process.
pub const DEFAULT_ARRIVAL: &str = "poisson";

/// The load shape as written, every field optional (defaults are applied by
/// [`ScheduleSpec::to_schedule`]). Field names are the experiment file's keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleSpec {
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub arrival: Option<String>,
    pub burstiness: Option<f64>,
    pub ramp_to: Option<f64>,
    pub steps: Option<String>,
    pub concurrency: Option<usize>,
    pub max_in_flight: Option<usize>,
    /// Already resolved against whatever it is relative to (the experiment file's folder).
    pub trace: Option<PathBuf>,
}

/// What is wrong with a [`ScheduleSpec`], naming the key (`snake_case`, as in the file).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleSpecError {
    /// A value out of range: `value` is quoted as a person would write it.
    #[error("invalid value {value} for '{key}': {message}")]
    Invalid {
        key: &'static str,
        value: String,
        message: String,
    },
    /// Two keys that select different load modes.
    #[error("'{key}' cannot be combined with '{with}'")]
    Conflict {
        key: &'static str,
        with: &'static str,
    },
    /// A value that did not parse (arrival, steps, trace); the source quotes it.
    #[error("{source}")]
    Parse {
        key: &'static str,
        source: ScheduleError,
    },
}

impl ScheduleSpecError {
    /// The key the problem is about.
    pub fn key(&self) -> &'static str {
        match self {
            ScheduleSpecError::Invalid { key, .. }
            | ScheduleSpecError::Conflict { key, .. }
            | ScheduleSpecError::Parse { key, .. } => key,
        }
    }

    /// The message with keys spelled as command-line flags (`--ramp-to`).
    pub fn for_flags(&self) -> String {
        let flag = |k: &str| format!("--{}", k.replace('_', "-"));
        match self {
            ScheduleSpecError::Invalid {
                key,
                value,
                message,
            } => format!("invalid value {value} for {}: {message}", flag(key)),
            ScheduleSpecError::Conflict { key, with } => {
                format!("{} cannot be combined with {}", flag(key), flag(with))
            }
            ScheduleSpecError::Parse { key, source } => format!("{}: {source}", flag(key)),
        }
    }
}

/// A number quoted as a person would write it (`'1e12'`, not 13 digits; `'5e-324'`).
fn quoted(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-4..1e6).contains(&v.abs()) {
        format!("'{v:e}'")
    } else {
        format!("'{v}'")
    }
}

fn rate(key: &'static str, v: f64) -> Result<f64, ScheduleSpecError> {
    let message = if !v.is_finite() || v <= 0.0 {
        "must be a positive number of requests per second".to_string()
    } else if !(MIN_RATE..=MAX_RATE).contains(&v) {
        format!("must be between {MIN_RATE} and {MAX_RATE} requests per second")
    } else {
        return Ok(v);
    };
    Err(ScheduleSpecError::Invalid {
        key,
        value: quoted(v),
        message,
    })
}

fn count(key: &'static str, v: Option<usize>) -> Result<Option<usize>, ScheduleSpecError> {
    let message = match v {
        Some(0) => "must be at least 1".to_string(),
        Some(n) if n as u64 > MAX_CONCURRENCY => format!("must be at most {MAX_CONCURRENCY}"),
        _ => return Ok(v),
    };
    Err(ScheduleSpecError::Invalid {
        key,
        value: format!("'{}'", v.unwrap_or_default()),
        message,
    })
}

impl ScheduleSpec {
    /// The keys given, in the order conflicts are reported.
    fn given(&self) -> Vec<&'static str> {
        [
            ("rate", self.rate.is_some()),
            ("arrival", self.arrival.is_some()),
            ("burstiness", self.burstiness.is_some()),
            ("ramp_to", self.ramp_to.is_some()),
            ("steps", self.steps.is_some()),
            ("trace", self.trace.is_some()),
            ("duration", self.duration.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, g)| g.then_some(k))
        .collect()
    }

    /// `mode` excludes `others`: the first of them given is an error.
    fn exclusive(&self, mode: &'static str, others: &[&str]) -> Result<(), ScheduleSpecError> {
        match self.given().into_iter().find(|k| others.contains(k)) {
            Some(with) => Err(ScheduleSpecError::Conflict {
                key: with,
                with: mode,
            }),
            None => Ok(()),
        }
    }

    fn duration(&self) -> Result<Duration, ScheduleSpecError> {
        let d = self.duration.unwrap_or(DEFAULT_DURATION);
        let message = if d.is_zero() {
            "must be longer than 0s".to_string()
        } else if d > MAX_DURATION {
            format!("must be at most {}", crate::duration::format(MAX_DURATION))
        } else {
            return Ok(d);
        };
        Err(ScheduleSpecError::Invalid {
            key: "duration",
            value: format!("'{}'", crate::duration::format(d)),
            message,
        })
    }

    /// The checked schedule, with the defaults applied: closed loop when `concurrency` is given,
    /// trace replay when `trace` is, otherwise open loop (`steps`, a ramp to `ramp_to`, or a
    /// fixed `rate`, [`DEFAULT_RATE`] when none is given) for `duration` ([`DEFAULT_DURATION`]).
    pub fn to_schedule(&self) -> Result<Schedule, ScheduleSpecError> {
        let max_in_flight = count("max_in_flight", self.max_in_flight)?;
        let parse = |key, source| ScheduleSpecError::Parse { key, source };
        let schedule = if let Some(users) = self.concurrency {
            self.exclusive(
                "concurrency",
                &["rate", "arrival", "burstiness", "ramp_to", "steps", "trace"],
            )?;
            let users = count("concurrency", Some(users))?.unwrap_or(1);
            Schedule::Closed {
                users,
                duration: self.duration()?,
            }
        } else if let Some(path) = &self.trace {
            self.exclusive(
                "trace",
                &[
                    "rate",
                    "arrival",
                    "burstiness",
                    "ramp_to",
                    "steps",
                    "duration",
                ],
            )?;
            Schedule::Trace {
                entries: schedule::load_trace(path).map_err(|e| parse("trace", e))?,
                max_in_flight,
            }
        } else {
            let process = ArrivalProcess::parse(
                self.arrival.as_deref().unwrap_or(DEFAULT_ARRIVAL),
                self.burstiness,
            )
            .map_err(|e| {
                let key = if self.burstiness.is_some() {
                    "burstiness"
                } else {
                    "arrival"
                };
                parse(key, e)
            })?;
            let (shape, duration) = if let Some(steps) = &self.steps {
                self.exclusive("steps", &["rate", "ramp_to", "duration"])?;
                let steps = schedule::parse_steps(steps).map_err(|e| parse("steps", e))?;
                let total = steps.iter().map(|s| s.duration).sum();
                (RateShape::Steps(steps), total)
            } else {
                let from = rate("rate", self.rate.unwrap_or(DEFAULT_RATE))?;
                let shape = match self.ramp_to {
                    Some(to) => RateShape::Ramp {
                        from,
                        to: rate("ramp_to", to)?,
                    },
                    None => RateShape::Fixed(from),
                };
                (shape, self.duration()?)
            };
            Schedule::Open {
                shape,
                process,
                duration,
                max_in_flight,
            }
        };
        schedule.validate().map_err(|e| parse("rate", e))?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_given_is_poisson_at_the_default_rate_for_the_default_duration() {
        let s = ScheduleSpec::default().to_schedule().unwrap();
        assert_eq!(
            s,
            Schedule::Open {
                shape: RateShape::Fixed(DEFAULT_RATE),
                process: ArrivalProcess::Poisson,
                duration: DEFAULT_DURATION,
                max_in_flight: None,
            }
        );
    }

    #[test]
    fn steps_last_their_total_and_exclude_rate_and_duration() {
        let spec = ScheduleSpec {
            steps: Some("10x30s,20x1m".into()),
            ..Default::default()
        };
        assert_eq!(
            spec.to_schedule().unwrap().duration(),
            Duration::from_secs(90)
        );
        let spec = ScheduleSpec {
            steps: Some("10x30s".into()),
            rate: Some(5.0),
            ..Default::default()
        };
        let e = spec.to_schedule().unwrap_err();
        assert_eq!(e.to_string(), "'rate' cannot be combined with 'steps'");
        assert_eq!(e.for_flags(), "--rate cannot be combined with --steps");
    }

    #[test]
    fn limits_name_the_key_and_quote_the_value() {
        let e = ScheduleSpec {
            ramp_to: Some(1e12),
            ..Default::default()
        }
        .to_schedule()
        .unwrap_err();
        assert_eq!(e.key(), "ramp_to");
        assert_eq!(
            e.for_flags(),
            "invalid value '1e12' for --ramp-to: must be between 0.001 and 100000 requests per second"
        );
        let e = ScheduleSpec {
            concurrency: Some(0),
            ..Default::default()
        }
        .to_schedule()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value '0' for 'concurrency': must be at least 1"
        );
        let e = ScheduleSpec {
            duration: Some(Duration::from_secs(100_000 * 3600)),
            ..Default::default()
        }
        .to_schedule()
        .unwrap_err();
        assert!(
            e.for_flags()
                .ends_with("for --duration: must be at most 7days"),
            "{}",
            e.for_flags()
        );
    }

    #[test]
    fn closed_loop_keeps_its_duration_and_refuses_a_rate() {
        let spec = ScheduleSpec {
            concurrency: Some(8),
            duration: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        assert_eq!(
            spec.to_schedule().unwrap(),
            Schedule::Closed {
                users: 8,
                duration: Duration::from_secs(5)
            }
        );
        let spec = ScheduleSpec {
            concurrency: Some(8),
            rate: Some(1.0),
            ..Default::default()
        };
        assert_eq!(
            spec.to_schedule().unwrap_err().to_string(),
            "'rate' cannot be combined with 'concurrency'"
        );
    }
}
