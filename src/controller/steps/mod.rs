//! One function per step of the rotation protocol, grouped as docs/rotation.md groups
//! them; `act` performs the step `rotation::decide` chose.

mod delete;
mod distribute;
mod issue;
mod relocate;
mod revoke;
mod rollout;

use kube::runtime::controller::Action;

use super::error::Error;
use super::rotation::{self, Observed, Step};
use super::shell::Shell;

impl Shell<'_> {
    pub(super) async fn act(&mut self, step: Step, o: &Observed) -> Result<Action, Error> {
        // One line per step that changes something (waiting and idling are not news).
        if !matches!(step, Step::Idle { .. } | Step::WaitForRollout { .. }) {
            tracing::info!(
                step = ?step,
                key = self.status.current_key.as_ref().map(|k| k.id.as_str()).unwrap_or("-"),
                "step"
            );
        }
        match step {
            Step::Adopt => self.adopt().await,
            Step::AcknowledgeRevokePrevious => self.acknowledge_revoke_previous().await,
            Step::BeginRotation {
                rotation,
                attempt,
                trigger,
            } => self.begin_rotation(rotation, attempt, trigger).await,
            Step::Mint | Step::Persist => self.mint().await,
            Step::Promote => self.promote().await,
            Step::Abandon => self.abandon().await,
            Step::EscalatePending => self.escalate_pending().await,
            Step::RestoreSecret => self.restore_secret().await,
            Step::RollOut => self.roll_out().await,
            Step::WaitForRollout { recheck_at } => self.wait_for_rollout(recheck_at).await,
            Step::MaterialLostDuringOverlap => Err(Error::MaterialLost),
            Step::RolloutStuck => self.rollout_stuck().await,
            Step::StartOverlap { revoke_after } => self.start_overlap(revoke_after).await,
            Step::RevokePrevious => {
                let rule = o
                    .previous
                    .as_ref()
                    .and_then(|p| rotation::revoke_rule(o, p, p.revoke_after?).ok());
                self.revoke_previous(o.revoke_previous_requested, rule)
                    .await
            }
            Step::Idle { wake_at } => self.idle(wake_at).await,
        }
    }
}
