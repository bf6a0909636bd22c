//! Bounds on every string, list and map of the API.
//!
//! kube-apiserver prices each CEL rule by the largest value its inputs could hold: a string
//! without `maxLength` counts as a whole 3 MiB request, a list without `maxItems` as
//! hundreds of thousands of items. Unbounded schemas make rules too expensive to register,
//! so every field is bounded, as Gateway API does. The figures are documented for users in
//! `docs/operator.md#limits`; a test fails when a generated schema has an unbounded field.

use schemars::{Schema, SchemaGenerator};
use serde_json::{Value, json};

/// A Kubernetes object name (DNS subdomain, RFC 1123).
pub const OBJECT_NAME: u32 = 253;
/// A key in a Secret's `data`.
pub const SECRET_DATA_KEY: u32 = 253;
/// A Go duration such as `720h` or `1h30m`.
pub const DURATION: u32 = 32;
/// A 5-field cron schedule.
pub const CRON: u32 = 128;
/// An IANA time zone name (the longest in the database has 32 characters).
pub const TIME_ZONE: u32 = 64;
/// One scope, or one `allowedScopes` glob.
pub const SCOPE: u32 = 128;
/// Scopes one key asks for.
pub const SCOPES: u32 = 32;
/// Globs one issuer allows.
pub const ALLOWED_SCOPES: u32 = 64;
/// Workloads one ApiKey rolls out (each by name or by selector).
pub const CONSUMERS: u32 = 32;
/// Consumers reported in status (a selector may match more workloads than `CONSUMERS`).
pub const CONSUMER_STATUSES: u32 = 256;
/// A key's display name at the issuer.
pub const DISPLAY_NAME: u32 = 256;
/// A path below a store's prefix.
pub const STORE_PATH: u32 = 512;
/// A URL (issuer API, Vault server, AWS endpoint).
pub const URL: u32 = 2048;
/// A PEM CA bundle.
pub const CA_BUNDLE: u32 = 65_536;
/// A short identifier: a key prefix, an AWS region, a Vault mount or role.
pub const SHORT: u32 = 64;
/// A longer identifier: a path prefix, a Vault namespace, a KMS key ARN.
pub const IDENTIFIER: u32 = 256;
/// Labels or annotations copied onto the consumer Secret.
pub const SECRET_METADATA_ENTRIES: u32 = 64;
/// Templated fields in the consumer Secret, and the length of each template.
pub const SECRET_TEMPLATES: u32 = 16;
pub const SECRET_TEMPLATE: u32 = 8192;
/// A label value (Kubernetes allows 63 characters).
pub const LABEL_VALUE: u32 = 63;
/// An annotation value copied onto the Secret.
pub const ANNOTATION_VALUE: u32 = 4096;
/// Audiences of a ServiceAccount token.
pub const AUDIENCES: u32 = 8;
/// A key id at an issuer, a uid, a request annotation's value.
pub const KEY_ID: u32 = 256;
/// `sha256:` and 12 hex digits, with room to spare.
pub const FINGERPRINT: u32 = 64;
/// An RFC 3339 timestamp.
pub const TIMESTAMP: u32 = 64;
/// A CamelCase reason.
pub const REASON: u32 = 64;
/// A message in status.
pub const MESSAGE: u32 = 1024;
/// The key-defining spec a key was minted for.
pub const MINTED_FOR: u32 = 8192;
/// Entries kept in `status.history`.
pub const HISTORY: u32 = 16;
/// Ids of keys one rotation's request was answered with before the one it keeps.
pub const SUPERSEDED_KEYS: u32 = 8;

/// A `metav1.LabelSelector` with every part bounded, as Gateway API bounds its selectors.
pub fn label_selector(generator: &mut SchemaGenerator) -> Schema {
    let mut value: Value = generator
        .subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>()
        .into();
    // Used for optional fields only: what kube's generator writes for an `Option`.
    value["nullable"] = json!(true);
    if let Some(props) = value.get_mut("properties") {
        props["matchLabels"]["maxProperties"] = json!(SECRET_METADATA_ENTRIES);
        props["matchLabels"]["additionalProperties"]["maxLength"] = json!(LABEL_VALUE);
        let expressions = &mut props["matchExpressions"];
        expressions["maxItems"] = json!(16);
        let item = &mut expressions["items"]["properties"];
        // A qualified name: a DNS subdomain prefix, '/', and 63 characters.
        item["key"]["maxLength"] = json!(317);
        item["operator"]["maxLength"] = json!(16);
        item["values"]["maxItems"] = json!(64);
        item["values"]["items"]["maxLength"] = json!(LABEL_VALUE);
    }
    Schema::try_from(value).expect("an object schema")
}

/// `status.conditions`: bounded as the upstream `metav1.Condition` validation markers say.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let mut value: Value = generator
        .subschema_for::<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>()
        .into();
    value["maxItems"] = json!(8);
    let item = &mut value["items"]["properties"];
    item["type"]["maxLength"] = json!(316);
    item["reason"]["maxLength"] = json!(1024);
    item["message"]["maxLength"] = json!(32_768);
    item["status"]["enum"] = json!(["True", "False", "Unknown"]);
    item["lastTransitionTime"]["maxLength"] = json!(TIMESTAMP);
    Schema::try_from(value).expect("an array schema")
}

/// Doc comments wrap at 100 columns; `kubectl explain` wraps descriptions itself, so a
/// line break inside a paragraph would show as a break mid-sentence.
pub fn unwrap_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(d)) = map.get_mut("description") {
                *d = d
                    .split("\n\n")
                    .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            map.values_mut().for_each(unwrap_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// `nullable: true` already says a field may be null; kubectl's client-side validation
/// refuses `null` as an enum value ("unknown object type \"nil\""), which schemars emits
/// for `Option<enum>`.
pub fn drop_null_from_enums(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            map.values_mut().for_each(drop_null_from_enums);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_from_enums),
        _ => {}
    }
}
