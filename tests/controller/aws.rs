//! The AWS Secrets Manager store on a real moto server: staging labels at each rotation
//! step, ownership tags, native rotation refused, and both deletion policies with the
//! recovery window. Everything is read back with boto3, not through our code.

use apikey_operator::api::apikey::{ApiKey, Phase};
use apikey_operator::api::store::KeyStore;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams};
use kube_devcluster::WorkloadKind;
use serde_json::{Value, json};

use super::harness::*;
use crate::support::*;

/// A KeyStore `aws` on `moto`, with static credentials from a Secret and a role assumed
/// on top of them.
pub(super) async fn aws_store(c: &Client, moto: &Moto, extra: Value) {
    aws_credentials(c).await;
    let mut spec = json!({"region": REGION, "endpointUrl": moto.endpoint,
        "credentialsSecretRef": {"name": "aws-creds"},
        "roleArn": "arn:aws:iam::123456789012:role/apikeys",
        "tags": {"team": "widgets"}});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    create::<KeyStore>(
        c,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyStore", "metadata": {"name": "aws"},
            "spec": {"awsSecretsManager": spec}}),
    )
    .await;
}

/// The Secret `aws-creds` moto accepts, unless there is one already (a store and an
/// issuer may share it).
pub(super) async fn aws_credentials(c: &Client) {
    let creds = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}});
    let created = Api::<Secret>::default_namespaced(c.clone())
        .create(&Default::default(), &serde_json::from_value(creds).unwrap())
        .await;
    match created {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating aws-creds: {e}"),
    }
}

fn stored(name: &str, extra: Value) -> Value {
    let mut spec = json!({"storeRef": {"name": "aws"}});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    apikey(name, json!({"every": "1h", "overlap": "1m"}), spec)
}

fn phase(p: Phase) -> impl Fn(Option<&ApiKey>) -> bool {
    move |a| a.and_then(|a| a.status.as_ref()).and_then(|s| s.phase) == Some(p)
}

/// Each labelled version's labels and the key id it holds.
async fn labels(moto: &Moto, name: &str) -> Vec<(Vec<String>, String)> {
    let v = moto
        .boto(&format!(
            "d = sm.describe_secret(SecretId='{name}')\n\
             out([[stages, json.loads(sm.get_secret_value(SecretId='{name}', VersionId=v)['SecretString'])['api-key-id']]\n\
                  for v, stages in d.get('VersionIdsToStages', {{}}).items() if stages])"
        ))
        .await;
    let mut found: Vec<(Vec<String>, String)> = serde_json::from_value(v).unwrap();
    found.sort();
    found
}

fn tags(described: &Value) -> Vec<(String, String)> {
    let mut t: Vec<(String, String)> = described["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["Key"].as_str().unwrap().into(),
                t["Value"].as_str().unwrap().into(),
            )
        })
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn staging_labels_follow_the_rotation_as_native_rotation_uses_them() {
    let moto = Moto::start().await;
    let (op, clock) = operator_on_test_clock().await;
    let c = &op.t.client;
    issuer(c).await;
    aws_store(c, &moto, json!({})).await;
    deployment(c, "app").await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
    let name = "apikeys/default/widgets";

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
    // A secret's first version is AWSCURRENT whatever the request says (as on AWS).
    assert_eq!(
        labels(&moto, name).await,
        [(vec!["AWSCURRENT".into()], first.clone())]
    );
    let described = moto.describe(name).await.unwrap();
    let uid = ak.metadata.uid.clone().unwrap();
    assert_eq!(
        tags(&described),
        [
            (
                "apikey.dev/owner".to_string(),
                "default/widgets".to_string()
            ),
            ("apikey.dev/uid".into(), uid),
            ("team".into(), "widgets".into()),
        ]
    );
    let in_secret = Api::<Secret>::default_namespaced(c.clone())
        .get("widgets")
        .await
        .unwrap();
    let current = moto.value(name, "AWSCURRENT").await.unwrap();
    assert_eq!(
        current["api-key"].as_str(),
        data(&in_secret, "api-key").as_deref()
    );

    // The next key is written as AWSPENDING, and only then is AWSCURRENT moved onto it:
    // until the promotion, readers of AWSCURRENT still get the old key. That state lasts
    // between two requests, so it is read off the requests moto recorded.
    op.t.cluster
        .hold_rollout(WorkloadKind::Deployment, "default", "app");
    let before = moto.requests().len();
    request(&apikeys, "widgets", "apikey.dev/rotate", "1").await;

    // Promoted, rolling out: AWSCURRENT moved to the new key, the old one is AWSPREVIOUS.
    let ak = wait(apikeys.clone(), "widgets", phase(Phase::RollingOut)).await;
    let second = current_id(&ak);
    let rotation = moto.requests().split_off(before);
    let puts: Vec<&Value> = rotation
        .iter()
        .filter(|(op, body)| op == "PutSecretValue" && body["SecretId"] == name)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(puts.len(), 1, "one key stored: {puts:?}");
    let stored: Value = serde_json::from_str(puts[0]["SecretString"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored["api-key-id"], second,
        "the pending key was promoted, not minted again"
    );
    assert_eq!(puts[0]["VersionStages"], json!(["AWSPENDING"]));
    let moves: Vec<&Value> = rotation
        .iter()
        .filter(|(op, body)| {
            op == "UpdateSecretVersionStage" && body["VersionStage"] == "AWSCURRENT"
        })
        .map(|(_, body)| body)
        .collect();
    assert_eq!(moves.len(), 1, "AWSCURRENT moved once: {moves:?}");
    assert_eq!(moves[0]["MoveToVersionId"], puts[0]["ClientRequestToken"]);
    let position = |wanted: &Value| rotation.iter().position(|(_, body)| body == wanted);
    assert!(
        position(puts[0]) < position(moves[0]),
        "stored as AWSPENDING before it was made current"
    );
    assert_eq!(
        labels(&moto, name).await,
        [
            (vec!["AWSCURRENT".into()], second.clone()),
            (vec!["AWSPREVIOUS".into()], first.clone())
        ]
    );

    // Revoked after the overlap: the old version loses AWSPREVIOUS.
    op.t.cluster
        .release_rollout(WorkloadKind::Deployment, "default", "app");
    wait(apikeys.clone(), "widgets", phase(Phase::Overlapping)).await;
    clock.advance(std::time::Duration::from_secs(120));
    wait(apikeys.clone(), "widgets", |a: Option<&ApiKey>| {
        ready(a)
            && a.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.previous_key.is_none())
    })
    .await;
    assert_eq!(
        labels(&moto, name).await,
        [(vec!["AWSCURRENT".into()], second)]
    );
}

#[tokio::test]
async fn foreign_secrets_and_native_rotation_are_refused() {
    let moto = Moto::start().await;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    aws_store(c, &moto, json!({})).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());

    moto.boto(
        "sm.create_secret(Name='apikeys/default/taken', SecretString='{\"password\": \"theirs\"}')",
    )
    .await;
    create::<ApiKey>(c, stored("taken", json!({}))).await;
    let why = wait_reason(&apikeys, "taken", "Ready", "StoreConflict").await;
    assert!(why.contains("not created by the operator"), "{why}");
    assert_eq!(
        moto.value("apikeys/default/taken", "AWSCURRENT")
            .await
            .unwrap(),
        json!({"password": "theirs"})
    );

    // Ours by its tags, but a rotation Lambda manages it: refused, not fought over.
    moto.boto(
        "import io, zipfile\n\
         role = boto3.client('iam', **kw).create_role(RoleName='rotate', AssumeRolePolicyDocument='{}')['Role']['Arn']\n\
         code = io.BytesIO()\n\
         with zipfile.ZipFile(code, 'w') as z: z.writestr('f.py', 'def h(e, c): pass')\n\
         fn = boto3.client('lambda', **kw).create_function(FunctionName='rotate', Runtime='python3.11', Role=role, Handler='f.h', Code={'ZipFile': code.getvalue()})['FunctionArn']\n\
         sm.create_secret(Name='apikeys/default/lambda', SecretString='{}', Tags=[{'Key': 'apikey.dev/owner', 'Value': 'default/lambda'}])\n\
         sm.rotate_secret(SecretId='apikeys/default/lambda', RotationLambdaARN=fn, RotationRules={'AutomaticallyAfterDays': 30}, RotateImmediately=False)",
    )
    .await;
    create::<ApiKey>(c, stored("lambda", json!({}))).await;
    let why = wait_reason(&apikeys, "lambda", "Ready", "StoreConflict").await;
    assert!(why.contains("native rotation"), "{why}");
}

#[tokio::test]
async fn deletion_schedules_or_keeps_the_secret_and_a_recreated_apikey_takes_it_back() {
    let moto = Moto::start().await;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    aws_store(c, &moto, json!({"recoveryWindowDays": 7})).await;
    let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());

    create::<ApiKey>(c, stored("gone", json!({"deletionPolicy": "Revoke"}))).await;
    // Deleted mid-overlap: two keys to revoke, the current one among them.
    let revoked_previous = current_id(&wait(apikeys.clone(), "gone", ready).await);
    request(&apikeys, "gone", "apikey.dev/rotate", "1").await;
    let first_gone = wait(apikeys.clone(), "gone", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()?.previous_key.as_ref())
            .is_some()
    })
    .await;
    let revoked = current_id(&first_gone);
    create::<ApiKey>(c, stored("kept", json!({"deletionPolicy": "Retain"}))).await;
    let kept = wait(apikeys.clone(), "kept", ready).await;
    for name in ["gone", "kept"] {
        apikeys
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        wait_deleted(apikeys.clone(), name).await;
    }
    let gone = moto.describe("apikeys/default/gone").await.unwrap();
    assert!(
        !gone["DeletedDate"].is_null(),
        "Revoke schedules the deletion: {gone}"
    );
    // The revoked keys' versions (their ids are the request tokens) keep no label, so
    // no reader, nor a restored secret, offers them.
    for id in [&revoked, &revoked_previous] {
        let labels_of_revoked = moto
            .boto(&format!(
                "import hashlib\n\
                 d = sm.describe_secret(SecretId='apikeys/default/gone')\n\
                 out(d['VersionIdsToStages'].get(hashlib.sha256(b'{}/{id}').hexdigest(), []))",
                first_gone.metadata.uid.clone().unwrap()
            ))
            .await;
        assert_eq!(labels_of_revoked, json!([]), "{id}");
    }
    let kept_secret = moto.describe("apikeys/default/kept").await.unwrap();
    assert!(kept_secret["DeletedDate"].is_null(), "Retain keeps it");

    // Back under the same names: the scheduled deletion is cancelled, and the kept key
    // continues under the new object's uid.
    create::<ApiKey>(c, stored("gone", json!({"deletionPolicy": "Revoke"}))).await;
    let back = wait(apikeys.clone(), "gone", ready).await;
    assert_ne!(
        current_id(&back),
        revoked,
        "a revoked key is never taken back"
    );
    let gone = moto.describe("apikeys/default/gone").await.unwrap();
    assert!(gone["DeletedDate"].is_null(), "restored: {gone}");
    assert_eq!(
        moto.value("apikeys/default/gone", "AWSCURRENT")
            .await
            .unwrap()["api-key-id"],
        current_id(&back).as_str()
    );
    create::<ApiKey>(c, stored("kept", json!({"deletionPolicy": "Retain"}))).await;
    let again = wait(apikeys.clone(), "kept", ready).await;
    assert_eq!(current_id(&again), current_id(&kept));
    let described = moto.describe("apikeys/default/kept").await.unwrap();
    assert!(
        tags(&described).contains(&("apikey.dev/uid".into(), again.metadata.uid.clone().unwrap())),
        "{described}"
    );
}

#[tokio::test]
async fn the_example_applies_as_its_header_says() {
    let moto = Moto::start().await;
    let op = operator().await;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aws");
    k.ok(&[
        "create",
        "secret",
        "generic",
        "aws-credentials",
        "--from-literal=AWS_ACCESS_KEY_ID=test",
        "--from-literal=AWS_SECRET_ACCESS_KEY=test",
    ])
    .await;
    for file in ["keystore.yaml", "apikey.yaml"] {
        let manifest = std::fs::read_to_string(dir.join(file)).unwrap();
        // Only the endpoint differs from the example: this moto's port.
        let manifest = manifest.replace("http://127.0.0.1:5000", &moto.endpoint);
        k.ok(&["apply", "-f", &k.file(file, &manifest)]).await;
    }
    let apikeys: Api<ApiKey> = Api::default_namespaced(op.t.client.clone());
    let ak = wait(apikeys, "reporting", ready).await;
    let current = moto
        .value("apikeys/default/reporting", "AWSCURRENT")
        .await
        .unwrap();
    assert_eq!(current["api-key-id"], current_id(&ak).as_str());
    let described = moto.describe("apikeys/default/reporting").await.unwrap();
    assert!(tags(&described).contains(&("team".into(), "billing".into())));
}
