//! Zero downtime: consumers that keep calling the protected API (the reference issuer's
//! `/whoami`) through five rotations, as pods do — those that re-read a mounted Secret
//! after a delay, and those that read it only when they start (a Deployment's rollout).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use apikey_operator::api::apikey::ApiKey;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use serde_json::json;

use super::harness::*;
use super::http_issuer::{http_client, rotate, widget_key, widgetjar};
use crate::support::*;

/// When a consumer picks up the key in the Secret.
#[derive(Clone, Copy)]
enum Reload {
    /// Re-reads it this long after the last read (a mounted Secret's refresh).
    Every(Duration),
    /// Reads it when its pods start: pods of a new template read the Secret as it is then,
    /// and take over the calls once the Deployment `app` has rolled out.
    OnRollout,
}

/// Where the key a consumer holds comes from.
struct KeySource {
    secrets: Api<Secret>,
    deployments: Api<Deployment>,
    secret: String,
    reload: Reload,
    key: String,
    loaded: tokio::time::Instant,
    /// OnRollout: the template generation whose pods are starting, and the key they read.
    starting: Option<(i64, String)>,
    generation: i64,
}

impl KeySource {
    async fn read_secret(&self) -> String {
        data(&self.secrets.get(&self.secret).await.unwrap(), "api-key").unwrap()
    }

    /// The key the consumer's calls carry now.
    async fn current(&mut self) -> &str {
        match self.reload {
            Reload::Every(delay) => {
                if self.key.is_empty() || self.loaded.elapsed() >= delay {
                    self.key = self.read_secret().await;
                    self.loaded = tokio::time::Instant::now();
                }
            }
            Reload::OnRollout => {
                let d = self.deployments.get("app").await.unwrap();
                let generation = d.metadata.generation.unwrap_or_default();
                if self.key.is_empty() {
                    self.key = self.read_secret().await;
                    self.generation = generation;
                } else if generation != self.generation {
                    self.starting = Some((generation, self.read_secret().await));
                    self.generation = generation;
                }
                let status = d.status.unwrap_or_default();
                let rolled_out = status.observed_generation == Some(generation)
                    && status.updated_replicas == d.spec.and_then(|s| s.replicas);
                if rolled_out
                    && self
                        .starting
                        .as_ref()
                        .is_some_and(|(g, _)| *g == generation)
                {
                    self.key = self.starting.take().unwrap().1;
                }
            }
        }
        &self.key
    }
}

/// A workload using the key, calling the protected API all the time and counting refusals.
struct Consumer {
    calls: Arc<tokio::sync::watch::Sender<usize>>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    fn start(c: &Client, secret: &str, url: &str, reload: Reload) -> Consumer {
        let calls = Arc::new(tokio::sync::watch::channel(0).0);
        let refused: Arc<AtomicUsize> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let mut source = KeySource {
            secrets: Api::default_namespaced(c.clone()),
            deployments: Api::default_namespaced(c.clone()),
            secret: secret.into(),
            reload,
            key: String::new(),
            loaded: tokio::time::Instant::now(),
            starting: None,
            generation: 0,
        };
        let whoami = format!("{url}/whoami");
        let (n, r, s) = (Arc::clone(&calls), Arc::clone(&refused), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let http = http_client();
            while !s.load(Ordering::Relaxed) {
                let key = source.current().await.to_string();
                let status = http
                    .get(&whoami)
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap()
                    .status();
                n.send_modify(|n| *n += 1);
                if status == reqwest::StatusCode::UNAUTHORIZED {
                    r.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Consumer {
            calls,
            refused,
            stop,
            task,
        }
    }

    /// Waits until it has made `more` calls after the ones made so far.
    async fn calls_on(&self, more: usize) {
        let target = *self.calls.borrow() + more;
        let mut calls = self.calls.subscribe();
        tokio::time::timeout(PATIENCE, calls.wait_for(|n| *n >= target))
            .await
            .expect("the consumer keeps calling")
            .unwrap();
    }

    /// Stops it and returns (calls, refused).
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (*self.calls.borrow(), self.refused.load(Ordering::Relaxed))
    }
}

/// Creates ApiKey `name` (issuer widgetjar) with `overlap`, optionally naming Deployment
/// `app` as its consumer, runs a consumer through five rotations, returns (calls, refused).
async fn five_rotations(
    c: &Client,
    name: &str,
    overlap: &str,
    declared: bool,
    reload: Reload,
) -> (usize, usize) {
    let (issuer, url) = widgetjar(c).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let mut ak = widget_key(name, json!({"every": "1h", "overlap": overlap}));
    if declared {
        ak["spec"]["consumers"] = json!([{"kind": "Deployment", "name": "app"}]);
    }
    create::<ApiKey>(c, ak).await;
    wait(apikeys.clone(), name, ready).await;
    let consumer = Consumer::start(c, name, &url, reload);
    // The consumer calls through every rotation and after it, however fast the
    // rotations go: past a reload delay's worth of calls (20 ms apart) each time.
    for _ in 0..5 {
        consumer.calls_on(1).await;
        rotate(&apikeys, &issuer, name, 1).await;
        consumer.calls_on(CALLS_AFTER_EACH_ROTATION).await;
    }
    consumer.finish().await
}

/// Calls made after each rotation: more than a 600 ms reload delay lasts.
const CALLS_AFTER_EACH_ROTATION: usize = 40;

#[tokio::test]
async fn consumers_that_reload_are_never_refused_when_the_overlap_covers_their_delay() {
    let op = operator().await;
    let reload = Reload::Every(Duration::from_millis(600));
    let (calls, refused) = five_rotations(&op.t.client, "covered", "2s", false, reload).await;
    assert_eq!(refused, 0, "{refused} of {calls} calls refused");
}

#[tokio::test]
async fn consumers_that_reload_are_refused_when_the_overlap_is_shorter_than_their_delay() {
    let op = operator().await;
    let reload = Reload::Every(Duration::from_millis(600));
    let (calls, refused) = five_rotations(&op.t.client, "uncovered", "0s", false, reload).await;
    assert!(
        refused > 0,
        "without overlap the consumer must see refusals ({calls} calls)"
    );
}

/// An operator on a dev cluster whose rollouts take long enough for a consumer to notice
/// a key revoked before its pods were replaced.
async fn operator_with_slow_rollouts() -> Operator {
    let config = kube_devcluster::Config {
        rollout_delay: Duration::from_millis(800),
        ..test_config()
    };
    operator_on(cluster_with(config).await, Default::default()).await
}

#[tokio::test]
async fn deployment_consumers_are_never_refused_because_revocation_waits_for_their_rollout() {
    let op = operator_with_slow_rollouts().await;
    let c = &op.t.client;
    deployment(c, "app").await;
    // No overlap at all: only the wait for the rollout protects the calls.
    let (calls, refused) = five_rotations(c, "rolled", "0s", true, Reload::OnRollout).await;
    assert_eq!(refused, 0, "{refused} of {calls} calls refused");
}

#[tokio::test]
async fn deployment_consumers_the_apikey_does_not_name_are_refused() {
    let op = operator_with_slow_rollouts().await;
    let c = &op.t.client;
    deployment(c, "app").await;
    // Not named in spec.consumers: never rolled out, so its pods keep the first key.
    let (calls, refused) = five_rotations(c, "unnamed", "2s", false, Reload::OnRollout).await;
    assert!(
        refused > 0,
        "an undeclared consumer must see refusals ({calls} calls)"
    );
}
