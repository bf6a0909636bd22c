//! Which ApiKeys a Secret belongs to, by name, kept as the ApiKeys stream by: a Secret
//! event then finds its ApiKeys in constant time. Scanning the cache per event instead
//! costs O(ApiKeys) each, and every key's Secrets change several times while it
//! converges — quadratic: at 10,000 ApiKeys it was most of the operator's CPU.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::secret;
use crate::api::apikey::ApiKey;
use crate::store::kubernetes::state_secret_name;

/// (namespace, name) of an object.
type Key = (Option<String>, String);

#[derive(Default)]
struct Names {
    /// Secret → the ApiKeys that name it (a Secret can be named by two: one in the way).
    apikeys_by_secret: HashMap<Key, BTreeSet<String>>,
    /// ApiKey → the Secrets it names, to forget them when it changes or goes.
    secrets_by_apikey: HashMap<Key, Vec<String>>,
}

impl Names {
    fn insert(&mut self, ak: &ApiKey) {
        self.remove(ak);
        let (ns, name) = (ak.namespace(), ak.name_any());
        let secrets = vec![secret::secret_name(ak), state_secret_name(&name)];
        for s in &secrets {
            self.apikeys_by_secret
                .entry((ns.clone(), s.clone()))
                .or_default()
                .insert(name.clone());
        }
        self.secrets_by_apikey.insert((ns, name), secrets);
    }

    fn remove(&mut self, ak: &ApiKey) {
        let (ns, name) = (ak.namespace(), ak.name_any());
        for s in self
            .secrets_by_apikey
            .remove(&(ns.clone(), name.clone()))
            .unwrap_or_default()
        {
            let key = (ns.clone(), s);
            if let Some(names) = self.apikeys_by_secret.get_mut(&key) {
                names.remove(&name);
                if names.is_empty() {
                    self.apikeys_by_secret.remove(&key);
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

/// The index, shared between the ApiKey stream (which updates it) and the Secret watch
/// (which reads it).
#[derive(Clone, Default)]
pub struct SecretIndex(Arc<Mutex<State>>);

impl SecretIndex {
    /// Follows one event of the ApiKey watch.
    pub fn apply(&self, event: &Event<ApiKey>) {
        let mut state = self.0.lock().expect("lock");
        match event {
            Event::Apply(ak) => state.live.insert(ak),
            Event::Delete(ak) => state.live.remove(ak),
            Event::Init => state.relisting = Some(Names::default()),
            Event::InitApply(ak) => {
                state
                    .relisting
                    .get_or_insert_with(Names::default)
                    .insert(ak);
            }
            Event::InitDone => {
                if let Some(fresh) = state.relisting.take() {
                    state.live = fresh;
                }
            }
        }
    }

    /// The ApiKeys whose consumer Secret or store state Secret has this name.
    pub fn users(&self, namespace: Option<String>, secret: &str) -> Vec<ObjectRef<ApiKey>> {
        let state = self.0.lock().expect("lock");
        let names = state
            .live
            .apikeys_by_secret
            .get(&(namespace.clone(), secret.to_string()));
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

    fn users(index: &SecretIndex, secret: &str) -> Vec<String> {
        index
            .users(Some("shop".into()), secret)
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn follows_renames_deletions_and_relists() {
        let index = SecretIndex::default();
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
}
