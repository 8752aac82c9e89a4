//! Keeps the API key and the `--header` values out of everything faultline writes or prints.
//!
//! Why: the client stores what a failing server said (the body of a 401, an error object, the
//! first line of an HTML page) because that text is often the only explanation of a failure.
//! But a server — or a proxy, or a debugging echo endpoint — may repeat the request's headers in
//! that text, and then `requests.jsonl` and the terminal would hold the bearer token. So every
//! server text is passed through a [`Redactor`] built from the secrets the client sends, before
//! it is shortened (a secret cut in half by a length limit would no longer match), and a text
//! that is itself the start of something longer also loses a secret's beginning at its end.
//!
//! Matching is ASCII case-insensitive (an echo may change case) and also finds the JSON-escaped
//! form of a value. Values shorter than [`MIN_SECRET_LEN`] characters are not redacted: they
//! cannot be guessed-resistant secrets, and replacing every `1` or `on` would mangle every
//! message (`http 401` → `http 40***`).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::borrow::Cow;

/// Secrets shorter than this are not redacted (see the module docs).
pub const MIN_SECRET_LEN: usize = 4;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Replaces known secrets in text. Built once per client.
#[derive(Clone, Default)]
pub struct Redactor {
    /// `None` when there is nothing to hide.
    matcher: Option<AhoCorasick>,
    /// Every pattern, for the check of a cut text's end.
    patterns: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} patterns)", self.patterns.len())
    }
}

impl Redactor {
    /// A redactor for these secrets (trimmed; the short ones are skipped).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut patterns = Vec::new();
        for s in secrets {
            let s = s.trim();
            if s.chars().count() < MIN_SECRET_LEN {
                continue;
            }
            let json = serde_json::to_string(s).unwrap_or_default();
            let json = json[1..json.len() - 1].to_owned();
            let slashes = json.replace('/', "\\/");
            for p in [s.to_owned(), json, slashes] {
                if !patterns.contains(&p) {
                    patterns.push(p);
                }
            }
        }
        let matcher = (!patterns.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("a few short literal patterns always build")
        });
        Redactor { matcher, patterns }
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                m.replace_all_with(text, &mut out, |_, _, out| {
                    out.push_str(MASK);
                    true
                });
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Like [`redact`](Self::redact) for a text that was cut from a longer one at its end: a
    /// secret that began before the cut is removed too (the end is trimmed while it is the
    /// start of a secret).
    pub fn redact_cut<'t>(&self, text: &'t str) -> Cow<'t, str> {
        // Trimmed on the raw text, so a secret overlapping another one cannot leave its
        // beginning behind; trimming a little too much of a cut text costs nothing.
        let mut end = text.len();
        loop {
            let longest = self
                .patterns
                .iter()
                .filter_map(|p| partial_tail(&text[..end], p))
                .max()
                .unwrap_or(0);
            if longest == 0 {
                break;
            }
            end -= longest;
        }
        match self.redact(&text[..end]) {
            Cow::Borrowed(_) if end == text.len() => Cow::Borrowed(text),
            r => Cow::Owned(r.into_owned()),
        }
    }
}

/// How long the longest proper prefix of `pattern` is that `text` ends with (0: none), when
/// cutting there leaves a char boundary.
fn partial_tail(text: &str, pattern: &str) -> Option<usize> {
    let t = text.as_bytes();
    let p = pattern.as_bytes();
    (1..p.len()).rev().find(|&k| {
        k <= t.len()
            && t[t.len() - k..].eq_ignore_ascii_case(&p[..k])
            && text.is_char_boundary(t.len() - k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-7f3a9c0d";

    #[test]
    fn every_secret_is_masked_wherever_it_occurs() {
        let r = Redactor::new([KEY, "tenant-42"]);
        assert_eq!(
            r.redact(&format!(
                "authorization: Bearer {KEY}\nx-t: tenant-42, again {KEY}"
            )),
            "authorization: Bearer ***\nx-t: ***, again ***"
        );
    }

    #[test]
    fn matching_ignores_ascii_case() {
        let r = Redactor::new([KEY]);
        assert_eq!(r.redact(&KEY.to_uppercase()), "***");
    }

    #[test]
    fn json_escaped_values_are_masked() {
        let r = Redactor::new([r#"a"b\c/d"#]);
        assert_eq!(r.redact(r#"{"h":"a\"b\\c/d"}"#), r#"{"h":"***"}"#);
        assert_eq!(r.redact(r#"{"h":"a\"b\\c\/d"}"#), r#"{"h":"***"}"#);
    }

    #[test]
    fn short_values_are_left_alone() {
        let r = Redactor::new(["1", "on", "  "]);
        assert_eq!(r.redact("http 401 on"), "http 401 on");
    }

    #[test]
    fn text_without_secrets_is_not_copied() {
        let r = Redactor::new([KEY]);
        assert!(matches!(r.redact("plain"), Cow::Borrowed("plain")));
        assert!(matches!(Redactor::default().redact(KEY), Cow::Borrowed(_)));
    }

    #[test]
    fn cut_text_loses_the_start_of_a_secret_at_its_end() {
        let r = Redactor::new([KEY]);
        let full = format!("Bearer {KEY} and more");
        for cut in 0..full.len() {
            let shown = r.redact_cut(&full[..cut]);
            assert!(!shown.contains("sk-"), "cut {cut}: {shown}");
            assert!(
                full.starts_with(&shown.replace(MASK, KEY)),
                "cut {cut}: {shown}"
            );
        }
        assert_eq!(r.redact_cut("Bearer sk-li"), "Bearer ");
        assert_eq!(r.redact_cut("Bearer x"), "Bearer x");
    }

    #[test]
    fn cut_text_ending_in_a_full_secret_then_a_partial_one_loses_both() {
        assert_eq!(Redactor::new(["abcdef"]).redact_cut("x abcdef"), "x ***");
        let r = Redactor::new(["abcdef", "efgh1234"]);
        assert_eq!(r.redact_cut("x abcdefgh12"), "x ");
    }
}
