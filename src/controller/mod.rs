//! The ApiKey controller: `rotation::decide` is the functional core, `reconcile` the
//! shell that observes and acts, and `run` wires the watches.

pub mod clock;
mod consumers;
mod credentials;
pub mod error;
pub mod events;
#[cfg(feature = "failpoints")]
pub mod failpoints;
mod finalizers;
mod held;
mod index;
mod instrumented;
mod issuers;
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
mod templates;

use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::apikey::{ApiKey, ConsumerKind, IssuerKind, StoreKind};
use crate::api::store::{ClusterKeyStore, KeyStore};
use crate::telemetry::server::Readiness;
use crate::telemetry::{Leadership, Metrics};
use events::EventRecorder;
use reconcile::{Context, error_policy, reconcile};

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// At most this many ApiKeys roll out their consumers at the same time.
    pub max_concurrent_rollouts: usize,
    /// At most this many ApiKeys reconciled at once, per watched namespace (0: no limit).
    pub concurrency: u16,
    /// Which ApiKeys this operator acts on.
    pub scope: Scope,
    /// What "now" is (tests move it forward).
    pub clock: Arc<clock::Clock>,
    /// The operator's namespace: where a ClusterKeyStore's credentials are read.
    pub namespace: String,
    /// The operator's ServiceAccount, which a ClusterKeyStore's Kubernetes auth presents
    /// unless it names another.
    pub service_account: String,
    pub metrics: Arc<Metrics>,
    /// Cleared when this replica loses leadership: no issuer or store call starts after.
    pub leadership: Arc<Leadership>,
    /// Set once every ApiKey cache has synced (`/readyz`).
    pub readiness: Arc<Readiness>,
    /// Tests only: holds each reconcile after each step but waits (the fault matrix).
    #[cfg(feature = "failpoints")]
    pub after_step: Option<failpoints::AfterStep>,
}

impl Default for Settings {
    fn default() -> Self {
        let clock = Arc::<clock::Clock>::default();
        Settings {
            max_concurrent_rollouts: 5,
            concurrency: 0,
            scope: Scope::default(),
            metrics: Arc::new(Metrics::new(clock.clone())),
            clock,
            namespace: "apikey-operator".into(),
            service_account: "apikey-operator".into(),
            leadership: Arc::default(),
            readiness: Arc::default(),
            #[cfg(feature = "failpoints")]
            after_step: None,
        }
    }
}

/// Which ApiKeys an operator acts on: those in `namespaces` (every namespace when empty)
/// that match `selector` (every ApiKey when `None`), so installs can shard a cluster.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
}

impl Scope {
    /// Each watched namespace, or `None` for all of them.
    pub fn namespaces(&self) -> Vec<Option<&str>> {
        if self.namespaces.is_empty() {
            return vec![None];
        }
        self.namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    }

    /// One API per watched namespace, or one over all of them.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        self.namespaces()
            .into_iter()
            .map(|ns| scoped_api(client, ns))
            .collect()
    }
}

/// Runs the controller until its task is dropped.
pub async fn run(client: Client, settings: Settings) {
    run_until(client, settings, std::future::pending()).await
}

/// Runs the controller until `stop` completes (SIGTERM, a lost lease): each ApiKey being
/// reconciled finishes its step first.
pub async fn run_until(
    client: Client,
    settings: Settings,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let (recorder, writing_events) = EventRecorder::new(
        client.clone(),
        "apikey-operator",
        std::env::var("POD_NAME").ok(),
        settings.metrics.clone(),
    );
    let ctx = Arc::new(Context::new(client.clone(), recorder, &settings));
    let stop = stop.boxed().shared();
    let controllers: Vec<_> = settings
        .scope
        .namespaces()
        .into_iter()
        .map(|ns| controller(ns, &client, &settings, ctx.clone(), stop.clone()))
        .collect();
    let caches: Vec<_> = controllers.iter().map(|(c, _)| c.clone()).collect();
    let readiness = settings.readiness.clone();
    let synced = async move {
        for cache in caches {
            if cache.wait_until_ready().await.is_err() {
                return;
            }
        }
        readiness.set(true);
    };
    let providers = providers::run(ctx.clone(), settings.scope.clone());
    let controllers = futures::future::join_all(controllers.into_iter().map(|(_, run)| run));
    // The provider watches never end by themselves: they stop with the controllers. The
    // events are written beside them, in this task, so a crash loses what is queued as
    // it would in a process.
    let mut writing_events = Box::pin(writing_events);
    let controlling = futures::future::select(
        Box::pin(async move {
            futures::join!(controllers, synced);
        }),
        Box::pin(providers),
    );
    futures::future::select(controlling, writing_events.as_mut()).await;
    // Stopped (SIGTERM, a lost lease): what the last steps reported is written first.
    let flushed = tokio::time::timeout(EVENTS_ON_STOP, ctx.recorder.flush());
    futures::future::select(Box::pin(flushed), writing_events).await;
}

/// How long a stopping operator spends writing the events still queued.
const EVENTS_ON_STOP: std::time::Duration = std::time::Duration::from_secs(5);

type Stop = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// The ApiKey controller over one namespace (or all), with its cache.
fn controller(
    namespace: Option<&str>,
    client: &Client,
    settings: &Settings,
    ctx: Arc<Context>,
    stop: Stop,
) -> (
    kube::runtime::reflector::Store<ApiKey>,
    impl Future<Output = ()> + Send + 'static,
) {
    let config = match &settings.scope.selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    // The cache holds every ApiKey: without their managedFields (nothing reads them), it
    // holds less.
    let (cache, writer) = kube::runtime::reflector::store();
    let secret_index = index::Index::new(index::secret_names);
    let consumer_index = index::Index::new(index::consumer_names);
    let index_writers = (secret_index.clone(), consumer_index.clone());
    let apikeys = watcher(scoped_api::<ApiKey>(client, namespace), config)
        .default_backoff()
        .modify(|ak| ak.managed_fields_mut().clear())
        .reflect(writer)
        .inspect_ok(move |event| {
            index_writers.0.apply(event);
            index_writers.1.apply(event);
        })
        .touched_objects()
        .try_filter({
            let ctx = ctx.clone();
            move |ak| futures::future::ready(ctx.wakes(ak))
        });
    let controller = Controller::for_stream(apikeys, cache.clone()).with_config(
        kube::runtime::controller::Config::default().concurrency(settings.concurrency),
    );
    let issuer_cache = cache.clone();
    let cluster_issuer_cache = cache.clone();
    // Consumers are watched by metadata only; their status is read when reconciling.
    let (deploy, sts, ds) = (
        (cache.clone(), consumer_index.clone()),
        (cache.clone(), consumer_index.clone()),
        (cache.clone(), consumer_index),
    );
    let (store_cache, cluster_store_cache) = (cache.clone(), cache.clone());
    let ns = namespace;
    // Every Secret by metadata only, uncached (memory does not grow with the cluster's
    // Secrets): ours, and one in the way (SecretConflict) whose deletion must wake the
    // ApiKey at once.
    let run = controller
        .watches_stream(metadata_events::<Secret>(client, ns), {
            let ctx = ctx.clone();
            move |s| {
                let (ns, name) = (s.namespace(), s.name_any());
                ctx.protected
                    .changed(ns.as_deref().unwrap_or_default(), &name);
                match ctx.own_writes.is_echo(&s.metadata) {
                    true => Vec::new(),
                    false => secret_index
                        .users(ns, &name)
                        .into_iter()
                        .filter(|user| !ctx.reconciling.hold(user, &s.metadata))
                        .collect(),
                }
            }
        })
        .watches_stream(
            ctx.issuer_cache.key_issuers(scoped_api(client, ns)),
            move |issuer| {
                dependents(
                    &issuer_cache,
                    IssuerKind::KeyIssuer,
                    &issuer.name_any(),
                    issuer.namespace(),
                )
            },
        )
        .watches_stream(
            ctx.issuer_cache
                .cluster_key_issuers(Api::all(client.clone())),
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
            scoped_api::<KeyStore>(client, ns),
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
        .watches_stream(metadata_events::<Deployment>(client, ns), move |w| {
            consumers_of(&deploy.0, &deploy.1, ConsumerKind::Deployment, &w)
        })
        .watches_stream(metadata_events::<StatefulSet>(client, ns), move |w| {
            consumers_of(&sts.0, &sts.1, ConsumerKind::StatefulSet, &w)
        })
        .watches_stream(metadata_events::<DaemonSet>(client, ns), move |w| {
            consumers_of(&ds.0, &ds.1, ConsumerKind::DaemonSet, &w)
        })
        .reconcile_all_on(settings.clock.ticks())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile");
            }
        });
    (cache, run)
}

/// A namespaced kind's API in `namespace`, or over all namespaces.
fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Metadata-only changes of one kind of object.
fn metadata_events<K>(
    client: &Client,
    namespace: Option<&str>,
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
        scoped_api::<PartialObjectMeta<K>>(client, namespace),
        watcher::Config::default(),
    )
    .touched_objects()
}

/// The ApiKeys whose consumers include this workload: by name from the index, and the
/// few that choose consumers by selector, checked against its labels.
fn consumers_of<K>(
    cache: &kube::runtime::reflector::Store<ApiKey>,
    index: &index::Index,
    kind: ConsumerKind,
    w: &PartialObjectMeta<K>,
) -> Vec<ObjectRef<ApiKey>>
where
    K: kube::Resource,
{
    let mut refs = index.users(w.namespace(), &index::consumer(kind, &w.name_any()));
    for r in index.users(w.namespace(), index::BY_SELECTOR) {
        let selected = cache.get(&r).is_some_and(|ak| {
            ak.spec.consumers.iter().any(|c| {
                c.kind == kind
                    && c.name.is_none()
                    && c.selector
                        .as_ref()
                        .is_some_and(|sel| shell::selector_matches(sel, w.labels()))
            })
        });
        if selected && !refs.contains(&r) {
            refs.push(r);
        }
    }
    refs
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
