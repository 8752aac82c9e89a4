//! "Did you mean": the closest known word by edit distance (strsim's optimal string
//! alignment, so a swap of two neighbouring letters — `ues` for `use` — is one edit), so a typo in a key or a name gets a "did you
//! mean". Durations have their own hints in `crate::duration`.

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
}
