//! core/v1 and events.k8s.io/v1 Events are one store with two views, as in kube-apiserver:
//! objects are stored in the core/v1 form and converted on the way in and out.

use serde_json::{Map, Value, json};

use super::errors::FieldError;

/// (core/v1 field, events.k8s.io/v1 field)
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(obj: &Value, api_version: &str, from_core: bool) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = RENAMES
            .iter()
            .find(|(core, v1)| if from_core { core == k } else { v1 == k })
            .map(|(core, v1)| if from_core { *v1 } else { *core })
            .unwrap_or(k);
        out.insert(renamed.to_string(), v.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

pub fn core_to_v1(core: &Value) -> Value {
    rename(core, "events.k8s.io/v1", true)
}

pub fn v1_to_core(v1: &Value) -> Value {
    rename(v1, "v1", false)
}

/// Creating through events.k8s.io/v1 is strict (kube-apiserver's `ValidateEventCreate`):
/// `eventTime` is required and the deprecated core/v1 fields must stay unset, so a client
/// that wants `lastTimestamp` and `count` writes core/v1 events.
pub fn validate_v1_create(v1: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if v1.get("eventTime").is_none_or(Value::is_null) {
        errors.push(FieldError::required("eventTime"));
    }
    for field in [
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
    ] {
        if v1
            .get(field)
            .is_some_and(|v| !v.is_null() && v != &json!(0))
        {
            errors.push(FieldError::invalid(field, &json!(""), "needs to be unset"));
        }
    }
    let source = v1.get("deprecatedSource");
    if ["component", "host"].iter().any(|f| {
        source
            .and_then(|s| s.get(f))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    }) {
        errors.push(FieldError::invalid(
            "deprecatedSource",
            &json!(""),
            "needs to be unset",
        ));
    }
    errors
}

/// What every Event create is checked against, in either view (kube-apiserver's
/// `legacyValidateEvent`, on the stored core/v1 form): the event lives in its object's
/// namespace; a cluster-scoped object's events in `default` (or, for events.k8s.io/v1
/// ones, `kube-system`).
pub fn validate_namespace(core: &Value) -> Vec<FieldError> {
    let namespace = core
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved = core
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let new_style = core.get("eventTime").is_some_and(|t| !t.is_null());
    let allowed = match (involved.is_empty(), new_style) {
        (false, false) => namespace == involved,
        (true, false) => namespace.is_empty() || namespace == "default",
        (true, true) => namespace == "default" || namespace == "kube-system",
        (false, true) => true,
    };
    if allowed {
        return Vec::new();
    }
    vec![FieldError::invalid(
        "involvedObject.namespace",
        &json!(involved),
        "does not match event.namespace",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_between_views() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e"}, "regarding": {"kind": "ApiKey", "name": "k"},
            "note": "minted", "reason": "Minted", "type": "Normal",
            "reportingController": "apikey.dev/operator", "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = v1_to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "k");
        assert_eq!(core["message"], "minted");
        assert_eq!(core["reportingComponent"], "apikey.dev/operator");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core_to_v1(&core), v1);
    }
}
