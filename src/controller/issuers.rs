//! The issuer objects a reconcile reads: the one the spec names (checked against what it
//! allows), and the one a key was minted by. Most steps read them from the controllers'
//! watch caches: reading each from the API server cost five GETs per new key. A step
//! that mints or revokes reads its issuer live, as does one adopting keys: which object
//! (uid) a key comes from, and whether that object is kept while the key is held, must
//! not rest on a view that may lag behind.

use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use super::error::Error;
use super::providers::{self, ISSUER_FINALIZER};
use super::shell::{Shell, selector_matches};
use crate::api::apikey::{IssuerKind, IssuerRecord};
use crate::api::issuer::{ClusterKeyIssuer, IssuerConfig, KeyIssuer};
use crate::issuer::{self, Issuer};

/// Where an issuer object is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// The watch cache, or the API server when the cache does not have it.
    Cached,
    /// The API server.
    Live,
}

/// The KeyIssuers and ClusterKeyIssuers each controller watches, as last seen.
#[derive(Default)]
pub struct IssuerCache {
    namespaced: RwLock<Vec<Store<KeyIssuer>>>,
    cluster: RwLock<Vec<Store<ClusterKeyIssuer>>>,
}

impl IssuerCache {
    /// The watch of `api`'s KeyIssuers, kept in this cache.
    pub(super) fn key_issuers(
        &self,
        api: Api<KeyIssuer>,
    ) -> impl futures::Stream<Item = Result<KeyIssuer, watcher::Error>> + Send + 'static {
        let (store, writer) = reflector::store();
        self.namespaced.write().expect("lock").push(store);
        watched(api, writer)
    }

    /// The watch of ClusterKeyIssuers, kept in this cache.
    pub(super) fn cluster_key_issuers(
        &self,
        api: Api<ClusterKeyIssuer>,
    ) -> impl futures::Stream<Item = Result<ClusterKeyIssuer, watcher::Error>> + Send + 'static
    {
        let (store, writer) = reflector::store();
        self.cluster.write().expect("lock").push(store);
        watched(api, writer)
    }

    fn key_issuer(&self, namespace: &str, name: &str) -> Option<Arc<KeyIssuer>> {
        let key = ObjectRef::new(name).within(namespace);
        let stores = self.namespaced.read().expect("lock");
        stores.iter().find_map(|s| s.get(&key))
    }

    fn cluster_key_issuer(&self, name: &str) -> Option<Arc<ClusterKeyIssuer>> {
        let key = ObjectRef::new(name);
        let stores = self.cluster.read().expect("lock");
        stores.iter().find_map(|s| s.get(&key))
    }
}

fn watched<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K: Send + Sync + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|i| i.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects()
}

/// An issuer object as a reconcile needs it.
pub(super) struct IssuerObject {
    pub config: IssuerConfig,
    pub uid: String,
    pub namespace_selector: Option<LabelSelector>,
    /// Where its credentials are: its own namespace, or the operator's.
    pub credentials_namespace: String,
    pub version: String,
    /// It carries the finalizer that keeps it while keys from it are held.
    pub protected: bool,
}

impl IssuerObject {
    fn of<K: Resource>(
        i: &K,
        config: &IssuerConfig,
        namespace_selector: Option<&LabelSelector>,
        credentials_namespace: &str,
    ) -> Self {
        IssuerObject {
            version: super::stores::version(i),
            config: config.clone(),
            uid: i.meta().uid.clone().unwrap_or_default(),
            namespace_selector: namespace_selector.cloned(),
            credentials_namespace: credentials_namespace.into(),
            protected: i
                .meta()
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == ISSUER_FINALIZER),
        }
    }
}

impl Shell<'_> {
    async fn issuer_object(
        &self,
        kind: IssuerKind,
        name: &str,
        read: Read,
    ) -> Result<IssuerObject, Error> {
        let client = self.ctx.client.clone();
        let cache = &self.ctx.issuer_cache;
        let found = match kind {
            IssuerKind::KeyIssuer => {
                let cached = || cache.key_issuer(&self.ns, name);
                let api = Api::<KeyIssuer>::namespaced(client, &self.ns);
                let i = cached_or_live(read, cached, api, name).await?;
                i.map(|i| IssuerObject::of(i.as_ref(), &i.spec.config, None, &self.ns))
            }
            IssuerKind::ClusterKeyIssuer => {
                let cached = || cache.cluster_key_issuer(name);
                let api = Api::<ClusterKeyIssuer>::all(client);
                let i = cached_or_live(read, cached, api, name).await?;
                i.map(|i| {
                    IssuerObject::of(
                        i.as_ref(),
                        &i.spec.config,
                        i.spec.namespace_selector.as_ref(),
                        &self.ctx.namespace,
                    )
                })
            }
        };
        found.ok_or_else(|| Error::IssuerNotFound {
            kind: kind_name(kind),
            name: name.into(),
            namespace: (kind == IssuerKind::KeyIssuer).then(|| self.ns.clone()),
        })
    }

    /// The issuer the spec names, checked against what it allows.
    pub(super) async fn spec_issuer(&self, read: Read) -> Result<IssuerRecord, Error> {
        Ok(self.checked_spec_issuer(read).await?.0)
    }

    /// The issuer the spec names, checked against what it allows, and its object; it is
    /// kept (finalizer) while keys from it are held.
    pub(super) async fn checked_spec_issuer(
        &self,
        read: Read,
    ) -> Result<(IssuerRecord, IssuerObject), Error> {
        let r = &self.ak.spec.issuer_ref;
        let found = self.issuer_object(r.kind, &r.name, read).await?;
        if let Some(selector) = &found.namespace_selector {
            let ns = Api::<Namespace>::all(self.ctx.client.clone())
                .get(&self.ns)
                .await?;
            if !selector_matches(selector, ns.labels()) {
                return Err(Error::NotAllowed(format!(
                    "ClusterKeyIssuer {:?} does not allow namespace {:?} (spec.namespaceSelector)",
                    r.name, self.ns
                )));
            }
        }
        let config = &found.config;
        if !config.allowed_key_types.is_empty()
            && !config.allowed_key_types.contains(&self.ak.spec.key_type)
        {
            return Err(Error::NotAllowed(format!(
                "issuer {:?} does not allow keyType {:?}",
                r.name, self.ak.spec.key_type
            )));
        }
        if !config.allowed_scopes.is_empty()
            && let Some(s) = self
                .ak
                .spec
                .scopes
                .iter()
                .find(|s| !config.allowed_scopes.iter().any(|p| glob_match(p, s)))
        {
            return Err(Error::NotAllowed(format!(
                "issuer {:?} does not allow scope {s:?} (allowedScopes: {})",
                r.name,
                config.allowed_scopes.join(", ")
            )));
        }
        let record = IssuerRecord {
            kind: r.kind,
            name: r.name.clone(),
            uid: found.uid.clone(),
        };
        let client = &self.ctx.client;
        match (found.protected, read) {
            (false, _) => {
                providers::protect(client, &record, &self.ns, &found.credentials_namespace).await?
            }
            (true, Read::Live) => {
                (self.ctx.protected)
                    .protect(client, &found.credentials_namespace, &found.config)
                    .await?
            }
            // Keys are minted (and adopted) after a live read, which protects them.
            (true, Read::Cached) => {}
        }
        Ok((record, found))
    }

    /// The issuer a key was minted by, to revoke it: the very object (by uid), never one
    /// created since under the same name.
    pub(super) async fn issuer_that_minted(
        &self,
        record: &IssuerRecord,
    ) -> Result<Box<dyn Issuer>, Error> {
        let found = self
            .issuer_object(record.kind, &record.name, Read::Live)
            .await?;
        if !record.uid.is_empty() && found.uid != record.uid {
            return Err(Error::IssuerReplaced {
                kind: kind_name(record.kind),
                name: record.name.clone(),
            });
        }
        self.open_issuer(record, found).await
    }

    /// The issuer a key was minted by (revocation goes where the key came from).
    pub(super) async fn issuer_for(
        &self,
        record: &IssuerRecord,
        read: Read,
    ) -> Result<Box<dyn Issuer>, Error> {
        let found = self.issuer_object(record.kind, &record.name, read).await?;
        self.open_issuer(record, found).await
    }

    /// A client of `found`, the object of `record`.
    pub(super) async fn open_issuer(
        &self,
        record: &IssuerRecord,
        found: IssuerObject,
    ) -> Result<Box<dyn Issuer>, Error> {
        let access = issuer::Access {
            client: &self.ctx.client,
            credentials_namespace: &found.credentials_namespace,
            version: found.version,
            clients: &self.ctx.issuers,
        };
        let label = match record.kind {
            IssuerKind::KeyIssuer => format!("KeyIssuer/{}/{}", self.ns, record.name),
            IssuerKind::ClusterKeyIssuer => format!("ClusterKeyIssuer/{}", record.name),
        };
        Ok(super::instrumented::issuer(
            issuer::open(&found.config, &access).await?,
            label,
            &self.ctx.metrics,
            &self.ctx.leadership,
        ))
    }
}

/// The cache's object when `read` allows it and the cache has it, else the API server's.
async fn cached_or_live<K>(
    read: Read,
    cached: impl FnOnce() -> Option<Arc<K>>,
    api: Api<K>,
    name: &str,
) -> Result<Option<Arc<K>>, Error>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    if read == Read::Cached
        && let Some(i) = cached()
    {
        return Ok(Some(i));
    }
    Ok(api.get_opt(name).await?.map(Arc::new))
}

fn kind_name(kind: IssuerKind) -> &'static str {
    match kind {
        IssuerKind::KeyIssuer => "KeyIssuer",
        IssuerKind::ClusterKeyIssuer => "ClusterKeyIssuer",
    }
}

/// Whether `value` matches `pattern`, where `*` stands for any run of characters and
/// every other character for itself. (Built as a regex, it was compiled per scope on
/// every reconcile: a tenth of the operator's CPU at 10,000 ApiKeys.) Each piece between
/// stars is matched leftmost, which is exact when stars are the only wildcard.
fn glob_match(pattern: &str, value: &str) -> bool {
    let mut pieces = pattern.split('*');
    let Some(rest) = value.strip_prefix(pieces.next().unwrap_or_default()) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    let mut rest = rest;
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_globs() {
        assert!(glob_match("widgets:*", "widgets:read"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("widgets:*", "gadgets:read"));
        assert!(!glob_match("widgets:read", "widgets:write"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("a.c", "a.c"));
        assert!(!glob_match("a.c", "abc"));
    }

    proptest::proptest! {
        /// The same as the regex `^piece.*piece…$` with every other character literal.
        #[test]
        fn globs_match_as_the_equivalent_regex(pattern in "[ab.*]{0,6}", value in "[ab.]{0,8}") {
            let re = format!("^{}$", regex::escape(&pattern).replace(r"\*", ".*"));
            let expected = regex::Regex::new(&re).unwrap().is_match(&value);
            proptest::prop_assert_eq!(glob_match(&pattern, &value), expected);
        }
    }
}
