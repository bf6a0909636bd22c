//! The protocol's invariants (DESIGN.md) that only a watch can see, checked after a
//! scenario: the key the consumer Secret offers is never one already revoked, rotation
//! numbers never go back, and no key material leaks into status or events. What the
//! issuer and the store hold at the end is the fault matrix's to check
//! (`controller::matrix`), each through its own view.

use std::collections::BTreeSet;

use apikey_operator::api::apikey::ApiKey;
use futures::TryStreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;

/// What a watch saw of one ApiKey and its consumer Secret while a scenario ran.
pub struct Recorder {
    secret_task: JoinHandle<Vec<(Timestamp, String, Vec<String>)>>,
    apikey_task: JoinHandle<Vec<u64>>,
}

fn text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

impl Recorder {
    pub fn start(client: &kube::Client, apikey: &str, secret: &str) -> Self {
        let secrets: Api<Secret> = Api::default_namespaced(client.clone());
        let by_name = watcher::Config::default().fields(&format!("metadata.name={secret}"));
        let secret_task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut stream = std::pin::pin!(watcher(secrets, by_name).applied_objects());
            while let Ok(Some(s)) = stream.try_next().await {
                let values: Vec<String> = s
                    .data
                    .iter()
                    .flatten()
                    .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned())
                    .collect();
                seen.push((
                    Timestamp::now(),
                    text(&s, "api-key-id").unwrap_or_default(),
                    values,
                ));
            }
            seen
        });
        let apikeys: Api<ApiKey> = Api::default_namespaced(client.clone());
        let by_name = watcher::Config::default().fields(&format!("metadata.name={apikey}"));
        let apikey_task = tokio::spawn(async move {
            let mut counts = Vec::new();
            let mut stream = std::pin::pin!(watcher(apikeys, by_name).applied_objects());
            while let Ok(Some(ak)) = stream.try_next().await {
                counts.push(ak.status.map_or(0, |s| s.rotation_count));
            }
            counts
        });
        Recorder {
            secret_task,
            apikey_task,
        }
    }

    /// Stops watching and asserts every invariant against the final state.
    pub async fn check(self, client: &kube::Client, apikey: &str) {
        self.secret_task.abort();
        self.apikey_task.abort();
        let secrets = self.secret_task.await.unwrap_or_default();
        let counts = self.apikey_task.await.unwrap_or_default();
        let ak = Api::<ApiKey>::default_namespaced(client.clone())
            .get(apikey)
            .await
            .unwrap();
        let status = ak.status.clone().unwrap_or_default();

        // 1. A revoked key is never the one the Secret offers.
        for (at, current, _) in &secrets {
            for h in status.history.iter().filter(|h| &h.id == current) {
                let revoked: Timestamp = h.revoked_at.as_deref().unwrap().parse().unwrap();
                assert!(
                    *at <= revoked,
                    "the Secret offered {current} after it was revoked"
                );
            }
        }
        // 2. rotationCount never goes back.
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "rotationCount went back: {counts:?}"
        );
        // 3. No key material in status or events.
        let materials: BTreeSet<String> = secrets
            .iter()
            .flat_map(|(_, _, values)| values.iter().filter(|v| v.len() > 20).cloned())
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
