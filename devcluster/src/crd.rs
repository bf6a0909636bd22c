//! CustomResourceDefinitions: serving their resources, their status conditions, and their
//! cleanup finalizer (custom objects are deleted before the CRD goes).

use std::sync::Arc;

use serde_json::{Value, json};

use super::apiserver::{State, is_terminating as object_terminating};
use super::cel::{self, Release};
use super::errors::FieldError;
use super::meta;
use super::resources::{
    GenerationPolicy, PrinterColumn, ResourceType, ScalePaths, StorageKey, Subresource, View,
};
use super::schema::Schema;
use super::store::meta_str;
use super::table::TableKind;

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.kind == "CustomResourceDefinition"
}

/// Whether the CRD that serves `rt` is being deleted (creates are then refused).
pub fn is_terminating(st: &State, rt: &ResourceType) -> bool {
    let Some(name) = &rt.crd else {
        return false;
    };
    st.store
        .get(&crd_key(), "", name)
        .is_some_and(|c| object_terminating(&c))
}

pub fn crd_key() -> StorageKey {
    StorageKey {
        group: "apiextensions.k8s.io".into(),
        resource: "customresourcedefinitions".into(),
    }
}

/// What kube-apiserver checks of a CRD on create and update. (It also lets an update keep
/// a version's unchanged schema whose rules a newer release prices over budget; the dev
/// cluster runs one release for its whole life, so no stored CRD can be in that state.)
pub fn validate_definition(rt: &ResourceType, crd: &Value, release: Release) -> Vec<FieldError> {
    if !is_crd(rt) {
        return Vec::new();
    }
    let mut errors = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec
        .pointer("/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for (field, v) in [
        ("spec.group", group),
        ("spec.names.plural", plural),
        (
            "spec.names.kind",
            spec.pointer("/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
    ] {
        if v.is_empty() {
            errors.push(FieldError::required(field));
        }
    }
    if !group.is_empty() && !group.contains('.') {
        errors.push(FieldError::invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    }
    let expected = format!("{plural}.{group}");
    if meta_str(crd, "name") != expected {
        errors.push(FieldError::invalid(
            "metadata.name",
            &json!(meta_str(crd, "name")),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced" | "Cluster") => {}
        _ => errors.push(FieldError {
            reason: "FieldValueNotSupported",
            field: "spec.scope".into(),
            detail: format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                super::errors::render_value(&spec["scope"])
            ),
        }),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        errors.push(FieldError::invalid(
            "spec.versions",
            &json!("array"),
            "must have exactly one version marked as storage version",
        ));
    }
    let schemas: Vec<Option<&Value>> = versions
        .iter()
        .map(|v| v.pointer("/schema/openAPIV3Schema"))
        .collect();
    // kube-apiserver validates its internal form, which holds a schema that every version
    // shares once, as `spec.validation`.
    if let Some(Some(shared)) = schemas.first()
        && schemas.iter().all(|s| *s == Some(shared))
    {
        errors.extend(cel::check_schema(
            shared,
            "spec.validation.openAPIV3Schema",
            release,
        ));
        return errors;
    }
    for (i, schema) in schemas.into_iter().enumerate() {
        let field = format!("spec.versions[{i}].schema.openAPIV3Schema");
        match schema {
            None => errors.push(FieldError::required(field)),
            Some(s) => errors.extend(cel::check_schema(s, &field, release)),
        }
    }
    errors
}

pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    if !is_crd(rt) {
        return Vec::new();
    }
    let mut errors = Vec::new();
    for field in ["scope", "group"] {
        if old["spec"][field] != new["spec"][field] {
            errors.push(FieldError::invalid(
                format!("spec.{field}"),
                &new["spec"][field],
                "field is immutable",
            ));
        }
    }
    errors
}

/// Fills in the status the apiextensions controllers would write (names accepted,
/// established) and the cleanup finalizer.
pub fn on_write(_st: &mut State, rt: &ResourceType, crd: &mut Value) {
    if !is_crd(rt) {
        return;
    }
    let now = meta::now_rfc3339();
    let names = crd["spec"]["names"].clone();
    let storage = crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let mut stored_versions: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !stored_versions.contains(&json!(storage)) {
        stored_versions.push(json!(storage));
    }
    let terminating = object_terminating(crd);
    let mut conditions = vec![
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
               "message": "no conflicts found", "lastTransitionTime": now}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
               "message": "the initial names have been accepted", "lastTransitionTime": now}),
    ];
    if terminating {
        conditions.push(
            json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
            "message": "CustomResource deletion is in progress", "lastTransitionTime": now}),
        );
    }
    // Keep transition times stable when nothing changed, as the real controllers do.
    if let Some(existing) = crd.pointer("/status/conditions").and_then(Value::as_array) {
        for c in conditions.iter_mut() {
            if let Some(e) = existing
                .iter()
                .find(|e| e["type"] == c["type"] && e["status"] == c["status"])
            {
                c["lastTransitionTime"] = e["lastTransitionTime"].clone();
            }
        }
    }
    crd["status"] = json!({
        "conditions": conditions,
        "acceptedNames": names,
        "storedVersions": stored_versions,
    });
    if !terminating {
        let fins = crd["metadata"]
            .as_object_mut()
            .expect("metadata")
            .entry("finalizers")
            .or_insert_with(|| json!([]));
        if let Some(list) = fins.as_array_mut()
            && !list.contains(&json!(CLEANUP_FINALIZER))
        {
            list.push(json!(CLEANUP_FINALIZER));
        }
    }
}

/// (Re)registers the served versions of a stored CRD.
pub fn after_write(st: &mut State, rt: &ResourceType, crd: &Arc<Value>) {
    if !is_crd(rt) {
        return;
    }
    let name = meta_str(crd, "name").to_string();
    st.registry.remove_crd(&name);
    for t in served_types(crd) {
        st.registry.insert(t);
    }
}

/// Stops serving a deleted CRD's resources and drops anything left of them.
pub fn after_delete(st: &mut State, rt: &ResourceType, crd: &Value) {
    if !is_crd(rt) {
        return;
    }
    let name = meta_str(crd, "name").to_string();
    let key = StorageKey {
        group: crd["spec"]["group"].as_str().unwrap_or_default().into(),
        resource: crd["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .into(),
    };
    for o in st.store.list(&key, None) {
        st.store
            .remove(&key, meta_str(&o, "namespace"), meta_str(&o, "name"));
    }
    st.registry.remove_crd(&name);
}

fn strings(v: &Value) -> Vec<String> {
    meta::string_list(Some(v)).unwrap_or_default()
}

pub fn served_types(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"] != false)
        .map(|v| ResourceType {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().into(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced: spec["scope"] == "Namespaced",
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: v.pointer("/subresources/status").is_some(),
            storage: StorageKey {
                group: group.clone(),
                resource: plural.clone(),
            },
            view: View::Identity,
            generation: GenerationPolicy::Spec,
            normalize: None,
            schema: v
                .pointer("/schema/openAPIV3Schema")
                .map(|s| Arc::new(Schema::new(s.clone()))),
            table: TableKind::Custom,
            printer_columns: v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: c["name"].as_str().unwrap_or_default().into(),
                            type_: c["type"].as_str().unwrap_or("string").into(),
                            format: c["format"].as_str().unwrap_or_default().into(),
                            description: c["description"].as_str().unwrap_or_default().into(),
                            priority: c["priority"].as_i64().unwrap_or(0),
                            json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            crd: Some(meta_str(crd, "name").to_string()),
            preferred: v["storage"] == true,
            review: None,
            read_only: false,
            subresources: v
                .pointer("/subresources/scale")
                .map(|scale| {
                    let path = |f: &str| scale[f].as_str().map(String::from);
                    vec![Subresource::Scale(ScalePaths {
                        spec_replicas: path("specReplicasPath").unwrap_or_default(),
                        status_replicas: path("statusReplicasPath").unwrap_or_default(),
                        label_selector: path("labelSelectorPath"),
                    })]
                })
                .unwrap_or_default(),
        })
        .collect()
}
