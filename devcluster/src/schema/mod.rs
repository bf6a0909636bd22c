//! Structural schemas of CRD versions: pruning, defaulting and OpenAPI validation, in the
//! order kube-apiserver applies them (prune → default → validate).
//! Value validation (types, formats, bounds, combinators) lives in `validate.rs`.

mod cel_view;
mod validate;

use serde_json::{Map, Value};

use super::errors::FieldError;

use validate::{validate, validate_object_constraints};

pub struct Schema {
    root: Value,
    /// Compiled `x-kubernetes-validations` and what they read, when the schema has any.
    cel: Option<(kube_cel::CompiledSchema, cel_view::View)>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What processing an object found: fields that were pruned (reported for
/// `fieldValidation=Strict|Warn`) and schema violations (422).
#[derive(Debug, Default)]
pub struct Outcome {
    pub unknown_fields: Vec<String>,
    pub errors: Vec<FieldError>,
}

impl Schema {
    pub fn new(open_api_v3_schema: Value) -> Self {
        let cel = cel_view::View::of(&open_api_v3_schema)
            .map(|view| (kube_cel::compile_schema(&open_api_v3_schema), view));
        Schema {
            root: open_api_v3_schema,
            cel,
        }
    }

    pub fn raw(&self) -> &Value {
        &self.root
    }

    /// Prunes unknown fields, applies defaults and validates a whole custom object; on
    /// updates `old` is the stored object, for CEL transition rules (`oldSelf`).
    pub fn process(&self, obj: &mut Value, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        let Some(map) = obj.as_object_mut() else {
            return out;
        };
        let props = self.root.get("properties").and_then(Value::as_object);
        // apiVersion, kind and metadata are the apiserver's; the schema only constrains the rest.
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&key)) {
                Some(s) => {
                    let v = map.get_mut(&key).expect("key exists");
                    walk(s, v, &key, &mut out);
                    if v.is_null() && !nullable(s) {
                        map.remove(&key);
                    }
                }
                None if preserves_unknown(&self.root) => {}
                None => {
                    map.remove(&key);
                    out.unknown_fields.push(key);
                }
            }
        }
        apply_defaults(&self.root, map, "", &mut out);
        validate_object_constraints(&self.root, map, "", &mut out, true);
        // CEL runs only on structurally valid objects, as in kube-apiserver.
        if out.errors.is_empty()
            && let Some((cel, view)) = &self.cel
            && let Err(failures) = kube_cel::validate_compiled(
                cel,
                &view.of_object(obj),
                old.map(|o| view.of_object(o)).as_ref(),
            )
        {
            out.errors
                .extend(failures.iter().map(|f| cel_field_error(&self.root, f)));
        }
        out
    }
}

/// kube-apiserver's rendering of a failed rule: the schema type stands in for the value,
/// and the rule's `reason` picks the error kind.
fn cel_field_error(root: &Value, f: &kube_cel::ValidationError) -> FieldError {
    let field = if f.field_path.is_empty() {
        "<nil>".to_string()
    } else {
        f.field_path.clone()
    };
    let message = match f.kind {
        kube_cel::ErrorKind::ValidationFailure => f.message.clone(),
        _ => format!("rule evaluation failed: {}: {}", f.rule, f.message),
    };
    match f.reason.as_deref() {
        Some("FieldValueForbidden") => FieldError::forbidden(field, message),
        Some("FieldValueRequired") => FieldError {
            reason: "FieldValueRequired",
            field,
            detail: format!("Required value: {message}"),
        },
        Some("FieldValueDuplicate") => FieldError {
            reason: "FieldValueDuplicate",
            field,
            detail: format!("Duplicate value: {message}"),
        },
        _ => {
            let type_name = schema_type_at(root, &f.field_path);
            FieldError::invalid(field, &Value::String(type_name), message)
        }
    }
}

/// The `type` of the schema node at a field path like `spec.consumers[0].name`.
fn schema_type_at(root: &Value, path: &str) -> String {
    let mut node = root;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexed) = match segment.split_once('[') {
            Some((n, _)) => (n, true),
            None => (segment, false),
        };
        node = node
            .pointer(&format!("/properties/{name}"))
            .or_else(|| node.get("additionalProperties"))
            .unwrap_or(&Value::Null);
        if indexed {
            node = node.get("items").unwrap_or(&Value::Null);
        }
    }
    node.get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_string()
}

fn preserves_unknown(s: &Value) -> bool {
    s.get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn nullable(s: &Value) -> bool {
    s.get("nullable").and_then(Value::as_bool).unwrap_or(false)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Prune, default and validate `v` against schema `s`.
fn walk(s: &Value, v: &mut Value, path: &str, out: &mut Outcome) {
    if v.is_null() {
        if !nullable(s) {
            // Non-nullable nulls are pruned before defaulting, as kube-apiserver does.
            return;
        }
        return;
    }
    if let Some(map) = v.as_object_mut() {
        let props = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties").filter(|a| a.is_object());
        if props.is_some() || additional.is_some() || !preserves_unknown(s) {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_schema = props.and_then(|p| p.get(&key)).or(additional);
                let child_path = if props.and_then(|p| p.get(&key)).is_some() {
                    join(path, &key)
                } else {
                    format!("{path}[{key}]")
                };
                match child_schema {
                    Some(cs) => {
                        let child = map.get_mut(&key).expect("key exists");
                        walk(cs, child, &child_path, out);
                        if child.is_null() && !nullable(cs) {
                            map.remove(&key);
                        }
                    }
                    None if preserves_unknown(s) || is_untyped_object(s) => {}
                    None => {
                        map.remove(&key);
                        out.unknown_fields.push(join(path, &key));
                    }
                }
            }
        }
        apply_defaults(s, map, path, out);
    } else if let Some(items) = v.as_array_mut()
        && let Some(item_schema) = s.get("items")
    {
        for (i, item) in items.iter_mut().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
    validate(s, v, path, out);
}

/// `type: object` with neither properties nor additionalProperties and
/// `x-kubernetes-embedded-resource`/int-or-string is an error in a structural schema; we are
/// lenient and treat a schema with no `type` at all as accepting anything.
fn is_untyped_object(s: &Value) -> bool {
    s.get("type").is_none() && s.get("properties").is_none()
}

fn apply_defaults(s: &Value, map: &mut Map<String, Value>, _path: &str, _out: &mut Outcome) {
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, ps) in props {
        if map.contains_key(key) {
            continue;
        }
        if let Some(d) = ps.get("default") {
            let mut value = d.clone();
            // Defaults are themselves defaulted (a defaulted object gets its nested defaults).
            if let Some(m) = value.as_object_mut() {
                apply_defaults(ps, m, "", &mut Outcome::default());
            }
            map.insert(key.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::new(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "every": {"type": "string", "pattern": "^[0-9]+h$"},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 3}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "port": {"x-kubernetes-int-or-string": true},
                        "opt": {"type": "string", "nullable": true},
                        "nested": {"type": "object", "default": {}, "properties": {"x": {"type": "integer", "default": 3}}}
                    }
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        }))
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "weird": 1},
            "spec": {"size": 2, "bogus": true, "free": {"anything": [1]}}, "top": 1});
        let out = schema().process(&mut obj, None);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            out.unknown_fields,
            vec!["spec.bogus".to_string(), "top".into()]
        );
        assert!(obj["spec"].get("bogus").is_none() && obj.get("top").is_none());
        assert_eq!(obj["spec"]["free"]["anything"], json!([1]));
        assert_eq!(
            obj["metadata"]["weird"], 1,
            "metadata belongs to the apiserver, not the schema"
        );
    }

    #[test]
    fn applies_defaults_including_nested_ones() {
        let mut obj = json!({"spec": {"size": 1}});
        let out = schema().process(&mut obj, None);
        assert!(out.errors.is_empty());
        assert_eq!(obj["spec"]["mode"], "a");
        assert_eq!(obj["spec"]["nested"], json!({"x": 3}));
    }

    #[test]
    fn reports_every_violation_with_its_field_path() {
        let mut obj = json!({"spec": {"size": "big", "mode": "c", "every": "30d",
            "tags": ["abcd", "b", "c"], "labels": {"k": 1}, "port": true}});
        let out = schema().process(&mut obj, None);
        let fields: Vec<(&str, &str)> = out
            .errors
            .iter()
            .map(|e| (e.field.as_str(), e.reason))
            .collect();
        assert!(
            fields.contains(&("spec.size", "FieldValueInvalid")),
            "{fields:?}"
        );
        assert!(fields.contains(&("spec.mode", "FieldValueNotSupported")));
        assert!(fields.contains(&("spec.every", "FieldValueInvalid")));
        assert!(fields.contains(&("spec.tags", "FieldValueTooMany")));
        assert!(fields.contains(&("spec.tags[0]", "FieldValueTooLong")));
        assert!(fields.contains(&("spec.labels[k]", "FieldValueInvalid")));
        assert!(fields.contains(&("spec.port", "FieldValueInvalid")));
        let every = out.errors.iter().find(|e| e.field == "spec.every").unwrap();
        assert_eq!(
            every.detail,
            "Invalid value: \"30d\": spec.every in body should match '^[0-9]+h$'"
        );
    }

    #[test]
    fn required_minimum_and_nullable() {
        let mut missing = json!({"spec": {"opt": null}});
        let out = schema().process(&mut missing, None);
        assert_eq!(out.errors, vec![FieldError::required("spec.size")]);
        assert!(missing["spec"]["opt"].is_null(), "nullable nulls are kept");
        let mut low = json!({"spec": {"size": 0, "mode": null}});
        let out = schema().process(&mut low, None);
        assert_eq!(out.errors.len(), 1);
        assert!(
            out.errors[0].detail.ends_with("greater than or equal to 1"),
            "{}",
            out.errors[0].detail
        );
        assert_eq!(
            low["spec"]["mode"], "a",
            "a non-nullable null is pruned, then defaulted"
        );
    }

    #[test]
    fn int_or_string_accepts_both() {
        for port in [json!(80), json!("http")] {
            let mut obj = json!({"spec": {"size": 1, "port": port}});
            assert!(schema().process(&mut obj, None).errors.is_empty());
        }
    }

    fn rotation_schema() -> Schema {
        Schema::new(json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "size(self.metadata.name) <= 5", "message": "name too long"}],
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "has(self.every) != has(self.schedule)", "message": "set exactly one of every or schedule"},
                    {"rule": "!has(self.overlap) || !has(self.every) || duration(self.overlap) < duration(self.every)",
                     "messageExpression": "'overlap ' + self.overlap + ' must be shorter than every ' + self.every",
                     "fieldPath": ".overlap"}
                ],
                "properties": {
                    "every": {"type": "string"},
                    "schedule": {"type": "string"},
                    "overlap": {"type": "string"},
                    "owner": {"type": "string", "x-kubernetes-validations": [
                        {"rule": "self == oldSelf", "message": "owner is immutable", "reason": "FieldValueForbidden"}]}
                }
            }}
        }))
    }

    fn cel_errors(obj: Value, old: Option<Value>) -> Vec<(String, String)> {
        let mut obj = obj;
        rotation_schema()
            .process(&mut obj, old.as_ref())
            .errors
            .into_iter()
            .map(|e| (e.field, e.detail))
            .collect()
    }

    #[test]
    fn cel_rules_report_like_kube_apiserver() {
        let meta = json!({"name": "ok"});
        assert!(
            cel_errors(
                json!({"metadata": meta, "spec": {"every": "720h", "overlap": "24h"}}),
                None
            )
            .is_empty()
        );
        assert_eq!(
            cel_errors(
                json!({"metadata": meta, "spec": {"every": "1h", "overlap": "90m"}}),
                None
            ),
            [(
                "spec.overlap".to_string(),
                "Invalid value: \"string\": overlap 90m must be shorter than every 1h".to_string()
            )]
        );
        assert_eq!(
            cel_errors(json!({"metadata": meta, "spec": {}}), None),
            [(
                "spec".to_string(),
                "Invalid value: \"object\": set exactly one of every or schedule".to_string()
            )]
        );
        assert_eq!(
            cel_errors(
                json!({"metadata": {"name": "too-long"}, "spec": {"schedule": "0 3 * * 1"}}),
                None
            ),
            [(
                "<nil>".to_string(),
                "Invalid value: \"object\": name too long".to_string()
            )]
        );
    }

    #[test]
    fn transition_rules_run_on_updates_only() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"every": "1h", "owner": "x"}});
        let new = json!({"metadata": {"name": "a"}, "spec": {"every": "1h", "owner": "y"}});
        assert!(
            cel_errors(new.clone(), None).is_empty(),
            "no oldSelf on create"
        );
        assert_eq!(
            cel_errors(new, Some(old)),
            [(
                "spec.owner".to_string(),
                "Forbidden: owner is immutable".to_string()
            )]
        );
    }
}
