//! Who is asking (tokens, impersonation), what RBAC calls the request, and the
//! reviews and token requests that answer such questions.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum_server::tls::TlsInfo;
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::{self, UserInfo};
use crate::errors::FieldError;
use crate::errors::{ApiError, ApiResult};
use crate::meta;
use crate::rbac;
use crate::resources::{ResourceType, Review, StorageKey};

use super::*;

/// Who is asking: the admin (token or client certificate), a ServiceAccount token, a user
/// the admin impersonates, or, without credentials, `system:anonymous`. A token that does not verify is a 401.
pub(super) fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    tls: Option<&TlsInfo>,
) -> ApiResult<UserInfo> {
    // The TLS layer verified the chain; the admin's is the one certificate the CA issued.
    let admin_certificate = tls
        .and_then(|t| t.peer_certificates.first())
        .is_some_and(|der| *der == shared.admin_certificate.der);
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
        None if admin_certificate => UserInfo::admin(),
        None => UserInfo::anonymous(),
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
pub(super) fn attributes(verb: &str, route: &Route, path: &str) -> rbac::Attributes {
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
    /// TokenReview and the access reviews: computed, answered with 201, never stored.
    pub(super) fn review(
        &self,
        review: Review,
        rt: &ResourceType,
        ns: Option<&str>,
    ) -> ApiResult<Response> {
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
    pub(super) fn token_request(&self, ns: &str, name: &str) -> ApiResult<Response> {
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
}

/// Answers a (self) subject access review for `user` from RBAC; admins may do anything.
pub(super) fn access_review(
    st: &crate::apiserver::State,
    user: &UserInfo,
    mut review: Value,
) -> Value {
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
