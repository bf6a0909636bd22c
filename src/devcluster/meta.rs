//! Object metadata rules kube-apiserver applies to every kind: name and label syntax,
//! generated names and `managedFields` bookkeeping.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use super::errors::FieldError;

static DNS1123_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));
static DNS1123_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("static regex")
});
static QUALIFIED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("static regex")
});

/// Which name syntax a kind requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Label,
    Dns1123Subdomain,
    /// RBAC objects: any path segment (`system:controller:foo`).
    PathSegment,
}

pub fn name_rule(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

pub fn validate_name(rule: NameRule, name: &str, field: &str) -> Option<FieldError> {
    let value = Value::String(name.into());
    match rule {
        NameRule::Dns1123Label if name.len() > 63 => Some(FieldError::invalid(
            field,
            &value,
            "must be no more than 63 characters",
        )),
        NameRule::Dns1123Label if !DNS1123_LABEL.is_match(name) => Some(FieldError::invalid(
            field,
            &value,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )),
        NameRule::Dns1123Subdomain if name.len() > 253 => Some(FieldError::invalid(
            field,
            &value,
            "must be no more than 253 characters",
        )),
        NameRule::Dns1123Subdomain if !DNS1123_SUBDOMAIN.is_match(name) => {
            Some(FieldError::invalid(
                field,
                &value,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ))
        }
        NameRule::PathSegment if name == "." || name == ".." => Some(FieldError::invalid(
            field,
            &value,
            format!("may not be '{name}'"),
        )),
        NameRule::PathSegment if name.contains('/') || name.contains('%') => Some(
            FieldError::invalid(field, &value, "may not contain '/' or '%'"),
        ),
        _ => None,
    }
}

/// Label keys (`prefix/name`) and values, as `metav1validation.ValidateLabels` checks them.
pub fn validate_labels(labels: &Map<String, Value>, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        errors.extend(validate_qualified_name(key, field));
        let v = value.as_str().unwrap_or_default();
        if v.len() > 63 {
            errors.push(FieldError::invalid(
                field,
                value,
                "must be no more than 63 characters",
            ));
        } else if !v.is_empty() && !QUALIFIED_NAME.is_match(v) {
            errors.push(FieldError::invalid(field, value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
        }
    }
    errors
}

pub fn validate_qualified_name(key: &str, field: &str) -> Vec<FieldError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let value = Value::String(key.into());
    let mut errors = Vec::new();
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !DNS1123_SUBDOMAIN.is_match(p))
    {
        errors.push(FieldError::invalid(
            field,
            &value,
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    if name.is_empty() || name.len() > 63 || !QUALIFIED_NAME.is_match(name) {
        errors.push(FieldError::invalid(field, &value, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') and be no more than 63 characters"));
    }
    errors
}

/// The 5-character suffix kube-apiserver appends to `generateName`.
pub fn generated_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Metadata fields owned by the server, never tracked as anyone's managed fields.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "generateName",
    "selfLink",
];

/// Which part of the object an operation touched: the main resource or `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Main { exclude_status: bool },
    Status,
}

/// FieldsV1 (`{"f:spec": {"f:replicas": {}}}`) of every field set in `obj`. Lists are
/// tracked atomically (part 2 of the dev cluster refines list ownership).
pub fn fields_of(obj: &Value, scope: Scope) -> Value {
    let Some(map) = obj.as_object() else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in map {
        let keep = match (scope, k.as_str()) {
            (_, "apiVersion" | "kind") => false,
            (Scope::Status, key) => key == "status",
            (Scope::Main { exclude_status }, "status") => !exclude_status,
            _ => true,
        };
        if !keep {
            continue;
        }
        let fields = if k == "metadata" {
            let mut m = v.clone();
            if let Some(mm) = m.as_object_mut() {
                mm.retain(|key, _| !SERVER_METADATA.contains(&key.as_str()));
            }
            nested_fields(&m)
        } else {
            nested_fields(v)
        };
        if k == "metadata" && fields.as_object().is_some_and(Map::is_empty) {
            continue;
        }
        out.insert(format!("f:{k}"), fields);
    }
    Value::Object(out)
}

fn nested_fields(v: &Value) -> Value {
    match v.as_object() {
        Some(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (format!("f:{k}"), nested_fields(v)))
                .collect(),
        ),
        None => json!({}),
    }
}

/// Fields whose value differs between `old` and `new` (added or changed), as FieldsV1.
pub fn changed_fields(old: &Value, new: &Value, scope: Scope) -> Value {
    fn diff(old: Option<&Value>, new: &Value) -> Option<Value> {
        match (old.and_then(Value::as_object), new.as_object()) {
            (Some(o), Some(n)) => {
                let m: Map<String, Value> = n
                    .iter()
                    .filter_map(|(k, v)| diff(o.get(k), v).map(|d| (format!("f:{k}"), d)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            _ if old == Some(new) => None,
            _ => Some(nested_fields(new)),
        }
    }
    let all = fields_of(new, scope);
    let scoped_new = strip_to(new, &all);
    let scoped_old = strip_to(old, &all);
    diff(Some(&scoped_old), &scoped_new).unwrap_or_else(|| json!({}))
}

/// Keeps only the top-level keys of `v` named in `fields`.
fn strip_to(v: &Value, fields: &Value) -> Value {
    let keep = |k: &str| fields.get(format!("f:{k}")).is_some();
    match v.as_object() {
        Some(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => json!({}),
    }
}

pub fn merge_fields(a: &Value, b: &Value) -> Value {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let mut out = x.clone();
            for (k, v) in y {
                let merged = match out.get(k) {
                    Some(existing) => merge_fields(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => b.clone(),
    }
}

pub struct ManagerEntry<'a> {
    pub manager: &'a str,
    pub operation: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
}

/// Records that `entry.manager` set `fields`: Apply replaces the manager's set, Update adds
/// to it. Nothing is recorded for an empty field set.
pub fn record_managed_fields(obj: &mut Value, entry: ManagerEntry<'_>, fields: Value) {
    if fields.as_object().is_none_or(Map::is_empty) {
        return;
    }
    let list = obj["metadata"]
        .as_object_mut()
        .map(|m| m.entry("managedFields").or_insert_with(|| json!([])));
    let Some(Value::Array(list)) = list else {
        return;
    };
    let same = |e: &Value| {
        e["manager"] == entry.manager
            && e["operation"] == entry.operation
            && e.get("subresource").and_then(Value::as_str) == entry.subresource
    };
    let fields = match list.iter().find(|e| same(e)) {
        Some(existing) if entry.operation == "Update" => {
            merge_fields(&existing["fieldsV1"], &fields)
        }
        _ => fields,
    };
    list.retain(|e| !same(e));
    let mut e = json!({
        "manager": entry.manager,
        "operation": entry.operation,
        "apiVersion": entry.api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if let Some(s) = entry.subresource {
        e["subresource"] = json!(s);
    }
    list.push(e);
}

/// The manager name kube-apiserver derives from a User-Agent when no `fieldManager` is
/// given (`kubectl/v1.32 (linux/amd64)` → `kubectl`).
pub fn manager_from_user_agent(ua: &str) -> String {
    let name = ua.split('/').next().unwrap_or_default().trim();
    if name.is_empty() {
        "unknown".into()
    } else {
        name.chars().take(128).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kind_rules() {
        let sub = NameRule::Dns1123Subdomain;
        assert!(validate_name(sub, "a.b-c", "metadata.name").is_none());
        assert!(validate_name(sub, "Bad_Name", "metadata.name").is_some());
        assert!(validate_name(NameRule::Dns1123Label, "a.b", "metadata.name").is_some());
        assert!(validate_name(NameRule::PathSegment, "system:admin", "metadata.name").is_none());
        assert!(validate_name(NameRule::PathSegment, "a/b", "metadata.name").is_some());
    }

    #[test]
    fn labels_are_validated() {
        let ok = json!({"app.kubernetes.io/name": "x", "tier": ""});
        assert!(validate_labels(ok.as_object().unwrap(), "metadata.labels").is_empty());
        let long = "v".repeat(64);
        let bad = json!({"-bad": "x", "k": long});
        assert_eq!(
            validate_labels(bad.as_object().unwrap(), "metadata.labels").len(),
            2
        );
    }

    #[test]
    fn fields_skip_server_metadata_and_status_when_asked() {
        let o = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "uid": "u",
            "labels": {"k": "v"}}, "spec": {"a": {"b": 1}, "l": [1]}, "status": {"s": 1}});
        let f = fields_of(
            &o,
            Scope::Main {
                exclude_status: true,
            },
        );
        assert_eq!(
            f,
            json!({"f:metadata": {"f:labels": {"f:k": {}}},
            "f:spec": {"f:a": {"f:b": {}}, "f:l": {}}})
        );
        assert_eq!(
            fields_of(&o, Scope::Status),
            json!({"f:status": {"f:s": {}}})
        );
    }

    #[test]
    fn changed_fields_lists_only_differences() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"a": 1, "b": 2}});
        let new = json!({"metadata": {"name": "a"}, "spec": {"a": 1, "b": 3, "c": {"d": 1}}});
        assert_eq!(
            changed_fields(
                &old,
                &new,
                Scope::Main {
                    exclude_status: true
                }
            ),
            json!({"f:spec": {"f:b": {}, "f:c": {"f:d": {}}}})
        );
    }

    #[test]
    fn managed_fields_entries_merge_for_update_and_replace_for_apply() {
        let mut o = json!({"metadata": {"name": "a"}});
        let e = |op| ManagerEntry {
            manager: "m",
            operation: op,
            api_version: "v1",
            subresource: None,
        };
        record_managed_fields(&mut o, e("Update"), json!({"f:a": {}}));
        record_managed_fields(&mut o, e("Update"), json!({"f:b": {}}));
        record_managed_fields(&mut o, e("Apply"), json!({"f:c": {}}));
        record_managed_fields(&mut o, e("Apply"), json!({"f:d": {}}));
        let mf = o["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 2);
        assert_eq!(mf[0]["fieldsV1"], json!({"f:a": {}, "f:b": {}}));
        assert_eq!(mf[1]["fieldsV1"], json!({"f:d": {}}));
        assert_eq!(
            manager_from_user_agent("kubectl/v1.32.4 (linux/amd64)"),
            "kubectl"
        );
    }
}
