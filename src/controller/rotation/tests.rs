//! The decision table: crashes after each step, failures, triggers mid-rotation.

use super::*;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn key(rotation: u64) -> HeldKey {
    HeldKey {
        id: format!("key-{rotation}"),
        rotation,
        minted_for: "spec-a".into(),
        issued_at: t(0),
        expires_at: None,
    }
}

/// A healthy ApiKey with one key, nothing due.
fn steady() -> Observed {
    Observed {
        now: t(100),
        key_spec: "spec-a".into(),
        suspended: false,
        current: Some(key(1)),
        previous: None,
        pending: None,
        rotation_count: 1,
        abandoned_attempts: 0,
        scheduled_at: Some(t(1000)),
        rotate_requested: false,
        emergency_requested: false,
        revoke_previous_requested: false,
        secret_in_sync: true,
        current_material_lost: false,
        adoptable: false,
        rollout: Rollout::Done,
        overlap: Duration::from_secs(60),
        unused_rule: None,
    }
}

/// The step that starts rotation 2 (first attempt) of `steady()`.
fn second_rotation(trigger: Trigger) -> Step {
    Step::BeginRotation {
        rotation: 2,
        attempt: 1,
        trigger,
    }
}

fn pending(id: Option<&str>, stored: bool) -> Pending {
    Pending {
        rotation: 2,
        attempt: 1,
        minted_for: "spec-a".into(),
        trigger: Trigger::Scheduled,
        id: id.map(String::from),
        stored,
        abandoning: false,
        in_secret: false,
    }
}

fn overlapping(revoke_after: Option<Timestamp>) -> Observed {
    Observed {
        current: Some(key(2)),
        previous: Some(Previous {
            key: key(1),
            revoke_after,
            emergency: false,
            usage: None,
        }),
        rotation_count: 2,
        ..steady()
    }
}

#[test]
fn a_key_whose_material_is_lost_is_replaced_even_when_suspended() {
    let o = Observed {
        current_material_lost: true,
        suspended: true,
        ..steady()
    };
    assert_eq!(decide(&o), second_rotation(Trigger::MaterialLost));
    // Never rolled out: no pod can get it.
    let o = Observed {
        current_material_lost: true,
        rollout: Rollout::NotStarted,
        ..steady()
    };
    assert_eq!(decide(&o), second_rotation(Trigger::MaterialLost));
    // A previous key may be the only usable one: it is not revoked on schedule...
    let o = Observed {
        current_material_lost: true,
        ..overlapping(Some(t(50)))
    };
    assert_eq!(decide(&o), Step::MaterialLostDuringOverlap);
    // ...only when a user ends the overlap.
    let o = Observed {
        current_material_lost: true,
        revoke_previous_requested: true,
        ..overlapping(None)
    };
    assert_eq!(decide(&o), Step::RevokePrevious);
}

#[test]
fn a_new_apikey_starts_its_first_rotation() {
    let o = Observed {
        current: None,
        rotation_count: 0,
        scheduled_at: None,
        ..steady()
    };
    assert_eq!(
        decide(&o),
        Step::BeginRotation {
            rotation: 1,
            attempt: 1,
            trigger: Trigger::Initial
        }
    );
}

#[test]
fn a_recreated_apikey_adopts_the_key_it_finds() {
    let o = Observed {
        current: None,
        rotation_count: 0,
        adoptable: true,
        ..steady()
    };
    assert_eq!(decide(&o), Step::Adopt);
}

#[test]
fn a_crash_after_each_step_resumes_at_the_next() {
    let cases = [
        (pending(None, false), Step::Mint),
        (pending(Some("key-2"), false), Step::Persist),
        (pending(Some("key-2"), true), Step::Promote),
    ];
    for (p, want) in cases {
        let o = Observed {
            pending: Some(p.clone()),
            ..steady()
        };
        assert_eq!(decide(&o), want, "{p:?}");
    }
    // Promoted, consumers not yet patched / rolling / done.
    let o = Observed {
        rollout: Rollout::NotStarted,
        ..overlapping(None)
    };
    assert_eq!(decide(&o), Step::RollOut);
    let o = Observed {
        rollout: Rollout::InProgress,
        ..overlapping(None)
    };
    assert_eq!(decide(&o), Step::WaitForRollout { recheck_at: t(110) });
    assert_eq!(
        decide(&overlapping(None)),
        Step::StartOverlap {
            revoke_after: t(160)
        }
    );
    assert_eq!(
        decide(&overlapping(Some(t(160)))),
        Step::Idle {
            wake_at: Some(t(160))
        }
    );
    let o = Observed {
        now: t(160),
        ..overlapping(Some(t(160)))
    };
    assert_eq!(decide(&o), Step::RevokePrevious);
}

#[test]
fn the_old_key_is_never_revoked_before_rollout_and_overlap() {
    for rollout in [
        Rollout::NotStarted,
        Rollout::InProgress,
        Rollout::TimedOut,
        Rollout::Blocked,
    ] {
        let o = Observed {
            now: t(10_000),
            rollout,
            ..overlapping(Some(t(160)))
        };
        assert_ne!(decide(&o), Step::RevokePrevious, "{rollout:?}");
    }
    let o = Observed {
        rollout: Rollout::TimedOut,
        ..overlapping(None)
    };
    assert_eq!(decide(&o), Step::RolloutStuck);
}

#[test]
fn triggers_start_rotations_with_their_reason() {
    let due = Observed {
        now: t(1000),
        ..steady()
    };
    assert_eq!(decide(&due), second_rotation(Trigger::Scheduled));
    let requested = Observed {
        rotate_requested: true,
        ..steady()
    };
    assert_eq!(decide(&requested), second_rotation(Trigger::Requested));
    let changed = Observed {
        key_spec: "spec-b".into(),
        ..steady()
    };
    assert_eq!(decide(&changed), second_rotation(Trigger::SpecChanged));
    let mut expiring = steady();
    expiring.current.as_mut().unwrap().expires_at = Some(t(1000));
    expiring.now = t(900);
    assert_eq!(decide(&expiring), second_rotation(Trigger::Expiring));
    expiring.now = t(899);
    assert_eq!(
        decide(&expiring),
        Step::Idle {
            wake_at: Some(t(900))
        },
        "wakes at the margin"
    );
}

#[test]
fn a_trigger_during_a_rotation_waits_for_the_previous_key_to_go() {
    let o = Observed {
        rotate_requested: true,
        now: t(5000),
        pending: Some(pending(Some("key-2"), false)),
        ..steady()
    };
    assert_eq!(
        decide(&o),
        Step::Persist,
        "the rotation in flight continues"
    );
    let o = Observed {
        rotate_requested: true,
        now: t(5000),
        ..overlapping(Some(t(9000)))
    };
    assert_eq!(
        decide(&o),
        Step::Idle {
            wake_at: Some(t(9000))
        },
        "one previous slot"
    );
}

#[test]
fn emergency_rotation_revokes_fast() {
    let o = Observed {
        emergency_requested: true,
        ..steady()
    };
    assert_eq!(decide(&o), second_rotation(Trigger::Emergency));
    let o = Observed {
        emergency_requested: true,
        ..overlapping(Some(t(9000)))
    };
    assert_eq!(
        decide(&o),
        Step::RevokePrevious,
        "the previous slot is freed first"
    );
    let mut promoted = overlapping(None);
    promoted.previous.as_mut().unwrap().emergency = true;
    promoted.rollout = Rollout::NotStarted;
    assert_eq!(
        decide(&promoted),
        Step::RevokePrevious,
        "no rollout wait, no overlap"
    );
    let o = Observed {
        suspended: true,
        emergency_requested: true,
        ..steady()
    };
    assert_eq!(
        decide(&o),
        second_rotation(Trigger::Emergency),
        "a change freeze does not hold a compromised key"
    );
}

#[test]
fn revoke_previous_ends_the_overlap_now() {
    let o = Observed {
        revoke_previous_requested: true,
        ..overlapping(Some(t(9000)))
    };
    assert_eq!(decide(&o), Step::RevokePrevious);
}

#[test]
fn spec_changes_abandon_a_pending_key_but_not_an_emergency_one() {
    let o = Observed {
        key_spec: "spec-b".into(),
        pending: Some(pending(Some("key-2"), true)),
        ..steady()
    };
    assert_eq!(decide(&o), Step::Abandon);
    let mut emergency = pending(Some("key-2"), true);
    emergency.trigger = Trigger::Emergency;
    let o = Observed {
        key_spec: "spec-b".into(),
        pending: Some(emergency),
        ..steady()
    };
    assert_eq!(
        decide(&o),
        Step::Promote,
        "a compromised key is replaced first"
    );
}

#[test]
fn suspend_stops_new_rotations_but_not_one_in_flight() {
    let o = Observed {
        suspended: true,
        now: t(5000),
        ..steady()
    };
    assert_eq!(decide(&o), Step::Idle { wake_at: None });
    let o = Observed {
        suspended: true,
        pending: Some(pending(None, false)),
        ..steady()
    };
    assert_eq!(decide(&o), Step::Mint);
    let o = Observed {
        suspended: true,
        now: t(200),
        ..overlapping(Some(t(160)))
    };
    assert_eq!(decide(&o), Step::RevokePrevious);
}

#[test]
fn drift_is_repaired() {
    let o = Observed {
        secret_in_sync: false,
        now: t(5000),
        ..steady()
    };
    assert_eq!(decide(&o), Step::RestoreSecret);
}

#[test]
fn revoke_previous_without_a_previous_key_is_acknowledged_not_kept() {
    let o = Observed {
        revoke_previous_requested: true,
        ..steady()
    };
    assert_eq!(decide(&o), Step::AcknowledgeRevokePrevious);
    let o = Observed {
        revoke_previous_requested: true,
        pending: Some(pending(Some("key-2"), true)),
        ..steady()
    };
    assert_eq!(
        decide(&o),
        Step::AcknowledgeRevokePrevious,
        "not carried into the coming overlap"
    );
}

#[test]
fn an_abandoned_attempt_is_never_retried_with_the_same_idempotency_key() {
    let o = Observed {
        abandoned_attempts: 1,
        now: t(1000),
        ..steady()
    };
    assert_eq!(
        decide(&o),
        Step::BeginRotation {
            rotation: 2,
            attempt: 2,
            trigger: Trigger::Scheduled
        }
    );
}

#[test]
fn new_consumers_roll_out_the_current_key() {
    let o = Observed {
        rollout: Rollout::NotStarted,
        ..steady()
    };
    assert_eq!(decide(&o), Step::RollOut);
}

#[test]
fn overlap_default_and_jitter_bounds() {
    assert_eq!(
        default_overlap(Some(Duration::from_secs(720 * 3600))),
        Duration::from_secs(3600)
    );
    assert_eq!(
        default_overlap(Some(Duration::from_secs(60))),
        Duration::from_secs(15)
    );
    let every = Duration::from_secs(720 * 3600);
    let j = jitter("uid-1", every);
    assert!(j <= Duration::from_secs(3600));
    assert_eq!(j, jitter("uid-1", every), "deterministic per uid");
    assert_ne!(j, jitter("uid-2", every));
    assert!(jitter("uid-1", Duration::from_secs(100)) <= Duration::from_secs(5));
}

#[test]
fn a_key_recorded_as_abandoned_is_never_promoted() {
    // The spec went back to what the pending key was minted for: without the record, the
    // retry would persist and promote a key already revoked.
    let mut p = pending(Some("key-2"), false);
    p.abandoning = true;
    let o = Observed {
        pending: Some(p),
        ..steady()
    };
    assert_eq!(decide(&o), Step::Abandon);
}

#[test]
fn a_key_the_secret_already_offers_is_promoted_whatever_the_spec_says() {
    // Cut short after the Secret write: pods may already use the key, so revoking it
    // (abandoning) would break them. The spec change rotates it away afterwards.
    let mut p = pending(Some("key-2"), true);
    p.in_secret = true;
    p.minted_for = "spec-b".into();
    let o = Observed {
        pending: Some(p.clone()),
        ..steady()
    };
    assert_eq!(decide(&o), Step::Promote);
    p.minted_for = "spec-a".into();
    let o = Observed {
        pending: Some(p),
        ..steady()
    };
    assert_eq!(decide(&o), Step::Promote);
}

#[test]
fn an_emergency_during_a_rotation_binds_to_the_key_current_when_requested() {
    let o = Observed {
        pending: Some(pending(Some("key-2"), false)),
        emergency_requested: true,
        ..steady()
    };
    assert_eq!(decide(&o), Step::EscalatePending);
    let mut escalated = pending(Some("key-2"), true);
    escalated.trigger = Trigger::Emergency;
    let o = Observed {
        pending: Some(escalated),
        ..steady()
    };
    assert_eq!(
        decide(&o),
        Step::Promote,
        "then it completes as the emergency rotation"
    );
}

/// Overlap over at t(100) (rolled out at t(40), overlap 60 s); the rule asks for 30 s
/// unused, and at most 120 s of overlap from rollout (until t(160)).
fn usage_aware(now: i64, last_used: Option<i64>) -> Observed {
    let mut o = overlapping(Some(t(100)));
    o.now = t(now);
    o.unused_rule = Some(UnusedRule {
        unused_for: Duration::from_secs(30),
        max_overlap: Some(Duration::from_secs(120)),
    });
    o.previous.as_mut().unwrap().usage = Some(Usage {
        last_used_at: last_used.map(t),
        min_unused_for: Duration::ZERO,
    });
    o
}

#[test]
fn a_previous_key_in_use_stays_until_unused_long_enough_or_the_cap() {
    // Still in the overlap: nothing to decide yet.
    assert_eq!(
        decide(&usage_aware(90, Some(89))),
        Step::Idle {
            wake_at: Some(t(100))
        }
    );
    // Over, but used 10 s ago: look again when it has been quiet 30 s.
    assert_eq!(
        decide(&usage_aware(100, Some(90))),
        Step::Idle {
            wake_at: Some(t(120))
        }
    );
    // Quiet 30 s: it goes, and says why.
    let o = usage_aware(120, Some(90));
    assert_eq!(decide(&o), Step::RevokePrevious);
    let prev = o.previous.as_ref().unwrap();
    assert_eq!(revoke_rule(&o, prev, t(100)), Ok(RevokeRule::Unused));
    // Never used at all: it goes as soon as the overlap is over.
    assert_eq!(decide(&usage_aware(100, None)), Step::RevokePrevious);
    // Used all along: the cap (rollout + maxOverlap) ends it.
    assert_eq!(
        decide(&usage_aware(150, Some(149))),
        Step::Idle {
            wake_at: Some(t(160))
        }
    );
    let o = usage_aware(160, Some(159));
    assert_eq!(
        revoke_rule(&o, o.previous.as_ref().unwrap(), t(100)),
        Ok(RevokeRule::MaxOverlap)
    );
}

#[test]
fn without_usage_reports_or_the_rule_the_overlap_alone_decides() {
    let mut o = usage_aware(100, Some(99));
    o.previous.as_mut().unwrap().usage = None;
    assert_eq!(
        decide(&o),
        Step::RevokePrevious,
        "an issuer that cannot say"
    );
    let mut o = usage_aware(100, Some(99));
    o.unused_rule = None;
    assert_eq!(decide(&o), Step::RevokePrevious, "no rule asked for");
    // An issuer whose records are coarse sets a floor on the quiet time.
    let mut o = usage_aware(140, Some(100));
    o.previous
        .as_mut()
        .unwrap()
        .usage
        .as_mut()
        .unwrap()
        .min_unused_for = Duration::from_secs(50);
    assert_eq!(
        decide(&o),
        Step::Idle {
            wake_at: Some(t(150))
        }
    );
}
