//! Finalizers added and removed with JSON patches guarded by a `test` of the list as read
//! (the patches `kube::runtime::finalizer` sends): a concurrent change fails the test
//! (`Error::Changed`) instead of being overwritten.

use kube::api::{Api, Patch};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::Error;

/// Adds `finalizer` to `obj` (which must not have it yet).
pub async fn add<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<K, Error>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let current = obj.finalizers();
    let ops = if current.is_empty() {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}])
    } else {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": current},
               {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}])
    };
    send(api, obj, ops).await
}

/// Removes `finalizer` from `obj`.
pub async fn remove<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<K, Error>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let current = obj.finalizers();
    let remaining: Vec<&String> = current.iter().filter(|f| *f != finalizer).collect();
    let ops = json!([{"op": "test", "path": "/metadata/finalizers", "value": current},
                     {"op": "replace", "path": "/metadata/finalizers", "value": remaining}]);
    send(api, obj, ops).await
}

async fn send<K>(api: &Api<K>, obj: &K, ops: Value) -> Result<K, Error>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("static patch");
    api.patch(
        &obj.name_any(),
        &crate::writes::patch(),
        &Patch::Json::<()>(patch),
    )
    .await
    .map_err(Error::of_guarded_patch)
}
