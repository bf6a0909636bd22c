//! The HTTP front: Kubernetes REST paths, authentication, content negotiation (JSON,
//! Table, PartialObjectMetadata), test hooks, and `metav1.Status` errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::apiserver::{
    DeleteOptions, Deleted, FieldValidation, Filter, ListOptions, WriteOptions,
};
use super::auth::{self, UserInfo};
use super::discovery;
use super::errors::FieldError;
use super::errors::{ApiError, ApiResult};
use super::meta;
use super::patch::{self, PatchType};
use super::protobuf;
use super::rbac;
use super::resources::{ResourceType, Review, StorageKey};
use super::table::{self, IncludeObject};
use super::watch::{self, Format, WatchRequest};

const MAX_BODY: usize = 16 * 1024 * 1024;
/// kube-apiserver's default for watches without `timeoutSeconds` (min-request-timeout).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

enum Route {
    Root,
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String, String),
    OpenIdConfiguration,
    Jwks,
    Resource(ResourcePath),
}

struct ResourcePath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    legacy_watch: bool,
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let owned = |s: &str| s.to_string();
    Some(match segs.as_slice() {
        [] => Route::Root,
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["api", v] => Route::GroupVersion(String::new(), owned(v)),
        ["api", v, rest @ ..] => Route::Resource(parse_resource("", v, rest)?),
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group(owned(g)),
        ["apis", g, v] => Route::GroupVersion(owned(g), owned(v)),
        ["apis", g, v, rest @ ..] => Route::Resource(parse_resource(g, v, rest)?),
        [".well-known", "openid-configuration"] => Route::OpenIdConfiguration,
        ["openid", "v1", "jwks"] => Route::Jwks,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3(String::new(), owned(v)),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3(owned(g), owned(v)),
        _ => return None,
    })
}

fn parse_resource(group: &str, version: &str, rest: &[&str]) -> Option<ResourcePath> {
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, subresource) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(n.to_string()), None),
        [p, n, s] => (p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(ResourcePath {
        group: group.into(),
        version: version.into(),
        plural: plural.to_string(),
        namespace,
        name,
        subresource,
        legacy_watch,
    })
}

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
    let user = match authenticate(&shared, &parts.headers) {
        Ok(user) => user,
        Err(_) if public => UserInfo::admin(),
        Err(e) => return e.into_response(),
    };
    let Some(route) = route else {
        return ApiError::path_not_found().into_response();
    };
    let (verb, resource) = verb_of(&parts.method, &route, &q);
    shared.hooks.count(verb, &resource, &ua);
    if shared.config.rbac && !user.is_admin() {
        let attrs = attributes(verb, &route, parts.uri.path());
        let allowed = rbac::allowed_by_default(&attrs)
            || rbac::authorize(&shared.api.lock(), &user, &attrs).is_ok();
        if !allowed {
            let mut e = ApiError::forbidden(attrs.forbidden_message(&user));
            e.details =
                Some(json!({"name": attrs.name, "group": attrs.group, "kind": attrs.resource}));
            return e.into_response();
        }
    }
    if let Some(fault) = shared.hooks.take_fault(verb, &resource) {
        if let Some(d) = fault.delay {
            tokio::time::sleep(d).await;
        }
        if let Some(code) = fault.status {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return ApiError::injected(code).into_response();
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
    match ctx.dispatch(route).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
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

/// Who is asking: the admin token, a ServiceAccount token, or a user the admin
/// impersonates.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> ApiResult<UserInfo> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
    let user = match bearer {
        Some(b) if auth::constant_time_eq(b, &shared.admin_token) => UserInfo::admin(),
        None => return Err(ApiError::unauthorized()),
        Some(b) => {
            let st = shared.api.lock();
            let verified = shared
                .signer
                .verify(&st, b)
                .map_err(|_| ApiError::unauthorized())?;
            // A token minted for another audience (e.g. "vault") is not a credential here.
            if !verified.audiences.iter().any(|a| a == auth::ISSUER) {
                return Err(ApiError::unauthorized());
            }
            verified.user
        }
    };
    let Some(as_user) = headers
        .get("Impersonate-User")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(user);
    };
    if !user.is_admin() {
        return Err(ApiError::forbidden(format!(
            "users \"{as_user}\" is forbidden: User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
            user.username
        )));
    }
    let mut groups: Vec<String> = headers
        .get_all("Impersonate-Group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(String::from)
        .collect();
    if let Some((ns, _)) = as_user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups.push("system:authenticated".into());
    Ok(UserInfo {
        username: as_user.to_string(),
        uid: String::new(),
        groups,
    })
}

/// The request in RBAC terms.
fn attributes(verb: &str, route: &Route, path: &str) -> rbac::Attributes {
    let Route::Resource(r) = route else {
        return rbac::Attributes {
            verb: "get".into(),
            path: Some(path.to_string()),
            ..Default::default()
        };
    };
    let name = r.name.clone().unwrap_or_default();
    let namespace = match (&r.namespace, r.group.is_empty() && r.plural == "namespaces") {
        (Some(ns), _) => ns.clone(),
        (None, true) => name.clone(),
        (None, false) => String::new(),
    };
    rbac::Attributes {
        verb: verb.into(),
        group: r.group.clone(),
        resource: r.plural.clone(),
        subresource: r.subresource.clone().unwrap_or_default(),
        namespace,
        name,
        path: None,
    }
}

impl RequestContext<'_> {
    async fn dispatch(&self, route: Route) -> ApiResult<Response> {
        let api = &self.shared.api;
        let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
        match route {
            Route::Root => ok(
                json!({"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version", "/healthz"]}),
            ),
            Route::Health => Ok((StatusCode::OK, "ok").into_response()),
            Route::Version => ok(discovery::version(self.shared.config.kubernetes_minor)),
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

    async fn resource(&self, r: ResourcePath) -> ApiResult<Response> {
        let api = &self.shared.api;
        let rt = api
            .resource(&r.group, &r.version, &r.plural)
            .ok_or_else(ApiError::path_not_found)?;
        if r.namespace.is_some() && !rt.namespaced {
            return Err(ApiError::path_not_found());
        }
        let negotiated = negotiate(&self.headers);
        if negotiated == Negotiated::Unacceptable {
            return Err(ApiError::not_acceptable());
        }
        let ns = r.namespace.as_deref();
        if rt.namespaced
            && ns.is_none()
            && (r.name.is_some() || self.method != Method::GET && self.method != Method::DELETE)
        {
            return Err(ApiError::path_not_found());
        }
        if let Some(review) = rt.review {
            if self.method != Method::POST || r.name.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            return self.review(review, &rt, ns);
        }
        let status = match r.subresource.as_deref() {
            None => false,
            Some("status") if rt.status_subresource => true,
            Some("token")
                if rt.group.is_empty()
                    && rt.plural == "serviceaccounts"
                    && self.method == Method::POST =>
            {
                return self.token_request(
                    ns.unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default(),
                );
            }
            Some("finalize")
                if rt.group.is_empty()
                    && rt.plural == "namespaces"
                    && self.method == Method::PUT =>
            {
                return self.finalize_namespace(&rt, r.name.as_deref().unwrap_or_default());
            }
            Some(_) => return Err(ApiError::path_not_found()),
        };
        let watching = r.legacy_watch || self.query.flag("watch");
        let method = self.method.clone();
        match (method, r.name.as_deref()) {
            (Method::GET, _) if watching => self.watch(rt, ns, r.name.as_deref(), negotiated),
            (Method::GET, Some(name)) => {
                let obj = api.get(&rt, ns, name)?;
                Ok(json_response(
                    StatusCode::OK,
                    &self.render_one(&rt, obj, negotiated),
                ))
            }
            (Method::GET, None) => self.list(rt, ns, negotiated),
            (Method::POST, None) => {
                let w = api.create(&rt, ns, self.body_json()?, &self.write_options()?)?;
                Ok(self.written(StatusCode::CREATED, &rt, w.object, &w.warnings, negotiated))
            }
            (Method::PUT, Some(name)) => {
                let w = api.update(
                    &rt,
                    ns,
                    name,
                    self.body_json()?,
                    status,
                    &self.write_options()?,
                )?;
                Ok(self.written(StatusCode::OK, &rt, w.object, &w.warnings, negotiated))
            }
            (Method::PATCH, Some(name)) => {
                let ct = self
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let pt = PatchType::from_content_type(ct)
                    .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
                let w = api.patch(
                    &rt,
                    ns,
                    name,
                    pt,
                    &self.body,
                    status,
                    &self.write_options()?,
                )?;
                let code = if w.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(self.written(code, &rt, w.object, &w.warnings, negotiated))
            }
            (Method::DELETE, Some(name)) => {
                let opts = self.delete_options()?;
                match api.delete(&rt, ns, name, &opts)? {
                    Deleted::Pending(o) => Ok(json_response(StatusCode::OK, &o)),
                    Deleted::Gone(o) if rt.is_custom() => Ok(json_response(StatusCode::OK, &o)),
                    Deleted::Gone(o) => Ok(json_response(
                        StatusCode::OK,
                        &json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                        "uid": o.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)}
                        }),
                    )),
                }
            }
            (Method::DELETE, None) => self.delete_collection(rt, ns),
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    /// TokenReview and the access reviews: computed, answered with 201, never stored.
    fn review(&self, review: Review, rt: &ResourceType, ns: Option<&str>) -> ApiResult<Response> {
        let mut body = self.body_json()?;
        if !body.is_object() || !body.get("spec").is_none_or(Value::is_object) {
            return Err(ApiError::bad_request(format!(
                "the body of a {} must be an object with an object spec",
                rt.kind
            )));
        }
        body["apiVersion"] = json!(rt.api_version());
        body["kind"] = json!(rt.kind);
        let st = self.shared.api.lock();
        let answered = match review {
            Review::Token => auth::token_review(&self.shared.signer, &st, body),
            Review::SelfSubjectAccess => access_review(&st, &self.user, body),
            Review::SubjectAccess | Review::LocalSubjectAccess => {
                if review == Review::LocalSubjectAccess {
                    body["spec"]["resourceAttributes"]["namespace"] = json!(ns.unwrap_or_default());
                }
                let spec = &body["spec"];
                let subject = UserInfo {
                    username: spec["user"].as_str().unwrap_or_default().into(),
                    uid: spec["uid"].as_str().unwrap_or_default().into(),
                    groups: meta::string_list(spec.get("groups")).unwrap_or_default(),
                };
                access_review(&st, &subject, body)
            }
        };
        Ok(json_response(StatusCode::CREATED, &answered))
    }

    /// `serviceaccounts/{name}/token`: a signed, bound token with audiences and expiry.
    fn token_request(&self, ns: &str, name: &str) -> ApiResult<Response> {
        let body = if self.body.is_empty() {
            json!({})
        } else {
            self.body_json()?
        };
        let st = self.shared.api.lock();
        let key = StorageKey {
            group: String::new(),
            resource: "serviceaccounts".into(),
        };
        let sa = st
            .store
            .get(&key, ns, name)
            .ok_or_else(|| ApiError::not_found("serviceaccounts", name))?;
        let expiration = body
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(3600);
        let too = if expiration < 600 {
            Some("may not specify a duration less than 10 minutes")
        } else if expiration > 1 << 32 {
            Some("may not specify a duration larger than 2^32 seconds")
        } else {
            None
        };
        if let Some(why) = too {
            return Err(ApiError::invalid(
                "TokenRequest",
                name,
                &[FieldError::invalid(
                    "spec.expirationSeconds",
                    &json!(expiration),
                    why,
                )],
            ));
        }
        let audiences: Vec<String> = meta::string_list(body.pointer("/spec/audiences"))
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| vec![auth::ISSUER.to_string()]);
        let (token, exp) = self.shared.signer.issue(&sa, &audiences, expiration);
        let expires = jiff::Timestamp::from_second(exp)
            .map(|t| t.to_string())
            .unwrap_or_default();
        Ok(json_response(
            StatusCode::CREATED,
            &json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": meta::now_rfc3339()},
                "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": body.pointer("/spec/boundObjectRef")},
                "status": {"token": token, "expirationTimestamp": expires},
            }),
        ))
    }

    fn delete_options(&self) -> ApiResult<DeleteOptions> {
        let body = if self.body.is_empty() {
            json!({})
        } else {
            self.body_json()?
        };
        DeleteOptions::from_body(
            &body,
            self.query.get("propagationPolicy"),
            self.query.get("dryRun") == Some("All"),
        )
    }

    fn finalize_namespace(&self, rt: &ResourceType, name: &str) -> ApiResult<Response> {
        let body = self.body_json()?;
        let finalizers = body
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or_else(|| json!([]));
        let api = &self.shared.api;
        let mut st = api.lock();
        let updated = api
            .mutate(
                &mut st,
                &rt.storage,
                "",
                name,
                "namespace-controller",
                false,
                |o| {
                    o["spec"]["finalizers"] = finalizers;
                },
            )
            .ok_or_else(|| ApiError::not_found("namespaces", name))?;
        Ok(json_response(StatusCode::OK, &updated))
    }

    fn written(
        &self,
        code: StatusCode,
        rt: &ResourceType,
        obj: Value,
        warnings: &[String],
        negotiated: Negotiated,
    ) -> Response {
        let mut r = json_response(code, &self.render_one(rt, obj, negotiated));
        for w in warnings {
            if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", json!(w))) {
                r.headers_mut().append(header::WARNING, v);
            }
        }
        r
    }

    fn include_object(&self) -> IncludeObject {
        IncludeObject::parse(self.query.get("includeObject"))
    }

    fn render_one(&self, rt: &ResourceType, obj: Value, negotiated: Negotiated) -> Value {
        match negotiated {
            Negotiated::Table => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                table::render(
                    rt,
                    std::slice::from_ref(&obj),
                    self.include_object(),
                    &rv,
                    None,
                    true,
                )
            }
            Negotiated::Metadata => table::partial_object_metadata(&obj),
            _ => obj,
        }
    }

    fn filter(&self, rt: &ResourceType, ns: Option<&str>, name: Option<&str>) -> ApiResult<Filter> {
        let field = match (name, self.query.get("fieldSelector")) {
            (Some(n), Some(f)) if !f.is_empty() => Some(format!("metadata.name={n},{f}")),
            (Some(n), _) => Some(format!("metadata.name={n}")),
            (None, f) => f.map(String::from),
        };
        Filter::new(rt, ns, self.query.get("labelSelector"), field.as_deref())
    }

    fn list(
        &self,
        rt: Arc<ResourceType>,
        ns: Option<&str>,
        negotiated: Negotiated,
    ) -> ApiResult<Response> {
        let filter = self.filter(&rt, ns, None)?;
        let opts = ListOptions {
            limit: self.query.get("limit").and_then(|l| l.parse().ok()),
            continue_token: self
                .query
                .get("continue")
                .filter(|c| !c.is_empty())
                .map(String::from),
            resource_version: self.query.get("resourceVersion").map(String::from),
            resource_version_match: self.query.get("resourceVersionMatch").map(String::from),
        };
        let result = self.shared.api.list(&rt, &filter, &opts)?;
        let body = match negotiated {
            Negotiated::Table => table::render(
                &rt,
                &result.items,
                self.include_object(),
                &result.resource_version,
                result.continue_token.as_deref(),
                true,
            ),
            _ => {
                let mut metadata = json!({"resourceVersion": result.resource_version});
                if let Some(c) = &result.continue_token {
                    metadata["continue"] = json!(c);
                }
                if let Some(n) = result.remaining {
                    metadata["remainingItemCount"] = json!(n);
                }
                if negotiated == Negotiated::Metadata {
                    let items: Vec<Value> = result
                        .items
                        .iter()
                        .map(table::partial_object_metadata)
                        .collect();
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items})
                } else {
                    json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": metadata, "items": result.items})
                }
            }
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    fn delete_collection(&self, rt: Arc<ResourceType>, ns: Option<&str>) -> ApiResult<Response> {
        let filter = self.filter(&rt, ns, None)?;
        let opts = self.delete_options()?;
        let api = &self.shared.api;
        let listed = api.list(&rt, &filter, &ListOptions::default())?;
        let mut deleted = Vec::new();
        for o in listed.items {
            let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
            let name = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match api.delete(&rt, ns, name, &opts) {
                Ok(Deleted::Gone(o) | Deleted::Pending(o)) => deleted.push(o),
                Err(e) if e.code == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            }
        }
        let rv = api.lock().store.current_rv().to_string();
        Ok(json_response(
            StatusCode::OK,
            &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": rv}, "items": deleted}),
        ))
    }

    fn watch(
        &self,
        rt: Arc<ResourceType>,
        ns: Option<&str>,
        name: Option<&str>,
        negotiated: Negotiated,
    ) -> ApiResult<Response> {
        let filter = self.filter(&rt, ns, name)?;
        let format = match negotiated {
            Negotiated::Table => Format::Table(self.include_object()),
            Negotiated::Metadata => Format::Metadata,
            _ => Format::Object,
        };
        let timeout = self
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .filter(|t| *t > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_WATCH_TIMEOUT);
        let req = WatchRequest {
            rt,
            filter,
            resource_version: self.query.get("resourceVersion").map(String::from),
            resource_version_match: self.query.get("resourceVersionMatch").map(String::from),
            send_initial_events: self.query.flag("sendInitialEvents"),
            bookmarks: self.query.flag("allowWatchBookmarks"),
            timeout,
            format,
        };
        let stream = watch::start(
            &self.shared.api,
            req,
            self.shared.config.bookmark_interval,
            self.shared.hooks.watch_cuts(),
        )?;
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(r)
    }
}

/// Answers a (self) subject access review for `user` from RBAC; admins may do anything.
fn access_review(st: &super::apiserver::State, user: &UserInfo, mut review: Value) -> Value {
    let spec = &review["spec"];
    let attrs = if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        rbac::Attributes {
            verb: field("verb"),
            group: field("group"),
            resource: field("resource"),
            subresource: field("subresource"),
            namespace: field("namespace"),
            name: field("name"),
            path: None,
        }
    } else {
        let n = &spec["nonResourceAttributes"];
        rbac::Attributes {
            verb: n["verb"].as_str().unwrap_or_default().into(),
            path: Some(n["path"].as_str().unwrap_or_default().into()),
            ..Default::default()
        }
    };
    let decision = if user.is_admin() {
        Ok(String::new())
    } else if rbac::allowed_by_default(&attrs) {
        Ok("allowed for every authenticated user".into())
    } else {
        rbac::authorize(st, user, &attrs)
    };
    review["status"] = match decision {
        Ok(reason) if reason.is_empty() => json!({"allowed": true}),
        Ok(reason) => json!({"allowed": true, "reason": reason}),
        Err(()) => json!({"allowed": false}),
    };
    review
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
