//! Mass rotation: every ApiKey asked to rotate at once, against an issuer that allows
//! `rps` requests per second. The bound is what the limit allows for the issuer requests
//! the rotations made; the operator should come close to it without meeting a 429.

use std::time::{Duration, Instant};

use apikey_operator::api::apikey::ApiKey;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::Result;
use super::processes::counter_total;

pub struct Report {
    pub took: Duration,
    /// Requests the issuer served, and how many its limit refused.
    pub requests: u64,
    pub refused: u64,
}

/// Annotates all `n` ApiKeys with `apikey.dev/rotate` (`in_flight` at a time) and waits
/// until each has a new key and its previous one is revoked.
pub async fn rotate_all(
    client: &Client,
    n: usize,
    in_flight: usize,
    issuer_url: &str,
) -> Result<Report> {
    let metrics = format!("{issuer_url}/metrics");
    let counted = |outcome: &'static str| {
        counter_total(&metrics, "reference_issuer_requests_total", move |l| {
            l.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    let (served, refused) = (counted("served").await?, counted("rate_limited").await?);
    let api: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    let rotated = tokio::spawn(all_rotated(api.clone(), n));
    let started = Instant::now();
    let rotate = json!({"metadata": {"annotations": {"apikey.dev/rotate": "mass"}}});
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, rotate) = (api.clone(), &rotate);
            async move {
                api.patch(
                    &format!("k{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(rotate),
                )
                .await
                .map(drop)
            }
        })
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    rotated.await?;
    let took = started.elapsed();
    Ok(Report {
        took,
        requests: counted("served").await? - served,
        refused: counted("rate_limited").await? - refused,
    })
}

/// Resolves once `n` ApiKeys are past their second rotation with no previous key left.
async fn all_rotated(api: Api<ApiKey>, n: usize) {
    let mut done = std::collections::HashSet::new();
    let mut stream = std::pin::pin!(watcher(api, Default::default()).applied_objects());
    while let Ok(Some(ak)) = stream.try_next().await {
        let finished = ak.status.as_ref().is_some_and(|s| {
            s.rotation_count >= 2 && s.previous_key.is_none() && s.pending_key.is_none()
        });
        if finished {
            done.insert(ak.name_any());
            if done.len() >= n {
                return;
            }
        }
    }
}
