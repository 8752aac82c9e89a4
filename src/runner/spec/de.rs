//! serde over the located tree: deserializes a `serde_json::Value` built from [`Node`]s and turns
//! serde's error (with the path `serde_path_to_error` tracked) into a located [`SpecError`].
//!
//! A value may be assembled from more than one file (a fault definition with `set:` overrides
//! from the experiment), so positions are looked up through [`Source`] layers: the first layer
//! that holds the offending key wins.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{Location, SpecError};
use super::suggest::{closest, expansion};
use super::yaml::{Doc, Node, Seg, path_string};
use crate::duration;

/// Where a value came from: `(document, path of the value in it)`, most specific first.
#[derive(Clone)]
pub struct Source<'a> {
    pub layers: Vec<(&'a Doc, Vec<Seg>)>,
}

impl<'a> Source<'a> {
    pub fn new(doc: &'a Doc, base: Vec<Seg>) -> Source<'a> {
        Source {
            layers: vec![(doc, base)],
        }
    }

    fn layer(&self, path: &[Seg]) -> (&'a Doc, Vec<Seg>) {
        let full = |base: &Vec<Seg>, p: &[Seg]| [base.as_slice(), p].concat();
        let pick = self
            .layers
            .iter()
            .find(|(d, b)| d.root.get(&full(b, path)).is_some())
            .or_else(|| {
                self.layers
                    .iter()
                    .find(|(d, b)| d.root.get(&full(b, &path[..path.len().min(1)])).is_some())
            })
            .unwrap_or_else(|| self.layers.last().expect("a source has a layer"));
        (pick.0, full(&pick.1, path))
    }

    /// Position of the value at `path` (relative to the value's root).
    pub fn locate(&self, path: &[Seg]) -> Location {
        let (doc, full) = self.layer(path);
        doc.locate(&full)
    }

    /// Position of the key that ends `path`.
    pub fn locate_key(&self, path: &[Seg]) -> Location {
        let (doc, full) = self.layer(path);
        doc.locate_key(&full)
    }

    pub fn node(&self, path: &[Seg]) -> Option<&'a Node> {
        let (doc, full) = self.layer(path);
        doc.root.get(&full)
    }

    /// The full path (in the file that holds it) for messages.
    pub fn describe(&self, path: &[Seg]) -> String {
        let (_, full) = self.layer(path);
        if full.is_empty() {
            "the top level".into()
        } else {
            format!("'{}'", path_string(&full))
        }
    }
}

/// Deserializes `value` (which came from `src`) into `T`, locating any error.
pub fn from_value<T: DeserializeOwned>(value: Value, src: &Source) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path: Vec<Seg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                _ => None,
            })
            .collect();
        serde_error(&path, &e.into_inner().to_string(), src)
    })
}

/// The words between backticks in a serde message: `unknown field `x`, expected `a` or `b``.
fn ticked(msg: &str) -> Vec<String> {
    msg.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn serde_error(path: &[Seg], msg: &str, src: &Source) -> SpecError {
    let key_name = |p: &[Seg]| match p.last() {
        Some(Seg::Key(k)) => k.clone(),
        Some(Seg::Index(i)) => {
            let parent = p[..p.len() - 1]
                .iter()
                .rev()
                .find_map(|s| match s {
                    Seg::Key(k) => Some(k.as_str()),
                    _ => None,
                })
                .unwrap_or("list");
            format!("{parent}[{i}]")
        }
        None => "the top level".into(),
    };
    if msg.starts_with("unknown field") {
        let words = ticked(msg);
        let key = words.first().cloned().unwrap_or_default();
        let parent = match path.last() {
            Some(Seg::Key(k)) if *k == key => &path[..path.len() - 1],
            _ => path,
        };
        let mut full = parent.to_vec();
        full.push(Seg::Key(key.clone()));
        return SpecError::UnknownKey {
            at: src.locate_key(&full),
            context: src.describe(parent),
            suggestion: closest(&key, words[1..].iter().map(String::as_str))
                .or_else(|| expansion(&key, words[1..].iter().map(String::as_str))),
            key,
        };
    }
    if msg.starts_with("missing field") {
        return SpecError::MissingKey {
            at: src.locate(path),
            key: ticked(msg).first().cloned().unwrap_or_default(),
            context: src.describe(path),
        };
    }
    let node = src.node(path);
    let value = node.map(Node::quoted).unwrap_or_else(|| "(none)".into());
    if msg.starts_with("invalid duration ") || msg.contains("expected a duration") {
        let text = match node.map(|n| &n.data) {
            Some(super::yaml::NodeData::Scalar(Value::String(s))) => s.clone(),
            Some(super::yaml::NodeData::Scalar(v)) => v.to_string(),
            _ => value.clone(),
        };
        let reason = if node.and_then(Node::as_str).is_some() {
            duration::reason(&text)
        } else {
            "a number needs a unit (ms, s, m, h)".into()
        };
        return SpecError::BadDuration {
            at: src.locate(path),
            key: key_name(path),
            suggestion: duration::suggestion(&text),
            value: text,
            reason,
        };
    }
    let message = if msg.starts_with("unknown variant") {
        let words = ticked(msg);
        let got = words.first().cloned().unwrap_or_default();
        let known = words[1..].to_vec();
        match closest(&got, known.iter().map(String::as_str)) {
            Some(s) => format!("expected one of {}; did you mean '{s}'?", known.join(", ")),
            None => format!("expected one of {}", known.join(", ")),
        }
    } else {
        msg.replace('`', "'")
    };
    SpecError::WrongType {
        at: src.locate(path),
        key: key_name(path),
        value,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Dur;
    use serde::Deserialize;
    use std::path::Path;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        duration: Dur,
        #[serde(default)]
        count: u32,
    }

    fn err(yaml: &str) -> String {
        let doc = Doc::parse(Path::new("t.yaml"), yaml).unwrap();
        let src = Source::new(&doc, vec![]);
        from_value::<T>(doc.root.to_json(), &src)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_key_error_names_line_and_suggests_closest() {
        assert_eq!(
            err("duration: 3s\ndurtion: 4s\n"),
            "t.yaml:2:1: unknown key 'durtion' in the top level; did you mean 'duration'?"
        );
    }

    #[test]
    fn bad_duration_quotes_value_and_suggests_spelling() {
        assert_eq!(
            err("duration: 3 mintues\n"),
            "t.yaml:1:11: invalid duration '3 mintues' for 'duration': unknown unit 'mintues' (use ms, s, m, h); try 3m"
        );
        assert!(
            err("duration: 90\n").ends_with("; try 90s"),
            "{}",
            err("duration: 90\n")
        );
    }

    #[test]
    fn wrong_type_quotes_value() {
        assert_eq!(
            err("duration: 3s\ncount: many\n"),
            "t.yaml:2:8: invalid value 'many' for 'count': invalid type: string \"many\", expected u32"
        );
    }
}
