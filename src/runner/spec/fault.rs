//! Fault definitions and inline faults: a mapping with a `kind` tag, type-checked against that
//! kind's `Params`.
//!
//! The kind is dispatched by hand rather than through serde's internally tagged
//! [`FaultSpec`]: serde buffers such an enum's content and loses the path of an error inside it,
//! and a definition's `name`/`description` can't sit beside a flattened enum with
//! `deny_unknown_fields`. Pulling those two keys out first and dispatching on `kind` keeps
//! unknown keys rejected and every error pointing at its line.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::de::{Source, from_value};
use super::error::SpecError;
use super::model::FaultDefinition;
use super::suggest::closest;
use super::yaml::{Doc, Seg};
use crate::fault::{Decoder, FaultSpec};

/// Type-checks a fault mapping (`kind` plus parameters) that came from `src`.
pub fn parse_fault(mut map: Map<String, Value>, src: &Source) -> Result<FaultSpec, SpecError> {
    let kind = match map.remove("kind") {
        Some(Value::String(k)) => k,
        Some(other) => {
            return Err(SpecError::WrongType {
                at: src.locate(&[Seg::key("kind")]),
                key: "kind".into(),
                value: format!("'{other}'"),
                message: format!("expected one of {}", FaultSpec::KINDS.join(", ")),
            });
        }
        None => {
            return Err(SpecError::MissingKey {
                at: src.locate(&[]),
                key: "kind".into(),
                context: format!(
                    "{} (one of {})",
                    src.describe(&[]),
                    FaultSpec::KINDS.join(", ")
                ),
            });
        }
    };
    let params = Value::Object(map);
    let Some(spec) = FaultSpec::decode(&kind, params, src) else {
        return Err(SpecError::UnknownKind {
            at: src.locate(&[Seg::key("kind")]),
            suggestion: closest(&kind, FaultSpec::KINDS.iter().copied()),
            known: FaultSpec::KINDS.iter().map(|k| k.to_string()).collect(),
            kind,
        });
    };
    let spec = spec?;
    check_params(&spec, src)?;
    Ok(spec)
}

impl Decoder for Source<'_> {
    type Error = SpecError;
    fn decode<T: serde::de::DeserializeOwned>(&self, params: Value) -> Result<T, SpecError> {
        from_value(params, self)
    }
}

/// Value checks serde can't express ([`crate::fault::FaultKind::problems`]), every one
/// reported.
fn check_params(spec: &FaultSpec, src: &Source) -> Result<(), SpecError> {
    let errors = spec
        .problems()
        .into_iter()
        .map(|p| SpecError::WrongType {
            at: src.locate(&param_path(&p.path)),
            key: p.path.join("."),
            value: p.value,
            message: p.message,
        })
        .collect();
    SpecError::collect(errors)
}

/// A key path inside a fault's parameters as the kinds write it (`["targets", "0", "host"]`).
pub fn param_path(path: &[String]) -> Vec<Seg> {
    path.iter()
        .map(|k| match k.parse::<usize>() {
            Ok(i) => Seg::Index(i),
            Err(_) => Seg::key(k),
        })
        .collect()
}

/// `faultline inject`'s fault: a definition file (or a bare kind) with `--set KEY=VALUE`
/// overrides, read through the same path as an experiment's faults. The overrides are a YAML
/// document of their own, one `KEY: VALUE` line per `--set`, so an error in one points at
/// `--set:N` (the Nth override).
pub fn with_overrides(
    base: Option<&RawDefinition>,
    kind: &str,
    sets: &[(String, String)],
) -> Result<FaultSpec, SpecError> {
    let text: String = sets.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    let set_doc = Doc::parse(Path::new("--set"), &text)?;
    let over = match set_doc.root.to_json() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let (mut map, base_doc) = match base {
        Some(d) => (d.fault.clone(), d.doc.clone()),
        None => {
            let doc = Doc::parse(Path::new("--set"), &format!("kind: {kind}\n"))?;
            (
                [("kind".to_string(), Value::String(kind.to_string()))]
                    .into_iter()
                    .collect(),
                doc,
            )
        }
    };
    merge(&mut map, &over);
    let src = Source {
        layers: vec![(&set_doc, vec![]), (&base_doc, vec![])],
    };
    parse_fault(map, &src)
}

/// A definition file as read, before `set:` overrides: kept as a value plus its tree so an
/// experiment can merge overrides and still locate errors in either file.
#[derive(Debug, Clone)]
pub struct RawDefinition {
    pub name: String,
    pub description: Option<String>,
    pub doc: Doc,
    /// Everything but `name` and `description`: `kind` and the parameters.
    pub fault: Map<String, Value>,
}

impl RawDefinition {
    pub fn read(path: &Path) -> Result<RawDefinition, SpecError> {
        let doc = Doc::read(path)?;
        let Value::Object(mut map) = doc.root.to_json() else {
            return Err(SpecError::invalid(
                doc.locate(&[]),
                "a fault definition is a mapping with a 'kind' and its parameters",
            ));
        };
        let mut text = |key: &str| match map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(SpecError::WrongType {
                at: doc.locate(&[Seg::key(key)]),
                key: key.into(),
                value: format!("'{other}'"),
                message: "expected a string".into(),
            }),
        };
        let name = text("name")?;
        let description = text("description")?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        Ok(RawDefinition {
            name: name.unwrap_or_else(|| stem.into_owned()),
            description,
            fault: map,
            doc,
        })
    }

    pub fn check(&self) -> Result<FaultDefinition, SpecError> {
        let spec = parse_fault(self.fault.clone(), &Source::new(&self.doc, vec![]))?;
        Ok(FaultDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            spec,
            source: self.doc.path.clone(),
        })
    }
}

/// Reads and checks one fault definition file.
pub fn load_fault_definition(path: &Path) -> Result<FaultDefinition, SpecError> {
    RawDefinition::read(path)?.check()
}

/// The definition files in `dir`, by file stem.
pub fn available(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
        .collect();
    out.sort();
    out
}

/// Finds the definition `name` in `dir`: `dir/NAME.yaml` (or `.yml`), else a file whose `name:`
/// key is NAME.
pub fn find_definition(dir: &Path, name: &str) -> Option<PathBuf> {
    let all = available(dir);
    if let Some((_, p)) = all.iter().find(|(stem, _)| stem == name) {
        return Some(p.clone());
    }
    all.into_iter()
        .find(|(_, p)| RawDefinition::read(p).is_ok_and(|d| d.name == name))
        .map(|(_, p)| p)
}

/// `set:` overrides merged into a definition: mappings merge key by key, anything else replaces.
pub fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(yaml: &str) -> Result<FaultSpec, SpecError> {
        let doc = Doc::parse(Path::new("f.yaml"), yaml).unwrap();
        let Value::Object(map) = doc.root.to_json() else {
            panic!()
        };
        parse_fault(map, &Source::new(&doc, vec![]))
    }

    #[test]
    fn every_known_kind_is_dispatched() {
        for kind in FaultSpec::KINDS {
            let err = parse(&format!("kind: {kind}\nbogus: 1\n")).unwrap_err();
            assert!(
                err.to_string().contains("unknown key 'bogus'"),
                "{kind}: {err}"
            );
        }
    }

    #[test]
    fn unknown_kind_lists_known_and_suggests() {
        let err = parse("kind: gpu-lockot\n").unwrap_err().to_string();
        assert!(err.starts_with("f.yaml:1:7: unknown fault kind 'gpu-lockot'; did you mean 'gpu-lockout'? (known: gpu-lockout, ssh-command"), "{err}");
    }

    #[test]
    fn error_inside_a_kind_is_located_at_its_line() {
        let err = parse("kind: pod-kill\nselector: app=x\ngrace_period: soon\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("f.yaml:3:15: invalid duration 'soon'"),
            "{err}"
        );
    }

    #[test]
    fn merge_is_deep_for_mappings_and_replaces_lists() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let over = json!({"a": {"c": 3}, "l": [9]});
        merge(base.as_object_mut().unwrap(), over.as_object().unwrap());
        assert_eq!(base, json!({"a": {"b": 1, "c": 3}, "l": [9]}));
    }
}
