//! An issuer's credentials Secret is kept while ApiKeys hold keys minted with it: a
//! namespace deletion (or a hand) removing it first would leave `Revoke` ApiKeys unable
//! to revoke. The same finalizer as on the issuer, put when minting and lifted with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, Resource, ResourceExt};

use super::clock::{Clock, after};
use super::error::Error;
use super::finalizers;
use super::providers::ISSUER_FINALIZER;
use crate::api::issuer::IssuerConfig;

/// The Secret an issuer reads its credentials from, if it has one.
fn secret_of(config: &IssuerConfig) -> Option<&str> {
    if let Some(h) = &config.http {
        return Some(&h.credentials_secret_ref.name);
    }
    config
        .aws_iam
        .as_ref()
        .and_then(|a| a.credentials_secret_ref.as_ref())
        .map(|r| r.name.as_str())
}

/// Puts the finalizer on the issuer's credentials Secret (in `namespace`, where the
/// issuer reads it), unless it is missing or already going.
pub async fn protect(client: &Client, namespace: &str, config: &IssuerConfig) -> Result<(), Error> {
    let Some(name) = secret_of(config) else {
        return Ok(());
    };
    protect_secret(client, namespace, name).await.map(drop)
}

/// Whether the Secret now carries the finalizer (it is not missing or going).
async fn protect_secret(client: &Client, namespace: &str, name: &str) -> Result<bool, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(s) = api.get_metadata_opt(name).await? else {
        return Ok(false);
    };
    if s.meta().deletion_timestamp.is_some() {
        return Ok(false);
    }
    if !s.finalizers().iter().any(|f| f == ISSUER_FINALIZER) {
        let secret = api.get(name).await?;
        finalizers::add(&api, &secret, ISSUER_FINALIZER).await?;
    }
    Ok(true)
}

/// The credentials Secrets seen carrying the finalizer, so a mint need not read its
/// issuer's Secret every time (a GET per key minted). Only Secrets in namespaces the
/// operator watches are kept: any change the Secret watch sees there (a release too)
/// drops one; `RECHECK` bounds how long a change the watch missed goes unseen.
pub struct Protected {
    watched: Vec<String>,
    clock: Arc<Clock>,
    seen: Mutex<HashMap<(String, String), Timestamp>>,
}

const RECHECK: Duration = Duration::from_secs(300);

impl Protected {
    /// `watched`: the namespaces whose Secrets the operator watches (empty: all).
    pub fn new(watched: Vec<String>, clock: Arc<Clock>) -> Self {
        Protected {
            watched,
            clock,
            seen: Mutex::default(),
        }
    }

    /// [`protect`], unless the Secret was seen protected and has not changed since.
    pub async fn protect(
        &self,
        client: &Client,
        namespace: &str,
        config: &IssuerConfig,
    ) -> Result<(), Error> {
        let Some(name) = secret_of(config) else {
            return Ok(());
        };
        if self.known(namespace, name) {
            return Ok(());
        }
        if protect_secret(client, namespace, name).await? {
            self.remember(namespace, name);
        }
        Ok(())
    }

    /// Whether the Secret was seen protected, unchanged since, less than `RECHECK` ago.
    fn known(&self, namespace: &str, name: &str) -> bool {
        let now = self.clock.now();
        let key = (namespace.to_string(), name.to_string());
        let seen = self.seen.lock().expect("lock");
        seen.get(&key).is_some_and(|at| now < after(*at, RECHECK))
    }

    /// The Secret carries the finalizer now; kept only where the watch sees its changes.
    fn remember(&self, namespace: &str, name: &str) {
        if self.watched.is_empty() || self.watched.iter().any(|w| w == namespace) {
            let key = (namespace.to_string(), name.to_string());
            self.seen
                .lock()
                .expect("lock")
                .insert(key, self.clock.now());
        }
    }

    /// The Secret `name` in `namespace` changed.
    pub fn changed(&self, namespace: &str, name: &str) {
        let mut seen = self.seen.lock().expect("lock");
        if !seen.is_empty() {
            seen.remove(&(namespace.to_string(), name.to_string()));
        }
    }
}

/// Lifts it: no ApiKey holds keys minted with these credentials any more. (Judged per
/// issuer: a Secret several issuers share is released when the one being reconciled
/// holds no keys, even if another still does.)
pub async fn release(client: &Client, namespace: &str, config: &IssuerConfig) -> Result<(), Error> {
    let Some(name) = secret_of(config) else {
        return Ok(());
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(s) = api.get_metadata_opt(name).await?
        && s.finalizers().iter().any(|f| f == ISSUER_FINALIZER)
    {
        let secret = api.get(name).await?;
        finalizers::remove(&api, &secret, ISSUER_FINALIZER).await?;
    }
    Ok(())
}

/// Whether the issuer's credentials Secret is being deleted (held by our finalizer).
pub async fn going(client: &Client, namespace: &str, config: &IssuerConfig) -> Result<bool, Error> {
    let Some(name) = secret_of(config) else {
        return Ok(false);
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_metadata_opt(name)
        .await?
        .is_some_and(|s| s.meta().deletion_timestamp.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_secret_is_trusted_until_it_changes_or_the_recheck_is_due() {
        let clock = Arc::new(Clock::default());
        let protected = Protected::new(vec!["shop".into()], clock.clone());
        protected.remember("shop", "creds");
        assert!(protected.known("shop", "creds"));
        assert!(!protected.known("shop", "other"));
        protected.changed("shop", "creds");
        assert!(!protected.known("shop", "creds"), "a change drops it");
        protected.remember("shop", "creds");
        clock.advance(RECHECK);
        assert!(!protected.known("shop", "creds"), "read again once due");
        // Where the watch does not see changes, nothing is trusted.
        protected.remember("elsewhere", "creds");
        assert!(!protected.known("elsewhere", "creds"));
    }
}
