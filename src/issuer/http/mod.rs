//! The `http` provider: an issuer's key API in the shape of the Issuer API v1
//! (docs/issuer-api.md). One client per issuer generation is shared by every ApiKey that
//! uses it, so `requestsPerSecond` and a 429's Retry-After hold for the issuer as a whole.

mod operations;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use self::operations::{Ops, text};
use super::{Access, Issuer, IssuerError, MintRequest, MintedKey, Usage};
use crate::api::apikey::KeyType;
use crate::api::issuer::{HttpCapabilities, HttpIssuer as Spec};
use crate::generations::PerGeneration;
use crate::messages::{bounded, chain};
use crate::pace::Gate;
use crate::store::StoreError;

/// Clients by issuer identity (`<uid>@<generation>`).
#[derive(Default)]
pub struct Clients(PerGeneration<Client>);

pub struct Client {
    http: reqwest::Client,
    base: String,
    capabilities: HttpCapabilities,
    /// The admin token, read from its Secret when first needed and again after a 401.
    token: tokio::sync::Mutex<Option<SecretString>>,
    credentials: (kube::Client, String, String, String),
    gate: Gate,
    ops: Ops,
}

pub struct Http(Arc<Client>);

pub async fn open(spec: &Spec, access: &Access<'_>) -> Result<Box<dyn Issuer>, IssuerError> {
    let clients = &access.clients.http.0;
    let client = match clients.get(&access.version) {
        Some(c) => c,
        None => clients.insert(&access.version, Arc::new(Client::new(spec, access)?)),
    };
    Ok(Box::new(Http(client)))
}

impl Client {
    fn new(spec: &Spec, access: &Access<'_>) -> Result<Client, IssuerError> {
        let invalid = |why: String| IssuerError::Misconfigured(format!("{why} (spec.http)"));
        // reqwest's rustls needs a process-wide crypto provider; ring is the one kube uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = spec.timeout.to_std().map_err(invalid)?;
        let (http, url) = crate::https::client(&spec.url, spec.ca_bundle.as_deref(), timeout)
            .map_err(|e| invalid(format!("url: {e}")))?;
        Ok(Client {
            http,
            base: url.as_str().trim_end_matches('/').to_string(),
            capabilities: spec.capabilities.clone(),
            token: tokio::sync::Mutex::new(None),
            credentials: (
                access.client.clone(),
                access.credentials_namespace.to_string(),
                spec.credentials_secret_ref.name.clone(),
                spec.credentials_secret_ref.key.clone(),
            ),
            gate: Gate::new(spec.requests_per_second, spec.burst),
            ops: operations::resolve(spec.operations.as_ref()).map_err(invalid)?,
        })
    }

    async fn admin_token(&self) -> Result<SecretString, IssuerError> {
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref() {
            return Ok(t.clone());
        }
        let (client, ns, name, key) = &self.credentials;
        let read = crate::store::credential(client, ns, name, key)
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(m) => IssuerError::Unavailable(m),
                other => IssuerError::Misconfigured(format!(
                    "the admin token (spec.http.credentialsSecretRef): {}",
                    other.detail()
                )),
            })?;
        *token = Some(read.clone());
        Ok(read)
    }

    /// One request, with `bearer` (the admin token unless given); returns status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
        bearer: Option<&SecretString>,
    ) -> Result<(StatusCode, Value), IssuerError> {
        let token = match bearer {
            Some(b) => b.clone(),
            None => self.admin_token().await?,
        };
        let mut attempts = 0;
        let response = loop {
            self.gate.wait().await;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(token.expose_secret());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            if let Some(b) = body {
                request = request.json(b);
            }
            let response = request
                .send()
                .await
                .map_err(|e| IssuerError::Unavailable(bounded(&chain(&e.without_url()))))?;
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                break response;
            }
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            // Every ApiKey using this issuer waits, not only this one.
            self.gate.pause(Duration::from_secs(wait)).await;
            attempts += 1;
            // A 429 means the request was not served, so sending it again is safe; a
            // short pause is waited out here rather than failing the whole step.
            if attempts > RATE_LIMIT_RETRIES || wait > RATE_LIMIT_WAIT_MAX {
                return Err(IssuerError::Unavailable(format!(
                    "the issuer is rate limiting (429); its requests pause for {wait}s"
                )));
            }
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED && bearer.is_none() {
            // The token may have been rotated: read it again next time.
            *self.token.lock().await = None;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// How often a request refused with 429 is sent again (after the pause) before its step
/// fails, and the longest pause waited out that way.
const RATE_LIMIT_RETRIES: u32 = 2;
const RATE_LIMIT_WAIT_MAX: u64 = 10;

/// The issuer's own error message (`{"error": {"message"}}`), bounded.
fn said(status: StatusCode, body: &Value) -> String {
    let message = body["error"]["message"].as_str().unwrap_or("");
    bounded(&format!("{} {message}", status.as_u16()))
}

/// 4xx: the issuer refuses (a change must be made); anything else: try again later.
fn failure(status: StatusCode, body: &Value) -> IssuerError {
    if status.is_client_error() {
        IssuerError::Rejected(format!("the issuer answered {}", said(status, body)))
    } else {
        IssuerError::Unavailable(format!("the issuer answered {}", said(status, body)))
    }
}

impl IssuerError {
    /// The same error with `secret` cut out of its message.
    fn without(self, secret: &str) -> IssuerError {
        let cut = |m: String| m.replace(secret, "[redacted]");
        match self {
            IssuerError::Rejected(m) => IssuerError::Rejected(cut(m)),
            IssuerError::Unavailable(m) => IssuerError::Unavailable(cut(m)),
            IssuerError::Misconfigured(m) => IssuerError::Misconfigured(cut(m)),
            IssuerError::NotAllowed(m) => IssuerError::NotAllowed(cut(m)),
        }
    }
}

impl Http {
    /// Keys of this ApiKey (by uid) the issuer holds that status does not know and that
    /// are not the one just minted: minted by an attempt whose answer was lost, after the
    /// issuer forgot its idempotency record. Their secrets are gone; they are revoked.
    async fn revoke_orphans(&self, req: &MintRequest, minted: &str) -> Result<(), IssuerError> {
        if !self.0.capabilities.list {
            return Ok(());
        }
        let op = &self.0.ops.list;
        let (status, body) = self
            .0
            .call(op.method.clone(), &op.path("", &req.owner), None, &[], None)
            .await?;
        if !status.is_success() {
            return Err(failure(status, &body));
        }
        let items = body.pointer(&op.items).and_then(Value::as_array);
        let orphans = items.into_iter().flatten().filter(|k| {
            let id = text(k, &op.id).unwrap_or_default();
            text(k, &op.uid) == Some(req.uid.as_str())
                && id != minted
                && !req.known_ids.iter().any(|known| known == id)
        });
        for orphan in orphans {
            if let Some(id) = text(orphan, &op.id) {
                tracing::warn!(owner = %req.owner, id, "revoking a key minted but never recorded");
                self.revoke(id).await?;
            }
        }
        Ok(())
    }
}

impl Issuer for Http {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>> {
        async move {
            let expires_at = req
                .expires_after
                .and_then(|d| jiff::SignedDuration::try_from(d).ok())
                .and_then(|d| req.now.checked_add(d).ok());
            // Filled in as JSON values: names and scopes are tenant input, never spliced.
            let Value::Object(vars) = json!({
                "name": req.display_name,
                "type": match req.key_type { KeyType::Secret => "secret", KeyType::Publishable => "publishable" },
                "scopes": req.scopes,
                "expiresAt": expires_at.map(|t| t.to_string()),
                "owner": req.owner, "uid": req.uid, "rotation": req.rotation,
            }) else {
                unreachable!("an object literal")
            };
            let op = &self.0.ops.create;
            let headers = [("Idempotency-Key", req.idempotency_key.clone())];
            let (status, body) = self
                .0
                .call(op.method.clone(), &op.path("", &req.owner), op.body(&vars).as_ref(), &headers, None)
                .await?;
            if !status.is_success() {
                return Err(failure(status, &body));
            }
            let (Some(id), Some(key)) = (text(&body, &op.id), text(&body, &op.key)) else {
                return Err(IssuerError::Unavailable(format!(
                    "the issuer's answer to creating a key has nothing at {} (id) or {} (key)",
                    op.id, op.key
                )));
            };
            let minted = MintedKey {
                id: id.to_string(),
                secret: SecretString::from(key.to_string()),
                expires_at: text(&body, &op.expires_at).and_then(|t| t.parse().ok()),
            };
            self.revoke_orphans(req, &minted.id).await?;
            Ok(minted)
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>> {
        async move {
            let op = &self.0.ops.revoke;
            let (status, body) = self
                .0
                .call(op.method.clone(), &op.path(id, ""), None, &[], None)
                .await?;
            if status.is_success() {
                return Ok(());
            }
            if status != StatusCode::NOT_FOUND {
                return Err(failure(status, &body));
            }
            // A 404 means gone only if the issuer's own record agrees (a wrong URL also
            // answers 404).
            if !self.0.capabilities.get {
                return Ok(());
            }
            let op = &self.0.ops.get;
            let (status, body) = self
                .0
                .call(op.method.clone(), &op.path(id, ""), None, &[], None)
                .await?;
            if status == StatusCode::NOT_FOUND || body.pointer(&op.revoked) == Some(&Value::Bool(true)) {
                return Ok(());
            }
            Err(IssuerError::Unavailable(format!(
                "the issuer answered 404 to revoking key {id} but {} when asked for it; it is not revoked",
                status.as_u16()
            )))
        }
        .boxed()
    }

    fn verify<'a>(&'a self, key: &'a MintedKey) -> BoxFuture<'a, Result<(), IssuerError>> {
        async move {
            if !self.0.capabilities.verify {
                return Ok(());
            }
            let (status, body) = self
                .0
                .call(
                    self.0.ops.verify.method.clone(),
                    &self.0.ops.verify.path(&key.id, ""),
                    None,
                    &[],
                    Some(&key.secret),
                )
                .await?;
            match status {
                s if s.is_success() => Ok(()),
                // Issuers are often eventually consistent: ask again before distributing.
                StatusCode::UNAUTHORIZED => Err(IssuerError::Unavailable(format!(
                    "the new key {} is not accepted by the issuer yet",
                    key.id
                ))),
                // An answer to a request made with the key may quote it back.
                s => Err(failure(s, &body).without(key.secret.expose_secret())),
            }
        }
        .boxed()
    }

    fn last_used<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Usage>, IssuerError>> {
        async move {
            if !self.0.capabilities.get {
                return Ok(None);
            }
            let op = &self.0.ops.get;
            let (status, body) = self
                .0
                .call(op.method.clone(), &op.path(id, ""), None, &[], None)
                .await?;
            if !status.is_success() {
                return Err(failure(status, &body));
            }
            Ok(Some(Usage {
                last_used_at: text(&body, &op.last_used_at).and_then(|t| t.parse().ok()),
                min_unused_for: Duration::ZERO,
            }))
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), IssuerError>> {
        async move {
            // Any answer but a refusal of the admin token says the API is there and the
            // token is good.
            let (status, body) = self
                .0
                .call(
                    self.0.ops.get.method.clone(),
                    &self.0.ops.get.path("apikey-operator-readiness-probe", ""),
                    None,
                    &[],
                    None,
                )
                .await?;
            match status {
                s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
                s => Err(failure(s, &body)),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_messages_are_bounded_and_sanitised() {
        let body =
            json!({"error": {"message": format!("bad\nscope\u{1b}[31m {}", "x".repeat(500))}});
        let m = said(StatusCode::BAD_REQUEST, &body);
        assert!(m.starts_with("400 bad scope [31m"), "{m}");
        assert!(!m.chars().any(char::is_control));
        assert!(m.chars().count() <= crate::messages::MAX + 1, "{}", m.len());
    }

    #[test]
    fn a_key_quoted_back_by_the_issuer_is_cut_out() {
        let body = json!({"error": {"message": "key sk_live_abc is not valid here"}});
        let e = failure(StatusCode::FORBIDDEN, &body).without("sk_live_abc");
        assert_eq!(
            e.to_string(),
            "the issuer rejected the request: the issuer answered 403 key [redacted] is not valid here"
        );
    }
}
