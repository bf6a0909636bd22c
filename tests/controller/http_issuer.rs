//! The `http` issuer against the reference issuer: keys minted and revoked where they
//! came from, and the issuer's refusals and rate limits as users see them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apikey_operator::api::apikey::ApiKey;
use apikey_operator::api::issuer::KeyIssuer;
use apikey_operator::reference_issuer::ReferenceIssuer;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::harness::*;
use crate::support::*;

const ADMIN: &str = "admin-token-for-tests";

/// A plain HTTP client for the test's own calls (reqwest here needs a crypto provider).
pub(super) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A reference issuer on a free port, and a KeyIssuer `widgetjar` that uses it.
pub(super) async fn widgetjar(c: &Client) -> (ReferenceIssuer, String) {
    let issuer = ReferenceIssuer::new(ADMIN);
    let addr = issuer
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{addr}");
    create::<Secret>(
        c,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "widgetjar-admin"},
            "stringData": {"token": ADMIN}}),
    )
    .await;
    create::<KeyIssuer>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer", "metadata": {"name": "widgetjar"},
            "spec": {"http": {"url": url, "credentialsSecretRef": {"name": "widgetjar-admin", "key": "token"}},
                "allowedScopes": ["widgets:*"]}}),
    )
    .await;
    (issuer, url)
}

pub(super) fn widget_key(name: &str, rotation: Value) -> Value {
    let mut ak = apikey(name, rotation, json!({"deletionPolicy": "Revoke"}));
    ak["spec"]["issuerRef"]["name"] = "widgetjar".into();
    ak
}

/// Rotates `name` `times` times, each until the old key is revoked at the issuer.
pub(super) async fn rotate(
    apikeys: &Api<ApiKey>,
    issuer: &ReferenceIssuer,
    name: &str,
    times: usize,
) {
    for _ in 0..times {
        let ak = apikeys.get(name).await.unwrap();
        let before = current_id(&ak);
        // A new value each time: a value already acted on asks for nothing.
        let after = ak.status.map_or(0, |s| s.rotation_count);
        request(
            apikeys,
            name,
            "apikey.dev/rotate",
            &format!("after-{after}"),
        )
        .await;
        wait(apikeys.clone(), name, |a: Option<&ApiKey>| {
            a.is_some_and(|a| {
                current_id(a) != before
                    && a.status.as_ref().is_some_and(|s| s.previous_key.is_none())
            })
        })
        .await;
        assert!(
            issuer.key(&before).unwrap().revoked,
            "the old key is revoked at the issuer"
        );
    }
}

#[tokio::test]
async fn keys_are_minted_verified_and_revoked_at_the_issuer() {
    let op = operator().await;
    let c = &op.t.client;
    let (issuer, _) = widgetjar(c).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let issuers: Api<KeyIssuer> = Api::default_namespaced(c.clone());
    let ready_issuer = |i: Option<&KeyIssuer>| {
        i.and_then(|i| i.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    };
    wait(issuers.clone(), "widgetjar", ready_issuer).await;

    create::<ApiKey>(
        c,
        widget_key("widgets", json!({"every": "1h", "overlap": "1s"})),
    )
    .await;
    let ak = wait(apikeys.clone(), "widgets", ready).await;
    let id = current_id(&ak);
    let key = issuer.key(&id).expect("minted at the issuer");
    assert_eq!(key.owner, "default/widgets");
    assert_eq!(key.scopes, ["widgets:read"]);
    assert!(
        key.last_used_at.is_some(),
        "verified with /whoami before distribution"
    );
    let secret = Api::<Secret>::default_namespaced(c.clone())
        .get("widgets")
        .await
        .unwrap();
    assert!(data(&secret, "api-key").unwrap().starts_with("sk_"));
    assert_eq!(issuer.valid_keys().len(), 1);

    rotate(&apikeys, &issuer, "widgets", 1).await;
    assert_eq!(
        issuer.valid_keys().len(),
        1,
        "exactly the current key is valid"
    );

    apikeys
        .delete("widgets", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys, "widgets").await;
    assert!(issuer.valid_keys().is_empty(), "Revoke leaves no key valid");
}

#[tokio::test]
async fn requests_per_second_keeps_every_apikey_under_the_issuers_rate_limit() {
    let op = operator().await;
    let c = &op.t.client;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    widgetjar(c).await;
    // Two issuers limited to 4 requests a second; the operator is told of one limit.
    let mut limited = Vec::new();
    for (name, paced) in [("paced", true), ("unpaced", false)] {
        let issuer = ReferenceIssuer::new(ADMIN).with_requests_per_second(4);
        let addr = issuer
            .clone()
            .spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut http = json!({"url": format!("http://{addr}"),
            "credentialsSecretRef": {"name": "widgetjar-admin", "key": "token"}});
        if paced {
            http["requestsPerSecond"] = json!(4);
        }
        create::<KeyIssuer>(
            c,
            json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer", "metadata": {"name": name},
                "spec": {"http": http, "allowedScopes": ["widgets:*"]}}),
        )
        .await;
        for n in 0..4 {
            let mut ak = widget_key(&format!("{name}-{n}"), json!({"every": "1h"}));
            ak["spec"]["issuerRef"]["name"] = name.into();
            create::<ApiKey>(c, ak).await;
        }
        limited.push((name, issuer));
    }
    for (name, issuer) in &limited {
        for n in 0..4 {
            wait(apikeys.clone(), &format!("{name}-{n}"), ready).await;
        }
        assert_eq!(
            issuer.valid_keys().len(),
            4,
            "{name}: every key minted once"
        );
    }
    let refused = |name: &str| {
        limited
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .rate_limited()
    };
    assert_eq!(refused("paced"), 0, "paced requests stay under the limit");
    // The limit is real: the same keys, unpaced, run into it (and still converge).
    assert!(refused("unpaced") > 0, "unpaced requests meet the limit");
}

#[tokio::test]
async fn refusals_rate_limits_and_bad_credentials_are_reported() {
    let op = operator().await;
    let c = &op.t.client;
    let (issuer, _) = widgetjar(c).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());

    // A 4xx: the issuer's own message, and no key until something changes.
    issuer.fail_next(400, None, 1);
    create::<ApiKey>(c, widget_key("refused", json!({"every": "1h"}))).await;
    let ak = wait(
        apikeys.clone(),
        "refused",
        reason_is("Ready", "IssuerRejected"),
    )
    .await;
    assert_eq!(
        message(&ak, "Ready"),
        "the issuer rejected the request: the issuer answered 400 injected failure"
    );
    // The refused attempt's idempotency key is never presented again.
    let ak = wait(apikeys.clone(), "refused", ready).await;
    let uid = ak.metadata.uid.unwrap();
    let presented: Vec<String> = issuer
        .presented_idempotency_keys()
        .into_iter()
        .filter(|k| k.starts_with(&uid))
        .collect();
    assert_eq!(presented, [format!("{uid}-1-1"), format!("{uid}-1-2")]);

    // (Gone first, so that its retries do not meet the next failure.)
    apikeys
        .delete("refused", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(apikeys.clone(), "refused").await;

    // 429s: every request to the issuer pauses for Retry-After, and the request is sent
    // again twice; a third 429 fails the step (retried later), then the key comes.
    issuer.fail_next(429, Some(2), 3);
    create::<ApiKey>(c, widget_key("limited", json!({"every": "1h"}))).await;
    let why = wait_reason(&apikeys, "limited", "Ready", "IssuerUnavailable").await;
    assert!(why.contains("pause for 2s"), "{why}");
    wait(apikeys.clone(), "limited", ready).await;

    // A wrong admin token: the issuer refuses it, and the KeyIssuer and ApiKey say so.
    create::<Secret>(
        c,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong-admin"},
            "stringData": {"token": "wrong"}}),
    )
    .await;
    let mut spec = serde_json::to_value(
        Api::<KeyIssuer>::default_namespaced(c.clone())
            .get("widgetjar")
            .await
            .unwrap()
            .spec,
    )
    .unwrap();
    spec["http"]["credentialsSecretRef"]["name"] = "wrong-admin".into();
    create::<KeyIssuer>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
            "metadata": {"name": "wrong"}, "spec": spec}),
    )
    .await;
    let mut ak = widget_key("wrong", json!({"every": "1h"}));
    ak["spec"]["issuerRef"]["name"] = "wrong".into();
    create::<ApiKey>(c, ak).await;
    let ak = wait(
        apikeys.clone(),
        "wrong",
        reason_is("Ready", "IssuerRejected"),
    )
    .await;
    assert_eq!(
        message(&ak, "Ready"),
        "the issuer rejected the request: the issuer answered 401 invalid admin token"
    );
    let issuers: Api<KeyIssuer> = Api::default_namespaced(c.clone());
    let unready = wait(issuers, "wrong", |i: Option<&KeyIssuer>| {
        i.and_then(|i| i.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        })
    })
    .await;
    let why = &unready.status.unwrap().conditions[0].message;
    assert!(why.contains("401 invalid admin token"), "{why}");

    // No admin token at all: the issuer object is what needs fixing, and it says so.
    let mut ak = widget_key("untokened", json!({"every": "1h"}));
    ak["spec"]["issuerRef"]["name"] = "untokened".into();
    spec["http"]["credentialsSecretRef"]["name"] = "missing-admin".into();
    create::<KeyIssuer>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
            "metadata": {"name": "untokened"}, "spec": spec}),
    )
    .await;
    create::<ApiKey>(c, ak).await;
    let ak = wait(
        apikeys,
        "untokened",
        reason_is("Ready", "IssuerMisconfigured"),
    )
    .await;
    assert_eq!(
        message(&ak, "Ready"),
        "the admin token (spec.http.credentialsSecretRef): Secret \"missing-admin\" not found in namespace \"default\""
    );
}

/// The fields `schema` requires (following one `$ref`), and the same for `items` of array
/// properties: enough to hold the reference issuer to what the OpenAPI file promises.
fn check(spec: &Value, schema: &Value, body: &Value, at: &str) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &spec["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    for field in schema["required"].as_array().into_iter().flatten() {
        let field = field.as_str().unwrap();
        assert!(body.get(field).is_some(), "{at}: no {field:?} in {body}");
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        if property["type"] == "array" {
            for item in body[name].as_array().into_iter().flatten() {
                check(spec, &property["items"], item, &format!("{at}.{name}[]"));
            }
        } else if (property.get("$ref").is_some() || property["type"] == "object")
            && !body[name].is_null()
        {
            check(spec, property, &body[name], &format!("{at}.{name}"));
        }
    }
}

#[tokio::test]
async fn the_reference_issuer_answers_as_the_openapi_file_says() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/issuer-api.openapi.yaml");
    let spec: Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let issuer = ReferenceIssuer::new(ADMIN);
    let addr = issuer.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = http_client();
    let url = |path: &str| format!("http://{addr}{path}");
    // (method, spec path, status, body) of each call; the spec must list that answer.
    let mut answers: Vec<(&str, &str, u16, Value)> = Vec::new();
    let body = json!({"name": "shop/billing", "type": "secret", "scopes": ["widgets:read"],
        "expiresAt": null, "metadata": {"owner": "shop/billing", "uid": "u1", "rotation": 1}});
    let created = http
        .post(url("/keys"))
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", "u1-1-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let created_status = created.status().as_u16();
    let created: Value = created.json().await.unwrap();
    let (id, key) = (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    answers.push(("post", "/keys", created_status, created));
    let again: Value = http
        .post(url("/keys"))
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", "u1-1-1")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["id"].as_str(), again["key"].as_str()),
        (Some(id.as_str()), Some(key.as_str())),
        "idempotent"
    );
    for (method, path, request) in [
        (
            "get",
            "/keys",
            http.get(url("/keys?owner=shop/billing")).bearer_auth(ADMIN),
        ),
        (
            "get",
            "/keys/{id}",
            http.get(url(&format!("/keys/{id}"))).bearer_auth(ADMIN),
        ),
        ("get", "/whoami", http.get(url("/whoami")).bearer_auth(&key)),
        (
            "delete",
            "/keys/{id}",
            http.delete(url(&format!("/keys/{id}"))).bearer_auth(ADMIN),
        ),
        ("get", "/whoami", http.get(url("/whoami")).bearer_auth(&key)),
        (
            "delete",
            "/keys/{id}",
            http.delete(url(&format!("/keys/{id}"))).bearer_auth(ADMIN),
        ),
        (
            "get",
            "/keys/{id}",
            http.get(url("/keys/nope")).bearer_auth(ADMIN),
        ),
        (
            "post",
            "/keys",
            http.post(url("/keys")).bearer_auth("wrong").json(&body),
        ),
    ] {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        answers.push((method, path, status, body));
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.2).collect();
    assert_eq!(statuses, [201, 200, 200, 200, 204, 401, 404, 404, 401]);
    for (method, path, status, body) in answers {
        let at = format!("{method} {path} {status}");
        let answer = &spec["paths"][path][method]["responses"][status.to_string()];
        assert!(!answer.is_null(), "{at}: not in the OpenAPI file");
        let answer = match answer["$ref"].as_str() {
            Some(r) => &spec["components"]["responses"][r.rsplit('/').next().unwrap()],
            None => answer,
        };
        if let Some(schema) = answer["content"]["application/json"].get("schema") {
            check(&spec, schema, &body, &at);
        }
    }
}

#[tokio::test]
async fn after_an_issuer_ref_change_old_keys_are_revoked_where_they_came_from() {
    let op = operator().await;
    let c = &op.t.client;
    let (old_issuer, _) = widgetjar(c).await;
    // A second WidgetJar account, with the same admin token for brevity.
    let new_issuer = ReferenceIssuer::new(ADMIN);
    let addr = new_issuer
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    create::<KeyIssuer>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer", "metadata": {"name": "widgetjar-eu"},
            "spec": {"http": {"url": format!("http://{addr}"), "credentialsSecretRef": {"name": "widgetjar-admin", "key": "token"}},
                "allowedScopes": ["widgets:*"]}}),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    create::<ApiKey>(
        c,
        widget_key("moving", json!({"every": "1h", "overlap": "1s"})),
    )
    .await;
    let old = current_id(&wait(apikeys.clone(), "moving", ready).await);

    apikeys
        .patch(
            "moving",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"issuerRef": {"name": "widgetjar-eu"}}})),
        )
        .await
        .unwrap();
    let ak = wait(apikeys.clone(), "moving", |a: Option<&ApiKey>| {
        a.is_some_and(|a| {
            current_id(a) != old && a.status.as_ref().is_some_and(|s| s.previous_key.is_none())
        })
    })
    .await;
    let new = current_id(&ak);
    assert!(
        new_issuer.key(&new).is_some_and(|k| !k.revoked),
        "minted by the new issuer"
    );
    assert!(
        old_issuer.key(&old).unwrap().revoked,
        "revoked by the issuer that minted it"
    );
    assert!(old_issuer.valid_keys().is_empty() && new_issuer.valid_keys().len() == 1);
}

#[tokio::test]
async fn a_key_minted_but_never_recorded_is_found_by_listing_and_revoked() {
    let op = operator().await;
    let c = &op.t.client;
    let (issuer, _) = widgetjar(c).await;
    // The issuer keeps no idempotency records, and the status write that records the
    // first minted key fails once: a retry mints another key, and the first is orphaned.
    issuer.forget_idempotency();
    op.t.cluster.inject(
        kube_devcluster::Fault::on("update", "apikeys")
            .after(1)
            .times(1)
            .status(500),
    );
    create::<ApiKey>(c, widget_key("crashy", json!({"every": "1h"}))).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let ak = wait(apikeys, "crashy", ready).await;
    let minted: Vec<String> = issuer.presented_idempotency_keys();
    assert_eq!(minted.len(), 2, "two keys were minted: {minted:?}");
    let valid: Vec<String> = issuer.valid_keys().into_iter().map(|k| k.id).collect();
    assert_eq!(
        valid,
        [current_id(&ak)],
        "the orphan is revoked, the recorded key is the only valid one"
    );
}

/// Calls the protected API with `key` every 100 ms until stopped: a pod that has not
/// picked up the new key.
fn keep_using(url: &str, key: String) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop: Arc<AtomicBool> = Arc::default();
    let (s, whoami) = (stop.clone(), format!("{url}/whoami"));
    let task = tokio::spawn(async move {
        let http = http_client();
        while !s.load(Ordering::Relaxed) {
            let _ = http.get(&whoami).bearer_auth(&key).send().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (stop, task)
}

#[tokio::test]
async fn a_previous_key_still_in_use_is_revoked_once_unused_or_at_max_overlap() {
    let op = operator().await;
    let c = &op.t.client;
    let (issuer, url) = widgetjar(c).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let rotation =
        json!({"every": "1h", "overlap": "1s", "revokeWhenUnusedFor": "2s", "maxOverlap": "1h"});
    create::<ApiKey>(c, widget_key("used", rotation)).await;
    let old = current_id(&wait(apikeys.clone(), "used", ready).await);
    let (stop, user) = keep_using(
        &url,
        data(&secrets.get("used").await.unwrap(), "api-key").unwrap(),
    );

    // Rotated; the old key is still called: it stays past its overlap, and status shows
    // when the issuer last saw it used.
    request(&apikeys, "used", "apikey.dev/rotate", "1").await;
    let ak = wait(apikeys.clone(), "used", |a: Option<&ApiKey>| {
        a.and_then(|a| {
            a.status
                .as_ref()?
                .previous_key
                .as_ref()?
                .last_used_at
                .as_ref()
        })
        .is_some()
    })
    .await;
    assert_eq!(ak.status.unwrap().previous_key.unwrap().id, old);
    assert!(!issuer.key(&old).unwrap().revoked, "in use: not revoked");

    // The pod stops using it: revoked once quiet for revokeWhenUnusedFor, saying why.
    stop.store(true, Ordering::Relaxed);
    user.await.unwrap();
    wait(apikeys.clone(), "used", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.previous_key.is_none())
    })
    .await;
    assert!(issuer.key(&old).unwrap().revoked);
    revoked_because(c, "used", &old, "Unused").await;

    // A key used forever goes at maxOverlap (counted from rollout completion).
    let capped =
        json!({"every": "1h", "overlap": "1s", "revokeWhenUnusedFor": "1h", "maxOverlap": "3s"});
    create::<ApiKey>(c, widget_key("forever", capped)).await;
    let old = current_id(&wait(apikeys.clone(), "forever", ready).await);
    let (stop, user) = keep_using(
        &url,
        data(&secrets.get("forever").await.unwrap(), "api-key").unwrap(),
    );
    request(&apikeys, "forever", "apikey.dev/rotate", "1").await;
    wait(apikeys.clone(), "forever", |a: Option<&ApiKey>| {
        a.is_some_and(|a| current_id(a) != old)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.previous_key.is_none())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    user.await.unwrap();
    assert!(issuer.key(&old).unwrap().revoked);
    revoked_because(c, "forever", &old, "MaxOverlapReached").await;
}

/// The Revoked event about `name` says key `old` went by `rule`.
async fn revoked_because(c: &Client, name: &str, old: &str, rule: &str) {
    wait_event(c, name, "Revoked").await;
    let revoked = events(c, "default", name).await;
    let said = format!("revoked previous key {old} ({rule})");
    assert!(
        revoked.iter().any(|(r, n)| r == "Revoked" && *n == said),
        "{revoked:?}"
    );
}

#[tokio::test]
async fn deleting_the_namespace_revokes_every_key_before_the_credentials_go() {
    let mut op = operator().await;
    let c = op.t.client.clone();
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    k.ok(&["create", "namespace", "shop"]).await;
    let issuer = ReferenceIssuer::new(ADMIN);
    let addr = issuer
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let manifest = format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: widgetjar-admin, namespace: shop}}
stringData: {{token: {ADMIN}}}
---
apiVersion: apikey.dev/v1alpha1
kind: KeyIssuer
metadata: {{name: widgetjar, namespace: shop}}
spec:
  http: {{url: \"http://{addr}\", credentialsSecretRef: {{name: widgetjar-admin, key: token}}}}
  allowedScopes: [\"widgets:*\"]
---
apiVersion: apikey.dev/v1alpha1
kind: ApiKey
metadata: {{name: billing, namespace: shop}}
spec:
  issuerRef: {{name: widgetjar}}
  scopes: [widgets:read]
  rotation: {{every: 1h}}
  deletionPolicy: Revoke
"
    );
    k.ok(&["apply", "-f", &k.file("shop.yaml", &manifest)])
        .await;
    let apikeys: Api<ApiKey> = Api::namespaced(c.clone(), "shop");
    wait(apikeys.clone(), "billing", ready).await;
    let secret = Api::<Secret>::namespaced(c.clone(), "shop")
        .get("widgetjar-admin")
        .await
        .unwrap();
    assert!(
        secret
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"apikey.dev/keys-held".to_string())
    );

    // A fresh operator (nothing cached) finds the namespace being deleted: the credentials
    // are still there to revoke with.
    op.stop().await;
    k.ok(&["delete", "namespace", "shop", "--wait=false"]).await;
    op.start();
    wait_deleted(
        Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone()),
        "shop",
    )
    .await;
    assert!(
        issuer.valid_keys().is_empty(),
        "every key revoked: {:?}",
        issuer.valid_keys().len()
    );
}

#[tokio::test]
async fn a_credentials_secret_stripped_of_its_finalizer_gets_it_back_at_the_next_mint() {
    let op = operator().await;
    let c = &op.t.client;
    let (issuer, _) = widgetjar(c).await;
    create::<ApiKey>(
        c,
        widget_key("billing", json!({"every": "1h", "overlap": "1s"})),
    )
    .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    wait(apikeys.clone(), "billing", ready).await;
    let secrets: Api<Secret> = Api::default_namespaced(c.clone());
    let protected = |s: Option<&Secret>| {
        s.is_some_and(|s| s.finalizers().iter().any(|f| f == "apikey.dev/keys-held"))
    };
    wait(secrets.clone(), "widgetjar-admin", protected).await;
    // By hand, the finalizer goes; the operator saw it there when it minted, and must not
    // go on trusting what it saw.
    let strip = json!({"metadata": {"finalizers": null}});
    secrets
        .patch(
            "widgetjar-admin",
            &PatchParams::default(),
            &Patch::Merge(&strip),
        )
        .await
        .unwrap();
    assert!(!protected(Some(
        &secrets.get("widgetjar-admin").await.unwrap()
    )));
    rotate(&apikeys, &issuer, "billing", 1).await;
    assert!(
        protected(Some(&secrets.get("widgetjar-admin").await.unwrap())),
        "the rotation's mint protected it again"
    );
}

/// What the admin-keys API has minted: (id, value, revoked), and how many DELETEs it is
/// to fail (503) before answering again.
#[derive(Default)]
struct AdminKeys {
    keys: std::sync::Mutex<Vec<(String, String, bool)>>,
    failing_deletes: std::sync::atomic::AtomicUsize,
}

type Keys = Arc<AdminKeys>;

/// A key API of another shape (see examples/http-mappings/admin-keys-api.yaml): keys are
/// `{"id", "value"}`, revoked with a DELETE that answers 200, no idempotency.
async fn admin_keys_api() -> (String, Keys) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    fn admin(h: &HeaderMap) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {ADMIN}"))
    }
    async fn create(
        State(k): State<Keys>,
        h: HeaderMap,
        axum::Json(b): axum::Json<Value>,
    ) -> (StatusCode, axum::Json<Value>) {
        if !admin(&h) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": {"message": "bad token"}})),
            );
        }
        let mut keys = k.keys.lock().unwrap();
        let (id, value) = (
            format!("key_{}", keys.len()),
            format!(
                "sk-admin-{}-{}",
                keys.len(),
                b["name"].as_str().unwrap_or("")
            ),
        );
        keys.push((id.clone(), value.clone(), false));
        (
            StatusCode::OK,
            axum::Json(
                json!({"object": "organization.admin_api_key", "id": id, "name": b["name"], "value": value}),
            ),
        )
    }
    async fn delete(
        State(k): State<Keys>,
        h: HeaderMap,
        Path(id): Path<String>,
    ) -> (StatusCode, axum::Json<Value>) {
        if k.failing_deletes
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": {"message": "try again"}})),
            );
        }
        let mut keys = k.keys.lock().unwrap();
        match keys
            .iter_mut()
            .find(|(i, _, revoked)| *i == id && !*revoked)
            .filter(|_| admin(&h))
        {
            Some(key) => {
                key.2 = true;
                (
                    StatusCode::OK,
                    axum::Json(json!({"id": id, "deleted": true})),
                )
            }
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"message": "no such key"}})),
            ),
        }
    }
    let keys: Keys = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/organization/admin_api_keys",
            axum::routing::post(create),
        )
        .route(
            "/v1/organization/admin_api_keys/{id}",
            axum::routing::delete(delete),
        )
        .with_state(keys.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, keys)
}

#[tokio::test]
async fn an_api_of_another_shape_is_used_through_the_example_mapping() {
    let op = operator().await;
    let c = &op.t.client;
    let (_, keys) = admin_keys_issuer(&op).await;
    let mut ak = apikey(
        "assistant",
        json!({"every": "1h", "overlap": "1s"}),
        json!({"scopes": []}),
    );
    ak["spec"]["issuerRef"] = json!({"kind": "ClusterKeyIssuer", "name": "admin-keys"});
    create::<ApiKey>(c, ak).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = current_id(&wait(apikeys.clone(), "assistant", ready).await);
    let secret = Api::<Secret>::default_namespaced(c.clone())
        .get("assistant")
        .await
        .unwrap();
    assert_eq!(
        data(&secret, "api-key").as_deref(),
        Some("sk-admin-0-default/assistant")
    );

    request(&apikeys, "assistant", "apikey.dev/rotate", "1").await;
    wait(apikeys.clone(), "assistant", |a: Option<&ApiKey>| {
        a.is_some_and(|a| current_id(a) != first)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.previous_key.is_none())
    })
    .await;
    let keys = keys.keys.lock().unwrap().clone();
    assert_eq!(
        keys.iter()
            .map(|(id, _, revoked)| (id.as_str(), *revoked))
            .collect::<Vec<_>>(),
        [("key_0", true), ("key_1", false)],
        "the first key revoked through the mapped DELETE"
    );
}

/// An issuer that answers a repeated request with a new key (no idempotency) while a
/// store write and then a revocation fail: every key it minted but the one kept is
/// revoked, and none is ever left valid and unrecorded.
#[tokio::test]
async fn keys_minted_twice_for_one_request_are_revoked_across_failures() {
    let op = operator().await;
    let c = &op.t.client;
    let (_, api) = admin_keys_issuer(&op).await;
    // The first store write fails, so the rotation asks again (and gets a second key);
    // the first revocation fails too, so the operator has to come back for it.
    op.t.cluster.inject(
        kube_devcluster::Fault::on("create", "secrets")
            .status(500)
            .times(1),
    );
    api.failing_deletes
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let mut ak = apikey("twice", json!({"every": "1h"}), json!({"scopes": []}));
    ak["spec"]["issuerRef"] = json!({"kind": "ClusterKeyIssuer", "name": "admin-keys"});
    create::<ApiKey>(c, ak).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let kept = current_id(&wait(apikeys, "twice", ready).await);
    let keys = api.keys.lock().unwrap().clone();
    let valid: Vec<&str> = keys
        .iter()
        .filter(|(_, _, revoked)| !revoked)
        .map(|(id, _, _)| id.as_str())
        .collect();
    assert!(keys.len() >= 2, "the issuer minted again: {keys:?}");
    assert_eq!(
        valid,
        [kept.as_str()],
        "only the key kept is valid: {keys:?}"
    );
}

/// The admin-keys API behind the ClusterKeyIssuer `admin-keys` of the example mapping.
async fn admin_keys_issuer(op: &Operator) -> (String, Keys) {
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let (url, keys) = admin_keys_api().await;
    k.ok(&["create", "namespace", "apikey-operator"]).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "admin-keys-admin",
        "-n",
        "apikey-operator",
        &format!("--from-literal=token={ADMIN}"),
    ])
    .await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/http-mappings/admin-keys-api.yaml");
    let manifest = std::fs::read_to_string(file)
        .unwrap()
        .replace("https://api.example-ai.test/v1", &url);
    k.ok(&["apply", "-f", &k.file("admin-keys.yaml", &manifest)])
        .await;
    (url, keys)
}

#[tokio::test]
async fn the_v1_api_written_out_as_a_mapping_works_as_the_default() {
    let op = operator().await;
    let c = &op.t.client;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let issuer = ReferenceIssuer::new(ADMIN);
    let addr = issuer
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    k.ok(&["create", "namespace", "apikey-operator"]).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "widgetjar-admin",
        "-n",
        "apikey-operator",
        &format!("--from-literal=token={ADMIN}"),
    ])
    .await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/http-mappings/widgetjar-explicit.yaml");
    let manifest = std::fs::read_to_string(file).unwrap().replace(
        "https://api.widgetjar.example/v1",
        &format!("http://{addr}"),
    );
    k.ok(&["apply", "-f", &k.file("explicit.yaml", &manifest)])
        .await;
    let mut ak = apikey(
        "explicit",
        json!({"every": "1h", "overlap": "1s"}),
        json!({}),
    );
    ak["spec"]["issuerRef"] = json!({"kind": "ClusterKeyIssuer", "name": "widgetjar-explicit"});
    create::<ApiKey>(c, ak).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let first = current_id(&wait(apikeys.clone(), "explicit", ready).await);
    let key = issuer.key(&first).unwrap();
    assert_eq!(
        (key.owner.as_str(), key.scopes.as_slice()),
        ("default/explicit", ["widgets:read".to_string()].as_slice())
    );
    assert!(
        key.last_used_at.is_some(),
        "verified through the mapped whoami"
    );
    rotate(&apikeys, &issuer, "explicit", 1).await;
}

#[tokio::test]
async fn workspaces_of_the_reference_issuer_see_only_their_own_keys() {
    let issuer = ReferenceIssuer::new(ADMIN).with_workspace("eu", "eu-admin");
    let addr = issuer.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = http_client();
    let url = |path: &str| format!("http://{addr}{path}");
    let body = json!({"name": "n", "type": "secret", "scopes": [], "expiresAt": null,
        "metadata": {"owner": "shop/billing", "uid": "u1", "rotation": 1}});
    let mut ids = Vec::new();
    for token in [ADMIN, "eu-admin"] {
        let created: Value = http
            .post(url("/keys"))
            .bearer_auth(token)
            .header("Idempotency-Key", "same")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    assert_ne!(
        ids[0], ids[1],
        "one Idempotency-Key, two workspaces, two keys"
    );
    let eu_reads_default = http
        .get(url(&format!("/keys/{}", ids[0])))
        .bearer_auth("eu-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(eu_reads_default.status(), 404);
    let eu_revokes_default = http
        .delete(url(&format!("/keys/{}", ids[0])))
        .bearer_auth("eu-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(eu_revokes_default.status(), 404);
    let listed: Value = http
        .get(url("/keys?owner=shop/billing"))
        .bearer_auth("eu-admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], ids[1].as_str());
}
