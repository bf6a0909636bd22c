//! Keys the operator generates itself, for services that accept any shared secret:
//! a prefix and `length` base62 characters from the OS CSPRNG. There is no issuer to
//! tell: ids derive from the idempotency key, and revoking is forgetting.

use futures::FutureExt;
use futures::future::BoxFuture;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;

use super::{Issuer, IssuerError, MintRequest, MintedKey};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub struct Generate {
    prefix: String,
    length: u32,
    rng: SystemRandom,
}

impl Generate {
    pub fn new(prefix: &str, length: u32) -> Self {
        Generate {
            prefix: prefix.into(),
            length,
            rng: SystemRandom::new(),
        }
    }
}

/// `length` base62 characters from the OS CSPRNG, each equally likely.
pub(crate) fn random_base62(rng: &SystemRandom, length: usize) -> Result<String, IssuerError> {
    let mut out = String::with_capacity(length);
    let mut buf = [0u8; 64];
    while out.len() < length {
        rng.fill(&mut buf)
            .map_err(|_| IssuerError::Unavailable("the OS random source failed".into()))?;
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == length {
                break;
            }
            out.push(BASE62[(*b % 62) as usize] as char);
        }
    }
    Ok(out)
}

impl Issuer for Generate {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>> {
        async move {
            let digest =
                ring::digest::digest(&ring::digest::SHA256, req.idempotency_key.as_bytes());
            let id: String = digest.as_ref()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let key = format!(
                "{}{}",
                self.prefix,
                random_base62(&self.rng, self.length as usize)?
            );
            let expires_at = req
                .expires_after
                .and_then(|d| jiff::SignedDuration::try_from(d).ok())
                .and_then(|d| req.now.checked_add(d).ok());
            Ok(MintedKey {
                id: format!("gen-{id}"),
                secret: SecretString::from(key),
                expires_at,
            })
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>> {
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn request(key: &str) -> MintRequest {
        MintRequest {
            idempotency_key: key.into(),
            display_name: "ns/name".into(),
            scopes: vec![],
            key_type: crate::api::apikey::KeyType::Secret,
            expires_after: None,
            now: jiff::Timestamp::now(),
            owner: "ns/name".into(),
            uid: "uid".into(),
            rotation: 1,
            started_at: jiff::Timestamp::now(),
            known_ids: vec![],
            account: None,
        }
    }

    #[tokio::test]
    async fn keys_have_the_prefix_length_and_alphabet() {
        let g = Generate::new("sk_live_", 40);
        let k = g.mint(&request("uid-1-1")).await.unwrap();
        let s = k.secret.expose_secret();
        assert!(s.starts_with("sk_live_") && s.len() == 48, "{}", s.len());
        assert!(s["sk_live_".len()..].bytes().all(|b| BASE62.contains(&b)));
        let again = g.mint(&request("uid-1-1")).await.unwrap();
        assert_eq!(k.id, again.id, "ids derive from the idempotency key");
        assert_ne!(s, again.secret.expose_secret(), "material is random");
        assert_ne!(k.id, g.mint(&request("uid-2-1")).await.unwrap().id);
    }
}
