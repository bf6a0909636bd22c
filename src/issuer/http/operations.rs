//! The requests of each operation: the Issuer API v1 by default, or what
//! `spec.http.operations` maps them to. Pure: templates filled in structurally, answers
//! read by JSON pointer.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::api::issuer::{HttpMethod, HttpOperation, HttpOperations};

/// One operation, ready to fill in.
#[derive(Clone, Debug)]
pub struct Op {
    pub method: Method,
    path: String,
    body: Option<Value>,
    pub id: String,
    pub key: String,
    pub expires_at: String,
    pub last_used_at: String,
    pub revoked: String,
    pub items: String,
    pub uid: String,
}

/// Every operation of an issuer.
#[derive(Clone, Debug)]
pub struct Ops {
    pub create: Op,
    pub revoke: Op,
    pub get: Op,
    pub list: Op,
    pub verify: Op,
}

fn v1(method: Method, path: &str, body: Option<Value>) -> Op {
    Op {
        method,
        path: path.into(),
        body,
        id: "/id".into(),
        key: "/key".into(),
        expires_at: "/expiresAt".into(),
        last_used_at: "/lastUsedAt".into(),
        revoked: "/revoked".into(),
        items: "/items".into(),
        uid: "/metadata/uid".into(),
    }
}

/// The operations `mapped` describes, v1 for those it leaves out.
pub fn resolve(mapped: Option<&HttpOperations>) -> Result<Ops, String> {
    let create_body = json!({"name": "{{name}}", "type": "{{type}}", "scopes": "{{scopes}}",
        "expiresAt": "{{expiresAt}}",
        "metadata": {"owner": "{{owner}}", "uid": "{{uid}}", "rotation": "{{rotation}}"}});
    let mut ops = Ops {
        create: v1(Method::POST, "/keys", Some(create_body)),
        revoke: v1(Method::DELETE, "/keys/{id}", None),
        get: v1(Method::GET, "/keys/{id}", None),
        list: v1(Method::GET, "/keys?owner={owner}", None),
        verify: v1(Method::GET, "/whoami", None),
    };
    let Some(m) = mapped else {
        return Ok(ops);
    };
    for (name, op, from) in [
        ("create", &mut ops.create, &m.create),
        ("revoke", &mut ops.revoke, &m.revoke),
        ("get", &mut ops.get, &m.get),
        ("list", &mut ops.list, &m.list),
        ("verify", &mut ops.verify, &m.verify),
    ] {
        if let Some(f) = from {
            *op = mapped_op(f).map_err(|e| format!("operations.{name}: {e}"))?;
        }
    }
    Ok(ops)
}

fn mapped_op(f: &HttpOperation) -> Result<Op, String> {
    let body = match &f.body {
        Some(b) => Some(serde_json::from_str(b).map_err(|e| format!("body is not JSON: {e}"))?),
        None => None,
    };
    let pointer = |p: &Option<String>, default: &str| -> Result<String, String> {
        let p = p.clone().unwrap_or_else(|| default.into());
        if !p.is_empty() && !p.starts_with('/') {
            return Err(format!("{p:?} is not a JSON pointer (they start with '/')"));
        }
        Ok(p)
    };
    let mut op = v1(method(f.method), &f.path, body);
    op.id = pointer(&f.id_pointer, "/id")?;
    op.key = pointer(&f.key_pointer, "/key")?;
    op.expires_at = pointer(&f.expires_at_pointer, "/expiresAt")?;
    op.last_used_at = pointer(&f.last_used_at_pointer, "/lastUsedAt")?;
    op.revoked = pointer(&f.revoked_pointer, "/revoked")?;
    op.items = pointer(&f.items_pointer, "/items")?;
    op.uid = pointer(&f.uid_pointer, "/metadata/uid")?;
    Ok(op)
}

fn method(m: HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

impl Op {
    /// The path with `{id}` and `{owner}` filled in, each URL-encoded.
    pub fn path(&self, id: &str, owner: &str) -> String {
        let enc =
            |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        self.path
            .replace("{id}", &enc(id))
            .replace("{owner}", &enc(owner))
    }

    /// The body with every `{{var}}` string replaced by `vars[var]` as a JSON value.
    pub fn body(&self, vars: &Map<String, Value>) -> Option<Value> {
        self.body.as_ref().map(|b| fill(b, vars))
    }
}

fn fill(template: &Value, vars: &Map<String, Value>) -> Value {
    match template {
        Value::String(s) => s
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .and_then(|var| vars.get(var))
            .cloned()
            .unwrap_or_else(|| template.clone()),
        Value::Array(items) => Value::Array(items.iter().map(|i| fill(i, vars)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The string at `pointer` in `answer`.
pub fn text<'a>(answer: &'a Value, pointer: &str) -> Option<&'a str> {
    answer.pointer(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Map<String, Value> {
        let Value::Object(m) = json!({"name": "shop/billing\", \"admin\": true", "type": "secret",
            "scopes": ["a", "b"], "expiresAt": null, "owner": "shop/billing", "uid": "u1",
            "rotation": 3})
        else {
            unreachable!()
        };
        m
    }

    #[test]
    fn values_go_in_as_json_never_as_text() {
        let ops = resolve(None).unwrap();
        let body = ops.create.body(&vars()).unwrap();
        assert_eq!(
            body["name"], "shop/billing\", \"admin\": true",
            "a hostile name stays a string"
        );
        assert_eq!(body["scopes"], json!(["a", "b"]));
        assert_eq!(body["metadata"]["rotation"], 3);
        assert!(body.get("admin").is_none());
        assert_eq!(ops.revoke.path("key/1?x", ""), "/keys/key%2F1%3Fx");
        assert_eq!(
            ops.list.path("", "shop/billing"),
            "/keys?owner=shop%2Fbilling"
        );
    }

    #[test]
    fn a_mapping_replaces_only_the_operations_it_names() {
        let mapped = HttpOperations {
            create: Some(HttpOperation {
                method: HttpMethod::Post,
                path: "/v2/credentials".into(),
                body: Some(
                    r#"{"label": "{{name}}", "grants": "{{scopes}}", "fixed": "{{nope}}"}"#.into(),
                ),
                id_pointer: Some("/credential/id".into()),
                key_pointer: Some("/credential/secret".into()),
                expires_at_pointer: None,
                last_used_at_pointer: None,
                revoked_pointer: None,
                items_pointer: None,
                uid_pointer: None,
            }),
            ..Default::default()
        };
        let ops = resolve(Some(&mapped)).unwrap();
        assert_eq!(ops.create.path("", ""), "/v2/credentials");
        assert_eq!(
            ops.create.body(&vars()).unwrap(),
            json!({"label": "shop/billing\", \"admin\": true", "grants": ["a", "b"], "fixed": "{{nope}}"})
        );
        assert_eq!(ops.create.key, "/credential/secret");
        assert_eq!(
            ops.revoke.path("k", ""),
            "/keys/k",
            "revoke keeps its v1 form"
        );
        let mut bad = mapped.clone();
        bad.create.as_mut().unwrap().key_pointer = Some("secret".into());
        assert!(
            resolve(Some(&bad))
                .unwrap_err()
                .contains("operations.create")
        );
    }
}
