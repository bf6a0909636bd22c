//! The ApiKey controller: `rotation::decide` is the functional core, `reconcile` the
//! shell that observes and acts, and `run` wires the watches.

pub mod clock;
mod consumers;
mod credentials;
pub mod error;
pub mod events;
mod finalizers;
mod observe;
pub mod providers;
pub mod reconcile;
pub mod rotation;
pub mod schedule;
pub mod secret;
mod shell;
mod status;
mod steps;
mod stores;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::apikey::{ApiKey, ConsumerKind, IssuerKind, StoreKind};
use crate::api::issuer::{ClusterKeyIssuer, KeyIssuer};
use crate::api::store::{ClusterKeyStore, KeyStore};
use events::EventRecorder;
use reconcile::{Context, error_policy, reconcile};

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// At most this many ApiKeys roll out their consumers at the same time.
    pub max_concurrent_rollouts: usize,
    /// What "now" is (tests move it forward).
    pub clock: Arc<clock::Clock>,
    /// The operator's namespace: where a ClusterKeyStore's credentials are read.
    pub namespace: String,
    /// The operator's ServiceAccount, which a ClusterKeyStore's Kubernetes auth presents
    /// unless it names another.
    pub service_account: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrent_rollouts: 5,
            clock: Arc::default(),
            namespace: "apikey-operator".into(),
            service_account: "apikey-operator".into(),
        }
    }
}

/// Runs the controller until the process is told to stop.
pub async fn run(client: Client, settings: Settings) {
    let recorder = EventRecorder::new(
        client.clone(),
        "apikey-operator",
        std::env::var("POD_NAME").ok(),
    );
    let ticks = settings.clock.ticks();
    let ctx = Arc::new(Context::new(client.clone(), recorder, &settings));
    let apikeys: Api<ApiKey> = Api::all(client.clone());
    let controller = Controller::new(apikeys, watcher::Config::default());
    let cache = controller.store();
    let issuers_and_stores = providers::run(ctx.clone(), cache.clone());
    let issuer_cache = cache.clone();
    let cluster_issuer_cache = cache.clone();
    // Consumers are watched by metadata only; their status is read when reconciling.
    let (deploy_cache, sts_cache, ds_cache) = (cache.clone(), cache.clone(), cache.clone());
    let secret_cache = cache.clone();
    let (store_cache, cluster_store_cache) = (cache.clone(), cache.clone());
    // Every Secret by metadata only, uncached (memory does not grow with the cluster's
    // Secrets): ours, and one in the way (SecretConflict) whose deletion must wake the
    // ApiKey at once.
    let apikeys = controller
        .watches_stream(metadata_events::<Secret>(&client), move |s| {
            secret_users(&secret_cache, &s)
        })
        .watches(
            Api::<KeyIssuer>::all(client.clone()),
            watcher::Config::default(),
            move |issuer| {
                dependents(
                    &issuer_cache,
                    IssuerKind::KeyIssuer,
                    &issuer.name_any(),
                    issuer.namespace(),
                )
            },
        )
        .watches(
            Api::<ClusterKeyIssuer>::all(client.clone()),
            watcher::Config::default(),
            move |issuer| {
                dependents(
                    &cluster_issuer_cache,
                    IssuerKind::ClusterKeyIssuer,
                    &issuer.name_any(),
                    None,
                )
            },
        )
        .watches(
            Api::<KeyStore>::all(client.clone()),
            watcher::Config::default(),
            move |store| {
                store_users(
                    &store_cache,
                    StoreKind::KeyStore,
                    &store.name_any(),
                    store.namespace(),
                )
            },
        )
        .watches(
            Api::<ClusterKeyStore>::all(client.clone()),
            watcher::Config::default(),
            move |store| {
                store_users(
                    &cluster_store_cache,
                    StoreKind::ClusterKeyStore,
                    &store.name_any(),
                    None,
                )
            },
        )
        .watches_stream(metadata_events::<Deployment>(&client), move |w| {
            consumers_of(&deploy_cache, ConsumerKind::Deployment, &w)
        })
        .watches_stream(metadata_events::<StatefulSet>(&client), move |w| {
            consumers_of(&sts_cache, ConsumerKind::StatefulSet, &w)
        })
        .watches_stream(metadata_events::<DaemonSet>(&client), move |w| {
            consumers_of(&ds_cache, ConsumerKind::DaemonSet, &w)
        })
        .reconcile_all_on(ticks)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile");
            }
        });
    futures::join!(apikeys, issuers_and_stores);
}

/// Metadata-only changes of one kind of object.
fn metadata_events<K>(
    client: &Client,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(
        Api::<PartialObjectMeta<K>>::all(client.clone()),
        watcher::Config::default(),
    )
    .touched_objects()
}

/// The ApiKeys whose consumer Secret or store state Secret has this name.
fn secret_users(
    cache: &kube::runtime::reflector::Store<ApiKey>,
    s: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<ApiKey>> {
    let name = s.name_any();
    cache
        .state()
        .iter()
        .filter(|ak| ak.namespace() == s.namespace())
        .filter(|ak| {
            secret::secret_name(ak) == name
                || name == crate::store::kubernetes::state_secret_name(&ak.name_any())
        })
        .map(|ak| ObjectRef::from_obj(ak.as_ref()))
        .collect()
}

/// The ApiKeys whose consumers include this workload.
fn consumers_of<K>(
    cache: &kube::runtime::reflector::Store<ApiKey>,
    kind: ConsumerKind,
    w: &PartialObjectMeta<K>,
) -> Vec<ObjectRef<ApiKey>>
where
    K: kube::Resource,
{
    cache
        .state()
        .iter()
        .filter(|ak| ak.namespace() == w.namespace())
        .filter(|ak| {
            ak.spec.consumers.iter().any(|c| {
                c.kind == kind
                    && match (&c.name, &c.selector) {
                        (Some(n), _) => *n == w.name_any(),
                        (None, Some(sel)) => shell::selector_matches(sel, w.labels()),
                        (None, None) => false,
                    }
            })
        })
        .map(|ak| ObjectRef::from_obj(ak.as_ref()))
        .collect()
}

/// The ApiKeys that use an issuer (they reconcile when it appears or changes).
fn dependents(
    cache: &kube::runtime::reflector::Store<ApiKey>,
    kind: IssuerKind,
    name: &str,
    namespace: Option<String>,
) -> Vec<ObjectRef<ApiKey>> {
    referrers(cache, namespace, |ak| {
        ak.spec.issuer_ref.kind == kind && ak.spec.issuer_ref.name == name
    })
}

/// The ApiKeys whose `storeRef` names this store: a store created, fixed or re-checked
/// wakes them.
fn store_users(
    cache: &kube::runtime::reflector::Store<ApiKey>,
    kind: StoreKind,
    name: &str,
    namespace: Option<String>,
) -> Vec<ObjectRef<ApiKey>> {
    referrers(cache, namespace, |ak| {
        ak.spec
            .store_ref
            .as_ref()
            .is_some_and(|r| r.kind == kind && r.name == name)
    })
}

/// The cached ApiKeys in `namespace` (any, for a cluster-scoped object) that `refers` picks.
fn referrers(
    cache: &kube::runtime::reflector::Store<ApiKey>,
    namespace: Option<String>,
    refers: impl Fn(&ApiKey) -> bool,
) -> Vec<ObjectRef<ApiKey>> {
    cache
        .state()
        .iter()
        .filter(|ak| namespace.is_none() || ak.namespace() == namespace)
        .filter(|ak| refers(ak))
        .map(|ak| ObjectRef::from_obj(ak.as_ref()))
        .collect()
}
