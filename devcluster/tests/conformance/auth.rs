//! ServiceAccount tokens, TokenReview, access reviews, RBAC enforcement and admission
//! checks for Secrets.

use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube_devcluster::Config;
use serde_json::json;

use crate::support::Kubectl;
use crate::support::*;

async fn service_account(t: &TestCluster, name: &str) -> ServiceAccount {
    t.api::<ServiceAccount>("default")
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

async fn token(t: &TestCluster, sa: &str, audiences: &[&str]) -> String {
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let resp = t
        .api::<ServiceAccount>("default")
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap();
    resp.status.unwrap().token
}

async fn client_with_token(t: &TestCluster, token: String) -> kube::Client {
    t.client_with(move |c| c.auth_info.token = Some(token.into()))
        .await
}

async fn grant_secret_reading(t: &TestCluster, sa: &str) {
    let role: Role = serde_json::from_value(json!({"metadata": {"name": "secret-reader"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}))
    .unwrap();
    t.api::<Role>("default")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "read-secrets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": "default"}]})).unwrap();
    t.api::<RoleBinding>("default")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

#[tokio::test]
async fn token_requests_are_reviewed_and_die_with_their_service_account() {
    let t = cluster().await;
    service_account(&t, "vault-auth").await;
    let too_short = t
        .api::<ServiceAccount>("default")
        .create_token_request(
            "vault-auth",
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(60),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    assert_eq!(api_error(too_short).code, 422);
    let jwt = token(&t, "vault-auth", &["vault"]).await;
    let reviews: Api<TokenReview> = Api::all(t.client.clone());
    let review = |token: &str, audiences: &[&str]| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
        },
        ..Default::default()
    };
    let ok = reviews
        .create(&PostParams::default(), &review(&jwt, &["vault"]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(ok.authenticated, Some(true));
    let user = ok.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:default:vault-auth")
    );
    assert!(
        user.groups
            .unwrap()
            .contains(&"system:serviceaccounts:default".to_string())
    );
    let wrong_audience = reviews
        .create(&PostParams::default(), &review(&jwt, &["other"]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(wrong_audience.authenticated, Some(false));
    let garbage = reviews
        .create(&PostParams::default(), &review("not.a.token", &["vault"]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(garbage.authenticated, Some(false));

    // The JWKS publishes the key the token is signed with.
    let jwks: serde_json::Value = t
        .client
        .request(http::Request::get("/openid/v1/jwks").body(vec![]).unwrap())
        .await
        .unwrap();
    let header: serde_json::Value = {
        use base64::Engine;
        let h = jwt.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(header["alg"], "ES256");

    t.api::<ServiceAccount>("default")
        .delete("vault-auth", &DeleteParams::default())
        .await
        .unwrap();
    let dead = reviews
        .create(&PostParams::default(), &review(&jwt, &["vault"]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(dead.authenticated, Some(false));
    assert!(dead.error.unwrap().contains("deleted"));
}

#[tokio::test]
async fn rbac_is_enforced_for_service_account_tokens() {
    let t = cluster_with(Config {
        token: Some("admin-token".into()),
        rbac: true,
        ..test_config()
    })
    .await;
    service_account(&t, "operator").await;
    let jwt = token(&t, "operator", &[]).await;
    let as_operator = client_with_token(&t, jwt).await;
    let secrets: Api<Secret> = Api::default_namespaced(as_operator.clone());
    let denied = api_error(secrets.list(&Default::default()).await);
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        "secrets is forbidden: User \"system:serviceaccount:default:operator\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
    as_operator
        .apiserver_version()
        .await
        .expect("discovery is open to every authenticated user");
    grant_secret_reading(&t, "operator").await;
    secrets
        .list(&Default::default())
        .await
        .expect("the RoleBinding grants list");
    let create = api_error(
        secrets
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some("x".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(create.code, 403);
    let elsewhere = api_error(
        Api::<Secret>::namespaced(as_operator, "kube-system")
            .list(&Default::default())
            .await,
    );
    assert_eq!(
        elsewhere.code, 403,
        "a RoleBinding grants only its own namespace"
    );
    let forged = client_with_token(&t, "eyJhbGciOiJub25lIn0.e30.".into()).await;
    assert_eq!(
        api_error(
            Api::<Secret>::default_namespaced(forged)
                .list(&Default::default())
                .await
        )
        .code,
        401
    );
}

#[tokio::test]
async fn subject_access_reviews_and_kubectl_auth_can_i() {
    let t = cluster().await;
    service_account(&t, "reader").await;
    let k = Kubectl::new(&t.cluster.kubeconfig());
    let sa = "--as=system:serviceaccount:default:reader";
    let before = k.run(&["auth", "can-i", "list", "secrets", sa]).await;
    assert!(
        !before.ok && before.stdout.trim() == "no",
        "{} {}",
        before.stdout,
        before.stderr
    );
    grant_secret_reading(&t, "reader").await;
    assert_eq!(
        k.ok(&["auth", "can-i", "list", "secrets", sa]).await.trim(),
        "yes"
    );
    assert_eq!(
        k.run(&["auth", "can-i", "delete", "secrets", sa])
            .await
            .stdout
            .trim(),
        "no"
    );
    assert_eq!(
        k.run(&["auth", "can-i", "list", "secrets", "-n", "kube-system", sa])
            .await
            .stdout
            .trim(),
        "no"
    );
    assert_eq!(
        k.ok(&["auth", "can-i", "delete", "secrets"]).await.trim(),
        "yes",
        "the admin may do anything"
    );

    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("system:serviceaccount:default:reader".into()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("default".into()),
                verb: Some("get".into()),
                resource: Some("secrets".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answered = Api::<SubjectAccessReview>::all(t.client.clone())
        .create(&PostParams::default(), &sar)
        .await
        .unwrap();
    let status = answered.status.unwrap();
    assert!(status.allowed);
    assert!(
        status
            .reason
            .unwrap()
            .contains("RoleBinding \"read-secrets/default\"")
    );
}

#[tokio::test]
async fn secret_keys_and_sizes_are_validated() {
    let t = cluster().await;
    let secrets: Api<Secret> = t.api("default");
    let bad_key: Secret =
        serde_json::from_value(json!({"metadata": {"name": "k"}, "stringData": {"bad key": "v"}}))
            .unwrap();
    let status = api_error(secrets.create(&PostParams::default(), &bad_key).await);
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("data[bad key]: Invalid value: \"bad key\": a valid config key"),
        "{}",
        status.message
    );
    let huge: Secret = serde_json::from_value(
        json!({"metadata": {"name": "big"}, "stringData": {"blob": "x".repeat(1024 * 1024 + 1)}}),
    )
    .unwrap();
    let status = api_error(secrets.create(&PostParams::default(), &huge).await);
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("data: Too long: must have at most 1048576 bytes"),
        "{}",
        status.message
    );
    let req = http::Request::post("/api/v1/namespaces/default/secrets")
        .header("Content-Type", "application/json")
        .body(
            serde_json::to_vec(&json!({"metadata": {"name": "b64"}, "data": {"k": "not base64!"}}))
                .unwrap(),
        )
        .unwrap();
    let status = api_error(t.client.request_text(req).await);
    assert_eq!(
        status.code, 400,
        "like kube-apiserver, undecodable data is a 400: {}",
        status.message
    );
    assert!(
        status
            .message
            .starts_with("Secret in version \"v1\" cannot be handled as a Secret"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn openbao_kubernetes_auth_logs_in_with_service_account_tokens() {
    let t = cluster_with(Config {
        rbac: true,
        ..test_config()
    })
    .await;
    let bao = crate::support::OpenBao::start().await;
    // The reviewer may create TokenReviews, as system:auth-delegator allows.
    let k = Kubectl::new(&t.cluster.kubeconfig());
    k.ok(&[
        "create",
        "serviceaccount",
        "vault-reviewer",
        "-n",
        "kube-system",
    ])
    .await;
    let rbac = k.file(
        "rbac.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: token-reviewer}
rules: [{apiGroups: [authentication.k8s.io], resources: [tokenreviews], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vault-reviewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: token-reviewer}
subjects: [{kind: ServiceAccount, name: vault-reviewer, namespace: kube-system}]
",
    );
    k.ok(&["apply", "-f", &rbac]).await;
    k.ok(&["create", "serviceaccount", "billing"]).await;
    let reviewer = k
        .ok(&[
            "create",
            "token",
            "vault-reviewer",
            "-n",
            "kube-system",
            "--duration=1h",
        ])
        .await;
    let billing = k
        .ok(&[
            "create",
            "token",
            "billing",
            "--audience=vault",
            "--duration=1h",
        ])
        .await;
    let ca = k.file("ca.pem", t.cluster.ca_pem());

    bao.ok(&["auth", "enable", "kubernetes"]).await;
    bao.ok(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host={}", t.cluster.url()),
        &format!("kubernetes_ca_cert=@{ca}"),
        &format!("token_reviewer_jwt={}", reviewer.trim()),
        "disable_local_ca_jwt=true",
    ])
    .await;
    bao.ok(&[
        "write",
        "auth/kubernetes/role/billing",
        "bound_service_account_names=billing",
        "bound_service_account_namespaces=default",
        "audience=vault",
        "policies=default",
        "ttl=10m",
    ])
    .await;

    let login = bao
        .ok(&[
            "write",
            "-format=json",
            "auth/kubernetes/login",
            "role=billing",
            &format!("jwt={}", billing.trim()),
        ])
        .await;
    let login: serde_json::Value = serde_json::from_str(&login).unwrap();
    assert_eq!(login["auth"]["metadata"]["service_account_name"], "billing");
    assert_eq!(
        login["auth"]["metadata"]["service_account_namespace"],
        "default"
    );

    let wrong_audience = k
        .ok(&[
            "create",
            "token",
            "billing",
            "--audience=other",
            "--duration=1h",
        ])
        .await;
    let refused = bao
        .cli(&[
            "write",
            "auth/kubernetes/login",
            "role=billing",
            &format!("jwt={}", wrong_audience.trim()),
        ])
        .await;
    assert!(!refused.ok, "a token for another audience must not log in");

    k.ok(&["delete", "serviceaccount", "billing"]).await;
    let dead = bao
        .cli(&[
            "write",
            "auth/kubernetes/login",
            "role=billing",
            &format!("jwt={}", billing.trim()),
        ])
        .await;
    assert!(
        !dead.ok,
        "a deleted ServiceAccount's token must not log in: {}",
        dead.stdout
    );
    assert!(
        t.cluster.requests("create", "tokenreviews") >= 2,
        "OpenBao asked the dev cluster"
    );
}

#[tokio::test]
async fn tokens_for_other_audiences_and_bad_requests_are_refused() {
    let t = cluster().await;
    service_account(&t, "app").await;
    let vault_only = token(&t, "app", &["vault"]).await;
    let client = client_with_token(&t, vault_only).await;
    let status = api_error(
        Api::<Secret>::default_namespaced(client)
            .list(&Default::default())
            .await,
    );
    assert_eq!(
        status.code, 401,
        "a token minted for Vault is no credential for the API server"
    );
    let forever = t
        .api::<ServiceAccount>("default")
        .create_token_request(
            "app",
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(i64::MAX),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    let status = api_error(forever);
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("larger than 2^32 seconds"),
        "{}",
        status.message
    );
    let req = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .header("Content-Type", "application/json")
        .body(b"[]".to_vec())
        .unwrap();
    assert_eq!(api_error(t.client.request_text(req).await).code, 400);
}
