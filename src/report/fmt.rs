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

/// Seconds as people read them: `0.35 s`, `1.6 s`, `42 s`, `3 min 5 s`, `1 h 2 min`.
pub fn secs(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let v = v.max(0.0);
    if v < 1.0 {
        format!("{v:.2} s")
    } else if v < 10.0 {
        format!("{v:.1} s")
    } else if v < 60.0 {
        format!("{v:.0} s")
    } else if v < 3600.0 {
        let s = v.round() as u64;
        match s % 60 {
            0 => format!("{} min", s / 60),
            r => format!("{} min {r} s", s / 60),
        }
    } else {
        let m = (v / 60.0).round() as u64;
        match m % 60 {
            0 => format!("{} h", m / 60),
            r => format!("{} h {r} min", m / 60),
        }
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
    fn durations_read_in_the_unit_people_use() {
        assert_eq!(secs(1.6324558), "1.6 s");
        assert_eq!(secs(0.049), "0.05 s");
        assert_eq!(secs(42.4), "42 s");
        assert_eq!(secs(185.0), "3 min 5 s");
        assert_eq!(secs(120.2), "2 min");
        assert_eq!(secs(3720.0), "1 h 2 min");
        assert_eq!(secs(f64::NAN), "-");
    }

    #[test]
    fn missing_numbers_read_as_a_dash_not_zero() {
        assert_eq!(ms(None), "-");
        assert_eq!(pct(None), "-");
        assert_eq!(ms(Some(41.6)), "42 ms");
        assert_eq!(pct(Some(0.0123)), "1.23%");
    }
}
