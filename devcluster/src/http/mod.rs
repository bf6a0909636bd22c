//! The HTTP front: Kubernetes REST paths, authentication, content negotiation (JSON,
//! Table, PartialObjectMetadata), test hooks, and `metav1.Status` errors. Paths are parsed
//! in `routes.rs`, who is asking in `identity.rs`, resource requests in `resources.rs`.

mod identity;
mod resources;
mod routes;
mod subresources;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::apiserver::{FieldValidation, WriteOptions};
use super::auth::UserInfo;
use super::discovery;
use super::errors::{ApiError, ApiResult};
use super::hooks::Fault;
use super::patch;
use super::protobuf;
use super::rbac;

use identity::*;
use routes::*;

const MAX_BODY: usize = 16 * 1024 * 1024;
/// kube-apiserver's default for watches without `timeoutSeconds` (min-request-timeout).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

fn json_response(code: StatusCode, v: &Value) -> Response {
    let mut r = (code, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.code, &self.to_status())
    }
}

/// What the client asked the body to be (`Accept`).
fn negotiate(headers: &HeaderMap) -> Negotiated {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    // Clients list preferences in order; take the first form we serve.
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
            return Negotiated::Table;
        }
        if p.contains("as=PartialObjectMetadata") {
            return Negotiated::Metadata;
        }
        if p.starts_with("application/json")
            || p.starts_with("*/*")
            || p.starts_with("application/*")
        {
            return Negotiated::Object;
        }
    }
    // Protobuf-only clients (client-go typed clientsets) decode by the response's
    // Content-Type, so JSON serves them too.
    if accept.contains("application/vnd.kubernetes.protobuf") {
        return Negotiated::Object;
    }
    Negotiated::Unacceptable
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Negotiated {
    Object,
    Table,
    Metadata,
    Unacceptable,
}

struct Query(HashMap<String, String>);

impl Query {
    fn parse(uri: &axum::http::Uri) -> Self {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|q| q.0)
            .unwrap_or_default();
        Query(pairs.into_iter().collect())
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string()
}

fn verb_of(method: &Method, route: &Route, q: &Query) -> (&'static str, String) {
    let Route::Resource(r) = route else {
        return (
            if method == Method::GET {
                "get"
            } else {
                "other"
            },
            String::new(),
        );
    };
    let verb = match (method.as_str(), r.name.is_some()) {
        ("GET", _) if r.legacy_watch || q.flag("watch") => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    (verb, r.plural.clone())
}

pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let q = Query::parse(&parts.uri);
    let route = parse_route(parts.uri.path());
    let ua = user_agent(&parts.headers);
    let public = matches!(
        route,
        Some(Route::Health | Route::OpenIdConfiguration | Route::Jwks)
    );
    let tls = parts.extensions.get::<Arc<axum_server::tls::TlsInfo>>();
    let user = match authenticate(&shared, &parts.headers, tls.map(Arc::as_ref)) {
        Ok(user) => user,
        Err(_) if public => UserInfo::anonymous(),
        Err(e) => return e.into_response(),
    };
    let Some(route) = route else {
        return ApiError::path_not_found().into_response();
    };
    let (verb, resource) = verb_of(&parts.method, &route, &q);
    shared.hooks.count(verb, &resource, &ua);
    // Anonymous requests get only what RBAC grants `system:unauthenticated` (health and
    // version, by the bootstrap policy), even when RBAC is not enforced for others.
    let authorize = if user.is_anonymous() {
        !public
    } else {
        shared.config.rbac && !user.is_admin()
    };
    if authorize {
        let attrs = attributes(verb, &route, parts.uri.path());
        let allowed = (!user.is_anonymous() && rbac::allowed_by_default(&attrs))
            || rbac::authorize(&shared.api.lock(), &user, &attrs).is_ok();
        if !allowed {
            let message = attrs.forbidden_message(&user);
            shared.hooks.deny(message.clone());
            let mut e = ApiError::forbidden(message);
            e.details =
                Some(json!({"name": attrs.name, "group": attrs.group, "kind": attrs.resource}));
            return e.into_response();
        }
    }
    let fault = shared.hooks.take_fault(verb, &resource);
    let injected = |code| {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::injected(code).into_response()
    };
    if let Some(fault) = &fault {
        if let Some(d) = fault.delay {
            tokio::time::sleep(d).await;
        }
        if let Some(code) = fault.status
            && !fault.applied
        {
            return injected(code);
        }
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::bad_request("request body too large or unreadable").into_response();
        }
    };
    let ctx = RequestContext {
        shared: &shared,
        method: parts.method,
        headers: parts.headers,
        query: q,
        body,
        user_agent: ua,
        user,
    };
    let response = match ctx.dispatch(route).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    match fault {
        Some(Fault {
            status: Some(code),
            applied: true,
            ..
        }) => injected(code),
        _ => response,
    }
}

struct RequestContext<'a> {
    shared: &'a Arc<Shared>,
    method: Method,
    headers: HeaderMap,
    query: Query,
    body: Bytes,
    user_agent: String,
    user: UserInfo,
}

impl RequestContext<'_> {
    /// The aggregated discovery version the client accepts and the release serves.
    fn aggregated_discovery(&self) -> Option<&'static str> {
        let accept = self.headers.get(header::ACCEPT)?.to_str().ok()?;
        discovery::aggregated::negotiate(accept, self.shared.config.kubernetes_minor)
    }

    async fn dispatch(&self, route: Route) -> ApiResult<Response> {
        let api = &self.shared.api;
        let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
        match route {
            Route::Root => ok(
                json!({"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version", "/healthz"]}),
            ),
            Route::Health => Ok((StatusCode::OK, "ok").into_response()),
            Route::Metrics => Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                self.shared.hooks.metrics_text(),
            )
                .into_response()),
            Route::Version => ok(discovery::version(self.shared.config.kubernetes_minor)),
            Route::CoreVersions | Route::Groups if self.aggregated_discovery().is_some() => {
                let version = self.aggregated_discovery().unwrap_or_default();
                let core = matches!(route, Route::CoreVersions);
                let doc = discovery::aggregated::document(&api.lock().registry, core, version);
                let mut r = json_response(StatusCode::OK, &doc);
                if let Ok(ct) = HeaderValue::from_str(&discovery::aggregated::content_type(version))
                {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                Ok(r)
            }
            Route::CoreVersions => ok(discovery::api_versions(&self.shared.addr.to_string())),
            Route::Groups => ok(discovery::group_list(&api.lock().registry)),
            Route::Group(g) => discovery::group(&api.lock().registry, &g)
                .map_or_else(|| Err(ApiError::path_not_found()), ok),
            Route::GroupVersion(g, v) => discovery::resource_list(&api.lock().registry, &g, &v)
                .map_or_else(|| Err(ApiError::path_not_found()), ok),
            Route::OpenApiV2 => Ok(self.openapi_v2()),
            Route::OpenApiV3Index => ok(discovery::openapi_v3_index(&api.lock().registry)),
            Route::OpenApiV3(g, v) => discovery::openapi_v3_document(&api.lock().registry, &g, &v)
                .map_or_else(|| Err(ApiError::path_not_found()), ok),
            Route::OpenIdConfiguration => ok(self
                .shared
                .signer
                .openid_configuration(&format!("https://{}", self.shared.addr))),
            Route::Jwks => ok(self.shared.signer.jwks()),
            Route::Resource(r) => self.resource(r).await,
        }
    }

    /// kubectl fetches the v2 document as protobuf before validating; an empty protobuf
    /// message is a valid, empty document, and the v3 documents then tell kubectl to
    /// validate server-side.
    fn openapi_v2(&self) -> Response {
        let accept = self
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("protobuf") {
            let mut r = (StatusCode::OK, Body::empty()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                ),
            );
            return r;
        }
        json_response(
            StatusCode::OK,
            &json!({"swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}}),
        )
    }

    fn write_options(&self) -> ApiResult<WriteOptions> {
        Ok(WriteOptions {
            field_manager: self.query.get("fieldManager").map(String::from),
            user_agent: self.user_agent.clone(),
            dry_run: self.query.get("dryRun") == Some("All"),
            validation: FieldValidation::parse(self.query.get("fieldValidation"))?,
            force: self.query.flag("force"),
        })
    }

    fn body_json(&self) -> ApiResult<Value> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        if ct.contains("protobuf") {
            return protobuf::decode(&self.body).map_err(|why| {
                let mut e = ApiError::unsupported_media_type(ct);
                e.message = why;
                e
            });
        }
        patch::parse_body(&self.body, ct.contains("yaml"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match parse_route(path) {
            Some(Route::Resource(r)) => r,
            _ => panic!("{path} is not a resource path"),
        }
    }

    #[test]
    fn parses_kubernetes_paths() {
        let r = resource("/apis/apps/v1/namespaces/shop/deployments/web/status");
        assert_eq!(
            (r.group.as_str(), r.plural.as_str()),
            ("apps", "deployments")
        );
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("web"), Some("status"))
        );
        let ns = resource("/api/v1/namespaces/shop/status");
        assert_eq!(
            (ns.plural.as_str(), ns.name.as_deref(), ns.namespace),
            ("namespaces", Some("shop"), None)
        );
        let w = resource("/api/v1/watch/namespaces/d/secrets");
        assert!(w.legacy_watch && w.namespace.as_deref() == Some("d"));
        let all = resource("/api/v1/secrets");
        assert!(all.namespace.is_none() && all.name.is_none());
        assert!(
            matches!(parse_route("/openapi/v3/apis/apikey.dev/v1alpha1"), Some(Route::OpenApiV3(g, v)) if g == "apikey.dev" && v == "v1alpha1")
        );
        assert!(parse_route("/apis/apps/v1/namespaces/a/deployments/b/c/d").is_none());
    }

    #[test]
    fn negotiates_tables_and_metadata() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(negotiate(&h) == Negotiated::Table);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            ),
        );
        assert!(negotiate(&h) == Negotiated::Metadata);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf, */*"),
        );
        assert!(negotiate(&h) == Negotiated::Object);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        assert!(negotiate(&h) == Negotiated::Object);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/cbor"));
        assert!(negotiate(&h) == Negotiated::Unacceptable);
    }
}
