//! The sandbox's reference issuer ("WidgetJar") and the ClusterKeyIssuer `widgetjar`.

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use super::apply::apply;
use crate::api::issuer::ClusterKeyIssuer;

/// Starts the reference issuer with a fresh admin token, and the ClusterKeyIssuer
/// `widgetjar` that uses it (its token in a Secret in the operator's namespace).
pub async fn start(client: &kube::Client, namespace: &str) -> Result<String, String> {
    let token = random_token();
    let addr = crate::reference_issuer::ReferenceIssuer::new(&token)
        .spawn("127.0.0.1:0".parse().expect("an address"))
        .await
        .map_err(|e| format!("cannot start the reference issuer: {e}"))?;
    let url = format!("http://{addr}");
    super::apply::namespace(client, namespace).await?;
    apply(
        kube::Api::<Secret>::namespaced(client.clone(), namespace),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "widgetjar-admin"}, "stringData": {"token": token}}),
        "the reference issuer's admin Secret",
    )
    .await?;
    apply(
        kube::Api::<ClusterKeyIssuer>::all(client.clone()),
        json!({
            "apiVersion": "apikey.dev/v1alpha1", "kind": "ClusterKeyIssuer",
            "metadata": {"name": "widgetjar"},
            "spec": {"http": {"url": url, "credentialsSecretRef": {"name": "widgetjar-admin", "key": "token"}},
                "allowedScopes": ["widgets:*"]}}),
        "the ClusterKeyIssuer widgetjar",
    )
    .await?;
    Ok(url)
}

/// A random token for a sandbox server.
pub fn random_token() -> String {
    let rng = ring::rand::SystemRandom::new();
    crate::issuer::generate::random_base62(&rng, 32).unwrap_or_else(|_| "dev-admin-token".into())
}
