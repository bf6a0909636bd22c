//! What the sandbox installs: the CRDs, its own objects, and examples/quickstart, each by
//! server-side apply (re-running the sandbox converges, as `kubectl apply` would).

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const FIELD_MANAGER: &str = "apikey-operator-dev";

/// examples/quickstart, compiled in so the sandbox runs from any directory.
const QUICKSTART: [&str; 3] = [
    include_str!("../../examples/quickstart/issuer.yaml"),
    include_str!("../../examples/quickstart/apikey.yaml"),
    include_str!("../../examples/quickstart/deployment.yaml"),
];

/// Creates (or updates) the apikey.dev CRDs, as `kubectl apply -f crds/` would.
pub async fn crds(client: &Client) -> Result<(), String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &crate::writes::apply(), &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("cannot install CRD {name}: {e}"))?;
    }
    Ok(())
}

pub async fn namespace(client: &Client, name: &str) -> Result<(), String> {
    apply(
        Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        "the operator's namespace",
    )
    .await
}

/// Applies `object` through `api`; `what` names it in the error.
pub async fn apply<K>(api: Api<K>, object: Value, what: &str) -> Result<(), String>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("cannot create {what}: {e}"))
}

pub async fn quickstart(client: &Client) -> Result<(), String> {
    for file in QUICKSTART {
        let object: Value = serde_yaml::from_str(file).expect("examples/quickstart is YAML");
        let gvk = GroupVersionKind::try_from(
            &serde_json::from_value::<kube::core::TypeMeta>(object.clone())
                .expect("a typed object"),
        )
        .expect("a valid apiVersion");
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|e| format!("cannot find {}: {e}", gvk.kind))?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
        apply(api, object.clone(), &format!("the quickstart {}", gvk.kind)).await?;
    }
    Ok(())
}
