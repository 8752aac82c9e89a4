//! Request generator: *what* each request asks for.
//!
//! Uniform prompts overstate throughput: real traffic is a mix of classes with long-tailed
//! lengths, and the few long prompts dominate KV-cache use and prefill time. So a workload is
//! either a weighted mix of classes whose input/output lengths are drawn from clipped
//! distributions (the defaults are the reference article's production-derived chat / code /
//! summarization numbers), or a replay of real prompts from a corpus file (JSONL or ShareGPT).
//!
//! Synthesized prompts use the rule of thumb of **~4 characters per token** of ordinary English
//! (BPE tokenizers of the GPT/Llama families land within about ±20% of it on English prose). The
//! generator aims for `4 × input_tokens` characters; the server's `usage.prompt_tokens`, when it
//! reports one, is the truth the recorder keeps. Prompts are slices of one long English-like base
//! text built once per process, so a request costs one allocation and a copy, cheap enough for
//! thousands of requests per second. Each prompt starts with a few words drawn from the run's
//! rng, so equal-length prompts do not all share a prefix (which a prefix cache would serve
//! without prefill, flattering the server); corpus prompts are sent as they are.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rand::Rng;
use rand::rngs::StdRng;
use rand::{SeedableRng, seq::IndexedRandom};
use rand_distr::{Distribution, StandardNormal};
use serde::Deserialize;

use super::schedule::TraceEntry;

/// One request to send, generated ahead of its intended start (CPU work stays off the request
/// path).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    /// Workload class (`chat`, `code`, `summarization`, `corpus`, `trace`).
    pub class: Arc<str>,
    /// Prompt text (for the chat API it becomes one user message).
    pub prompt: String,
    /// Approximate prompt length in tokens (what the generator aimed for).
    pub input_tokens: u32,
    /// `max_tokens` to ask for.
    pub max_tokens: u32,
}

/// Characters per token assumed when synthesizing prompts and estimating corpus prompt lengths.
pub const CHARS_PER_TOKEN: usize = 4;

/// `max_tokens` for a corpus JSONL line without one (the article's chat output mean).
pub const DEFAULT_MAX_TOKENS: u32 = 128;

/// Bounds on `max_tokens` derived from a ShareGPT answer (answer chars / 4, clipped).
pub const SHAREGPT_MAX_TOKENS: (u32, u32) = (16, 4096);

/// The built-in class names, for parsing and suggestions.
pub const CLASSES: [&str; 3] = ["chat", "code", "summarization"];

/// Errors from building a workload (mix strings and corpus files).
#[derive(thiserror::Error, Debug)]
pub enum WorkloadError {
    #[error("unknown workload class \"{name}\"{hint}")]
    UnknownClass { name: String, hint: String },
    #[error("invalid workload mix item \"{item}\": {reason}")]
    InvalidMix { item: String, reason: String },
    #[error(
        "invalid fixed workload \"{text}\": {reason} (expected fixed:IN:OUT, e.g. fixed:128:32)"
    )]
    InvalidFixed { text: String, reason: String },
    #[error("invalid length distribution: {0}")]
    InvalidLength(String),
    #[error("cannot read corpus {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    CorpusLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("corpus {} has no usable prompts", path.display())]
    EmptyCorpus { path: PathBuf },
}

/// A length distribution in tokens. Draws are rounded and clipped to `[min, max]`: clipping keeps
/// the long tail realistic but bounded (no 10^6-token prompt), at the price of a small shift of
/// the mean (e.g. chat input, mean 256 / sd 200 / min 10, averages about 268).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LengthDist {
    Fixed(u32),
    ClippedNormal {
        mean: f64,
        std: f64,
        min: u32,
        max: u32,
    },
    /// Log-normal with the given mean and standard deviation (before clipping): a heavier right
    /// tail than the normal, and never negative.
    ClippedLogNormal {
        mean: f64,
        std: f64,
        min: u32,
        max: u32,
    },
}

impl LengthDist {
    /// Checks the parameters (finite, positive where needed, `min <= max`).
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let (mean, std, min, max, log) = match *self {
            LengthDist::Fixed(_) => return Ok(()),
            LengthDist::ClippedNormal {
                mean,
                std,
                min,
                max,
            } => (mean, std, min, max, false),
            LengthDist::ClippedLogNormal {
                mean,
                std,
                min,
                max,
            } => (mean, std, min, max, true),
        };
        let bad = |what: String| Err(WorkloadError::InvalidLength(what));
        if !mean.is_finite() || (log && mean <= 0.0) {
            return bad(format!(
                "mean {mean} must be finite{}",
                if log { " and > 0" } else { "" }
            ));
        }
        if !std.is_finite() || std < 0.0 {
            return bad(format!("standard deviation {std} must be finite and >= 0"));
        }
        if min > max {
            return bad(format!("min {min} is greater than max {max}"));
        }
        Ok(())
    }

    /// Draws one length.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let (x, min, max) = match *self {
            LengthDist::Fixed(n) => return n,
            LengthDist::ClippedNormal {
                mean,
                std,
                min,
                max,
            } => {
                let z: f64 = StandardNormal.sample(rng);
                (mean + std * z, min, max)
            }
            LengthDist::ClippedLogNormal {
                mean,
                std,
                min,
                max,
            } => {
                let sigma2 = (1.0 + (std / mean).powi(2)).ln();
                let mu = mean.ln() - sigma2 / 2.0;
                let z: f64 = StandardNormal.sample(rng);
                ((mu + sigma2.sqrt() * z).exp(), min, max)
            }
        };
        // NaN (from unvalidated parameters) clamps to min rather than poisoning the run.
        let x = if x.is_nan() { f64::from(min) } else { x };
        (x.round().clamp(f64::from(min), f64::from(max))) as u32
    }
}

/// One class of a mix.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadClass {
    pub name: Arc<str>,
    /// Normalized weight (the weights of a mix sum to 1).
    pub weight: f64,
    pub input: LengthDist,
    pub output: LengthDist,
}

impl WorkloadClass {
    /// A built-in class (`chat`, `code`, `summarization`) with the article's clipped-normal
    /// input/output lengths, or `None` for an unknown name.
    pub fn builtin(name: &str, weight: f64) -> Option<WorkloadClass> {
        let n = |mean, std, min, max| LengthDist::ClippedNormal {
            mean,
            std,
            min,
            max,
        };
        let (input, output) = match name {
            "chat" => (n(256.0, 200.0, 10, 4096), n(128.0, 100.0, 10, 2048)),
            "code" => (n(512.0, 300.0, 50, 8192), n(256.0, 200.0, 20, 4096)),
            "summarization" => (n(2048.0, 1000.0, 500, 16384), n(256.0, 128.0, 50, 1024)),
            _ => return None,
        };
        Some(WorkloadClass {
            name: Arc::from(name),
            weight,
            input,
            output,
        })
    }
}

/// A weighted mix of classes (weights normalized, zero-weight classes dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    classes: Vec<WorkloadClass>,
    /// Running sums of the normalized weights, for one uniform draw per request.
    cumulative: Vec<f64>,
}

impl Mix {
    /// Builds a mix; weights must be finite and >= 0 with a positive sum; lengths must validate.
    pub fn new(classes: Vec<WorkloadClass>) -> Result<Mix, WorkloadError> {
        for c in &classes {
            if !c.weight.is_finite() || c.weight < 0.0 {
                return Err(WorkloadError::InvalidMix {
                    item: c.name.to_string(),
                    reason: format!("weight {} must be a finite number >= 0", c.weight),
                });
            }
            c.input.validate()?;
            c.output.validate()?;
        }
        let total: f64 = classes.iter().map(|c| c.weight).sum();
        if total <= 0.0 {
            return Err(WorkloadError::InvalidMix {
                item: classes
                    .iter()
                    .map(|c| c.name.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                reason: "the weights must not all be zero".into(),
            });
        }
        let mut classes: Vec<WorkloadClass> =
            classes.into_iter().filter(|c| c.weight > 0.0).collect();
        let mut acc = 0.0;
        let mut cumulative = Vec::with_capacity(classes.len());
        for c in &mut classes {
            c.weight /= total;
            acc += c.weight;
            cumulative.push(acc);
        }
        Ok(Mix {
            classes,
            cumulative,
        })
    }

    pub fn classes(&self) -> &[WorkloadClass] {
        &self.classes
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> &WorkloadClass {
        let u: f64 = rng.random();
        let i = self.cumulative.partition_point(|&c| c <= u);
        // u < 1 but the last running sum may round to just below 1.
        &self.classes[i.min(self.classes.len() - 1)]
    }
}

/// One prompt read from a corpus file.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusEntry {
    pub prompt: String,
    /// Estimated from the prompt's length at [`CHARS_PER_TOKEN`].
    pub input_tokens: u32,
    pub max_tokens: u32,
}

/// Real prompts, drawn uniformly at random.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    entries: Vec<CorpusEntry>,
    class: Arc<str>,
}

impl Corpus {
    pub fn entries(&self) -> &[CorpusEntry] {
        &self.entries
    }
}

/// What requests look like: a class mix with synthesized prompts, or a corpus of real ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    Mix(Mix),
    Corpus(Corpus),
}

impl Workload {
    /// chat 0.7 / code 0.2 / summarization 0.1 with the article's clipped-normal lengths.
    pub fn default_mix() -> Workload {
        let classes = [("chat", 0.7), ("code", 0.2), ("summarization", 0.1)]
            .into_iter()
            .filter_map(|(n, w)| WorkloadClass::builtin(n, w))
            .collect();
        Workload::Mix(Mix::new(classes).expect("built-in mix is valid"))
    }

    /// Parses `"chat=0.7,code=0.2,summarization=0.1"` (weights are normalized, so `chat=7,code=3`
    /// works too; a bare name means weight 1) or `"fixed:IN:OUT"` (every request has IN prompt
    /// tokens and asks for OUT, e.g. `fixed:128:32` for benchmarks; class name `fixed`).
    pub fn parse_mix(s: &str) -> Result<Workload, WorkloadError> {
        let text = s.trim();
        if let Some(rest) = text.strip_prefix("fixed:") {
            return parse_fixed(text, rest);
        }
        let mut classes: Vec<WorkloadClass> = Vec::new();
        for raw in text.split(',') {
            let item = raw.trim();
            let invalid = |reason: String| WorkloadError::InvalidMix {
                item: item.to_string(),
                reason,
            };
            if item.is_empty() {
                return Err(invalid("empty item (expected e.g. chat=0.7)".into()));
            }
            let (name, weight) = match item.split_once('=') {
                Some((n, w)) => {
                    let w = w.trim();
                    let weight: f64 = w
                        .parse()
                        .map_err(|_| invalid(format!("weight \"{w}\" is not a number")))?;
                    (n.trim(), weight)
                }
                None => (item, 1.0),
            };
            if !weight.is_finite() || weight < 0.0 {
                return Err(invalid(format!("weight {weight} must be finite and >= 0")));
            }
            let lower = name.to_ascii_lowercase();
            if classes.iter().any(|c| *c.name == *lower) {
                return Err(invalid(format!("class \"{lower}\" appears twice")));
            }
            let class =
                WorkloadClass::builtin(&lower, weight).ok_or_else(|| unknown_class(name))?;
            classes.push(class);
        }
        Mix::new(classes).map(Workload::Mix)
    }

    /// Loads real prompts. Two formats, told apart by the first non-blank character:
    /// - JSONL: one object per line, `{"prompt": "...", "max_tokens": n}` (`max_tokens` optional,
    ///   default [`DEFAULT_MAX_TOKENS`]; other fields ignored; blank lines skipped);
    /// - a ShareGPT JSON array, `[{"conversations": [{"from": "human", "value": ...},
    ///   {"from": "gpt", "value": ...}, ...]}, ...]`: the first human turn is the prompt and
    ///   `max_tokens` is the following gpt answer's length / 4 chars, clipped to
    ///   [`SHAREGPT_MAX_TOKENS`]. Conversations without a human turn are skipped (real ShareGPT
    ///   dumps contain some).
    ///
    /// Errors name `file:line` and quote the offending value; a corpus with no prompts is an
    /// error. The whole file is read into memory (a full ShareGPT dump is a few hundred MB).
    pub fn load_corpus(path: &Path) -> Result<Workload, WorkloadError> {
        // Capped, regular files only: `--corpus /dev/zero` read forever.
        let text = crate::limits::read_text_capped(path, crate::limits::MAX_CORPUS_BYTES).map_err(
            |e| WorkloadError::Io {
                path: path.to_path_buf(),
                source: e.into_io(),
            },
        )?;
        let entries = if text.trim_start().starts_with('[') {
            parse_sharegpt(path, &text)?
        } else {
            parse_jsonl(path, &text)?
        };
        if entries.is_empty() {
            return Err(WorkloadError::EmptyCorpus {
                path: path.to_path_buf(),
            });
        }
        Ok(Workload::Corpus(Corpus {
            entries,
            class: Arc::from("corpus"),
        }))
    }

    /// Draws the next request.
    pub fn generate(&self, rng: &mut impl Rng) -> RequestSpec {
        match self {
            Workload::Mix(mix) => {
                let class = mix.pick(rng);
                let input_tokens = class.input.sample(rng);
                let max_tokens = class.output.sample(rng);
                RequestSpec {
                    class: Arc::clone(&class.name),
                    prompt: synth_prompt(input_tokens, rng),
                    input_tokens,
                    max_tokens,
                }
            }
            Workload::Corpus(corpus) => {
                // `load_corpus` guarantees at least one entry; an empty hand-built corpus gets an
                // empty prompt rather than a panic.
                match corpus.entries.choose(rng) {
                    Some(e) => RequestSpec {
                        class: Arc::clone(&corpus.class),
                        prompt: e.prompt.clone(),
                        input_tokens: e.input_tokens,
                        max_tokens: e.max_tokens,
                    },
                    None => RequestSpec {
                        class: Arc::clone(&corpus.class),
                        prompt: String::new(),
                        input_tokens: 0,
                        max_tokens: DEFAULT_MAX_TOKENS,
                    },
                }
            }
        }
    }

    /// The request for one replayed trace entry: a synthesized prompt of the entry's input length
    /// and `max_tokens` = its output length (class `trace`), whatever the workload.
    pub fn from_trace(&self, entry: &TraceEntry, rng: &mut impl Rng) -> RequestSpec {
        static TRACE: OnceLock<Arc<str>> = OnceLock::new();
        RequestSpec {
            class: Arc::clone(TRACE.get_or_init(|| Arc::from("trace"))),
            prompt: synth_prompt(entry.input_tokens, rng),
            input_tokens: entry.input_tokens,
            max_tokens: entry.output_tokens,
        }
    }
}

fn parse_fixed(text: &str, rest: &str) -> Result<Workload, WorkloadError> {
    let invalid = |reason: String| WorkloadError::InvalidFixed {
        text: text.to_string(),
        reason,
    };
    let (i, o) = rest
        .split_once(':')
        .ok_or_else(|| invalid("missing ':' between IN and OUT".into()))?;
    let num = |v: &str, what: &str| -> Result<u32, WorkloadError> {
        match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(invalid(format!(
                "{what} \"{}\" must be a whole number of tokens > 0",
                v.trim()
            ))),
        }
    };
    let class = WorkloadClass {
        name: Arc::from("fixed"),
        weight: 1.0,
        input: LengthDist::Fixed(num(i, "IN")?),
        output: LengthDist::Fixed(num(o, "OUT")?),
    };
    Mix::new(vec![class]).map(Workload::Mix)
}

fn unknown_class(name: &str) -> WorkloadError {
    let lower = name.to_ascii_lowercase();
    let prefix = CLASSES
        .iter()
        .find(|c| !lower.is_empty() && c.starts_with(&lower));
    let close = CLASSES
        .iter()
        .map(|c| (strsim::levenshtein(&lower, c), c))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, c)| c);
    let hint = match prefix.or(close) {
        Some(c) => format!(" (did you mean \"{c}\"?)"),
        None => format!(" (known: {}, or fixed:IN:OUT)", CLASSES.join(", ")),
    };
    WorkloadError::UnknownClass {
        name: name.to_string(),
        hint,
    }
}

fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(CHARS_PER_TOKEN)).unwrap_or(u32::MAX)
}

#[derive(Deserialize)]
struct JsonlLine {
    prompt: String,
    #[serde(default)]
    max_tokens: Option<u32>,
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<CorpusEntry>, WorkloadError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| WorkloadError::CorpusLine {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let parsed: JsonlLine = serde_json::from_str(line).map_err(|e| {
            err(format!(
                "{} (column {})",
                strip_position(&e.to_string()),
                e.column()
            ))
        })?;
        if parsed.prompt.trim().is_empty() {
            return Err(err("empty \"prompt\"".into()));
        }
        let max_tokens = match parsed.max_tokens {
            Some(0) => return Err(err("\"max_tokens\" must be > 0, found 0".into())),
            Some(n) => n,
            None => DEFAULT_MAX_TOKENS,
        };
        entries.push(CorpusEntry {
            input_tokens: estimate_tokens(&parsed.prompt),
            prompt: parsed.prompt,
            max_tokens,
        });
    }
    Ok(entries)
}

#[derive(Deserialize)]
struct ShareGptConversation {
    #[serde(default)]
    conversations: Vec<ShareGptTurn>,
}

#[derive(Deserialize)]
struct ShareGptTurn {
    from: String,
    value: String,
}

fn parse_sharegpt(path: &Path, text: &str) -> Result<Vec<CorpusEntry>, WorkloadError> {
    let convs: Vec<ShareGptConversation> =
        serde_json::from_str(text).map_err(|e| WorkloadError::CorpusLine {
            path: path.to_path_buf(),
            line: e.line(),
            message: format!(
                "{} (column {}; expected a ShareGPT array of {{\"conversations\": [...]}})",
                strip_position(&e.to_string()),
                e.column()
            ),
        })?;
    let (lo, hi) = SHAREGPT_MAX_TOKENS;
    let entries = convs
        .into_iter()
        .filter_map(|c| {
            let mut turns = c.conversations.into_iter();
            let human = turns.by_ref().find(|t| t.from == "human")?;
            if human.value.trim().is_empty() {
                return None;
            }
            let max_tokens = match turns.next().filter(|t| t.from == "gpt") {
                Some(answer) => estimate_tokens(&answer.value).clamp(lo, hi),
                None => DEFAULT_MAX_TOKENS,
            };
            Some(CorpusEntry {
                input_tokens: estimate_tokens(&human.value),
                prompt: human.value,
                max_tokens,
            })
        })
        .collect();
    Ok(entries)
}

/// serde_json appends " at line L column C"; we report the position ourselves.
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

/// Ordinary English words for the synthetic base text (average ~5 letters, ~1 token each for
/// common tokenizers, which with the spaces and punctuation comes to ~4–5 chars per token).
const WORDS: &[&str] = &[
    "the", "system", "request", "model", "server", "data", "time", "value", "user", "network",
    "memory", "cluster", "report", "result", "because", "which", "would", "could", "should",
    "about", "after", "before", "under", "other", "first", "second", "there", "their", "these",
    "those", "small", "large", "quick", "simple", "common", "people", "water", "house", "world",
    "place", "group", "number", "point", "state", "service", "question", "answer", "problem",
    "method", "process", "record", "table", "change", "design", "market", "price", "order",
    "level", "power", "light", "river", "city", "country", "story", "history", "science",
    "language", "program", "machine", "engine", "signal", "window", "letter", "paper", "book",
    "music", "family", "friend", "school", "garden", "morning", "evening", "summer", "winter",
    "and", "or", "but", "with", "from", "into", "over", "through", "while", "where", "when", "is",
    "was", "are", "were", "has", "have", "had", "can", "will", "may", "must", "often", "always",
    "never", "really", "quite", "rather", "almost", "also", "still", "again", "very", "make",
    "take", "give", "find", "keep", "show", "build", "write", "read", "learn", "move", "start",
    "stop", "open", "close", "carry", "follow", "explain", "describe", "measure", "improve",
    "notice", "return", "receive", "include", "consider", "provide", "support", "a", "an", "of",
    "to", "in", "on", "for", "at", "by", "as", "it", "we", "they", "this", "that", "not", "all",
    "each", "every", "many", "most", "some", "few", "more", "less", "good", "new", "old", "long",
    "short", "high", "low", "early", "late", "clear", "careful", "useful", "stable", "steady",
    "recent", "final", "general", "special", "public", "private",
];

/// Length of the shared base text: covers 64k-token prompts with one copy; longer ones wrap.
const BASE_CHARS: usize = 1 << 18;

/// The shared base text: pseudo-random sentences from [`WORDS`] (fixed seed, so every run and
/// every process sees the same text). ASCII only, so any byte offset is a char boundary.
fn base_text() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x0FA0_1711);
        let mut s = String::with_capacity(BASE_CHARS + 64);
        while s.len() < BASE_CHARS {
            let n = rng.random_range(6..18);
            for i in 0..n {
                let w = WORDS[rng.random_range(0..WORDS.len())];
                if i == 0 {
                    let mut c = w.chars();
                    if let Some(f) = c.next() {
                        s.push(f.to_ascii_uppercase());
                        s.push_str(c.as_str());
                    }
                } else {
                    s.push(' ');
                    s.push_str(w);
                }
            }
            s.push_str(if rng.random_range(0..5) == 0 {
                ", "
            } else {
                ". "
            });
        }
        s
    })
}

/// A prompt of about `CHARS_PER_TOKEN × input_tokens` characters: three words drawn from `rng`
/// (~2^23 distinct openings, so prefix caches see distinct prompts) followed by a slice of the
/// base text starting at a random word.
fn synth_prompt<R: Rng + ?Sized>(input_tokens: u32, rng: &mut R) -> String {
    let target = (input_tokens as usize)
        .saturating_mul(CHARS_PER_TOKEN)
        .max(1);
    let mut s = String::with_capacity(target + 16);
    for _ in 0..3 {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push(' ');
    }
    if s.len() >= target {
        s.truncate(target);
        return s;
    }
    let base = base_text().as_bytes();
    let mut pos = rng.random_range(0..base.len());
    // Start at a word: skip to just after the next space.
    while pos < base.len() && base[pos] != b' ' {
        pos += 1;
    }
    pos = (pos + 1) % base.len();
    while s.len() < target {
        let take = (target - s.len()).min(base.len() - pos);
        // The base text is ASCII, so every byte range is valid UTF-8.
        s.push_str(std::str::from_utf8(&base[pos..pos + take]).unwrap_or_default());
        pos = 0;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::io::Write;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(1234)
    }

    fn mix_of(w: &Workload) -> &Mix {
        match w {
            Workload::Mix(m) => m,
            Workload::Corpus(_) => panic!("expected a mix"),
        }
    }

    /// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), for the expected clipped-normal mean.
    fn erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let y = 1.0
            - t * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))))
                * (-x * x).exp();
        y.copysign(x)
    }

    fn clipped_normal_mean(mean: f64, std: f64, min: f64, max: f64) -> f64 {
        let cdf = |z: f64| 0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2));
        let pdf = |z: f64| (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let (a, b) = ((min - mean) / std, (max - mean) / std);
        min * cdf(a) + max * (1.0 - cdf(b)) + mean * (cdf(b) - cdf(a)) + std * (pdf(a) - pdf(b))
    }

    #[test]
    fn default_mix_class_frequencies_match_weights() {
        let w = Workload::default_mix();
        let mut r = rng();
        let n = 10_000;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..n {
            *counts
                .entry(w.generate(&mut r).class.to_string())
                .or_default() += 1;
        }
        // Binomial sd is sqrt(p(1-p)/n): 0.0046 for 0.7, 0.004 for 0.2, 0.003 for 0.1;
        // 0.02 is over 4 sd for each.
        for (class, p) in [("chat", 0.7), ("code", 0.2), ("summarization", 0.1)] {
            let f = counts.get(class).copied().unwrap_or(0) as f64 / n as f64;
            assert!((f - p).abs() < 0.02, "{class}: {f}");
        }
    }

    #[test]
    fn lengths_are_clipped_and_means_match_the_clipped_normal() {
        let w = Workload::default_mix();
        let mut r = rng();
        let n = 20_000;
        for class in mix_of(&w).classes() {
            for dist in [class.input, class.output] {
                let LengthDist::ClippedNormal {
                    mean,
                    std,
                    min,
                    max,
                } = dist
                else {
                    panic!("built-ins are clipped normals")
                };
                let xs: Vec<u32> = (0..n).map(|_| dist.sample(&mut r)).collect();
                assert!(xs.iter().all(|&x| (min..=max).contains(&x)));
                let got = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
                let want = clipped_normal_mean(mean, std, f64::from(min), f64::from(max));
                // Standard error <= std/sqrt(n); 4 of them plus 0.5 for rounding to integers.
                let tol = 4.0 * std / (n as f64).sqrt() + 0.5;
                assert!((got - want).abs() < tol, "{}: {got} vs {want}", class.name);
            }
        }
        // Clipping does bind: chat input (mean 256, sd 200, min 10) is at its floor ~11% of the
        // time.
        let chat = &mix_of(&w).classes()[0];
        let at_min = (0..n).filter(|_| chat.input.sample(&mut r) == 10).count();
        assert!((at_min as f64 / n as f64 - 0.109).abs() < 0.02, "{at_min}");
    }

    #[test]
    fn lognormal_lengths_have_the_configured_mean() {
        let d = LengthDist::ClippedLogNormal {
            mean: 300.0,
            std: 300.0,
            min: 1,
            max: 1_000_000,
        };
        let mut r = rng();
        let n = 40_000;
        let m = (0..n).map(|_| f64::from(d.sample(&mut r))).sum::<f64>() / n as f64;
        // Standard error 300/sqrt(40000) = 1.5; allow 4 of them plus rounding.
        assert!((m - 300.0).abs() < 6.5, "{m}");
    }

    #[test]
    fn prompt_length_is_four_chars_per_token_within_ten_percent() {
        let mut r = rng();
        for tokens in [10, 50, 256, 2048, 16_384, 100_000] {
            let p = synth_prompt(tokens, &mut r);
            let want = 4.0 * f64::from(tokens);
            let got = p.len() as f64;
            assert!((got - want).abs() <= 0.1 * want, "{tokens}: {got}");
            assert!(p.is_ascii() && !p.contains("  "));
        }
    }

    #[test]
    fn equal_length_prompts_have_distinct_openings() {
        let mut r = rng();
        let openings: HashSet<String> = (0..1000)
            .map(|_| synth_prompt(100, &mut r).chars().take(24).collect())
            .collect();
        // ~2^23 three-word openings: expected collisions among 1000 are ~0.06.
        assert!(openings.len() >= 995, "{}", openings.len());
    }

    #[test]
    fn generated_requests_are_reproducible_from_the_seed() {
        let w = Workload::default_mix();
        let a: Vec<RequestSpec> = {
            let mut r = rng();
            (0..50).map(|_| w.generate(&mut r)).collect()
        };
        let b: Vec<RequestSpec> = {
            let mut r = rng();
            (0..50).map(|_| w.generate(&mut r)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn parse_mix_normalizes_weights_and_drops_zeros() {
        let w = Workload::parse_mix(" chat=7, code = 3,summarization=0").unwrap();
        let m = mix_of(&w);
        let names: Vec<&str> = m.classes().iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["chat", "code"]);
        assert!((m.classes()[0].weight - 0.7).abs() < 1e-12);
        let w = Workload::parse_mix("code").unwrap();
        let mut r = rng();
        assert!((0..100).all(|_| &*w.generate(&mut r).class == "code"));
    }

    #[test]
    fn parse_mix_errors_suggest_the_class_and_quote_values() {
        let msg = Workload::parse_mix("chta=0.5,code=0.5")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"chta\"") && msg.contains("did you mean \"chat\""),
            "{msg}"
        );
        let msg = Workload::parse_mix("summ=1").unwrap_err().to_string();
        assert!(msg.contains("did you mean \"summarization\""), "{msg}");
        let msg = Workload::parse_mix("poetry=1").unwrap_err().to_string();
        assert!(msg.contains("known: chat, code, summarization"), "{msg}");
        let msg = Workload::parse_mix("chat=lots").unwrap_err().to_string();
        assert!(msg.contains("\"lots\""), "{msg}");
        assert!(Workload::parse_mix("chat=-1").is_err());
        assert!(Workload::parse_mix("chat=0").is_err());
        assert!(Workload::parse_mix("chat=1,chat=2").is_err());
        assert!(Workload::parse_mix("chat=1,,code=1").is_err());
    }

    #[test]
    fn fixed_workload_has_exact_lengths() {
        let w = Workload::parse_mix("fixed:128:32").unwrap();
        let mut r = rng();
        for _ in 0..100 {
            let req = w.generate(&mut r);
            assert_eq!(
                (&*req.class, req.input_tokens, req.max_tokens),
                ("fixed", 128, 32)
            );
            assert!((req.prompt.len() as f64 - 512.0).abs() <= 51.2);
        }
        let msg = Workload::parse_mix("fixed:128:x").unwrap_err().to_string();
        assert!(
            msg.contains("\"x\"") && msg.contains("fixed:128:x"),
            "{msg}"
        );
        assert!(Workload::parse_mix("fixed:128").is_err());
        assert!(Workload::parse_mix("fixed:0:5").is_err());
    }

    #[test]
    fn from_trace_matches_the_entry_lengths() {
        let w = Workload::default_mix();
        let e = TraceEntry {
            at_s: 1.0,
            input_tokens: 300,
            output_tokens: 77,
        };
        let req = w.from_trace(&e, &mut rng());
        assert_eq!(
            (&*req.class, req.input_tokens, req.max_tokens),
            ("trace", 300, 77)
        );
        assert!((req.prompt.len() as f64 - 1200.0).abs() <= 120.0);
    }

    fn write_tmp(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    fn corpus(w: &Workload) -> &Corpus {
        match w {
            Workload::Corpus(c) => c,
            Workload::Mix(_) => panic!("expected a corpus"),
        }
    }

    #[test]
    fn jsonl_corpus_is_read_with_default_max_tokens() {
        let f = write_tmp(
            "{\"prompt\": \"Explain TCP slow start.\", \"max_tokens\": 64}\n\
             \n\
             {\"prompt\": \"Write a haiku about GPUs\", \"id\": 7}\n",
        );
        let w = Workload::load_corpus(f.path()).unwrap();
        let e = corpus(&w).entries();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].max_tokens, e[0].input_tokens), (64, 6)); // 23 chars / 4, rounded up
        assert_eq!(e[1].max_tokens, DEFAULT_MAX_TOKENS);
        let mut r = rng();
        let req = w.generate(&mut r);
        assert_eq!(&*req.class, "corpus");
        assert!(e.iter().any(|x| x.prompt == req.prompt));
    }

    #[test]
    fn jsonl_corpus_errors_name_file_line_and_value() {
        let f = write_tmp("{\"prompt\": \"ok\"}\n{\"prompt\": \"ok\", \"max_tokens\": -5}\n");
        let msg = Workload::load_corpus(f.path()).unwrap_err().to_string();
        let name = f.path().display().to_string();
        assert!(
            msg.contains(&format!("{name}:2:")) && msg.contains("-5"),
            "{msg}"
        );
        let f = write_tmp("{\"prompt\": 42}\n");
        let msg = Workload::load_corpus(f.path()).unwrap_err().to_string();
        assert!(msg.contains(":1:") && msg.contains("42"), "{msg}");
        let f = write_tmp("{\"text\": \"hi\"}\n");
        let msg = Workload::load_corpus(f.path()).unwrap_err().to_string();
        assert!(msg.contains("prompt"), "{msg}");
        let f = write_tmp("{\"prompt\": \"  \"}\n");
        assert!(Workload::load_corpus(f.path()).is_err());
        let f = write_tmp("\n \n");
        assert!(matches!(
            Workload::load_corpus(f.path()),
            Err(WorkloadError::EmptyCorpus { .. })
        ));
    }

    #[test]
    fn sharegpt_uses_first_human_turn_and_answer_length() {
        let answer = "x".repeat(400);
        let long = "y".repeat(100_000);
        let text = format!(
            r#"[
  {{"id": "a", "conversations": [
     {{"from": "system", "value": "be nice"}},
     {{"from": "human", "value": "What is a KV cache?"}},
     {{"from": "gpt", "value": "{answer}"}},
     {{"from": "human", "value": "second question"}}]}},
  {{"id": "b", "conversations": [{{"from": "gpt", "value": "no human turn"}}]}},
  {{"id": "c", "conversations": [
     {{"from": "human", "value": "tiny"}}, {{"from": "gpt", "value": "ok"}}]}},
  {{"id": "d", "conversations": [
     {{"from": "human", "value": "huge"}}, {{"from": "gpt", "value": "{long}"}}]}}
]"#
        );
        let f = write_tmp(&text);
        let w = Workload::load_corpus(f.path()).unwrap();
        let e = corpus(&w).entries();
        assert_eq!(
            e.len(),
            3,
            "the conversation without a human turn is skipped"
        );
        assert_eq!(e[0].prompt, "What is a KV cache?");
        assert_eq!(e[0].max_tokens, 100); // 400 chars / 4
        assert_eq!(e[1].max_tokens, SHAREGPT_MAX_TOKENS.0); // clipped up
        assert_eq!(e[2].max_tokens, SHAREGPT_MAX_TOKENS.1); // clipped down
    }

    #[test]
    fn sharegpt_errors_name_the_line() {
        let f = write_tmp(
            "[\n  {\"conversations\": [\n    {\"from\": \"human\", \"value\": 17}\n  ]}\n]\n",
        );
        let msg = Workload::load_corpus(f.path()).unwrap_err().to_string();
        let name = f.path().display().to_string();
        assert!(
            msg.contains(&format!("{name}:3:")) && msg.contains("17"),
            "{msg}"
        );
        let f = write_tmp("[]");
        assert!(matches!(
            Workload::load_corpus(f.path()),
            Err(WorkloadError::EmptyCorpus { .. })
        ));
    }

    #[test]
    fn missing_corpus_file_is_an_io_error_naming_the_path() {
        let msg = Workload::load_corpus(Path::new("/nonexistent/corpus.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/corpus.jsonl"), "{msg}");
    }
}
