//! Hostile issuer answers, table-driven: an empty key, an id status cannot hold, a key
//! with a newline, a body that is not JSON or not UTF-8, a key of megabytes. Each ends in
//! `Ready=False` with a reason and a message that never quotes the key, and whatever key
//! the answer named is revoked at once — never distributed, never left valid unrecorded.

use std::sync::{Arc, Mutex};

use apikey_operator::api::apikey::ApiKey;
use apikey_operator::api::issuer::KeyIssuer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use serde_json::json;

use super::harness::*;
use crate::support::*;

/// An issuer whose create answers `answer` and that records what is revoked.
#[derive(Clone)]
struct Hostile {
    answer: Arc<(StatusCode, Vec<u8>)>,
    revoked: Arc<Mutex<Vec<String>>>,
}

async fn hostile_issuer(c: &Client, name: &str, status: StatusCode, body: Vec<u8>) -> Hostile {
    async fn answer(State(h): State<Hostile>) -> impl IntoResponse {
        let (status, body) = (*h.answer).clone();
        (status, [("content-type", "application/json")], body)
    }
    async fn revoke(State(h): State<Hostile>, Path(id): Path<String>) -> impl IntoResponse {
        h.revoked.lock().unwrap().push(id);
        axum::Json(json!({"revoked": true}))
    }
    let hostile = Hostile {
        answer: Arc::new((status, body)),
        revoked: Arc::default(),
    };
    let app = axum::Router::new()
        .route(
            "/keys",
            axum::routing::post(answer).get(|| async { axum::Json(json!({"items": []})) }),
        )
        .route(
            "/keys/{id}",
            axum::routing::delete(revoke).get(|| async { StatusCode::NOT_FOUND }),
        )
        .route(
            "/whoami",
            axum::routing::get(|| async { axum::Json(json!({"id": "x"})) }),
        )
        .with_state(hostile.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    create::<Secret>(
        c,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-admin")},
            "stringData": {"token": "admin"}}),
    )
    .await;
    create::<KeyIssuer>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer", "metadata": {"name": name},
            "spec": {"http": {"url": url, "credentialsSecretRef": {"name": format!("{name}-admin"), "key": "token"}},
                "allowedScopes": ["widgets:*"]}}),
    )
    .await;
    hostile
}

/// ApiKey and issuer name, the create answer, the Ready reason, part of its message, and
/// the id the answer named (revoked at once).
type Case<'a> = (
    &'static str,
    Vec<u8>,
    &'static str,
    &'static str,
    Option<&'a str>,
);

#[tokio::test]
async fn hostile_issuer_answers_are_refused_and_what_they_name_is_revoked() {
    let op = operator().await;
    let c = &op.t.client;
    let answer = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let long_id = "k".repeat(300);
    let huge_key = "x".repeat(2 * 1024 * 1024);
    let cases: Vec<Case<'_>> = vec![
        (
            "empty",
            answer(json!({"id": "key_1", "key": ""})),
            "IssuerRejected",
            "cannot be used (the key is empty); it was revoked",
            Some("key_1"),
        ),
        (
            "long-id",
            answer(json!({"id": long_id, "key": "sk_1"})),
            "IssuerRejected",
            "its id is 300 bytes long (at most 256)",
            Some(long_id.as_str()),
        ),
        (
            "newline",
            answer(json!({"id": "key_3", "key": "sk_3\nEVIL=1"})),
            "IssuerRejected",
            "control characters",
            Some("key_3"),
        ),
        (
            "self",
            answer(json!({"id": "sk_4", "key": "sk_4"})),
            "IssuerRejected",
            "the key is its own id",
            Some("sk_4"),
        ),
        (
            "huge",
            answer(json!({"id": "key_5", "key": huge_key})),
            "IssuerRejected",
            "the key is 2097152 bytes long (at most 4096)",
            Some("key_5"),
        ),
        (
            "not-json",
            b"<html>maintenance</html>".to_vec(),
            "IssuerUnavailable",
            "has nothing at /id (id) or /key (key)",
            None,
        ),
        (
            "not-utf8",
            vec![0xff, 0xfe, b'{', 0x80],
            "IssuerUnavailable",
            "has nothing at /id (id) or /key (key)",
            None,
        ),
    ];
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    for (name, body, reason, part, revoked) in cases {
        let issuer = hostile_issuer(c, name, StatusCode::CREATED, body).await;
        let mut ak = apikey(name, json!({"every": "1h"}), json!({}));
        ak["spec"]["issuerRef"] = json!({"name": name});
        create::<ApiKey>(c, ak).await;
        let ak = wait(apikeys.clone(), name, reason_is("Ready", reason)).await;
        let said = message(&ak, "Ready");
        assert!(said.contains(part), "{name}: {said}");
        assert!(
            !said.contains("EVIL") && !said.contains("xxxx"),
            "{name}: {said}"
        );
        assert!(
            ak.status.as_ref().unwrap().current_key.is_none(),
            "{name}: nothing distributed"
        );
        if let Some(id) = revoked {
            assert!(
                issuer.revoked.lock().unwrap().iter().any(|r| r == id),
                "{name}: the key the answer named is revoked"
            );
        }
        let secrets: Api<Secret> = Api::default_namespaced(c.clone());
        assert!(
            secrets.get_opt(name).await.unwrap().is_none(),
            "{name}: no Secret"
        );
    }
}
