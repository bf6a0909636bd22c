//! Step 8: the previous key is revoked at the issuer that minted it, then dropped from
//! status, the Secret and the store; and the idle pass between rotations.

use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::api::apikey::{HistoryEntry, IssuerRecord, Phase, annotations};
use crate::controller::clock::{ts, until};
use crate::controller::error::Error;
use crate::controller::rotation::RevokeRule;
use crate::controller::shell::Shell;

impl Shell<'_> {
    /// Revokes the previous key; `requested`: a user asked (`revoke-previous`); `rule`:
    /// why the overlap let it go.
    pub(super) async fn revoke_previous(
        &mut self,
        requested: bool,
        rule: Option<RevokeRule>,
    ) -> Result<Action, Error> {
        let prev = self
            .status
            .previous_key
            .clone()
            .expect("decide revokes only a previous key");
        let revoked = self.revoke_at_issuer(&prev.issuer, &prev.id).await?;
        self.status.previous_key = None;
        let reason = if !revoked {
            "NotRevoked"
        } else if prev.emergency {
            "Compromised"
        } else if requested {
            "RevokePreviousRequested"
        } else {
            match rule {
                Some(RevokeRule::Unused) => "Unused",
                Some(RevokeRule::MaxOverlap) => "MaxOverlapReached",
                _ => "Superseded",
            }
        };
        if requested {
            self.status
                .handled_requests
                .get_or_insert_with(Default::default)
                .revoke_previous = self.annotation(annotations::REVOKE_PREVIOUS);
        }
        self.record_history(HistoryEntry {
            rotation: prev.rotation,
            id: prev.id.clone(),
            fingerprint: prev.fingerprint.clone(),
            issued_at: prev.issued_at.clone(),
            revoked_at: revoked.then(|| ts(self.now())),
            reason: reason.into(),
        });
        // Status first: a failure after it leaves a Secret that RestoreSecret repairs
        // and a store entry the idle sweep removes - never a status naming a key
        // whose material is gone. The phase stays Revoking until the next (idle)
        // pass, so Ready means the Secret no longer holds the revoked key.
        self.write_status(Phase::Revoking).await?;
        self.apply_secret().await?;
        self.store.delete(&prev.id).await?;
        if revoked {
            self.event(
                EventType::Normal,
                "Revoked",
                format!("revoked previous key {} ({reason})", prev.id),
            );
        }
        Ok(Action::requeue(Duration::ZERO))
    }

    /// Revokes a key at the issuer that minted it. An issuer that is gone (or no longer
    /// valid) cannot revoke anything: that must not wedge deletion or later rotations, so
    /// the key is reported (`KeyNotRevoked`, naming where to revoke it by hand) and
    /// `false` returned.
    pub(super) async fn revoke_at_issuer(
        &self,
        record: &IssuerRecord,
        id: &str,
    ) -> Result<bool, Error> {
        match self.issuer_that_minted(record).await {
            Ok(issuer) => {
                issuer.revoke(id).await?;
                Ok(true)
            }
            Err(
                e @ (Error::IssuerNotFound { .. }
                | Error::IssuerReplaced { .. }
                | Error::InvalidSpec(_)),
            ) => {
                tracing::warn!(apikey = %self.ak.name_any(), key = id, error = %e, "key not revoked");
                self.event(
                    EventType::Warning,
                    "KeyNotRevoked",
                    format!(
                        "could not revoke key {id}: {e}; it stays valid until revoked at {:?} {:?} by hand",
                        record.kind, record.name
                    ),
                );
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// A request annotation that was removed is forgotten, so setting the same value again
    /// later is a new request (a value left in place is acted on once). True when any was.
    fn forget_removed_requests(&mut self) -> bool {
        let present = |key: &str| self.ak.annotations().contains_key(key);
        let (rotate, emergency, revoke) = (
            present(annotations::ROTATE),
            present(annotations::EMERGENCY_ROTATE),
            present(annotations::REVOKE_PREVIOUS),
        );
        let Some(handled) = self.status.handled_requests.as_mut() else {
            return false;
        };
        let mut changed = false;
        for (slot, present) in [
            (&mut handled.rotate, rotate),
            (&mut handled.emergency_rotate, emergency),
            (&mut handled.revoke_previous, revoke),
        ] {
            if !present && slot.is_some() {
                *slot = None;
                changed = true;
            }
        }
        changed
    }

    /// A `revoke-previous` request with no previous key is marked handled.
    pub(super) async fn acknowledge_revoke_previous(&mut self) -> Result<Action, Error> {
        self.status
            .handled_requests
            .get_or_insert_with(Default::default)
            .revoke_previous = self.annotation(annotations::REVOKE_PREVIOUS);
        let phase = self.status.phase.unwrap_or(Phase::Ready);
        self.write_status(phase).await?;
        self.event(
            EventType::Normal,
            "RequestIgnored",
            "revoke-previous requested, but there is no previous key".into(),
        );
        Ok(Action::requeue(Duration::ZERO))
    }

    /// Nothing to do until `wake_at`: keep status and the store tidy.
    pub(super) async fn idle(&mut self, wake_at: Option<Timestamp>) -> Result<Action, Error> {
        let phase = if self.status.previous_key.is_some() {
            Phase::Overlapping
        } else if self.ak.spec.suspend {
            Phase::Suspended
        } else {
            Phase::Ready
        };
        // A failure reported earlier is cleared once things work again.
        // (A missing consumer is not a failure to clear: it is what Ready says until the
        // consumer exists, and writing it again would only repeat the same status.)
        let failure_shown = self.status.conditions.iter().any(|c| {
            (c.type_ == "Ready" && c.status != "True" && c.reason != "ConsumerNotFound")
                || (c.type_ == "Rotating" && c.status == "False" && c.reason != "Idle")
        });
        let queued_shown = self
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Rotating" && c.reason == "RotationQueued");
        let stale = self.status.phase != Some(phase)
            || self.status.observed_generation != self.ak.meta().generation
            || failure_shown
            || self.status.next_rotation_time != self.next_rotation().map(ts)
            || queued_shown != (self.queued.is_some() && phase == Phase::Overlapping);
        let requests_cleared = self.forget_removed_requests();
        self.sweep_store().await?;
        let consumers_changed = self.record_consumers().await?;
        if stale || consumers_changed || requests_cleared {
            self.write_status(phase).await?;
        }

        Ok(wake_at.map_or(Action::await_change(), |t| {
            Action::requeue(until(t, self.now()))
        }))
    }
}
