//! `ApiKey`: one API key that the operator mints, stores, distributes and rotates.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::GoDuration;
use super::limits;

/// What key to mint and where, how to rotate it, where to put it, and who consumes it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apikey.dev",
    version = "v1alpha1",
    kind = "ApiKey",
    namespaced,
    status = "ApiKeyStatus",
    shortname = "ak",
    category = "apikey-operator",
    doc = "An API key minted by an issuer, kept in a store, synced into a Secret and rotated with an overlap window.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Key","type":"string","jsonPath":".status.currentKey.id"}"#,
    printcolumn = r#"{"name":"Rotated","type":"date","jsonPath":".status.lastRotationTime"}"#,
    printcolumn = r#"{"name":"Next","type":"string","jsonPath":".status.nextRotationTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"description":"Why the key is (not) ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Rotation","type":"string","priority":1,"description":"Where a rotation stands, or why it fails","jsonPath":".status.conditions[?(@.type==\"Rotating\")].reason"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"description":"What to do, when something is wrong","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    validation = Rule::new("size(self.metadata.name) <= 63").message("the name must be at most 63 characters: it is used in labels and annotation keys"),
)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    /// The issuer that mints this key.
    pub issuer_ref: IssuerRef,
    #[serde(default)]
    /// `secret` (a scoped secret key, the default) or `publishable` (a read-only publishable key).
    /// Changing it rotates the key.
    pub key_type: KeyType,
    /// Scopes the key is minted with; the issuer's `allowedScopes` must cover them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::SCOPES), inner(length(max = limits::SCOPE)))]
    pub scopes: Vec<String>,
    /// The key's name at the issuer (default `<namespace>/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::DISPLAY_NAME))]
    pub display_name: Option<String>,
    /// Issuer-side lifetime of each key; must exceed every + overlap + rolloutTimeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<GoDuration>,
    /// When the key is rotated, and how long its predecessor stays valid.
    pub rotation: Rotation,
    /// Where the key material is kept besides Kubernetes (default: only Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<StoreRef>,
    #[serde(default)]
    /// The Secret pods read the key from (name, field names, labels, annotations).
    /// Changing it re-renders the Secret; no new key is minted.
    pub secret: SecretTemplate,
    /// Workloads rolled out after each new key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::CONSUMERS))]
    pub consumers: Vec<Consumer>,
    #[serde(default = "default_rollout_timeout")]
    /// How long consumers may take to roll out a new key before RolloutTimeout is reported
    /// (a Go duration, default 10m). Both keys stay valid meanwhile.
    pub rollout_timeout: GoDuration,
    #[serde(default)]
    /// What deleting the ApiKey does to its keys: `Retain` (the default) keeps the Secret and
    /// the keys valid; `Revoke` revokes every key it holds and deletes the Secret.
    pub deletion_policy: DeletionPolicy,
    /// No rotation starts while true (a change freeze) but an emergency one; one in flight
    /// completes.
    #[serde(default)]
    pub suspend: bool,
}

fn default_rollout_timeout() -> GoDuration {
    GoDuration::new("10m")
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IssuerRef {
    #[schemars(length(max = limits::OBJECT_NAME))]
    /// The issuer's name.
    pub name: String,
    #[serde(default)]
    /// `KeyIssuer` (the default: in the ApiKey's namespace) or `ClusterKeyIssuer`.
    pub kind: IssuerKind,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IssuerKind {
    #[default]
    KeyIssuer,
    ClusterKeyIssuer,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// A scoped secret key.
    #[default]
    Secret,
    /// A read-only publishable key.
    Publishable,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
// "Exactly one" rules are counted, not written `has(a) != has(b)`: kube-apiserver 1.24
// prices `!=` between two `has()` results as unbounded and refuses the CRD.
#[x_kube(
    validation = Rule::new("(has(self.every) ? 1 : 0) + (has(self.schedule) ? 1 : 0) == 1").message("set exactly one of rotation.every or rotation.schedule"),
    validation = Rule::new("!has(self.overlap) || !has(self.every) || duration(self.overlap) < duration(self.every)").message("rotation.overlap must be shorter than rotation.every"),
    validation = Rule::new("!has(self.timeZone) || has(self.schedule)").message("rotation.timeZone applies to rotation.schedule only"),
    validation = Rule::new("!has(self.every) || duration(self.every) >= duration('1s')").message("rotation.every must be at least 1s"),
)]
pub struct Rotation {
    /// Rotate this long after the current key was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<GoDuration>,
    /// Or rotate on a 5-field cron schedule, e.g. `0 3 * * 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::CRON), extend("pattern" = CRON_PATTERN))]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIME_ZONE))]
    pub time_zone: Option<String>,
    /// How long the previous key stays valid after consumers rolled out
    /// (default min(1h, every/4)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<GoDuration>,
    /// After the overlap, keep the previous key until the issuer reports it unused this
    /// long (issuers that report use: http with `get`, awsIam with a 4h floor; others
    /// revoke after the overlap alone). Status shows its `lastUsedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_when_unused_for: Option<GoDuration>,
    /// With revokeWhenUnusedFor: the previous key goes this long after rollout completion,
    /// in use or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_overlap: Option<GoDuration>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoreRef {
    #[schemars(length(max = limits::OBJECT_NAME))]
    /// The store's name.
    pub name: String,
    #[serde(default)]
    /// `KeyStore` (the default: in the ApiKey's namespace) or `ClusterKeyStore`.
    pub kind: StoreKind,
    /// Where in the store the key lives, below the store's prefix (default
    /// `<namespace>/<name>`). With a namespaced KeyStore the namespace is always the first
    /// segment: the path replaces only `<name>`. Segments of `[A-Za-z0-9._-]`, separated
    /// by single `/`, no `.` or `..` segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::STORE_PATH))]
    #[x_kube(validation = Rule::new(STORE_PATH_RULE).message(STORE_PATH_MESSAGE))]
    pub path: Option<String>,
}

/// Relative segments of safe characters: no leading or trailing `/`, no empty, `.` or `..`
/// segment (`crate::store::location` checks the same at run time). A rule rather than a
/// pattern, so the error says it in words.
const STORE_PATH_RULE: &str =
    "self.matches('^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$') && !self.matches('(^|/)[.][.]?(/|$)')";
const STORE_PATH_MESSAGE: &str = "storeRef.path must be relative segments of letters, digits, '.', '_' or '-' separated by single '/', with no '.' or '..' segment (e.g. team/billing)";

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    #[default]
    KeyStore,
    ClusterKeyStore,
}

/// The Secret pods consume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// One field holding two things would put a key where an id is shown (status, events).
#[x_kube(validation = Rule::new(DISTINCT_FIELDS).message("secret.currentKeyField, keyIdField, previousKeyField and previousKeyIdField must all differ"))]
#[x_kube(validation = Rule::new(TEMPLATE_FIELDS).message("secret.template must not name currentKeyField, keyIdField, previousKeyField or previousKeyIdField: those fields hold the keys themselves"))]
pub struct SecretTemplate {
    /// Default: the ApiKey's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::OBJECT_NAME))]
    pub name: Option<String>,
    #[serde(default = "field_current")]
    #[schemars(length(max = limits::SECRET_DATA_KEY))]
    /// The Secret field holding the current key (default `api-key`).
    pub current_key_field: String,
    #[serde(default = "field_key_id")]
    #[schemars(length(max = limits::SECRET_DATA_KEY))]
    /// The Secret field holding the current key's id at the issuer (default `api-key-id`).
    pub key_id_field: String,
    /// Present only during an overlap.
    #[serde(default = "field_previous")]
    #[schemars(length(max = limits::SECRET_DATA_KEY))]
    pub previous_key_field: String,
    #[serde(default = "field_previous_id")]
    #[schemars(length(max = limits::SECRET_DATA_KEY))]
    /// The Secret field holding the previous key's id, during an overlap (default
    /// `api-key-id-previous`).
    pub previous_key_id_field: String,
    /// Copied onto the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = limits::SECRET_METADATA_ENTRIES, "additionalProperties" = {"type": "string", "maxLength": limits::LABEL_VALUE}))]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = limits::SECRET_METADATA_ENTRIES, "additionalProperties" = {"type": "string", "maxLength": limits::ANNOTATION_VALUE}))]
    /// Annotations copied onto the Secret (at most 64).
    pub annotations: BTreeMap<String, String>,
    /// More Secret fields rendered from the key with a template (MiniJinja, a Jinja2
    /// subset): field name → template, e.g. `.env: "WIDGETJAR_KEY={{ key }}"`. Variables:
    /// key, keyId, fingerprint, previousKey and previousKeyId (none outside an overlap),
    /// name, namespace. Filters include tojson and urlencode. At most 16 fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = limits::SECRET_TEMPLATES, "additionalProperties" = {"type": "string", "maxLength": limits::SECRET_TEMPLATE}))]
    pub template: BTreeMap<String, String>,
}

/// Five cron fields (minute hour day-of-month month day-of-week) of the characters each
/// may hold; what a pattern cannot check (ranges, names) the controller explains.
const CRON_PATTERN: &str =
    r"^[0-9*/,-]+ +[0-9*/,-]+ +[0-9*/,?LW-]+ +[0-9A-Za-z*/,-]+ +[0-9A-Za-z*/,?L#-]+$";

const DISTINCT_FIELDS: &str = "self.currentKeyField != self.keyIdField && self.currentKeyField != self.previousKeyField && self.currentKeyField != self.previousKeyIdField && self.keyIdField != self.previousKeyField && self.keyIdField != self.previousKeyIdField && self.previousKeyField != self.previousKeyIdField";

const TEMPLATE_FIELDS: &str = "!has(self.template) || [self.currentKeyField, self.keyIdField, self.previousKeyField, self.previousKeyIdField].all(f, !(f in self.template))";

fn field_current() -> String {
    "api-key".into()
}
fn field_key_id() -> String {
    "api-key-id".into()
}
fn field_previous() -> String {
    "api-key-previous".into()
}
fn field_previous_id() -> String {
    "api-key-id-previous".into()
}

impl Default for SecretTemplate {
    fn default() -> Self {
        SecretTemplate {
            name: None,
            current_key_field: field_current(),
            key_id_field: field_key_id(),
            previous_key_field: field_previous(),
            previous_key_id_field: field_previous_id(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            template: BTreeMap::new(),
        }
    }
}

/// A workload rolled out after each new key: by name, or every one a selector matches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Counted, not `!=` (see Rotation).
#[x_kube(validation = Rule::new("(has(self.name) ? 1 : 0) + (has(self.selector) ? 1 : 0) == 1").message("a consumer has exactly one of name or selector"))]
pub struct Consumer {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: ConsumerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::OBJECT_NAME))]
    /// The workload's name, in the ApiKey's namespace. One that does not exist is reported
    /// (Ready=False ConsumerNotFound) and keeps the previous key from being revoked.
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "limits::label_selector")]
    /// Or every workload of `kind` whose labels match (none matching does not block).
    pub selector: Option<LabelSelector>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the Secret and the keys valid (as cert-manager and External Secrets do).
    #[default]
    Retain,
    /// Revoke every key the ApiKey holds, clean the store, delete the Secret.
    Revoke,
}

/// Where the key stands, written by the operator: key ids and fingerprints, never keys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The spec generation this status describes.
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Where the key stands: Issuing, Storing, RollingOut, Blocked (a consumer
    /// will not roll out or does not exist), Overlapping, Revoking, Ready, Suspended, Error
    /// (a transient failure, retried) or Failed (waits for a change you make).
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "limits::conditions")]
    /// `Ready` (a usable key is in the Secret) and `Rotating` (a rotation in progress, queued,
    /// or failing), with a reason and a message that says what to do.
    pub conditions: Vec<Condition>,
    #[serde(default)]
    /// How many keys this ApiKey has issued (never goes back).
    pub rotation_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When the current key was issued (RFC 3339).
    pub last_rotation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When the next rotation is due: the schedule or the current key's expiry margin,
    /// whichever comes first (RFC 3339). Empty while the spec is invalid.
    pub next_rotation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The key in the Secret's current field.
    pub current_key: Option<KeyStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The key before it, during an overlap: still valid until revoked.
    pub previous_key: Option<KeyStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// A rotation in flight: recorded before the issuer is called.
    pub pending_key: Option<PendingKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::CONSUMER_STATUSES))]
    /// Each consumer workload and whether it runs with the current key (at most 256).
    pub consumers: Vec<ConsumerStatus>,
    /// The last rotation attempt abandoned: its idempotency key is never used again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_abandoned: Option<AttemptRef>,
    /// When consumers were last patched with the current key (for rolloutTimeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    pub rollout_started_at: Option<String>,
    /// The consumer Secret the keys were last written to: when `spec.secret.name` changes,
    /// the old one is cleaned up (released under Retain, deleted under Revoke).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::OBJECT_NAME))]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The request annotation values already acted on.
    pub handled_requests: Option<HandledRequests>,
    /// The last 10 keys this ApiKey held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::HISTORY))]
    pub history: Vec<HistoryEntry>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Minting the next key at the issuer.
    Issuing,
    /// Writing the new key to the store.
    Storing,
    /// Waiting for consumers to roll out with the new key. (Earlier versions wrote
    /// `Distributing` just before: read as this.)
    #[serde(alias = "Distributing")]
    RollingOut,
    /// Rolling out, but a consumer will not roll out by itself or does not exist (the
    /// conditions say which): both keys stay valid until you act.
    Blocked,
    /// Both keys valid until the overlap ends.
    Overlapping,
    /// Revoking the previous key at the issuer.
    Revoking,
    /// The current key is distributed; nothing in progress.
    Ready,
    /// `spec.suspend` is set: no rotation starts but an emergency one.
    Suspended,
    /// Waits for a change you make (the Ready condition says which).
    Failed,
    /// A transient failure (issuer, store or Kubernetes API unavailable), being retried.
    Error,
}

/// The issuer a key was minted by, recorded so it is revoked where it came from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IssuerRecord {
    /// KeyIssuer or ClusterKeyIssuer.
    pub kind: IssuerKind,
    #[schemars(length(max = limits::OBJECT_NAME))]
    /// The issuer's name.
    pub name: String,
    #[schemars(length(max = limits::KEY_ID))]
    /// The issuer's uid when the key was minted.
    pub uid: String,
}

/// The external store a key lives in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoreRecord {
    #[schemars(length(max = limits::SHORT))]
    /// The kind of store.
    pub kind: String,
    #[schemars(length(max = limits::OBJECT_NAME))]
    /// The store's name.
    pub name: String,
    #[schemars(length(max = limits::URL))]
    /// Where in the store the key is kept.
    pub location: String,
    /// The `storeRef.path` it was stored under, if one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::STORE_PATH))]
    pub path: Option<String>,
}

/// A key as status shows it: its id and a short fingerprint, never the key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    #[schemars(length(max = limits::KEY_ID))]
    /// The key's id at the issuer (never the key).
    pub id: String,
    /// `sha256:` + the first 12 hex digits of the key's SHA-256.
    #[schemars(length(max = limits::FINGERPRINT))]
    pub fingerprint: String,
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When the key was issued (RFC 3339).
    pub issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When the issuer expires the key, if it does (RFC 3339).
    pub expires_at: Option<String>,
    /// The rotation that issued it.
    pub rotation: u64,
    /// The issuer that minted it (where it is revoked).
    pub issuer: IssuerRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The external store it is kept in, if any.
    pub store: Option<StoreRecord>,
    /// Previous key only: when it may be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    pub revoke_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When the issuer last saw it used, if it reports that (RFC 3339).
    pub last_used_at: Option<String>,
    /// The key-defining spec (scopes, keyType, issuer, lifetime) it was minted for.
    #[serde(default)]
    #[schemars(length(max = limits::MINTED_FOR))]
    pub minted_for: String,
    /// Previous key only: replaced by an emergency rotation (revoked at once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emergency: bool,
}

/// A rotation in flight: the intent is recorded before the issuer is called, the id and
/// fingerprint as soon as it answers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingKey {
    /// The rotation this key will be.
    pub rotation: u64,
    /// The attempt of that rotation (part of the idempotency key; never reused).
    pub attempt: u32,
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When the rotation started (RFC 3339).
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::KEY_ID))]
    /// The minted key's id, recorded as soon as the issuer answers.
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::FINGERPRINT))]
    /// `sha256:` and the first 12 hex digits of the minted key's SHA-256.
    pub fingerprint: Option<String>,
    /// The issuer it is minted at.
    pub issuer: IssuerRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The external store it is kept in, if any.
    pub store: Option<StoreRecord>,
    /// The key-defining spec it is minted for; a change abandons it.
    #[serde(default)]
    #[schemars(length(max = limits::MINTED_FOR))]
    pub minted_for: String,
    /// What started this rotation (Initial, Scheduled, Expiring, SpecChanged, Requested, Emergency).
    #[schemars(length(max = limits::REASON))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When the issuer expires it, if it does (RFC 3339).
    pub expires_at: Option<String>,
    /// What the issuer is asked for, recorded with the intent: a retry or a revocation
    /// of this rotation's key asks again with exactly that, whatever the spec says now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<MintParameters>,
    /// Being abandoned: its key is revoked and never promoted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoning: bool,
    /// Keys the issuer answered this rotation's request with before the one recorded (an
    /// issuer that does not honour idempotency keys): revoked before the rotation goes on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::SUPERSEDED_KEYS), inner(length(max = limits::KEY_ID)))]
    pub superseded: Vec<String>,
}

/// The spec fields a key is minted with.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MintParameters {
    #[schemars(length(max = limits::DISPLAY_NAME))]
    /// The key's name at the issuer.
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::SCOPES), inner(length(max = limits::SCOPE)))]
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// secret or publishable.
    pub key_type: KeyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The lifetime asked for (a Go duration).
    pub expires_after: Option<GoDuration>,
}

/// A rotation attempt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AttemptRef {
    /// The rotation.
    pub rotation: u64,
    /// Its attempt.
    pub attempt: u32,
}

/// A consumer workload and whether it runs with the current key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: ConsumerKind,
    #[schemars(length(max = limits::OBJECT_NAME))]
    /// The workload's name.
    pub name: String,
    /// Every pod runs with the current key.
    pub rolled_out: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::MESSAGE))]
    /// Why not yet (rolling, paused, OnDelete, not found).
    pub message: Option<String>,
}

/// The last value of each request annotation that was acted on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HandledRequests {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::KEY_ID))]
    /// The last `apikey.dev/rotate` value acted on (a longer value by its SHA-256).
    pub rotate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::KEY_ID))]
    /// The last `apikey.dev/emergency-rotate` value acted on.
    pub emergency_rotate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::KEY_ID))]
    /// The last `apikey.dev/revoke-previous` value acted on.
    pub revoke_previous: Option<String>,
}

/// A key this ApiKey held, and why it went.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The rotation that issued the key.
    pub rotation: u64,
    #[schemars(length(max = limits::KEY_ID))]
    /// The key's id at the issuer.
    pub id: String,
    #[schemars(length(max = limits::FINGERPRINT))]
    /// Its fingerprint.
    pub fingerprint: String,
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::TIMESTAMP))]
    /// When it was revoked (absent: not revoked, see reason).
    pub revoked_at: Option<String>,
    #[schemars(length(max = limits::REASON))]
    /// Why it went: Superseded (its overlap ended), Unused or MaxOverlapReached
    /// (usage-aware revocation), Compromised, RevokePreviousRequested, Abandoned, or
    /// NotRevoked (its issuer was gone: revoke it there by hand).
    pub reason: String,
}

/// Annotations users (and the kubectl plugin) set; each new value is acted on once.
pub mod annotations {
    pub const ROTATE: &str = "apikey.dev/rotate";
    pub const EMERGENCY_ROTATE: &str = "apikey.dev/emergency-rotate";
    pub const REVOKE_PREVIOUS: &str = "apikey.dev/revoke-previous";
    /// A setting, not a request: the IAM user an `awsIam` issuer mints this ApiKey's keys
    /// for, instead of its `userNameTemplate`.
    pub const AWS_IAM_USER_NAME: &str = "apikey.dev/aws-iam-user-name";
}
