//! What users see: status (guarded by resourceVersion), conditions, history and events.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::clock::ts;
use super::consumers::NOT_FOUND;
use super::error::Error;
use super::reconcile::Context;
use super::reconcile::uid;
use super::rotation;
use super::shell::Shell;
use crate::api::apikey::{ApiKey, HistoryEntry, Phase};

const HISTORY_LIMIT: usize = 10;

impl Shell<'_> {
    pub(super) async fn write_status(&mut self, phase: Phase) -> Result<(), Error> {
        let spec_changed = self.status.observed_generation != self.ak.meta().generation;
        self.status.phase = Some(phase);
        self.status.observed_generation = self.ak.meta().generation;
        let rotating = !matches!(
            phase,
            Phase::Ready | Phase::Suspended | Phase::Failed | Phase::Error
        );
        let generation = self.ak.meta().generation;
        self.status.next_rotation_time = self.next_rotation().map(ts);
        let (reason, message) = match &self.queued {
            // A trigger that must wait for the previous key to go is shown, with how to
            // end the wait: users who changed scopes for security must not think it done.
            Some((trigger, revoke_after)) if rotating => {
                let when = revoke_after.map_or_else(
                    || "once consumers have rolled out and the overlap has passed".to_string(),
                    |t| format!("when the overlap ends at {}", ts(t)),
                );
                (
                    "RotationQueued".to_string(),
                    format!(
                        "a {trigger:?} rotation is queued: it starts {when}; annotate apikey.dev/revoke-previous=$(date +%s) to start it now"
                    ),
                )
            }
            _ if rotating => (
                format!("{phase:?}"),
                format!(
                    "rotation {} in progress",
                    self.status.rotation_count + u64::from(self.status.pending_key.is_some())
                ),
            ),
            _ => ("Idle".into(), "no rotation in progress".into()),
        };
        let newly_queued = reason == "RotationQueued"
            && !self
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "Rotating" && c.reason == reason);
        set_condition(
            &mut self.status.conditions,
            "Rotating",
            rotating,
            &reason,
            &message,
            generation,
            self.ctx.clock.now(),
        );
        if let Some(k) = &self.status.current_key {
            let missing: Vec<String> = self
                .status
                .consumers
                .iter()
                .filter(|c| c.message.as_deref() == Some(NOT_FOUND))
                .map(|c| format!("{:?}/{}", c.kind, c.name))
                .collect();
            let (ready, reason, msg) = if missing.is_empty() {
                let msg = format!("key {} ({}) is distributed", k.id, k.fingerprint);
                (true, "KeyDistributed", msg)
            } else {
                let msg = format!(
                    "key {} is in the Secret, but consumers {} do not exist: create them or fix spec.consumers (a previous key is not revoked until they have rolled out)",
                    k.id,
                    missing.join(", ")
                );
                (false, "ConsumerNotFound", msg)
            };
            set_condition(
                &mut self.status.conditions,
                "Ready",
                ready,
                reason,
                &msg,
                generation,
                self.ctx.clock.now(),
            );
        }
        self.put_status().await?;
        if newly_queued {
            self.event(EventType::Normal, "RotationQueued", message);
        }
        if spec_changed {
            for (reason, note) in self.spec_warnings() {
                self.event(EventType::Warning, reason, note);
            }
        }
        Ok(())
    }

    /// Settings that are valid but will not do what their fields' docs promise (said once
    /// per spec change, as Warning events).
    pub(super) fn spec_warnings(&self) -> Vec<(&'static str, String)> {
        let spec = &self.ak.spec;
        let Some(interval) = self.cadence.shortest_interval(self.now()) else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        if self.overlap >= interval {
            warnings.push((
                "OverlapLongerThanRotation",
                format!(
                    "rotation.overlap ({:?}) is not shorter than the time between two rotations ({:?}): each rotation waits for the previous key to go",
                    self.overlap, interval
                ),
            ));
        }
        let rollout = spec.rollout_timeout.to_std().unwrap_or_default();
        if let Some(Ok(expires)) = spec.expires_after.as_ref().map(|e| e.to_std())
            && expires < interval + self.overlap + rollout
        {
            warnings.push((
                "ExpiryShorterThanRotation",
                format!(
                    "expiresAfter ({:?}) is shorter than the rotation period ({:?}) plus overlap ({:?}) plus rolloutTimeout ({:?}): keys are rotated early, at their expiry margin",
                    expires, interval, self.overlap, rollout
                ),
            ));
        }
        warnings
    }

    /// When the next rotation is due: the schedule or the expiry margin of the current
    /// key, whichever comes first (none while the spec cannot be read).
    pub(super) fn next_rotation(&self) -> Option<Timestamp> {
        if self.spec_error.is_some() {
            return None;
        }
        let current = self.status.current_key.as_ref().map(Self::held)?;
        let scheduled = self.cadence.next_after(current.issued_at, &uid(self.ak));
        [scheduled, rotation::expiry_margin(&current)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Replaces status with `self.status`, guarded by the resourceVersion this reconcile
    /// last saw (a concurrent write makes it a 409 and the reconcile starts over).
    pub(super) async fn put_status(&mut self) -> Result<(), Error> {
        if self.status == self.status_on_server {
            return Ok(());
        }
        let mut obj = self.ak.clone();
        obj.status = Some(self.status.clone());
        obj.metadata.managed_fields = None;
        obj.metadata.resource_version = self.resource_version.clone();
        let api: Api<ApiKey> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let written = api
            .replace_status(&self.ak.name_any(), &crate::writes::post(), &obj)
            .await?;
        self.ctx.wrote(&written);
        self.resource_version = written.resource_version();
        self.status_on_server = self.status.clone();
        Ok(())
    }

    pub(super) fn record_history(&mut self, entry: HistoryEntry) {
        self.status.history.insert(0, entry);
        self.status.history.truncate(HISTORY_LIMIT);
    }

    /// Publishes an event. The action carries the rotation number, so events about one
    /// rotation stay apart from the next one's; an identical repeat counts on the first.
    pub(super) fn event(&self, type_: EventType, reason: &str, note: String) {
        let rotation = self
            .status
            .pending_key
            .as_ref()
            .map(|p| p.rotation)
            .unwrap_or(self.status.rotation_count);
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: format!("{reason}/{rotation}"),
            secondary: None,
        };
        self.ctx.recorder.publish(ev, self.ak.object_ref(&()));
    }
}

/// The longest condition message written (the schema allows 32768; kubectl shows one
/// line).
const CONDITION_MESSAGE: usize = 1024;

pub(super) fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        // Messages quote what servers answered (a Kubernetes API error, an issuer's
        // refusal): one line, bounded, whatever they sent.
        message: crate::messages::bounded_to(message, CONDITION_MESSAGE),
        observed_generation: generation,
        last_transition_time: transition,
    });
}

/// Records a failure where users look: conditions and an event (never secrets), on top
/// of the freshest status we know, guarded by its resourceVersion (a concurrent writer
/// wins; the retry reports).
pub(super) async fn report_failure(ak: &ApiKey, ctx: &Context, e: &Error) {
    let mut status = ak.status.clone().unwrap_or_default();
    // A key is distributed once Ready said so: a first key recorded in status whose
    // Secret write then failed is not.
    let distributed = status.current_key.is_some()
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    let message = crate::messages::bounded_to(&e.to_string(), CONDITION_MESSAGE);
    // Rotating says why a rotation does not go on (so it never reads "Issuing" beside a
    // failure); Ready too, when no key was distributed yet. PHASE tells a failure that
    // waits for a change (Failed) from one being retried (Error).
    let mut failed = vec!["Rotating"];
    if !distributed {
        failed.push("Ready");
        status.phase = Some(if e.is_transient() {
            Phase::Error
        } else {
            Phase::Failed
        });
    }
    for type_ in failed {
        set_condition(
            &mut status.conditions,
            type_,
            false,
            e.reason(),
            &message,
            ak.meta().generation,
            ctx.clock.now(),
        );
    }
    status.observed_generation = ak.meta().generation;
    // A spec that cannot be read has no schedule: NEXT must not show the old one's.
    if matches!(e, Error::InvalidSpec(_)) {
        status.next_rotation_time = None;
    }
    if ak.status.as_ref() != Some(&status) {
        let mut obj = ak.clone();
        obj.status = Some(status);
        let api: Api<ApiKey> =
            Api::namespaced(ctx.client.clone(), &ak.namespace().unwrap_or_default());
        match api
            .replace_status(&ak.name_any(), &crate::writes::post(), &obj)
            .await
        {
            Ok(written) => ctx.wrote(&written),
            Err(err) => tracing::debug!(error = %err, "cannot record the failure in status"),
        }
        let ev = Event {
            type_: EventType::Warning,
            reason: e.reason().into(),
            note: Some(message),
            action: "Reconcile".into(),
            secondary: None,
        };
        ctx.recorder.publish(ev, ak.object_ref(&()));
    }
    tracing::warn!(
        apikey = %format!("{}/{}", ak.namespace().unwrap_or_default(), ak.name_any()),
        reason = e.reason(),
        error = %e,
        "reconcile failed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_messages_are_one_bounded_line() {
        let mut conditions = vec![];
        let answer = format!(
            "admission webhook said:\n{}\r\u{1b}[31mdenied",
            "x".repeat(5000)
        );
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "KubernetesError",
            &answer,
            Some(1),
            Timestamp::UNIX_EPOCH,
        );
        let message = &conditions[0].message;
        assert!(
            message.starts_with("admission webhook said: xxx"),
            "{message}"
        );
        assert!(!message.chars().any(char::is_control));
        assert_eq!(
            message.chars().count(),
            CONDITION_MESSAGE + 1,
            "cut, with an ellipsis"
        );
    }
}
