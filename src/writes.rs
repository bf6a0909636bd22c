//! Every write the operator makes names it as the field manager, so `managedFields` on
//! objects users also apply from Git (consumer workloads, Secrets) say which fields are
//! the operator's, and GitOps tools leave them be.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{PatchParams, PostParams};

pub const MANAGER: &str = "apikey-operator";

/// A merge, JSON or status patch.
pub fn patch() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    }
}

/// A server-side apply that takes over the fields it sets.
pub fn apply() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// A create or replace.
pub fn post() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    }
}

/// The object versions this process wrote, until their watch events come back. Each of
/// those events is an echo: the reconcile that made the write went on from its result
/// and returned what comes next, so waking the ApiKey again for it only reads the same
/// state back (at 10,000 ApiKeys, two Secret GETs and a reconcile each).
///
/// Keyed by uid and resourceVersion: a version is one write of one object, and any
/// other writer's change is another version, which still wakes the ApiKey. An echo
/// that never comes (the object changed again before a relist) is forgotten after
/// `ECHO_LIMIT`.
#[derive(Default)]
pub struct OwnWrites {
    versions: std::sync::Mutex<OwnVersions>,
}

#[derive(Default)]
struct OwnVersions {
    by_version: std::collections::HashMap<Version, std::time::Instant>,
    /// The size after the last sweep of old entries: the next sweep waits until it doubles.
    swept_at: usize,
}

/// How long a write's echo is waited for.
const ECHO_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

impl OwnWrites {
    /// Records that `written` (as the API server returned it) is our write.
    pub fn record(&self, written: &ObjectMeta) {
        let Some(key) = version_of(written) else {
            return;
        };
        let mut v = self.versions.lock().expect("lock");
        let now = std::time::Instant::now();
        v.by_version.insert(key, now);
        if v.by_version.len() > 2 * v.swept_at.max(1024) {
            v.by_version
                .retain(|_, at| now.duration_since(*at) < ECHO_LIMIT);
            v.swept_at = v.by_version.len();
        }
    }

    /// Whether `seen`, from a watch, is the echo of one of our writes (each is only
    /// recognised once).
    pub fn is_echo(&self, seen: &ObjectMeta) -> bool {
        version_of(seen).is_some_and(|version| self.is_echo_of(&version))
    }

    /// Whether `version` is one of our writes (recognised once).
    pub fn is_echo_of(&self, version: &Version) -> bool {
        self.versions
            .lock()
            .expect("lock")
            .by_version
            .remove(version)
            .is_some()
    }
}

/// One version of one object: its uid and resourceVersion.
pub type Version = (String, String);

pub fn version_of(meta: &ObjectMeta) -> Option<Version> {
    meta.uid.clone().zip(meta.resource_version.clone())
}

/// Metadata of version `version` of the object `uid` (for tests of echoes).
#[cfg(test)]
pub(crate) fn meta(uid: &str, version: &str) -> ObjectMeta {
    ObjectMeta {
        uid: Some(uid.into()),
        resource_version: Some(version.into()),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_version_we_wrote_is_an_echo_and_only_once() {
        let own = OwnWrites::default();
        own.record(&meta("a", "10"));
        assert!(!own.is_echo(&meta("a", "11")), "someone else's later write");
        assert!(!own.is_echo(&meta("b", "10")), "another object");
        assert!(own.is_echo(&meta("a", "10")));
        assert!(
            !own.is_echo(&meta("a", "10")),
            "a relist of it is news again"
        );
        assert!(!own.is_echo(&ObjectMeta::default()));
    }
}
