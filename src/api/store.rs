//! `KeyStore` (namespaced) and `ClusterKeyStore`: where key material is kept besides
//! Kubernetes — Vault/OpenBao KV v2 or AWS Secrets Manager. Exactly one backend each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::issuer::{AwsCredentialsRef, SecretKeySelector};

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secrets_manager: Option<AwsSecretsManagerStore>,
}

/// A root-level rule: `self` is the whole object.
const EXACTLY_ONE_BACKEND: &str = "has(self.spec.vault) != has(self.spec.awsSecretsManager)";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apikey.dev",
    version = "v1alpha1",
    kind = "KeyStore",
    namespaced,
    category = "apikeys",
    doc = "Keeps key material for ApiKeys in its own namespace.",
    validation = Rule::new(EXACTLY_ONE_BACKEND).message("set exactly one of spec.vault or spec.awsSecretsManager"),
)]
pub struct KeyStoreSpec {
    #[serde(flatten)]
    pub config: StoreConfig,
}

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apikey.dev",
    version = "v1alpha1",
    kind = "ClusterKeyStore",
    category = "apikeys",
    doc = "Keeps key material for ApiKeys in the namespaces it selects; its credentials live in the operator's namespace.",
    validation = Rule::new(EXACTLY_ONE_BACKEND).message("set exactly one of spec.vault or spec.awsSecretsManager"),
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterKeyStoreSpec {
    #[serde(flatten)]
    pub config: StoreConfig,
    /// Namespaces whose ApiKeys may use this store (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// HashiCorp Vault or OpenBao, KV version 2.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultStore {
    /// e.g. `https://vault.example.com:8200`.
    pub server: String,
    /// The KV v2 mount.
    #[serde(default = "default_mount")]
    pub mount_path: String,
    /// Prepended to every ApiKey's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    pub auth: VaultAuth,
}

fn default_mount() -> String {
    "secret".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.token) != has(self.kubernetes)").message("set exactly one of auth.token or auth.kubernetes"))]
pub struct VaultAuth {
    /// A Vault token read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<VaultTokenAuth>,
    /// Kubernetes auth with a ServiceAccount token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuth>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultTokenAuth {
    pub secret_ref: SecretKeySelector,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuth {
    pub role: String,
    #[serde(default = "default_kubernetes_mount")]
    pub mount_path: String,
    /// The ServiceAccount whose token is presented (default: the operator's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretsManagerStore {
    pub region: String,
    /// Prepended to every secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Override the endpoint (e.g. a local test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<AwsCredentialsRef>,
}
