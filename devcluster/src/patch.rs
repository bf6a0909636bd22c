//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge
//! patch; server-side apply lives in `ownership.rs`.

use serde_json::Value;

use super::errors::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Parses a JSON body, or YAML for apply patches (YAML is a superset of JSON).
pub fn parse_body(body: &[u8], yaml: bool) -> ApiResult<Value> {
    if yaml {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

/// Applies a merge or JSON patch to `current`.
pub fn apply_patch(pt: PatchType, current: &Value, body: &[u8]) -> ApiResult<Value> {
    let mut doc = current.clone();
    match pt {
        PatchType::Strategic => {
            let patch: Value = parse_body(body, false)?;
            doc = super::strategic::apply(current, &patch).map_err(ApiError::bad_request)?;
        }
        PatchType::Merge => {
            let patch: Value = parse_body(body, false)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal a non-object merge patch into an object",
                ));
            }
            json_patch::merge(&mut doc, &patch);
        }
        PatchType::Json => {
            let mut patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            drop_null_tests_of_missing_keys(&mut patch, current);
            json_patch::patch(&mut doc, &patch).map_err(|e| {
                ApiError::invalid_patch(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
        }
        PatchType::Apply => unreachable!("apply patches are merged by apply_merge"),
    }
    Ok(doc)
}

/// Go's json-patch (which kube-apiserver uses) passes `{"op":"test","value":null}` when the
/// key is absent but its parent exists; kube-runtime's finalizer helper relies on that.
fn drop_null_tests_of_missing_keys(patch: &mut json_patch::Patch, doc: &Value) {
    patch.0.retain(|op| {
        let json_patch::PatchOperation::Test(t) = op else {
            return true;
        };
        let path = t.path.as_str();
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        !(t.value.is_null() && doc.pointer(path).is_none() && doc.pointer(parent).is_some())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes() {
        let cur = json!({"spec": {"a": 1, "b": 2}});
        let out = apply_patch(PatchType::Merge, &cur, br#"{"spec":{"a":null,"c":3}}"#).unwrap();
        assert_eq!(out, json!({"spec": {"b": 2, "c": 3}}));
    }

    #[test]
    fn json_patch_ops_and_failed_test_op() {
        let cur = json!({"spec": {"l": [1, 2]}});
        let out = apply_patch(
            PatchType::Json,
            &cur,
            br#"[{"op":"add","path":"/spec/l/-","value":3},{"op":"replace","path":"/spec/l/0","value":0}]"#,
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"l": [0, 2, 3]}}));
        let err = apply_patch(
            PatchType::Json,
            &cur,
            br#"[{"op":"test","path":"/spec/l/0","value":9}]"#,
        )
        .unwrap_err();
        assert_eq!(err.code.as_u16(), 422);
    }

    #[test]
    fn null_test_of_a_missing_key_passes_like_go_json_patch() {
        let cur = json!({"metadata": {"name": "a"}});
        let add_first_finalizer = br#"[{"op":"test","path":"/metadata/finalizers","value":null},
            {"op":"add","path":"/metadata/finalizers","value":["x"]}]"#;
        let out = apply_patch(PatchType::Json, &cur, add_first_finalizer).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["x"]));
        let missing_parent = br#"[{"op":"test","path":"/nope/finalizers","value":null}]"#;
        assert!(apply_patch(PatchType::Json, &cur, missing_parent).is_err());
        let present = json!({"metadata": {"finalizers": ["y"]}});
        assert!(apply_patch(PatchType::Json, &present, add_first_finalizer).is_err());
    }
}
