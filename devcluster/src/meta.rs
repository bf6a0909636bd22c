//! Object metadata rules kube-apiserver applies to every kind: name and label syntax,
//! generated names and field manager names.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

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
    /// APIServices: `version.group`, where the core group's is `v1.`.
    ApiService,
}

pub fn name_rule(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        ("apiregistration.k8s.io", "APIService") => NameRule::ApiService,
        _ => NameRule::Dns1123Subdomain,
    }
}

pub fn validate_name(rule: NameRule, name: &str, field: &str) -> Option<FieldError> {
    let value = Value::String(name.into());
    if rule == NameRule::ApiService {
        return match name.split_once('.') {
            Some((version, "")) => validate_name(NameRule::Dns1123Label, version, field),
            Some((version, group)) => validate_name(NameRule::Dns1123Label, version, field)
                .or_else(|| validate_name(NameRule::Dns1123Subdomain, group, field)),
            None => Some(FieldError::invalid(
                field,
                &value,
                "must be in the form: <version>.<group>",
            )),
        };
    }
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

/// A JSON array of strings (non-strings skipped), or `None` when `v` is not an array.
pub fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    Some(
        v?.as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
    )
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
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
    use serde_json::json;

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
    fn managers_are_named_after_the_user_agent() {
        assert_eq!(
            manager_from_user_agent("kubectl/v1.32.4 (linux/amd64)"),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent(""), "unknown");
    }
}
