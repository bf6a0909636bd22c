//! Issuers mint and revoke keys. One small trait, one module per provider (as
//! cert-manager's issuers); a provider is its module and one line in `PROVIDERS`.

pub mod generate;

use futures::future::BoxFuture;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use crate::api::apikey::KeyType;
use crate::api::issuer::IssuerConfig;

pub struct MintRequest {
    /// `<uid>-<rotation>-<attempt>`: the issuer returns the same key for the same value.
    pub idempotency_key: String,
    pub display_name: String,
    pub scopes: Vec<String>,
    pub key_type: KeyType,
    pub expires_after: Option<std::time::Duration>,
    /// The controller's now (its clock may be a test's), for the key's expiry.
    pub now: Timestamp,
}

pub struct MintedKey {
    pub id: String,
    pub secret: SecretString,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The issuer refused the request (bad scopes, quota, …): retrying will not help.
    #[error("the issuer rejected the request: {0}")]
    Rejected(String),
    /// The issuer could not be reached or failed: retry with backoff.
    #[error("the issuer is unavailable: {0}")]
    Unavailable(String),
}

pub trait Issuer: Send + Sync {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>>;
    /// Revoking a key that is already gone succeeds.
    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>>;
}

/// A provider's constructor: the issuer its part of the spec configures, `None` when the
/// spec configures another provider.
type Build = fn(&IssuerConfig) -> Option<Result<Box<dyn Issuer>, String>>;

/// Every provider, registered once.
const PROVIDERS: &[Build] = &[generate::from_spec];

/// The issuer an issuer spec configures (the schema allows exactly one provider).
pub fn for_spec(config: &IssuerConfig) -> Result<Box<dyn Issuer>, String> {
    if let Some(issuer) = PROVIDERS.iter().find_map(|build| build(config)) {
        return issuer;
    }
    let provider = if config.http.is_some() {
        "http"
    } else {
        "awsIam"
    };
    Err(format!(
        "the {provider} issuer provider is not available in this release; use generate"
    ))
}

/// `sha256:` and the first 12 hex digits of the key's SHA-256: safe to show anywhere.
pub fn fingerprint(secret: &SecretString) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.expose_secret().as_bytes());
    let hex: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_short_and_stable() {
        let fp = fingerprint(&SecretString::from("sk_live_abc"));
        assert!(fp.starts_with("sha256:") && fp.len() == 19, "{fp}");
        assert_eq!(fp, fingerprint(&SecretString::from("sk_live_abc")));
        assert_ne!(fp, fingerprint(&SecretString::from("sk_live_abd")));
    }
}
