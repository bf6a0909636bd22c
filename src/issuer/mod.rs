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

/// The longest key the operator distributes: real API keys are tens of bytes; anything
/// near a Secret's 1 MiB is an issuer answering something else.
pub const MAX_KEY_BYTES: usize = 4096;

impl MintedKey {
    /// Whether the key can be recorded and distributed — its id goes into status and
    /// events, the key into Secrets and templates — and, if not, why (never quoting it).
    pub fn usable(&self) -> Result<(), String> {
        let id_max = crate::api::limits::KEY_ID as usize;
        let key = self.secret.expose_secret();
        if self.id.is_empty() {
            Err("its id is empty".into())
        } else if self.id.len() > id_max {
            Err(format!(
                "its id is {} bytes long (at most {id_max})",
                self.id.len()
            ))
        } else if !self.id.chars().all(|c| c.is_ascii_graphic()) {
            Err("its id has characters other than printable ASCII".into())
        } else if key.is_empty() {
            Err("the key is empty".into())
        } else if key.len() > MAX_KEY_BYTES {
            Err(format!(
                "the key is {} bytes long (at most {MAX_KEY_BYTES})",
                key.len()
            ))
        } else if key.chars().any(char::is_control) {
            Err("the key has control characters (a newline breaks the files it goes into)".into())
        } else if key == self.id {
            Err("the key is its own id (an id is shown everywhere, a key nowhere)".into())
        } else {
            Ok(())
        }
    }
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

    fn minted(id: &str, key: &str) -> MintedKey {
        MintedKey {
            id: id.into(),
            secret: SecretString::from(key.to_string()),
            expires_at: None,
        }
    }

    #[test]
    fn unusable_answers_are_explained_without_the_key() {
        let long_id = "k".repeat(300);
        let cases = [
            ("", "sk_1", "id is empty"),
            (long_id.as_str(), "sk_1", "300 bytes long"),
            ("key 1", "sk_1", "printable ASCII"),
            ("key_1", "", "key is empty"),
            ("key_1", "sk_1\nEVIL=1", "control characters"),
            ("sk_1", "sk_1", "its own id"),
        ];
        for (id, key, why) in cases {
            let err = minted(id, key).usable().unwrap_err();
            assert!(err.contains(why), "{id:?}: {err}");
            assert!(key.is_empty() || !err.contains(key), "{err}");
        }
        assert!(
            minted("key_1", &"x".repeat(MAX_KEY_BYTES + 1))
                .usable()
                .is_err()
        );
        assert!(minted("key_1", "sk_live_abc").usable().is_ok());
    }

    proptest::proptest! {
        /// Whatever an issuer answers, a usable key fits status and never breaks a file.
        #[test]
        fn a_usable_key_fits_everywhere_it_goes(id in "\\PC{0,300}", key in "\\PC{0,64}") {
            if minted(&id, &key).usable().is_ok() {
                proptest::prop_assert!(!id.is_empty() && id.len() <= crate::api::limits::KEY_ID as usize);
                proptest::prop_assert!(id.chars().all(|c| c.is_ascii_graphic()));
                proptest::prop_assert!(!key.is_empty() && !key.chars().any(char::is_control));
            }
        }
    }
}
