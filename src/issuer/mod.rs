//! Issuers mint and revoke keys. One small trait, one module per provider (as
//! cert-manager's issuers); a provider is its module and one line in `PROVIDERS`.

pub mod aws_iam;
pub mod generate;
pub mod http;

use futures::FutureExt;
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
    /// `<namespace>/<name>` of the ApiKey, its uid and the rotation: what the issuer
    /// records of who holds the key.
    pub owner: String,
    pub uid: String,
    pub rotation: u64,
    /// When this rotation began, and the ids status holds: a key the issuer made since
    /// that status does not know is an earlier attempt's (for issuers without
    /// idempotency).
    pub started_at: Timestamp,
    pub known_ids: Vec<String>,
    /// The issuer-side account the ApiKey names for its keys, where the provider has one
    /// (awsIam: the IAM user, from the annotation `apikey.dev/aws-iam-user-name`).
    pub account: Option<String>,
}

/// What an issuer reports of a key's use (for usage-aware revocation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub last_used_at: Option<Timestamp>,
    /// The shortest `revokeWhenUnusedFor` the issuer's records support (IAM records use
    /// coarsely).
    pub min_unused_for: std::time::Duration,
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
    /// The issuer's own settings or credentials are unusable: fix the issuer object.
    #[error("{0}")]
    Misconfigured(String),
    /// The issuer will not serve this ApiKey (a resource another owner holds).
    #[error("{0}")]
    NotAllowed(String),
}

pub trait Issuer: Send + Sync {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>>;
    /// Revoking a key that is already gone succeeds.
    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>>;
    /// Whether the issuer accepts a key it just minted (checked before it is distributed,
    /// where the issuer can say).
    fn verify<'a>(&'a self, _key: &'a MintedKey) -> BoxFuture<'a, Result<(), IssuerError>> {
        async { Ok(()) }.boxed()
    }
    /// When the issuer last saw key `id` used; `None` when it does not report use (then
    /// usage-aware revocation falls back to the overlap alone).
    fn last_used<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<Option<Usage>, IssuerError>> {
        async { Ok(None) }.boxed()
    }
    /// Whether the issuer can be reached with its credentials (its Ready condition).
    fn check(&self) -> BoxFuture<'_, Result<(), IssuerError>> {
        async { Ok(()) }.boxed()
    }
}

/// What a provider needs besides its spec: where its credentials are, and the clients
/// kept between reconciles.
pub struct Access<'a> {
    pub client: &'a kube::Client,
    /// The KeyIssuer's namespace, or the operator's for a ClusterKeyIssuer.
    pub credentials_namespace: &'a str,
    /// The issuer's identity and settings generation (`<uid>@<generation>`).
    pub version: String,
    pub clients: &'a Clients,
}

/// Provider clients kept between reconciles (shared rate limits, cached credentials).
#[derive(Default)]
pub struct Clients {
    http: http::Clients,
    aws_iam: aws_iam::Clients,
}

/// The issuer an issuer spec configures (the schema allows exactly one provider): the one
/// place a provider is registered.
pub async fn open(
    config: &IssuerConfig,
    access: &Access<'_>,
) -> Result<Box<dyn Issuer>, IssuerError> {
    if let Some(g) = &config.generate {
        return Ok(Box::new(generate::Generate::new(&g.prefix, g.length)));
    }
    if let Some(h) = &config.http {
        return http::open(h, access).await;
    }
    if let Some(a) = &config.aws_iam {
        return aws_iam::open(a, access).await;
    }
    Err(IssuerError::Misconfigured(
        "the issuer sets no provider: set generate, http or awsIam".into(),
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
