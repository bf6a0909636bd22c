//! The reference issuer: a small, honest implementation of the Issuer API v1
//! (docs/issuer-api.md), in memory. Secret (`sk_`) and publishable (`pk_`) keys with
//! scopes, idempotent creation, revocation, `lastUsedAt`, and `/whoami` for the services
//! that check a key. Tests, the `dev` sandbox and benchmarks run against it; it is a
//! reference, not a product (no persistence). Each admin token is a workspace: it sees
//! and revokes only its own keys.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use ring::rand::SystemRandom;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::issuer::generate::random_base62;
use crate::pace::Gate;

#[derive(Clone, Debug)]
pub struct Key {
    pub id: String,
    secret: String,
    pub kind: String,
    pub workspace: String,
    pub scopes: Vec<String>,
    pub owner: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked: bool,
    metadata: Value,
}

impl Key {
    fn valid(&self, now: Timestamp) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| e > now)
    }
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, Key>,
    by_idempotency_key: HashMap<String, String>,
    /// Key ids by the SHA-256 of their secret, as an issuer that keeps only digests
    /// finds a presented key: one lookup, not a comparison with every key.
    by_digest: HashMap<Digest, String>,
    /// Key ids by (workspace, owner), for the list the orphan check asks for.
    by_owner: HashMap<(String, String), Vec<String>>,
    /// Failures to answer with instead of serving (status, Retry-After), for tests.
    faults: Vec<(StatusCode, Option<u64>)>,
    /// Every Idempotency-Key a creation presented, answered or not.
    presented: Vec<String>,
    /// API requests let through, and refused for the rate limit.
    served: u64,
    rate_limited: u64,
    /// Whether idempotency records are dropped (as an issuer that keeps them for a short
    /// time does), for tests.
    forgetful: bool,
    /// How many more requests, of any kind, are answered 503 (an outage), for tests.
    outage: usize,
}

/// A running reference issuer.
#[derive(Clone)]
pub struct ReferenceIssuer {
    keys: Arc<Mutex<Keys>>,
    /// (workspace, admin token).
    workspaces: Arc<Vec<(String, String)>>,
    rng: Arc<SystemRandom>,
    /// The API's rate limit (`None`: unlimited): requests over it get a 429.
    limit: Option<(u32, Arc<Gate>)>,
}

impl ReferenceIssuer {
    pub fn new(admin_token: &str) -> Self {
        ReferenceIssuer {
            keys: Arc::default(),
            workspaces: Arc::new(vec![("default".into(), admin_token.into())]),
            rng: Arc::new(SystemRandom::new()),
            limit: None,
        }
    }

    /// Limits the API to `per_second` requests, `/whoami` included, as a SaaS limits an
    /// account whichever key calls: a request over it gets 429 with `Retry-After`.
    pub fn with_requests_per_second(mut self, per_second: u32) -> Self {
        self.limit = Some((
            per_second,
            Arc::new(Gate::new(Some(per_second), Some(per_second))),
        ));
        self
    }

    /// Adds a workspace with its own admin token.
    pub fn with_workspace(mut self, name: &str, admin_token: &str) -> Self {
        Arc::make_mut(&mut self.workspaces).push((name.into(), admin_token.into()));
        self
    }

    /// Serves on `listener` until the task is dropped or aborted.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let app = axum::Router::new()
            .route("/keys", post(create).get(list))
            .route("/keys/{id}", get(read).delete(revoke))
            .route("/whoami", get(whoami))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                rate_limited,
            ))
            .route("/metrics", get(metrics))
            .with_state(self);
        axum::serve(listener, app).await
    }

    /// Binds `addr` and serves in the background; returns the bound address.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(self.serve(listener));
        Ok(bound)
    }

    /// The keys that would pass `/whoami` now.
    pub fn valid_keys(&self) -> Vec<Key> {
        let now = Timestamp::now();
        let keys = self.keys.lock().expect("keys lock");
        keys.by_id
            .values()
            .filter(|k| k.valid(now))
            .cloned()
            .collect()
    }

    /// From now on, forgets every idempotency record at once: a repeated request mints
    /// another key, as after an issuer's retention of them ran out.
    pub fn forget_idempotency(&self) {
        self.keys.lock().expect("keys lock").forgetful = true;
    }

    /// How many API requests the rate limit refused.
    pub fn rate_limited(&self) -> u64 {
        self.keys.lock().expect("keys lock").rate_limited
    }

    /// The Idempotency-Keys creations presented, in order.
    pub fn presented_idempotency_keys(&self) -> Vec<String> {
        self.keys.lock().expect("keys lock").presented.clone()
    }

    pub fn key(&self, id: &str) -> Option<Key> {
        self.keys.lock().expect("keys lock").by_id.get(id).cloned()
    }

    /// An outage: the next `requests` requests, of any kind, are answered 503 (0 ends
    /// one).
    pub fn refuse_next_requests(&self, requests: usize) {
        self.keys.lock().expect("keys lock").outage = requests;
    }

    /// Answers the next key creations with `status` (and `Retry-After` seconds), `times`
    /// times.
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>, times: usize) {
        let status = StatusCode::from_u16(status).expect("a status code");
        let mut keys = self.keys.lock().expect("keys lock");
        keys.faults
            .extend(std::iter::repeat_n((status, retry_after), times));
    }

    /// The workspace whose admin token the request carries.
    fn workspace(&self, headers: &HeaderMap) -> Option<String> {
        let presented = bearer(headers)?;
        self.workspaces
            .iter()
            .find(|(_, token)| same(presented, token))
            .map(|(name, _)| name.clone())
    }

    /// The next injected failure, if any.
    fn fault(&self) -> Option<Response> {
        let mut keys = self.keys.lock().expect("keys lock");
        if keys.faults.is_empty() {
            return None;
        }
        let (status, retry_after) = keys.faults.remove(0);
        let mut response = error(status, "injected failure");
        if let Some(s) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, s.to_string().parse().expect("digits"));
        }
        Some(response)
    }
}

/// Refuses an API request in an outage (503), or over the rate limit with 429 and when
/// to come back (whole seconds, as `Retry-After` counts them).
async fn rate_limited(
    State(s): State<ReferenceIssuer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    {
        let mut keys = s.keys.lock().expect("keys lock");
        if keys.outage > 0 {
            keys.outage -= 1;
            return error(StatusCode::SERVICE_UNAVAILABLE, "the issuer is unavailable");
        }
    }
    if let Some((per_second, limit)) = &s.limit
        && let Err(wait) = limit.try_take().await
    {
        s.keys.lock().expect("keys lock").rate_limited += 1;
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "rate limit exceeded (the limit is {per_second} per second); retry after {seconds}s"
            ),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            seconds.to_string().parse().expect("digits"),
        );
        return response;
    }
    s.keys.lock().expect("keys lock").served += 1;
    next.run(request).await
}

/// The API's request counts, in the Prometheus text format (benchmarks read them).
async fn metrics(State(s): State<ReferenceIssuer>) -> String {
    let keys = s.keys.lock().expect("keys lock");
    format!(
        "# TYPE reference_issuer_requests counter\n\
         reference_issuer_requests_total{{outcome=\"served\"}} {}\n\
         reference_issuer_requests_total{{outcome=\"rate_limited\"}} {}\n",
        keys.served, keys.rate_limited
    )
}

/// Compares digests, so the time taken says nothing about how much of a secret matched.
fn same(a: &str, b: &str) -> bool {
    digest(a) == digest(b)
}

type Digest = [u8; 32];

/// A key is found by the digest of its secret, so the time a lookup takes says nothing
/// about how much of a secret matched.
fn digest(secret: &str) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "invalid admin token")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

fn ts(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| t.to_string().into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateKey {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_at: Option<Timestamp>,
    #[serde(default)]
    metadata: Value,
}

async fn create(
    State(s): State<ReferenceIssuer>,
    headers: HeaderMap,
    body: Result<Json<CreateKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(workspace) = s.workspace(&headers) else {
        return unauthorized();
    };
    if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        s.keys
            .lock()
            .expect("keys lock")
            .presented
            .push(k.to_string());
    }
    if let Some(r) = s.fault() {
        return r;
    }
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body is not a valid key request",
        );
    };
    let prefix = match req.kind.as_str() {
        "secret" => "sk_",
        "publishable" => "pk_",
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown key type {other:?}: secret or publishable"),
            );
        }
    };
    if req.name.is_empty() || req.scopes.iter().any(|s| s.is_empty() || s.len() > 128) {
        return error(
            StatusCode::BAD_REQUEST,
            "name and every scope must be 1-128 characters",
        );
    }
    // Idempotency records are per workspace.
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("{workspace}/{k}"));
    let mut keys = s.keys.lock().expect("keys lock");
    if let Some(existing) = idempotency_key
        .as_ref()
        .and_then(|k| keys.by_idempotency_key.get(k))
        .and_then(|id| keys.by_id.get(id))
    {
        return (StatusCode::CREATED, Json(created(existing))).into_response();
    }
    let (Ok(id), Ok(secret)) = (random_base62(&s.rng, 16), random_base62(&s.rng, 32)) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no randomness");
    };
    let key = Key {
        id: format!("key_{id}"),
        secret: format!("{prefix}{secret}"),
        kind: req.kind,
        workspace,
        scopes: req.scopes,
        owner: req.metadata["owner"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        created_at: Timestamp::now(),
        expires_at: req.expires_at,
        last_used_at: None,
        revoked: false,
        metadata: req.metadata,
    };
    let body = created(&key);
    if let Some(k) = idempotency_key.filter(|_| !keys.forgetful) {
        keys.by_idempotency_key.insert(k, key.id.clone());
    }
    keys.by_digest.insert(digest(&key.secret), key.id.clone());
    keys.by_owner
        .entry((key.workspace.clone(), key.owner.clone()))
        .or_default()
        .push(key.id.clone());
    keys.by_id.insert(key.id.clone(), key);
    (StatusCode::CREATED, Json(body)).into_response()
}

fn created(k: &Key) -> Value {
    json!({"id": k.id, "key": k.secret, "createdAt": k.created_at.to_string(), "expiresAt": ts(k.expires_at)})
}

async fn read(
    State(s): State<ReferenceIssuer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(workspace) = s.workspace(&headers) else {
        return unauthorized();
    };
    match s.key(&id).filter(|k| k.workspace == workspace) {
        Some(k) => Json(json!({"id": k.id, "createdAt": k.created_at.to_string(),
            "expiresAt": ts(k.expires_at), "lastUsedAt": ts(k.last_used_at), "revoked": k.revoked}))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "no such key"),
    }
}

async fn revoke(
    State(s): State<ReferenceIssuer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(workspace) = s.workspace(&headers) else {
        return unauthorized();
    };
    let mut keys = s.keys.lock().expect("keys lock");
    match keys.by_id.get_mut(&id) {
        Some(k) if !k.revoked && k.workspace == workspace => {
            k.revoked = true;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "no such key, or already revoked"),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    owner: Option<String>,
}

async fn list(
    State(s): State<ReferenceIssuer>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(workspace) = s.workspace(&headers) else {
        return unauthorized();
    };
    let keys = s.keys.lock().expect("keys lock");
    let candidates: Box<dyn Iterator<Item = &Key>> = match q.owner {
        Some(owner) => Box::new(
            keys.by_owner
                .get(&(workspace.clone(), owner))
                .into_iter()
                .flatten()
                .filter_map(|id| keys.by_id.get(id)),
        ),
        None => Box::new(keys.by_id.values()),
    };
    let mut items: Vec<&Key> = candidates
        .filter(|k| !k.revoked && k.workspace == workspace)
        .collect();
    items.sort_by_key(|k| k.created_at);
    let items: Vec<Value> = items
        .iter()
        .map(|k| json!({"id": k.id, "createdAt": k.created_at.to_string(), "metadata": k.metadata}))
        .collect();
    Json(json!({"items": items})).into_response()
}

/// What a service protected by these keys asks: is the presented key valid?
async fn whoami(State(s): State<ReferenceIssuer>, headers: HeaderMap) -> Response {
    let Some(presented) = bearer(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "no key presented");
    };
    let now = Timestamp::now();
    let mut keys = s.keys.lock().expect("keys lock");
    let found =
        (keys.by_digest.get(&digest(presented)).cloned()).and_then(|id| keys.by_id.get_mut(&id));
    match found {
        Some(k) if k.valid(now) => {
            k.last_used_at = Some(now);
            Json(json!({"id": k.id, "workspace": k.workspace, "type": k.kind, "scopes": k.scopes}))
                .into_response()
        }
        _ => error(StatusCode::UNAUTHORIZED, "invalid key"),
    }
}
