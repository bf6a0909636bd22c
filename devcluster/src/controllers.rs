//! The controllers kube-controller-manager and the apiextensions server run, reduced to
//! what clients observe: garbage collection through ownerReferences (background,
//! foreground, orphan), namespace termination, and CRD instance cleanup.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::apiserver::{ApiServer, DeleteOptions, Propagation, State, finalizers, is_terminating};
use super::crd::{self, CLEANUP_FINALIZER};
use super::resources::StorageKey;
use super::store::{Change, ChangeKind, meta_str, owner_uids};
use super::workloads::Workloads;

const GC: &str = "garbage-collector";

fn namespaces_key() -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: "namespaces".into(),
    }
}

/// Runs until the store's change stream closes.
pub async fn run(api: Arc<ApiServer>, workloads: Arc<Workloads>) {
    let mut rx = api.lock().store.subscribe();
    loop {
        match rx.recv().await {
            Ok(change) => {
                handle(&api, &change);
                workloads.on_change(&api, &change);
            }
            Err(RecvError::Lagged(_)) => resync(&api),
            Err(RecvError::Closed) => return,
        }
    }
}

fn handle(api: &ApiServer, change: &Change) {
    let mut st = api.lock();
    let obj = &change.object;
    match change.kind {
        ChangeKind::Deleted => {
            collect_dependents_of(
                api,
                &mut st,
                meta_str(obj, "uid"),
                meta_str(obj, "namespace"),
            );
            // A dependent going away may unblock an owner's foreground deletion.
            for owner in owner_uids(obj) {
                if let Some((key, o)) = st.store.by_uid(&owner) {
                    finish_foreground(api, &mut st, &key, &o);
                }
            }
        }
        ChangeKind::Added | ChangeKind::Modified => {
            let owners_changed = change
                .previous
                .as_ref()
                .is_none_or(|p| owner_uids(p) != owner_uids(obj));
            if owners_changed && !owner_uids(obj).is_empty() {
                delete_if_all_owners_absent(api, &mut st, &change.key, obj);
            }
            process_deletion_finalizers(api, &mut st, &change.key, obj);
        }
    }
    if change.key == namespaces_key() {
        sync_namespace(api, &mut st, meta_str(obj, "name"));
    } else if !change.namespace().is_empty() && change.kind == ChangeKind::Deleted {
        sync_namespace(api, &mut st, change.namespace());
    }
    if change.key == crd::crd_key() {
        sync_crd(api, &mut st, meta_str(obj, "name"));
    } else if change.kind == ChangeKind::Deleted
        && let Some(crd_name) = st
            .registry
            .preferred_for(&change.key)
            .and_then(|rt| rt.crd.clone())
    {
        sync_crd(api, &mut st, &crd_name);
    }
}

/// The garbage collector's own finalizers on an object being deleted.
fn process_deletion_finalizers(api: &ApiServer, st: &mut State, key: &StorageKey, obj: &Value) {
    if !is_terminating(obj) {
        return;
    }
    let fins = finalizers(obj);
    if fins.iter().any(|f| f == "orphan") {
        orphan_dependents(api, st, key, obj);
    }
    if fins.iter().any(|f| f == "foregroundDeletion") {
        delete_dependents(api, st, obj);
        finish_foreground(api, st, key, obj);
    }
}

/// After a missed stretch of changes, re-examine everything that may need work.
fn resync(api: &ApiServer) {
    let mut st = api.lock();
    let namespaces: Vec<String> = st
        .store
        .list(&namespaces_key(), None)
        .iter()
        .filter(|n| is_terminating(n))
        .map(|n| meta_str(n, "name").to_string())
        .collect();
    for ns in namespaces {
        sync_namespace(api, &mut st, &ns);
    }
    let crds: Vec<String> = st
        .store
        .list(&crd::crd_key(), None)
        .iter()
        .map(|c| meta_str(c, "name").to_string())
        .collect();
    for c in crds {
        sync_crd(api, &mut st, &c);
    }
    let candidates: Vec<(StorageKey, Arc<Value>)> = st
        .store
        .all_objects()
        .filter(|(_, o)| !owner_uids(o).is_empty() || is_terminating(o))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, o) in candidates {
        if !owner_uids(&o).is_empty() {
            delete_if_all_owners_absent(api, &mut st, &key, &o);
        }
        process_deletion_finalizers(api, &mut st, &key, &o);
    }
}

fn dependents_of(st: &State, uid: &str) -> Vec<(StorageKey, Arc<Value>)> {
    st.store.dependents_of(uid)
}

/// An owner exists when an object with its uid lives in the dependent's namespace (or is
/// cluster-scoped), as the garbage collector verifies it.
fn owner_exists(st: &State, uid: &str, dependent_ns: &str) -> bool {
    st.store.by_uid(uid).is_some_and(|(_, o)| {
        let ns = meta_str(&o, "namespace");
        ns.is_empty() || ns == dependent_ns
    })
}

fn delete_object(
    api: &ApiServer,
    st: &mut State,
    key: &StorageKey,
    obj: &Value,
    propagation: Propagation,
) {
    let Some(rt) = st.registry.preferred_for(key) else {
        return;
    };
    let opts = DeleteOptions {
        propagation: Some(propagation),
        ..Default::default()
    };
    // NotFound is fine: someone else removed it first.
    let _ = api.delete_locked(
        st,
        &rt,
        meta_str(obj, "namespace"),
        meta_str(obj, "name"),
        &opts,
    );
}

fn delete_if_all_owners_absent(api: &ApiServer, st: &mut State, key: &StorageKey, obj: &Value) {
    let ns = meta_str(obj, "namespace");
    if owner_uids(obj).iter().any(|u| owner_exists(st, u, ns)) || is_terminating(obj) {
        return;
    }
    delete_object(api, st, key, obj, Propagation::Background);
}

/// Owner `uid` is gone: dependents with no other live owner are deleted, the others lose
/// the dangling reference.
fn collect_dependents_of(api: &ApiServer, st: &mut State, uid: &str, owner_ns: &str) {
    for (key, dep) in dependents_of(st, uid) {
        let dep_ns = meta_str(&dep, "namespace").to_string();
        if !owner_ns.is_empty() && dep_ns != owner_ns {
            continue;
        }
        let others_alive = owner_uids(&dep)
            .iter()
            .any(|u| u != uid && owner_exists(st, u, &dep_ns));
        if others_alive {
            remove_owner_ref(api, st, &key, &dep, uid);
        } else if !is_terminating(&dep) {
            delete_object(api, st, &key, &dep, Propagation::Background);
        }
    }
}

fn remove_owner_ref(api: &ApiServer, st: &mut State, key: &StorageKey, dep: &Value, uid: &str) {
    api.mutate(
        st,
        key,
        meta_str(dep, "namespace"),
        meta_str(dep, "name"),
        GC,
        false,
        |o| {
            if let Some(refs) = o
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r["uid"] != uid);
                if refs.is_empty()
                    && let Some(m) = o["metadata"].as_object_mut()
                {
                    m.remove("ownerReferences");
                }
            }
        },
    );
}

fn remove_finalizer(
    api: &ApiServer,
    st: &mut State,
    key: &StorageKey,
    obj: &Value,
    finalizer: &str,
) {
    api.mutate(
        st,
        key,
        meta_str(obj, "namespace"),
        meta_str(obj, "name"),
        GC,
        false,
        |o| {
            let remaining: Vec<String> = finalizers(o)
                .into_iter()
                .filter(|f| f != finalizer)
                .collect();
            o["metadata"]["finalizers"] = json!(remaining);
        },
    );
}

fn orphan_dependents(api: &ApiServer, st: &mut State, key: &StorageKey, owner: &Value) {
    let uid = meta_str(owner, "uid").to_string();
    for (dkey, dep) in dependents_of(st, &uid) {
        remove_owner_ref(api, st, &dkey, &dep, &uid);
    }
    remove_finalizer(api, st, key, owner, "orphan");
}

/// Foreground deletion: dependents go first, except those another live owner keeps,
/// which only lose their reference to this owner.
fn delete_dependents(api: &ApiServer, st: &mut State, owner: &Value) {
    let uid = meta_str(owner, "uid").to_string();
    for (dkey, dep) in dependents_of(st, &uid) {
        let dep_ns = meta_str(&dep, "namespace").to_string();
        let kept_elsewhere = owner_uids(&dep)
            .iter()
            .any(|u| *u != uid && owner_exists(st, u, &dep_ns));
        if kept_elsewhere {
            remove_owner_ref(api, st, &dkey, &dep, &uid);
        } else if !is_terminating(&dep) {
            delete_object(api, st, &dkey, &dep, Propagation::Foreground);
        }
    }
}

/// Foreground deletion completes once no dependent that blocks it
/// (`blockOwnerDeletion: true`) remains.
fn finish_foreground(api: &ApiServer, st: &mut State, key: &StorageKey, owner: &Value) {
    let current = st
        .store
        .get(key, meta_str(owner, "namespace"), meta_str(owner, "name"));
    let Some(current) = current else {
        return;
    };
    if !is_terminating(&current)
        || !finalizers(&current)
            .iter()
            .any(|f| f == "foregroundDeletion")
    {
        return;
    }
    let uid = meta_str(&current, "uid").to_string();
    let blocked = dependents_of(st, &uid).iter().any(|(_, dep)| {
        dep.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["uid"] == uid.as_str() && r["blockOwnerDeletion"] == true)
            })
    });
    if !blocked {
        remove_finalizer(api, st, key, &current, "foregroundDeletion");
    }
}

/// A terminating namespace: delete its content, wait for finalizers, then remove it.
fn sync_namespace(api: &ApiServer, st: &mut State, ns: &str) {
    let Some(namespace) = st.store.get(&namespaces_key(), "", ns) else {
        return;
    };
    if !is_terminating(&namespace) {
        return;
    }
    let mut keys: Vec<StorageKey> = st
        .registry
        .all()
        .filter(|t| t.namespaced)
        .map(|t| t.storage.clone())
        .collect();
    keys.sort();
    keys.dedup();
    let mut remaining = 0;
    for key in keys {
        for obj in st.store.list(&key, Some(ns)) {
            if !is_terminating(&obj) {
                delete_object(api, st, &key, &obj, Propagation::Background);
            }
            if st.store.get(&key, ns, meta_str(&obj, "name")).is_some() {
                remaining += 1;
            }
        }
    }
    if remaining > 0 {
        return;
    }
    api.mutate(
        st,
        &namespaces_key(),
        "",
        ns,
        "namespace-controller",
        false,
        |o| {
            o["spec"]["finalizers"] = json!([]);
        },
    );
    if let Some(n) = st.store.get(&namespaces_key(), "", ns)
        && finalizers(&n).is_empty()
    {
        st.store.remove(&namespaces_key(), "", ns);
    }
}

/// A terminating CRD: delete every instance, then release the cleanup finalizer.
fn sync_crd(api: &ApiServer, st: &mut State, name: &str) {
    let Some(c) = st.store.get(&crd::crd_key(), "", name) else {
        return;
    };
    if !is_terminating(&c) || !finalizers(&c).iter().any(|f| f == CLEANUP_FINALIZER) {
        return;
    }
    let key = StorageKey {
        group: c["spec"]["group"].as_str().unwrap_or_default().into(),
        resource: c["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .into(),
    };
    let instances = st.store.list(&key, None);
    for o in &instances {
        if !is_terminating(o) {
            delete_object(api, st, &key, o, Propagation::Background);
        }
    }
    if st.store.list(&key, None).is_empty() {
        remove_finalizer(api, st, &crd::crd_key(), &c, CLEANUP_FINALIZER);
    }
}
