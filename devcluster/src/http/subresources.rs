//! Requests on subresources other than `status`: each does what kube-apiserver's
//! subresource storage does, and nothing else.

use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::apiserver::{Part, scale_of, scaled};
use crate::errors::{ApiError, ApiResult};
use crate::patch::{self, PatchType};
use crate::resources::{ResourceType, Subresource};

use super::*;

impl RequestContext<'_> {
    pub(super) fn subresource(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        sub: &Subresource,
        negotiated: Negotiated,
    ) -> ApiResult<Response> {
        let api = &self.shared.api;
        let ok = |obj: Value| Ok(json_response(StatusCode::OK, &obj));
        match (sub, &self.method) {
            (Subresource::Token, &Method::POST) => self.token_request(ns.unwrap_or_default(), name),
            (Subresource::Finalize, &Method::PUT) => self.finalize_namespace(rt, name),
            (Subresource::Scale(paths), &Method::GET) => {
                ok(scale_of(&api.get(rt, ns, name)?, paths))
            }
            (Subresource::Scale(paths), &Method::PUT | &Method::PATCH) => {
                let part = Part::from_json_path(&paths.spec_replicas);
                let requested = |old: &Value| {
                    let scale = if self.method == Method::PUT {
                        self.body_json()?
                    } else {
                        patch::apply_patch(
                            self.subresource_patch_type()?,
                            &scale_of(old, paths),
                            &self.body,
                        )?
                    };
                    scaled(old, &scale, paths)
                };
                let w = api.write_part(rt, ns, name, &part, &self.write_options()?, requested)?;
                ok(scale_of(&w.object, paths))
            }
            (Subresource::Approval | Subresource::EphemeralContainers, &Method::GET) => {
                ok(self.render_one(rt, api.get(rt, ns, name)?, negotiated))
            }
            (
                Subresource::Approval | Subresource::EphemeralContainers,
                &Method::PUT | &Method::PATCH,
            ) => {
                let part = if *sub == Subresource::Approval {
                    Part::at("/status/conditions")
                } else {
                    Part::at("/spec/ephemeralContainers")
                };
                let requested = |old: &Value| {
                    if self.method == Method::PUT {
                        self.body_json()
                    } else {
                        patch::apply_patch(self.subresource_patch_type()?, old, &self.body)
                    }
                };
                let w = api.write_part(rt, ns, name, &part, &self.write_options()?, requested)?;
                Ok(self.written(StatusCode::OK, rt, w.object, &w.warnings, negotiated))
            }
            (Subresource::Eviction, &Method::POST) => {
                let eviction = self.body_json()?;
                let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
                let opts = crate::apiserver::DeleteOptions::from_body(&options, None, false)?;
                api.evict(rt, ns.unwrap_or_default(), name, &opts)?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success", "code": 201}),
                ))
            }
            (Subresource::Kubelet(_), _) => {
                let pod = api.get(rt, ns, name)?;
                Err(
                    match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                        None | Some("") => ApiError::bad_request(format!(
                            "pod {name} does not have a host assigned"
                        )),
                        Some(node) => ApiError::service_unavailable(format!(
                            "no kubelet serves node {node:?}: the dev cluster runs no containers"
                        )),
                    },
                )
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The PATCH body's type, from its Content-Type (415 for one not served).
    pub(super) fn patch_type(&self) -> ApiResult<PatchType> {
        let ct = self.content_type();
        PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))
    }

    /// A subresource's PATCH: any type but server-side apply.
    fn subresource_patch_type(&self) -> ApiResult<PatchType> {
        match self.patch_type()? {
            PatchType::Apply => Err(ApiError::unsupported_media_type(self.content_type())),
            pt => Ok(pt),
        }
    }
}
