//! Requests on resources: get, list, watch, create, update, patch, delete, and how
//! the answers are rendered.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::apiserver::{DeleteOptions, Deleted, Filter, ListOptions};
use crate::errors::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::table::{self, IncludeObject};
use crate::watch::{self, Format, WatchRequest};

use super::*;

impl RequestContext<'_> {
    pub(super) async fn resource(&self, r: ResourcePath) -> ApiResult<Response> {
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
        if rt.read_only && self.method != Method::GET {
            return Err(ApiError::method_not_allowed());
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
            Some(sub) => {
                let (Some(sub), Some(name)) = (rt.subresource(sub), r.name.as_deref()) else {
                    return Err(ApiError::path_not_found());
                };
                return self.subresource(&rt, ns, name, sub, negotiated);
            }
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
                let pt = self.patch_type()?;
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

    pub(super) fn delete_options(&self) -> ApiResult<DeleteOptions> {
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

    pub(super) fn finalize_namespace(&self, rt: &ResourceType, name: &str) -> ApiResult<Response> {
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

    pub(super) fn written(
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

    pub(super) fn include_object(&self) -> IncludeObject {
        IncludeObject::parse(self.query.get("includeObject"))
    }

    pub(super) fn render_one(
        &self,
        rt: &ResourceType,
        obj: Value,
        negotiated: Negotiated,
    ) -> Value {
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

    pub(super) fn filter(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> ApiResult<Filter> {
        let field = match (name, self.query.get("fieldSelector")) {
            (Some(n), Some(f)) if !f.is_empty() => Some(format!("metadata.name={n},{f}")),
            (Some(n), _) => Some(format!("metadata.name={n}")),
            (None, f) => f.map(String::from),
        };
        Filter::new(rt, ns, self.query.get("labelSelector"), field.as_deref())
    }

    pub(super) fn list(
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

    pub(super) fn delete_collection(
        &self,
        rt: Arc<ResourceType>,
        ns: Option<&str>,
    ) -> ApiResult<Response> {
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

    pub(super) fn watch(
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
