//! The consumer Secret: a projection of status and store, rendered whole and applied
//! with server-side apply, so hand edits are reverted and dropped fields disappear.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use secrecy::{ExposeSecret, SecretString};

use super::reconcile::MANAGER;
use super::templates;
use serde::{Deserialize, Serialize};

use crate::api::apikey::{ApiKey, IssuerRecord};

pub const NAME_LABEL: &str = "apikey.dev/name";
pub const FINGERPRINT_ANNOTATION: &str = "apikey.dev/fingerprint";

/// Where the Secret's keys came from (by key id): the issuer that minted each and the
/// key-defining spec it was minted for, so a successor that adopts them revokes them
/// where they came from and rotates if its spec differs.
pub const PROVENANCE_ANNOTATION: &str = "apikey.dev/provenance";

/// Set when an ApiKey releases its Secret (deletion with `Retain`, or a renamed Secret):
/// `namespace/name` of that ApiKey. Only a Secret carrying it is adopted by a successor
/// of that name — a Secret that merely has the name label (copied from an example,
/// mirrored by another tool) is someone else's.
pub const RELEASED_ANNOTATION: &str = "apikey.dev/released-by";

/// The patch that releases a Secret: no owner (it outlives the ApiKey), and the mark
/// that lets a successor of the same name adopt it.
pub fn release_patch(ak: &ApiKey) -> serde_json::Value {
    serde_json::json!({"metadata": {
        "ownerReferences": null,
        "annotations": {RELEASED_ANNOTATION: released_by(ak)},
    }})
}

fn released_by(ak: &ApiKey) -> String {
    format!("{}/{}", ak.namespace().unwrap_or_default(), ak.name_any())
}

/// One key as the Secret carries it.
pub struct Held<'a> {
    pub id: &'a str,
    pub fingerprint: &'a str,
    pub secret: &'a SecretString,
    pub issuer: &'a IssuerRecord,
    pub minted_for: &'a str,
}

/// What the provenance annotation records of one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub issuer: IssuerRecord,
    pub minted_for: String,
}

pub fn secret_name(ak: &ApiKey) -> String {
    ak.spec.secret.name.clone().unwrap_or_else(|| ak.name_any())
}

/// The Secret as it should be; an error only from `spec.secret.template`.
pub fn render(
    ak: &ApiKey,
    current: &Held<'_>,
    previous: Option<&Held<'_>>,
) -> Result<Secret, String> {
    let t = &ak.spec.secret;
    let bytes = |s: &SecretString| ByteString(s.expose_secret().as_bytes().to_vec());
    let mut data = BTreeMap::from([
        (t.current_key_field.clone(), bytes(current.secret)),
        (
            t.key_id_field.clone(),
            ByteString(current.id.as_bytes().to_vec()),
        ),
    ]);
    if let Some(p) = previous {
        data.insert(t.previous_key_field.clone(), bytes(p.secret));
        data.insert(
            t.previous_key_id_field.clone(),
            ByteString(p.id.as_bytes().to_vec()),
        );
    }
    let vars = templates::Vars {
        key: current.secret,
        key_id: current.id,
        fingerprint: current.fingerprint,
        previous: previous.map(|p| (p.id, p.secret)),
        name: &ak.name_any(),
        namespace: &ak.namespace().unwrap_or_default(),
    };
    for (field, value) in templates::render(&t.template, &vars)? {
        data.insert(field, ByteString(value.into_bytes()));
    }
    let mut labels = t.labels.clone();
    labels.insert(NAME_LABEL.into(), ak.name_any());
    let mut annotations = t.annotations.clone();
    annotations.insert(FINGERPRINT_ANNOTATION.into(), current.fingerprint.into());
    let provenance: BTreeMap<&str, Provenance> = [Some(current), previous]
        .into_iter()
        .flatten()
        .map(|h| {
            let p = Provenance {
                issuer: h.issuer.clone(),
                minted_for: h.minted_for.into(),
            };
            (h.id, p)
        })
        .collect();
    annotations.insert(
        PROVENANCE_ANNOTATION.into(),
        serde_json::to_string(&provenance).expect("provenance serializes"),
    );
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(ak)),
            namespace: ak.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: ak.controller_owner_ref(&()).map(|mut r| {
                r.block_owner_deletion = Some(true);
                vec![r]
            }),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    })
}

/// The label, annotation or data keys (`section`: `/f:metadata/f:labels`,
/// `/f:metadata/f:annotations`, `/f:data`) the operator owns on a Secret, from its
/// managedFields: through its applies, or through the create that made the Secret.
fn owned_keys(actual: &Secret, section: &str) -> Vec<String> {
    actual
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(MANAGER))
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.pointer(section)?.as_object())
        .flat_map(|keys| {
            keys.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(String::from)
        })
        .collect()
}

/// The keys of `section` the Secret holds that the operator manages but no longer wants:
/// the four key fields (a previous key after its overlap) and anything it owns that the
/// template dropped.
fn strays(
    section: &str,
    managed: &[&String],
    want: Option<&BTreeMap<String, impl Sized>>,
    have: Option<&BTreeMap<String, impl Sized>>,
    actual: &Secret,
) -> BTreeMap<String, serde_json::Value> {
    let owned = owned_keys(actual, section);
    managed
        .iter()
        .map(|k| k.to_string())
        .chain(owned)
        .filter(|k| {
            want.is_none_or(|w| !w.contains_key(k)) && have.is_some_and(|h| h.contains_key(k))
        })
        .map(|k| (k, serde_json::Value::Null))
        .collect()
}

/// A merge patch removing what the Secret holds of this ApiKey's that `desired` does not
/// (left because another writer, or the operator's own create, co-owns it, so an apply
/// cannot remove it); `None` when there is nothing to remove.
pub fn stray_patch(ak: &ApiKey, desired: &Secret, actual: &Secret) -> Option<serde_json::Value> {
    let t = &ak.spec.secret;
    let key_fields = [
        &t.current_key_field,
        &t.key_id_field,
        &t.previous_key_field,
        &t.previous_key_id_field,
    ];
    let (dm, am) = (&desired.metadata, &actual.metadata);
    let data = strays(
        "/f:data",
        &key_fields,
        desired.data.as_ref(),
        actual.data.as_ref(),
        actual,
    );
    let labels = strays(
        "/f:metadata/f:labels",
        &[],
        dm.labels.as_ref(),
        am.labels.as_ref(),
        actual,
    );
    let annotations = strays(
        "/f:metadata/f:annotations",
        &[],
        dm.annotations.as_ref(),
        am.annotations.as_ref(),
        actual,
    );
    if data.is_empty() && labels.is_empty() && annotations.is_empty() {
        return None;
    }
    Some(serde_json::json!({
        "metadata": {"resourceVersion": am.resource_version, "labels": labels, "annotations": annotations},
        "data": data,
    }))
}

/// Whether `actual` carries what `desired` says in the fields this ApiKey manages — the
/// key fields (the previous ones absent when there is no previous key), the templated
/// fields, and its labels and annotations, none of which linger once the template drops
/// them. Fields others added are theirs to keep.
pub fn in_sync(ak: &ApiKey, desired: &Secret, actual: &Secret) -> bool {
    let contains = |want: &Option<BTreeMap<String, String>>,
                    have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let t = &ak.spec.secret;
    let (want, have) = (
        desired.data.clone().unwrap_or_default(),
        actual.data.clone().unwrap_or_default(),
    );
    let fields = [
        &t.current_key_field,
        &t.key_id_field,
        &t.previous_key_field,
        &t.previous_key_id_field,
    ]
    .into_iter()
    .chain(t.template.keys());
    fields.into_iter().all(|f| want.get(f) == have.get(f))
        && contains(&desired.metadata.labels, &actual.metadata.labels)
        && contains(&desired.metadata.annotations, &actual.metadata.annotations)
        && stray_patch(ak, desired, actual).is_none()
}

/// Keys a Secret offers: the current one and, during an overlap, the previous one, with
/// when the Secret was created (the best estimate of when its key was issued).
pub struct Found {
    pub current: (String, SecretString),
    pub previous: Option<(String, SecretString)>,
    pub created: Option<jiff::Timestamp>,
    /// What the Secret says of where each key came from (none for Secrets written before
    /// it recorded that, or edited).
    pub provenance: BTreeMap<String, Provenance>,
    /// Where the keys were found, for the Adopted event.
    pub found_in: String,
}

/// The keys in a Secret laid out as this ApiKey's template says, if it holds any. Ids
/// read back end up in status and events, so one that does not look like an id (too
/// long, not printable, or equal to a key in the Secret) is never trusted: nothing is
/// adopted from such a Secret.
pub fn held_keys(ak: &ApiKey, s: &Secret) -> Option<Found> {
    let t = &ak.spec.secret;
    let data = s.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .filter(|v| !v.is_empty())
    };
    let keys: Vec<String> = [&t.current_key_field, &t.previous_key_field]
        .into_iter()
        .filter_map(|f| text(f))
        .collect();
    let looks_like_id = |id: &str| {
        id.len() <= crate::api::limits::KEY_ID as usize
            && id.chars().all(|c| c.is_ascii_graphic())
            && !keys.iter().any(|k| k == id)
    };
    let pair = |id_field: &str, key_field: &str| {
        let id = text(id_field)?;
        Some((id, SecretString::from(text(key_field)?)))
    };
    let current = pair(&t.key_id_field, &t.current_key_field)?;
    let previous = pair(&t.previous_key_id_field, &t.previous_key_field);
    let ids_ok = looks_like_id(&current.0) && previous.as_ref().is_none_or(|p| looks_like_id(&p.0));
    let provenance = s
        .annotations()
        .get(PROVENANCE_ANNOTATION)
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    ids_ok.then(|| Found {
        current,
        previous,
        created: s.metadata.creation_timestamp.as_ref().map(|t| t.0),
        provenance,
        found_in: format!("Secret {:?}", s.name_any()),
    })
}

/// Whether the Secret offers the key with this id (as current or previous), by the id
/// fields every rendering carries.
pub fn offers(ak: &ApiKey, s: &Secret, id: &str) -> bool {
    let t = &ak.spec.secret;
    let data = s.data.as_ref();
    [&t.key_id_field, &t.previous_key_id_field]
        .into_iter()
        .filter_map(|f| data?.get(f))
        .any(|v| v.0 == id.as_bytes())
}

/// Who may write this Secret: a Secret of ours, or one a deleted ApiKey of the same name
/// released (or is being deleted with), which a re-created ApiKey adopts.
pub fn may_manage(ak: &ApiKey, actual: &Secret) -> bool {
    let ours = ak.uid();
    let owners = actual.owner_references();
    if owners.iter().any(|o| Some(&o.uid) == ours.as_ref()) {
        return true;
    }
    let labelled = actual.labels().get(NAME_LABEL) == Some(&ak.name_any());
    let owned_by_other_apikey = owners
        .iter()
        .any(|o| o.kind == "ApiKey" && o.api_version.starts_with("apikey.dev/"));
    let released_to_us = actual.annotations().get(RELEASED_ANNOTATION) == Some(&released_by(ak));
    labelled
        && (owners.is_empty() && (released_to_us || holds_our_key(ak, actual))
            || owned_by_other_apikey && owners.iter().all(|o| o.name == ak.name_any()))
}

/// Whether the Secret holds a key this ApiKey's status names, by the fingerprint of the
/// material: only our own Secret can (say, one the garbage collector orphaned while an
/// `orphan` deletion of this ApiKey runs its finalizer).
fn holds_our_key(ak: &ApiKey, s: &Secret) -> bool {
    let Some(status) = ak.status.as_ref() else {
        return false;
    };
    let ours: Vec<&str> = [status.current_key.as_ref(), status.previous_key.as_ref()]
        .into_iter()
        .flatten()
        .map(|k| k.fingerprint.as_str())
        .collect();
    let t = &ak.spec.secret;
    [&t.current_key_field, &t.previous_key_field]
        .into_iter()
        .filter_map(|f| s.data.as_ref()?.get(f))
        .map(|b| SecretString::from(String::from_utf8_lossy(&b.0).into_owned()))
        .any(|material| ours.contains(&crate::issuer::fingerprint(&material).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apikey::ApiKeySpec;

    fn apikey() -> ApiKey {
        let mut ak: ApiKey = ApiKey::new(
            "billing",
            serde_json::from_value::<ApiKeySpec>(serde_json::json!({
                "issuerRef": {"name": "gen"}, "rotation": {"every": "1h"},
                "secret": {"labels": {"team": "a"}}}))
            .unwrap(),
        );
        ak.metadata.namespace = Some("default".into());
        ak.metadata.uid = Some("uid-1".into());
        ak
    }

    #[test]
    fn renders_current_and_previous_and_detects_drift() {
        let ak = apikey();
        let (a, b) = (SecretString::from("key-a"), SecretString::from("key-b"));
        let issuer = IssuerRecord {
            kind: crate::api::apikey::IssuerKind::KeyIssuer,
            name: "gen".into(),
            uid: "i-1".into(),
        };
        let current = Held {
            id: "id-b",
            fingerprint: "sha256:bbb",
            secret: &b,
            issuer: &issuer,
            minted_for: "spec-b",
        };
        let previous = Held {
            id: "id-a",
            fingerprint: "sha256:aaa",
            secret: &a,
            issuer: &issuer,
            minted_for: "spec-a",
        };
        let s = render(&ak, &current, Some(&previous)).unwrap();
        let data = s.data.clone().unwrap();
        assert_eq!(data["api-key"].0, b"key-b");
        assert_eq!(data["api-key-id"].0, b"id-b");
        assert_eq!(data["api-key-previous"].0, b"key-a");
        assert_eq!(s.labels()["team"], "a");
        assert_eq!(s.labels()[NAME_LABEL], "billing");
        assert_eq!(s.owner_references()[0].uid, "uid-1");
        assert!(in_sync(&ak, &s, &s));
        let found = held_keys(&ak, &s).unwrap();
        assert_eq!(
            found.provenance["id-a"].minted_for, "spec-a",
            "where each key came from"
        );
        assert_eq!(found.provenance["id-b"].issuer, issuer);
        let mut edited = s.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("api-key".into(), ByteString(b"hacked".to_vec()));
        assert!(!in_sync(&ak, &s, &edited));
        let mut extra = s.clone();
        extra
            .data
            .as_mut()
            .unwrap()
            .insert("added-by-someone".into(), ByteString(b"x".to_vec()));
        assert!(
            in_sync(&ak, &s, &extra),
            "fields others added are not drift"
        );
        let only_current = render(&ak, &current, None).unwrap();
        assert!(
            !in_sync(&ak, &only_current, &s),
            "a previous key left behind is drift"
        );
    }

    #[test]
    fn ids_that_are_not_ids_are_not_read_back() {
        let ak = apikey();
        let secret = |id: &str| Secret {
            data: Some(BTreeMap::from([
                ("api-key".to_string(), ByteString(b"sk_live_x".to_vec())),
                ("api-key-id".to_string(), ByteString(id.as_bytes().to_vec())),
            ])),
            ..Default::default()
        };
        assert!(held_keys(&ak, &secret("gen-0123abcd")).is_some());
        for bad in ["sk_live_x", "two words", "line\nbreak", &"x".repeat(300)] {
            assert!(held_keys(&ak, &secret(bad)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn never_manages_foreign_secrets_but_adopts_its_own() {
        let ak = apikey();
        let mut foreign = Secret::default();
        foreign.metadata.name = Some("billing".into());
        assert!(
            !may_manage(&ak, &foreign),
            "an unlabelled Secret is someone else's"
        );
        let mut left_behind = foreign.clone();
        left_behind.metadata.labels = Some(BTreeMap::from([(
            NAME_LABEL.to_string(),
            "billing".to_string(),
        )]));
        assert!(
            !may_manage(&ak, &left_behind),
            "a Secret that only has the label is not adopted"
        );
        left_behind.metadata.annotations = Some(BTreeMap::from([(
            RELEASED_ANNOTATION.to_string(),
            "elsewhere/billing".to_string(),
        )]));
        assert!(
            !may_manage(&ak, &left_behind),
            "one another namespace's ApiKey released is not adopted (a mirrored copy)"
        );
        left_behind.metadata.annotations = Some(BTreeMap::from([(
            RELEASED_ANNOTATION.to_string(),
            "default/billing".to_string(),
        )]));
        assert!(
            may_manage(&ak, &left_behind),
            "a Retain-deleted predecessor's Secret is adopted"
        );
        let mut owned = left_behind.clone();
        owned.metadata.owner_references = ak.controller_owner_ref(&()).map(|r| vec![r]);
        assert!(may_manage(&ak, &owned));
        let mut other_owner = left_behind;
        other_owner.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "x".into(),
                uid: "u".into(),
                ..Default::default()
            },
        ]);
        assert!(!may_manage(&ak, &other_owner));
    }
}
