//! Generic object storage: every kind lives here, keyed like etcd (`resource/ns/name`), with
//! one global resourceVersion counter, a bounded change history (what watches resume from)
//! and a broadcast of changes to open watches and to the built-in controllers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::broadcast;

use super::resources::StorageKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    pub key: StorageKey,
    /// The object after the change (for DELETED: its last state, at the deletion's rv).
    pub object: Arc<Value>,
    /// The object before the change, so selector watches can turn a MODIFIED that leaves
    /// the selection into DELETED, as kube-apiserver does.
    pub previous: Option<Arc<Value>>,
    /// The object as watches send it, serialized by the first watcher that sends it.
    pub serialized: crate::watch::Serialized,
}

impl Change {
    pub fn namespace(&self) -> &str {
        meta_str(&self.object, "namespace")
    }
    pub fn name(&self) -> &str {
        meta_str(&self.object, "name")
    }
}

pub fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `(namespace, name)`: the etcd key order lists sort by.
pub type ObjectKey = (String, String);

pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A list result kept for `continue` tokens, so every page comes from one consistent view.
struct Snapshot {
    /// What was listed (resource and namespace): a token only continues its own list.
    scope: String,
    rv: u64,
    created: Instant,
    items: Arc<Vec<Arc<Value>>>,
}

pub struct Store {
    rv: u64,
    objects: HashMap<StorageKey, BTreeMap<ObjectKey, Arc<Value>>>,
    uids: HashMap<String, (StorageKey, ObjectKey)>,
    /// Owner uid → objects naming it in `ownerReferences` (the garbage collector's graph).
    dependents: HashMap<String, BTreeSet<(StorageKey, ObjectKey)>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Watches and continue tokens older than this resourceVersion get 410 Expired.
    compacted_rv: u64,
    snapshots: HashMap<u64, Snapshot>,
    next_snapshot: u64,
    tx: broadcast::Sender<Arc<Change>>,
}

const SNAPSHOT_TTL: Duration = Duration::from_secs(300);
const MAX_SNAPSHOTS: usize = 256;

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(1 << 16);
        // Seeded from the clock, so a restarted dev cluster never reuses resourceVersions:
        // clients resuming from the previous instance get 410 and relist.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64 * 1000);
        Store {
            rv: start,
            objects: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: start,
            snapshots: HashMap::new(),
            next_snapshot: 1,
            tx,
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    pub fn get(&self, key: &StorageKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn by_uid(&self, uid: &str) -> Option<(StorageKey, Arc<Value>)> {
        let (key, (ns, name)) = self.uids.get(uid)?;
        Some((key.clone(), self.get(key, ns, name)?))
    }

    /// Objects of one resource, in key order, optionally in one namespace.
    pub fn list(&self, key: &StorageKey, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(objects) = self.objects.get(key) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => objects.values().cloned().collect(),
        }
    }

    pub fn all_objects(&self) -> impl Iterator<Item = (&StorageKey, &Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(k, objs)| objs.values().map(move |v| (k, v)))
    }

    /// Objects whose ownerReferences name `owner_uid`.
    pub fn dependents_of(&self, owner_uid: &str) -> Vec<(StorageKey, Arc<Value>)> {
        self.dependents
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|(k, (ns, name))| Some((k.clone(), self.get(k, ns, name)?)))
            .collect()
    }

    fn index(
        &mut self,
        key: &StorageKey,
        okey: &ObjectKey,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        for uid in old.map(owner_uids).unwrap_or_default() {
            if let Some(set) = self.dependents.get_mut(&uid) {
                set.remove(&(key.clone(), okey.clone()));
                if set.is_empty() {
                    self.dependents.remove(&uid);
                }
            }
        }
        for uid in new.map(owner_uids).unwrap_or_default() {
            self.dependents
                .entry(uid)
                .or_default()
                .insert((key.clone(), okey.clone()));
        }
        match (old, new) {
            (Some(o), None) => {
                self.uids.remove(meta_str(o, "uid"));
            }
            (_, Some(n)) => {
                self.uids
                    .insert(meta_str(n, "uid").to_string(), (key.clone(), okey.clone()));
            }
            (None, None) => {}
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn stamp(&mut self, mut obj: Value) -> (u64, Value) {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        (rv, obj)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    /// Inserts a new object, assigning its resourceVersion.
    pub fn insert(&mut self, key: &StorageKey, obj: Value) -> Arc<Value> {
        let (rv, obj) = self.stamp(obj);
        let obj = Arc::new(obj);
        let okey = (
            meta_str(&obj, "namespace").to_string(),
            meta_str(&obj, "name").to_string(),
        );
        self.objects
            .entry(key.clone())
            .or_default()
            .insert(okey.clone(), obj.clone());
        self.index(key, &okey, None, Some(&obj));
        self.record(Change {
            rv,
            kind: ChangeKind::Added,
            key: key.clone(),
            object: obj.clone(),
            previous: None,
            serialized: Default::default(),
        });
        obj
    }

    /// Replaces an existing object, assigning a new resourceVersion.
    pub fn replace(&mut self, key: &StorageKey, obj: Value) -> Arc<Value> {
        let (rv, obj) = self.stamp(obj);
        let obj = Arc::new(obj);
        let okey = (
            meta_str(&obj, "namespace").to_string(),
            meta_str(&obj, "name").to_string(),
        );
        let previous = self
            .objects
            .entry(key.clone())
            .or_default()
            .insert(okey.clone(), obj.clone());
        self.index(key, &okey, previous.as_deref(), Some(&obj));
        self.record(Change {
            rv,
            kind: ChangeKind::Modified,
            key: key.clone(),
            object: obj.clone(),
            previous,
            serialized: Default::default(),
        });
        obj
    }

    /// Removes an object; the DELETED event carries it at the deletion's resourceVersion.
    pub fn remove(&mut self, key: &StorageKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        let okey = (ns.to_string(), name.to_string());
        let previous = self.objects.get_mut(key)?.remove(&okey)?;
        self.index(key, &okey, Some(&previous), None);
        let (rv, last) = self.stamp((*previous).clone());
        let last = Arc::new(last);
        self.record(Change {
            rv,
            kind: ChangeKind::Deleted,
            key: key.clone(),
            object: last.clone(),
            previous: Some(previous),
            serialized: Default::default(),
        });
        Some(last)
    }

    /// Changes after `rv`, or `None` when that resourceVersion is no longer retained.
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Arc<Change>>> {
        if rv < self.compacted_rv {
            return None;
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Some(self.history.range(start..).cloned().collect())
    }

    /// The objects of `key` as they were at `rv`, rebuilt by undoing later changes.
    pub fn list_at(&self, key: &StorageKey, ns: Option<&str>, rv: u64) -> Option<Vec<Arc<Value>>> {
        let later = self.changes_since(rv)?;
        let mut objects: BTreeMap<ObjectKey, Arc<Value>> = self
            .list(key, ns)
            .into_iter()
            .map(|o| {
                (
                    (
                        meta_str(&o, "namespace").into(),
                        meta_str(&o, "name").into(),
                    ),
                    o,
                )
            })
            .collect();
        for change in later.iter().rev().filter(|c| &c.key == key) {
            if ns.is_some_and(|ns| ns != change.namespace()) {
                continue;
            }
            let okey = (change.namespace().to_string(), change.name().to_string());
            match (&change.kind, &change.previous) {
                (ChangeKind::Added, _) => {
                    objects.remove(&okey);
                }
                (_, Some(prev)) => {
                    objects.insert(okey, prev.clone());
                }
                (_, None) => {}
            }
        }
        Some(objects.into_values().collect())
    }

    /// Drops all history: every older watch or continue token now gets 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
        self.snapshots.clear();
    }

    pub fn save_snapshot(&mut self, scope: String, rv: u64, items: Arc<Vec<Arc<Value>>>) -> u64 {
        let now = Instant::now();
        let compacted = self.compacted_rv;
        self.snapshots
            .retain(|_, s| now.duration_since(s.created) < SNAPSHOT_TTL && s.rv >= compacted);
        if self.snapshots.len() >= MAX_SNAPSHOTS
            && let Some(oldest) = self.snapshots.keys().min().copied()
        {
            self.snapshots.remove(&oldest);
        }
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        self.snapshots.insert(
            id,
            Snapshot {
                scope,
                rv,
                created: now,
                items,
            },
        );
        id
    }

    pub fn snapshot(&self, scope: &str, id: u64) -> Option<(u64, Arc<Vec<Arc<Value>>>)> {
        let s = self.snapshots.get(&id).filter(|s| s.scope == scope)?;
        (s.rv >= self.compacted_rv && s.created.elapsed() < SNAPSHOT_TTL)
            .then(|| (s.rv, s.items.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> StorageKey {
        StorageKey {
            group: String::new(),
            resource: "configmaps".into(),
        }
    }

    fn cm(ns: &str, name: &str, v: &str) -> Value {
        json!({"metadata": {"namespace": ns, "name": name, "uid": format!("{ns}-{name}")}, "data": {"v": v}})
    }

    #[test]
    fn resource_versions_increase_and_history_replays() {
        let mut s = Store::new(100);
        let a = s.insert(&key(), cm("d", "a", "1"));
        let start: u64 = meta_str(&a, "resourceVersion").parse().unwrap();
        s.replace(&key(), cm("d", "a", "2"));
        s.remove(&key(), "d", "a");
        let kinds: Vec<_> = s
            .changes_since(start)
            .unwrap()
            .iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(kinds, [ChangeKind::Modified, ChangeKind::Deleted]);
        assert!(s.get(&key(), "d", "a").is_none());
    }

    #[test]
    fn history_limit_expires_old_resource_versions() {
        let mut s = Store::new(2);
        for i in 0..5 {
            s.insert(&key(), cm("d", &format!("o{i}"), "x"));
        }
        assert!(
            s.changes_since(2).is_none(),
            "evicted history must report expiry"
        );
        assert_eq!(s.changes_since(s.current_rv() - 1).unwrap().len(), 1);
        s.compact();
        assert!(s.changes_since(s.current_rv() - 1).is_none());
        assert_eq!(s.changes_since(s.current_rv()).unwrap().len(), 0);
    }

    #[test]
    fn dependents_are_indexed_by_owner() {
        let mut s = Store::new(10);
        let mut owned = cm("d", "dep", "1");
        owned["metadata"]["ownerReferences"] = json!([{"uid": "owner-1"}]);
        s.insert(&key(), owned.clone());
        assert_eq!(s.dependents_of("owner-1").len(), 1);
        owned["metadata"]["ownerReferences"] = json!([{"uid": "owner-2"}]);
        s.replace(&key(), owned);
        assert!(s.dependents_of("owner-1").is_empty());
        assert_eq!(s.dependents_of("owner-2").len(), 1);
        s.remove(&key(), "d", "dep");
        assert!(s.dependents_of("owner-2").is_empty());
        assert!(s.by_uid("d-dep").is_none());
    }

    #[test]
    fn list_at_rebuilds_a_past_state() {
        let mut s = Store::new(100);
        s.insert(&key(), cm("d", "a", "1"));
        let rv = s.current_rv();
        s.replace(&key(), cm("d", "a", "2"));
        s.insert(&key(), cm("d", "b", "1"));
        s.remove(&key(), "d", "a");
        let past = s.list_at(&key(), Some("d"), rv).unwrap();
        assert_eq!(past.len(), 1);
        assert_eq!(past[0]["data"]["v"], "1");
    }

    #[test]
    fn namespaced_list_is_key_ordered() {
        let mut s = Store::new(10);
        for (ns, n) in [("b", "z"), ("a", "y"), ("b", "a"), ("c", "x")] {
            s.insert(&key(), cm(ns, n, "v"));
        }
        let names: Vec<_> = s
            .list(&key(), Some("b"))
            .iter()
            .map(|o| meta_str(o, "name").to_string())
            .collect();
        assert_eq!(names, ["a", "z"]);
        assert_eq!(s.list(&key(), None).len(), 4);
    }
}
