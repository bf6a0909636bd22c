//! Authentication: the admin bearer token, ServiceAccount tokens (TokenRequest: signed
//! ES256 JWTs with audiences and expiry), TokenReview, and the JWKS that lets Vault/OpenBao
//! verify those tokens.
//!
//! The JWT compact encoding is written by hand over `ring` (already in the dependency tree
//! through rustls); a JWT crate would bring a second crypto stack for three functions.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::apiserver::State;
use super::meta::string_list;
use super::resources::StorageKey;
use super::store::meta_str;

/// The issuer and default audience of ServiceAccount tokens, as on a kubeadm cluster.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Compares a presented credential with a secret without leaking where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Who a request is from.
#[derive(Clone, Debug, PartialEq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn admin() -> Self {
        UserInfo {
            username: "kubernetes-admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// A request without credentials, as kube-apiserver's `--anonymous-auth` (on by
    /// default) names it.
    pub fn anonymous() -> Self {
        UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.username == "system:anonymous"
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        UserInfo {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: uid.into(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

pub struct TokenSigner {
    key: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
}

/// A verified ServiceAccount token.
#[derive(Debug)]
pub struct Verified {
    pub user: UserInfo,
    pub audiences: Vec<String>,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn service_accounts() -> StorageKey {
    StorageKey {
        group: String::new(),
        resource: "serviceaccounts".into(),
    }
}

impl TokenSigner {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("P-256 key generation");
        let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("fresh P-256 key");
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let key_id = B64.encode(&digest.as_ref()[..16]);
        TokenSigner { key, key_id, rng }
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.key_id, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing");
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }

    /// A bound ServiceAccount token for `sa` (a stored ServiceAccount object).
    pub fn issue(
        &self,
        sa: &Value,
        audiences: &[String],
        expiration_seconds: i64,
    ) -> (String, i64) {
        let (ns, name, uid) = (
            meta_str(sa, "namespace"),
            meta_str(sa, "name"),
            meta_str(sa, "uid"),
        );
        let iat = now();
        let exp = iat.saturating_add(expiration_seconds);
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": iat,
            "nbf": iat,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
        });
        (self.sign(&claims), exp)
    }

    /// Checks signature, issuer, expiry, and that the ServiceAccount still exists (a
    /// deleted and re-created one has another uid: its old tokens are dead).
    pub fn verify(&self, st: &State, token: &str) -> Result<Verified, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("token is not a JWT".into());
        };
        let sig = B64.decode(s).map_err(|_| "malformed signature")?;
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "invalid signature")?;
        let claims: Value = serde_json::from_slice(&B64.decode(c).map_err(|_| "malformed claims")?)
            .map_err(|_| "malformed claims")?;
        if claims["iss"] != ISSUER {
            return Err("token issuer is not this cluster".into());
        }
        let t = now();
        if claims["exp"].as_i64().is_none_or(|exp| exp <= t) {
            return Err("token has expired".into());
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf > t + 60) {
            return Err("token is not valid yet".into());
        }
        let k8s = &claims["kubernetes.io"];
        let ns = k8s["namespace"].as_str().unwrap_or_default();
        let name = k8s["serviceaccount"]["name"].as_str().unwrap_or_default();
        let uid = k8s["serviceaccount"]["uid"].as_str().unwrap_or_default();
        match st.store.get(&service_accounts(), ns, name) {
            Some(sa) if meta_str(&sa, "uid") == uid => {}
            Some(_) => {
                return Err(format!(
                    "service account {ns}/{name} was re-created; the token is no longer valid"
                ));
            }
            None => return Err(format!("service account {ns}/{name} has been deleted")),
        }
        let audiences = string_list(claims.get("aud")).unwrap_or_default();
        Ok(Verified {
            user: UserInfo::service_account(ns, name, uid),
            audiences,
        })
    }

    /// The OIDC discovery document for ServiceAccount tokens.
    pub fn openid_configuration(&self, server_url: &str) -> Value {
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{server_url}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    pub fn jwks(&self) -> Value {
        // An uncompressed P-256 point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.key_id,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        }]})
    }
}

/// The TokenReview response for `review` (an authentication.k8s.io/v1 TokenReview).
pub fn token_review(signer: &TokenSigner, st: &State, mut review: Value) -> Value {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let wanted =
        string_list(review.pointer("/spec/audiences")).unwrap_or_else(|| vec![ISSUER.to_string()]);
    let status = match signer.verify(st, token) {
        Ok(v) => {
            let matched: Vec<&String> = v.audiences.iter().filter(|a| wanted.contains(a)).collect();
            if matched.is_empty() {
                json!({"authenticated": false, "error": "token audiences do not match the requested audiences"})
            } else {
                json!({"authenticated": true, "audiences": matched,
                    "user": {"username": v.user.username, "uid": v.user.uid, "groups": v.user.groups}})
            }
        }
        Err(e) => json!({"authenticated": false, "error": e}),
    };
    review["status"] = status;
    review
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_tampering_is_detected() {
        let signer = TokenSigner::new();
        let other = TokenSigner::new();
        let sa = json!({"metadata": {"namespace": "ns", "name": "sa", "uid": "u1"}});
        let (token, exp) = signer.issue(&sa, &["vault".to_string()], 600);
        assert!(exp > now());
        let mut st = State::new(10, Default::default());
        assert!(signer.verify(&st, &token).unwrap_err().contains("deleted"));
        st.store.insert(&service_accounts(), sa.clone());
        let v = signer.verify(&st, &token).unwrap();
        assert_eq!(v.user.username, "system:serviceaccount:ns:sa");
        assert_eq!(v.audiences, ["vault"]);
        assert!(
            other.verify(&st, &token).is_err(),
            "another key's signature fails"
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(json!({"iss": ISSUER, "exp": now() + 999}).to_string());
        parts[1] = &forged;
        assert_eq!(
            signer.verify(&st, &parts.join(".")).unwrap_err(),
            "invalid signature"
        );
        assert_eq!(signer.jwks()["keys"][0]["kid"], json!(signer.key_id));
    }
}
