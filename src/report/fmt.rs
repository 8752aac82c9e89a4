//! Plain-text numbers shared by the Markdown reports and the terminal tables of `ramp`: one
//! spelling of "no data" ("-", never 0) and one precision per kind of number.

/// Whole milliseconds, `-` when there is no number.
pub fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

/// A rate as a percentage with two decimals, `-` when there is no number.
pub fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// An RFC 3339 timestamp as people read it: `2026-11-28 17:40:12 UTC` (UTC, whole seconds).
/// Anything else is returned as it was (a report never hides what the file says).
pub fn timestamp(s: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(s.trim()) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_utc_seconds_without_nanoseconds() {
        assert_eq!(
            timestamp("2026-11-28T17:41:07.353407241+00:00"),
            "2026-11-28 17:41:07 UTC"
        );
        // A local time (what `faultline load` writes) is shown in UTC.
        assert_eq!(
            timestamp("2026-11-28T18:40:12.5+01:00"),
            "2026-11-28 17:40:12 UTC"
        );
        assert_eq!(timestamp("yesterday"), "yesterday");
    }

    #[test]
    fn missing_numbers_read_as_a_dash_not_zero() {
        assert_eq!(ms(None), "-");
        assert_eq!(pct(None), "-");
        assert_eq!(ms(Some(41.6)), "42 ms");
        assert_eq!(pct(Some(0.0123)), "1.23%");
    }
}
