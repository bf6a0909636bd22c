//! Writes through subresources that change one part of an object (`scale`, `approval`,
//! `ephemeralcontainers`) and pod eviction: the rest of the request is ignored, as
//! kube-apiserver's per-subresource strategies ignore it.

use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, FieldError};
use crate::resources::{ResourceType, ScalePaths, StorageKey};
use crate::selectors::LabelSelector;
use crate::store::meta_str;

use super::*;

/// The part of an object a subresource writes, as a JSON pointer.
#[derive(Clone, Debug)]
pub struct Part(pub String);

impl Part {
    pub fn at(pointer: &str) -> Self {
        Part(pointer.into())
    }

    /// A CRD's `.spec.replicas` style path.
    pub fn from_json_path(path: &str) -> Self {
        Part(path.replace('.', "/"))
    }

    fn is_status(&self) -> bool {
        self.0 == "/status" || self.0.starts_with("/status/")
    }
}

/// Sets `pointer` in `obj`, creating the objects on the way; `None` removes it.
pub fn set_at(obj: &mut Value, pointer: &str, value: Option<Value>) {
    let mut keys: Vec<&str> = pointer.split('/').skip(1).collect();
    let Some(last) = keys.pop() else { return };
    let mut node = obj;
    for k in keys {
        if !node.get(k).is_some_and(Value::is_object) {
            if value.is_none() {
                return;
            }
            node[k] = json!({});
        }
        node = &mut node[k];
    }
    match (value, node.as_object_mut()) {
        (Some(v), Some(m)) => {
            m.insert(last.into(), v);
        }
        (None, Some(m)) => {
            m.remove(last);
        }
        _ => {}
    }
}

impl ApiServer {
    /// Writes `part` of an object: `edit` gets the current object and returns the requested
    /// one, of which only `part` is kept. A `resourceVersion` in what `edit` returns is a
    /// precondition.
    pub fn write_part(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        part: &Part,
        opts: &WriteOptions,
        edit: impl FnOnce(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Written> {
        let mut st = self.lock();
        let old = st
            .store
            .get(&rt.storage, ns.unwrap_or_default(), name)
            .ok_or_else(|| ApiError::not_found(&rt.qualified_resource(), name))?;
        let old = present(rt, &old);
        let requested = edit(&old)?;
        let rv = meta_str(&requested, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::modified(&rt.qualified_resource(), name));
        }
        let mut new = old.clone();
        set_at(&mut new, &part.0, requested.pointer(&part.0).cloned());
        check_part(rt, part, &old, &new)?;
        self.write_update(
            &mut st,
            rt,
            &old,
            new,
            part.is_status(),
            opts,
            Ownership::Update,
        )
    }

    /// `POST pods/{name}/eviction`: deletes the pod unless a PodDisruptionBudget that
    /// selects it allows no disruption. Pods that are not running (Pending, Succeeded,
    /// Failed) are deleted without consulting budgets, as kube-apiserver does.
    pub fn evict(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<()> {
        let mut st = self.lock();
        let pod = st
            .store
            .get(&rt.storage, ns, name)
            .ok_or_else(|| ApiError::not_found(&rt.qualified_resource(), name))?;
        let phase = pod.pointer("/status/phase").and_then(Value::as_str);
        if !matches!(phase, None | Some("Pending" | "Succeeded" | "Failed")) {
            let budgets = StorageKey {
                group: "policy".into(),
                resource: "poddisruptionbudgets".into(),
            };
            for pdb in st.store.list(&budgets, Some(ns)) {
                if !selects(&pdb, &pod) {
                    continue;
                }
                let allowed = pdb
                    .pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if allowed < 1 {
                    return Err(ApiError::too_many_requests(
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        json!({"causes": [{"reason": "DisruptionBudget", "message": format!(
                            "The disruption budget {} needs {} healthy pods and has {} currently",
                            meta_str(&pdb, "name"),
                            pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0),
                            pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0),
                        )}]}),
                    ));
                }
            }
        }
        self.delete_locked(&mut st, rt, ns, name, opts).map(|_| ())
    }
}

/// What kube-apiserver checks of a write through `approval` or `ephemeralcontainers`,
/// beyond the object's own validation: Approved and Denied are True and exclusive;
/// ephemeral containers already there are never removed or changed.
pub fn check_part(rt: &ResourceType, part: &Part, old: &Value, new: &Value) -> ApiResult<()> {
    let name = meta_str(old, "name");
    let mut errors = Vec::new();
    if part.0 == "/status/conditions" {
        let conditions = new.pointer(&part.0).and_then(Value::as_array);
        let mut decided = Vec::new();
        for (i, c) in conditions.into_iter().flatten().enumerate() {
            let type_ = c["type"].as_str().unwrap_or_default();
            if matches!(type_, "Approved" | "Denied") {
                decided.push(type_);
                if c["status"] != "True" {
                    errors.push(FieldError {
                        reason: "FieldValueNotSupported",
                        field: format!("status.conditions[{i}].status"),
                        detail: format!(
                            "Unsupported value: {}: supported values: \"True\"",
                            c["status"]
                        ),
                    });
                }
            }
        }
        if decided.contains(&"Approved") && decided.contains(&"Denied") {
            errors.push(FieldError::invalid(
                "status.conditions",
                &json!("Approved"),
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
    } else if part.0 == "/spec/ephemeralContainers" {
        let containers = |o: &Value| o.pointer(&part.0).and_then(Value::as_array).cloned();
        let now = containers(new).unwrap_or_default();
        for before in containers(old).unwrap_or_default() {
            let same_name = now.iter().find(|c| c["name"] == before["name"]);
            if same_name != Some(&before) {
                errors.push(FieldError::forbidden(
                    "spec.ephemeralContainers",
                    format!(
                        "existing ephemeral containers {} may not be changed",
                        before["name"]
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.qualified_kind(), name, &errors))
    }
}

/// Whether a PodDisruptionBudget's selector selects `pod` (an empty selector selects all).
fn selects(pdb: &Value, pod: &Value) -> bool {
    let Some(selector) = pdb.pointer("/spec/selector") else {
        return false;
    };
    LabelSelector::from_object(selector).matches(pod)
}

/// The `autoscaling/v1` Scale of a scalable object.
pub fn scale_of(obj: &Value, paths: &ScalePaths) -> Value {
    let at = |p: &str| obj.pointer(&Part::from_json_path(p).0).cloned();
    let selector = match &paths.label_selector {
        Some(p) => at(p).unwrap_or(json!("")),
        None => json!(crate::table::match_labels(obj)),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": at(&paths.spec_replicas).unwrap_or(json!(0))},
        "status": {"replicas": at(&paths.status_replicas).unwrap_or(json!(0)), "selector": selector},
    })
}

/// The object a Scale asks for: its `spec.replicas` at the object's replica path.
pub fn scaled(obj: &Value, scale: &Value, paths: &ScalePaths) -> ApiResult<Value> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale.autoscaling",
                meta_str(obj, "name"),
                &[FieldError::invalid(
                    "spec.replicas",
                    scale.pointer("/spec/replicas").unwrap_or(&Value::Null),
                    "must be greater than or equal to 0",
                )],
            )
        })?;
    let mut new = obj.clone();
    set_at(
        &mut new,
        &Part::from_json_path(&paths.spec_replicas).0,
        Some(json!(replicas)),
    );
    if let Some(rv) = scale.pointer("/metadata/resourceVersion") {
        new["metadata"]["resourceVersion"] = rv.clone();
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_at_creates_and_removes() {
        let mut v = json!({"spec": {}});
        set_at(&mut v, "/spec/a/b", Some(json!(1)));
        assert_eq!(v, json!({"spec": {"a": {"b": 1}}}));
        set_at(&mut v, "/spec/a/b", None);
        assert_eq!(v, json!({"spec": {"a": {}}}));
        set_at(&mut v, "/status/x", None);
        assert_eq!(v, json!({"spec": {"a": {}}}));
    }

    fn pod_type() -> ResourceType {
        crate::resources::Registry::with_builtins()
            .get("", "v1", "pods")
            .unwrap()
            .as_ref()
            .clone()
    }

    #[test]
    fn decisions_are_true_and_exclusive_and_debug_containers_stay() {
        let rt = pod_type();
        let approval = Part::at("/status/conditions");
        let old = json!({"metadata": {"name": "csr"}});
        let with = |c: Value| json!({"metadata": {"name": "csr"}, "status": {"conditions": c}});
        let approved = with(json!([{"type": "Approved", "status": "True"}]));
        assert!(check_part(&rt, &approval, &old, &approved).is_ok());
        let not_true = with(json!([{"type": "Approved", "status": "False"}]));
        let e = check_part(&rt, &approval, &old, &not_true).unwrap_err();
        assert!(
            e.message.contains("supported values: \"True\""),
            "{}",
            e.message
        );
        let both = with(
            json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]),
        );
        let e = check_part(&rt, &approval, &old, &both).unwrap_err();
        assert!(e.message.contains("mutually exclusive"), "{}", e.message);

        let debug = Part::at("/spec/ephemeralContainers");
        let pod =
            |cs: Value| json!({"metadata": {"name": "p"}, "spec": {"ephemeralContainers": cs}});
        let one = pod(json!([{"name": "d1", "image": "busybox"}]));
        let two = pod(json!([{"name": "d1", "image": "busybox"}, {"name": "d2", "image": "x"}]));
        assert!(check_part(&rt, &debug, &one, &two).is_ok());
        let changed = pod(json!([{"name": "d1", "image": "other"}]));
        let e = check_part(&rt, &debug, &one, &changed).unwrap_err();
        assert!(
            e.message.contains("\"d1\" may not be changed"),
            "{}",
            e.message
        );
        assert!(check_part(&rt, &debug, &two, &one).is_err(), "removed");
    }

    #[test]
    fn budgets_select_by_labels_and_expressions() {
        let pod = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let pdb = |s: Value| json!({"spec": {"selector": s}});
        assert!(selects(&pdb(json!({"matchLabels": {"app": "web"}})), &pod));
        assert!(!selects(&pdb(json!({"matchLabels": {"app": "db"}})), &pod));
        assert!(selects(
            &pdb(json!({"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]}]})),
            &pod
        ));
        assert!(selects(&pdb(json!({})), &pod));
        assert!(!selects(&json!({"spec": {}}), &pod));
    }

    #[test]
    fn scale_reads_and_writes_replica_paths() {
        let paths = ScalePaths {
            spec_replicas: ".spec.size".into(),
            status_replicas: ".status.size".into(),
            label_selector: Some(".status.sel".into()),
        };
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "5"},
            "spec": {"size": 2}, "status": {"size": 1, "sel": "app=a"}});
        let s = scale_of(&obj, &paths);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"], json!({"replicas": 1, "selector": "app=a"}));
        let new = scaled(&obj, &json!({"spec": {"replicas": 4}}), &paths).unwrap();
        assert_eq!(new["spec"]["size"], 4);
        assert!(scaled(&obj, &json!({"spec": {"replicas": -1}}), &paths).is_err());
    }
}
