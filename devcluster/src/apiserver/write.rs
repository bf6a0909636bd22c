//! Create, update, patch (incl. server-side apply), get and built-in controllers' writes.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::crd;
use crate::errors::{ApiError, ApiResult, FieldError};
use crate::events;
use crate::fieldset::{Scope, Walker};
use crate::meta;
use crate::ownership::{self, Writer};
use crate::patch::{self, PatchType};
use crate::resources::{GenerationPolicy, ResourceType, StorageKey, View};
use crate::store::meta_str;

use super::compare::{same_but_volatile_metadata, same_spec};
use super::*;

impl ApiServer {
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        self.create_as(rt, ns, obj, opts, "Update")
    }

    /// Create, recording the creating manager's fields under `operation` (Update, or Apply
    /// when server-side apply creates the object).
    pub(super) fn create_as(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        opts: &WriteOptions,
        operation: &str,
    ) -> ApiResult<Written> {
        Self::create_locked(&mut self.lock(), rt, ns, obj, opts, operation)
    }

    pub(super) fn create_locked(
        st: &mut State,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
        operation: &str,
    ) -> ApiResult<Written> {
        Self::check_type_and_namespace(rt, &mut obj, ns)?;
        if rt.is_custom() && crd::is_terminating(st, rt) {
            return Err(ApiError {
                code: StatusCode::METHOD_NOT_ALLOWED,
                reason: "MethodNotAllowed",
                message: "create not allowed while custom resource definition is terminating"
                    .into(),
                details: None,
            });
        }
        Self::check_namespace(st, rt, ns, true)?;
        {
            let m = meta_mut(&mut obj);
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if name.is_empty() {
                match m.get("generateName").and_then(Value::as_str) {
                    Some(prefix) if !prefix.is_empty() => {
                        m.insert(
                            "name".into(),
                            json!(format!("{prefix}{}", meta::generated_suffix())),
                        );
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            &rt.qualified_kind(),
                            "",
                            &[FieldError {
                                reason: "FieldValueRequired",
                                field: "metadata.name".into(),
                                detail: "Required value: name or generateName is required".into(),
                            }],
                        ));
                    }
                }
            }
            if m.get("resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(ApiError::internal(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "generation",
                "selfLink",
            ] {
                m.remove(f);
            }
        }
        let name = meta_str(&obj, "name").to_string();
        let mut warnings = Self::admit_content(rt, &mut obj, None, opts)?;
        prepare_for_create(rt, &mut obj);
        let mut errors = Self::validate_metadata(rt, &obj);
        if services::is_service(rt) {
            errors.extend(services::prepare_create(st, &mut obj));
        }
        errors.extend(crd::validate_definition(rt, &obj, st.release));
        errors.extend(validate_data(rt, &obj));
        if rt.view == View::EventsV1 {
            errors.extend(events::validate_v1_create(&obj));
            errors.extend(events::validate_namespace(&events::v1_to_core(&obj)));
        } else if rt.group.is_empty() && rt.kind == "Event" {
            errors.extend(events::validate_namespace(&obj));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(&rt.qualified_kind(), &name, &errors));
        }
        let key = rt.storage.clone();
        if st.store.get(&key, ns.unwrap_or_default(), &name).is_some() {
            return Err(ApiError::already_exists(&rt.qualified_resource(), &name));
        }
        {
            let m = meta_mut(&mut obj);
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
            if rt.generation != GenerationPolicy::None {
                m.insert("generation".into(), json!(1));
            }
        }
        let manager = opts.manager();
        let writer = Writer {
            manager: &manager,
            api_version: &rt.api_version(),
            scope: Scope::Main {
                exclude_status: rt.status_subresource,
            },
        };
        ownership::record_create(&Walker::new(rt), &mut obj, &writer, operation);
        crd::on_write(st, rt, &mut obj);
        warnings.dedup();
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                warnings,
                created: true,
            });
        }
        let stored = st.store.insert(&key, to_storage(rt, obj));
        crd::after_write(st, rt, &stored);
        Ok(Written {
            object: present(rt, &stored),
            warnings,
            created: true,
        })
    }

    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        let st = self.lock();
        st.store
            .get(&rt.storage, ns.unwrap_or_default(), name)
            .map(|o| present(rt, &o))
            .ok_or_else(|| ApiError::not_found(&rt.qualified_resource(), name))
    }

    /// PUT on the main resource or on `/status`.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        Self::check_type_and_namespace(rt, &mut obj, ns)?;
        Self::check_url_name(&mut obj, name)?;
        let mut st = self.lock();
        let old = st
            .store
            .get(&rt.storage, ns.unwrap_or_default(), name)
            .ok_or_else(|| ApiError::not_found(&rt.qualified_resource(), name))?;
        let old = present(rt, &old);
        let body_rv = meta_str(&obj, "resourceVersion");
        if body_rv.is_empty() && rt.is_custom() {
            // Custom resources do not allow unconditional updates.
            return Err(ApiError::invalid(
                &rt.qualified_kind(),
                name,
                &[FieldError {
                    reason: "FieldValueInvalid",
                    field: "metadata.resourceVersion".into(),
                    detail: "Invalid value: 0x0: must be specified for an update".into(),
                }],
            ));
        }
        if !body_rv.is_empty() && body_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::modified(&rt.qualified_resource(), name));
        }
        let body_uid = meta_str(&obj, "uid");
        if !body_uid.is_empty() && body_uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                &rt.qualified_resource(),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        self.write_update(&mut st, rt, &old, obj, status, opts, Ownership::Update)
    }

    /// The shared tail of update, patch and apply: admission, generation, managed fields,
    /// persistence, and deletion once the last finalizer is gone.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_update(
        &self,
        st: &mut State,
        rt: &ResourceType,
        old: &Value,
        mut obj: Value,
        status: bool,
        opts: &WriteOptions,
        ownership: Ownership,
    ) -> ApiResult<Written> {
        let name = meta_str(old, "name").to_string();
        if status {
            // Only status (and managedFields) change through /status.
            let new_status = obj.get("status").cloned();
            let applied_ownership = obj.pointer("/metadata/managedFields").cloned();
            obj = old.clone();
            if let (Ownership::Applied, Some(mf)) = (ownership, applied_ownership) {
                obj["metadata"]["managedFields"] = mf;
            }
            match new_status {
                Some(s) => obj["status"] = s,
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if rt.status_subresource {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        {
            let old_meta = old.get("metadata").unwrap_or(&Value::Null);
            let m = meta_mut(&mut obj);
            let server_owned: &[&str] = match ownership {
                Ownership::Update => &[
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "managedFields",
                ],
                Ownership::Applied => &[
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ],
            };
            for f in server_owned.iter().copied() {
                match old_meta.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.insert(
                "resourceVersion".into(),
                old_meta["resourceVersion"].clone(),
            );
        }
        let mut warnings = Self::admit_content(rt, &mut obj, Some(old), opts)?;
        let mut errors = Self::validate_metadata(rt, &obj);
        if services::is_service(rt) {
            errors.extend(services::prepare_update(old, &mut obj));
        }
        if is_terminating(old) {
            let before = finalizers(old);
            if finalizers(&obj).iter().any(|f| !before.contains(f)) {
                errors.push(FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        errors.extend(crd::validate_definition(rt, &obj, st.release));
        errors.extend(crd::validate_update(rt, old, &obj));
        errors.extend(immutable_data_changes(rt, old, &obj));
        errors.extend(validate_data(rt, &obj));
        if !errors.is_empty() {
            return Err(ApiError::invalid(&rt.qualified_kind(), &name, &errors));
        }
        if same_but_volatile_metadata(&obj, old) {
            // A no-op write is not persisted and does not change the resourceVersion.
            return Ok(Written {
                object: old.clone(),
                warnings,
                created: false,
            });
        }
        let bump = match rt.generation {
            GenerationPolicy::None => false,
            GenerationPolicy::Spec => !same_spec(rt, old, &obj),
            GenerationPolicy::SpecAndAnnotations => {
                !same_spec(rt, old, &obj)
                    || old.pointer("/metadata/annotations") != obj.pointer("/metadata/annotations")
            }
        };
        if bump {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut obj).insert("generation".into(), json!(g + 1));
        }
        if ownership == Ownership::Update {
            let manager = opts.manager();
            let writer = Writer {
                manager: &manager,
                api_version: &rt.api_version(),
                scope: scope_of(rt, status),
            };
            ownership::record_update(&Walker::new(rt), old, &mut obj, &writer);
        }
        crd::on_write(st, rt, &mut obj);
        warnings.dedup();
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                warnings,
                created: false,
            });
        }
        let ns = meta_str(old, "namespace").to_string();
        let stored = st.store.replace(&rt.storage, to_storage(rt, obj));
        crd::after_write(st, rt, &stored);
        if is_terminating(&stored)
            && finalizers(&stored).is_empty()
            && !namespace_has_spec_finalizers(&stored)
        {
            st.store.remove(&rt.storage, &ns, &name);
            crd::after_delete(st, rt, &stored);
        }
        Ok(Written {
            object: present(rt, &stored),
            warnings,
            created: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pt: PatchType,
        body: &[u8],
        status: bool,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if pt == PatchType::Strategic && rt.is_custom() {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
            ));
        }
        if pt == PatchType::Apply {
            return self.apply(rt, ns, name, body, status, opts);
        }
        let mut st = self.lock();
        let old = st
            .store
            .get(&rt.storage, ns.unwrap_or_default(), name)
            .ok_or_else(|| ApiError::not_found(&rt.qualified_resource(), name))?;
        let old = present(rt, &old);
        let mut patched = patch::apply_patch(pt, &old, body)?;
        Self::check_type_and_namespace(rt, &mut patched, ns)?;
        if meta_str(&patched, "name") != name {
            return Err(ApiError::bad_request(
                "metadata.name: the name of a patched object cannot change",
            ));
        }
        let rv = meta_str(&patched, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::modified(&rt.qualified_resource(), name));
        }
        self.write_update(&mut st, rt, &old, patched, status, opts, Ownership::Update)
    }

    pub(super) fn apply(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        body: &[u8],
        status: bool,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if opts.field_manager.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(
                "PATCH requests with apply patch type require fieldManager",
            ));
        }
        let mut applied = patch::parse_body(body, true)?;
        if applied.get("apiVersion").is_none() || applied.get("kind").is_none() {
            return Err(ApiError::bad_request(
                "invalid object type: apply requires apiVersion and kind",
            ));
        }
        Self::check_type_and_namespace(rt, &mut applied, ns)?;
        Self::check_url_name(&mut applied, name)?;
        // Read and write under one lock, so no concurrent write is lost in between.
        let mut st = self.lock();
        let existing = st.store.get(&rt.storage, ns.unwrap_or_default(), name);
        let Some(old) = existing else {
            if status {
                return Err(ApiError::not_found(&rt.qualified_resource(), name));
            }
            // Apply creates the object when it does not exist.
            return Self::create_locked(&mut st, rt, ns, applied, opts, "Apply");
        };
        let old = present(rt, &old);
        let rv = meta_str(&applied, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::modified(&rt.qualified_resource(), name));
        }
        if let Some(m) = applied.as_object_mut() {
            if status {
                // Apply to /status only touches status.
                m.retain(|k, _| k == "status");
            } else if rt.status_subresource {
                m.remove("status");
            }
            if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                md.remove("resourceVersion");
            }
        }
        let manager = opts.manager();
        let writer = Writer {
            manager: &manager,
            api_version: &rt.api_version(),
            scope: scope_of(rt, status),
        };
        let merged = ownership::apply(&Walker::new(rt), &old, &applied, &writer, opts.force)
            .map_err(|conflicts| ApiError::apply_conflicts(&conflicts))?;
        self.write_update(&mut st, rt, &old, merged, status, opts, Ownership::Applied)
    }

    /// A write by a built-in controller: `f` edits the served form of the object, which then
    /// goes through the normal update path (generation, managedFields, finalizers).
    #[allow(clippy::too_many_arguments)]
    pub fn mutate(
        &self,
        st: &mut State,
        key: &StorageKey,
        ns: &str,
        name: &str,
        manager: &str,
        status: bool,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let rt = st.registry.preferred_for(key)?;
        let stored = st.store.get(key, ns, name)?;
        let old = present(&rt, &stored);
        let mut new = old.clone();
        f(&mut new);
        match self.write_update(
            st,
            &rt,
            &old,
            new,
            status,
            &WriteOptions::internal(manager),
            Ownership::Update,
        ) {
            Ok(w) => Some(w.object),
            Err(e) => {
                tracing::warn!(%name, %ns, error = %e.message, "dev cluster controller write failed");
                None
            }
        }
    }
}
