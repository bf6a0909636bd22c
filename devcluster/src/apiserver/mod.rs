//! Request semantics shared by the HTTP layer and the built-in controllers: what
//! kube-apiserver's generic registry does on create, update, patch, delete, get and list.
//! Writes (`write.rs`), deletion (`delete.rs`), lists (`list.rs`) and what every write is
//! checked against (`admission.rs`) live in their own files.

mod admission;
mod compare;
mod delete;
mod list;
mod services;
mod subresource;
mod write;

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};

use super::cel::Release;
use super::errors::{ApiError, ApiResult};
use super::events;
use super::fieldset::Scope;
use super::meta;
use super::resources::{Registry, ResourceType, View};
use super::store::Store;

use admission::*;
pub use delete::*;
pub use list::*;
pub use services::KUBERNETES_SERVICE_IP;
pub use subresource::*;

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

pub fn present(rt: &ResourceType, stored: &Value) -> Value {
    match rt.view {
        View::EventsV1 => events::core_to_v1(stored),
        View::Identity if rt.is_custom() => {
            let mut v = stored.clone();
            v["apiVersion"] = json!(rt.api_version());
            v["kind"] = json!(rt.kind);
            v
        }
        View::Identity => wire_order(rt, stored),
    }
}

/// A built-in object as kube-apiserver writes it: `kind` and `apiVersion` first (Go's
/// TypeMeta), then the rest in field order. Clients see this order in decode errors.
fn wire_order(rt: &ResourceType, stored: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!(rt.kind));
    out.insert("apiVersion".into(), json!(rt.api_version()));
    if let Some(fields) = stored.as_object() {
        for (k, v) in fields {
            if k != "kind" && k != "apiVersion" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
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

    /// The served resource of a kind (bootstrap objects name kinds, not resources).
    pub fn resource_of_kind(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Option<Arc<ResourceType>> {
        self.lock()
            .registry
            .all()
            .find(|t| {
                t.group == group && t.version == version && t.kind == kind && t.review.is_none()
            })
            .cloned()
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.get(group, version, plural)
    }
}
