//! Scenarios from the adversarial review of the controller (issue 15): each once broke a
//! promise — never revoke early, never serve a revoked key, never wedge, never leak.

use apikey_operator::api::apikey::ApiKey;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::harness::*;
use crate::support::Kubectl;
use crate::support::*;

/// Item 2: a Revoke deletion that orphans its Secret (or races the garbage collector)
/// must not leave the revoked key for a re-created ApiKey to adopt and serve.
#[tokio::test]
async fn a_revoked_key_is_never_adopted_by_a_successor() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    let revoke = || {
        apikey(
            "e",
            json!({"every": "1h"}),
            json!({"deletionPolicy": "Revoke"}),
        )
    };
    create::<ApiKey>(c, revoke()).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let revoked = current_id(&wait(apikeys.clone(), "e", ready).await);
    apikeys.delete("e", &DeleteParams::orphan()).await.unwrap();
    wait_deleted(apikeys.clone(), "e").await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    wait_deleted(secrets, "e").await;
    create::<ApiKey>(c, revoke()).await;
    let successor = current_id(&wait(apikeys, "e", ready).await);
    assert_ne!(successor, revoked, "a new key, not the revoked one");
    // Each life's key is reported when it is distributed; an adoption is reported
    // instead, as Adopted.
    let distributed_twice =
        |e: &[(String, String)]| e.iter().filter(|(r, _)| r == "Distributed").count() == 2;
    assert!(
        !wait_events(c, "e", distributed_twice)
            .await
            .iter()
            .any(|(r, _)| r == "Adopted"),
        "nothing adopted"
    );
}

/// A Secret that only carries the name label (copied from an example, mirrored by
/// another tool) is someone else's: never adopted, never overwritten, its "key" never
/// revoked. A Secret an ApiKey of that name released still is adopted.
#[tokio::test]
async fn a_labelled_secret_no_apikey_released_is_never_adopted() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    let forged = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": {"apikey.dev/name": name}},
            "stringData": {"api-key": "someone-elses-key", "api-key-id": "someone-elses-id"}})
    };
    create::<Secret>(c, forged("copied")).await;
    create::<ApiKey>(c, apikey("copied", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(
        apikeys.clone(),
        "copied",
        reason_is("Ready", "SecretConflict"),
    )
    .await;
    let secret = Api::<Secret>::default_namespaced(c.clone())
        .get("copied")
        .await
        .unwrap();
    assert_eq!(
        data(&secret, "api-key").as_deref(),
        Some("someone-elses-key")
    );

    // Released by its predecessor (Retain): adopted, with its key.
    let retain = || {
        apikey(
            "kept",
            json!({"every": "1h"}),
            json!({"deletionPolicy": "Retain"}),
        )
    };
    create::<ApiKey>(c, retain()).await;
    let first = current_id(&wait(apikeys.clone(), "kept", ready).await);
    apikeys
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys.clone(), "kept").await;
    create::<ApiKey>(c, retain()).await;
    let adopted = current_id(&wait(apikeys, "kept", ready).await);
    assert_eq!(adopted, first, "the released key is adopted");
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    wait(secrets, "kept", |s: Option<&Secret>| {
        s.is_some_and(|s| !s.annotations().contains_key("apikey.dev/released-by"))
    })
    .await;
}

/// Item 1: deleting a namespace deletes its KeyIssuer first; the ApiKey's Revoke
/// finalizer must not wait for it forever (the namespace would never go away).
#[tokio::test]
async fn a_namespace_deletion_that_takes_the_issuer_first_completes() {
    let op = operator().await;
    let c = &op.t.client;
    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "ns1"}})).unwrap(),
        )
        .await
        .unwrap();
    create_in::<apikey_operator::api::issuer::KeyIssuer>(
        c,
        "ns1",
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
            "metadata": {"name": "gen"}, "spec": {"generate": {}, "allowedScopes": ["widgets:*"]}}),
    )
    .await;
    create_in::<ApiKey>(
        c,
        "ns1",
        apikey(
            "k",
            json!({"every": "1h"}),
            json!({"deletionPolicy": "Revoke"}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::namespaced(c.clone(), "ns1");
    wait(apikeys.clone(), "k", ready).await;
    let issuers = Api::<apikey_operator::api::issuer::KeyIssuer>::namespaced(c.clone(), "ns1");
    let guarded = issuers.get("gen").await.unwrap();
    assert!(
        guarded
            .finalizers()
            .iter()
            .any(|f| f == "apikey.dev/keys-held")
    );
    namespaces
        .delete("ns1", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys, "k").await;
    wait_deleted(namespaces, "ns1").await;
}

/// Item 1: an issuer is kept while keys it minted are held, so a Revoke deletion after it
/// was deleted still revokes them there; it goes once they are gone.
#[tokio::test]
async fn an_issuer_is_kept_until_the_keys_it_minted_are_revoked() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "kept",
            json!({"every": "1h"}),
            json!({"deletionPolicy": "Revoke"}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let id = current_id(&wait(apikeys.clone(), "kept", ready).await);
    let issuers = Api::<apikey_operator::api::issuer::KeyIssuer>::default_namespaced(c.clone());
    issuers
        .delete("gen", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = issuers.get("gen").await.expect("kept while keys are held");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    apikeys
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys, "kept").await;
    wait_deleted(issuers, "gen").await;
    let events = wait_events(c, "kept", |e| {
        e.iter()
            .any(|(r, _)| r == "Revoked" || r == "KeyNotRevoked")
    })
    .await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Revoked" && n.contains(&id)),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|(r, _)| r == "KeyNotRevoked"),
        "{events:?}"
    );
}

/// Item 1: the issuer of the previous key is gone during its overlap (after an
/// `issuerRef` change, deleted with its guard forced off): the overlap still ends, the
/// key is reported as not revoked and kept in history, and rotations go on at the new
/// issuer.
#[tokio::test]
async fn an_issuer_gone_during_an_overlap_does_not_stop_rotations() {
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuers(c, &["a", "b"]).await;
    let mut ak = apikey("moved", json!({"every": "24h", "overlap": "1h"}), json!({}));
    ak["spec"]["issuerRef"]["name"] = json!("a");
    create::<ApiKey>(c, ak).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = current_id(&wait(apikeys.clone(), "moved", ready).await);
    let patch = |v: Value| Patch::Merge(v);
    request(&apikeys, "moved", "apikey.dev/rotate", "1").await;
    wait(apikeys.clone(), "moved", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .and_then(|s| s.previous_key.as_ref())
            .is_some_and(|p| p.revoke_after.is_some())
    })
    .await;
    apikeys
        .patch(
            "moved",
            &PatchParams::default(),
            &patch(json!({"spec": {"issuerRef": {"name": "b"}}})),
        )
        .await
        .unwrap();
    // Gone for good: deleted, and the finalizer that keeps it for its keys forced off.
    let issuers = Api::<apikey_operator::api::issuer::KeyIssuer>::default_namespaced(c.clone());
    issuers.delete("a", &DeleteParams::default()).await.unwrap();
    issuers
        .patch(
            "a",
            &PatchParams::default(),
            &patch(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_deleted(issuers, "a").await;
    // The overlap ends: the key of issuer a cannot be revoked, and the deferred
    // SpecChanged rotation mints at issuer b.
    clock.advance(std::time::Duration::from_secs(2 * 3600));
    wait(apikeys.clone(), "moved", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
            s.current_key.as_ref().is_some_and(|k| k.issuer.name == "b")
                && s.previous_key
                    .as_ref()
                    .is_some_and(|p| p.revoke_after.is_some())
        })
    })
    .await;
    // Its own overlap ends too (the second key of issuer a cannot be revoked either).
    clock.advance(std::time::Duration::from_secs(2 * 3600));
    let moved = wait(apikeys.clone(), "moved", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.previous_key.is_none())
    })
    .await;
    let history = moved.status.unwrap().history;
    let entry = history.iter().find(|h| h.id == first).expect("in history");
    assert_eq!(entry.reason, "NotRevoked");
    assert!(entry.revoked_at.is_none(), "{entry:?}");
    wait_event(c, "moved", "KeyNotRevoked").await;
    assert!(
        events(c, "default", "moved")
            .await
            .iter()
            .any(|(r, note)| r == "KeyNotRevoked"
                && note.contains(&first)
                && note.contains("\"a\"")),
        "the user is told which key to revoke where"
    );
}

/// Item 5: a field name used twice would put key material where ids are shown.
#[tokio::test]
async fn secret_field_names_must_differ() {
    let op = operator().await;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let manifest = k.file(
        "clash.yaml",
        "apiVersion: apikey.dev/v1alpha1
kind: ApiKey
metadata: {name: clash}
spec:
  issuerRef: {name: gen}
  rotation: {every: 1h}
  secret: {keyIdField: api-key-previous}
",
    );
    let out = k.run(&["apply", "-f", &manifest]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains(
            "secret.currentKeyField, keyIdField, previousKeyField and previousKeyIdField must all differ"
        ),
        "{}",
        out.stderr
    );
}

/// Item 5: an id read back from a Secret left behind is shown in status, the KEY column
/// and events, so one that is really a key (or not an id at all) is never adopted.
#[tokio::test]
async fn a_left_behind_secret_whose_id_is_a_key_is_not_adopted() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<Secret>(
        c,
        json!({"metadata": {"name": "leaky", "labels": {"apikey.dev/name": "leaky"},
                "annotations": {"apikey.dev/released-by": "default/leaky"}},
            "stringData": {"api-key": "sk_live_material", "api-key-id": "sk_live_material"}}),
    )
    .await;
    create::<ApiKey>(c, apikey("leaky", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let ak = wait(apikeys, "leaky", ready).await;
    let status = serde_json::to_string(&ak.status).unwrap();
    assert!(!status.contains("sk_live_material"), "{status}");
    assert!(current_id(&ak).starts_with("gen-"), "a key of its own");
    wait_event(c, "leaky", "Distributed").await;
    for (_, note) in events(c, "default", "leaky").await {
        assert!(!note.contains("sk_live_material"), "{note}");
    }
}

/// Item 4: an emergency requested while a rotation is in flight names the key current
/// then: the successor in flight is promoted and the compromised key revoked — never the
/// healthy successor consumers are rolling onto.
#[tokio::test]
async fn an_emergency_during_a_rotation_revokes_the_compromised_key_not_its_successor() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("incident", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let compromised = current_id(&wait(apikeys.clone(), "incident", ready).await);
    // The store cannot be written: rotation 2 stops after minting.
    op.t.cluster
        .inject(Fault::on("patch", "secrets").status(500));
    let annotate = |key: &str| Patch::Merge(json!({"metadata": {"annotations": {key: "1"}}}));
    apikeys
        .patch(
            "incident",
            &PatchParams::default(),
            &annotate("apikey.dev/rotate"),
        )
        .await
        .unwrap();
    let stuck = wait(apikeys.clone(), "incident", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .and_then(|s| s.pending_key.as_ref())
            .is_some_and(|p| p.id.is_some())
    })
    .await;
    let successor = stuck.status.unwrap().pending_key.unwrap().id.unwrap();
    apikeys
        .patch(
            "incident",
            &PatchParams::default(),
            &annotate("apikey.dev/emergency-rotate"),
        )
        .await
        .unwrap();
    wait(apikeys.clone(), "incident", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .and_then(|s| s.pending_key.as_ref())
            .is_some_and(|p| p.reason == "Emergency")
    })
    .await;
    op.t.cluster.clear_faults();
    let done = wait(apikeys, "incident", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
            s.pending_key.is_none() && s.previous_key.is_none() && !s.history.is_empty()
        })
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(
        status.current_key.unwrap().id,
        successor,
        "the successor stays"
    );
    assert_eq!(status.rotation_count, 2, "no further rotation");
    let revoked: Vec<(&str, &str)> = status
        .history
        .iter()
        .map(|h| (h.id.as_str(), h.reason.as_str()))
        .collect();
    assert_eq!(revoked, [(compromised.as_str(), "Compromised")]);
}

/// Item 3: a field the operator manages, written by someone else (so an apply cannot
/// remove it), is removed anyway: the restore converges instead of repeating forever.
#[tokio::test]
async fn restoring_a_secret_converges_on_fields_another_writer_owns() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("owned", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys, "owned", ready).await;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    k.ok(&[
        "patch",
        "secret",
        "owned",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"api-key-previous":"Zm9v"}}"#,
    ])
    .await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    wait(secrets, "owned", |s: Option<&Secret>| {
        s.and_then(|s| s.data.as_ref())
            .is_some_and(|d| !d.contains_key("api-key-previous"))
    })
    .await;
}

/// Item 9: labels and annotations the template drops leave the Secret too.
#[tokio::test]
async fn labels_dropped_from_the_template_leave_the_secret() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(
        c,
        apikey(
            "labelled",
            json!({"every": "1h"}),
            json!({"secret": {"labels": {"team": "a"}, "annotations": {"owner": "a"}}}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "labelled", ready).await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    assert_eq!(secrets.get("labelled").await.unwrap().labels()["team"], "a");
    apikeys
        .patch(
            "labelled",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secret": {"labels": null, "annotations": null}}})),
        )
        .await
        .unwrap();
    let s = wait(secrets, "labelled", |s: Option<&Secret>| {
        s.is_some_and(|s| {
            !s.labels().contains_key("team") && !s.annotations().contains_key("owner")
        })
    })
    .await;
    assert_eq!(
        s.labels()["apikey.dev/name"],
        "labelled",
        "its own label stays"
    );
}

/// Item 7: a spec broken after issuance (an invalid schedule) blocks rotations, not
/// repairs: a deleted Secret comes back from status and the store.
#[tokio::test]
async fn an_invalid_spec_does_not_stop_the_secret_from_being_restored() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("frozen", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let id = current_id(&wait(apikeys.clone(), "frozen", ready).await);
    apikeys
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"every": null, "schedule": "61 3 * * 1"}}})),
        )
        .await
        .unwrap();
    wait(apikeys, "frozen", reason_is("Rotating", "InvalidSpec")).await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    secrets
        .delete("frozen", &DeleteParams::default())
        .await
        .unwrap();
    let restored = wait(secrets, "frozen", |s: Option<&Secret>| s.is_some()).await;
    assert_eq!(data(&restored, "api-key-id").unwrap(), id);
}

/// Item 9: the guarded finalizer removal losing a race (its JSON patch `test` fails: 422)
/// is another writer winning, retried at once — not a failure shown to users.
#[tokio::test]
async fn a_finalizer_patch_that_loses_a_race_is_retried_not_reported() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("racy", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "racy", ready).await;
    // A failure reported would show in a condition (and an Event after it): every
    // version of the ApiKey until it is gone is seen.
    let reasons = condition_reasons_until_deleted(apikeys.clone(), "racy").await;
    op.t.cluster
        .inject(Fault::on("patch", "apikeys").status(422).times(1));
    apikeys
        .delete("racy", &DeleteParams::default())
        .await
        .unwrap();
    let reasons = reasons.await.unwrap();
    assert_eq!(
        *op.t.cluster.faults_fired().borrow(),
        1,
        "the patch lost its race"
    );
    assert!(
        !reasons.iter().any(|r| r == "KubernetesError"),
        "{reasons:?}"
    );
}

/// Item 6: a re-created ApiKey that names another issuer and more scopes adopts the key
/// its predecessor left with that key's real issuer and scopes, so it rotates at once to
/// a key minted for its own spec, and the adopted key is revoked where it came from.
#[tokio::test]
async fn an_adopted_key_keeps_the_issuer_and_scopes_it_was_minted_for() {
    let op = operator().await;
    let c = &op.t.client;
    issuers(c, &["a", "b"]).await;
    let mut first = apikey("heir", json!({"every": "1h", "overlap": "1s"}), json!({}));
    first["spec"]["issuerRef"]["name"] = json!("a");
    create::<ApiKey>(c, first.clone()).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let left = current_id(&wait(apikeys.clone(), "heir", ready).await);
    apikeys
        .delete("heir", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys.clone(), "heir").await;
    let mut second = first;
    second["spec"]["issuerRef"]["name"] = json!("b");
    second["spec"]["scopes"] = json!(["widgets:read", "widgets:write"]);
    create::<ApiKey>(c, second).await;
    let done = wait(apikeys, "heir", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                s.previous_key.is_none()
                    && s.current_key.as_ref().is_some_and(|k| k.issuer.name == "b")
            })
    })
    .await;
    let status = done.status.unwrap();
    assert_ne!(
        status.current_key.unwrap().id,
        left,
        "replaced by a key of its own"
    );
    assert!(
        status
            .history
            .iter()
            .any(|h| h.id == left && h.revoked_at.is_some())
    );
    // Rotated because the adopted key was minted for another spec.
    wait_events(c, "heir", |e| {
        e.iter()
            .any(|(r, n)| r == "RotationStarted" && n.contains("SpecChanged"))
    })
    .await;
}

/// Item 8: a key being abandoned is recorded as such before it is revoked, so when the
/// abandon is interrupted and the spec reverted meanwhile, the revoked key (which an
/// idempotent issuer would return again) is not persisted and promoted.
#[tokio::test]
async fn an_interrupted_abandon_never_promotes_the_abandoned_key() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("undo", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = current_id(&wait(apikeys.clone(), "undo", ready).await);
    // The next key is minted but cannot be stored: the rotation stays pending.
    op.t.cluster
        .inject(Fault::on("patch", "secrets").status(500));
    // Returns the generation the change made.
    let set = |patch: Value| {
        let apikeys = apikeys.clone();
        async move {
            apikeys
                .patch("undo", &PatchParams::default(), &Patch::Merge(patch))
                .await
                .unwrap()
                .metadata
                .generation
        }
    };
    set(json!({"metadata": {"annotations": {"apikey.dev/rotate": "1"}}})).await;
    let pending = |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .and_then(|s| s.pending_key.clone())
    };
    let minted = wait(apikeys.clone(), "undo", |a: Option<&ApiKey>| {
        pending(a).is_some_and(|p| p.id.is_some())
    })
    .await;
    let abandoned = pending(Some(&minted)).unwrap().id.unwrap();
    // A scope change abandons it; dropping it from the store fails part-way.
    let generation = set(json!({"spec": {"scopes": ["widgets:read", "widgets:write"]}})).await;
    wait(apikeys.clone(), "undo", move |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.observed_generation == generation)
            && reason_is("Rotating", "StoreUnavailable")(a)
    })
    .await;
    // The user reverts the change before the abandon completes.
    let reverted = set(json!({"spec": {"scopes": ["widgets:read"]}})).await;
    op.t.cluster.clear_faults();
    let done = wait(apikeys.clone(), "undo", move |a: Option<&ApiKey>| {
        pending(a).is_none()
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.observed_generation == reverted)
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(
        status.current_key.unwrap().id,
        first,
        "the abandoned key {abandoned} is never promoted"
    );
    assert!(
        status
            .history
            .iter()
            .any(|h| h.id == abandoned && h.reason == "Abandoned"),
        "{:?}",
        status.history
    );
}
