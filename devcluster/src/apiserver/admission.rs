//! What every write is checked against: content (typed round-trip or CRD schema),
//! metadata, namespace and the per-kind strategies.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, FieldError};
use crate::meta;
use crate::resources::{ResourceType, StorageKey};
use crate::store::meta_str;

use super::*;

impl ApiServer {
    /// Typed round-trip or CRD schema processing, plus the unknown-field policy.
    pub(super) fn admit_content(
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let name = meta_str(obj, "name").to_string();
        let mut unknown = Vec::new();
        let cannot_handle = |e: String| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                rt.kind, rt.version, rt.kind
            ))
        };
        if rt.group.is_empty() && rt.kind == "Secret" {
            fold_string_data(obj);
        }
        // Metadata is typed for every kind, custom ones included.
        let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let typed: ObjectMeta = serde_json::from_value(metadata.clone())
            .map_err(|e| cannot_handle(format!("metadata: {e}")))?;
        let normalized_meta =
            serde_json::to_value(typed).map_err(|e| cannot_handle(e.to_string()))?;
        collect_dropped(&metadata, &normalized_meta, "metadata", &mut unknown);
        obj["metadata"] = normalized_meta;
        if let Some(normalize) = rt.normalize {
            let original = obj.clone();
            let normalized = normalize(obj.clone()).map_err(cannot_handle)?;
            collect_dropped(&original, &normalized, "", &mut unknown);
            *obj = normalized;
        }
        if let Some(schema) = &rt.schema {
            let outcome = schema.process(obj, old);
            unknown.extend(outcome.unknown_fields);
            if !outcome.errors.is_empty() {
                return Err(ApiError::invalid(
                    &rt.qualified_kind(),
                    &name,
                    &outcome.errors,
                ));
            }
        }
        match opts.validation {
            FieldValidation::Strict if !unknown.is_empty() => Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            FieldValidation::Warn => Ok(unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect()),
            _ => Ok(Vec::new()),
        }
    }

    pub(super) fn validate_metadata(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let name = meta_str(obj, "name");
        let rule = meta::name_rule(&rt.group, &rt.kind);
        errors.extend(meta::validate_name(rule, name, "metadata.name"));
        if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
            errors.extend(meta::validate_labels(labels, "metadata.labels"));
        }
        if let Some(ann) = obj
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            for key in ann.keys() {
                errors.extend(meta::validate_qualified_name(key, "metadata.annotations"));
            }
            let size: usize = ann
                .iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum();
            if size > 256 * 1024 {
                errors.push(FieldError {
                    reason: "FieldValueTooLong",
                    field: "metadata.annotations".into(),
                    detail: "Too long: must have at most 262144 bytes".into(),
                });
            }
        }
        errors
    }

    pub(super) fn check_namespace(
        st: &State,
        rt: &ResourceType,
        ns: Option<&str>,
        creating: bool,
    ) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns = ns.ok_or_else(|| {
            ApiError::bad_request("the namespace must be set for a namespaced resource")
        })?;
        let nskey = StorageKey {
            group: String::new(),
            resource: "namespaces".into(),
        };
        match st.store.get(&nskey, "", ns) {
            None => Err(ApiError::not_found("namespaces", ns)),
            Some(n) if creating && is_terminating(&n) => Err(ApiError::forbidden(format!(
                "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.qualified_resource(),
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Applies the metadata and kind checks common to create and update.
    pub(super) fn check_type_and_namespace(
        rt: &ResourceType,
        obj: &mut Value,
        ns: Option<&str>,
    ) -> ApiResult<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        if !kind.is_empty() && kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !api_version.is_empty() && api_version != rt.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        obj["kind"] = json!(rt.kind);
        obj["apiVersion"] = json!(rt.api_version());
        let m = meta_mut(obj);
        if rt.namespaced {
            let body_ns = m
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !body_ns.is_empty() && Some(body_ns) != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            m.insert("namespace".into(), json!(ns.unwrap_or_default()));
        } else {
            m.remove("namespace");
        }
        Ok(())
    }

    /// A body naming another object than the URL is a 400; an unnamed body takes the URL's.
    pub(super) fn check_url_name(obj: &mut Value, name: &str) -> ApiResult<()> {
        let body_name = meta_str(obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        meta_mut(obj).insert("name".into(), json!(name));
        Ok(())
    }
}
/// What the per-kind strategies reset or default on create.
pub(super) fn prepare_for_create(rt: &ResourceType, obj: &mut Value) {
    if rt.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            let name = meta_str(obj, "name").to_string();
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        ("", "Secret") if obj.get("type").is_none() => obj["type"] = json!("Opaque"),
        _ => {}
    }
}

/// Secret and ConfigMap data: key syntax and the 1 MiB total (kube-apiserver's
/// `ValidateSecret` / `ValidateConfigMap`).
pub(super) fn validate_data(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    if !(rt.group.is_empty() && matches!(rt.kind.as_str(), "Secret" | "ConfigMap")) {
        return Vec::new();
    }
    static KEY: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"^[-._a-zA-Z0-9]+$").expect("static regex"));
    let mut errors = Vec::new();
    let mut total = 0usize;
    for field in ["data", "binaryData"] {
        let Some(map) = obj.get(field).and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in map {
            if !KEY.is_match(k) || k == "." || k == ".." || k.len() > 253 {
                errors.push(FieldError::invalid(format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
            let len = v.as_str().map_or(0, str::len);
            // Secrets hold base64 (3 bytes per 4 characters); ConfigMaps hold text.
            total += if rt.kind == "Secret" || field == "binaryData" {
                len / 4 * 3
            } else {
                len
            };
        }
    }
    if total > 1024 * 1024 {
        errors.push(FieldError {
            reason: "FieldValueTooLong",
            field: "data".into(),
            detail: "Too long: must have at most 1048576 bytes".into(),
        });
    }
    errors
}

/// Secrets and ConfigMaps marked `immutable: true` keep their data and the flag.
pub(super) fn immutable_data_changes(
    rt: &ResourceType,
    old: &Value,
    new: &Value,
) -> Vec<FieldError> {
    let applies = rt.group.is_empty() && matches!(rt.kind.as_str(), "Secret" | "ConfigMap");
    if !applies || old.get("immutable") != Some(&json!(true)) {
        return Vec::new();
    }
    ["data", "binaryData", "immutable"]
        .into_iter()
        .filter(|f| old.get(*f) != new.get(*f))
        .map(|f| FieldError::forbidden(f, "field is immutable when `immutable` is set"))
        .collect()
}

/// `stringData` is write-only: on every write it is merged into `data`, overwriting.
pub(super) fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
    else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in string_data {
        obj["data"][k] =
            json!(base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default()));
    }
}

/// Fields present (and non-null) in `original` that normalization dropped.
pub(super) fn collect_dropped(
    original: &Value,
    normalized: &Value,
    path: &str,
    out: &mut Vec<String>,
) {
    let (Some(o), Some(n)) = (original.as_object(), normalized.as_object()) else {
        if let (Some(oa), Some(na)) = (original.as_array(), normalized.as_array()) {
            for (i, (a, b)) in oa.iter().zip(na).enumerate() {
                collect_dropped(a, b, &format!("{path}[{i}]"), out);
            }
        }
        return;
    };
    for (k, v) in o {
        if path.is_empty() && k == "metadata" || v.is_null() {
            // Metadata is compared on its own, before the object.
            continue;
        }
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match n.get(k) {
            None => out.push(p),
            Some(nv) => collect_dropped(v, nv, &p, out),
        }
    }
}
