//! The protocol's invariants (DESIGN.md) that only a watch can see, checked after a
//! scenario: the key the consumer Secret offers is never one already revoked, and (with
//! the Kubernetes store, whose state a watch sees too) never one the store did not hold
//! first; rotation numbers never go back, and no key material leaks into status or
//! events. What the issuer and the store hold at the end is the fault matrix's to check
//! (`controller::matrix`), each through its own view.
//!
//! Changes are ordered by resourceVersion: the dev cluster's are one counter for every
//! object (etcd's revision), so a Secret's version orders it among the ApiKey's.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use apikey_operator::api::apikey::ApiKey;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::task::JoinHandle;

/// What a watch of one object saw, kept as it arrives (so stopping the watch loses none).
struct Log<T> {
    seen: Arc<Mutex<Vec<T>>>,
    task: JoinHandle<()>,
}

impl<T: Send + 'static> Log<T> {
    fn watch<K>(api: Api<K>, name: &str, note: impl Fn(K) -> T + Send + 'static) -> Self
    where
        K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut stream = std::pin::pin!(watcher(api, by_name).applied_objects());
                while let Ok(Some(object)) = stream.try_next().await {
                    seen.lock().unwrap().push(note(object));
                }
            }
        });
        Log { seen, task }
    }

    fn stop(self) -> Vec<T> {
        self.task.abort();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// One version of the consumer Secret: the ids it offers and its values.
struct Offered {
    version: u64,
    current: Option<String>,
    ids: Vec<String>,
    values: Vec<String>,
}

/// One version of the ApiKey: its rotation count and the keys its history says revoked.
struct Recorded {
    version: u64,
    rotation_count: u64,
    revoked: BTreeSet<String>,
}

/// What a watch saw of one ApiKey and its consumer Secret (and the Kubernetes store's
/// state Secret, if asked) while a scenario ran.
pub struct Recorder {
    secret: Log<Offered>,
    apikey: Log<Recorded>,
    /// Each version of the state Secret, by the key ids it holds.
    state: Option<Log<(u64, BTreeSet<String>)>>,
}

fn version<K: Resource>(object: &K) -> u64 {
    object
        .resource_version()
        .and_then(|v| v.parse().ok())
        .expect("the dev cluster's resourceVersions are numbers")
}

fn text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The key id a Kubernetes store state Secret field holds: `k-` and the hex of the id.
pub fn state_key_id(field: &str) -> Option<String> {
    let hex = field.strip_prefix("k-")?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The key ids a Kubernetes store state Secret holds.
fn stored_ids(s: &Secret) -> BTreeSet<String> {
    s.data
        .iter()
        .flatten()
        .filter_map(|(field, _)| state_key_id(field))
        .collect()
}

impl Recorder {
    /// `state_secret`: the Kubernetes store's state Secret, when the ApiKey uses that store.
    pub fn start(
        client: &kube::Client,
        apikey: &str,
        secret: &str,
        state_secret: Option<&str>,
    ) -> Self {
        let secrets: Api<Secret> = Api::default_namespaced(client.clone());
        let secret = Log::watch(secrets.clone(), secret, |s: Secret| Offered {
            version: version(&s),
            current: text(&s, "api-key-id"),
            ids: ["api-key-id", "api-key-id-previous"]
                .iter()
                .filter_map(|f| text(&s, f))
                .collect(),
            values: s
                .data
                .iter()
                .flatten()
                .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned())
                .collect(),
        });
        let state = state_secret
            .map(|name| Log::watch(secrets, name, |s: Secret| (version(&s), stored_ids(&s))));
        let apikeys: Api<ApiKey> = Api::default_namespaced(client.clone());
        let apikey = Log::watch(apikeys, apikey, |ak: ApiKey| {
            let status = ak.status.clone().unwrap_or_default();
            Recorded {
                version: version(&ak),
                rotation_count: status.rotation_count,
                revoked: status
                    .history
                    .iter()
                    .filter(|h| h.revoked_at.is_some())
                    .map(|h| h.id.clone())
                    .collect(),
            }
        });
        Recorder {
            secret,
            apikey,
            state,
        }
    }

    /// Stops watching and asserts every invariant against what was seen.
    pub async fn check(self, client: &kube::Client, apikey: &str) {
        let offered = self.secret.stop();
        let recorded = self.apikey.stop();
        let states = self.state.map(Log::stop);
        let ak = Api::<ApiKey>::default_namespaced(client.clone())
            .get(apikey)
            .await
            .unwrap();
        let status = ak.status.clone().unwrap_or_default();
        // A recorder that saw nothing would check nothing.
        assert!(!recorded.is_empty(), "the recorder saw the ApiKey");
        if status.current_key.is_some() {
            assert!(!offered.is_empty(), "the recorder saw the Secret");
        }

        // 1. The Secret never offers, as its current key, one already recorded revoked.
        for o in &offered {
            let Some(current) = &o.current else {
                continue;
            };
            let revoked_in = recorded
                .iter()
                .find(|r| r.revoked.contains(current))
                .map(|r| r.version);
            assert!(
                revoked_in.is_none_or(|v| o.version < v),
                "the Secret offered {current} after it was revoked"
            );
        }
        // 1b. ... nor a key the store did not hold before: stored, then distributed (so a
        // key is never revoked before its successor is stored).
        if let Some(states) = &states {
            for (o, id) in offered
                .iter()
                .flat_map(|o| o.ids.iter().map(move |id| (o, id)))
            {
                assert!(
                    states
                        .iter()
                        .any(|(v, ids)| *v < o.version && ids.contains(id)),
                    "the Secret offered {id} before the store held it"
                );
            }
        }
        // 2. rotationCount never goes back.
        let counts: Vec<u64> = recorded.iter().map(|r| r.rotation_count).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "rotationCount went back: {counts:?}"
        );
        // 3. No key material in status or events.
        let materials: BTreeSet<String> = offered
            .iter()
            .flat_map(|o| o.values.iter().filter(|v| v.len() > 20).cloned())
            .collect();
        let status_json = serde_json::to_string(&status).unwrap();
        let events = Api::<Event>::default_namespaced(client.clone())
            .list(&Default::default())
            .await
            .unwrap();
        let events_json = serde_json::to_string(&events.items).unwrap();
        for m in &materials {
            assert!(!status_json.contains(m.as_str()), "key material in status");
            assert!(
                !events_json.contains(m.as_str()),
                "key material in an event"
            );
        }
    }
}
