//! Issuers and stores: whether each can be used (`status`, the READY and PROVIDER or
//! BACKEND columns), and issuers kept while keys they minted are held — a key can only be
//! revoked where it came from, so a `KeyIssuer` deleted first (as a namespace deletion
//! does) would leave a `Revoke` ApiKey unable to revoke its keys. The operator puts a
//! finalizer on an issuer when it mints there, and lifts it once no ApiKey holds a key
//! from it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::clock::Clock;
use super::credentials;
use super::error::Error;
use super::finalizers;
use super::reconcile::Context;
use super::status::set_condition;
use super::stores::{self, StoreChecks};
use crate::api::ProviderStatus;
use crate::api::apikey::{ApiKey, IssuerKind, IssuerRecord};
use crate::api::issuer::{ClusterKeyIssuer, IssuerConfig, KeyIssuer};
use crate::api::store::{ClusterKeyStore, KeyStore, StoreConfig};

pub const ISSUER_FINALIZER: &str = "apikey.dev/keys-held";

/// How often a deleting issuer looks again for ApiKeys still holding its keys.
const RECHECK: Duration = Duration::from_secs(2);

/// How often a ready store or issuer is checked again.
const STORE_RECHECK: Duration = Duration::from_secs(300);

/// Puts the finalizer on the issuer an ApiKey is about to mint at, and on its credentials
/// Secret (`credentials_namespace`: the issuer's, or the operator's for a cluster-wide
/// one); a no-op when it is there, or when the object is already being deleted.
pub async fn protect(
    client: &Client,
    record: &IssuerRecord,
    namespace: &str,
    credentials_namespace: &str,
) -> Result<(), Error> {
    let config = match record.kind {
        IssuerKind::KeyIssuer => {
            let api = Api::<KeyIssuer>::namespaced(client.clone(), namespace);
            add_finalizer(api, &record.name)
                .await?
                .map(|i| i.spec.config)
        }
        IssuerKind::ClusterKeyIssuer => {
            let api = Api::<ClusterKeyIssuer>::all(client.clone());
            add_finalizer(api, &record.name)
                .await?
                .map(|i| i.spec.config)
        }
    };
    match config {
        Some(c) => credentials::protect(client, credentials_namespace, &c).await,
        None => Ok(()),
    }
}

async fn add_finalizer<K>(api: Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let Some(issuer) = api.get_opt(name).await? else {
        return Ok(None);
    };
    if issuer.meta().deletion_timestamp.is_none()
        && !issuer.finalizers().iter().any(|f| f == ISSUER_FINALIZER)
    {
        finalizers::add(&api, &issuer, ISSUER_FINALIZER).await?;
    }
    Ok(Some(issuer))
}

/// Whether an ApiKey holds (current, previous or pending) a key minted by this issuer.
fn holds(ak: &ApiKey, kind: IssuerKind, name: &str, uid: &str, namespace: Option<&str>) -> bool {
    if namespace.is_some() && ak.namespace().as_deref() != namespace {
        return false;
    }
    let Some(s) = &ak.status else {
        return false;
    };
    let minted_here = |r: &IssuerRecord| r.kind == kind && r.name == name && r.uid == uid;
    [&s.current_key, &s.previous_key]
        .into_iter()
        .flatten()
        .any(|k| minted_here(&k.issuer))
        || s.pending_key
            .as_ref()
            .is_some_and(|p| minted_here(&p.issuer))
}

struct Guard {
    client: Client,
    /// Where ApiKeys that may hold keys from an issuer live.
    scope: super::Scope,
    clock: Arc<Clock>,
    ctx: Arc<Context>,
}

/// Reports whether each issuer and store in `scope` can be used, and lifts the finalizer
/// of deleting issuers once no ApiKey holds a key from them.
pub async fn run(ctx: Arc<Context>, scope: super::Scope) {
    let client = ctx.client.clone();
    let guard = Arc::new(Guard {
        client: client.clone(),
        scope: scope.clone(),
        clock: ctx.clock.clone(),
        ctx,
    });
    let namespaced = scope
        .apis::<KeyIssuer>(&client)
        .into_iter()
        .map(|api| {
            watch(api, guard.clone(), |i, g| async move {
                let ns = i.namespace().unwrap_or_default();
                let api = Api::namespaced(g.client.clone(), &ns);
                let ready = issuer_readiness(&g, i.as_ref(), &i.spec.config, &ns).await;
                let recheck = recheck(&ready);
                report(&g, &api, i.as_ref(), i.status.as_ref(), ready).await?;
                let released = release(
                    &g,
                    api,
                    i.as_ref(),
                    &i.spec.config,
                    IssuerKind::KeyIssuer,
                    Some(ns),
                );
                Ok(released.await?.unwrap_or(recheck))
            })
        })
        .collect::<Vec<_>>();
    let cluster = watch(
        Api::<ClusterKeyIssuer>::all(client.clone()),
        guard.clone(),
        |i, g| async move {
            let api = Api::all(g.client.clone());
            let ns = g.ctx.namespace.clone();
            let ready = issuer_readiness(&g, i.as_ref(), &i.spec.config, &ns).await;
            let recheck = recheck(&ready);
            report(&g, &api, i.as_ref(), i.status.as_ref(), ready).await?;
            let released = release(
                &g,
                api,
                i.as_ref(),
                &i.spec.config,
                IssuerKind::ClusterKeyIssuer,
                None,
            );
            Ok(released.await?.unwrap_or(recheck))
        },
    );
    let stores = scope
        .apis::<KeyStore>(&client)
        .into_iter()
        .map(|api| {
            watch(api, guard.clone(), |s, g| async move {
                let api = Api::namespaced(g.client.clone(), &s.namespace().unwrap_or_default());
                let ready = store_readiness(&g, s.as_ref(), &s.spec.config, "KeyStore").await;
                let recheck = recheck(&ready);
                report(&g, &api, s.as_ref(), s.status.as_ref(), ready).await?;
                Ok(recheck)
            })
        })
        .collect::<Vec<_>>();
    let cluster_stores = watch(
        Api::<ClusterKeyStore>::all(client.clone()),
        guard,
        |s, g| async move {
            let api = Api::all(g.client.clone());
            let ready = store_readiness(&g, s.as_ref(), &s.spec.config, "ClusterKeyStore").await;
            let recheck = recheck(&ready);
            report(&g, &api, s.as_ref(), s.status.as_ref(), ready).await?;
            Ok(recheck)
        },
    );
    futures::join!(
        futures::future::join_all(namespaced),
        cluster,
        futures::future::join_all(stores),
        cluster_stores
    );
}

/// One controller over a provider kind: reconciled on change, and again every `RECHECK`
/// after a failure.
fn watch<K, F, Fut>(api: Api<K>, guard: Arc<Guard>, reconcile: F) -> impl Future<Output = ()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default + std::fmt::Debug + Unpin,
    F: FnMut(Arc<K>, Arc<Guard>) -> Fut,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    Controller::new(api, watcher::Config::default())
        .run(reconcile, |_, _, _| Action::requeue(RECHECK), guard)
        .for_each(|_| async {})
}

/// Whether an issuer can be used: its provider, and why not if it cannot.
struct Readiness {
    provider: &'static str,
    unavailable: Option<String>,
}

/// A real check where the provider can make one (the http provider asks the API with
/// its admin token).
async fn issuer_readiness<K: Resource>(
    guard: &Guard,
    obj: &K,
    config: &IssuerConfig,
    credentials_namespace: &str,
) -> Readiness {
    let provider = if config.generate.is_some() {
        "generate"
    } else if config.http.is_some() {
        "http"
    } else {
        "awsIam"
    };
    let access = crate::issuer::Access {
        client: &guard.client,
        credentials_namespace,
        version: super::stores::version(obj),
        clients: &guard.ctx.issuers,
    };
    let checked = match crate::issuer::open(config, &access).await {
        Ok(issuer) => issuer.check().await,
        Err(e) => Err(e),
    };
    Readiness {
        provider,
        unavailable: checked.err().map(|e| e.to_string()),
    }
}

/// A real check: the operator logs in to the store with the object's settings.
async fn store_readiness<K: Resource<DynamicType = ()>>(
    guard: &Guard,
    obj: &K,
    config: &StoreConfig,
    kind: &'static str,
) -> Readiness {
    let provider = if config.vault.is_some() {
        "vault"
    } else {
        "awsSecretsManager"
    };
    let checks = StoreChecks {
        client: &guard.client,
        connections: &guard.ctx.connections,
        namespace: &guard.ctx.namespace,
        service_account: &guard.ctx.service_account,
    };
    Readiness {
        provider,
        unavailable: stores::check(&checks, obj, config, kind)
            .await
            .err()
            .map(|e| e.to_string()),
    }
}

/// Stores and issuers change outside Kubernetes (sealed, credentials revoked, a Secret
/// created): look again, sooner while one is not ready.
fn recheck(readiness: &Readiness) -> Action {
    Action::requeue(match readiness.unavailable {
        None => STORE_RECHECK,
        Some(_) => RECHECK * 15,
    })
}

/// Writes the readiness into the object's status when it changed (no write otherwise).
async fn report<K>(
    guard: &Guard,
    api: &Api<K>,
    obj: &K,
    current: Option<&ProviderStatus>,
    readiness: Readiness,
) -> Result<(), Error>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let mut status = current.cloned().unwrap_or_default();
    let generation = obj.meta().generation;
    let (ready, reason, message) = match readiness.unavailable {
        None => (
            true,
            "ProviderReady",
            format!("the {} provider is ready", readiness.provider),
        ),
        Some(why) => (false, "ProviderUnavailable", why),
    };
    status.observed_generation = generation;
    status.provider = Some(readiness.provider.to_string());
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        &message,
        generation,
        guard.clock.now(),
    );
    if current == Some(&status) {
        return Ok(());
    }
    api.patch_status(
        &obj.name_any(),
        &crate::writes::patch(),
        &Patch::Merge(serde_json::json!({"status": status})),
    )
    .await?;
    Ok(())
}

/// Lifts the finalizers of a deleting issuer (or of its credentials Secret, being deleted)
/// once no ApiKey holds keys from it; `None` when neither is being deleted.
async fn release<K>(
    guard: &Guard,
    api: Api<K>,
    issuer: &K,
    config: &IssuerConfig,
    kind: IssuerKind,
    namespace: Option<String>,
) -> Result<Option<Action>, Error>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned,
{
    let credentials_namespace = namespace
        .clone()
        .unwrap_or_else(|| guard.ctx.namespace.clone());
    let issuer_going = issuer.meta().deletion_timestamp.is_some()
        && issuer.finalizers().iter().any(|f| f == ISSUER_FINALIZER);
    if !issuer_going && !credentials::going(&guard.client, &credentials_namespace, config).await? {
        return Ok(None);
    }
    let (name, uid) = (
        issuer.name_any(),
        issuer.meta().uid.clone().unwrap_or_default(),
    );
    // A live list, not a cache: ApiKeys of other shards (other label selectors) hold
    // keys from the same issuer.
    let apis = match &namespace {
        Some(ns) => vec![Api::<ApiKey>::namespaced(guard.client.clone(), ns)],
        None => guard.scope.apis(&guard.client),
    };
    let mut held = false;
    for api in apis {
        let apikeys = api.list(&Default::default()).await?;
        if apikeys
            .iter()
            .any(|ak| holds(ak, kind, &name, &uid, namespace.as_deref()))
        {
            held = true;
            break;
        }
    }
    if held {
        return Ok(Some(Action::requeue(RECHECK)));
    }
    credentials::release(&guard.client, &credentials_namespace, config).await?;
    if issuer_going {
        finalizers::remove(&api, issuer, ISSUER_FINALIZER).await?;
    }
    Ok(Some(Action::await_change()))
}
