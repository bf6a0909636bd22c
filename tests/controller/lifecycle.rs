//! A key's life: first issue, scheduled and requested rotations, overlaps, expiry,
//! emergencies, deletion policies and crashes between steps.

use std::collections::BTreeSet;

use apikey_operator::api::apikey::{ApiKey, Phase};
use apikey_operator::issuer::fingerprint;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use secrecy::SecretString;
use serde_json::json;

use crate::support::Kubectl;
use crate::support::*;

use super::harness::*;

#[tokio::test]
async fn first_reconcile_mints_stores_distributes_and_rolls_out() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    deployment(c, "billing").await;
    create::<ApiKey>(
        c,
        apikey(
            "billing",
            json!({"every": "1h"}),
            json!({"consumers": [{"kind": "Deployment", "name": "billing"}]}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let ak = wait(apikeys.clone(), "billing", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                s.consumers.iter().all(|c| c.rolled_out) && !s.consumers.is_empty()
            })
    })
    .await;
    let status = ak.status.clone().unwrap();
    let current = status.current_key.clone().unwrap();
    assert_eq!(status.rotation_count, 1);
    assert!(ak.finalizers().contains(&"apikey.dev/cleanup".to_string()));

    let secret = Api::<Secret>::default_namespaced(c.clone())
        .get("billing")
        .await
        .unwrap();
    let key = data(&secret, "api-key").unwrap();
    assert!(
        key.starts_with("sk_test_") && key.len() == 40,
        "prefix + 32 characters"
    );
    assert_eq!(data(&secret, "api-key-id").unwrap(), current.id);
    assert_eq!(
        current.fingerprint,
        fingerprint(&SecretString::from(key.clone()))
    );
    assert!(data(&secret, "api-key-previous").is_none());
    assert_eq!(secret.owner_references()[0].uid, ak.uid().unwrap());
    assert!(
        !serde_json::to_string(&status).unwrap().contains(&key),
        "no key material in status"
    );

    let state = Api::<Secret>::default_namespaced(c.clone())
        .get("billing-apikey-state")
        .await
        .unwrap();
    assert_eq!(state.type_.as_deref(), Some("apikey.dev/state"));
    let d = Api::<Deployment>::default_namespaced(c.clone())
        .get("billing")
        .await
        .unwrap();
    let annotation = d
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()["apikey.dev/billing"]
        .clone();
    assert_eq!(
        annotation, current.fingerprint,
        "consumers roll out the new key"
    );

    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let table = k.ok(&["get", "ak"]).await;
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["billing", "True", "Ready", current.id.as_str()],
        "{table}"
    );
    // The first key is reported once, by the promotion that made it current: it is no
    // rotation (no RotationStarted), and the one event names the key and its Secret.
    let reported = wait_event(c, "billing", "Distributed").await;
    let reasons: Vec<&str> = reported.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons, ["Distributed"], "{reported:?}");
    let note = &reported[0].1;
    for expected in [
        &current.id,
        &current.fingerprint,
        "rotation 1",
        "\"billing\"",
    ] {
        assert!(note.contains(expected), "{expected:?} in {note:?}");
    }
    let described = k.ok(&["describe", "ak", "billing"]).await;
    assert!(described.contains("Distributed"), "{described}");
    assert!(!described.contains(&key), "no key material in events");
}

#[tokio::test]
async fn scheduled_rotation_overlaps_then_revokes_the_old_key() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    deployment(c, "web").await;
    create::<ApiKey>(
        c,
        apikey(
            "web",
            json!({"every": "3s", "overlap": "1s"}),
            json!({"consumers": [{"kind": "Deployment", "name": "web"}]}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = wait(apikeys.clone(), "web", ready)
        .await
        .status
        .unwrap()
        .current_key
        .unwrap();

    // Watch the consumer Secret: the key it offers must never be one already revoked,
    // and during the overlap it must offer both keys.
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let observer = tokio::spawn({
        let secrets = secrets.clone();
        async move {
            use futures::TryStreamExt;
            let mut seen = Vec::new();
            let stream = kube::runtime::watcher(
                secrets,
                kube::runtime::watcher::Config::default().fields("metadata.name=web"),
            );
            let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
            while let Ok(Some(s)) = stream.try_next().await {
                seen.push((data(&s, "api-key-id"), data(&s, "api-key-id-previous")));
            }
            seen
        }
    });
    let done = wait(apikeys.clone(), "web", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
            s.rotation_count >= 2
                && s.previous_key.is_none()
                && !s.history.is_empty()
                && s.phase == Some(Phase::Ready)
        })
    })
    .await;
    observer.abort();
    let status = done.status.unwrap();
    let revoked = &status.history[0];
    assert_eq!(revoked.id, first.id);
    assert_eq!(revoked.reason, "Superseded");
    let secret = secrets.get("web").await.unwrap();
    assert_eq!(
        data(&secret, "api-key-id").unwrap(),
        status.current_key.as_ref().unwrap().id
    );
    assert!(
        data(&secret, "api-key-previous").is_none(),
        "the revoked key left the Secret"
    );
    assert_ne!(status.current_key.unwrap().id, first.id);
}

#[tokio::test]
async fn deletion_policies_retain_or_revoke() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("kept", json!({"every": "1h"}), json!({}))).await;
    create::<ApiKey>(
        c,
        apikey(
            "gone",
            json!({"every": "1h"}),
            json!({"deletionPolicy": "Revoke"}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "kept", ready).await;
    wait(apikeys.clone(), "gone", ready).await;
    for name in ["kept", "gone"] {
        apikeys
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        wait_deleted(apikeys.clone(), name).await;
    }
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let kept = secrets.get("kept").await.expect("Retain keeps the Secret");
    assert!(
        kept.owner_references().is_empty(),
        "released, so garbage collection leaves it"
    );
    wait_deleted(secrets.clone(), "gone").await;
    wait_deleted(secrets, "gone-apikey-state").await;

    // A re-created ApiKey of the same name adopts the Secret it left behind and continues
    // with its key: minting another would leave that one valid and unreferenced.
    let left_behind = data(&kept, "api-key-id").unwrap();
    create::<ApiKey>(c, apikey("kept", json!({"every": "1h"}), json!({}))).await;
    let adopted = wait(apikeys, "kept", ready).await;
    let secret = Api::<Secret>::default_namespaced(c.clone())
        .get("kept")
        .await
        .unwrap();
    assert_eq!(secret.owner_references()[0].uid, adopted.uid().unwrap());
    let status = adopted.status.unwrap();
    assert_eq!(
        status.current_key.unwrap().id,
        left_behind,
        "the same key, not a new one"
    );
    assert_eq!(data(&secret, "api-key-id").unwrap(), left_behind);
    // So is the store's state Secret, which the first one released too: the re-created
    // ApiKey owns it again, so deleting it takes the key material with it.
    let state = Api::<Secret>::default_namespaced(c.clone())
        .get("kept-apikey-state")
        .await
        .unwrap();
    assert_eq!(
        state.owner_references()[0].uid,
        secret.owner_references()[0].uid
    );
    assert_eq!(state.data.unwrap_or_default().len(), 1, "the one key, once");
}

#[tokio::test]
async fn emergency_rotation_revokes_the_compromised_key_at_once() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "leaked",
            json!({"every": "720h", "overlap": "24h"}),
            json!({}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let compromised = wait(apikeys.clone(), "leaked", ready)
        .await
        .status
        .unwrap()
        .current_key
        .unwrap()
        .id;
    apikeys
        .patch("leaked", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"apikey.dev/emergency-rotate": "incident-42"}}})))
        .await
        .unwrap();
    let after = wait(apikeys, "leaked", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
            s.phase == Some(Phase::Ready) && s.history.iter().any(|h| h.reason == "Compromised")
        })
    })
    .await;
    let status = after.status.unwrap();
    assert_eq!(status.history[0].id, compromised);
    assert!(
        status.previous_key.is_none(),
        "no overlap for a compromised key"
    );
    assert_eq!(
        status.handled_requests.unwrap().emergency_rotate.as_deref(),
        Some("incident-42")
    );
    let ids: BTreeSet<String> = Api::<Secret>::default_namespaced(c.clone())
        .get("leaked")
        .await
        .unwrap()
        .data
        .unwrap()
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    assert!(
        !ids.contains(&compromised),
        "the compromised key left the Secret"
    );
}

#[tokio::test]
async fn a_rotation_requested_during_an_overlap_waits_for_the_previous_key_to_go() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "deferred",
            json!({"every": "1h", "overlap": "2s"}),
            json!({}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "deferred", ready).await;
    let rotate =
        |v: &str| Patch::Merge(json!({"metadata": {"annotations": {"apikey.dev/rotate": v}}}));
    apikeys
        .patch("deferred", &PatchParams::default(), &rotate("one"))
        .await
        .unwrap();
    let overlapping = wait(apikeys.clone(), "deferred", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.previous_key.is_some())
    })
    .await;
    assert_eq!(overlapping.status.as_ref().unwrap().rotation_count, 2);
    apikeys
        .patch("deferred", &PatchParams::default(), &rotate("two"))
        .await
        .unwrap();
    let done = wait(apikeys, "deferred", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.rotation_count == 3)
    })
    .await;
    let status = done.status.unwrap();
    assert!(
        !status.history.is_empty(),
        "rotation 3 began only after rotation 1's key was revoked"
    );
    assert_eq!(status.history.last().unwrap().rotation, 1);
    assert_eq!(
        status.handled_requests.unwrap().rotate.as_deref(),
        Some("two")
    );
}

#[tokio::test]
async fn schedules_rotate_at_their_local_time_and_bad_ones_are_explained() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "weekly",
            json!({"schedule": "0 3 * * 1", "timeZone": "Europe/Berlin"}),
            json!({}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let ak = wait(apikeys.clone(), "weekly", ready).await;
    let next: jiff::Timestamp = ak
        .status
        .unwrap()
        .next_rotation_time
        .unwrap()
        .parse()
        .unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!(
        (local.weekday(), local.hour(), local.minute()),
        (jiff::civil::Weekday::Monday, 3, 0),
        "{local}"
    );

    // (A schedule without five fields is refused by the schema already.)
    create::<ApiKey>(
        c,
        apikey("typo", json!({"schedule": "0 25 * * *"}), json!({})),
    )
    .await;
    let bad = wait(apikeys.clone(), "typo", reason_is("Ready", "InvalidSpec")).await;
    let message = message(&bad, "Ready");
    assert!(
        message.contains("hour \"25\" is not valid: use 0-23"),
        "{message}"
    );
    create::<ApiKey>(
        c,
        apikey(
            "nowhere",
            json!({"schedule": "0 3 * * 1", "timeZone": "Mars/Olympus"}),
            json!({}),
        ),
    )
    .await;
    wait(apikeys, "nowhere", reason_is("Ready", "InvalidSpec")).await;
}

#[tokio::test]
async fn a_month_long_cycle_runs_on_the_test_clock() {
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "monthly",
            json!({"every": "720h", "overlap": "24h"}),
            json!({"expiresAfter": "2160h"}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = wait(apikeys.clone(), "monthly", ready)
        .await
        .status
        .unwrap();
    assert_eq!(first.rotation_count, 1);
    clock.advance(std::time::Duration::from_secs(721 * 3600));
    let overlapping = wait(apikeys.clone(), "monthly", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
            s.previous_key
                .as_ref()
                .is_some_and(|p| p.revoke_after.is_some())
        })
    })
    .await;
    assert_eq!(
        overlapping.status.as_ref().unwrap().rotation_count,
        2,
        "due after 30 days (+ at most 1h jitter)"
    );
    clock.advance(std::time::Duration::from_secs(25 * 3600));
    let done = wait(apikeys, "monthly", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.previous_key.is_none() && !s.history.is_empty())
    })
    .await;
    assert_eq!(
        done.status.unwrap().history[0].id,
        first.current_key.unwrap().id,
        "the old key went after the 24h overlap"
    );
}

#[tokio::test]
async fn key_spec_changes_rotate_but_secret_template_changes_only_rerender() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey("shape", json!({"every": "1h", "overlap": "1s"}), json!({})),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = wait(apikeys.clone(), "shape", ready)
        .await
        .status
        .unwrap()
        .current_key
        .unwrap();
    apikeys
        .patch("shape", &PatchParams::default(), &Patch::Merge(json!({"spec": {"secret": {"currentKeyField": "token", "labels": {"team": "billing"}}}})))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    // The renamed field may go one write after the new one appears (the Secret's create
    // co-owns it, so the apply alone cannot drop it).
    let rerendered = wait(secrets.clone(), "shape", |s: Option<&Secret>| {
        s.is_some_and(|s| data(s, "token").is_some() && data(s, "api-key").is_none())
    })
    .await;
    assert_eq!(
        data(&rerendered, "api-key-id").unwrap(),
        first.id,
        "same key, new shape: nothing minted"
    );
    assert!(
        data(&rerendered, "api-key").is_none(),
        "the old field name is gone"
    );
    assert_eq!(rerendered.labels()["team"], "billing");
    apikeys
        .patch(
            "shape",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scopes": ["widgets:read", "widgets:write"]}})),
        )
        .await
        .unwrap();
    let rotated = wait(apikeys, "shape", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.rotation_count == 2 && s.previous_key.is_none())
    })
    .await;
    let events = Api::<k8s_openapi::api::core::v1::Event>::default_namespaced(c.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(events.items.iter().any(|e| {
        e.message
            .as_deref()
            .is_some_and(|m| m.contains("reason SpecChanged"))
    }));
    assert_ne!(rotated.status.unwrap().current_key.unwrap().id, first.id);
}

#[tokio::test]
async fn keys_rotate_before_they_expire() {
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "short",
            json!({"every": "720h", "overlap": "1h"}),
            json!({"expiresAfter": "100h"}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = wait(apikeys.clone(), "short", ready)
        .await
        .status
        .unwrap()
        .current_key
        .unwrap();
    assert!(first.expires_at.is_some());
    clock.advance(std::time::Duration::from_secs(91 * 3600));
    wait(apikeys, "short", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.rotation_count == 2)
    })
    .await;
    let events = Api::<k8s_openapi::api::core::v1::Event>::default_namespaced(c.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        events.items.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("reason Expiring"))),
        "within 10% of its lifetime"
    );
}
