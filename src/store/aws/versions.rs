//! A secret's versions as the operator reads and writes them: each version holds one key
//! (`SecretString` is JSON with the key and its id under the ApiKey's Secret field
//! names), and staging labels say which slot it is in, as native rotation uses them.
//! Pure, so the mapping is unit-tested here.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::store::{Fields, Slot};

pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";
pub const PENDING: &str = "AWSPENDING";
/// The operator's own label on a version it is still labelling (never left behind).
pub const STAGING: &str = "apikey-operator-staging";

pub fn label(slot: Slot) -> &'static str {
    match slot {
        Slot::Current => CURRENT,
        Slot::Previous => PREVIOUS,
        Slot::Pending => PENDING,
    }
}

/// A labelled version and the key it holds (`None`: not a key, such as the empty version
/// that takes AWSCURRENT from a removed key).
#[derive(Clone, Debug)]
pub struct Version {
    pub version_id: String,
    pub labels: Vec<String>,
    pub key: Option<(String, SecretString)>,
}

impl Version {
    pub fn has(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }
}

/// The version that holds key `id`, if any.
pub fn holding<'a>(versions: &'a [Version], id: &str) -> Option<&'a Version> {
    versions
        .iter()
        .find(|v| v.key.as_ref().is_some_and(|k| k.0 == id))
}

/// The version that carries `label`, if any.
pub fn labelled<'a>(versions: &'a [Version], label: &str) -> Option<&'a Version> {
    versions.iter().find(|v| v.has(label))
}

/// The `ClientRequestToken` (version id) of key `id` written for the ApiKey `uid`: a
/// retry writes the same version (a no-op), and different keys never share one.
pub fn request_token(uid: &str, id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{uid}/{id}").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A version's `SecretString`. Holds key material: it goes to the store only.
pub fn secret_string(f: &Fields, id: &str, secret: &SecretString) -> String {
    let mut value = Map::new();
    value.insert(f.current_key.clone(), secret.expose_secret().into());
    value.insert(f.current_id.clone(), id.into());
    Value::Object(value).to_string()
}

/// The key a version's `SecretString` holds, if it is one the operator wrote.
pub fn parse(f: &Fields, secret_string: &str) -> Option<(String, SecretString)> {
    let value: Map<String, Value> = serde_json::from_str(secret_string).ok()?;
    match (value.get(&f.current_id), value.get(&f.current_key)) {
        (Some(Value::String(id)), Some(Value::String(key))) => {
            Some((id.clone(), SecretString::from(key.clone())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            current_key: "api-key".into(),
            current_id: "api-key-id".into(),
            previous_key: "api-key-previous".into(),
            previous_id: "api-key-id-previous".into(),
            pending_key: "api-key-pending".into(),
            pending_id: "api-key-id-pending".into(),
        }
    }

    #[test]
    fn tokens_are_stable_per_key_and_distinct_between_keys() {
        let t = request_token("uid-1", "k1");
        assert_eq!(
            t,
            request_token("uid-1", "k1"),
            "a retry is the same version"
        );
        assert_ne!(t, request_token("uid-1", "k2"));
        assert_ne!(t, request_token("uid-2", "k1"));
        // Secrets Manager takes 32 to 64 characters.
        assert_eq!(t.len(), 64);
    }

    #[test]
    fn a_version_holds_one_key_under_the_secret_field_names() {
        let s = secret_string(&fields(), "k1", &SecretString::from("sk_1".to_string()));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"api-key": "sk_1", "api-key-id": "k1"})
        );
        let (id, key) = parse(&fields(), &s).unwrap();
        assert_eq!((id.as_str(), key.expose_secret()), ("k1", "sk_1"));
        assert!(parse(&fields(), r#"{"password": "theirs"}"#).is_none());
        assert!(parse(&fields(), "not json").is_none());
    }
}
