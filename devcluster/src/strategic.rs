//! Strategic merge patch for built-in kinds: maps merge, lists of objects merge by their
//! key (as the Go structs' `patchMergeKey` tags say), and the patch directives `$patch`,
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` apply.

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListStrategy {
    Replace,
    MergeByKey(&'static str),
    MergePrimitives,
}

/// The `patchStrategy:"merge"` lists of the built-in kinds we serve. `parent` is the
/// dotted path of the map holding `field` (list elements appear as `name[]`).
pub(super) fn list_strategy(parent: &str, field: &str) -> ListStrategy {
    use ListStrategy::*;
    let in_container = ["containers[]", "initContainers[]", "ephemeralContainers[]"]
        .iter()
        .any(|c| parent.ends_with(c));
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "resourceClaims"
        | "schedulingGates" => MergeByKey("name"),
        // PodSpec merges them by name; a ServiceAccount's (at the top) are atomic.
        "imagePullSecrets" if !parent.is_empty() => MergeByKey("name"),
        // ServiceAccount.secrets.
        "secrets" if parent.is_empty() => MergeByKey("name"),
        "volumeMounts" => MergeByKey("mountPath"),
        "volumeDevices" => MergeByKey("devicePath"),
        "ports" if in_container => MergeByKey("containerPort"),
        "ports" => MergeByKey("port"),
        "hostAliases" => MergeByKey("ip"),
        "topologySpreadConstraints" => MergeByKey("topologyKey"),
        "readinessGates" => MergeByKey("conditionType"),
        "conditions" => MergeByKey("type"),
        "ownerReferences" => MergeByKey("uid"),
        "finalizers" if parent == "metadata" => MergePrimitives,
        _ => Replace,
    }
}

fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// A patch body with every directive removed (what lands when there is nothing to merge into).
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| !is_directive_only(i))
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_directive_only(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| !m.is_empty() && m.keys().all(|k| k.starts_with('$')))
}

fn patch_directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

pub fn apply(original: &Value, patch: &Value) -> Result<Value, String> {
    let patch = patch
        .as_object()
        .ok_or("a strategic merge patch must be a JSON object")?;
    let mut doc = original.clone();
    if !doc.is_object() {
        doc = Value::Object(Map::new());
    }
    merge_map(&mut doc, patch, "")?;
    Ok(doc)
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>, path: &str) -> Result<(), String> {
    if let Some(d) = patch.get("$patch").and_then(Value::as_str) {
        match d {
            "replace" => {
                *target = strip_directives(&Value::Object(patch.clone()));
                return Ok(());
            }
            "merge" => {}
            other => return Err(format!("unknown patch type: {other:?} in map at {path:?}")),
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let t = target.as_object_mut().expect("target is an object");
        match value {
            Value::Null => {
                t.remove(key);
            }
            Value::Object(_) if patch_directive(value) == Some("delete") => {
                t.remove(key);
            }
            Value::Object(m) => {
                let child = t.entry(key.clone()).or_insert(Value::Null);
                merge_map(child, m, &join(path, key))?;
            }
            Value::Array(items) => {
                let merged = merge_list(t.get(key), items, path, key)?;
                t.insert(key.clone(), merged);
            }
            scalar => {
                t.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
        } else if let Some(field) = key.strip_prefix("$setElementOrder/") {
            let order = value.as_array().cloned().unwrap_or_default();
            let strategy = list_strategy(path, field);
            if let Some(Value::Array(list)) = target.get_mut(field) {
                reorder(list, &order, strategy);
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        if let Some(t) = target.as_object_mut() {
            t.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
    Ok(())
}

fn merge_list(
    current: Option<&Value>,
    items: &[Value],
    parent: &str,
    field: &str,
) -> Result<Value, String> {
    let existing = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items
        .iter()
        .any(|i| patch_directive(i) == Some("replace") && is_directive_only(i))
    {
        return Ok(strip_directives(&Value::Array(items.to_vec())));
    }
    match list_strategy(parent, field) {
        ListStrategy::Replace => Ok(strip_directives(&Value::Array(items.to_vec()))),
        ListStrategy::MergePrimitives => {
            let mut out = existing;
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            Ok(Value::Array(out))
        }
        ListStrategy::MergeByKey(key) => {
            let mut out = existing;
            let element_path = format!("{}[]", join(parent, field));
            for item in items {
                let Some(obj) = item.as_object() else {
                    out.push(item.clone());
                    continue;
                };
                let id = obj.get(key);
                let position = id.and_then(|id| out.iter().position(|e| e.get(key) == Some(id)));
                match (patch_directive(item), position) {
                    (Some("delete"), Some(i)) => {
                        out.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => merge_map(&mut out[i], obj, &element_path)?,
                    (_, None) => out.push(strip_directives(item)),
                }
            }
            Ok(Value::Array(out))
        }
    }
}

/// `$setElementOrder`: listed elements take the given order; others keep theirs, after.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let identity = |v: &Value| -> Value {
        match strategy {
            ListStrategy::MergeByKey(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(identity).collect();
    let mut ordered = Vec::with_capacity(list.len());
    for w in &wanted {
        if let Some(i) = list.iter().position(|e| &identity(e) == w) {
            ordered.push(list.remove(i));
        }
    }
    ordered.append(list);
    *list = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "finalizers": ["a"]},
        "spec": {"template": {"spec": {
            "containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "sidecar", "image": "side:1"}
            ],
            "volumes": [{"name": "v1", "emptyDir": {}}],
            "tolerations": [{"key": "a"}]
        }}}})
    }

    #[test]
    fn lists_merge_by_key() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
        ]}}}});
        let out = apply(&deployment(), &patch).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2, "sidecar kept");
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(
            containers[0]["ports"][0]["containerPort"], 80,
            "untouched fields kept"
        );
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b"}]}}}});
        let out = apply(&deployment(), &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "b"}])
        );
    }

    #[test]
    fn directives_delete_replace_and_order() {
        let patch = json!({"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "$patch": "delete"}, {"name": "sidecar", "image": "side:2"}],
            "volumes": [{"$patch": "replace"}, {"name": "v2", "secret": {"secretName": "s"}}]
        }}}});
        let out = apply(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"],
            json!([{"name": "sidecar", "image": "side:2"}])
        );
        assert_eq!(
            spec["volumes"],
            json!([{"name": "v2", "secret": {"secretName": "s"}}])
        );
        let reordered = apply(
            &deployment(),
            &json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}}}}),
        )
        .unwrap();
        assert_eq!(
            reordered["spec"]["template"]["spec"]["containers"][0]["name"],
            "sidecar"
        );
    }

    #[test]
    fn map_directives_and_null_deletion() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "a": 1}});
        let retain =
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "a": null}});
        let out = apply(&original, &retain).unwrap();
        assert_eq!(out["spec"], json!({"strategy": {"type": "Recreate"}}));
        let replace = json!({"spec": {"$patch": "replace", "b": 2}});
        assert_eq!(apply(&original, &replace).unwrap()["spec"], json!({"b": 2}));
        let delete = json!({"spec": {"$patch": "delete"}});
        assert!(apply(&original, &delete).unwrap().get("spec").is_none());
    }

    #[test]
    fn service_ports_merge_by_port() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let out = apply(
            &svc,
            &json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"][1],
            json!({"port": 443, "name": "https", "targetPort": 8443})
        );
    }
}
