//! Which ApiKeys an object names — a Secret (consumer or state), a consumer workload —
//! kept as the ApiKeys stream by: an event of that object then finds its ApiKeys in
//! constant time. Scanning the cache per event instead costs O(ApiKeys) each, and every
//! key's Secrets and consumers change several times while it converges — quadratic: at
//! 10,000 ApiKeys it was most of the operator's CPU.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::secret;
use crate::api::apikey::{ApiKey, ConsumerKind};
use crate::store::kubernetes::state_secret_name;

/// The names an ApiKey is found by.
pub type KeysOf = fn(&ApiKey) -> Vec<String>;

/// Its consumer Secret and its store state Secret.
pub fn secret_names(ak: &ApiKey) -> Vec<String> {
    vec![secret::secret_name(ak), state_secret_name(&ak.name_any())]
}

/// `Kind/name` of each consumer named, and [`BY_SELECTOR`] if any is chosen by selector.
pub fn consumer_names(ak: &ApiKey) -> Vec<String> {
    let mut names: Vec<String> = ak
        .spec
        .consumers
        .iter()
        .map(|c| match &c.name {
            Some(name) => consumer(c.kind, name),
            None => BY_SELECTOR.to_string(),
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The key of a named consumer.
pub fn consumer(kind: ConsumerKind, name: &str) -> String {
    format!("{kind:?}/{name}")
}

/// Where ApiKeys with selector consumers are found (a selector is checked per event).
pub const BY_SELECTOR: &str = "*selector*";

/// (namespace, name) of an object.
type Key = (Option<String>, String);

#[derive(Default)]
struct Names {
    /// Key → the ApiKeys found by it (a Secret can be named by two: one in the way).
    apikeys_by_key: HashMap<Key, BTreeSet<String>>,
    /// ApiKey → its keys, to forget them when it changes or goes.
    keys_by_apikey: HashMap<Key, Vec<String>>,
}

impl Names {
    fn insert(&mut self, ak: &ApiKey, keys_of: KeysOf) {
        self.remove(ak);
        let (ns, name) = (ak.namespace(), ak.name_any());
        let secrets = keys_of(ak);
        for s in &secrets {
            self.apikeys_by_key
                .entry((ns.clone(), s.clone()))
                .or_default()
                .insert(name.clone());
        }
        self.keys_by_apikey.insert((ns, name), secrets);
    }

    fn remove(&mut self, ak: &ApiKey) {
        let (ns, name) = (ak.namespace(), ak.name_any());
        for s in self
            .keys_by_apikey
            .remove(&(ns.clone(), name.clone()))
            .unwrap_or_default()
        {
            let key = (ns.clone(), s);
            if let Some(names) = self.apikeys_by_key.get_mut(&key) {
                names.remove(&name);
                if names.is_empty() {
                    self.apikeys_by_key.remove(&key);
                }
            }
        }
    }
}

#[derive(Default)]
struct State {
    live: Names,
    /// Built during a re-list, replacing `live` once it is complete.
    relisting: Option<Names>,
}

/// The index, shared between the ApiKey stream (which updates it) and a watch of the
/// objects it names (which reads it).
#[derive(Clone)]
pub struct Index {
    state: Arc<Mutex<State>>,
    keys_of: KeysOf,
}

impl Index {
    pub fn new(keys_of: KeysOf) -> Self {
        Index {
            state: Arc::default(),
            keys_of,
        }
    }

    /// Follows one event of the ApiKey watch.
    pub fn apply(&self, event: &Event<ApiKey>) {
        let mut state = self.state.lock().expect("lock");
        match event {
            Event::Apply(ak) => state.live.insert(ak, self.keys_of),
            Event::Delete(ak) => state.live.remove(ak),
            Event::Init => state.relisting = Some(Names::default()),
            Event::InitApply(ak) => {
                state
                    .relisting
                    .get_or_insert_with(Names::default)
                    .insert(ak, self.keys_of);
            }
            Event::InitDone => {
                if let Some(fresh) = state.relisting.take() {
                    state.live = fresh;
                }
            }
        }
    }

    /// The ApiKeys in `namespace` found by `key`.
    pub fn users(&self, namespace: Option<String>, key: &str) -> Vec<ObjectRef<ApiKey>> {
        let state = self.state.lock().expect("lock");
        let names = state
            .live
            .apikeys_by_key
            .get(&(namespace.clone(), key.to_string()));
        names
            .into_iter()
            .flatten()
            .map(|name| {
                let r = ObjectRef::new(name);
                match &namespace {
                    Some(ns) => r.within(ns),
                    None => r,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apikey(name: &str, secret: Option<&str>) -> ApiKey {
        let mut ak: ApiKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "apikey.dev/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"issuerRef": {"name": "gen"}, "rotation": {"every": "1h"}}}))
        .unwrap();
        ak.spec.secret.name = secret.map(String::from);
        ak
    }

    fn users(index: &Index, secret: &str) -> Vec<String> {
        index
            .users(Some("shop".into()), secret)
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn follows_renames_deletions_and_relists() {
        let index = Index::new(secret_names);
        index.apply(&Event::Apply(apikey("billing", None)));
        index.apply(&Event::Apply(apikey("other", Some("billing"))));
        assert_eq!(users(&index, "billing"), ["billing", "other"]);
        assert_eq!(users(&index, "billing-apikey-state"), ["billing"]);
        // Renamed: the old name no longer leads to it.
        index.apply(&Event::Apply(apikey("other", Some("renamed"))));
        assert_eq!(users(&index, "billing"), ["billing"]);
        assert_eq!(users(&index, "renamed"), ["other"]);
        index.apply(&Event::Delete(apikey("billing", None)));
        assert!(users(&index, "billing").is_empty());
        // A re-list replaces everything once complete.
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(apikey("fresh", None)));
        assert_eq!(
            users(&index, "renamed"),
            ["other"],
            "until the re-list is done"
        );
        index.apply(&Event::InitDone);
        assert!(users(&index, "renamed").is_empty());
        assert_eq!(users(&index, "fresh"), ["fresh"]);
        assert!(index.users(Some("elsewhere".into()), "fresh").is_empty());
    }

    #[test]
    fn consumers_are_found_by_kind_and_name_or_by_selector() {
        let mut ak = apikey("billing", None);
        ak.spec.consumers = serde_json::from_value(serde_json::json!([
            {"kind": "Deployment", "name": "web"},
            {"kind": "StatefulSet", "selector": {"matchLabels": {"app": "db"}}}]))
        .unwrap();
        let index = Index::new(consumer_names);
        index.apply(&Event::Apply(ak));
        assert_eq!(
            users(&index, &consumer(ConsumerKind::Deployment, "web")),
            ["billing"]
        );
        assert!(users(&index, &consumer(ConsumerKind::StatefulSet, "web")).is_empty());
        assert_eq!(users(&index, BY_SELECTOR), ["billing"]);
    }
}
