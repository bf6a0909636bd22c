//! `spec.secret.template`: extra consumer Secret fields rendered from the key, kept in
//! step with each rotation; mistakes refused by the schema or explained in Ready.

use apikey_operator::api::apikey::ApiKey;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::harness::*;
use crate::support::*;

#[tokio::test]
async fn templated_fields_follow_each_key_and_go_when_dropped() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    let template = json!({
        ".env": "WIDGETJAR_KEY={{ key }}\n",
        "config.json": "{\"apiKey\": {{ key | tojson }}, \"id\": {{ keyId | tojson }}}",
    });
    create::<ApiKey>(
        c,
        apikey(
            "billing",
            json!({"every": "2h", "overlap": "1h"}),
            json!({"secret": {"name": "billing", "template": template}}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = op.t.api("default");
    let secrets: Api<Secret> = op.t.api("default");
    for rotation in 1..=2 {
        if rotation == 2 {
            request(&apikeys, "billing", "apikey.dev/rotate", "1").await;
        }
        let ak = wait(apikeys.clone(), "billing", |a: Option<&ApiKey>| {
            a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.rotation_count == rotation && s.pending_key.is_none())
        })
        .await;
        let id = current_id(&ak);
        let s = wait(secrets.clone(), "billing", |s: Option<&Secret>| {
            s.and_then(|s| data(s, "api-key-id")).as_deref() == Some(id.as_str())
        })
        .await;
        let key = data(&s, "api-key").unwrap();
        assert_eq!(data(&s, ".env").unwrap(), format!("WIDGETJAR_KEY={key}\n"));
        let config: serde_json::Value =
            serde_json::from_str(&data(&s, "config.json").unwrap()).unwrap();
        assert_eq!(config, json!({"apiKey": key, "id": id}));
    }

    // A field dropped from the template leaves the Secret.
    apikeys
        .patch(
            "billing",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secret": {"template": {".env": null}}}})),
        )
        .await
        .unwrap();
    let s = wait(secrets, "billing", |s: Option<&Secret>| {
        s.is_some_and(|s| data(s, ".env").is_none())
    })
    .await;
    assert!(data(&s, "config.json").is_some());
}

#[tokio::test]
async fn template_mistakes_are_refused_or_explained_and_never_quote_the_key() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    // Naming a key field would put a rendered value where the key goes: the schema says no.
    let clash = apikey(
        "clash",
        json!({"every": "1h"}),
        json!({"secret": {"template": {"api-key": "{{ key }}"}}}),
    );
    let refused = api_error(
        Api::<ApiKey>::namespaced(c.clone(), "default")
            .create(&Default::default(), &serde_json::from_value(clash).unwrap())
            .await,
    );
    assert_eq!(refused.code, 422);
    assert!(
        refused
            .message
            .contains("secret.template must not name currentKeyField"),
        "{}",
        refused.message
    );

    // A typo in a variable is not an empty key in the Secret: Ready says where it is.
    create::<ApiKey>(
        c,
        apikey(
            "typo",
            json!({"every": "1h"}),
            json!({"secret": {"template": {".env": "KEY={{ kye }}"}}}),
        ),
    )
    .await;
    let apikeys: Api<ApiKey> = op.t.api("default");
    let message = wait_reason(&apikeys, "typo", "Ready", "InvalidSpec").await;
    assert!(message.contains(r#"secret.template[".env"]"#), "{message}");
    assert!(message.contains("undefined value"), "{message}");
    let ak = apikeys.get("typo").await.unwrap();
    assert!(
        ak.status.unwrap().current_key.is_none(),
        "no key is minted for a broken Secret"
    );
}
