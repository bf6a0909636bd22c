use std::collections::BTreeSet;

use apikey_operator::api::apikey::{ApiKey, Phase};
use apikey_operator::issuer::fingerprint;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
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
    // Every step of the first rotation reports itself (a step that writes status more
    // than once must not lose its event to its own write).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(c.clone());
    let reasons: BTreeSet<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["RotationStarted", "Minted", "Distributed"] {
        assert!(
            reasons.contains(reason),
            "{reason} missing from {reasons:?}"
        );
    }
    let described = k.ok(&["describe", "ak", "billing"]).await;
    assert!(described.contains("RotationStarted"), "{described}");
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
async fn a_deleted_or_edited_secret_is_restored() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("drift", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let id = wait(apikeys, "drift", ready)
        .await
        .status
        .unwrap()
        .current_key
        .unwrap()
        .id;
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
    secrets
        .delete("drift", &DeleteParams::default())
        .await
        .unwrap();
    let restored = wait(secrets, "drift", |s: Option<&Secret>| s.is_some()).await;
    assert_eq!(
        data(&restored, "api-key-id").unwrap(),
        id,
        "restored from the store, not re-minted"
    );
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
    secrets
        .delete("lost-apikey-state", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(secrets.clone(), "lost-apikey-state").await;
    apikeys
        .patch(
            "lost",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"apikey.dev/rotate": "1"}}})),
        )
        .await
        .unwrap();
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
            .is_some_and(|s| s.rotation_count == 2 && s.phase != Some(Phase::Distributing))
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
async fn the_dev_sandbox_runs_the_operator_for_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
        .args(["dev", "--rollout-seconds", "0.05", "--kubeconfig"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let running = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("apikey-operator running") {
                return;
            }
        }
        panic!("the sandbox exited");
    };
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the sandbox starts");
    let k = Kubectl::new(&std::fs::read_to_string(&path).unwrap());
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic");
    k.ok(&["apply", "-f", examples.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "apikey/billing",
        "--timeout=20s",
    ])
    .await;
    let key = k
        .ok(&[
            "get",
            "secret",
            "billing-api-key",
            "-o",
            "jsonpath={.data.api-key}",
        ])
        .await;
    use base64::Engine;
    let key = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .unwrap(),
    )
    .unwrap();
    assert!(key.starts_with("sk_live_"), "the example issuer's prefix");
    let rollout = k
        .ok(&["rollout", "status", "deployment/billing", "--timeout=20s"])
        .await;
    assert!(rollout.contains("successfully rolled out"), "{rollout}");
    drop(lines);
}

#[tokio::test]
async fn a_crash_after_any_step_recovers_with_no_key_lost_or_orphaned() {
    // Each run fails the n-th status write: the step before it has acted (minted, stored,
    // written the Secret, patched consumers, revoked) but status does not know yet.
    for n in 0..9 {
        let op = operator().await;
        let c = &op.t.client;
        issuer(c).await;
        deployment(c, "crashy").await;
        op.t.cluster.inject(
            kube_devcluster::Fault::on("update", "apikeys")
                .after(n)
                .times(1)
                .status(500),
        );
        let recorder = crate::support::invariants::Recorder::start(c, "crashy", "crashy");
        create::<ApiKey>(
            c,
            apikey(
                "crashy",
                json!({"every": "2s", "overlap": "1s"}),
                json!({"consumers": [{"kind": "Deployment", "name": "crashy"}]}),
            ),
        )
        .await;
        let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
        wait(apikeys, "crashy", |a: Option<&ApiKey>| {
            a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                s.rotation_count >= 2
                    && s.previous_key.is_none()
                    && s.pending_key.is_none()
                    && !s.history.is_empty()
            })
        })
        .await;
        recorder.check(c, "crashy").await;
    }
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
async fn the_operator_as_its_own_process_fills_the_printer_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.kubeconfig");
    let bin = env!("CARGO_BIN_EXE_apikey-operator");
    let mut api = tokio::process::Command::new(bin)
        .args(["dev", "--api-only", "--kubeconfig"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(api.stdout.take().unwrap()));
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let k = Kubectl::new(&std::fs::read_to_string(&path).unwrap());
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    k.ok(&["apply", "-f", crds.to_str().unwrap()]).await;
    let log = dir.path().join("operator.log");
    let _operator = tokio::process::Command::new(bin)
        .args(["run", "--kubeconfig"])
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic");
    k.ok(&["apply", "-f", examples.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "apikey/billing",
        "--timeout=20s",
    ])
    .await;
    let table = k.ok(&["get", "ak"]).await;
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "billing");
    assert_eq!(row[1], "True", "READY: {table}");
    assert!(row[3].starts_with("gen-"), "KEY: {table}");
    assert!(row[5].starts_with("20"), "NEXT is a timestamp: {table}");
    // -o wide says why, as cert-manager's does.
    let wide = k.ok(&["get", "ak", "-o", "wide"]).await;
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header[header.len() - 3..],
        ["REASON", "ROTATION", "MESSAGE"],
        "{wide}"
    );
    assert!(wide.contains("KeyDistributed"), "{wide}");
    // At the default level the log tells what was done, one line per step, naming the
    // ApiKey (and never holding key material).
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("INFO")
            && l.contains("apikey=default/billing")
            && l.contains("Promote")),
        "{logged}"
    );
    let secret = k
        .ok(&[
            "get",
            "secret",
            "billing-api-key",
            "-o",
            "jsonpath={.data.api-key}",
        ])
        .await;
    let key = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, secret.trim()).unwrap(),
    )
    .unwrap();
    assert!(!logged.contains(&key), "no key material in the log");
    drop(lines);
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
    wait(
        apikeys.clone(),
        "broken",
        reason_is("Rotating", "InvalidSpec"),
    )
    .await;
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
    let message = bad
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
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
    apikeys
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"apikey.dev/rotate": "now"}}})),
        )
        .await
        .unwrap();
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
    let rerendered = wait(secrets.clone(), "shape", |s: Option<&Secret>| {
        s.is_some_and(|s| data(s, "token").is_some())
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
    let message = refused
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("does not allow namespace \"default\""),
        "{message}"
    );
    wait(Api::<ApiKey>::namespaced(c.clone(), "team-a"), "k", ready).await;
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
