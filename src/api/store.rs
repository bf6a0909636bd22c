//! `KeyStore` (namespaced) and `ClusterKeyStore`: where key material is kept besides
//! Kubernetes — Vault/OpenBao KV v2 or AWS Secrets Manager. Exactly one backend each.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::ProviderStatus;
use super::issuer::{AwsCredentialsRef, SecretKeySelector};
use super::limits;

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoreConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// HashiCorp Vault or OpenBao, KV version 2 (see docs/stores.md).
    pub vault: Option<VaultStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// AWS Secrets Manager (see docs/stores.md).
    pub aws_secrets_manager: Option<AwsSecretsManagerStore>,
}

/// A rule of the spec (an empty spec is reported at `spec`). Counted rather than compared
/// with `!=`:
/// kube-apiserver 1.24 prices `!=` between two `has()` results as unbounded and refuses it.
const EXACTLY_ONE_BACKEND: &str =
    "(has(self.vault) ? 1 : 0) + (has(self.awsSecretsManager) ? 1 : 0) == 1";
const BACKENDS: &str = "set exactly one of spec.vault or spec.awsSecretsManager (vault: HashiCorp Vault or OpenBao KV v2; awsSecretsManager: AWS Secrets Manager)";

/// Exactly one backend.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apikey.dev",
    version = "v1alpha1",
    kind = "KeyStore",
    namespaced,
    category = "apikey-operator",
    doc = "Keeps key material for ApiKeys in its own namespace.",
    status = "ProviderStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".status.provider"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[x_kube(validation = Rule::new(EXACTLY_ONE_BACKEND).message(BACKENDS))]
pub struct KeyStoreSpec {
    #[serde(flatten)]
    pub config: StoreConfig,
}

/// Exactly one backend, and which namespaces may use it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apikey.dev",
    version = "v1alpha1",
    kind = "ClusterKeyStore",
    category = "apikey-operator",
    doc = "Keeps key material for ApiKeys in the namespaces it selects; its credentials live in the operator's namespace.",
    status = "ProviderStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".status.provider"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(EXACTLY_ONE_BACKEND).message(BACKENDS))]
pub struct ClusterKeyStoreSpec {
    #[serde(flatten)]
    pub config: StoreConfig,
    /// Namespaces whose ApiKeys may use this store (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "limits::label_selector")]
    pub namespace_selector: Option<LabelSelector>,
}

/// HashiCorp Vault or OpenBao, KV version 2.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultStore {
    /// e.g. `https://vault.example.com:8200`.
    #[schemars(length(max = limits::URL), regex(pattern = r"^https?://"))]
    pub server: String,
    /// The KV v2 mount.
    #[serde(default = "default_mount")]
    #[schemars(length(max = limits::IDENTIFIER))]
    pub mount_path: String,
    /// The folder below the mount that holds every ApiKey's entry (default `apikeys`), so
    /// the operator's entries never mix with others' at the mount's root.
    #[serde(default = "default_prefix")]
    #[schemars(length(min = 1, max = limits::IDENTIFIER), regex(pattern = PREFIX_PATTERN))]
    pub path_prefix: String,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::IDENTIFIER))]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::CA_BUNDLE))]
    /// PEM bundle to trust for the server's TLS certificate (default: system roots).
    pub ca_bundle: Option<String>,
    /// How the operator logs in: exactly one of `token`, `kubernetes` or `appRole`.
    pub auth: VaultAuth,
}

fn default_mount() -> String {
    "secret".into()
}

fn default_prefix() -> String {
    "apikeys".into()
}

/// Slash-separated segments of safe characters.
const PREFIX_PATTERN: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$";

/// How the operator logs in to Vault: exactly one method.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Counted, not `!=` (see EXACTLY_ONE_BACKEND).
#[x_kube(validation = Rule::new("(has(self.token) ? 1 : 0) + (has(self.kubernetes) ? 1 : 0) + (has(self.appRole) ? 1 : 0) == 1").message("set exactly one of auth.token, auth.kubernetes or auth.appRole"))]
#[serde(rename_all = "camelCase")]
pub struct VaultAuth {
    /// A Vault token read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<VaultTokenAuth>,
    /// Kubernetes auth with a ServiceAccount token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuth>,
    /// AppRole auth with a role id and secret id read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<VaultAppRoleAuth>,
}

/// AppRole auth: the role id and secret id are read from one Secret at every login.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultAppRoleAuth {
    #[serde(default = "default_approle_mount")]
    #[schemars(length(max = limits::IDENTIFIER))]
    /// Where the AppRole auth method is mounted (default `approle`).
    pub mount_path: String,
    #[schemars(length(max = limits::OBJECT_NAME))]
    /// The Secret holding the role id and the secret id (in the store's namespace; the
    /// operator's for a ClusterKeyStore).
    pub secret_name: String,
    #[serde(default = "default_role_id_key")]
    #[schemars(length(max = limits::SECRET_DATA_KEY))]
    /// Its field holding the role id (default `role-id`).
    pub role_id_key: String,
    #[serde(default = "default_secret_id_key")]
    #[schemars(length(max = limits::SECRET_DATA_KEY))]
    /// Its field holding the secret id (default `secret-id`).
    pub secret_id_key: String,
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_role_id_key() -> String {
    "role-id".into()
}

fn default_secret_id_key() -> String {
    "secret-id".into()
}

/// A Vault token read from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultTokenAuth {
    /// The Secret field holding the token.
    pub secret_ref: SecretKeySelector,
}

/// Kubernetes auth with a ServiceAccount token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuth {
    #[schemars(length(max = limits::IDENTIFIER))]
    /// The Vault role to log in as.
    pub role: String,
    #[serde(default = "default_kubernetes_mount")]
    #[schemars(length(max = limits::IDENTIFIER))]
    /// Where the Kubernetes auth method is mounted (default `kubernetes`).
    pub mount_path: String,
    /// The ServiceAccount whose token is presented: one in the KeyStore's namespace
    /// (default `default`), or for a ClusterKeyStore one in the operator's namespace
    /// (default: the operator's own). A namespaced store never logs in as the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::OBJECT_NAME))]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::AUDIENCES), inner(length(max = limits::IDENTIFIER)))]
    /// Audiences of the ServiceAccount token (at most 8; default: the cluster's). Match
    /// the Vault role's `audience`.
    pub audiences: Vec<String>,
}

fn default_kubernetes_mount() -> String {
    "kubernetes".into()
}

/// AWS Secrets Manager.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretsManagerStore {
    #[schemars(length(max = limits::SHORT))]
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Prepended to every secret name (default `apikeys`): the operator's secrets never
    /// mix with others'.
    #[serde(default = "default_prefix")]
    #[schemars(length(min = 1, max = limits::IDENTIFIER), regex(pattern = PREFIX_PATTERN))]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::URL))]
    /// The KMS key that encrypts the secrets (default: the account's AWS-managed key).
    pub kms_key_id: Option<String>,
    /// Override the endpoint (e.g. a local test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::URL))]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Static credentials (default: the operator's ambient AWS credentials: IRSA or EKS Pod
    /// Identity, environment, profile).
    pub credentials_secret_ref: Option<AwsCredentialsRef>,
    /// A role assumed on top of the credentials, e.g. one per team's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::IDENTIFIER))]
    pub role_arn: Option<String>,
    /// Tags put on every secret besides the operator's own `apikey.dev/*` tags (at most 40;
    /// AWS allows 50 in all).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    pub tags: BTreeMap<String, String>,
    /// Days a deleted ApiKey's secret can still be restored (7-30), or 0 to delete it at
    /// once; used by `deletionPolicy: Revoke` (default 30, as AWS).
    #[serde(default = "default_recovery_window")]
    #[schemars(range(min = 0, max = 30))]
    #[x_kube(validation = Rule::new("self == 0 || self >= 7").message("recoveryWindowDays is 0 (delete at once) or 7 to 30"))]
    pub recovery_window_days: i64,
}

fn default_recovery_window() -> i64 {
    30
}
