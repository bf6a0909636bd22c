//! Clients kept between reconciles, one per provider object generation
//! (`<uid>@<generation>`): a changed spec gets a new one, and the older generations of
//! that object are dropped. Stores and issuers keep their logins, credentials and rate
//! limits here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct PerGeneration<T>(Mutex<HashMap<String, Arc<T>>>);

impl<T> Default for PerGeneration<T> {
    fn default() -> Self {
        PerGeneration(Mutex::default())
    }
}

impl<T> PerGeneration<T> {
    pub fn get(&self, version: &str) -> Option<Arc<T>> {
        self.0
            .lock()
            .expect("generations lock")
            .get(version)
            .cloned()
    }

    /// Keeps `value` for `version`, dropping the object's other generations.
    pub fn insert(&self, version: &str, value: Arc<T>) -> Arc<T> {
        let uid = version.split('@').next().unwrap_or_default();
        let mut kept = self.0.lock().expect("generations lock");
        kept.retain(|k, _| !k.starts_with(&format!("{uid}@")));
        kept.insert(version.to_string(), value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_replaces_the_old_one_of_the_same_object_only() {
        let kept = PerGeneration::default();
        kept.insert("a@1", Arc::new(1));
        kept.insert("b@1", Arc::new(10));
        kept.insert("a@2", Arc::new(2));
        assert_eq!(kept.get("a@1"), None);
        assert_eq!(kept.get("a@2").as_deref(), Some(&2));
        assert_eq!(kept.get("b@1").as_deref(), Some(&10));
    }
}
