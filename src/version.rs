//! The versions stamped on every top-level JSON file faultline writes (`result.json`,
//! `summary.json`, `run.json`), so that a results folder says which faultline wrote it and in
//! which layout, and tools that read old folders can tell them apart. A leaf: it imports nothing
//! of the project.
//!
//! A schema version changes when a file's layout changes in a way a reader must know about
//! (a field removed, renamed or changing meaning); fields added for new information do not
//! need one. Files written before the stamps existed have neither field: read them as 0.

use serde::Serialize;

/// This faultline's version (`Cargo.toml`).
pub const FAULTLINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `result.json` (`schemas/result.schema.json`). 1: per-fault baselines, `gave_up_s`.
pub const RESULT_SCHEMA_VERSION: u32 = 1;
/// `summary.json` (`schemas/summary.schema.json`).
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;
/// `run.json` of `faultline load`.
pub const RUN_INFO_SCHEMA_VERSION: u32 = 1;

/// `body`'s fields preceded by `faultline_version` and `schema_version`.
#[derive(Serialize)]
pub struct Stamped<'a, T: Serialize> {
    pub faultline_version: &'static str,
    pub schema_version: u32,
    #[serde(flatten)]
    pub body: &'a T,
}

pub fn stamped<T: Serialize>(body: &T, schema_version: u32) -> Stamped<'_, T> {
    Stamped {
        faultline_version: FAULTLINE_VERSION,
        schema_version,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_comes_first_and_keeps_the_body_as_it_was() {
        #[derive(Serialize)]
        struct Body {
            b: u32,
            a: &'static str,
        }
        let text = serde_json::to_string(&stamped(&Body { b: 1, a: "x" }, 7)).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"faultline_version":"{FAULTLINE_VERSION}","schema_version":7,"b":1,"a":"x"}}"#
            )
        );
    }
}
