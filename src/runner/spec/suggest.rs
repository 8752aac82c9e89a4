//! "Did you mean": the closest known word by edit distance (strsim's optimal string
//! alignment, so a swap of two neighbouring letters — `ues` for `use` — is one edit), and a
//! corrected duration.

/// Why `text` is not a duration, in a few words (humantime's own message lists every unit).
pub fn duration_reason(text: &str) -> String {
    use humantime::DurationError as E;
    match humantime::parse_duration(text) {
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

/// The known word closest to `word`, if it is close enough to be a plausible typo (at most a
/// third of the word's length, and at least 1 edit allowed).
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| {
            (
                strsim::osa_distance(&word.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

/// The one known word that `word` abbreviates (`ca` → `ca_cert`), when exactly one starts
/// with it: for keys, where a shortened name is as likely as a typo.
pub fn expansion<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    if word.chars().count() < 2 {
        return None;
    }
    let mut found = known
        .into_iter()
        .filter(|k| k.starts_with(word) && *k != word);
    match (found.next(), found.next()) {
        (Some(k), None) => Some(k.to_string()),
        _ => None,
    }
}

/// A humantime spelling of what the user probably meant: `90` → `90s`, `1.5m` → `90s`,
/// `3 mintues` → `3m`, `10 secs` → `10s`.
pub fn duration_suggestion(text: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_a_one_letter_typo() {
        let known = ["duration", "at", "repeat", "use"];
        assert_eq!(closest("durtion", known).as_deref(), Some("duration"));
        assert_eq!(closest("ues", known).as_deref(), Some("use"));
    }

    #[test]
    fn closest_stays_quiet_for_unrelated_words() {
        assert_eq!(closest("banana", ["duration", "at"]), None);
        let tls = ["ca_cert", "client_cert", "client_key", "insecure"];
        assert_eq!(expansion("ca", tls).as_deref(), Some("ca_cert"));
        assert_eq!(expansion("client", tls), None);
        assert_eq!(expansion("c", tls), None);
    }

    #[test]
    fn duration_suggestion_fixes_units_and_bare_numbers() {
        assert_eq!(duration_suggestion("3 mintues").as_deref(), Some("3m"));
        assert_eq!(duration_suggestion("90").as_deref(), Some("90s"));
        assert_eq!(duration_suggestion("1.5m").as_deref(), Some("90s"));
        assert_eq!(duration_suggestion("0.5s").as_deref(), Some("500ms"));
        assert_eq!(duration_suggestion("soon"), None);
    }
}
