//! The YAML front end: source text → a tree of [`Node`]s that remember where they were written.
//!
//! A leaf module (it uses only `crate::limits` to read a file with a size cap): the experiment
//! reader (`runner::spec`) builds on it, and `analysis` reads its YAML inputs (cost tables,
//! bottleneck signals) through it without importing the runner.
//!
//! Why not deserialize straight from a YAML serde crate: serde forgets positions wherever it
//! buffers (the kind-tagged [`FaultSpec`](crate::fault::FaultSpec) enum, `set:` overrides merged
//! into a definition from another file), and semantic errors (an unknown host, an overlap) have
//! no serde position at all. So every error, serde's or ours, is located the same way: by a key
//! path looked up in this tree. The tree is converted to a `serde_json::Value` for serde, and
//! `serde_path_to_error` supplies the path of a serde error.

use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::Value;

use std::fmt;

/// Where in which file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(file: &Path, line: usize, column: usize) -> Location {
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A file that cannot be read, or text that is not YAML faultline accepts.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: invalid YAML: {message}")]
    Syntax { at: Location, message: String },
}

/// A YAML text as the loader sees it, as JSON (for schema checks and tooling).
pub fn to_json(text: &str) -> Result<Value, YamlError> {
    Ok(Doc::parse(Path::new("<text>"), text)?.root.to_json())
}

/// One step of a key path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// Renders a path the way a user would write it: `faults[2].fault.targets[0].host`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A position: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug)]
pub enum NodeData {
    Scalar(Value),
    Seq(Vec<Node>),
    /// Keys in file order, with the position of each key.
    Map(Vec<(String, Mark, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub mark: Mark,
    pub data: NodeData,
}

/// A parsed file: its path, its tree and a `serde_json` copy of it.
#[derive(Clone, Debug)]
pub struct Doc {
    pub path: PathBuf,
    pub root: Node,
}

impl Doc {
    /// Reads and parses `path`. An empty file is an empty mapping.
    pub fn read(path: &Path) -> Result<Doc, YamlError> {
        use crate::limits::{MAX_SPEC_BYTES, ReadError, read_text_capped};
        let text = read_text_capped(path, MAX_SPEC_BYTES).map_err(|e| match e {
            ReadError::Io { source, .. } => YamlError::Io {
                path: path.to_path_buf(),
                source,
            },
            ReadError::NotUtf8 { line, column, .. } => YamlError::Syntax {
                at: Location::new(path, line, column),
                message: "not UTF-8 text".into(),
            },
            e @ (ReadError::NotRegular { .. } | ReadError::TooBig { .. }) => YamlError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(
                    e.to_string()
                        .trim_start_matches(&format!("{}: ", path.display()))
                        .to_string(),
                ),
            },
        })?;
        Doc::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Doc, YamlError> {
        let docs = MarkedYaml::load_from_str(text).map_err(|e| YamlError::Syntax {
            at: Location::new(path, e.marker().line(), e.marker().col() + 1),
            message: e.info().to_string(),
        })?;
        let at0 = |line| Location::new(path, line, 1);
        if docs.len() > 1 {
            return Err(YamlError::Syntax {
                at: at0(docs[1].span.start.line()),
                message: "more than one YAML document in the file".into(),
            });
        }
        let root = match docs.into_iter().next() {
            Some(d) => convert(path, &d)?,
            None => Node {
                mark: Mark { line: 1, column: 1 },
                data: NodeData::Map(vec![]),
            },
        };
        Ok(Doc {
            path: path.to_path_buf(),
            root,
        })
    }

    pub fn at(&self, mark: Mark) -> Location {
        Location::new(&self.path, mark.line, mark.column)
    }

    /// The position of the node at `path`, or of the deepest ancestor that exists.
    pub fn locate(&self, path: &[Seg]) -> Location {
        self.at(self.root.walk(path).1.mark)
    }

    /// The position of the *key* that ends `path` (for unknown and misplaced keys).
    pub fn locate_key(&self, path: &[Seg]) -> Location {
        if let Some((Seg::Key(k), parent)) = path.split_last() {
            let (depth, node) = self.root.walk(parent);
            if depth == parent.len()
                && let NodeData::Map(entries) = &node.data
                && let Some((_, m, _)) = entries.iter().find(|(key, _, _)| key == k)
            {
                return self.at(*m);
            }
        }
        self.locate(path)
    }
}

impl Node {
    /// Follows `path` as far as it goes: (segments followed, node reached).
    pub fn walk(&self, path: &[Seg]) -> (usize, &Node) {
        let mut node = self;
        for (i, seg) in path.iter().enumerate() {
            let next = match (seg, &node.data) {
                (Seg::Key(k), NodeData::Map(entries)) => {
                    entries.iter().find(|(key, _, _)| key == k).map(|e| &e.2)
                }
                (Seg::Index(i), NodeData::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return (i, node),
            }
        }
        (path.len(), node)
    }

    /// The node at exactly `path`.
    pub fn get(&self, path: &[Seg]) -> Option<&Node> {
        let (depth, node) = self.walk(path);
        (depth == path.len()).then_some(node)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.data {
            NodeData::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The value as it would read in the file, for quoting in messages.
    pub fn quoted(&self) -> String {
        match &self.data {
            NodeData::Scalar(Value::String(s)) => format!("'{s}'"),
            NodeData::Scalar(v) => format!("'{v}'"),
            NodeData::Seq(_) => "a list".into(),
            NodeData::Map(_) => "a mapping".into(),
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.data {
            NodeData::Scalar(v) => v.clone(),
            NodeData::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeData::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn mark_of(m: &saphyr::Marker) -> Mark {
    Mark {
        line: m.line(),
        column: m.col() + 1,
    }
}

fn convert(path: &Path, y: &MarkedYaml) -> Result<Node, YamlError> {
    let mark = mark_of(&y.span.start);
    let bad = |message: String| YamlError::Syntax {
        at: Location::new(path, mark.line, mark.column),
        message,
    };
    let data = match &y.data {
        YamlData::Value(s) => NodeData::Scalar(match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::from(*i),
            Scalar::FloatingPoint(f) => serde_json::Number::from_f64(f.into_inner())
                .map(Value::Number)
                .ok_or_else(|| bad(format!("'{f}' is not a finite number")))?,
            Scalar::String(s) => Value::String(s.to_string()),
        }),
        YamlData::Representation(s, _, _) => NodeData::Scalar(Value::String(s.to_string())),
        YamlData::Sequence(items) => NodeData::Seq(
            items
                .iter()
                .map(|i| convert(path, i))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map.iter() {
                let key = match &k.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                    YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                    _ => {
                        return Err(YamlError::Syntax {
                            at: Location::new(path, k.span.start.line(), k.span.start.col() + 1),
                            message: "mapping keys must be plain strings".into(),
                        });
                    }
                };
                entries.push((key, mark_of(&k.span.start), convert(path, v)?));
            }
            NodeData::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(path, inner),
        YamlData::Alias(_) => return Err(bad("a dangling alias".into())),
        YamlData::BadValue => {
            return Err(bad(
                "a value faultline cannot read: an unsupported YAML tag (such as !!binary), or a tag that does not fit its value (such as !!int on text)"
                    .into(),
            ));
        }
    };
    Ok(Node { mark, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_follows_keys_and_indices_to_one_based_marks() {
        let doc = Doc::parse(Path::new("x.yaml"), "a:\n  b:\n    - 1\n    - {c: 2}\n").unwrap();
        let path = [Seg::key("a"), Seg::key("b"), Seg::Index(1), Seg::key("c")];
        assert_eq!(doc.locate(&path).to_string(), "x.yaml:4:11");
        assert_eq!(doc.locate_key(&path).to_string(), "x.yaml:4:8");
        assert_eq!(path_string(&path), "a.b[1].c");
        assert_eq!(
            doc.root.to_json(),
            serde_json::json!({"a": {"b": [1, {"c": 2}]}})
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = Doc::parse(Path::new("x.yaml"), "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.to_string().starts_with("x.yaml:"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_a_syntax_error() {
        let err = Doc::parse(Path::new("x.yaml"), "a: 1\na: 2\n").unwrap_err();
        assert!(err.to_string().contains("x.yaml:2:"), "{err}");
    }
}
