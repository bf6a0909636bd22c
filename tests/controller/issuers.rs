//! Issuers: missing, gone, refusing scopes or namespaces, and specs broken after issuance.

use apikey_operator::api::apikey::{ApiKey, Phase};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::Kubectl;
use crate::support::*;

use super::harness::*;

#[tokio::test]
async fn a_missing_issuer_is_reported_then_picked_up_when_created() {
    let op = operator().await;
    let c = &op.t.client;
    create::<ApiKey>(c, apikey("early", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let failing = wait(apikeys.clone(), "early", |a: Option<&ApiKey>| {
        a.and_then(|a| condition(a, "Ready")) == Some(("False".into(), "IssuerNotFound".into()))
    })
    .await;
    let status = failing.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("not found in namespace \"default\"")
            && message.contains("ClusterKeyIssuer"),
        "says where it looked, and the other kind: {message}"
    );
    issuer(c).await;
    wait(apikeys, "early", ready).await;
}

#[tokio::test]
async fn disallowed_scopes_and_foreign_secrets_are_refused() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "greedy",
            json!({"every": "1h"}),
            json!({"scopes": ["admin:*"]}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let refused = wait(apikeys.clone(), "greedy", reason_is("Ready", "NotAllowed")).await;
    assert!(
        refused.status.unwrap().current_key.is_none(),
        "nothing minted"
    );

    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    create::<Secret>(
        c,
        json!({"metadata": {"name": "taken"}, "stringData": {"api-key": "theirs"}}),
    )
    .await;
    create::<ApiKey>(c, apikey("taken", json!({"every": "1h"}), json!({}))).await;
    let conflict = wait(
        apikeys.clone(),
        "taken",
        reason_is("Ready", "SecretConflict"),
    )
    .await;
    assert!(condition(&conflict, "Ready").is_some());
    assert_eq!(
        data(&secrets.get("taken").await.unwrap(), "api-key").unwrap(),
        "theirs",
        "never overwritten"
    );

    // The store's state Secret name is taken too: refused, nothing minted into it, and
    // deleting the ApiKey (Retain) does not detach that Secret from its real owner.
    let owner: k8s_openapi::api::core::v1::ConfigMap =
        create(c, json!({"metadata": {"name": "their-app"}})).await;
    create::<Secret>(
        c,
        json!({"metadata": {"name": "squat-apikey-state", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "their-app", "uid": owner.uid().unwrap()
        }]}, "stringData": {"note": "theirs"}}),
    )
    .await;
    create::<ApiKey>(c, apikey("squat", json!({"every": "1h"}), json!({}))).await;
    wait(
        apikeys.clone(),
        "squat",
        reason_is("Ready", "StoreConflict"),
    )
    .await;
    apikeys
        .delete("squat", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys, "squat").await;
    let untouched = secrets.get("squat-apikey-state").await.unwrap();
    assert_eq!(
        untouched.owner_references()[0].name,
        "their-app",
        "still theirs"
    );
    assert_eq!(
        untouched.data.unwrap().keys().collect::<Vec<_>>(),
        ["note"],
        "never written to"
    );
}

#[tokio::test]
async fn an_unfinished_rotation_whose_issuer_is_gone_does_not_block_deletion() {
    let mut op = operator().await;
    let c = op.t.client.clone();
    issuer(&c).await;
    create::<ApiKey>(&c, apikey("stranded", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "stranded", ready).await;
    // A rotation started at an issuer that has since been deleted, its key never recorded.
    op.stop().await;
    apikeys
        .patch_status(
            "stranded",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"pendingKey": {
                "rotation": 2, "attempt": 1, "startedAt": "2026-01-01T00:00:00Z",
                "issuer": {"kind": "KeyIssuer", "name": "vanished", "uid": "0"},
                "mintedFor": "x", "reason": "Requested"
            }}})),
        )
        .await
        .unwrap();
    apikeys
        .delete("stranded", &DeleteParams::default())
        .await
        .unwrap();
    op.start();
    wait_deleted(apikeys, "stranded").await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(c.clone());
    let warning = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("PendingKeyNotRevoked"))
        .expect("the user is told what may be left at the issuer");
    let note = warning.note.unwrap();
    assert!(note.contains("\"vanished\""), "{note}");
}

#[tokio::test]
async fn a_spec_broken_after_issuance_does_not_block_deletion() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "broken",
            json!({"every": "1h"}),
            json!({"deletionPolicy": "Revoke"}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "broken", ready).await;
    apikeys
        .patch(
            "broken",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"every": null, "schedule": "0 3 * * 1", "timeZone": "Mars/Olympus"}}})),
        )
        .await
        .unwrap();
    let broken = wait(
        apikeys.clone(),
        "broken",
        reason_is("Rotating", "InvalidSpec"),
    )
    .await;
    assert_eq!(
        broken.status.unwrap().next_rotation_time,
        None,
        "NEXT is not shown from a schedule that no longer applies"
    );
    apikeys
        .delete("broken", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys, "broken").await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    wait_deleted(secrets.clone(), "broken").await;
    wait_deleted(secrets, "broken-apikey-state").await;
}

#[tokio::test]
async fn cluster_issuers_serve_only_the_namespaces_they_select() {
    let op = operator().await;
    let c = &op.t.client;
    Api::<apikey_operator::api::issuer::ClusterKeyIssuer>::all(c.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "apikey.dev/v1alpha1",
            "kind": "ClusterKeyIssuer", "metadata": {"name": "shared"},
            "spec": {"generate": {"length": 24}, "namespaceSelector": {"matchLabels": {"apikeys": "allowed"}}}})).unwrap())
        .await
        .unwrap();
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    k.ok(&["create", "namespace", "team-a"]).await;
    k.ok(&["label", "namespace", "team-a", "apikeys=allowed"])
        .await;
    let shared = json!({"name": "shared", "kind": "ClusterKeyIssuer"});
    for ns in ["default", "team-a"] {
        let mut obj = apikey("k", json!({"every": "1h"}), json!({"issuerRef": shared}));
        obj["metadata"]["namespace"] = json!(ns);
        Api::<ApiKey>::namespaced(c.clone(), ns)
            .create(
                &PostParams::default(),
                &serde_json::from_value(obj).unwrap(),
            )
            .await
            .unwrap();
    }
    let refused = wait(
        Api::<ApiKey>::namespaced(c.clone(), "default"),
        "k",
        reason_is("Ready", "NotAllowed"),
    )
    .await;
    let message = message(&refused, "Ready");
    assert!(
        message.contains("does not allow namespace \"default\""),
        "{message}"
    );
    wait(Api::<ApiKey>::namespaced(c.clone(), "team-a"), "k", ready).await;
}

/// An issuer deleted (its finalizer removed by hand) and created again under the same name
/// may point at another account: it is never asked to revoke the old one's keys. The key
/// is reported as not revoked, naming why.
#[tokio::test]
async fn a_key_is_never_revoked_at_an_issuer_recreated_under_its_name() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey("moved", json!({"every": "2h", "overlap": "1h"}), json!({})),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = current_id(&wait(apikeys.clone(), "moved", ready).await);
    request(&apikeys, "moved", "apikey.dev/rotate", "1").await;
    wait(apikeys.clone(), "moved", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.previous_key.as_ref().is_some_and(|p| p.id == first))
    })
    .await;
    // Replaced: finalizer removed by hand, deleted, created again (a new uid).
    let issuers: Api<apikey_operator::api::issuer::KeyIssuer> = Api::default_namespaced(c.clone());
    issuers
        .patch(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    issuers
        .delete("gen", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(issuers, "gen").await;
    issuer(c).await;

    request(&apikeys, "moved", "apikey.dev/revoke-previous", "1").await;
    let done = wait(apikeys, "moved", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.previous_key.is_none() && !s.history.is_empty())
    })
    .await;
    let gone = &done.status.unwrap().history[0];
    assert_eq!(gone.id, first);
    assert_eq!(gone.reason, "NotRevoked", "{gone:?}");
    assert!(gone.revoked_at.is_none());
    wait_event(c, "moved", "KeyNotRevoked").await;
    let events = events(c, "default", "moved").await;
    let (_, note) = events
        .iter()
        .find(|(reason, _)| reason == "KeyNotRevoked")
        .expect("the user is told");
    assert!(note.contains("deleted and created again"), "{note}");
}
