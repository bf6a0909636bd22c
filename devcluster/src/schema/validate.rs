//! OpenAPI value validation of a structural schema: types, enums, formats, string,
//! number, array and object bounds, and allOf/anyOf/oneOf/not.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use regex::Regex;
use serde_json::{Map, Value};

use crate::errors::{FieldError, render_value};

use super::*;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "number" => v.is_number(),
        "integer" => {
            v.is_i64()
                || v.is_u64()
                || v.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        other => type_name(v) == other,
    }
}

pub(super) fn validate(s: &Value, v: &Value, path: &str, out: &mut Outcome) {
    let int_or_string = s
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if int_or_string {
        if !(v.is_string() || type_matches("integer", v)) {
            out.errors.push(FieldError::invalid(
                path,
                v,
                format!(
                    "{path} in body must be of type integer,string: {:?}",
                    type_name(v)
                ),
            ));
            return;
        }
    } else if let Some(t) = s.get("type").and_then(Value::as_str)
        && !type_matches(t, v)
    {
        out.errors.push(FieldError::invalid(
            path,
            &Value::String(type_name(v).into()),
            format!("{path} in body must be of type {t}: {:?}", type_name(v)),
        ));
        return;
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let supported: Vec<String> = options.iter().map(render_value).collect();
        out.errors.push(FieldError {
            reason: "FieldValueNotSupported",
            field: path.into(),
            detail: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(v),
                supported.join(", ")
            ),
        });
    }
    match v {
        Value::String(text) => validate_string(s, text, v, path, out),
        Value::Number(_) => validate_number(s, v, path, out),
        Value::Array(items) => validate_array(s, items, v, path, out),
        Value::Object(map) => validate_object_constraints(s, map, path, out, false),
        _ => {}
    }
    for (combinator, at_least, at_most) in [
        ("allOf", usize::MAX, usize::MAX),
        ("anyOf", 1, usize::MAX),
        ("oneOf", 1, 1),
    ] {
        let Some(alternatives) = s.get(combinator).and_then(Value::as_array) else {
            continue;
        };
        let passing: Vec<Vec<FieldError>> = alternatives
            .iter()
            .map(|alt| {
                let mut o = Outcome::default();
                validate(alt, v, path, &mut o);
                o.errors
            })
            .collect();
        let ok = passing.iter().filter(|e| e.is_empty()).count();
        if combinator == "allOf" {
            out.errors.extend(passing.into_iter().flatten());
        } else if ok < at_least || ok > at_most {
            out.errors.push(FieldError::invalid(
                path,
                v,
                format!(
                    "{path} in body must validate {} of the schemas ({combinator})",
                    if combinator == "oneOf" {
                        "exactly one"
                    } else {
                        "at least one"
                    }
                ),
            ));
        }
    }
    if let Some(not) = s.get("not") {
        let mut o = Outcome::default();
        validate(not, v, path, &mut o);
        if o.errors.is_empty() {
            out.errors.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body must not validate the schema (not)"),
            ));
        }
    }
}

fn validate_string(s: &Value, text: &str, v: &Value, path: &str, out: &mut Outcome) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.errors.push(FieldError {
            reason: "FieldValueTooLong",
            field: path.into(),
            detail: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        out.errors.push(FieldError::invalid(
            path,
            v,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if re.is_match(text) => {}
            Ok(_) => out.errors.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should match '{pattern}'"),
            )),
            Err(_) => out.errors.push(FieldError::invalid(
                path,
                v,
                format!("the schema pattern '{pattern}' does not compile"),
            )),
        }
    }
}

/// A schema pattern, compiled once: every write of a kind validates the same patterns,
/// and compiling them each time was a fifth of the server's CPU under load. Patterns
/// come from CRDs, so the cache is as bounded as they are.
fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static PATTERNS: LazyLock<RwLock<HashMap<String, Result<Regex, regex::Error>>>> =
        LazyLock::new(Default::default);
    if let Some(found) = PATTERNS.read().expect("patterns lock").get(pattern) {
        return found.clone();
    }
    let re = Regex::new(pattern);
    PATTERNS
        .write()
        .expect("patterns lock")
        .insert(pattern.to_string(), re.clone());
    re
}

/// Go prints whole float64 bounds without a fraction (`1`, not `1.0`).
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn validate_number(s: &Value, v: &Value, path: &str, out: &mut Outcome) {
    let x = v.as_f64().unwrap_or(0.0);
    let exclusive = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        let (bad, word) = if exclusive("exclusiveMinimum") {
            (x <= min, "greater than")
        } else {
            (x < min, "greater than or equal to")
        };
        if bad {
            out.errors.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {word} {}", number(&s["minimum"])),
            ));
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        let (bad, word) = if exclusive("exclusiveMaximum") {
            (x >= max, "less than")
        } else {
            (x > max, "less than or equal to")
        };
        if bad {
            out.errors.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {word} {}", number(&s["maximum"])),
            ));
        }
    }
    if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
        && m != 0.0
        && (x / m).fract() != 0.0
    {
        out.errors.push(FieldError::invalid(
            path,
            v,
            format!(
                "{path} in body should be a multiple of {}",
                number(&s["multipleOf"])
            ),
        ));
    }
}

fn validate_array(s: &Value, items: &[Value], v: &Value, path: &str, out: &mut Outcome) {
    let n = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        out.errors.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.into(),
            detail: format!("Too many: {n}: must have at most {max} items"),
        });
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        out.errors.push(FieldError::invalid(
            path,
            v,
            format!("{path} in body should have at least {min} items"),
        ));
    }
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    let unique = s
        .get("uniqueItems")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if unique || list_type == Some("set") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                out.errors.push(FieldError {
                    reason: "FieldValueDuplicate",
                    field: format!("{path}[{i}]"),
                    detail: format!("Duplicate value: {}", render_value(item)),
                });
            }
        }
    }
    if list_type == Some("map")
        && let Some(keys) = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
    {
        let key_of = |item: &Value| -> Vec<Value> {
            keys.iter()
                .filter_map(Value::as_str)
                .map(|k| item.get(k).cloned().unwrap_or(Value::Null))
                .collect()
        };
        for (i, item) in items.iter().enumerate() {
            let k = key_of(item);
            if items[..i].iter().any(|other| key_of(other) == k) {
                out.errors.push(FieldError {
                    reason: "FieldValueDuplicate",
                    field: format!("{path}[{i}]"),
                    detail: format!("Duplicate value: {}", Value::Array(k)),
                });
            }
        }
    }
}

pub(super) fn validate_object_constraints(
    s: &Value,
    map: &Map<String, Value>,
    path: &str,
    out: &mut Outcome,
    root: bool,
) {
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if root && matches!(r, "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if !map.contains_key(r) {
                out.errors.push(FieldError::required(join(path, r)));
            }
        }
    }
    let n = map.len() as u64;
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        out.errors.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.into(),
            detail: format!("Too many: {n}: must have at most {max} items"),
        });
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
        && n < min
    {
        out.errors.push(FieldError::invalid(
            path,
            &Value::Object(map.clone()),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
}
