//! Deletion: finalizers, propagation (background, foreground, orphan) and preconditions.

use serde_json::{Value, json};

use crate::crd;
use crate::errors::{ApiError, ApiResult, FieldError};
use crate::meta;
use crate::resources::ResourceType;
use crate::store::meta_str;

use super::*;

pub enum Deleted {
    /// Finalizers remain: the object now has a deletionTimestamp.
    Pending(Value),
    /// The object is gone.
    Gone(Value),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_body(
        body: &Value,
        query_propagation: Option<&str>,
        dry_run: bool,
    ) -> ApiResult<Self> {
        let policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(query_propagation);
        let propagation = match policy {
            None => match body.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some(Propagation::Orphan),
                Some(false) => Some(Propagation::Background),
                None => None,
            },
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some("Orphan") => Some(Propagation::Orphan),
            Some(other) => {
                return Err(ApiError::invalid(
                    "DeleteOptions",
                    "",
                    &[FieldError {
                        reason: "FieldValueNotSupported",
                        field: "propagationPolicy".into(),
                        detail: format!(
                            "Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                        ),
                    }],
                ));
            }
        };
        let pre = body.get("preconditions");
        let dry = dry_run
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        Ok(DeleteOptions {
            propagation,
            precondition_uid: pre
                .and_then(|p| p.get("uid"))
                .and_then(Value::as_str)
                .map(String::from),
            precondition_rv: pre
                .and_then(|p| p.get("resourceVersion"))
                .and_then(Value::as_str)
                .map(String::from),
            dry_run: dry,
        })
    }
}
pub fn finalizers(obj: &Value) -> Vec<String> {
    meta::string_list(obj.pointer("/metadata/finalizers")).unwrap_or_default()
}

pub(super) fn set_finalizers(obj: &mut Value, f: &[String]) {
    let m = meta_mut(obj);
    if f.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(f));
    }
}

/// Namespaces also wait for `spec.finalizers` (the namespace controller's "kubernetes").
pub(super) fn namespace_has_spec_finalizers(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("Namespace")
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

pub fn is_terminating(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

impl ApiServer {
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let mut st = self.lock();
        self.delete_locked(&mut st, rt, ns.unwrap_or_default(), name, opts)
    }

    pub fn delete_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let stored = st
            .store
            .get(&rt.storage, ns, name)
            .ok_or_else(|| ApiError::not_found(&rt.qualified_resource(), name))?;
        let preconditions = [
            ("UID", &opts.precondition_uid, "uid"),
            ("ResourceVersion", &opts.precondition_rv, "resourceVersion"),
        ];
        for (label, wanted, field) in preconditions {
            if let Some(w) = wanted.as_deref().filter(|w| *w != meta_str(&stored, field)) {
                return Err(ApiError::conflict(
                    &rt.qualified_resource(),
                    name,
                    &format!(
                        "Precondition failed: {label} in precondition: {w}, {label} in object meta: {}",
                        meta_str(&stored, field)
                    ),
                ));
            }
        }
        let mut obj = (*stored).clone();
        if rt.storage.resource == "namespaces" && rt.storage.group.is_empty() {
            if matches!(name, "default" | "kube-system" | "kube-public") {
                return Err(ApiError::forbidden(format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                )));
            }
            if is_terminating(&obj) {
                return Err(ApiError::conflict(
                    "namespaces",
                    name,
                    "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
                ));
            }
            // Namespaces terminate: the namespace controller empties them, then removes them.
            if !is_terminating(&obj) && !opts.dry_run {
                meta_mut(&mut obj).insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                meta_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
                obj["status"]["phase"] = json!("Terminating");
                let stored = st.store.replace(&rt.storage, obj);
                return Ok(Deleted::Pending(present(rt, &stored)));
            }
            return Ok(Deleted::Pending(present(rt, &obj)));
        }
        if is_terminating(&obj) {
            return Ok(Deleted::Pending(present(rt, &obj)));
        }
        let mut fins = finalizers(&obj);
        match opts.propagation {
            Some(Propagation::Orphan) => fins.push("orphan".into()),
            Some(Propagation::Foreground) => fins.push("foregroundDeletion".into()),
            _ => {}
        }
        if opts.dry_run {
            return Ok(if fins.is_empty() {
                Deleted::Gone(present(rt, &obj))
            } else {
                Deleted::Pending(present(rt, &obj))
            });
        }
        if fins.is_empty() {
            let gone = st
                .store
                .remove(&rt.storage, ns, name)
                .expect("object exists");
            crd::after_delete(st, rt, &gone);
            return Ok(Deleted::Gone(present(rt, &gone)));
        }
        set_finalizers(&mut obj, &fins);
        let m = meta_mut(&mut obj);
        m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        if let Some(g) = m
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
        {
            m.insert("generation".into(), json!(g + 1));
        }
        let stored = st.store.replace(&rt.storage, obj);
        crd::after_write(st, rt, &stored);
        Ok(Deleted::Pending(present(rt, &stored)))
    }
}
