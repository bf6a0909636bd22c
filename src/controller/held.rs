//! Watch events that arrive while their ApiKey is being reconciled wait for the reconcile
//! to end. A write's watch event can overtake the write's answer; until the answer is
//! in, nothing tells the event apart from another writer's change, and waking the ApiKey
//! for it cost a second reconcile (two Secret GETs) for a tenth to a third of new ApiKeys
//! at 10,000. Once the reconcile ends, every answer it waited for is in: the echoes of
//! its own writes wake nothing, and anything else wakes the ApiKey at once, as the
//! event would have.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;

use crate::api::apikey::ApiKey;
use crate::writes::{OwnWrites, Version, version_of};

#[derive(Default)]
pub struct Reconciling {
    /// The ApiKeys being reconciled, each with the versions of the events held for it.
    running: Mutex<HashMap<ObjectRef<ApiKey>, Vec<Version>>>,
    /// The ApiKeys whose failed reconcile had another writer's change held: they are
    /// retried at once, not after their backoff.
    woken: Mutex<HashSet<ObjectRef<ApiKey>>>,
}

impl Reconciling {
    pub fn begin(&self, apikey: ObjectRef<ApiKey>) {
        self.running
            .lock()
            .expect("lock")
            .insert(apikey, Vec::new());
    }

    /// Holds the event of `seen` (an object `apikey` uses, or `apikey` itself) when
    /// `apikey` is being reconciled: whether it was held.
    pub fn hold(&self, apikey: &ObjectRef<ApiKey>, seen: &ObjectMeta) -> bool {
        let Some(version) = version_of(seen) else {
            return false;
        };
        match self.running.lock().expect("lock").get_mut(apikey) {
            Some(held) => {
                held.push(version);
                true
            }
            None => false,
        }
    }

    /// Ends `apikey`'s reconcile: whether an event held meanwhile was not the echo of one
    /// of our writes (so the ApiKey must be looked at again).
    pub fn end(&self, apikey: &ObjectRef<ApiKey>, own_writes: &OwnWrites) -> bool {
        let held = self
            .running
            .lock()
            .expect("lock")
            .remove(apikey)
            .unwrap_or_default();
        // Every echo is consumed (each is recognised once), so no short-circuit.
        held.iter()
            .filter(|version| !own_writes.is_echo_of(version))
            .count()
            > 0
    }

    /// Records that `apikey`'s reconcile failed with another writer's change held.
    pub fn woken_while_failing(&self, apikey: ObjectRef<ApiKey>) {
        self.woken.lock().expect("lock").insert(apikey);
    }

    /// Whether `apikey`'s failed reconcile had another writer's change held (once).
    pub fn take_woken(&self, apikey: &ObjectRef<ApiKey>) -> bool {
        self.woken.lock().expect("lock").remove(apikey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writes::meta;

    fn version(uid: &str, resource_version: &str) -> Version {
        (uid.into(), resource_version.into())
    }

    fn apikey(name: &str) -> ObjectRef<ApiKey> {
        ObjectRef::new(name).within("default")
    }

    #[test]
    fn an_echo_that_overtook_its_write_wakes_nothing() {
        let (reconciling, own) = (Reconciling::default(), OwnWrites::default());
        reconciling.begin(apikey("a"));
        // The event of our write arrives before the write's answer is recorded.
        assert!(reconciling.hold(&apikey("a"), &meta("secret-uid", "7")));
        own.record(&meta("secret-uid", "7"));
        assert!(!reconciling.end(&apikey("a"), &own));
        assert!(
            !own.is_echo_of(&version("secret-uid", "7")),
            "consumed by the end"
        );
    }

    #[test]
    fn another_writers_change_held_during_a_reconcile_wakes_the_apikey() {
        let (reconciling, own) = (Reconciling::default(), OwnWrites::default());
        reconciling.begin(apikey("a"));
        assert!(reconciling.hold(&apikey("a"), &meta("apikey-uid", "8")));
        assert!(reconciling.hold(&apikey("a"), &meta("secret-uid", "9")));
        own.record(&meta("secret-uid", "9"));
        assert!(reconciling.end(&apikey("a"), &own), "version 8 is not ours");
        assert!(
            !own.is_echo_of(&version("secret-uid", "9")),
            "the echo is consumed all the same"
        );
    }

    #[test]
    fn events_wait_only_for_the_apikey_being_reconciled_and_only_until_it_ends() {
        let (reconciling, own) = (Reconciling::default(), OwnWrites::default());
        reconciling.begin(apikey("a"));
        assert!(
            !reconciling.hold(&apikey("b"), &meta("u", "1")),
            "b is not running"
        );
        assert!(!reconciling.end(&apikey("a"), &own), "nothing held");
        assert!(
            !reconciling.hold(&apikey("a"), &meta("u", "2")),
            "a has ended"
        );
        assert!(
            !reconciling.hold(&apikey("a"), &ObjectMeta::default()),
            "an event without a version is never held"
        );
    }

    #[test]
    fn a_failed_reconcile_is_woken_once() {
        let reconciling = Reconciling::default();
        reconciling.woken_while_failing(apikey("a"));
        assert!(reconciling.take_woken(&apikey("a")));
        assert!(!reconciling.take_woken(&apikey("a")));
    }
}
