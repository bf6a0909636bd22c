//! The `apikey.dev/v1alpha1` API: the contract with users' manifests.

pub mod apikey;
pub mod duration;
pub mod issuer;
pub mod store;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD of the API, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        apikey::ApiKey::crd(),
        issuer::KeyIssuer::crd(),
        issuer::ClusterKeyIssuer::crd(),
        store::KeyStore::crd(),
        store::ClusterKeyStore::crd(),
    ]
}

/// A CRD as the YAML committed under `crds/` and printed by `apikey-operator crds`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("CRDs serialize")
}
