//! Waiting for every ApiKey to be Ready, reading no more of each than that.
//!
//! The wait's watch sees every write the operator makes. Decoded whole (spec, status,
//! managedFields), those objects cost this process seconds of the two cores the
//! operator is measured on; serde skips what this type does not name.

use std::borrow::Cow;
use std::collections::HashSet;

use apikey_operator::api::apikey::ApiKey;
use futures::TryStreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Deserialize;

/// An ApiKey as the wait reads it: its name, resourceVersion (the watch resumes from it)
/// and whether it is Ready.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "Wire")]
struct Readiness {
    metadata: ObjectMeta,
    ready: bool,
}

#[derive(Deserialize)]
struct Wire {
    metadata: WireMeta,
    status: Option<WireStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: String,
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct WireStatus {
    #[serde(default)]
    conditions: Vec<WireCondition>,
}

#[derive(Deserialize)]
struct WireCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

impl From<Wire> for Readiness {
    fn from(w: Wire) -> Self {
        Readiness {
            metadata: ObjectMeta {
                name: Some(w.metadata.name),
                resource_version: w.metadata.resource_version,
                ..Default::default()
            },
            ready: w.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            }),
        }
    }
}

impl Resource for Readiness {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ApiKey::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        ApiKey::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        ApiKey::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        ApiKey::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Resolves once `n` ApiKeys in `default` are Ready.
pub fn all_ready(client: Client, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Readiness> = Api::namespaced(client, "default");
        let mut ready = HashSet::new();
        let mut stream = std::pin::pin!(watcher(api, Default::default()).applied_objects());
        while let Ok(Some(ak)) = stream.try_next().await {
            if ak.ready {
                ready.insert(ak.metadata.name.unwrap_or_default());
                if ready.len() >= n {
                    return;
                }
            }
        }
    })
}
