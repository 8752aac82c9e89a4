//! Kubernetes label and field selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
//! `a` (exists), `!a` (does not exist), joined by commas — and `matchLabels` /
//! `matchExpressions` of a `LabelSelector` object (NetworkPolicy `podSelector`).
//!
//! Why our own: the sim must answer `kubectl get -l …` and the `kube` crate's list calls the way
//! an API server does, and the grammar is small. Here rather than in the sim because the fault
//! kinds check their selectors with the same grammar (`faultline validate`).

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; the empty selector selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(Vec<Req>);

impl Selector {
    /// Parses the query-string form (`labelSelector=` / `fieldSelector=`).
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_term(term)?);
        }
        Ok(Selector(reqs))
    }

    /// Builds a selector from a `LabelSelector` object (`matchLabels`, `matchExpressions`).
    /// `null` or `{}` selects everything.
    pub fn from_label_selector(v: &Value) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        if v.is_null() {
            return Ok(Selector(reqs));
        }
        let obj = v
            .as_object()
            .ok_or_else(|| format!("a label selector must be an object, not {v}"))?;
        if let Some(ml) = obj.get("matchLabels").filter(|m| !m.is_null()) {
            let ml = ml
                .as_object()
                .ok_or_else(|| format!("matchLabels must be an object, not {ml}"))?;
            for (k, val) in ml {
                let val = val
                    .as_str()
                    .ok_or_else(|| format!("matchLabels \"{k}\" must be a string, not {val}"))?;
                check_key(k)?;
                reqs.push(Req::Eq(k.clone(), val.to_string()));
            }
        }
        if let Some(me) = obj.get("matchExpressions").filter(|m| !m.is_null()) {
            let me = me
                .as_array()
                .ok_or_else(|| format!("matchExpressions must be a list, not {me}"))?;
            for e in me {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("a matchExpression needs a key: {e}"))?
                    .to_string();
                check_key(&key)?;
                let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
                let values: Vec<String> = match e.get("values") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| format!("values must be strings: {e}"))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(other) => return Err(format!("values must be a list, not {other}")),
                };
                reqs.push(match op {
                    "In" if !values.is_empty() => Req::In(key, values),
                    "NotIn" if !values.is_empty() => Req::NotIn(key, values),
                    "Exists" if values.is_empty() => Req::Exists(key),
                    "DoesNotExist" if values.is_empty() => Req::NotExists(key),
                    _ => return Err(format!("invalid matchExpression {e}")),
                });
            }
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// The same selection as a `LabelSelector` object (`a!=b` becomes `a NotIn (b)`, which
    /// selects the same pods); empty parts are left out.
    pub fn to_label_selector(&self) -> Value {
        let mut labels = serde_json::Map::new();
        let mut exprs = Vec::new();
        for r in &self.0 {
            match r {
                Req::Eq(k, v) if !labels.contains_key(k) => {
                    labels.insert(k.clone(), Value::from(v.as_str()));
                }
                Req::Eq(k, v) => exprs.push(expr(k, "In", std::slice::from_ref(v))),
                Req::NotEq(k, v) => exprs.push(expr(k, "NotIn", std::slice::from_ref(v))),
                Req::In(k, vs) => exprs.push(expr(k, "In", vs)),
                Req::NotIn(k, vs) => exprs.push(expr(k, "NotIn", vs)),
                Req::Exists(k) => exprs.push(expr(k, "Exists", &[])),
                Req::NotExists(k) => exprs.push(expr(k, "DoesNotExist", &[])),
            }
        }
        let mut out = serde_json::Map::new();
        if !labels.is_empty() {
            out.insert("matchLabels".into(), Value::Object(labels));
        }
        if !exprs.is_empty() {
            out.insert("matchExpressions".into(), Value::Array(exprs));
        }
        Value::Object(out)
    }

    /// The keys this selector mentions (field selectors accept only a few).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| match r {
            Req::Eq(k, _)
            | Req::NotEq(k, _)
            | Req::In(k, _)
            | Req::NotIn(k, _)
            | Req::Exists(k)
            | Req::NotExists(k) => k.as_str(),
        })
    }
}

fn expr(key: &str, op: &str, values: &[String]) -> Value {
    let mut e = serde_json::json!({"key": key, "operator": op});
    if !values.is_empty() {
        e["values"] = Value::from(values.to_vec());
    }
    e
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_term(term: &str) -> Result<Req, String> {
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Req::NotExists(key.to_string()));
    }
    for (word, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some(pos) = term.find(word) {
            let key = term[..pos].trim();
            check_key(key)?;
            let rest = term[pos + word.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("invalid selector \"{term}\": expected a (list)"))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            for v in &values {
                check_value(v)?;
            }
            if values.is_empty() {
                return Err(format!("invalid selector \"{term}\": empty value list"));
            }
            return Ok(if is_in {
                Req::In(key.to_string(), values)
            } else {
                Req::NotIn(key.to_string(), values)
            });
        }
    }
    let (key, value, neg) = if let Some((k, v)) = term.split_once("!=") {
        (k, v, true)
    } else if let Some((k, v)) = term.split_once("==") {
        (k, v, false)
    } else if let Some((k, v)) = term.split_once('=') {
        (k, v, false)
    } else {
        check_key(term)?;
        return Ok(Req::Exists(term.to_string()));
    };
    let (key, value) = (key.trim(), value.trim());
    check_key(key)?;
    check_value(value)?;
    Ok(if neg {
        Req::NotEq(key.to_string(), value.to_string())
    } else {
        Req::Eq(key.to_string(), value.to_string())
    })
}

/// Label keys: optional DNS prefix + `/` + name; field paths like `metadata.name` pass too.
fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && key.matches('/').count() <= 1;
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label key \"{key}\""))
    }
}

fn check_value(v: &str) -> Result<(), String> {
    let ok = v.len() <= 253
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label value \"{v}\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_set_based_terms_combine_with_and() {
        let l = labels(&[("app", "sim-llm"), ("worker", "1"), ("role", "worker")]);
        for (sel, want) in [
            ("", true),
            ("app=sim-llm", true),
            ("app==sim-llm,worker=1", true),
            ("app=sim-llm,worker=0", false),
            ("worker!=0", true),
            ("worker!=1", false),
            ("worker in (0, 1)", true),
            ("worker in (0,2)", false),
            ("worker notin (0,2),app", true),
            ("role", true),
            ("!role", false),
            ("!gpu", true),
            ("gpu", false),
            ("gpu!=x", true),
            ("gpu notin (x)", true),
            ("gpu in (x)", false),
        ] {
            let s = Selector::parse(sel).unwrap();
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn malformed_selectors_are_rejected_with_the_term() {
        for bad in ["a in 1", "a in ()", "=x", "a=b c", "a in (x y)"] {
            let e = Selector::parse(bad).unwrap_err();
            assert!(e.contains('"'), "{bad}: {e}");
        }
    }

    #[test]
    fn string_selectors_convert_to_label_selector_objects_that_select_the_same() {
        let sel = Selector::parse("app=sim-llm,worker!=0,role in (worker),!gpu,zone").unwrap();
        let obj = sel.to_label_selector();
        assert_eq!(obj["matchLabels"], serde_json::json!({"app": "sim-llm"}));
        let back = Selector::from_label_selector(&obj).unwrap();
        for l in [
            labels(&[
                ("app", "sim-llm"),
                ("worker", "1"),
                ("role", "worker"),
                ("zone", "a"),
            ]),
            labels(&[
                ("app", "sim-llm"),
                ("worker", "0"),
                ("role", "worker"),
                ("zone", "a"),
            ]),
            labels(&[
                ("app", "sim-llm"),
                ("role", "worker"),
                ("zone", "a"),
                ("gpu", "1"),
            ]),
            labels(&[("app", "sim-llm"), ("role", "worker"), ("zone", "a")]),
        ] {
            assert_eq!(sel.matches(&l), back.matches(&l), "{l:?}");
        }
        assert_eq!(
            Selector::parse("").unwrap().to_label_selector(),
            serde_json::json!({})
        );
    }

    #[test]
    fn label_selector_objects_use_match_labels_and_expressions() {
        let l = labels(&[("app", "sim-llm"), ("worker", "1")]);
        let v = serde_json::json!({"matchLabels": {"app": "sim-llm"},
            "matchExpressions": [{"key": "worker", "operator": "In", "values": ["1", "2"]},
                                 {"key": "gpu", "operator": "DoesNotExist"}]});
        assert!(Selector::from_label_selector(&v).unwrap().matches(&l));
        let v = serde_json::json!({"matchLabels": {"worker": "0"}});
        assert!(!Selector::from_label_selector(&v).unwrap().matches(&l));
        assert!(
            Selector::from_label_selector(&serde_json::json!({}))
                .unwrap()
                .matches(&l)
        );
        let bad = serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert!(Selector::from_label_selector(&bad).is_err());
    }
}
