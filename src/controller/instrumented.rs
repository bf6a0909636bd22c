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

/// What the two kinds of provider error have in common here: a metric label for each
/// outcome, and the refusal of a deposed leader.
trait Outcome {
    fn code(&self) -> &'static str;
    fn deposed() -> Self;
    fn record(metrics: &Metrics, label: &str, code: &'static str);
}

impl Outcome for IssuerError {
    fn code(&self) -> &'static str {
        match self {
            IssuerError::Rejected(_) => "rejected",
            IssuerError::Unavailable(_) => "unavailable",
            IssuerError::Misconfigured(_) => "misconfigured",
            IssuerError::NotAllowed(_) => "not_allowed",
        }
    }

    fn deposed() -> Self {
        IssuerError::Unavailable(DEPOSED.into())
    }

    fn record(metrics: &Metrics, label: &str, code: &'static str) {
        metrics.issuer_request(label, code);
    }
}

impl Outcome for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Denied(_) => "denied",
            StoreError::Changed(_) => "changed",
            StoreError::Foreign(_) => "foreign",
        }
    }

    fn deposed() -> Self {
        StoreError::Unavailable(DEPOSED.into())
    }

    fn record(metrics: &Metrics, label: &str, code: &'static str) {
        metrics.store_request(label, code);
    }
}

impl<P: ?Sized> Counted<P> {
    /// `call` runs only while leading: the request is not even built otherwise.
    async fn call<'a, T, E: Outcome>(
        &'a self,
        call: impl FnOnce() -> BoxFuture<'a, Result<T, E>>,
    ) -> Result<T, E> {
        if !self.leadership.leading() {
            return Err(E::deposed());
        }
        let result = call().await;
        let code = result.as_ref().map_or_else(Outcome::code, |_| "ok");
        E::record(&self.metrics, &self.label, code);
        result
    }
}

impl Issuer for Counted<dyn Issuer> {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>> {
        self.call(|| self.inner.mint(req)).boxed()
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>> {
        self.call(|| self.inner.revoke(id)).boxed()
    }

    fn verify<'a>(&'a self, key: &'a MintedKey) -> BoxFuture<'a, Result<(), IssuerError>> {
        self.call(|| self.inner.verify(key)).boxed()
    }

    fn last_used<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Usage>, IssuerError>> {
        self.call(|| self.inner.last_used(id)).boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), IssuerError>> {
        self.call(|| self.inner.check()).boxed()
    }
}

impl KeyStore for Counted<dyn KeyStore> {
    fn put<'a>(
        &'a self,
        id: &'a str,
        secret: &'a SecretString,
        slot: Slot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call(move || self.inner.put(id, secret, slot)).boxed()
    }

    fn promote<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call(|| self.inner.promote(id)).boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>> {
        self.call(|| self.inner.get(id)).boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call(|| self.inner.delete(id)).boxed()
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.call(|| self.inner.ids()).boxed()
    }

    fn held(&self) -> BoxFuture<'_, Result<Option<Held>, StoreError>> {
        self.call(|| self.inner.held()).boxed()
    }

    fn release(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(|| self.inner.release()).boxed()
    }

    fn purge(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(|| self.inner.purge()).boxed()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Counts revocations; mints nothing.
    struct Revocations(Arc<AtomicU32>);

    impl Issuer for Revocations {
        fn mint<'a>(&'a self, _: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>> {
            async { Err(IssuerError::Rejected("no".into())) }.boxed()
        }

        fn revoke<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), IssuerError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }.boxed()
        }
    }

    #[tokio::test]
    async fn calls_are_counted_and_a_deposed_leader_makes_none() {
        let metrics = Arc::new(Metrics::new(Arc::default()));
        let leadership = Arc::new(Leadership::default());
        let calls = Arc::new(AtomicU32::new(0));
        let counted = issuer(
            Box::new(Revocations(calls.clone())),
            "KeyIssuer/team/gen".into(),
            &metrics,
            &leadership,
        );
        counted.revoke("k1").await.unwrap();
        leadership.set(false);
        let refused = counted.revoke("k2").await.unwrap_err();
        assert!(
            refused.to_string().contains("lost its leader lease"),
            "{refused}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the issuer saw one call");
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"apikey_issuer_requests_total{issuer="KeyIssuer/team/gen",code="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains("unavailable"),
            "a refused call is not an issuer outage"
        );
    }
}
