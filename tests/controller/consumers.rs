//! Consumers: rollouts after each new key, what blocks them, and how many roll at once.

use apikey_operator::api::apikey::{ApiKey, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::*;

use super::harness::*;

#[tokio::test]
async fn a_paused_consumer_blocks_revocation_with_its_own_reason() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<Deployment>(c, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "frozen"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "frozen"}},
            "template": {"metadata": {"labels": {"app": "frozen"}},
                "spec": {"terminationGracePeriodSeconds": 60, "containers": [{"name": "app", "image": "example/app:1"}]}}}})).await;
    create::<ApiKey>(
        c,
        apikey(
            "frozen",
            json!({"every": "1h", "overlap": "1s"}),
            json!({"consumers": [{"kind": "Deployment", "name": "frozen"}]}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "frozen", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.consumers.iter().all(|c| c.rolled_out))
    })
    .await;
    let deployments: Api<Deployment> = Api::default_namespaced(c.clone());
    deployments
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    request(&apikeys, "frozen", "apikey.dev/rotate", "now").await;
    let blocked = wait(
        apikeys.clone(),
        "frozen",
        reason_is("Rotating", "ConsumerBlocked"),
    )
    .await;
    let status = blocked.status.unwrap();
    assert!(
        status.previous_key.is_some(),
        "the old key stays valid while a consumer cannot roll"
    );
    assert_eq!(
        status.phase,
        Some(Phase::Blocked),
        "PHASE says the rollout waits"
    );
    assert!(
        status.consumers[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("paused")
    );
    deployments
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .unwrap();
    wait(apikeys, "frozen", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.previous_key.is_none() && s.rotation_count == 2)
    })
    .await;
    let events = Api::<k8s_openapi::api::core::v1::Event>::default_namespaced(c.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("OverlapShorterThanGracePeriod")),
        "a 1s overlap under a 60s grace period is warned about"
    );
}

#[tokio::test]
async fn rollouts_are_throttled_across_apikeys() {
    use kube_devcluster::WorkloadKind;
    let op = operator_with(apikey_operator::controller::Settings {
        max_concurrent_rollouts: 1,
        ..Default::default()
    })
    .await;
    let c = &op.t.client;
    issuer(c).await;
    deployment(c, "first").await;
    deployment(c, "second").await;
    let deployments: Api<Deployment> = Api::default_namespaced(c.clone());
    for name in ["first", "second"] {
        wait(deployments.clone(), name, |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .and_then(|s| s.available_replicas)
                == Some(2)
        })
        .await;
    }
    op.t.cluster
        .hold_rollout(WorkloadKind::Deployment, "default", "first");
    create::<ApiKey>(
        c,
        apikey(
            "first",
            json!({"every": "1h"}),
            json!({"consumers": [{"kind": "Deployment", "name": "first"}]}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "first", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()).and_then(|s| s.phase) == Some(Phase::RollingOut)
    })
    .await;
    create::<ApiKey>(
        c,
        apikey(
            "second",
            json!({"every": "1h"}),
            json!({"consumers": [{"kind": "Deployment", "name": "second"}]}),
        ),
    )
    .await;
    wait(
        apikeys.clone(),
        "second",
        reason_is("Rotating", "RolloutQueued"),
    )
    .await;
    let second = deployments.get("second").await.unwrap();
    let annotations = second
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("apikey.dev/second"),
        "not patched while the slot is taken"
    );
    op.t.cluster
        .release_rollout(WorkloadKind::Deployment, "default", "first");
    wait(apikeys, "second", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.consumers.iter().all(|c| c.rolled_out))
    })
    .await;
}

#[tokio::test]
async fn zero_replica_consumers_complete_at_once() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<Deployment>(c, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "idle", "labels": {"app": "idle"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "idle"}},
            "template": {"metadata": {"labels": {"app": "idle"}}, "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}}})).await;
    create::<ApiKey>(c, apikey("idle", json!({"every": "1h"}), json!({"consumers": [{"kind": "Deployment", "selector": {"matchLabels": {"app": "idle"}}}]}))).await;
    let ak = wait(
        Api::<ApiKey>::default_namespaced(c.clone()),
        "idle",
        |a: Option<&ApiKey>| {
            ready(a)
                && a.and_then(|a| a.status.as_ref())
                    .is_some_and(|s| s.consumers.len() == 1 && s.consumers[0].rolled_out)
        },
    )
    .await;
    assert_eq!(
        ak.status.unwrap().consumers[0].name,
        "idle",
        "found by its selector"
    );
}
