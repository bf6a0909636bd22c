//! Keys and Secrets that go missing or are changed behind the operator's back are
//! restored or recovered, and never taken over from another owner.

use apikey_operator::api::apikey::{ApiKey, Phase};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::invariants::Recorder;
use crate::support::*;

use super::harness::*;

#[tokio::test]
async fn a_deleted_or_edited_secret_is_restored() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("drift", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let id = current_id(&wait(apikeys, "drift", ready).await);
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let original = data(&secrets.get("drift").await.unwrap(), "api-key").unwrap();
    secrets
        .patch(
            "drift",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"api-key": "tampered"}})),
        )
        .await
        .unwrap();
    wait(secrets.clone(), "drift", |s: Option<&Secret>| {
        s.and_then(|s| data(s, "api-key")) == Some(original.clone())
    })
    .await;
    let restored = deleted_and_restored(&secrets, "drift").await;
    assert_eq!(
        data(&restored, "api-key-id").unwrap(),
        id,
        "restored from the store, not re-minted"
    );
}

/// Watch events for an ApiKey being reconciled wait for the reconcile to end (one may be
/// the echo of a write whose answer is still on its way). One that is not, here the
/// consumer Secret deleted while a status write is held up in a reconcile that would
/// otherwise sleep until the next rotation, must still wake the ApiKey when it ends.
#[tokio::test]
async fn a_secret_deleted_during_a_reconcile_is_restored_when_it_ends() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("held", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let id = current_id(&wait(apikeys.clone(), "held", ready).await);
    // A schedule change: the reconcile records it in status (held up 2 s here) and has
    // nothing else to do for two hours.
    let mut fired = op.t.cluster.faults_fired();
    op.t.cluster.inject(
        Fault::on("update", "apikeys")
            .times(1)
            .delay(std::time::Duration::from_secs(2)),
    );
    apikeys
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": {"every": "2h"}}})),
        )
        .await
        .unwrap();
    fired.wait_for(|f| *f >= 1).await.unwrap();
    let restored = deleted_and_restored(&Api::default_namespaced(c.clone()), "held").await;
    assert_eq!(data(&restored, "api-key-id").unwrap(), id);
}

/// Deletes the consumer Secret `name` and waits until the operator has written it again.
async fn deleted_and_restored(secrets: &Api<Secret>, name: &str) -> Secret {
    secrets
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    wait(secrets.clone(), name, |s: Option<&Secret>| {
        s.and_then(|s| data(s, "api-key-id")).is_some()
    })
    .await
}

#[tokio::test]
async fn a_secret_replaced_while_being_restored_is_not_taken_over() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("raced", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "raced", ready).await;
    // The operator's restoring apply is held up; meanwhile someone else's Secret takes
    // the name. The apply must not land on it.
    let patches = op.t.cluster.requests("patch", "secrets");
    op.t.cluster.inject(
        Fault::on("patch", "secrets")
            .delay(std::time::Duration::from_secs(2))
            .times(1),
    );
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let mut tampered = secrets.get("raced").await.unwrap();
    tampered.data = None;
    secrets
        .replace("raced", &PostParams::default(), &tampered)
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while op.t.cluster.requests("patch", "secrets") == patches {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the operator restores the Secret");
    secrets
        .delete("raced", &DeleteParams::default())
        .await
        .unwrap();
    create::<Secret>(
        c,
        json!({"metadata": {"name": "raced"}, "stringData": {"api-key": "theirs"}}),
    )
    .await;
    wait(apikeys, "raced", reason_is("Rotating", "SecretConflict")).await;
    let theirs = secrets.get("raced").await.unwrap();
    assert_eq!(data(&theirs, "api-key").unwrap(), "theirs");
    assert!(theirs.owner_references().is_empty(), "not taken over");
}

/// The consumer Secret was absent when the reconcile observed the world; someone else's
/// Secret takes the name before the operator writes it. The operator creates its Secret
/// (a create fails on a taken name) rather than applying onto whatever is there.
#[tokio::test]
async fn a_secret_created_by_someone_else_before_the_first_write_is_not_taken_over() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    // The Promote step observes that no consumer Secret exists, then creates it (held up
    // here): someone else's Secret takes the name in between.
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    // The Secret creates before Promote's: the Kubernetes store's state Secret.
    let creates = 1;
    op.t.cluster.inject(
        Fault::on("create", "secrets")
            .after(creates)
            .delay(std::time::Duration::from_secs(2))
            .times(1),
    );
    create::<ApiKey>(c, apikey("contested", json!({"every": "1h"}), json!({}))).await;
    tokio::time::timeout(PATIENCE, async {
        while op.t.cluster.requests("create", "secrets") <= creates as u64 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the operator promotes the first key");
    let held_up = apikeys.get("contested").await.unwrap().status.unwrap();
    assert!(
        held_up.current_key.is_none() && held_up.pending_key.is_some(),
        "the write held up is Promote's"
    );
    create::<Secret>(
        c,
        json!({"metadata": {"name": "contested"}, "stringData": {"api-key": "theirs"}}),
    )
    .await;
    wait(apikeys, "contested", reason_is("Ready", "SecretConflict")).await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let theirs = secrets.get("contested").await.unwrap();
    assert_eq!(data(&theirs, "api-key").unwrap(), "theirs");
    assert!(theirs.owner_references().is_empty(), "not taken over");
}

#[tokio::test]
async fn keys_lost_from_the_store_are_recovered_from_the_secret() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("lost", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "lost", ready).await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let original = data(&secrets.get("lost").await.unwrap(), "api-key").unwrap();
    let lost_state = secrets.get("lost-apikey-state").await.unwrap().uid();
    secrets
        .delete("lost-apikey-state", &DeleteParams::default())
        .await
        .unwrap();
    // Restored at once from the Secret (the deletion wakes the ApiKey): a new state Secret.
    wait(
        secrets.clone(),
        "lost-apikey-state",
        |s: Option<&Secret>| s.is_some_and(|s| s.uid() != lost_state),
    )
    .await;
    request(&apikeys, "lost", "apikey.dev/rotate", "1").await;
    wait(apikeys, "lost", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.rotation_count == 2)
    })
    .await;
    let secret = wait(secrets, "lost", |s: Option<&Secret>| {
        s.is_some_and(|s| data(s, "api-key-previous").is_some())
    })
    .await;
    assert_eq!(
        data(&secret, "api-key-previous").unwrap(),
        original,
        "the working key stays in the overlap, restored into the store from the Secret"
    );
}

#[tokio::test]
async fn a_key_lost_from_the_store_and_the_secret_is_replaced() {
    let mut op = operator().await;
    let c = op.t.client.clone();
    issuer(&c).await;
    create::<ApiKey>(&c, apikey("gone", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let lost = wait(apikeys.clone(), "gone", ready).await;
    let lost_id = lost.status.unwrap().current_key.unwrap().id;
    // Both copies go while the operator is down, so it cannot restore one from the other.
    op.stop().await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    secrets
        .delete("gone-apikey-state", &DeleteParams::default())
        .await
        .unwrap();
    secrets
        .patch(
            "gone",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"api-key": "overwritten"}})),
        )
        .await
        .unwrap();
    op.start();
    let replaced = wait(apikeys, "gone", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.rotation_count == 2)
    })
    .await;
    let status = replaced.status.unwrap();
    assert_eq!(
        status.previous_key.unwrap().id,
        lost_id,
        "still revoked only after the overlap"
    );
    let secret = secrets.get("gone").await.unwrap();
    assert_eq!(
        data(&secret, "api-key-id").unwrap(),
        status.current_key.unwrap().id
    );
    assert!(
        data(&secret, "api-key-previous").is_none(),
        "a key without material is not offered"
    );
}

#[tokio::test]
async fn store_failures_are_reported_and_recovered_from() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    // The state Secret cannot be created: the minted key has nowhere durable to go.
    op.t.cluster
        .inject(Fault::on("create", "secrets").status(500));
    create::<ApiKey>(c, apikey("flaky", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let failing = wait(
        apikeys.clone(),
        "flaky",
        reason_is("Ready", "StoreUnavailable"),
    )
    .await;
    let status = failing.status.unwrap();
    assert!(
        status.current_key.is_none(),
        "nothing is distributed before it is stored"
    );
    assert_eq!(
        status.phase,
        Some(Phase::Error),
        "retried, not waiting for you"
    );
    let rotating = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Rotating")
        .unwrap();
    assert_eq!(
        (rotating.status.as_str(), rotating.reason.as_str()),
        ("False", "StoreUnavailable"),
        "never 'Rotating=True Storing' beside a failure"
    );
    let waiting = status
        .pending_key
        .unwrap()
        .id
        .expect("the minted id is recorded");
    op.t.cluster.clear_faults();
    let ak = wait(apikeys, "flaky", ready).await;
    let status = ak.status.unwrap();
    assert_eq!(status.rotation_count, 1);
    assert_eq!(
        status.current_key.unwrap().id,
        waiting,
        "the same key, re-minted by its idempotency key, not a second one"
    );
}

/// An API server that answers 503 (overloaded, or shutting down) for longer than a blip:
/// the operator's client (the one `apikey-operator run` builds, as every test's operator
/// has) sends each request again a few times, then the step fails and the ApiKey says
/// why. kube-rs's default client kept retrying one request for minutes, the ApiKey
/// showing nothing meanwhile.
#[tokio::test]
async fn an_api_server_answering_503_shows_on_the_apikey_after_a_few_retries() {
    use apikey_operator::run::client::RETRIES;
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    let mut fired = op.t.cluster.faults_fired();
    op.t.cluster
        .inject(Fault::on("create", "secrets").status(503));
    create::<ApiKey>(c, apikey("busy", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let message = wait_reason(&apikeys, "busy", "Ready", "StoreUnavailable").await;
    assert!(message.contains("503"), "{message}");
    let refused = *fired.borrow_and_update();
    assert!(
        refused > u64::from(RETRIES),
        "the first attempt and {RETRIES} retries before it failed, not {refused}"
    );
    op.t.cluster.clear_faults();
    let ak = wait(apikeys, "busy", ready).await;
    assert_eq!(ak.status.unwrap().rotation_count, 1);
}

/// A create the API server applied but answered 504 (its answer timed out after the
/// write): the client sends it again and meets AlreadyExists. The Secret there is the
/// operator's own, so the ApiKey goes on to Ready and never shows a conflict.
#[tokio::test]
async fn a_secret_create_applied_but_answered_504_is_known_as_our_own() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let reasons = condition_reasons_until_deleted(apikeys.clone(), "lost").await;
    let mut fired = op.t.cluster.faults_fired();
    // The Secret creates before Promote's: the Kubernetes store's state Secret.
    op.t.cluster.inject(
        Fault::on("create", "secrets")
            .after(1)
            .status(504)
            .applied()
            .times(1),
    );
    create::<ApiKey>(c, apikey("lost", json!({"every": "1h"}), json!({}))).await;
    let ak = wait(apikeys.clone(), "lost", ready).await;
    assert_eq!(*fired.borrow_and_update(), 1, "the create was answered 504");
    let secret = Api::<Secret>::default_namespaced(c.clone())
        .get("lost")
        .await
        .unwrap();
    assert_eq!(data(&secret, "api-key-id").unwrap(), current_id(&ak));
    apikeys.delete("lost", &Default::default()).await.unwrap();
    let reasons = reasons.await.unwrap();
    assert!(
        reasons
            .iter()
            .all(|r| r != "SecretConflict" && r != "KubernetesError"),
        "{reasons:?}"
    );
}

/// A promotion writes the Secret, then status. A crash in between leaves a pending key
/// that pods may already read: even after a spec change it is promoted, never abandoned
/// (revoked under them), and goes only by a rotation with its overlap.
#[tokio::test]
async fn a_key_the_secret_got_before_status_is_promoted_even_after_a_spec_change() {
    use kube_devcluster::Fault;
    let mut op = operator().await;
    let c = op.t.client.clone();
    let (widgetjar, _) = super::http_issuer::widgetjar(&c).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let recorder = Recorder::start(&c, "cut", "cut", Some("cut-apikey-state"));
    // The first key's status writes: the intent, the minted id, the promotion.
    let mut fired = op.t.cluster.faults_fired();
    op.t.cluster
        .inject(Fault::on("update", "apikeys").after(2).times(1).status(500));
    let rotation = json!({"every": "1h", "overlap": "1s"});
    create::<ApiKey>(&c, super::http_issuer::widget_key("cut", rotation)).await;
    fired.wait_for(|f| *f >= 1).await.unwrap();
    op.stop().await;

    let status = apikeys.get("cut").await.unwrap().status.unwrap();
    assert!(status.current_key.is_none(), "the promotion was cut short");
    let cut = status.pending_key.and_then(|p| p.id).expect("a minted key");
    let secret = secrets.get("cut").await.unwrap();
    assert_eq!(
        data(&secret, "api-key-id").as_deref(),
        Some(cut.as_str()),
        "the Secret got the key before status"
    );
    apikeys
        .patch(
            "cut",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scopes": ["widgets:write"]}})),
        )
        .await
        .unwrap();
    op.start();

    let done = wait(apikeys, "cut", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                s.rotation_count == 2 && s.previous_key.is_none() && s.pending_key.is_none()
            })
    })
    .await;
    let status = done.status.clone().unwrap();
    let history: Vec<(&str, &str)> = status
        .history
        .iter()
        .map(|h| (h.id.as_str(), h.reason.as_str()))
        .collect();
    assert!(
        history.iter().all(|(_, reason)| *reason != "Abandoned"),
        "{history:?}"
    );
    assert!(
        history.iter().any(|(id, _)| *id == cut),
        "rotated away after its overlap: {history:?}"
    );
    let valid: Vec<String> = widgetjar.valid_keys().into_iter().map(|k| k.id).collect();
    assert_eq!(valid, vec![current_id(&done)], "none orphaned");
    recorder.check(&c, "cut").await;
}
