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

/// The Events the operator posts for a new key (counted apart from its writes).
const EVENTS: [&str; 3] = ["RotationStarted", "Minted", "Distributed"];

/// Which writes a floor makes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// The operator's writes.
    Writes,
    /// The same, and the operator's Events: what the API server must do for the operator,
    /// whatever the operator itself costs.
    WritesAndEvents,
}

/// The operator's writes for one key, made directly, in the same per-key order and mix
/// (a finalizer patch, three status writes, two Secret creates, and with
/// `Mix::WritesAndEvents` three core Events) on objects of the same kinds,
/// `concurrency` keys at a time, by a client doing nothing else: what the API server
/// makes those writes cost.
pub async fn floor(client: &Client, keys: usize, concurrency: usize, mix: Mix) -> Result<Duration> {
    let prefix = match mix {
        Mix::Writes => "f",
        Mix::WritesAndEvents => "e",
    };
    let apikeys: Api<ApiKey> = Api::namespaced(client.clone(), "floor");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "floor");
    let events: Api<Event> = Api::namespaced(client.clone(), "floor");
    // The objects exist first, as the benchmark's ApiKeys do before the operator starts.
    futures::stream::iter(0..keys)
        .map(|i| {
            let apikeys = apikeys.clone();
            async move {
                apikeys
                    .create(
                        &PostParams::default(),
                        &post(apikey(&format!("{prefix}{i}"), "gen")),
                    )
                    .await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    let started = Instant::now();
    futures::stream::iter(0..keys)
        .map(|i| {
            let (apikeys, secrets, events) = (apikeys.clone(), secrets.clone(), events.clone());
            async move {
                let name = format!("{prefix}{i}");
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
    Ok(started.elapsed())
}
