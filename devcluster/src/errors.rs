//! API errors rendered as `metav1.Status`, the shape every Kubernetes client parses.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// One invalid field, as listed in `status.details.causes`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub reason: &'static str,
    pub field: String,
    /// The message without the field path, e.g. `Required value`.
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>) -> Self {
        FieldError {
            reason: "FieldValueRequired",
            field: field.into(),
            detail: "Required value".into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, why: impl AsRef<str>) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            detail: format!("Invalid value: {}: {}", render_value(value), why.as_ref()),
        }
    }

    pub fn forbidden(field: impl Into<String>, why: impl Into<String>) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.into(),
            detail: format!("Forbidden: {}", why.into()),
        }
    }

    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.detail)
    }
}

/// Go's `%#v`-ish rendering kube-apiserver uses for invalid values.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(qualified_resource: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{qualified_resource} \"{name}\" not found"),
        )
        .with_details(resource_details(qualified_resource, name))
    }

    pub fn path_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(qualified_resource: &str, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{qualified_resource} \"{name}\" already exists"),
        )
        .with_details(resource_details(qualified_resource, name))
    }

    pub fn conflict(qualified_resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified_resource} \"{name}\": {why}"),
        )
        .with_details(resource_details(qualified_resource, name))
    }

    pub fn modified(qualified_resource: &str, name: &str) -> Self {
        Self::conflict(
            qualified_resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(qualified_kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let list = if errors.len() == 1 {
            errors[0].message()
        } else {
            format!(
                "[{}]",
                errors
                    .iter()
                    .map(FieldError::message)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.detail, "field": e.field}))
            .collect();
        let (group, kind) = match qualified_kind.split_once('.') {
            Some((k, g)) => (g, k),
            None => ("", qualified_kind),
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {list}"),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    pub fn too_many_requests(message: impl Into<String>, details: Value) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message).with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})"
            ),
        )
    }

    pub fn not_acceptable() -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// A status code injected by a test hook.
    pub fn injected(code: StatusCode) -> Self {
        let reason = match code.as_u16() {
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Expired",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(
            code,
            reason,
            format!("injected failure ({})", code.as_u16()),
        )
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn resource_details(qualified_resource: &str, name: &str) -> Value {
    let (kind, group) = qualified_resource
        .split_once('.')
        .unwrap_or((qualified_resource, ""));
    json!({"name": name, "group": group, "kind": kind})
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A list or watch from a resourceVersion the server has not reached (kube-apiserver
    /// answers 504 after waiting for it).
    pub fn too_large_resource_version(rv: u64, current: u64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("Too large resource version: {rv}, current: {current}"),
        )
        .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge",
            "message": "Too large resource version"}], "retryAfterSeconds": 1}))
    }

    /// Server-side apply conflicts, as kube-apiserver words them.
    pub fn apply_conflicts(conflicts: &[super::ownership::Conflict]) -> Self {
        let n = conflicts.len();
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for c in conflicts {
            let who = format!("\"{}\" using {}", c.manager, c.api_version);
            match groups.iter_mut().find(|(w, _)| *w == who) {
                Some((_, paths)) => paths.push(&c.path),
                None => groups.push((who, vec![&c.path])),
            }
        }
        let body = if n == 1 {
            format!("conflict with {}: {}", groups[0].0, groups[0].1[0])
        } else {
            groups
                .iter()
                .map(|(who, paths)| {
                    let word = if paths.len() == 1 {
                        "conflict"
                    } else {
                        "conflicts"
                    };
                    let lines: Vec<String> = paths.iter().map(|p| format!("- {p}")).collect();
                    format!("{word} with {who}:\n{}", lines.join("\n"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| {
                json!({"reason": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                "field": c.path})
            })
            .collect();
        let plural = if n == 1 { "" } else { "s" };
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Apply failed with {n} conflict{plural}: {body}"),
        )
        .with_details(json!({"causes": causes}))
    }

    /// A patch that could not be applied (a failed JSON-patch `test`, a missing path).
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }
}
