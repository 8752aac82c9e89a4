//! Benchmark profiles: how long each phase runs and which rates the ramp covers. `quick` is
//! sized so a newcomer's first run against the embedded sim ends in a few minutes; `production`
//! is the article's plan; `smoke` (not advertised) exists so tests can run the whole pipeline.

use super::BenchError;
use std::time::Duration;

/// Phase lengths and the ramp's range.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub warmup: Duration,
    pub warmup_rate: f64,
    pub baseline: Duration,
    pub ramp_from: f64,
    pub ramp_to: f64,
    pub ramp_step: f64,
    pub step_duration: Duration,
    pub sla: Duration,
}

impl Profile {
    pub fn named(name: &str) -> Result<Profile, BenchError> {
        let s = Duration::from_secs;
        Ok(match name {
            "quick" => Profile {
                name: "quick",
                warmup: s(10),
                warmup_rate: 5.0,
                baseline: s(15),
                ramp_from: 10.0,
                ramp_to: 60.0,
                ramp_step: 10.0,
                step_duration: s(15),
                sla: s(30),
            },
            "production" => Profile {
                name: "production",
                warmup: s(60),
                warmup_rate: 5.0,
                baseline: s(120),
                ramp_from: 1.0,
                ramp_to: 100.0,
                ramp_step: 2.0,
                step_duration: s(60),
                sla: s(30 * 60),
            },
            "smoke" => Profile {
                name: "smoke",
                warmup: s(1),
                warmup_rate: 2.0,
                baseline: s(2),
                ramp_from: 2.0,
                ramp_to: 14.0,
                ramp_step: 3.0,
                step_duration: s(3),
                sla: s(3),
            },
            other => return Err(BenchError::UnknownProfile(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_profile_is_the_articles_plan() {
        let p = Profile::named("production").unwrap();
        assert_eq!(p.baseline, Duration::from_secs(120));
        assert_eq!((p.ramp_from, p.ramp_step), (1.0, 2.0));
        assert_eq!(p.step_duration, Duration::from_secs(60));
        assert_eq!(p.sla, Duration::from_secs(1800));
    }

    #[test]
    fn unknown_profile_is_refused_by_name() {
        let e = Profile::named("fast").unwrap_err();
        assert!(e.to_string().contains("'fast'"));
    }
}
