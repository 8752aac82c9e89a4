//! The JSON Schemas of the files faultline reads and writes (`schemas/*.schema.json`),
//! generated from the types that read and write them, so a schema cannot drift from the code.
//! `UPDATE_SCHEMAS=1 cargo test --test integration schemas::` rewrites the checked-in files;
//! without it that test fails when one is not current.
//!
//! It lives in `report` because that is the lowest layer that sees every file's type
//! (`runner::result`, `analysis::summary`, `runner::spec::raw`, `fault`).

use serde_json::{Value, json};

use crate::analysis::summary::Summary;
use crate::runner::result::RunResult;
use crate::runner::spec::raw::ExperimentSpec;

/// Every schema by file stem: `result`, `summary`, `experiment`, `fault`.
pub const NAMES: [&str; 4] = ["result", "summary", "experiment", "fault"];

/// The schema called `name` (see [`NAMES`]), or `None` for an unknown name.
pub fn generate(name: &str) -> Option<Value> {
    Some(match name {
        "result" => stamped(
            to_value(schemars::schema_for!(RunResult)),
            "result",
            "faultline experiment result (result.json)",
            "What an experiment run found, fault by fault, and the verdict.",
        ),
        "summary" => stamped(
            to_value(schemars::schema_for!(Summary)),
            "summary",
            "faultline load summary (summary.json)",
            "The headline numbers of one load run.",
        ),
        "experiment" => titled(
            to_value(schemars::schema_for!(ExperimentSpec)),
            "experiment",
            "faultline experiment",
            "A file in experiments/: target, load, fault timeline, probes, criteria. An inline `fault` is a fault definition (the types of fault.schema.json).",
        ),
        "fault" => crate::fault::schema::definition_schema(),
        _ => return None,
    })
}

fn to_value(schema: schemars::Schema) -> Value {
    serde_json::to_value(schema).expect("a schema serializes")
}

fn titled(mut schema: Value, stem: &str, title: &str, description: &str) -> Value {
    let obj = schema.as_object_mut().expect("a schema is an object");
    obj.insert(
        "$id".into(),
        json!(format!("https://faultline.dev/schemas/{stem}.schema.json")),
    );
    obj.insert("title".into(), json!(title));
    obj.insert(
        "description".into(),
        json!(format!(
            "{description} Generated from the code (`UPDATE_SCHEMAS=1 cargo test --test integration schemas::`); do not edit."
        )),
    );
    schema
}

/// A written file: its type's fields plus the stamp `crate::version` puts first, and nothing
/// else at the top level.
fn stamped(mut schema: Value, stem: &str, title: &str, description: &str) -> Value {
    let obj = schema.as_object_mut().expect("a schema is an object");
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "faultline_version".into(),
            json!({"type": "string", "description": "The faultline that wrote the file."}),
        );
        props.insert(
            "schema_version".into(),
            json!({"type": "integer", "minimum": 1, "description": "Layout of the file; changes when a reader must know."}),
        );
    }
    let required = obj
        .entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("required is a list");
    for k in ["faultline_version", "schema_version"] {
        required.insert(0, json!(k));
    }
    required.sort_by_key(|v| v.as_str().map(str::to_string));
    obj.insert("additionalProperties".into(), json!(false));
    titled(schema, stem, title, description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_generates_a_schema_with_its_id() {
        for name in NAMES {
            let s = generate(name).unwrap();
            assert_eq!(
                s["$id"],
                json!(format!("https://faultline.dev/schemas/{name}.schema.json"))
            );
        }
        assert!(generate("nope").is_none());
    }

    #[test]
    fn written_files_require_the_stamp_and_refuse_unknown_top_level_keys() {
        for name in ["result", "summary"] {
            let s = generate(name).unwrap();
            let required: Vec<&str> = s["required"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(required.contains(&"schema_version"), "{name}: {required:?}");
            assert!(required.contains(&"faultline_version"), "{name}");
            assert_eq!(s["additionalProperties"], json!(false), "{name}");
        }
    }
}
