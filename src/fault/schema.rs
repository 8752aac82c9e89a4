//! The JSON Schema of a fault definition file (`schemas/fault.schema.json`), generated from
//! [`FaultSpec`] so that it cannot drift from what the parser accepts; a test holds the
//! checked-in file to it.

use serde_json::{Value, json};

use super::FaultSpec;

/// The schema of a file in `faults/`: one kind's parameters plus `name` and `description`.
pub fn definition_schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(FaultSpec)).expect("a schema serializes");
    // Every variant is a closed object; a definition file adds two keys to each.
    if let Some(variants) = schema.get_mut("oneOf").and_then(Value::as_array_mut) {
        for v in variants {
            if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("name".into(), json!({"type": "string", "description": "The definition's name (default: the file stem)."}));
                props.insert("description".into(), json!({"type": "string"}));
            }
        }
    }
    let obj = schema.as_object_mut().expect("a schema is an object");
    obj.insert(
        "$id".into(),
        json!("https://faultline.dev/schemas/fault.schema.json"),
    );
    obj.insert("title".into(), json!("faultline fault definition"));
    obj.insert(
        "description".into(),
        json!("A file in faults/: a kind and its parameters. Generated from the code (`UPDATE_SCHEMAS=1 cargo test --test integration schemas::`); do not edit."),
    );
    schema
}
