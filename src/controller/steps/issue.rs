//! Steps 1-5 of a rotation (docs/rotation.md): record the intent, mint, persist, promote;
//! abandoning a pending key that will not be promoted, and an emergency that arrives
//! while one is in flight.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::apikey::{HistoryEntry, KeyStatus, MintParameters, PendingKey, Phase, annotations};
use crate::controller::clock::{parse_ts, ts};
use crate::controller::error::Error;
use crate::controller::issuers::Read;
use crate::controller::reconcile::uid;
use crate::controller::rotation::Trigger;
use crate::controller::secret;
use crate::controller::shell::{Shell, parse_trigger};
use crate::issuer::IssuerError;
use crate::issuer::{self, MintRequest};
use crate::store::Slot;

impl Shell<'_> {
    /// Step 1: the intent (pendingKey) is recorded before anything external happens.
    pub(super) async fn begin_rotation(
        &mut self,
        rotation: u64,
        attempt: u32,
        trigger: Trigger,
    ) -> Result<Action, Error> {
        let issuer = self.spec_issuer(Read::Cached).await?;
        let (rotate, emergency) = (
            self.annotation(annotations::ROTATE),
            self.annotation(annotations::EMERGENCY_ROTATE),
        );
        let handled = self
            .status
            .handled_requests
            .get_or_insert_with(Default::default);
        match trigger {
            Trigger::Requested => handled.rotate = rotate,
            Trigger::Emergency => handled.emergency_rotate = emergency,
            _ => {}
        }
        self.status.pending_key = Some(PendingKey {
            rotation,
            attempt,
            started_at: ts(self.now()),
            id: None,
            fingerprint: None,
            issuer,
            store: self.store_record.clone(),
            minted_for: self.key_spec.clone(),
            reason: format!("{trigger:?}"),
            expires_at: None,
            request: Some(self.mint_parameters()),
            abandoning: false,
            superseded: vec![],
        });
        self.write_status(Phase::Issuing).await?;
        // A first key is no rotation: its Distributed event tells all there is. Events
        // are API writes too (two more per new key made 10,000 new ApiKeys take a tenth
        // longer; BENCHMARKS.md), so each one must tell what no other event does.
        let (kind, verb) = match trigger {
            Trigger::Initial => return Ok(Action::requeue(Duration::ZERO)),
            Trigger::Emergency => (
                EventType::Warning,
                "emergency rotation: the current key will be revoked as soon as its successor is in the Secret",
            ),
            _ => (EventType::Normal, "rotation started"),
        };
        self.event(
            kind,
            "RotationStarted",
            format!("{verb} (rotation {rotation}, reason {trigger:?})"),
        );
        Ok(Action::requeue(Duration::ZERO))
    }

    /// Steps 2-3: mint with the rotation's idempotency key, record the id, store the material.
    pub(super) async fn mint(&mut self) -> Result<Action, Error> {
        let pending = self
            .status
            .pending_key
            .clone()
            .expect("decide mints only with a pending key");
        // The spec's issuer must still allow the key; the pending key was recorded for it.
        let (allowed, object) = self.checked_spec_issuer(Read::Live).await?;
        let mut pending = pending;
        if pending.id.is_none()
            && (allowed.kind, &allowed.name) == (pending.issuer.kind, &pending.issuer.name)
            && allowed.uid != pending.issuer.uid
        {
            // Recreated before anything was minted: the key comes from the new object,
            // and its record must say so (revocation checks the uid).
            pending.issuer.uid = allowed.uid.clone();
            self.status.pending_key = Some(pending.clone());
            self.write_status(Phase::Issuing).await?;
        }
        let issuer = if pending.issuer == allowed {
            self.open_issuer(&pending.issuer, object).await?
        } else {
            self.issuer_for(&pending.issuer, Read::Live).await?
        };
        // Keys an earlier answer superseded go first: no new request while one may be valid.
        self.revoke_superseded(issuer.as_ref()).await?;
        let req = self.mint_request(&pending)?;
        let minted = match issuer.mint(&req).await {
            Err(IssuerError::Rejected(why)) if pending.id.is_none() => {
                // A refusal minted nothing: the next try (after a fix) uses a new
                // idempotency key, so an issuer that remembers answers never replays it.
                self.status.pending_key.as_mut().expect("pending").attempt += 1;
                self.write_status(Phase::Issuing).await?;
                return Err(IssuerError::Rejected(why).into());
            }
            other => other?,
        };
        if let Err(why) = minted.usable() {
            // It cannot be recorded or distributed, and must not stay valid unrecorded:
            // revoked now, and the attempt counts as refused (a new idempotency key next).
            if !minted.id.is_empty() {
                issuer.revoke(&minted.id).await?;
            }
            if pending.id.is_none() {
                self.status.pending_key.as_mut().expect("pending").attempt += 1;
                self.write_status(Phase::Issuing).await?;
            }
            return Err(IssuerError::Rejected(format!(
                "the issuer answered a key that cannot be used ({why}); it was revoked"
            ))
            .into());
        }
        let fingerprint = issuer::fingerprint(&minted.secret);
        let p = self.status.pending_key.as_mut().expect("pending");
        if let Some(recorded) = pending.id.as_ref().filter(|id| **id != minted.id) {
            // The issuer answered the same idempotency key with another key. The new one
            // is recorded before the old one (never distributed) is revoked: a crash in
            // between leaves neither unrecorded.
            if p.superseded.len() >= crate::api::limits::SUPERSEDED_KEYS as usize {
                return Err(IssuerError::Rejected(
                    "the issuer keeps answering a repeated request with new keys".into(),
                )
                .into());
            }
            p.superseded.push(recorded.clone());
        }
        p.id = Some(minted.id.clone());
        p.fingerprint = Some(fingerprint.clone());
        p.expires_at = minted.expires_at.map(ts);
        // The id is in status before the store is tried, so a store failure shows
        // which key waits for it (and Persist re-mints it by idempotency key); so is
        // the fingerprint of exactly the material stored.
        if pending.id.as_ref() != Some(&minted.id)
            || pending.fingerprint.as_ref() != Some(&fingerprint)
        {
            self.write_status(Phase::Storing).await?;
        }
        self.revoke_superseded(issuer.as_ref()).await?;
        // Checked before it goes anywhere: a key the issuer does not accept yet (issuers
        // are often eventually consistent) waits here, its id already recorded.
        issuer.verify(&minted).await?;
        self.store
            .put(&minted.id, &minted.secret, Slot::Pending)
            .await?;
        // No status write: that the key is stored is read from the store itself
        // (observe), and the promotion that comes next records it. No event either: the
        // promotion's names the key, and a key stuck before it is in status (pendingKey).
        Ok(Action::requeue(Duration::ZERO))
    }

    /// Revokes the keys the pending rotation's request was answered with before the one
    /// it keeps, and forgets them once revoked.
    async fn revoke_superseded(&mut self, issuer: &dyn issuer::Issuer) -> Result<(), Error> {
        let superseded = match &self.status.pending_key {
            Some(p) if !p.superseded.is_empty() => p.superseded.clone(),
            _ => return Ok(()),
        };
        for id in &superseded {
            issuer.revoke(id).await?;
            self.store.delete(id).await?;
        }
        self.status
            .pending_key
            .as_mut()
            .expect("pending")
            .superseded
            .clear();
        self.write_status(Phase::Storing).await
    }

    /// Step 5: the stored pending key becomes current; the old one previous.
    pub(super) async fn promote(&mut self) -> Result<Action, Error> {
        let (id, rotation, issued) = self.promote_pending().await?;
        self.distribute(rotation, issued).await?;
        let fingerprint = self.status.current_key.as_ref().map(|k| &k.fingerprint);
        self.event(
            EventType::Normal,
            "Distributed",
            format!(
                "key {id} ({}) minted for rotation {rotation} is now current in Secret {:?}",
                fingerprint.map_or("", String::as_str),
                secret::secret_name(self.ak)
            ),
        );
        Ok(Action::requeue(Duration::ZERO))
    }

    /// The pending key becomes current in the store and in status (not yet written); the
    /// current one previous. Returns its id, rotation and issue time.
    pub(in crate::controller) async fn promote_pending(
        &mut self,
    ) -> Result<(String, u64, jiff::Timestamp), Error> {
        let id = self
            .status
            .pending_key
            .as_ref()
            .and_then(|p| p.id.clone())
            .expect("decide promotes only a stored pending key");
        // The store first: promoting it again after a crash is a no-op, while a status
        // already promoted would never bring the store along.
        self.store.promote(&id).await?;
        let p = self.status.pending_key.take().expect("pending");
        let issued = self.now();
        let new = KeyStatus {
            id: id.clone(),
            fingerprint: p.fingerprint.clone().unwrap_or_default(),
            issued_at: ts(issued),
            expires_at: p.expires_at.clone(),
            rotation: p.rotation,
            issuer: p.issuer.clone(),
            store: p.store.clone(),
            revoke_after: None,
            last_used_at: None,
            minted_for: p.minted_for.clone(),
            emergency: false,
        };
        let emergency = parse_trigger(&p.reason) == Trigger::Emergency;
        self.status.previous_key = self.status.current_key.take().map(|mut old| {
            old.emergency = emergency;
            old
        });
        self.status.current_key = Some(new);
        Ok((id, p.rotation, issued))
    }

    /// A pending key that will not be promoted is revoked and its attempt spent.
    pub(super) async fn abandon(&mut self) -> Result<Action, Error> {
        let p = self
            .status
            .pending_key
            .clone()
            .expect("decide abandons only a pending key");
        if !p.abandoning {
            // Recorded before anything is revoked: whatever happens next (a crash, the
            // spec reverted), this key is never persisted or promoted again.
            self.status
                .pending_key
                .as_mut()
                .expect("pending")
                .abandoning = true;
            self.write_status(Phase::Revoking).await?;
        }
        self.drop_pending(&p).await?;
        self.status.pending_key = None;
        // The attempt's idempotency key is spent, id or not.
        self.status.last_abandoned = Some(crate::api::apikey::AttemptRef {
            rotation: p.rotation,
            attempt: p.attempt,
        });
        self.record_history(HistoryEntry {
            rotation: p.rotation,
            id: p.id.clone().unwrap_or_default(),
            fingerprint: p.fingerprint.clone().unwrap_or_default(),
            issued_at: p.started_at.clone(),
            revoked_at: Some(ts(self.now())),
            reason: "Abandoned".into(),
        });
        self.write_status(Phase::Ready).await?;
        self.event(
            EventType::Normal,
            "Abandoned",
            format!(
                "pending rotation {} dropped: the key's spec changed",
                p.rotation
            ),
        );
        Ok(Action::requeue(Duration::ZERO))
    }

    /// What the issuer is asked for a pending rotation: what was recorded with its intent
    /// (the same every time: idempotent, whatever the spec says now).
    pub(super) fn mint_request(&self, p: &PendingKey) -> Result<MintRequest, Error> {
        let params = p.request.clone().unwrap_or_else(|| self.mint_parameters());
        let expires_after = params
            .expires_after
            .as_ref()
            .map(|d| d.to_std())
            .transpose()
            .map_err(Error::InvalidSpec)?;
        Ok(MintRequest {
            idempotency_key: format!("{}-{}-{}", uid(self.ak), p.rotation, p.attempt),
            display_name: params.display_name,
            scopes: params.scopes,
            key_type: params.key_type,
            expires_after,
            now: self.now(),
            owner: format!("{}/{}", self.ns, self.ak.name_any()),
            uid: uid(self.ak),
            rotation: p.rotation,
            started_at: parse_ts(&p.started_at).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            known_ids: self.issued_keys().map(|k| k.id.clone()).collect(),
            account: self
                .ak
                .annotations()
                .get(annotations::AWS_IAM_USER_NAME)
                .cloned(),
        })
    }

    /// The mint parameters the spec asks for now.
    fn mint_parameters(&self) -> MintParameters {
        let spec = &self.ak.spec;
        MintParameters {
            display_name: spec
                .display_name
                .clone()
                .unwrap_or_else(|| format!("{}/{}", self.ns, self.ak.name_any())),
            scopes: spec.scopes.clone(),
            key_type: spec.key_type,
            expires_after: spec.expires_after.clone(),
        }
    }

    /// An emergency during a rotation: the rotation in flight becomes the emergency one,
    /// so the key current when it was requested goes as soon as its successor is out.
    pub(super) async fn escalate_pending(&mut self) -> Result<Action, Error> {
        let emergency = self.annotation(annotations::EMERGENCY_ROTATE);
        self.status
            .handled_requests
            .get_or_insert_with(Default::default)
            .emergency_rotate = emergency;
        let pending = self
            .status
            .pending_key
            .as_mut()
            .expect("decide escalates a pending key");
        pending.reason = format!("{:?}", Trigger::Emergency);
        let rotation = pending.rotation;
        let phase = self.status.phase.unwrap_or(Phase::Issuing);
        self.write_status(phase).await?;
        let compromised = self
            .status
            .current_key
            .as_ref()
            .map_or("(none yet)".to_string(), |k| k.id.clone());
        self.event(
            EventType::Warning,
            "RotationStarted",
            format!(
                "emergency rotation: key {compromised} will be revoked as soon as rotation {rotation}, in flight, is in the Secret"
            ),
        );
        Ok(Action::requeue(Duration::ZERO))
    }

    /// A crash between the store's promotion and status's leaves the pending key current
    /// in the store: the key status calls current goes back to that slot before the
    /// pending one is removed, so readers of the store never lose the key pods use.
    async fn restore_current_in_store(&self) -> Result<(), Error> {
        let Some(current) = &self.status.current_key else {
            return Ok(());
        };
        if let Some(material) = self.store.get(&current.id).await? {
            self.store
                .put(&current.id, &material, Slot::Current)
                .await?;
        }
        Ok(())
    }

    /// Revokes a pending key; one whose id was never recorded is minted again with its
    /// idempotency key (the issuer returns the same key, if it minted one) and revoked.
    pub(super) async fn drop_pending(&mut self, p: &PendingKey) -> Result<(), Error> {
        let found: Result<_, Error> = async {
            let issuer = self.issuer_that_minted(&p.issuer).await?;
            let id = match &p.id {
                Some(id) => id.clone(),
                None => issuer.mint(&self.mint_request(p)?).await?.id,
            };
            Ok((issuer, id))
        }
        .await;
        match found {
            Ok((issuer, id)) => {
                self.restore_current_in_store().await?;
                for id in p.superseded.iter().chain([&id]) {
                    issuer.revoke(id).await?;
                    self.store.delete(id).await?;
                }
            }
            // Dropping must not wedge on an issuer that is gone or a spec no longer
            // valid: say what may be left at the issuer and go on.
            Err(
                e @ (Error::IssuerNotFound { .. }
                | Error::IssuerReplaced { .. }
                | Error::InvalidSpec(_)),
            ) => {
                let id = p.id.as_deref().unwrap_or("(id not recorded)");
                self.event(
                    EventType::Warning,
                    "PendingKeyNotRevoked",
                    format!(
                        "could not revoke the key of unfinished rotation {} ({id}): {e}; revoke it at {:?} {:?} if it was minted",
                        p.rotation, p.issuer.kind, p.issuer.name
                    ),
                );
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}
