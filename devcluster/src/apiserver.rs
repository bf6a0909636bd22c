//! Request semantics shared by the HTTP layer and the built-in controllers: what
//! kube-apiserver's generic registry does on create, update, patch, delete, get and list.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

use super::cel::Release;
use super::crd;
use super::errors::{ApiError, ApiResult, FieldError};
use super::events;
use super::fieldset::{Scope, Walker};
use super::meta;
use super::ownership::{self, Writer};
use super::patch::{self, PatchType};
use super::resources::{GenerationPolicy, Registry, ResourceType, StorageKey, View};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Store, meta_str};

pub struct State {
    pub store: Store,
    pub registry: Registry,
    /// The Kubernetes release whose registration checks CRDs get.
    pub release: Release,
}

impl State {
    pub fn new(history_limit: usize, release: Release) -> State {
        State {
            store: Store::new(history_limit),
            registry: Registry::with_builtins(),
            release,
        }
    }
}

pub struct ApiServer {
    state: Mutex<State>,
}

/// `fieldValidation`: what to do with fields the schema does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub field_manager: Option<String>,
    pub user_agent: String,
    pub dry_run: bool,
    pub validation: FieldValidation,
    /// Server-side apply: take fields from other managers instead of reporting conflicts.
    pub force: bool,
}

impl WriteOptions {
    /// Writes made by the dev cluster's own controllers.
    pub fn internal(manager: &str) -> Self {
        WriteOptions {
            field_manager: Some(manager.into()),
            user_agent: manager.into(),
            dry_run: false,
            validation: FieldValidation::Ignore,
            force: false,
        }
    }

    fn manager(&self) -> String {
        self.field_manager
            .clone()
            .unwrap_or_else(|| meta::manager_from_user_agent(&self.user_agent))
    }
}

/// How a write's managedFields are determined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ownership {
    /// PUT or patch: the writer takes the fields it changed.
    Update,
    /// Server-side apply: already computed, with conflicts resolved.
    Applied,
}

fn scope_of(rt: &ResourceType, status: bool) -> Scope {
    if status {
        Scope::Status
    } else {
        Scope::Main {
            exclude_status: rt.status_subresource,
        }
    }
}

pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

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

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: String,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Compiled selectors for filtering list and watch results.
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn new(
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> ApiResult<Self> {
        Ok(Filter {
            namespace: namespace.map(String::from),
            labels: LabelSelector::parse(labels.unwrap_or_default())
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            fields: FieldSelector::parse(rt, fields.unwrap_or_default())
                .map_err(ApiError::bad_request)?,
        })
    }

    /// Matches a presented (served-version) object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta_str(obj, "namespace") == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

pub fn present(rt: &ResourceType, stored: &Value) -> Value {
    match rt.view {
        View::EventsV1 => events::core_to_v1(stored),
        View::Identity => {
            let mut v = stored.clone();
            v["apiVersion"] = json!(rt.api_version());
            v["kind"] = json!(rt.kind);
            v
        }
    }
}

fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    match rt.view {
        View::EventsV1 => events::v1_to_core(&obj),
        View::Identity => obj,
    }
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta::string_list(obj.pointer("/metadata/finalizers")).unwrap_or_default()
}

fn set_finalizers(obj: &mut Value, f: &[String]) {
    let m = meta_mut(obj);
    if f.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(f));
    }
}

/// Namespaces also wait for `spec.finalizers` (the namespace controller's "kubernetes").
fn namespace_has_spec_finalizers(obj: &Value) -> bool {
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

/// Everything but metadata (and status, when it is a subresource): a change here bumps
/// `generation`.
fn spec_part(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if rt.status_subresource {
            m.remove("status");
        }
    }
    v
}

/// What makes a write a no-op: everything but the resourceVersion and ownership
/// timestamps (a change of who owns what alone is still a write).
fn without_volatile_metadata(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
    }
    v
}

impl ApiServer {
    pub fn new(history_limit: usize, release: Release) -> Self {
        ApiServer {
            state: Mutex::new(State::new(history_limit, release)),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the dev cluster; keep serving anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.get(group, version, plural)
    }

    /// Typed round-trip or CRD schema processing, plus the unknown-field policy.
    fn admit_content(
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

    fn validate_metadata(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
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

    fn check_namespace(
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
    fn check_type_and_namespace(
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
    fn check_url_name(obj: &mut Value, name: &str) -> ApiResult<()> {
        let body_name = meta_str(obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        meta_mut(obj).insert("name".into(), json!(name));
        Ok(())
    }

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
    fn create_as(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        opts: &WriteOptions,
        operation: &str,
    ) -> ApiResult<Written> {
        Self::create_locked(&mut self.lock(), rt, ns, obj, opts, operation)
    }

    fn create_locked(
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
        errors.extend(crd::validate_definition(rt, &obj, st.release));
        errors.extend(validate_data(rt, &obj));
        if rt.view == View::EventsV1 {
            errors.extend(events::validate_v1_create(&obj));
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
    fn write_update(
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
            let old_meta = old.get("metadata").cloned().unwrap_or_default();
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
        if without_volatile_metadata(&obj) == without_volatile_metadata(old) {
            // A no-op write is not persisted and does not change the resourceVersion.
            return Ok(Written {
                object: old.clone(),
                warnings,
                created: false,
            });
        }
        let bump = match rt.generation {
            GenerationPolicy::None => false,
            GenerationPolicy::Spec => spec_part(rt, old) != spec_part(rt, &obj),
            GenerationPolicy::SpecAndAnnotations => {
                spec_part(rt, old) != spec_part(rt, &obj)
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

    fn apply(
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

    pub fn list(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        let mut st = self.lock();
        let current = st.store.current_rv();
        let scope = format!(
            "{}/{}/{}",
            rt.storage.group,
            rt.storage.resource,
            filter.namespace.as_deref().unwrap_or_default()
        );
        if let Some(token) = &opts.continue_token {
            if opts
                .resource_version
                .as_deref()
                .is_some_and(|v| !v.is_empty())
            {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (id, offset, rv) = decode_continue(token)?;
            let (snap_rv, items) = st.store.snapshot(&scope, id).filter(|(r, _)| *r == rv).ok_or_else(|| {
                ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            })?;
            return Ok(page(
                &mut st,
                &scope,
                items,
                offset,
                opts.limit,
                snap_rv,
                Some(id),
            ));
        }
        let requested: Option<u64> = match opts.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
            ),
        };
        let stored = match (requested, opts.resource_version_match.as_deref()) {
            (Some(rv), _) if rv > current => {
                return Err(ApiError::too_large_resource_version(rv, current));
            }
            (Some(rv), Some("Exact")) => st
                .store
                .list_at(&rt.storage, filter.namespace.as_deref(), rv)
                .ok_or_else(|| {
                    ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.store.compacted_rv()
                    ))
                })?,
            (None, Some("Exact")) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" requires a resourceVersion",
                ));
            }
            _ => st.store.list(&rt.storage, filter.namespace.as_deref()),
        };
        let rv = match (requested, opts.resource_version_match.as_deref()) {
            (Some(rv), Some("Exact")) => rv,
            _ => current,
        };
        let items: Vec<Arc<Value>> = stored
            .into_iter()
            .map(|o| Arc::new(present(rt, &o)))
            .filter(|o| filter.matches(o))
            .collect();
        Ok(page(
            &mut st,
            &scope,
            Arc::new(items),
            0,
            opts.limit,
            rv,
            None,
        ))
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

fn page(
    st: &mut State,
    scope: &str,
    items: Arc<Vec<Arc<Value>>>,
    offset: usize,
    limit: Option<usize>,
    rv: u64,
    snapshot: Option<u64>,
) -> ListResult {
    let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(items.len());
    let page_items = items[offset.min(end)..end]
        .iter()
        .map(|o| (**o).clone())
        .collect();
    let (continue_token, remaining) = if end < items.len() {
        let id = snapshot
            .unwrap_or_else(|| st.store.save_snapshot(scope.to_string(), rv, items.clone()));
        (Some(encode_continue(id, end, rv)), Some(items.len() - end))
    } else {
        (None, None)
    };
    ListResult {
        items: page_items,
        resource_version: rv.to_string(),
        continue_token,
        remaining,
    }
}

fn encode_continue(id: u64, offset: usize, rv: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": "devcluster/1", "id": id, "offset": offset, "rv": rv}).to_string())
}

fn decode_continue(token: &str) -> ApiResult<(u64, usize, u64)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["id"].as_u64().ok_or_else(bad)?,
        v["offset"].as_u64().ok_or_else(bad)? as usize,
        v["rv"].as_u64().ok_or_else(bad)?,
    ))
}

/// What the per-kind strategies reset or default on create.
fn prepare_for_create(rt: &ResourceType, obj: &mut Value) {
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
fn validate_data(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
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
fn immutable_data_changes(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
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
fn fold_string_data(obj: &mut Value) {
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
fn collect_dropped(original: &Value, normalized: &Value, path: &str, out: &mut Vec<String>) {
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
