//! The rotation protocol's functional core: given what was observed, the one next step.
//! The reconciler gathers [`Observed`], performs the returned [`Step`], records it in
//! status, and asks again; every step is idempotent, so a crash between any two of them
//! resumes at the right place (see `docs/rotation.md`).

use std::time::Duration;

use jiff::Timestamp;

use super::clock::after;
pub use crate::issuer::Usage;

/// Why a rotation starts (becomes the event reason and `history[].reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The ApiKey has no key yet.
    Initial,
    /// `rotation.every` / `rotation.schedule` came due.
    Scheduled,
    /// The current key is within 10% of its lifetime of expiring.
    Expiring,
    /// scopes, keyType, issuerRef or expiresAfter changed.
    SpecChanged,
    /// `apikey.dev/rotate` got a new value.
    Requested,
    /// `apikey.dev/emergency-rotate` got a new value: the current key is compromised.
    Emergency,
    /// The current key's material is in neither the store nor the Secret.
    MaterialLost,
}

/// A key the ApiKey holds, as status records it (ids and times only).
#[derive(Clone, Debug, PartialEq)]
pub struct HeldKey {
    pub id: String,
    pub rotation: u64,
    /// Which key-defining spec it was minted for (scopes, keyType, issuer, lifetime).
    pub minted_for: String,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Previous {
    pub key: HeldKey,
    /// Set once every consumer rolled out the successor: when this key may go.
    pub revoke_after: Option<Timestamp>,
    /// The successor came from an emergency rotation: revoke as soon as it is distributed.
    pub emergency: bool,
    /// When the issuer last saw it used, where the issuer reports use and the spec asks
    /// for usage-aware revocation (`None` there: never used).
    pub usage: Option<Usage>,
}

/// Usage-aware revocation (`rotation.revokeWhenUnusedFor`, `rotation.maxOverlap`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnusedRule {
    pub unused_for: Duration,
    /// From rollout completion: the previous key goes then, in use or not.
    pub max_overlap: Option<Duration>,
}

/// A rotation in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub rotation: u64,
    pub attempt: u32,
    pub minted_for: String,
    pub trigger: Trigger,
    /// Recorded the moment the issuer answered.
    pub id: Option<String>,
    /// The material is durable in the store (as pending).
    pub stored: bool,
    /// Recorded as being abandoned: its key is (being) revoked and is never promoted.
    pub abandoning: bool,
    /// The consumer Secret already offers it: a promotion cut short between the Secret
    /// write and the status write. Pods may use it, so it is promoted, never abandoned.
    pub in_secret: bool,
}

/// The consumers' state for the current key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every consumer runs with the current key (or there are none).
    Done,
    /// Some consumer's pod template does not carry the current fingerprint yet.
    NotStarted,
    /// Patched; waiting for the controllers to finish.
    InProgress,
    /// Patched longer ago than `rolloutTimeout` and still not done.
    TimedOut,
    /// A consumer will not roll by itself (a paused Deployment, an OnDelete update
    /// strategy): reported at once instead of waiting for the timeout.
    Blocked,
}

/// Everything `decide` looks at, gathered by the reconciler.
#[derive(Clone, Debug)]
pub struct Observed {
    pub now: Timestamp,
    /// The key-defining spec now (compared with `minted_for`).
    pub key_spec: String,
    pub suspended: bool,
    pub current: Option<HeldKey>,
    pub previous: Option<Previous>,
    pub pending: Option<Pending>,
    /// The last rotation number promoted (status.rotationCount).
    pub rotation_count: u64,
    /// Attempts of the next rotation number already abandoned (each minted key had its
    /// own idempotency key, which must never be reused).
    pub abandoned_attempts: u32,
    /// When the schedule next wants a rotation (with jitter), if the spec has one.
    pub scheduled_at: Option<Timestamp>,
    /// Annotation values not yet acted on.
    pub rotate_requested: bool,
    pub emergency_requested: bool,
    pub revoke_previous_requested: bool,
    /// The consumer Secret holds exactly what status says (current, and previous if any).
    pub secret_in_sync: bool,
    /// The current key's material is in neither the store nor the Secret: it can never be
    /// distributed again, so it is replaced.
    pub current_material_lost: bool,
    /// No key in status, but the Secret this ApiKey may manage (left by a deleted
    /// predecessor with deletionPolicy Retain) holds a key: continue with it.
    pub adoptable: bool,
    pub rollout: Rollout,
    pub overlap: Duration,
    pub unused_rule: Option<UnusedRule>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Take over the key a deleted predecessor left in the Secret instead of minting
    /// another (which would leave that one valid and unreferenced).
    Adopt,
    /// Record the intent (pendingKey) before anything external happens.
    BeginRotation {
        rotation: u64,
        attempt: u32,
        trigger: Trigger,
    },
    /// Mark a request that has nothing to act on as handled (a `revoke-previous` while
    /// there is no previous key must not linger until the next rotation creates one).
    AcknowledgeRevokePrevious,
    /// Mint at the issuer with the idempotency key of the pending rotation.
    Mint,
    /// Persist the minted material as pending in the store.
    Persist,
    /// Store current := new; Secret current := new, previous := old; then status likewise
    /// (the Secret first: one status write, and a key found in the Secret is promoted).
    Promote,
    /// Drop a pending key that will not be promoted: record that, then revoke it and
    /// clean the store.
    Abandon,
    /// An emergency arrives while a rotation is in flight: that rotation's key is the
    /// successor the compromised (current) key waits for, so it becomes the emergency one.
    /// Nothing minted after the request is ever revoked for it.
    EscalatePending,
    /// Rewrite the consumer Secret from status and store (deleted or edited by hand).
    RestoreSecret,
    /// Patch the consumers' pod templates with the current fingerprint.
    RollOut,
    /// Consumers are rolling; look again at `recheck_at`.
    WaitForRollout { recheck_at: Timestamp },
    /// Rollout passed its timeout: keep both keys valid, report RolloutTimeout.
    RolloutStuck,
    /// The current key's material is lost while a previous key holds the one slot: that
    /// key may be the only one pods can still get, so nothing is revoked without a user's
    /// say-so; report it.
    MaterialLostDuringOverlap,
    /// Record when the previous key may be revoked.
    StartOverlap { revoke_after: Timestamp },
    /// Revoke the previous key at the issuer it came from, then drop it everywhere.
    RevokePrevious,
    /// Nothing to do until `wake_at` (None: until something changes).
    Idle { wake_at: Option<Timestamp> },
}

impl Step {
    /// Steps whose next step follows at once, in the same reconcile, from what they
    /// wrote: the echo of the operator's own writes wakes no reconcile.
    pub fn leads_on(&self) -> bool {
        matches!(
            self,
            Step::BeginRotation { .. }
                | Step::Mint
                | Step::Persist
                | Step::Promote
                | Step::Adopt
                | Step::RestoreSecret
                | Step::AcknowledgeRevokePrevious
        )
    }

    /// Repairs that need only what status and the store hold, not the spec's settings.
    pub fn needs_only_status(&self) -> bool {
        matches!(
            self,
            Step::RestoreSecret
                | Step::RollOut
                | Step::WaitForRollout { .. }
                | Step::RolloutStuck
                | Step::AcknowledgeRevokePrevious
                | Step::MaterialLostDuringOverlap
        )
    }
}

/// How long rollouts are re-checked while in progress (watches usually come first).
const ROLLOUT_RECHECK: Duration = Duration::from_secs(10);

/// When the current key enters its last 10% of life (rotation must start by then).
pub fn expiry_margin(key: &HeldKey) -> Option<Timestamp> {
    let expires = key.expires_at?;
    let life = expires.as_second() - key.issued_at.as_second();
    Timestamp::from_second(expires.as_second() - life / 10).ok()
}

/// A rotation that is due but must wait for the previous key to go (one previous slot),
/// and when that key may go, if known.
pub fn queued(o: &Observed) -> Option<(Trigger, Option<Timestamp>)> {
    let previous = o.previous.as_ref()?;
    let trigger = due_trigger(o, o.current.as_ref()?)?;
    (!o.suspended || trigger == Trigger::Emergency).then_some((trigger, previous.revoke_after))
}

/// Why the previous key may go now (overlap over and, with usage-aware revocation, unused
/// long enough or past `maxOverlap`), or when to look again.
pub fn revoke_rule(
    o: &Observed,
    prev: &Previous,
    revoke_after: Timestamp,
) -> Result<RevokeRule, Timestamp> {
    if o.now < revoke_after {
        return Err(revoke_after);
    }
    let (Some(rule), Some(usage)) = (o.unused_rule, prev.usage) else {
        return Ok(RevokeRule::OverlapEnded);
    };
    let unused_for = rule.unused_for.max(usage.min_unused_for);
    let quiet_until = usage.last_used_at.map(|u| after(u, unused_for));
    if quiet_until.is_none_or(|q| o.now >= q) {
        return Ok(RevokeRule::Unused);
    }
    // The overlap was counted from rollout completion.
    let rolled_out = revoke_after
        .checked_sub(jiff::SignedDuration::try_from(o.overlap).unwrap_or_default())
        .unwrap_or(revoke_after);
    let cap = rule.max_overlap.map(|m| after(rolled_out, m));
    if cap.is_some_and(|c| o.now >= c) {
        return Ok(RevokeRule::MaxOverlap);
    }
    let wake = quiet_until.expect("used recently");
    Err(cap.map_or(wake, |c| c.min(wake)))
}

/// Which rule let the previous key go (said in the Revoked event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeRule {
    OverlapEnded,
    Unused,
    MaxOverlap,
}

/// The trigger that should start a rotation now, if any (checked in priority order).
fn due_trigger(o: &Observed, current: &HeldKey) -> Option<Trigger> {
    if o.emergency_requested {
        return Some(Trigger::Emergency);
    }
    if o.rotate_requested {
        return Some(Trigger::Requested);
    }
    if current.minted_for != o.key_spec {
        return Some(Trigger::SpecChanged);
    }
    if expiry_margin(current).is_some_and(|m| o.now >= m) {
        return Some(Trigger::Expiring);
    }
    if o.scheduled_at.is_some_and(|t| o.now >= t) {
        return Some(Trigger::Scheduled);
    }
    None
}

pub fn decide(o: &Observed) -> Step {
    if o.revoke_previous_requested && o.previous.is_none() {
        return Step::AcknowledgeRevokePrevious;
    }
    if let Some(p) = &o.pending {
        if p.abandoning {
            return Step::Abandon;
        }
        if o.emergency_requested && p.trigger != Trigger::Emergency {
            return Step::EscalatePending;
        }
        if p.in_secret {
            return Step::Promote;
        }
        // A rotation in flight finishes (or is dropped) before anything else starts.
        let superseded = p.minted_for != o.key_spec && p.trigger != Trigger::Emergency;
        return match (superseded, &p.id, p.stored) {
            (true, _, _) => Step::Abandon,
            (false, None, _) => Step::Mint,
            (false, Some(_), false) => Step::Persist,
            (false, Some(_), true) => Step::Promote,
        };
    }
    let Some(current) = &o.current else {
        if o.adoptable {
            return Step::Adopt;
        }
        return Step::BeginRotation {
            rotation: o.rotation_count + 1,
            attempt: o.abandoned_attempts + 1,
            trigger: Trigger::Initial,
        };
    };
    if !o.secret_in_sync {
        return Step::RestoreSecret;
    }
    if o.current_material_lost {
        // Replaced at once, even when suspended, and never rolled out (no pod can get it).
        return match o.previous {
            None => Step::BeginRotation {
                rotation: o.rotation_count + 1,
                attempt: o.abandoned_attempts + 1,
                trigger: Trigger::MaterialLost,
            },
            Some(_) if o.emergency_requested || o.revoke_previous_requested => Step::RevokePrevious,
            Some(_) => Step::MaterialLostDuringOverlap,
        };
    }
    if let Some(prev) = &o.previous {
        // An emergency revokes the old key as soon as the new one is distributed, and a
        // new emergency during an overlap revokes the previous key before rotating again.
        if prev.emergency || o.emergency_requested || o.revoke_previous_requested {
            return Step::RevokePrevious;
        }
        return match o.rollout {
            Rollout::NotStarted => Step::RollOut,
            Rollout::InProgress => Step::WaitForRollout {
                recheck_at: after(o.now, ROLLOUT_RECHECK),
            },
            Rollout::TimedOut | Rollout::Blocked => Step::RolloutStuck,
            Rollout::Done => match prev.revoke_after {
                None => Step::StartOverlap {
                    revoke_after: after(o.now, o.overlap),
                },
                Some(t) => match revoke_rule(o, prev, t) {
                    Ok(_) => Step::RevokePrevious,
                    Err(wake_at) => Step::Idle {
                        wake_at: Some(wake_at),
                    },
                },
            },
        };
    }
    if o.rollout == Rollout::NotStarted {
        return Step::RollOut;
    }
    // A change freeze holds every rotation but an emergency: a compromised key goes now.
    if (!o.suspended || o.emergency_requested)
        && let Some(trigger) = due_trigger(o, current)
    {
        return Step::BeginRotation {
            rotation: o.rotation_count + 1,
            attempt: o.abandoned_attempts + 1,
            trigger,
        };
    }
    if o.rollout == Rollout::InProgress {
        return Step::WaitForRollout {
            recheck_at: after(o.now, ROLLOUT_RECHECK),
        };
    }
    if o.suspended {
        return Step::Idle { wake_at: None };
    }
    let wake_at = [o.scheduled_at, expiry_margin(current)]
        .into_iter()
        .flatten()
        .min();
    Step::Idle { wake_at }
}

/// The default overlap: min(1h, every/4).
pub fn default_overlap(every: Option<Duration>) -> Duration {
    let hour = Duration::from_secs(3600);
    every.map_or(hour, |e| (e / 4).min(hour))
}

/// Deterministic jitter for an ApiKey (by uid): up to 5% of `every`, at most one hour, so
/// keys created together do not all rotate in the same second.
pub fn jitter(uid: &str, every: Duration) -> Duration {
    let digest = ring::digest::digest(&ring::digest::SHA256, uid.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    let fraction = u64::from_be_bytes(bytes) as f64 / u64::MAX as f64;
    let cap = (every.as_secs_f64() * 0.05).min(3600.0);
    Duration::from_secs_f64(cap * fraction)
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
