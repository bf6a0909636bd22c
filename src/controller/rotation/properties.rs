//! Properties of `decide` over every state a reconciler can observe. A crash between any
//! two writes, a trigger arriving at any moment, a clock jump: each leaves some
//! combination of status, Secret, rollout and clock, and these are generated at random
//! (within the status invariants the controller keeps: a previous key only beside a
//! current one). Whatever the combination, the protocol's promises hold.

use proptest::prelude::*;

use super::*;

const BASE: i64 = 1_800_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(BASE + s).unwrap()
}

fn time() -> impl Strategy<Value = Timestamp> {
    (0i64..1_000).prop_map(at)
}

fn held(rotation: u64) -> impl Strategy<Value = HeldKey> {
    (
        prop_oneof![Just("spec-a"), Just("spec-b")],
        time(),
        proptest::option::of(time()),
    )
        .prop_map(move |(spec, issued_at, expires_at)| HeldKey {
            id: format!("key-{rotation}"),
            rotation,
            minted_for: spec.into(),
            issued_at,
            expires_at,
        })
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Initial),
        Just(Trigger::Scheduled),
        Just(Trigger::Expiring),
        Just(Trigger::SpecChanged),
        Just(Trigger::Requested),
        Just(Trigger::Emergency),
        Just(Trigger::MaterialLost),
    ]
}

fn rollout() -> impl Strategy<Value = Rollout> {
    prop_oneof![
        Just(Rollout::Done),
        Just(Rollout::NotStarted),
        Just(Rollout::InProgress),
        Just(Rollout::TimedOut),
        Just(Rollout::Blocked),
    ]
}

fn pending() -> impl Strategy<Value = Pending> {
    (
        trigger(),
        prop_oneof![Just("spec-a"), Just("spec-b")],
        proptest::option::of(Just("key-3".to_string())),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(trigger, spec, id, stored, abandoning, in_secret)| Pending {
                rotation: 3,
                attempt: 1,
                minted_for: spec.into(),
                trigger,
                // The Secret is written only after the store: it can offer only a stored key
                // (the store may lose it since, but never the id).
                in_secret: in_secret && id.is_some(),
                stored: stored && id.is_some(),
                id,
                abandoning,
            },
        )
}

fn previous() -> impl Strategy<Value = Previous> {
    (
        held(1),
        proptest::option::of(time()),
        any::<bool>(),
        proptest::option::of(proptest::option::of(time())),
    )
        .prop_map(|(key, revoke_after, emergency, usage)| Previous {
            key,
            revoke_after,
            emergency,
            usage: usage.map(|last_used_at| Usage {
                last_used_at,
                min_unused_for: Duration::from_secs(10),
            }),
        })
}

prop_compose! {
    fn observed()(
        now in time(),
        spec in prop_oneof![Just("spec-a"), Just("spec-b")],
        suspended in any::<bool>(),
        keys in proptest::option::of((held(2), proptest::option::of(previous()))),
        pending in proptest::option::of(pending()),
        scheduled_at in proptest::option::of(time()),
        flags in proptest::array::uniform6(any::<bool>()),
        rollout in rollout(),
        overlap in 0u64..120,
        unused in proptest::option::of((1u64..60, proptest::option::of(1u64..300))),
    ) -> Observed {
        let (current, previous) = match keys {
            Some((c, p)) => (Some(c), p),
            None => (None, None),
        };
        Observed {
            now,
            key_spec: spec.into(),
            suspended,
            rotation_count: if current.is_some() { 2 } else { 0 },
            current,
            previous,
            pending,
            abandoned_attempts: 0,
            scheduled_at,
            rotate_requested: flags[0],
            emergency_requested: flags[1],
            revoke_previous_requested: flags[2],
            secret_in_sync: flags[3],
            current_material_lost: flags[4],
            adoptable: flags[5],
            rollout,
            overlap: Duration::from_secs(overlap),
            unused_rule: unused.map(|(u, m)| UnusedRule {
                unused_for: Duration::from_secs(u),
                max_overlap: m.map(Duration::from_secs),
            }),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The old key goes only once the new one is in the Secret, and then only when its
    /// overlap (counted from the rollout) is over, or a user or an emergency says so.
    #[test]
    fn the_previous_key_is_never_revoked_early(o in observed()) {
        if decide(&o) == Step::RevokePrevious {
            let prev = o.previous.as_ref().expect("a previous key to revoke");
            prop_assert!(o.current.is_some() && o.pending.is_none() && o.secret_in_sync, "{o:?}");
            let asked = prev.emergency || o.emergency_requested || o.revoke_previous_requested;
            let overlap_over = o.rollout == Rollout::Done
                && prev.revoke_after.is_some_and(|t| t <= o.now);
            prop_assert!(asked || overlap_over, "{o:?}");
        }
    }

    /// One rotation at a time, numbered after the last, with a fresh attempt; during a
    /// change freeze only what cannot wait (no key, a lost or compromised one).
    #[test]
    fn rotations_begin_one_at_a_time(o in observed()) {
        if let Step::BeginRotation { rotation, attempt, trigger } = decide(&o) {
            prop_assert!(o.pending.is_none() && o.previous.is_none(), "{o:?}");
            prop_assert_eq!(rotation, o.rotation_count + 1);
            prop_assert_eq!(attempt, o.abandoned_attempts + 1);
            if o.suspended {
                prop_assert!(
                    matches!(trigger, Trigger::Initial | Trigger::MaterialLost)
                        || o.emergency_requested,
                    "{trigger:?} while suspended"
                );
            }
        }
    }

    /// Only a minted, stored key of the spec as it is now (or an emergency's) is promoted,
    /// or one the Secret already offers; one being abandoned never is.
    #[test]
    fn only_a_stored_key_is_promoted(o in observed()) {
        if decide(&o) == Step::Promote {
            let p = o.pending.as_ref().expect("pending");
            prop_assert!(p.id.is_some() && !p.abandoning, "{p:?}");
            if !p.in_secret {
                prop_assert!(p.stored, "{p:?}");
                prop_assert!(p.minted_for == o.key_spec || p.trigger == Trigger::Emergency);
            }
        }
    }

    /// A pending key the Secret offers (pods may use it) is never abandoned, unless it was
    /// recorded as abandoned before the Secret could get it.
    #[test]
    fn a_key_the_secret_offers_is_never_abandoned(o in observed()) {
        if decide(&o) == Step::Abandon {
            let p = o.pending.as_ref().expect("pending");
            prop_assert!(!p.in_secret || p.abandoning, "{p:?}");
        }
    }

    /// Waiting always ends: a wake-up time is in the future.
    #[test]
    fn idle_wakes_in_the_future(o in observed()) {
        match decide(&o) {
            Step::Idle { wake_at: Some(t) } | Step::WaitForRollout { recheck_at: t } => {
                prop_assert!(t > o.now, "wakes at {t}, now {}", o.now);
            }
            _ => {}
        }
    }

    /// Consumers are only ever rolled to, or waited on for, a key that exists.
    #[test]
    fn rollouts_need_a_current_key(o in observed()) {
        let step = decide(&o);
        if matches!(step, Step::RollOut | Step::WaitForRollout { .. } | Step::RolloutStuck | Step::StartOverlap { .. }) {
            prop_assert!(o.current.is_some() && o.pending.is_none(), "{step:?} {o:?}");
        }
    }
}
