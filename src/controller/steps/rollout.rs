//! Steps 6-7: consumers roll out the new key (throttled across ApiKeys), their progress
//! is watched, and the overlap starts once every one has picked it up.

use std::time::Duration;

use jiff::Timestamp;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::apikey::Phase;
use crate::controller::clock::{ts, until};
use crate::controller::consumers::NOT_FOUND;
use crate::controller::error::Error;
use crate::controller::reconcile::uid;
use crate::controller::shell::Shell;
use crate::controller::status::set_condition;

impl Shell<'_> {
    /// Patches the consumers' pod templates with the current fingerprint, when a rollout slot is free.
    pub(super) async fn roll_out(&mut self) -> Result<Action, Error> {
        let admitted = {
            let mut rolling = self.ctx.rolling.lock().expect("lock");
            let me = uid(self.ak);
            if rolling.contains(&me) || rolling.len() < self.ctx.max_rollouts {
                rolling.insert(me);
                true
            } else {
                false
            }
        };
        if !admitted {
            let msg = format!(
                "waiting for a rollout slot (at most {} at once)",
                self.ctx.max_rollouts
            );
            if !self
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "Rotating" && c.reason == "RolloutQueued")
            {
                set_condition(
                    &mut self.status.conditions,
                    "Rotating",
                    true,
                    "RolloutQueued",
                    &msg,
                    self.ak.meta().generation,
                    self.ctx.clock.now(),
                );
                self.put_status().await?;
            }
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        let fp = self
            .status
            .current_key
            .as_ref()
            .map(|k| k.fingerprint.clone())
            .unwrap_or_default();
        for w in self.consumers().await? {
            if !w.carries && !w.missing {
                self.patch_template(w.kind, &w.name, &fp).await?;
            }
        }
        self.status.rollout_started_at = Some(ts(self.now()));
        self.record_consumers().await?;
        self.write_status(Phase::RollingOut).await?;
        Ok(Action::requeue(Duration::from_secs(10)))
    }

    /// Consumers are rolling: record their progress, look again at `recheck_at`.
    pub(super) async fn wait_for_rollout(
        &mut self,
        recheck_at: Timestamp,
    ) -> Result<Action, Error> {
        if self.status.rollout_started_at.is_none() {
            // Patched earlier without the start recorded: the timeout counts from now.
            self.status.rollout_started_at = Some(ts(self.now()));
            self.write_status(Phase::RollingOut).await?;
        }
        if self.record_consumers().await? {
            self.write_status(Phase::RollingOut).await?;
        }
        Ok(Action::requeue(until(recheck_at, self.now())))
    }

    /// A rollout past its timeout, or blocked: both keys stay valid; say why.
    pub(super) async fn rollout_stuck(&mut self) -> Result<Action, Error> {
        self.record_consumers().await?;
        let missing = self
            .status
            .consumers
            .iter()
            .any(|c| c.message.as_deref() == Some(NOT_FOUND));
        let blocked = self.status.consumers.iter().any(|c| {
            c.message
                .as_deref()
                .is_some_and(|m| m.starts_with("paused") || m.starts_with("updateStrategy"))
        });
        let waiting: Vec<String> = self
            .status
            .consumers
            .iter()
            .filter(|c| !c.rolled_out)
            .map(|c| {
                format!(
                    "{:?}/{} ({})",
                    c.kind,
                    c.name,
                    c.message.as_deref().unwrap_or("rolling")
                )
            })
            .collect();
        let (reason, msg) = if missing {
            (
                "ConsumerNotFound",
                format!(
                    "consumers not found: {}; annotate apikey.dev/revoke-previous=$(date +%s) to end the overlap without them",
                    waiting.join(", ")
                ),
            )
        } else if blocked {
            (
                "ConsumerBlocked",
                format!(
                    "consumers will not roll out by themselves: {}; both keys stay valid",
                    waiting.join(", ")
                ),
            )
        } else {
            (
                "RolloutTimeout",
                format!(
                    "rollout not complete after {}: {}; both keys stay valid",
                    self.ak.spec.rollout_timeout.0,
                    waiting.join(", ")
                ),
            )
        };
        // A consumer that does not exist makes the key not ready for it: Ready says so.
        let type_ = if missing { "Ready" } else { "Rotating" };
        // PHASE tells a rollout that waits for you from one that is only slow.
        let phase = if missing || blocked {
            Phase::Blocked
        } else {
            Phase::RollingOut
        };
        let changed = self.status.phase != Some(phase)
            || !self
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == type_ && c.reason == reason && c.message == msg);
        if changed {
            self.status.phase = Some(phase);
            set_condition(
                &mut self.status.conditions,
                type_,
                false,
                reason,
                &msg,
                self.ak.meta().generation,
                self.ctx.clock.now(),
            );
            self.put_status().await?;
            self.event(EventType::Warning, reason, msg);
        }
        Ok(Action::requeue(Duration::from_secs(30)))
    }

    /// Step 7: record when the previous key may be revoked.
    pub(super) async fn start_overlap(&mut self, revoke_after: Timestamp) -> Result<Action, Error> {
        if let Some(p) = self.status.previous_key.as_mut() {
            p.revoke_after = Some(ts(revoke_after));
        }
        // Terminating pods keep the old key until their grace period ends.
        let grace = self
            .consumers()
            .await?
            .iter()
            .map(|w| w.grace_seconds)
            .max()
            .unwrap_or(0);
        if (grace as u64) > self.overlap.as_secs() {
            let note = format!(
                "overlap {:?} is shorter than the consumers' terminationGracePeriodSeconds ({grace}s): terminating pods may still use the previous key when it is revoked",
                self.overlap
            );
            self.event(EventType::Warning, "OverlapShorterThanGracePeriod", note);
        }
        self.record_consumers().await?;
        self.write_status(Phase::Overlapping).await?;
        Ok(Action::requeue(until(revoke_after, self.now())))
    }
}
