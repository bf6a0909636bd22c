//! The `apikey.dev/v1alpha1` API: the contract with users' manifests.

pub mod apikey;
pub mod duration;
pub mod issuer;
pub mod limits;
pub mod store;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// What the operator reports of an issuer or a store: whether it can be used.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The provider (issuer) or backend (store) the spec configures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SHORT))]
    pub provider: Option<String>,
    /// `Ready`: whether ApiKeys can use it now, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "limits::conditions")]
    pub conditions: Vec<Condition>,
}

/// Every CRD of the API, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        apikey::ApiKey::crd(),
        issuer::KeyIssuer::crd(),
        issuer::ClusterKeyIssuer::crd(),
        store::KeyStore::crd(),
        store::ClusterKeyStore::crd(),
    ];
    for version in crds.iter_mut().flat_map(|crd| crd.spec.versions.iter_mut()) {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*schema).expect("schemas serialize");
            limits::drop_null_from_enums(&mut value);
            limits::unwrap_descriptions(&mut value);
            *schema = serde_json::from_value(value).expect("a schema stays a schema");
        }
    }
    for crd in &mut crds {
        // `helm uninstall` must never take every ApiKey (and so every key) with it.
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("helm.sh/resource-policy".into(), "keep".into());
    }
    crds
}

/// A CRD as the YAML committed under `crds/` and printed by `apikey-operator crds`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("CRDs serialize")
}
