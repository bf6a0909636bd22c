//! The store an ApiKey's keys live in: the built-in one (no `storeRef`), or the
//! `KeyStore` / `ClusterKeyStore` its `storeRef` names, opened at this ApiKey's entry.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use secrecy::SecretString;

use super::instrumented;
use super::reconcile::Context;
use super::shell::selector_matches;
use crate::api::apikey::{ApiKey, StoreKind, StoreRecord};
use crate::api::store::{ClusterKeyStore, KeyStore as KeyStoreObject, StoreConfig};
use crate::store::kubernetes::KubernetesStore;
use crate::store::location::{self, Scope};
use crate::store::{self, Access, EntryRef, Fields, KeyStore, Owner, Slot, StoreError};

/// Which store an ApiKey's keys are in, and where: what its `storeRef` says, or what
/// status recorded for a key (`None`: the built-in store).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Placement {
    pub kind: StoreKind,
    pub name: String,
    pub path: Option<String>,
}

impl Placement {
    pub fn of_spec(ak: &ApiKey) -> Option<Placement> {
        ak.spec.store_ref.as_ref().map(|r| Placement {
            kind: r.kind,
            name: r.name.clone(),
            path: r.path.clone(),
        })
    }

    pub fn of_record(record: &StoreRecord) -> Placement {
        Placement {
            kind: if record.kind == "ClusterKeyStore" {
                StoreKind::ClusterKeyStore
            } else {
                StoreKind::KeyStore
            },
            name: record.name.clone(),
            path: record.path.clone(),
        }
    }
}

/// An opened store and the record status keeps of each key in it (`None` for the
/// built-in store).
pub(super) struct Opened {
    pub store: Box<dyn KeyStore>,
    pub record: Option<StoreRecord>,
    pub opened: bool,
}

/// The ApiKey's store at `placement`. One that cannot be opened is returned as
/// `Unopened`, which fails every step that needs it with the reason, so status says why.
pub(super) async fn open(
    ak: &ApiKey,
    ctx: &Context,
    ns: &str,
    placement: Option<&Placement>,
) -> Opened {
    let Some(r) = placement else {
        let owner = ak.controller_owner_ref(&()).expect("ApiKeys have uids");
        let store = Box::new(KubernetesStore::new(
            ctx.client.clone(),
            ns,
            &ak.name_any(),
            owner,
            ctx.own_writes.clone(),
        ));
        return Opened {
            store: instrumented::store(store, "kubernetes".into(), &ctx.metrics, &ctx.leadership),
            record: None,
            opened: true,
        };
    };
    let kind = match r.kind {
        StoreKind::KeyStore => "KeyStore",
        StoreKind::ClusterKeyStore => "ClusterKeyStore",
    };
    let opened = async {
        let (config, access, scope) = match r.kind {
            StoreKind::KeyStore => {
                let s = Api::<KeyStoreObject>::namespaced(ctx.client.clone(), ns)
                    .get_opt(&r.name)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| StoreError::NotFound(format!(
                        "KeyStore {:?} not found in namespace {ns:?} (a store for every namespace is a ClusterKeyStore: set storeRef.kind: ClusterKeyStore)",
                        r.name
                    )))?;
                let access = access(ctx, &s, kind, ns, "default");
                (s.spec.config, access, Scope::Namespaced)
            }
            StoreKind::ClusterKeyStore => {
                let s = Api::<ClusterKeyStore>::all(ctx.client.clone())
                    .get_opt(&r.name)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| StoreError::NotFound(format!(
                        "ClusterKeyStore {:?} not found (a KeyStore in this namespace needs storeRef.kind: KeyStore)",
                        r.name
                    )))?;
                if let Some(selector) = &s.spec.namespace_selector {
                    let namespace = Api::<Namespace>::all(ctx.client.clone())
                        .get(ns)
                        .await
                        .map_err(unavailable)?;
                    if !selector_matches(selector, namespace.labels()) {
                        return Err(StoreError::NotFound(format!(
                            "ClusterKeyStore {:?} does not serve namespace {ns:?} (its spec.namespaceSelector)",
                            r.name
                        )));
                    }
                }
                let access = access(ctx, &s, kind, &ctx.namespace, &ctx.service_account);
                (s.spec.config, access, Scope::Cluster)
            }
        };
        let path = location::entry_path(scope, ns, &ak.name_any(), r.path.as_deref())
            .map_err(StoreError::NotFound)?;
        let entry = EntryRef {
            path,
            owner: Owner {
                namespace: ns.into(),
                name: ak.name_any(),
                uid: ak.uid().unwrap_or_default(),
            },
            fields: Fields::of(&ak.spec.secret),
        };
        store::open(&config, access, entry, &ctx.connections).await
    }
    .await;
    match opened {
        Ok(store) => {
            let label = match r.kind {
                StoreKind::KeyStore => format!("KeyStore/{ns}/{}", r.name),
                StoreKind::ClusterKeyStore => format!("ClusterKeyStore/{}", r.name),
            };
            Opened {
                record: Some(StoreRecord {
                    kind: kind.into(),
                    name: r.name.clone(),
                    location: store.location(),
                    path: r.path.clone(),
                }),
                store: instrumented::store(store, label, &ctx.metrics, &ctx.leadership),
                opened: true,
            }
        }
        Err(e) => Opened {
            store: Box::new(Unopened(e)),
            record: None,
            opened: false,
        },
    }
}

/// Whether `config` is usable: a login and a token lookup (a KeyStore's Ready).
pub(super) async fn check<K: Resource<DynamicType = ()>>(
    ctx: &StoreChecks<'_>,
    obj: &K,
    config: &StoreConfig,
    kind: &'static str,
) -> Result<(), StoreError> {
    let (namespace, service_account) = match obj.meta().namespace.as_deref() {
        Some(ns) => (ns, "default"),
        None => (ctx.namespace, ctx.service_account),
    };
    let access = Access {
        client: ctx.client,
        kind,
        name: obj.meta().name.clone().unwrap_or_default(),
        credentials_namespace: namespace,
        default_service_account: service_account,
        version: version(obj),
    };
    store::check(config, access, ctx.connections).await
}

/// What the store readiness checks need of the operator's settings.
pub(super) struct StoreChecks<'a> {
    pub client: &'a kube::Client,
    pub connections: &'a store::Connections,
    pub namespace: &'a str,
    pub service_account: &'a str,
}

fn access<'a, K: Resource<DynamicType = ()>>(
    ctx: &'a Context,
    obj: &K,
    kind: &'static str,
    credentials_namespace: &'a str,
    default_service_account: &'a str,
) -> Access<'a> {
    Access {
        client: &ctx.client,
        kind,
        name: obj.meta().name.clone().unwrap_or_default(),
        credentials_namespace,
        default_service_account,
        version: version(obj),
    }
}

/// A store or issuer object's identity and settings generation: a client per version.
pub(super) fn version<K: Resource>(obj: &K) -> String {
    format!(
        "{}@{}",
        obj.meta().uid.as_deref().unwrap_or_default(),
        obj.meta().generation.unwrap_or_default()
    )
}

fn unavailable(e: kube::Error) -> StoreError {
    StoreError::Unavailable(format!("reading the store object: {e}"))
}

/// A store that could not be opened. Steps that need keys fail with why; cleanup of a
/// store that does not exist (or does not serve this namespace) has nothing to do, so
/// deletion is not held up by it.
struct Unopened(StoreError);

impl Unopened {
    fn cleanup<T: Default + Send + 'static>(&self) -> BoxFuture<'static, Result<T, StoreError>> {
        let result = match &self.0 {
            StoreError::NotFound(_) => Ok(T::default()),
            other => Err(other.clone()),
        };
        async move { result }.boxed()
    }

    fn fail<T: Send + 'static>(&self) -> BoxFuture<'static, Result<T, StoreError>> {
        let e = self.0.clone();
        async move { Err(e) }.boxed()
    }
}

impl KeyStore for Unopened {
    fn put<'a>(
        &'a self,
        _: &'a str,
        _: &'a SecretString,
        _: Slot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.fail()
    }
    fn promote<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.fail()
    }
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>> {
        self.fail()
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.cleanup()
    }
    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.cleanup()
    }
    /// Fails, so an ApiKey without keys reports its store before minting any.
    fn held(&self) -> BoxFuture<'_, Result<Option<store::Held>, StoreError>> {
        self.fail()
    }
    fn release(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.cleanup()
    }
    fn purge(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.cleanup()
    }
    fn location(&self) -> String {
        String::new()
    }
}
