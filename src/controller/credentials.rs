//! An issuer's credentials Secret is kept while ApiKeys hold keys minted with it: a
//! namespace deletion (or a hand) removing it first would leave `Revoke` ApiKeys unable
//! to revoke. The same finalizer as on the issuer, put when minting and lifted with it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, Resource, ResourceExt};

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
    seen: Mutex<HashMap<(String, String), Instant>>,
}

const RECHECK: Duration = Duration::from_secs(300);

impl Protected {
    /// `watched`: the namespaces whose Secrets the operator watches (empty: all).
    pub fn new(watched: Vec<String>) -> Self {
        Protected {
            watched,
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
        let key = (namespace.to_string(), name.to_string());
        let fresh = |at: &Instant| at.elapsed() < RECHECK;
        if self.seen.lock().expect("lock").get(&key).is_some_and(fresh) {
            return Ok(());
        }
        let watched = self.watched.is_empty() || self.watched.iter().any(|w| w == namespace);
        if protect_secret(client, namespace, name).await? && watched {
            self.seen.lock().expect("lock").insert(key, Instant::now());
        }
        Ok(())
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
