//! The checked-in JSON Schemas are what the code generates from its types
//! (`faultline::report::schemas`). `UPDATE_SCHEMAS=1 cargo test --test integration schemas::`
//! rewrites them; without it, a type changed and a schema not regenerated fails here.

use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{name}.schema.json"))
}

#[test]
fn checked_in_schemas_are_generated_from_the_types_and_current() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for name in faultline::report::schemas::NAMES {
        let generated = faultline::report::schemas::generate(name).unwrap();
        // Every generated schema is itself a valid schema.
        jsonschema::validator_for(&generated)
            .unwrap_or_else(|e| panic!("{name}.schema.json is not a valid schema: {e}"));
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        if update {
            std::fs::write(path(name), &text).unwrap();
        }
        if std::fs::read_to_string(path(name)).unwrap_or_default() != text {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "not what the code generates: {stale:?}; run UPDATE_SCHEMAS=1 cargo test --test integration schemas::"
    );
}

/// The schemas say what the types say: a result.json missing a field, or with a field the
/// writer never writes, is refused; a written summary's stamp is required.
#[test]
fn generated_schemas_refuse_what_the_types_refuse() {
    let result = faultline::report::schemas::generate("result").unwrap();
    let v = jsonschema::validator_for(&result).unwrap();
    assert!(!v.is_valid(&serde_json::json!({"experiment": "x"})));
    let summary = faultline::report::schemas::generate("summary").unwrap();
    let v = jsonschema::validator_for(&summary).unwrap();
    let mut doc = serde_json::json!({
        "faultline_version": "0", "schema_version": 1,
        "requests": 1, "ok": 1, "errors": 0, "error_rate": 0.0, "errors_by_kind": {},
        "duration_s": 1.0, "target_rate": null, "achieved_rate": 1.0,
        "ttft_ms": {"count": 0}, "itl_ms": {"count": 0}, "e2e_ms": {"count": 0},
        "dispatch_lag_ms": {"count": 0},
        "output_tokens": 1, "input_tokens": 1, "output_tok_s": 1.0, "token_count_source": "usage"
    });
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "a minimal summary is valid: {errors:?}");
    let mut bad = doc.clone();
    bad["error_rate"] = serde_json::json!(2.0);
    assert!(!v.is_valid(&bad), "an error rate above 1 is refused");
    let mut bad = doc.clone();
    bad["errors_by_kind"] = serde_json::json!({"oops": 1});
    assert!(!v.is_valid(&bad), "an unknown outcome class is refused");
    doc["errors_by_kind"] = serde_json::json!({"http_503": 2, "timeout": 1});
    assert!(v.is_valid(&doc), "known outcome classes are fine");
    doc["surprise"] = serde_json::json!(1);
    assert!(!v.is_valid(&doc), "an unknown top-level key is refused");
    doc.as_object_mut().unwrap().remove("surprise");
    doc.as_object_mut().unwrap().remove("schema_version");
    assert!(!v.is_valid(&doc), "the stamp is required");
    let experiment = faultline::report::schemas::generate("experiment").unwrap();
    let v = jsonschema::validator_for(&experiment).unwrap();
    assert!(!v.is_valid(&serde_json::json!({"laod": {"rate": 5}})));
}
