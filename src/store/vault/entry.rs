//! One ApiKey's KV v2 entry as data: which key sits in which slot, and how each store
//! operation changes that. Pure, so the layout readers see is unit-tested here; the
//! backend only reads, applies and writes with check-and-set.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::store::{Fields, Slot};

#[derive(Clone, Debug)]
pub struct Key {
    pub id: String,
    pub secret: SecretString,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.id == other.id && self.secret.expose_secret() == other.secret.expose_secret()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    pub current: Option<Key>,
    pub previous: Option<Key>,
    pub pending: Option<Key>,
}

impl Entry {
    /// Reads a version's data; a slot whose key or id field is missing is empty.
    pub fn parse(data: &Map<String, Value>, f: &Fields) -> Entry {
        let key = |key: &str, id: &str| match (data.get(key), data.get(id)) {
            (Some(Value::String(k)), Some(Value::String(i))) => Some(Key {
                id: i.clone(),
                secret: SecretString::from(k.clone()),
            }),
            _ => None,
        };
        Entry {
            current: key(&f.current_key, &f.current_id),
            previous: key(&f.previous_key, &f.previous_id),
            pending: key(&f.pending_key, &f.pending_id),
        }
    }

    /// The data of the version that records this entry. Holds key material: it goes to
    /// the store and nowhere else.
    pub fn data(&self, f: &Fields) -> Value {
        let mut data = Map::new();
        for (slot, key, id) in [
            (&self.current, &f.current_key, &f.current_id),
            (&self.previous, &f.previous_key, &f.previous_id),
            (&self.pending, &f.pending_key, &f.pending_id),
        ] {
            if let Some(k) = slot {
                data.insert(key.clone(), k.secret.expose_secret().into());
                data.insert(id.clone(), k.id.clone().into());
            }
        }
        Value::Object(data)
    }

    fn slots(&mut self) -> [(Slot, &mut Option<Key>); 3] {
        [
            (Slot::Current, &mut self.current),
            (Slot::Previous, &mut self.previous),
            (Slot::Pending, &mut self.pending),
        ]
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        [&self.current, &self.previous, &self.pending]
            .into_iter()
            .flatten()
    }

    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys().find(|k| k.id == id)
    }

    /// Puts key `id` in `slot` (moving it from any other). Returns whether it changed.
    pub fn put(&mut self, id: &str, secret: &SecretString, slot: Slot) -> bool {
        let before = self.clone();
        for (_, held) in self.slots() {
            if held.as_ref().is_some_and(|k| k.id == id) {
                *held = None;
            }
        }
        let key = Key {
            id: id.into(),
            secret: secret.clone(),
        };
        for (s, held) in self.slots() {
            if s == slot {
                *held = Some(key.clone());
            }
        }
        *self != before
    }

    /// The pending key `id` becomes current and the current one previous. Returns whether
    /// it changed; `Err` when `id` is neither pending nor current.
    pub fn promote(&mut self, id: &str) -> Result<bool, String> {
        if self.current.as_ref().is_some_and(|k| k.id == id) {
            return Ok(false);
        }
        match self.pending.take() {
            Some(p) if p.id == id => {
                self.previous = self.current.take();
                self.current = Some(p);
                Ok(true)
            }
            other => {
                self.pending = other;
                Err(format!("key {id} is not pending in the store"))
            }
        }
    }

    /// Removes key `id` from whichever slot holds it. Returns whether it changed.
    pub fn remove(&mut self, id: &str) -> bool {
        let mut changed = false;
        for (_, held) in self.slots() {
            if held.as_ref().is_some_and(|k| k.id == id) {
                *held = None;
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            current_key: "api-key".into(),
            current_id: "key-id".into(),
            previous_key: "api-key-previous".into(),
            previous_id: "key-id-previous".into(),
            pending_key: "api-key-pending".into(),
            pending_id: "key-id-pending".into(),
        }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    fn data(e: &Entry) -> Value {
        e.data(&fields())
    }

    #[test]
    fn a_rotation_changes_what_readers_of_the_latest_version_see_only_at_promotion() {
        let mut e = Entry::default();
        assert!(e.put("k1", &secret("one"), Slot::Pending));
        assert!(e.promote("k1").unwrap());
        assert_eq!(
            data(&e),
            serde_json::json!({"api-key": "one", "key-id": "k1"})
        );
        assert!(e.put("k2", &secret("two"), Slot::Pending));
        assert_eq!(
            data(&e),
            serde_json::json!({"api-key": "one", "key-id": "k1",
                "api-key-pending": "two", "key-id-pending": "k2"})
        );
        assert!(e.promote("k2").unwrap());
        assert_eq!(
            data(&e),
            serde_json::json!({"api-key": "two", "key-id": "k2",
                "api-key-previous": "one", "key-id-previous": "k1"})
        );
        assert!(e.remove("k1"));
        assert_eq!(
            data(&e),
            serde_json::json!({"api-key": "two", "key-id": "k2"})
        );
    }

    #[test]
    fn repeating_an_operation_changes_nothing() {
        let mut e = Entry::default();
        e.put("k1", &secret("one"), Slot::Pending);
        assert!(!e.put("k1", &secret("one"), Slot::Pending));
        e.promote("k1").unwrap();
        assert!(!e.promote("k1").unwrap());
        assert!(!e.remove("k9"));
    }

    #[test]
    fn promoting_a_key_the_entry_does_not_hold_as_pending_fails() {
        let mut e = Entry::default();
        e.put("k1", &secret("one"), Slot::Current);
        e.put("k2", &secret("two"), Slot::Pending);
        assert!(e.promote("k3").is_err());
        assert_eq!(
            e.pending.as_ref().unwrap().id,
            "k2",
            "the pending key stays"
        );
    }

    #[test]
    fn parses_what_it_writes_and_ignores_half_slots() {
        let mut e = Entry::default();
        e.put("k1", &secret("one"), Slot::Current);
        e.put("k0", &secret("zero"), Slot::Previous);
        let Value::Object(mut written) = data(&e) else {
            unreachable!()
        };
        assert_eq!(Entry::parse(&written, &fields()), e);
        written.remove("key-id-previous");
        written.insert("unrelated".into(), "x".into());
        let parsed = Entry::parse(&written, &fields());
        assert!(parsed.previous.is_none());
        assert_eq!(parsed.current, e.current);
    }
}
