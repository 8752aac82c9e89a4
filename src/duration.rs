//! The one way faultline reads a duration: CLI flags (`value_parser`), experiment and fault
//! files, `faultline inject --set`, sim configs and step lists all parse through [`parse`], so
//! `30s` means the same everywhere and a bad value gets the same message everywhere:
//!
//! `invalid duration '3 mintues': unknown unit 'mintues' (use ms, s, m, h); try 3m`
//!
//! The spelling is humantime's (`250ms`, `30s`, `2m`, `1h30m`). A bare number is refused — is
//! `30` seconds or milliseconds? — and the message says which spelling to use instead.
//!
//! A leaf module: it imports nothing of the project, so every layer can use it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A value that is not a duration: the text as written, why, and (when there is a plausible
/// reading) the spelling the user probably meant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration '{value}': {reason}{}",
    suggestion.as_ref().map(|s| format!("; try {s}")).unwrap_or_default())]
pub struct DurationError {
    pub value: String,
    pub reason: String,
    pub suggestion: Option<String>,
}

impl DurationError {
    /// A number where a duration belongs (`90` in a YAML or JSON file).
    fn number(v: impl ToString) -> DurationError {
        let text = v.to_string();
        DurationError::new(&text, reason(&text))
    }

    fn new(value: &str, reason: impl Into<String>) -> DurationError {
        DurationError {
            value: value.to_string(),
            reason: reason.into(),
            suggestion: suggestion(value),
        }
    }
}

/// Parses a duration (`250ms`, `30s`, `2m`, `1h30m`; surrounding blanks ignored).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text.trim()).map_err(|_| DurationError::new(text, reason(text)))
}

/// [`parse`], refusing zero: for timeouts, windows and run lengths, where zero means nothing
/// useful. The signature clap's `value_parser` takes.
pub fn parse_positive(text: &str) -> Result<Duration, DurationError> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(DurationError {
            value: text.to_string(),
            reason: "must be longer than zero".into(),
            suggestion: None,
        });
    }
    Ok(d)
}

/// The canonical spelling of `d` (`1m 30s`, `250ms`), as written back into files.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Why `text` is not a duration, in a few words (humantime's own message lists every unit).
pub fn reason(text: &str) -> String {
    use humantime::DurationError as E;
    match humantime::parse_duration(text.trim()) {
        Ok(_) => "not a valid duration here".into(),
        Err(E::UnknownUnit { unit, .. }) if unit.is_empty() => {
            "a number needs a unit (ms, s, m, h)".into()
        }
        Err(E::UnknownUnit { unit, .. }) => format!("unknown unit '{unit}' (use ms, s, m, h)"),
        Err(E::NumberExpected(_)) | Err(E::InvalidCharacter(_)) => {
            "expected a number followed by a unit, like 30s, 2m or 1h30m".into()
        }
        Err(E::NumberOverflow) => "too large".into(),
        Err(E::Empty) => "empty".into(),
    }
}

/// A humantime spelling of what the user probably meant: `90` → `90s`, `1.5m` → `90s`,
/// `3 mintues` → `3m`, `10 secs` → `10s`.
pub fn suggestion(text: &str) -> Option<String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim().to_lowercase();
    let secs_per = match unit.as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        u if u.starts_with("ms") || u.starts_with("milli") => 0.001,
        u if u.starts_with("mi") || u.starts_with("mn") || u == "m" => 60.0,
        u if u.starts_with('h') => 3600.0,
        u if u.starts_with('s') => 1.0,
        u if u.starts_with('d') => 86400.0,
        _ => return None,
    };
    let ms = (n * secs_per * 1000.0).round() as u64;
    let s = match ms {
        0 => return None,
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    };
    (s != t).then_some(s)
}

/// A duration as written in a file: read from a string with [`parse`], written back in the
/// canonical spelling. Numbers are refused with the spelling to use instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

/// In a schema: a string in the spelling [`parse`] reads.
impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*[0-9]",
            "description": "A duration: a number with a unit (250ms, 30s, 2m, 1h30m); a bare number is refused.",
        })
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Dur {
        Dur(d)
    }
}

impl FromStr for Dur {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Dur, DurationError> {
        parse(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl ::serde::Serialize for Dur {
    fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(self.0))
    }
}

impl<'de> ::serde::Deserialize<'de> for Dur {
    fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        d.deserialize_any(Visitor).map(Dur)
    }
}

/// Reads a string with [`parse`]; a number gets the "needs a unit" message, not serde's
/// "invalid type". Every message starts with `invalid duration '…'` (the spec reader relies on
/// that prefix to locate it at `file:line:column`).
struct Visitor;

impl ::serde::de::Visitor<'_> for Visitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration")
    }
    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(DurationError::number(v)))
    }
    fn visit_i64<E: ::serde::de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(DurationError::number(v)))
    }
    fn visit_f64<E: ::serde::de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(DurationError::number(v)))
    }
}

/// `#[serde(with = "crate::duration::serde")]` for a plain `Duration` field.
pub mod serde {
    use std::time::Duration;

    pub fn serialize<S: ::serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: ::serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(super::Visitor)
    }
}

/// `#[serde(default, with = "crate::duration::serde_opt")]` for an `Option<Duration>` field.
pub mod serde_opt {
    use super::Dur;
    use ::serde::Deserialize;
    use std::time::Duration;

    pub fn serialize<S: ::serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: ::serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Dur>::deserialize(d)?.map(|d| d.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_humantime_spellings() {
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse(" 250ms ").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn errors_name_the_value_the_reason_and_a_spelling_to_try() {
        assert_eq!(
            parse("3 mintues").unwrap_err().to_string(),
            "invalid duration '3 mintues': unknown unit 'mintues' (use ms, s, m, h); try 3m"
        );
        assert_eq!(
            parse("90").unwrap_err().to_string(),
            "invalid duration '90': a number needs a unit (ms, s, m, h); try 90s"
        );
        assert_eq!(
            parse("soon").unwrap_err().to_string(),
            "invalid duration 'soon': expected a number followed by a unit, like 30s, 2m or 1h30m"
        );
        assert_eq!(
            parse_positive("0s").unwrap_err().to_string(),
            "invalid duration '0s': must be longer than zero"
        );
    }

    #[test]
    fn suggestion_fixes_units_and_bare_numbers() {
        assert_eq!(suggestion("3 mintues").as_deref(), Some("3m"));
        assert_eq!(suggestion("90").as_deref(), Some("90s"));
        assert_eq!(suggestion("1.5m").as_deref(), Some("90s"));
        assert_eq!(suggestion("0.5s").as_deref(), Some("500ms"));
        assert_eq!(suggestion("soon"), None);
    }

    #[derive(Debug, ::serde::Deserialize, ::serde::Serialize, PartialEq)]
    struct T {
        a: Dur,
        #[serde(with = "crate::duration::serde")]
        b: Duration,
        #[serde(default, with = "crate::duration::serde_opt")]
        c: Option<Duration>,
    }

    #[test]
    fn serde_round_trips_and_refuses_numbers_with_the_same_message() {
        let t: T = serde_json::from_str(r#"{"a": "2m", "b": "250ms", "c": "1s"}"#).unwrap();
        assert_eq!(t.a, Dur(Duration::from_secs(120)));
        assert_eq!(t.b, Duration::from_millis(250));
        assert_eq!(t.c, Some(Duration::from_secs(1)));
        let back: T = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let err = serde_json::from_str::<T>(r#"{"a": 90, "b": "1s"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid duration '90': a number needs a unit (ms, s, m, h); try 90s"),
            "{err}"
        );
        let err = serde_json::from_str::<T>(r#"{"a": "1s", "b": "1 fortnight"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid duration '1 fortnight'"), "{err}");
    }
}
