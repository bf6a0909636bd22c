//! An issuer's credentials Secret is kept while ApiKeys hold keys minted with it: a
//! namespace deletion (or a hand) removing it first would leave `Revoke` ApiKeys unable
//! to revoke. The same finalizer as on the issuer, put when minting and lifted with it.

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
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(s) = api.get_metadata_opt(name).await?
        && s.meta().deletion_timestamp.is_none()
        && !s.finalizers().iter().any(|f| f == ISSUER_FINALIZER)
    {
        let secret = api.get(name).await?;
        finalizers::add(&api, &secret, ISSUER_FINALIZER).await?;
    }
    Ok(())
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
