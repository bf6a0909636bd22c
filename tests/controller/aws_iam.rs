//! The `awsIam` issuer on a real moto server: one IAM user per ApiKey, claimed by its
//! tag; IAM's two-key limit as the overlap; revoked keys deactivated, then deleted.
//! Read back with boto3.

use apikey_operator::api::apikey::ApiKey;
use apikey_operator::api::issuer::KeyIssuer;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use super::harness::*;
use crate::support::*;

pub(super) async fn iam_issuer(c: &Client, moto: &Moto) {
    super::aws::aws_credentials(c).await;
    create::<KeyIssuer>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer", "metadata": {"name": "iam"},
            "spec": {"awsIam": {"region": REGION, "endpointUrl": moto.endpoint,
                "credentialsSecretRef": {"name": "aws-creds"}, "deactivateFor": "2s"}}}),
    )
    .await;
}

fn iam_key(name: &str) -> Value {
    let mut ak = apikey(
        name,
        json!({"every": "1h", "overlap": "1s"}),
        json!({"secret": {"currentKeyField": "secret-access-key", "keyIdField": "access-key-id",
            "previousKeyField": "secret-access-key-previous", "previousKeyIdField": "access-key-id-previous"}}),
    );
    ak["spec"]["issuerRef"]["name"] = "iam".into();
    ak["spec"]["scopes"] = json!([]);
    ak
}

/// The user's access keys: (id, status), sorted.
async fn access_keys(moto: &Moto, user: &str) -> Vec<(String, String)> {
    let v = moto
        .boto(&format!(
            "iam = boto3.client('iam', **kw)\n\
             out(sorted([[k['AccessKeyId'], k['Status']] for k in iam.list_access_keys(UserName='{user}')['AccessKeyMetadata']]))"
        ))
        .await;
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn iam_users_hold_two_keys_at_most_and_revoked_keys_are_deactivated_then_deleted() {
    let moto = Moto::start().await;
    let op = operator().await;
    let c = &op.t.client;
    iam_issuer(c, &moto).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let user = "apikey-default-deployer";

    create::<ApiKey>(c, iam_key("deployer")).await;
    let first = current_id(&wait(apikeys.clone(), "deployer", ready).await);
    assert_eq!(
        access_keys(&moto, user).await,
        [(first.clone(), "Active".into())]
    );
    let tags = moto
        .boto(&format!(
            "out(boto3.client('iam', **kw).list_user_tags(UserName='{user}')['Tags'])"
        ))
        .await;
    assert_eq!(
        tags,
        json!([{"Key": "apikey.dev/owner", "Value": "default/deployer"}])
    );
    let secret = Api::<Secret>::default_namespaced(c.clone())
        .get("deployer")
        .await
        .unwrap();
    assert_eq!(
        data(&secret, "access-key-id").as_deref(),
        Some(first.as_str())
    );
    assert!(data(&secret, "secret-access-key").is_some());

    // Rotated and past the overlap: the old key is deactivated, not deleted yet.
    request(&apikeys, "deployer", "apikey.dev/rotate", "1").await;
    let ak = wait(apikeys.clone(), "deployer", |a: Option<&ApiKey>| {
        a.is_some_and(|a| {
            current_id(a) != first && a.status.as_ref().is_some_and(|s| s.previous_key.is_none())
        })
    })
    .await;
    let second = current_id(&ak);
    let mut expected = vec![
        (first.clone(), "Inactive".to_string()),
        (second.clone(), "Active".into()),
    ];
    expected.sort();
    assert_eq!(access_keys(&moto, user).await, expected);

    // Two keys exist (IAM's limit, the inactive one included): the next rotation waits
    // for the deactivated key to be deleted, then goes on.
    request(&apikeys, "deployer", "apikey.dev/rotate", "2").await;
    let why = wait_reason(&apikeys, "deployer", "Rotating", "IssuerUnavailable").await;
    assert!(why.contains("two access keys"), "{why}");
    let ak = wait(apikeys.clone(), "deployer", |a: Option<&ApiKey>| {
        a.is_some_and(|a| current_id(a) != second && current_id(a) != first)
    })
    .await;
    let keys = access_keys(&moto, user).await;
    assert!(
        !keys.iter().any(|(id, _)| *id == first),
        "the first key is deleted: {keys:?}"
    );
    assert!(
        keys.iter()
            .any(|(id, s)| *id == current_id(&ak) && s == "Active"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn an_iam_user_the_operator_did_not_create_is_never_used() {
    let moto = Moto::start().await;
    let op = operator().await;
    let c = &op.t.client;
    iam_issuer(c, &moto).await;
    moto.boto("boto3.client('iam', **kw).create_user(UserName='apikey-default-taken')")
        .await;
    create::<ApiKey>(c, iam_key("taken")).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let why = wait_reason(&apikeys, "taken", "Ready", "NotAllowed").await;
    assert!(why.contains("was not created by the operator"), "{why}");
    assert!(
        access_keys(&moto, "apikey-default-taken").await.is_empty(),
        "no key minted"
    );
}

#[tokio::test]
async fn a_key_minted_but_never_recorded_is_deleted_before_the_next_one() {
    let moto = Moto::start().await;
    let op = operator().await;
    let c = &op.t.client;
    iam_issuer(c, &moto).await;
    // The status write that records the minted key's id fails once: IAM has a key that
    // status never learns of (its secret is gone with the failed attempt).
    op.t.cluster.inject(
        kube_devcluster::Fault::on("update", "apikeys")
            .after(1)
            .times(1)
            .status(500),
    );
    create::<ApiKey>(c, iam_key("crashy")).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let ak = wait(apikeys, "crashy", ready).await;
    assert_eq!(
        access_keys(&moto, "apikey-default-crashy").await,
        [(current_id(&ak), "Active".to_string())],
        "the unrecorded key is gone, the recorded one is the only key"
    );
}

#[tokio::test]
async fn the_example_applies_as_its_header_says() {
    let moto = Moto::start().await;
    let op = operator().await;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    k.ok(&[
        "create",
        "secret",
        "generic",
        "aws-credentials",
        "--from-literal=AWS_ACCESS_KEY_ID=test",
        "--from-literal=AWS_SECRET_ACCESS_KEY=test",
    ])
    .await;
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aws-iam/deployer.yaml");
    // Only the endpoint differs from the example: this moto's port.
    let manifest = std::fs::read_to_string(file)
        .unwrap()
        .replace("http://127.0.0.1:5000", &moto.endpoint);
    k.ok(&["apply", "-f", &k.file("deployer.yaml", &manifest)])
        .await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(op.t.client.clone());
    let ak = wait(apikeys, "deployer", ready).await;
    let secret = Api::<Secret>::default_namespaced(op.t.client.clone())
        .get("deployer-aws")
        .await
        .unwrap();
    assert_eq!(data(&secret, "access-key-id"), Some(current_id(&ak)));
}

#[tokio::test]
async fn an_apikey_may_name_its_iam_user_but_not_take_anothers() {
    let moto = Moto::start().await;
    let op = operator().await;
    let c = &op.t.client;
    iam_issuer(c, &moto).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let mut named = iam_key("named");
    named["metadata"]["annotations"] = json!({"apikey.dev/aws-iam-user-name": "ci-deployer"});
    create::<ApiKey>(c, named).await;
    let ak = wait(apikeys.clone(), "named", ready).await;
    assert_eq!(
        access_keys(&moto, "ci-deployer").await,
        [(current_id(&ak), "Active".to_string())]
    );

    // Another ApiKey naming the same user is refused: the user is claimed.
    let mut thief = iam_key("thief");
    thief["metadata"]["annotations"] = json!({"apikey.dev/aws-iam-user-name": "ci-deployer"});
    create::<ApiKey>(c, thief).await;
    let why = wait_reason(&apikeys, "thief", "Ready", "NotAllowed").await;
    assert!(why.contains("belongs to ApiKey default/named"), "{why}");
}
