//! The Vault store on a real OpenBao dev server: what a reader of KV v2 sees at each
//! rotation step, the three logins, ownership and tenant isolation, an outage, and both
//! deletion policies. Everything is read back with the bao CLI, not through our code.

use apikey_operator::api::apikey::{ApiKey, Phase};
use apikey_operator::api::store::KeyStore;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams};
use kube_devcluster::WorkloadKind;
use serde_json::{Value, json};

use super::harness::*;
use crate::support::*;

/// What the operator's token may do: the policy the example ships (its own folder of
/// the `secret` mount, nothing else), so the example is what these tests prove enough.
pub const POLICY: &str = include_str!("../../examples/vault/policy.hcl");

/// A KeyStore `vault` in `default` that logs in with a token limited to `POLICY`.
pub(super) async fn token_store(c: &Client, bao: &OpenBao) {
    let token = bao.token_for("apikeys", POLICY).await;
    create::<Secret>(
        c,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-token"},
            "stringData": {"token": token}}),
    )
    .await;
    keystore(
        c,
        "vault",
        bao,
        json!({"token": {"secretRef": {"name": "vault-token", "key": "token"}}}),
    )
    .await;
}

async fn keystore(c: &Client, name: &str, bao: &OpenBao, auth: Value) {
    create::<KeyStore>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyStore", "metadata": {"name": name},
            "spec": {"vault": {"server": bao.addr, "auth": auth}}}),
    )
    .await;
}

fn stored(name: &str, extra: Value) -> Value {
    let mut spec = json!({"storeRef": {"name": "vault"}});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    apikey(name, json!({"every": "1h", "overlap": "1m"}), spec)
}

fn phase(p: Phase) -> impl Fn(Option<&ApiKey>) -> bool {
    move |a| a.and_then(|a| a.status.as_ref()).and_then(|s| s.phase) == Some(p)
}

fn previous_id(ak: &ApiKey) -> Option<String> {
    ak.status
        .as_ref()?
        .previous_key
        .as_ref()
        .map(|k| k.id.clone())
}

#[tokio::test]
async fn a_rotation_shows_readers_of_the_latest_version_the_new_key_only_at_promotion() {
    let bao = OpenBao::start().await;
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    token_store(c, &bao).await;
    deployment(c, "app").await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    create::<ApiKey>(
        c,
        stored(
            "widgets",
            json!({"consumers": [{"kind": "Deployment", "name": "app"}]}),
        ),
    )
    .await;
    let ak = wait(apikeys.clone(), "widgets", ready).await;
    let first = current_id(&ak);
    let path = "apikeys/default/widgets";

    let latest = bao.kv_get("secret", path).await.expect("the entry");
    let in_secret = secrets.get("widgets").await.unwrap();
    let key = data(&in_secret, "api-key").expect("the key in the Secret");
    assert_eq!(latest["data"]["api-key"], key.as_str());
    assert_eq!(latest["data"]["api-key-id"], first.as_str());
    let meta = bao.kv_metadata("secret", path).await.unwrap();
    assert_eq!(
        meta["custom_metadata"]["apikey.dev/owner"],
        "default/widgets"
    );
    assert_eq!(
        meta["custom_metadata"]["apikey.dev/uid"],
        ak.metadata.uid.clone().unwrap().as_str()
    );
    let location = &current_key(&ak).store;
    assert_eq!(
        location.as_ref().unwrap().location,
        format!("secret/{path}")
    );

    // Held mid-rollout: the new key is current in the store, the old one previous; the
    // version before promotion still offered the old key, with the new one pending.
    op.t.cluster
        .hold_rollout(WorkloadKind::Deployment, "default", "app");
    request(&apikeys, "widgets", "apikey.dev/rotate", "1").await;
    let ak = wait(apikeys.clone(), "widgets", phase(Phase::RollingOut)).await;
    let second = current_id(&ak);
    assert_ne!(first, second);
    let latest = bao.kv_get("secret", path).await.unwrap();
    assert_eq!(latest["data"]["api-key-id"], second.as_str());
    assert_eq!(latest["data"]["api-key-id-previous"], first.as_str());
    let version = latest["metadata"]["version"].as_u64().unwrap();
    let before = bao
        .kv_get_version("secret", path, version - 1)
        .await
        .unwrap();
    assert_eq!(
        before["data"]["api-key-id"],
        first.as_str(),
        "readers saw the old key"
    );
    assert_eq!(before["data"]["api-key-id-pending"], second.as_str());
    assert_eq!(before["data"]["api-key-pending"], latest["data"]["api-key"]);

    // Rolled out and past the overlap: the old key is revoked, and every version that
    // held it is destroyed.
    op.t.cluster
        .release_rollout(WorkloadKind::Deployment, "default", "app");
    wait(apikeys.clone(), "widgets", phase(Phase::Overlapping)).await;
    clock.advance(std::time::Duration::from_secs(120));
    wait(apikeys.clone(), "widgets", |a: Option<&ApiKey>| {
        ready(a) && a.is_some_and(|a| previous_id(a).is_none())
    })
    .await;
    let latest = bao.kv_get("secret", path).await.unwrap();
    assert_eq!(
        latest["data"],
        json!({"api-key": latest["data"]["api-key"], "api-key-id": second})
    );
    let meta = bao.kv_metadata("secret", path).await.unwrap();
    let newest = meta["current_version"].as_u64().unwrap();
    for (v, m) in meta["versions"].as_object().unwrap() {
        let v: u64 = v.parse().unwrap();
        assert_eq!(m["destroyed"], v != newest, "version {v} of {newest}: {m}");
    }
}

#[tokio::test]
async fn approle_and_kubernetes_logins_store_keys() {
    let bao = OpenBao::start().await;
    let op = operator().await;
    let c = &op.t.client;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    issuer(c).await;
    bao.token_for("apikeys", POLICY).await;

    bao.ok(&["auth", "enable", "approle"]).await;
    bao.ok(&[
        "write",
        "auth/approle/role/operator",
        "token_policies=apikeys",
        "token_ttl=1m",
    ])
    .await;
    let role_id = bao
        .ok(&[
            "read",
            "-field=role_id",
            "auth/approle/role/operator/role-id",
        ])
        .await;
    let secret_id = bao
        .ok(&[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/operator/secret-id",
        ])
        .await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "vault-approle",
        &format!("--from-literal=role-id={}", role_id.trim()),
        &format!("--from-literal=secret-id={}", secret_id.trim()),
    ])
    .await;
    keystore(
        c,
        "approle",
        &bao,
        json!({"appRole": {"secretName": "vault-approle"}}),
    )
    .await;

    // OpenBao checks the ServiceAccount token through the dev cluster's TokenReview.
    k.ok(&["create", "serviceaccount", "vault-reviewer"]).await;
    k.ok(&["create", "serviceaccount", "keys"]).await;
    let reviewer = k
        .ok(&["create", "token", "vault-reviewer", "--duration=1h"])
        .await;
    let ca = k.file("ca.pem", op.t.cluster.ca_pem());
    bao.ok(&["auth", "enable", "kubernetes"]).await;
    bao.ok(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host={}", op.t.cluster.url()),
        &format!("kubernetes_ca_cert=@{ca}"),
        &format!("token_reviewer_jwt={}", reviewer.trim()),
        "disable_local_ca_jwt=true",
    ])
    .await;
    bao.ok(&[
        "write",
        "auth/kubernetes/role/apikeys",
        "bound_service_account_names=keys",
        "bound_service_account_namespaces=default",
        "audience=vault",
        "token_policies=apikeys",
        "ttl=1m",
    ])
    .await;
    keystore(
        c,
        "k8s",
        &bao,
        json!({"kubernetes": {"role": "apikeys", "serviceAccountName": "keys", "audiences": ["vault"]}}),
    )
    .await;

    let stores: Api<KeyStore> = Api::default_namespaced(c.clone());
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    for store in ["approle", "k8s"] {
        wait(stores.clone(), store, |s: Option<&KeyStore>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .await;
        let mut spec = stored(store, json!({}));
        spec["spec"]["storeRef"]["name"] = store.into();
        create::<ApiKey>(c, spec).await;
        let ak = wait(apikeys.clone(), store, ready).await;
        let latest = bao
            .kv_get("secret", &format!("apikeys/default/{store}"))
            .await
            .expect("stored");
        assert_eq!(
            latest["data"]["api-key-id"],
            current_id(&ak).as_str(),
            "{store}"
        );
    }

    // Every token the operator holds is revoked: the next write gets a 403, and the
    // operator logs in again (re-reading its credentials) instead of failing.
    bao.ok(&["token", "revoke", "-mode=path", "auth/approle/login"])
        .await;
    bao.ok(&["token", "revoke", "-mode=path", "auth/kubernetes/login"])
        .await;
    for store in ["approle", "k8s"] {
        let before = current_id(&apikeys.get(store).await.unwrap());
        request(&apikeys, store, "apikey.dev/rotate", "after-revocation").await;
        let ak = wait(apikeys.clone(), store, |a: Option<&ApiKey>| {
            a.is_some_and(|a| current_id(a) != before && previous_id(a) == Some(before.clone()))
        })
        .await;
        let latest = bao
            .kv_get("secret", &format!("apikeys/default/{store}"))
            .await
            .unwrap();
        assert_eq!(
            latest["data"]["api-key-id"],
            current_id(&ak).as_str(),
            "{store}"
        );
    }
}

#[tokio::test]
async fn another_owners_entry_is_never_written_and_namespaces_stay_apart() {
    let bao = OpenBao::start().await;
    let op = operator().await;
    let c = &op.t.client;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    issuer(c).await;
    token_store(c, &bao).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());

    // Someone else's data at the default path of ApiKey "taken".
    bao.ok(&[
        "kv",
        "put",
        "-mount=secret",
        "apikeys/default/taken",
        "password=theirs",
    ])
    .await;
    create::<ApiKey>(c, stored("taken", json!({}))).await;
    let why = wait_reason(&apikeys, "taken", "Ready", "StoreConflict").await;
    assert!(why.contains("did not write"), "{why}");
    let theirs = bao.kv_get("secret", "apikeys/default/taken").await.unwrap();
    assert_eq!(theirs["data"], json!({"password": "theirs"}));

    // Two ApiKeys naming one path: the second is refused, the first keeps its entry.
    create::<ApiKey>(
        c,
        stored(
            "first",
            json!({"storeRef": {"name": "vault", "path": "shared"}}),
        ),
    )
    .await;
    let first = wait(apikeys.clone(), "first", ready).await;
    create::<ApiKey>(
        c,
        stored(
            "second",
            json!({"storeRef": {"name": "vault", "path": "shared"}}),
        ),
    )
    .await;
    let second = wait(
        apikeys.clone(),
        "second",
        reason_is("Ready", "StoreConflict"),
    )
    .await;
    assert!(message(&second, "Ready").contains("belongs to ApiKey default/first"));
    let shared = bao
        .kv_get("secret", "apikeys/default/shared")
        .await
        .unwrap();
    assert_eq!(shared["data"]["api-key-id"], current_id(&first).as_str());

    // A namespaced store keeps its namespace as the first segment, whatever the path.
    k.ok(&["create", "namespace", "team-b"]).await;
    let escape = k
        .run(&[
            "apply",
            "-f",
            &k.file(
                "escape.yaml",
                "apiVersion: apikey.dev/v1alpha1
kind: ApiKey
metadata: {name: escape}
spec:
  issuerRef: {name: gen}
  rotation: {every: 1h}
  storeRef: {name: vault, path: ../team-b/escape}
",
            ),
        ])
        .await;
    assert!(
        !escape.ok
            && escape
                .stderr
                .contains("storeRef.path must be relative segments"),
        "{}",
        escape.stderr
    );
    create::<ApiKey>(
        c,
        stored(
            "nested",
            json!({"storeRef": {"name": "vault", "path": "team-b/nested"}}),
        ),
    )
    .await;
    wait(apikeys.clone(), "nested", ready).await;
    assert!(
        bao.kv_get("secret", "apikeys/default/team-b/nested")
            .await
            .is_some()
    );
    assert!(
        bao.kv_get("secret", "apikeys/team-b/nested")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_sealed_store_holds_the_rotation_and_the_old_key_until_it_is_back() {
    let bao = OpenBao::start().await;
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    token_store(c, &bao).await;
    deployment(c, "app").await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    create::<ApiKey>(
        c,
        stored(
            "widgets",
            json!({"consumers": [{"kind": "Deployment", "name": "app"}]}),
        ),
    )
    .await;
    let old = current_id(&wait(apikeys.clone(), "widgets", ready).await);
    let unavailable = reason_is("Rotating", "StoreUnavailable");

    // Sealed before the rotation: nothing is minted, the Secret keeps the old key.
    bao.seal().await;
    op.t.cluster
        .hold_rollout(WorkloadKind::Deployment, "default", "app");
    request(&apikeys, "widgets", "apikey.dev/rotate", "1").await;
    let ak = wait(apikeys.clone(), "widgets", &unavailable).await;
    assert!(
        message(&ak, "Rotating").contains("sealed"),
        "{}",
        message(&ak, "Rotating")
    );
    assert_eq!(current_id(&ak), old);
    let in_secret = secrets.get("widgets").await.unwrap();
    assert_eq!(
        data(&in_secret, "api-key-id").as_deref(),
        Some(old.as_str())
    );

    // Back: the rotation goes on, up to the held rollout.
    bao.unseal().await;
    let ak = wait(apikeys.clone(), "widgets", phase(Phase::RollingOut)).await;
    let new = current_id(&ak);
    assert_eq!(previous_id(&ak).as_deref(), Some(old.as_str()));

    // Sealed mid-rotation, as the overlap ends: the old key is not revoked while the
    // store cannot say what it holds.
    op.t.cluster
        .release_rollout(WorkloadKind::Deployment, "default", "app");
    wait(apikeys.clone(), "widgets", phase(Phase::Overlapping)).await;
    bao.seal().await;
    clock.advance(std::time::Duration::from_secs(120));
    let ak = wait(apikeys.clone(), "widgets", &unavailable).await;
    assert_eq!(
        previous_id(&ak).as_deref(),
        Some(old.as_str()),
        "still held"
    );
    assert!(
        ak.status
            .as_ref()
            .unwrap()
            .history
            .iter()
            .all(|h| h.revoked_at.is_none())
    );

    bao.unseal().await;
    wait(apikeys.clone(), "widgets", |a: Option<&ApiKey>| {
        ready(a) && a.is_some_and(|a| previous_id(a).is_none())
    })
    .await;
    let latest = bao
        .kv_get("secret", "apikeys/default/widgets")
        .await
        .unwrap();
    assert_eq!(latest["data"]["api-key-id"], new.as_str());
    assert!(latest["data"].get("api-key-previous").is_none());
}

#[tokio::test]
async fn deletion_purges_or_keeps_the_entry_and_a_recreated_apikey_takes_it_over() {
    let bao = OpenBao::start().await;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    token_store(c, &bao).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());

    create::<ApiKey>(c, stored("gone", json!({"deletionPolicy": "Revoke"}))).await;
    wait(apikeys.clone(), "gone", ready).await;
    create::<ApiKey>(c, stored("kept", json!({"deletionPolicy": "Retain"}))).await;
    let kept = wait(apikeys.clone(), "kept", ready).await;
    for name in ["gone", "kept"] {
        apikeys
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        wait_deleted(apikeys.clone(), name).await;
    }
    assert!(
        bao.kv_metadata("secret", "apikeys/default/gone")
            .await
            .is_none(),
        "Revoke purges"
    );
    let entry = bao
        .kv_get("secret", "apikeys/default/kept")
        .await
        .expect("Retain keeps");
    assert_eq!(entry["data"]["api-key-id"], current_id(&kept).as_str());

    // Same name, new object: it continues with the key and records its own uid.
    create::<ApiKey>(c, stored("kept", json!({"deletionPolicy": "Retain"}))).await;
    let again = wait(apikeys.clone(), "kept", ready).await;
    assert_eq!(current_id(&again), current_id(&kept));
    let meta = bao
        .kv_metadata("secret", "apikeys/default/kept")
        .await
        .unwrap();
    assert_eq!(
        meta["custom_metadata"]["apikey.dev/uid"],
        again.metadata.uid.clone().unwrap().as_str()
    );
}

#[tokio::test]
async fn a_missing_or_unserving_store_is_reported_and_picked_up_once_there() {
    let bao = OpenBao::start().await;
    let op = operator().await;
    let c = &op.t.client;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    issuer(c).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());

    create::<ApiKey>(c, stored("early", json!({}))).await;
    let ak = wait(
        apikeys.clone(),
        "early",
        reason_is("Ready", "StoreNotFound"),
    )
    .await;
    assert_eq!(
        message(&ak, "Ready"),
        "KeyStore \"vault\" not found in namespace \"default\" (a store for every namespace is a ClusterKeyStore: set storeRef.kind: ClusterKeyStore)"
    );
    token_store(c, &bao).await;
    wait(apikeys.clone(), "early", ready).await;

    // A ClusterKeyStore reads its credentials in the operator's namespace, and serves only
    // the namespaces it selects.
    let token = bao.token_for("apikeys", POLICY).await;
    k.ok(&["create", "namespace", "apikey-operator"]).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "vault-token",
        "-n",
        "apikey-operator",
        &format!("--from-literal=token={token}"),
    ])
    .await;
    let shared = k.file(
        "shared.yaml",
        &format!(
            "apiVersion: apikey.dev/v1alpha1
kind: ClusterKeyStore
metadata: {{name: shared}}
spec:
  namespaceSelector: {{matchLabels: {{keys: allowed}}}}
  vault: {{server: \"{}\", auth: {{token: {{secretRef: {{name: vault-token, key: token}}}}}}}}
",
            bao.addr
        ),
    );
    k.ok(&["apply", "-f", &shared]).await;
    let mut cluster_wide = stored("cluster-wide", json!({}));
    cluster_wide["spec"]["storeRef"] = json!({"kind": "ClusterKeyStore", "name": "shared"});
    create::<ApiKey>(c, cluster_wide).await;
    let why = wait_reason(&apikeys, "cluster-wide", "Ready", "StoreNotFound").await;
    assert!(
        why.contains("does not serve namespace \"default\""),
        "{why}"
    );
    k.ok(&["label", "namespace", "default", "keys=allowed"])
        .await;
    request(&apikeys, "cluster-wide", "example.com/poke", "1").await;
    let ak = wait(apikeys.clone(), "cluster-wide", ready).await;
    let entry = bao
        .kv_get("secret", "apikeys/default/cluster-wide")
        .await
        .expect("stored");
    assert_eq!(entry["data"]["api-key-id"], current_id(&ak).as_str());
}

#[tokio::test]
async fn a_store_ref_change_moves_the_keys_and_cleans_the_old_entry() {
    let bao = OpenBao::start().await;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    token_store(c, &bao).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    create::<ApiKey>(c, apikey("moving", json!({"every": "1h"}), json!({}))).await;
    let key = current_id(&wait(apikeys.clone(), "moving", ready).await);
    let at = |location: &'static str| {
        move |a: Option<&ApiKey>| {
            a.and_then(|a| a.status.as_ref()?.current_key.as_ref()?.store.as_ref())
                .is_some_and(|s| s.location == location)
        }
    };

    // From the built-in store into Vault: same key, and the state Secret lets it go.
    let patch = |v: Value| kube::api::Patch::Merge(json!({"spec": {"storeRef": v}}));
    let pp = kube::api::PatchParams::default();
    apikeys
        .patch("moving", &pp, &patch(json!({"name": "vault"})))
        .await
        .unwrap();
    let ak = wait(
        apikeys.clone(),
        "moving",
        at("secret/apikeys/default/moving"),
    )
    .await;
    assert_eq!(current_id(&ak), key, "moved, not rotated");
    let entry = bao
        .kv_get("secret", "apikeys/default/moving")
        .await
        .unwrap();
    assert_eq!(entry["data"]["api-key-id"], key.as_str());
    let state = secrets.get("moving-apikey-state").await.unwrap();
    assert!(
        state.data.unwrap_or_default().is_empty(),
        "the built-in store no longer holds it"
    );
    wait_event(c, "moving", "StoreMoved").await;

    // To another path: the old entry is removed, history and all.
    apikeys
        .patch(
            "moving",
            &pp,
            &patch(json!({"name": "vault", "path": "renamed"})),
        )
        .await
        .unwrap();
    let ak = wait(
        apikeys.clone(),
        "moving",
        at("secret/apikeys/default/renamed"),
    )
    .await;
    assert_eq!(current_id(&ak), key);
    let entry = bao
        .kv_get("secret", "apikeys/default/renamed")
        .await
        .unwrap();
    assert_eq!(entry["data"]["api-key-id"], key.as_str());
    assert!(
        bao.kv_metadata("secret", "apikeys/default/moving")
            .await
            .is_none()
    );
    let in_secret = secrets.get("moving").await.unwrap();
    assert_eq!(
        data(&in_secret, "api-key-id").as_deref(),
        Some(key.as_str())
    );
}

#[tokio::test]
async fn an_entry_left_without_status_is_continued_with_its_pending_key_promoted() {
    let bao = OpenBao::start().await;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    token_store(c, &bao).await;
    // What a rotation cut short leaves when its ApiKey's status is lost: a current key
    // and a pending one, owned by an ApiKey of this name whose uid no longer exists.
    let path = "apikeys/default/orphan";
    bao.ok(&[
        "kv",
        "put",
        "-mount=secret",
        path,
        "api-key=sk_test_current",
        "api-key-id=gen-current",
        "api-key-pending=sk_test_pending",
        "api-key-id-pending=gen-pending",
    ])
    .await;
    bao.ok(&[
        "kv",
        "metadata",
        "put",
        "-mount=secret",
        "-custom-metadata=apikey.dev/owner=default/orphan",
        "-custom-metadata=apikey.dev/uid=gone",
        path,
    ])
    .await;
    create::<ApiKey>(c, stored("orphan", json!({}))).await;
    wait_event(c, "orphan", "Adopted").await;
    let events = events(c, "default", "orphan").await;
    let adopted = events.iter().find(|(r, _)| r == "Adopted").unwrap();
    assert_eq!(
        adopted.1,
        format!("continuing with key gen-pending found in the store (secret/{path})")
    );
    // Promoted over the current key, which overlaps as the previous one.
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let ak = wait(apikeys, "orphan", |a: Option<&ApiKey>| {
        a.is_some_and(|a| {
            a.status
                .as_ref()
                .and_then(|s| s.current_key.as_ref())
                .is_some_and(|k| k.id == "gen-pending")
                && previous_id(a).as_deref() == Some("gen-current")
        })
    })
    .await;
    let entry = bao.kv_get("secret", path).await.unwrap();
    assert_eq!(entry["data"]["api-key-id"], "gen-pending");
    assert_eq!(entry["data"]["api-key-id-previous"], "gen-current");
    let meta = bao.kv_metadata("secret", path).await.unwrap();
    assert_eq!(
        meta["custom_metadata"]["apikey.dev/uid"],
        ak.metadata.uid.clone().unwrap().as_str()
    );
}

#[tokio::test]
async fn the_example_applies_as_its_header_says() {
    let bao = OpenBao::start().await;
    let op = operator().await;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vault");
    let token = bao.token_for("apikeys", POLICY).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "vault-token",
        &format!("--from-literal=token={token}"),
    ])
    .await;
    for file in ["keystore.yaml", "apikey.yaml"] {
        let manifest = std::fs::read_to_string(dir.join(file)).unwrap();
        // Only the server address differs from the example: this OpenBao's port.
        let manifest = manifest.replace("http://127.0.0.1:8200", &bao.addr);
        k.ok(&["apply", "-f", &k.file(file, &manifest)]).await;
    }
    let apikeys: Api<ApiKey> = Api::default_namespaced(op.t.client.clone());
    let ak = wait(apikeys, "billing", ready).await;
    let entry = bao
        .kv_get("secret", "apikeys/default/billing")
        .await
        .expect("stored");
    assert_eq!(entry["data"]["api-key-id"], current_id(&ak).as_str());
}
