//! The floor: the operator's writes for a new key, made directly by a client doing
//! nothing else, so the API server's own cost for them is measured in the same run.

use std::time::{Duration, Instant};

use apikey_operator::api::apikey::ApiKey;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Result, apikey, post};

/// The status writes of a new key: the intent, the minted id, the promotion.
const STATUS_WRITES: [&str; 3] = ["Issuing", "Storing", "Ready"];
/// Per key: a finalizer patch, the status writes, two Secret creates.
pub const WRITES_PER_KEY: usize = 1 + STATUS_WRITES.len() + 2;

/// The Events the operator posts for a new key (counted apart from its writes): the
/// promotion's.
pub const EVENTS: [&str; 1] = ["Distributed"];

/// Which writes a floor makes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// The operator's writes.
    Writes,
    /// The same, and the operator's Events: what the API server must do for the operator,
    /// whatever the operator itself costs.
    WritesAndEvents,
}

/// When a floor's ApiKeys are created.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Creates {
    /// Before the clock starts: only the writes are timed.
    Untimed,
    /// On the clock, as the benchmark creates its own (`in_flight` at a time, on a task of
    /// their own), each key's writes starting as soon as it exists, as the operator's do:
    /// the operator's time runs from the first create too.
    Timed { in_flight: usize },
}

/// The operator's writes for one key, made directly, in the same per-key order and mix
/// (a finalizer patch, three status writes, two Secret creates, and with
/// `Mix::WritesAndEvents` its core Event) on objects of the same kinds,
/// `concurrency` keys at a time, by a client doing nothing else: what the API server
/// makes those writes cost.
pub async fn floor(
    client: &Client,
    keys: usize,
    concurrency: usize,
    mix: Mix,
    creates: Creates,
) -> Result<Duration> {
    let prefix = match (mix, creates) {
        (Mix::Writes, Creates::Untimed) => "f",
        (Mix::WritesAndEvents, Creates::Untimed) => "e",
        (_, Creates::Timed { .. }) => "c",
    };
    let apikeys: Api<ApiKey> = Api::namespaced(client.clone(), "floor");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "floor");
    let events: Api<Event> = Api::namespaced(client.clone(), "floor");
    let (created, existing) = futures::channel::mpsc::unbounded();
    let create_all = |in_flight: usize| {
        let apikeys = apikeys.clone();
        async move {
            futures::stream::iter(0..keys)
                .map(|i| {
                    let apikeys = apikeys.clone();
                    async move {
                        let name = format!("{prefix}{i}");
                        apikeys
                            .create(&PostParams::default(), &post(apikey(&name, "gen")))
                            .await
                            .map(|_| name)
                    }
                })
                .buffer_unordered(in_flight)
                .try_for_each(|name| {
                    let _ = created.unbounded_send(name);
                    futures::future::ready(Ok(()))
                })
                .await
        }
    };
    let (started, creating) = match creates {
        Creates::Untimed => {
            create_all(64).await?;
            (Instant::now(), None)
        }
        Creates::Timed { in_flight } => (Instant::now(), Some(tokio::spawn(create_all(in_flight)))),
    };
    existing
        .map(|name| {
            let (apikeys, secrets, events) = (apikeys.clone(), secrets.clone(), events.clone());
            async move {
                let pp = PatchParams::default();
                let finalizer = json!({"metadata": {"finalizers": ["apikey.dev/cleanup"]}});
                apikeys.patch(&name, &pp, &Patch::Merge(&finalizer)).await?;
                for phase in STATUS_WRITES {
                    let status = json!({"status": {"phase": phase, "rotationCount": 1,
                        "conditions": [{"type": "Ready", "status": "True", "reason": phase,
                            "message": "floor", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
                    apikeys
                        .patch_status(&name, &pp, &Patch::Merge(&status))
                        .await?;
                }
                for secret in [name.clone(), format!("{name}-apikey-state")] {
                    let s =
                        json!({"metadata": {"name": secret}, "stringData": {"api-key": "floor"}});
                    secrets.create(&PostParams::default(), &post(s)).await?;
                }
                for reason in EVENTS.iter().filter(|_| mix == Mix::WritesAndEvents) {
                    let e = json!({"metadata": {"name": format!("{name}.{}", reason.to_lowercase())},
                        "involvedObject": {"apiVersion": "apikey.dev/v1alpha1", "kind": "ApiKey",
                            "namespace": "floor", "name": name},
                        "type": "Normal", "reason": reason, "action": "Reconcile", "message": "floor",
                        "source": {"component": "floor"}, "reportingComponent": "floor",
                        "reportingInstance": "floor", "count": 1,
                        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"});
                    events.create(&PostParams::default(), &post(e)).await?;
                }
                Ok::<(), Box<dyn std::error::Error>>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    if let Some(creating) = creating {
        creating.await??;
    }
    Ok(started.elapsed())
}
