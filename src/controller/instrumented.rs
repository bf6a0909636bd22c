//! Issuers and stores as the controller uses them: every call counted by outcome in the
//! metrics, and none started once this replica has lost its lease (a deposed leader must
//! not mint or revoke beside the new one).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;

use crate::issuer::{Issuer, IssuerError, MintRequest, MintedKey, Usage};
use crate::store::{Held, KeyStore, Slot, StoreError};
use crate::telemetry::{Leadership, Metrics};

const DEPOSED: &str = "this replica lost its leader lease; the new leader continues";

/// `issuer`, counted as `label` (`KeyIssuer/<namespace>/<name>`, `ClusterKeyIssuer/<name>`).
pub(super) fn issuer(
    issuer: Box<dyn Issuer>,
    label: String,
    metrics: &Arc<Metrics>,
    leadership: &Arc<Leadership>,
) -> Box<dyn Issuer> {
    Box::new(Counted {
        inner: issuer,
        label,
        metrics: metrics.clone(),
        leadership: leadership.clone(),
    })
}

/// `store`, counted as `label` (`KeyStore/<namespace>/<name>`, `kubernetes`, …).
pub(super) fn store(
    store: Box<dyn KeyStore>,
    label: String,
    metrics: &Arc<Metrics>,
    leadership: &Arc<Leadership>,
) -> Box<dyn KeyStore> {
    Box::new(Counted {
        inner: store,
        label,
        metrics: metrics.clone(),
        leadership: leadership.clone(),
    })
}

struct Counted<T: ?Sized> {
    inner: Box<T>,
    label: String,
    metrics: Arc<Metrics>,
    leadership: Arc<Leadership>,
}

impl Counted<dyn Issuer> {
    async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, IssuerError>>,
    ) -> Result<T, IssuerError> {
        if !self.leadership.leading() {
            return Err(IssuerError::Unavailable(DEPOSED.into()));
        }
        let result = f.await;
        let code = match &result {
            Ok(_) => "ok",
            Err(IssuerError::Rejected(_)) => "rejected",
            Err(IssuerError::Unavailable(_)) => "unavailable",
            Err(IssuerError::Misconfigured(_)) => "misconfigured",
            Err(IssuerError::NotAllowed(_)) => "not_allowed",
        };
        self.metrics.issuer_request(&self.label, code);
        result
    }
}

impl Issuer for Counted<dyn Issuer> {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>> {
        self.call(self.inner.mint(req)).boxed()
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>> {
        self.call(self.inner.revoke(id)).boxed()
    }

    fn verify<'a>(&'a self, key: &'a MintedKey) -> BoxFuture<'a, Result<(), IssuerError>> {
        self.call(self.inner.verify(key)).boxed()
    }

    fn last_used<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Usage>, IssuerError>> {
        self.call(self.inner.last_used(id)).boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), IssuerError>> {
        self.call(self.inner.check()).boxed()
    }
}

impl Counted<dyn KeyStore> {
    async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.leadership.leading() {
            return Err(StoreError::Unavailable(DEPOSED.into()));
        }
        let result = f.await;
        let code = match &result {
            Ok(_) => "ok",
            Err(StoreError::NotFound(_)) => "not_found",
            Err(StoreError::Unavailable(_)) => "unavailable",
            Err(StoreError::Denied(_)) => "denied",
            Err(StoreError::Changed(_)) => "changed",
            Err(StoreError::Foreign(_)) => "foreign",
        };
        self.metrics.store_request(&self.label, code);
        result
    }
}

impl KeyStore for Counted<dyn KeyStore> {
    fn put<'a>(
        &'a self,
        id: &'a str,
        secret: &'a SecretString,
        slot: Slot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call(self.inner.put(id, secret, slot)).boxed()
    }

    fn promote<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call(self.inner.promote(id)).boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>> {
        self.call(self.inner.get(id)).boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call(self.inner.delete(id)).boxed()
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.call(self.inner.ids()).boxed()
    }

    fn held(&self) -> BoxFuture<'_, Result<Option<Held>, StoreError>> {
        self.call(self.inner.held()).boxed()
    }

    fn release(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(self.inner.release()).boxed()
    }

    fn purge(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(self.inner.purge()).boxed()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}
