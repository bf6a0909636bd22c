//! Kubernetes protobuf request bodies, for the kinds kubectl's typed commands write
//! (`kubectl create secret|configmap|namespace|serviceaccount|token`, `kubectl auth can-i`)
//! and the DeleteOptions client-go sends with a delete (Helm's).
//! A body is the `k8s\0` magic and a `runtime.Unknown` envelope around the object's
//! message; each kind is decoded by a table of its field numbers from Kubernetes'
//! `generated.proto` and turned into the JSON the rest of the server handles.

use base64::Engine;
use serde_json::{Map, Value, json};

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Int,
    Bool,
    Time,
    Msg(&'static [Field]),
    StrMap,
    BytesMap,
}

#[derive(Clone, Copy)]
struct Field {
    number: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn f(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
    }
}

const fn list(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: true,
    }
}

const OWNER_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];

const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(5, "uid", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time),
    f(11, "labels", Kind::StrMap),
    f(12, "annotations", Kind::StrMap),
    list(13, "ownerReferences", Kind::Msg(OWNER_REFERENCE)),
    list(14, "finalizers", Kind::Str),
];

const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::BytesMap),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::StrMap),
    f(5, "immutable", Kind::Bool),
];

const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::StrMap),
    f(3, "binaryData", Kind::BytesMap),
    f(4, "immutable", Kind::Bool),
];

const NAMESPACE: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(&[list(1, "finalizers", Kind::Str)])),
];

const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::Str),
    f(2, "namespace", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
];

const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    list(2, "secrets", Kind::Msg(OBJECT_REFERENCE)),
    list(3, "imagePullSecrets", Kind::Msg(&[f(1, "name", Kind::Str)])),
    f(4, "automountServiceAccountToken", Kind::Bool),
];

const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            list(1, "audiences", Kind::Str),
            f(
                3,
                "boundObjectRef",
                Kind::Msg(&[
                    f(1, "kind", Kind::Str),
                    f(2, "apiVersion", Kind::Str),
                    f(3, "name", Kind::Str),
                    f(4, "uid", Kind::Str),
                ]),
            ),
            f(4, "expirationSeconds", Kind::Int),
        ]),
    ),
];

const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Kind::Str),
    f(2, "verb", Kind::Str),
    f(3, "group", Kind::Str),
    f(4, "version", Kind::Str),
    f(5, "resource", Kind::Str),
    f(6, "subresource", Kind::Str),
    f(7, "name", Kind::Str),
];

const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Msg(&[
            f(1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
            f(
                2,
                "nonResourceAttributes",
                Kind::Msg(&[f(1, "path", Kind::Str), f(2, "verb", Kind::Str)]),
            ),
        ]),
    ),
];

/// meta/v1 `DeleteOptions` (client-go sends them in protobuf on deletes, e.g. Helm).
const DELETE_OPTIONS: &[Field] = &[
    f(1, "gracePeriodSeconds", Kind::Int),
    f(
        2,
        "preconditions",
        Kind::Msg(&[f(1, "uid", Kind::Str), f(2, "resourceVersion", Kind::Str)]),
    ),
    f(3, "orphanDependents", Kind::Bool),
    f(4, "propagationPolicy", Kind::Str),
    list(5, "dryRun", Kind::Str),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1" | "meta.k8s.io/v1", "DeleteOptions") => DELETE_OPTIONS,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("truncated field".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((tag >> 3, wire)))
    }
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "string field is not UTF-8".to_string())
}

fn map_entry(b: &[u8], bytes_values: bool) -> Result<(String, Value), String> {
    let mut r = Reader { buf: b };
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    while let Some((n, w)) = r.next()? {
        if let Wire::Bytes(v) = w {
            match n {
                1 => key = text(v)?,
                2 if bytes_values => {
                    value = json!(base64::engine::general_purpose::STANDARD.encode(v))
                }
                2 => value = json!(text(v)?),
                _ => {}
            }
        }
    }
    Ok((key, value))
}

fn decode_message(buf: &[u8], fields: &[Field]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut r = Reader { buf };
    while let Some((number, wire)) = r.next()? {
        let Some(field) = fields.iter().find(|f| f.number == number) else {
            continue;
        };
        let value = match (field.kind, wire) {
            (Kind::Str, Wire::Bytes(b)) => json!(text(b)?),
            (Kind::Bytes, Wire::Bytes(b)) => {
                json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Kind::Int, Wire::Varint(v)) => json!(v as i64),
            (Kind::Bool, Wire::Varint(v)) => json!(v != 0),
            // Go sends an unset time as zero-length bytes.
            (Kind::Time, Wire::Bytes([])) => Value::Null,
            (Kind::Time, Wire::Bytes(b)) => {
                let t = decode_message(b, &[f(1, "seconds", Kind::Int)])?;
                let secs = t.get("seconds").and_then(Value::as_i64).unwrap_or(0);
                json!(
                    jiff::Timestamp::from_second(secs)
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                )
            }
            (Kind::Msg(inner), Wire::Bytes(b)) => Value::Object(decode_message(b, inner)?),
            (Kind::StrMap | Kind::BytesMap, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b, matches!(field.kind, Kind::BytesMap))?;
                let map = out.entry(field.name).or_insert_with(|| json!({}));
                map[k] = v;
                continue;
            }
            _ => return Err(format!("field {} has an unexpected wire type", field.name)),
        };
        if field.repeated {
            let list = out.entry(field.name).or_insert_with(|| json!([]));
            if let Some(l) = list.as_array_mut() {
                l.push(value);
            }
        } else {
            out.insert(field.name.to_string(), value);
        }
    }
    Ok(out)
}

const MAGIC: &[u8] = b"k8s\0";

/// `runtime.Unknown`: the envelope around every protobuf object.
const UNKNOWN: &[Field] = &[
    f(
        1,
        "typeMeta",
        Kind::Msg(&[f(1, "apiVersion", Kind::Str), f(2, "kind", Kind::Str)]),
    ),
    f(2, "raw", Kind::Bytes),
];

/// Decodes a protobuf request body into JSON; `Err` names what is not supported.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body lacks the k8s magic prefix")?;
    let unknown = decode_message(envelope, UNKNOWN)?;
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default();
    let kind = unknown["typeMeta"]["kind"].as_str().unwrap_or_default();
    let fields = schema(api_version, kind).ok_or_else(|| {
        format!("protobuf bodies of {api_version} {kind} are not supported; send JSON")
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(unknown["raw"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let mut obj = decode_message(&raw, fields)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    #[test]
    fn decodes_a_secret_envelope() {
        let mut meta = Vec::new();
        bytes_field(1, b"creds", &mut meta);
        bytes_field(3, b"default", &mut meta);
        let mut entry = Vec::new();
        bytes_field(1, b"token", &mut entry);
        bytes_field(2, b"s3cret", &mut entry);
        let mut secret = Vec::new();
        bytes_field(1, &meta, &mut secret);
        bytes_field(2, &entry, &mut secret);
        bytes_field(3, b"Opaque", &mut secret);
        varint(5 << 3, &mut secret);
        varint(1, &mut secret);
        let mut type_meta = Vec::new();
        bytes_field(1, b"v1", &mut type_meta);
        bytes_field(2, b"Secret", &mut type_meta);
        let mut body = MAGIC.to_vec();
        bytes_field(1, &type_meta, &mut body);
        bytes_field(2, &secret, &mut body);
        let v = decode(&body).unwrap();
        assert_eq!(
            v["metadata"],
            json!({"name": "creds", "namespace": "default"})
        );
        assert_eq!(v["data"]["token"], json!("czNjcmV0"));
        assert_eq!(
            (v["type"].clone(), v["immutable"].clone()),
            (json!("Opaque"), json!(true))
        );
        assert_eq!(v["kind"], "Secret");
        assert!(decode(b"not protobuf").is_err());
    }

    #[test]
    fn decodes_delete_options() {
        let mut pre = Vec::new();
        bytes_field(2, b"42", &mut pre);
        let mut options = Vec::new();
        varint(1 << 3, &mut options);
        varint(0, &mut options);
        bytes_field(2, &pre, &mut options);
        bytes_field(4, b"Background", &mut options);
        let mut type_meta = Vec::new();
        bytes_field(1, b"v1", &mut type_meta);
        bytes_field(2, b"DeleteOptions", &mut type_meta);
        let mut body = MAGIC.to_vec();
        bytes_field(1, &type_meta, &mut body);
        bytes_field(2, &options, &mut body);
        let v = decode(&body).unwrap();
        assert_eq!(v["gracePeriodSeconds"], 0);
        assert_eq!(v["preconditions"], json!({"resourceVersion": "42"}));
        assert_eq!(v["propagationPolicy"], "Background");
    }
}
