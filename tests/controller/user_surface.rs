//! What users see (issue 14): reported consumers, honest NEXT and PHASE, explained
//! typos, issuers and stores that say whether they work, and requests that can repeat.

use apikey_operator::api::apikey::{ApiKey, Phase};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::harness::*;
use crate::support::Kubectl;
use crate::support::*;

/// User surface, item 2: a consumer named with a typo is not silently ignored: Ready
/// says it does not exist, and the previous key is not revoked until it exists and has
/// rolled out.
#[tokio::test]
async fn a_missing_consumer_blocks_revocation_until_it_exists() {
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "typo",
            json!({"every": "1h", "overlap": "1s"}),
            json!({"consumers": [{"kind": "Deployment", "name": "bilinng"}]}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = wait(
        apikeys.clone(),
        "typo",
        reason_is("Ready", "ConsumerNotFound"),
    )
    .await;
    let old = current_id(&first);
    request(&apikeys, "typo", "apikey.dev/rotate", "1").await;
    wait(apikeys.clone(), "typo", |a: Option<&ApiKey>| {
        reason_is("Ready", "ConsumerNotFound")(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.previous_key.is_some())
    })
    .await;
    clock.advance(std::time::Duration::from_secs(600));
    // PHASE says the rollout waits for the user.
    let held = wait(apikeys.clone(), "typo", |a: Option<&ApiKey>| {
        reason_is("Ready", "ConsumerNotFound")(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.phase == Some(Phase::Blocked))
    })
    .await;
    let held = held.status.unwrap();
    assert_eq!(
        held.previous_key.unwrap().id,
        old,
        "not revoked while the consumer is missing"
    );
    // The workload appears (the typo is real): it rolls out, then the old key goes.
    deployment(c, "bilinng").await;
    wait(apikeys.clone(), "typo", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .and_then(|s| s.previous_key.as_ref())
            .is_some_and(|p| p.revoke_after.is_some())
    })
    .await;
    clock.advance(std::time::Duration::from_secs(5));
    let done = wait(apikeys, "typo", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.previous_key.is_none())
    })
    .await;
    assert!(done.status.unwrap().history.iter().any(|h| h.id == old));
}

/// User surface, items 3 and 4: NEXT follows the spec, and a rotation that must wait for
/// the previous key to go says so (users who removed a scope must not think it done).
#[tokio::test]
async fn next_follows_the_spec_and_a_queued_rotation_is_shown() {
    let (op, _clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "shown",
            json!({"every": "24h", "overlap": "30m"}),
            json!({}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let next = |a: &ApiKey| -> jiff::Timestamp {
        a.status
            .as_ref()
            .unwrap()
            .next_rotation_time
            .as_ref()
            .unwrap()
            .parse()
            .unwrap()
    };
    let first = wait(apikeys.clone(), "shown", ready).await;
    let issued: jiff::Timestamp = current_key(&first).issued_at.parse().unwrap();
    assert!(next(&first) > issued + jiff::SignedDuration::from_hours(23));
    apikeys
        .patch(
            "shown",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"every": "1h"}}})),
        )
        .await
        .unwrap();
    let hourly = wait(apikeys.clone(), "shown", move |a: Option<&ApiKey>| {
        a.and_then(|a| {
            a.status
                .as_ref()?
                .next_rotation_time
                .as_ref()?
                .parse::<jiff::Timestamp>()
                .ok()
        })
        .is_some_and(|t| t < issued + jiff::SignedDuration::from_mins(64))
    })
    .await;
    assert_eq!(
        current_id(&hourly),
        current_id(&first),
        "a cadence change is not a new key"
    );
    // A rotation, then a scope change during its overlap: queued, and shown.
    request(&apikeys, "shown", "apikey.dev/rotate", "1").await;
    wait(apikeys.clone(), "shown", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .and_then(|s| s.previous_key.as_ref())
            .is_some_and(|p| p.revoke_after.is_some())
    })
    .await;
    apikeys
        .patch(
            "shown",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scopes": ["widgets:write"]}})),
        )
        .await
        .unwrap();
    let queued = wait(apikeys, "shown", reason_is("Rotating", "RotationQueued")).await;
    let message = message(&queued, "Rotating");
    assert!(
        message.contains("SpecChanged rotation is queued"),
        "{message}"
    );
    assert!(message.contains("apikey.dev/revoke-previous"), "{message}");
    wait_event(c, "shown", "RotationQueued").await;
}

/// User surface, item 6: after following an error's advice (delete the Secret in the
/// way), the ApiKey recovers at once, not at a retry minutes later.
#[tokio::test]
async fn removing_what_blocks_an_apikey_wakes_it_at_once() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<Secret>(
        c,
        json!({"metadata": {"name": "squatted"}, "stringData": {"api-key": "theirs"}}),
    )
    .await;
    create::<ApiKey>(c, apikey("squatted", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(
        apikeys.clone(),
        "squatted",
        reason_is("Ready", "SecretConflict"),
    )
    .await;
    Api::<Secret>::default_namespaced(c.clone())
        .delete("squatted", &DeleteParams::default())
        .await
        .unwrap();
    wait(apikeys, "squatted", ready).await;
}

/// User surface, item 7: a typo in a cron field says what is valid, and settings that
/// are valid but cannot work as their docs promise are warned about.
#[tokio::test]
async fn schedule_typos_and_settings_that_cannot_work_are_explained() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey("mnday", json!({"schedule": "0 3 * * Mnday"}), json!({})),
    )
    .await;
    create::<ApiKey>(
        c,
        apikey(
            "hourly",
            json!({"schedule": "0 * * * *", "overlap": "2h"}),
            json!({}),
        ),
    )
    .await;
    create::<ApiKey>(
        c,
        apikey(
            "short",
            json!({"every": "24h"}),
            json!({"expiresAfter": "12h"}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let typo = wait(apikeys.clone(), "mnday", reason_is("Ready", "InvalidSpec")).await;
    let message = message(&typo, "Ready");
    assert!(
        message.contains("day of week \"Mnday\" is not valid: use MON-SUN or 0-6"),
        "{message}"
    );
    wait(apikeys.clone(), "hourly", ready).await;
    wait(apikeys, "short", ready).await;
    wait_event(c, "hourly", "OverlapLongerThanRotation").await;
    wait_event(c, "short", "ExpiryShorterThanRotation").await;
}

/// User surface, item 11: renaming the Secret moves the keys, and the old Secret is not
/// left owned by the ApiKey offering keys that will be revoked (released under Retain).
#[tokio::test]
async fn renaming_the_secret_moves_the_keys_and_releases_the_old_one() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("moving", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let id = current_id(&wait(apikeys.clone(), "moving", ready).await);
    apikeys
        .patch(
            "moving",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secret": {"name": "moving-v2"}}})),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let moved = wait(secrets.clone(), "moving-v2", |s: Option<&Secret>| {
        s.is_some()
    })
    .await;
    assert_eq!(
        data(&moved, "api-key-id").unwrap(),
        id,
        "the same key, moved"
    );
    let old = wait(secrets, "moving", |s: Option<&Secret>| {
        s.is_some_and(|s| s.owner_references().is_empty())
    })
    .await;
    assert_eq!(data(&old, "api-key-id").unwrap(), id, "released as it was");
    wait_event(c, "moving", "SecretMoved").await;
    assert!(
        !events(c, "default", "moving")
            .await
            .iter()
            .any(|(r, _)| r == "SecretRestored"),
        "not reported as a restore"
    );
}

/// User surface, item 9: issuers and stores say whether they can be used, on themselves.
#[tokio::test]
async fn issuers_and_stores_report_whether_they_can_be_used() {
    let op = operator().await;
    issuer(&op.t.client).await;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let manifests = k.file(
        "providers.yaml",
        "apiVersion: apikey.dev/v1alpha1
kind: KeyIssuer
metadata: {name: widgetjar}
spec:
  http:
    url: https://api.widgetjar.example/v1
    credentialsSecretRef: {name: widgetjar-admin, key: token}
---
apiVersion: apikey.dev/v1alpha1
kind: KeyStore
metadata: {name: vault}
spec:
  vault:
    server: https://vault.example.com:8200
    auth: {kubernetes: {role: apikey-operator}}
",
    );
    k.ok(&["apply", "-f", &manifests]).await;
    let ready_is = |want: &'static str| {
        move |i: Option<&apikey_operator::api::issuer::KeyIssuer>| {
            i.and_then(|i| i.status.as_ref())
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == want)
        }
    };
    let issuers =
        Api::<apikey_operator::api::issuer::KeyIssuer>::default_namespaced(op.t.client.clone());
    wait(issuers.clone(), "gen", ready_is("True")).await;
    wait(issuers, "widgetjar", ready_is("False")).await;
    let stores =
        Api::<apikey_operator::api::store::KeyStore>::default_namespaced(op.t.client.clone());
    wait(
        stores,
        "vault",
        |s: Option<&apikey_operator::api::store::KeyStore>| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|s| !s.conditions.is_empty())
        },
    )
    .await;
    let table = k.ok(&["get", "keyissuers", "-o", "wide"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "PROVIDER", "AGE", "MESSAGE"],
        "{table}"
    );
    let http = table.lines().find(|l| l.starts_with("widgetjar")).unwrap();
    assert!(
        http.contains("False")
            && http.contains("http")
            && http.contains("Secret \"widgetjar-admin\" not found"),
        "{table}"
    );
    let stores = k.ok(&["get", "keystores"]).await;
    let row: Vec<&str> = stores.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["vault", "False", "vault"], "{stores}");
}

/// User surface, item 5: a request is acted on once per value; removing it and setting
/// the same value again is a new request.
#[tokio::test]
async fn a_removed_request_can_be_made_again_with_the_same_value() {
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey("again", json!({"every": "24h", "overlap": "1s"}), json!({})),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "again", ready).await;
    let annotate =
        |v: Value| Patch::Merge(json!({"metadata": {"annotations": {"apikey.dev/rotate": v}}}));
    let rotated_to = |n: u64| {
        move |a: Option<&ApiKey>| {
            ready(a)
                && a.and_then(|a| a.status.as_ref())
                    .is_some_and(|s| s.rotation_count == n && s.previous_key.is_none())
        }
    };
    for (value, rotation) in [(json!("now"), 2), (Value::Null, 2), (json!("now"), 3)] {
        apikeys
            .patch("again", &PatchParams::default(), &annotate(value.clone()))
            .await
            .unwrap();
        if value.is_null() {
            wait(apikeys.clone(), "again", |a: Option<&ApiKey>| {
                a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                    s.handled_requests
                        .as_ref()
                        .is_none_or(|h| h.rotate.is_none())
                })
            })
            .await;
            continue;
        }
        wait(apikeys.clone(), "again", |a: Option<&ApiKey>| {
            a.and_then(|a| a.status.as_ref())
                .and_then(|s| s.previous_key.as_ref())
                .is_some_and(|p| p.revoke_after.is_some())
        })
        .await;
        clock.advance(std::time::Duration::from_secs(5));
        wait(apikeys.clone(), "again", rotated_to(rotation)).await;
    }
}

/// User surface, item 2: a selector that matches nothing is reported (status and an
/// event) but does not hold the previous key back.
#[tokio::test]
async fn a_selector_matching_nothing_is_reported_and_does_not_block() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "nobody",
            json!({"every": "1h", "overlap": "1s"}),
            json!({"consumers": [{"kind": "Deployment", "selector": {"matchLabels": {"app": "nobody"}}}]}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let ak = wait(apikeys.clone(), "nobody", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| !s.consumers.is_empty())
    })
    .await;
    let consumer = &ak.status.as_ref().unwrap().consumers[0];
    assert_eq!(consumer.name, "selector app=nobody");
    assert!(
        consumer
            .message
            .as_deref()
            .unwrap()
            .starts_with("0 matched")
    );
    wait_event(c, "nobody", "ConsumerSelectorEmpty").await;
    // A rotation completes: nothing to wait for.
    request(&apikeys, "nobody", "apikey.dev/rotate", "1").await;
    wait(apikeys, "nobody", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.rotation_count == 2 && s.previous_key.is_none())
    })
    .await;
}
