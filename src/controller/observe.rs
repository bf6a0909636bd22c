//! Gathering what `rotation::decide` needs: status, the store, the consumer Secret and
//! the consumers' rollouts, as one `Observed`.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::clock::{after, parse_ts, ts};
use super::error::Error;
use super::issuers::Read;
use super::reconcile::uid;
use super::rotation::{Observed, Pending, Previous, Rollout, Usage};
use super::secret::{self, Held};
use super::shell::{Shell, parse_trigger};
use crate::api::apikey::annotations;
use crate::issuer;
use crate::store::Slot;

impl Shell<'_> {
    pub(super) async fn observe(&mut self) -> Result<Observed, Error> {
        let usage = self.previous_usage().await?;
        let s = &self.status;
        let secret_name = secret::secret_name(self.ak);
        let actual = match self.consumer_secret.take() {
            Some(known) => known,
            None => self.secrets.get_opt(&secret_name).await?,
        };
        self.consumer_secret = Some(actual.clone());
        if let Some(a) = &actual
            && !secret::may_manage(self.ak, a)
        {
            return Err(Error::SecretConflict(secret_name));
        }
        let mut pending = match &s.pending_key {
            Some(p) => Some(Pending {
                rotation: p.rotation,
                attempt: p.attempt,
                minted_for: p.minted_for.clone(),
                trigger: parse_trigger(&p.reason),
                id: p.id.clone(),
                stored: match &p.id {
                    Some(id) => self.store.get(id).await?.is_some(),
                    None => false,
                },
                abandoning: p.abandoning,
                in_secret: p
                    .id
                    .as_ref()
                    .zip(actual.as_ref())
                    .is_some_and(|(id, a)| secret::offers(self.ak, a, id)),
            }),
            None => None,
        };
        if let Some(p) = pending.as_mut().filter(|p| p.in_secret && !p.stored) {
            // Lost from the store after the Secret got it: promoted from the Secret's copy.
            self.recover_material(actual.as_ref()).await?;
            let id = p.id.as_deref().expect("in the Secret by its id");
            p.stored = self.store.get(id).await?.is_some();
        }
        let s = &self.status;
        let current = s.current_key.as_ref().map(Self::held);
        self.secret_version = actual.as_ref().and_then(|a| a.resource_version());
        let desired = match self.desired_secret().await {
            Err(Error::MaterialLost) => {
                self.recover_material(actual.as_ref()).await?;
                self.desired_secret().await
            }
            other => other,
        };
        let current_material_lost = matches!(desired, Err(Error::MaterialLost));
        let secret_in_sync = match (&actual, desired) {
            (_, Err(Error::MaterialLost)) => true, // nothing to restore it from
            (_, Err(e)) => return Err(e),
            (Some(actual), Ok(Some(desired))) => secret::in_sync(self.ak, &desired, actual),
            (None, Ok(Some(_))) => false,
            (_, Ok(None)) => true,
        };
        if s.current_key.is_none() && s.pending_key.is_none() {
            let gone = |id: &str| s.history.iter().any(|h| h.id == id);
            let in_secret = actual.as_ref().and_then(|a| secret::held_keys(self.ak, a));
            let found = match in_secret {
                Some(f) => Some(f),
                None => self.held_in_store().await?,
            };
            self.found = found.filter(|f| !gone(&f.current.0));
        }
        let rollout = self.rollout_state().await?;
        let handled = s.handled_requests.clone().unwrap_or_default();
        let scheduled_at = current
            .as_ref()
            .and_then(|c| self.cadence.next_after(c.issued_at, &uid(self.ak)));
        Ok(Observed {
            now: self.now(),
            key_spec: self.key_spec.clone(),
            suspended: self.ak.spec.suspend,
            previous: s.previous_key.as_ref().map(|p| Previous {
                key: Self::held(p),
                revoke_after: p.revoke_after.as_deref().and_then(parse_ts),
                emergency: p.emergency,
                usage,
            }),
            current,
            pending,
            rotation_count: s.rotation_count,
            abandoned_attempts: s
                .last_abandoned
                .as_ref()
                .filter(|a| a.rotation == s.rotation_count + 1)
                .map_or(0, |a| a.attempt),
            scheduled_at,
            rotate_requested: self.requested(annotations::ROTATE, handled.rotate.as_ref()),
            emergency_requested: self.requested(
                annotations::EMERGENCY_ROTATE,
                handled.emergency_rotate.as_ref(),
            ),
            revoke_previous_requested: self.requested(
                annotations::REVOKE_PREVIOUS,
                handled.revoke_previous.as_ref(),
            ),
            secret_in_sync,
            current_material_lost,
            adoptable: self.found.is_some(),
            rollout,
            overlap: self.overlap,
            unused_rule: self.unused_rule,
        })
    }

    /// How the previous key is used, once its overlap is over and only where the spec
    /// asks for usage-aware revocation (an issuer call each time). Status shows the
    /// previous key's `lastUsedAt`.
    async fn previous_usage(&mut self) -> Result<Option<Usage>, Error> {
        let Some(prev) = self.status.previous_key.clone() else {
            return Ok(None);
        };
        let over = prev
            .revoke_after
            .as_deref()
            .and_then(parse_ts)
            .is_some_and(|t| self.now() >= t);
        if self.unused_rule.is_none() || !over {
            return Ok(None);
        }
        let usage = self
            .issuer_for(&prev.issuer, Read::Cached)
            .await?
            .last_used(&prev.id)
            .await?;
        let seen = usage.and_then(|u| u.last_used_at).map(ts);
        if seen.is_some() && seen != prev.last_used_at {
            self.status
                .previous_key
                .as_mut()
                .expect("previous")
                .last_used_at = seen;
            self.put_status().await?;
        }
        Ok(usage)
    }

    /// Keys an entry of this ApiKey's name holds although status holds none (the ApiKey
    /// was re-created, or its status lost): continued with, never minted again. A pending
    /// key is promoted over the current one; one beside two others cannot be placed, and
    /// is reported rather than silently kept.
    async fn held_in_store(&self) -> Result<Option<secret::Found>, Error> {
        let Some(held) = self.store.held().await? else {
            return Ok(None);
        };
        let (current, previous) = match (held.current, held.previous, held.pending) {
            (Some(cur), None, Some(pending)) => (pending, Some(cur)),
            (None, prev, Some(pending)) => (pending, prev),
            (Some(cur), prev, pending) => {
                if let Some((id, _)) = pending {
                    self.event(
                        EventType::Warning,
                        "PendingKeyNotAdopted",
                        format!("the store holds key {id} pending beside a current and a previous key; it is not used: revoke it at the issuer"),
                    );
                }
                (cur, prev)
            }
            (None, _, None) => return Ok(None),
        };
        Ok(Some(secret::Found {
            current,
            previous,
            created: None,
            provenance: Default::default(),
            found_in: format!("the store ({})", self.store.location()),
        }))
    }

    /// The store lost keys the Secret still holds (its state was deleted, say): put them
    /// back rather than strand working keys. The fingerprint in status vouches for each
    /// (a pending key's goes back as pending).
    pub(super) async fn recover_material(&self, actual: Option<&Secret>) -> Result<(), Error> {
        let Some(found) = actual.and_then(|a| secret::held_keys(self.ak, a)) else {
            return Ok(());
        };
        let current = Some((found.current, Slot::Current));
        let previous = found.previous.map(|p| (p, Slot::Previous));
        for ((id, material), slot) in [current, previous].into_iter().flatten() {
            let fingerprint = issuer::fingerprint(&material);
            let issued = self
                .issued_keys()
                .any(|k| k.id == id && k.fingerprint == fingerprint);
            let pending = self.status.pending_key.as_ref().is_some_and(|p| {
                p.id.as_ref() == Some(&id) && p.fingerprint.as_ref() == Some(&fingerprint)
            });
            let slot = if pending { Slot::Pending } else { slot };
            if (issued || pending) && self.store.get(&id).await?.is_none() {
                self.store.put(&id, &material, slot).await?;
                self.event(
                    EventType::Warning,
                    "MaterialRecovered",
                    format!(
                        "key {id} ({fingerprint}) was missing from the store; restored it from Secret {:?}",
                        secret::secret_name(self.ak)
                    ),
                );
            }
        }
        Ok(())
    }

    pub(super) async fn desired_secret(&self) -> Result<Option<Secret>, Error> {
        let Some(cur) = &self.status.current_key else {
            return Ok(None);
        };
        let cur_secret = self.store.get(&cur.id).await?.ok_or(Error::MaterialLost)?;
        // A previous key without material stays valid until revoked but is no longer
        // offered: pods that hold it keep working, new ones get the current key.
        let prev = match &self.status.previous_key {
            Some(p) => self.store.get(&p.id).await?.map(|s| (p, s)),
            None => None,
        };
        let current = Held {
            id: &cur.id,
            fingerprint: &cur.fingerprint,
            secret: &cur_secret,
            issuer: &cur.issuer,
            minted_for: &cur.minted_for,
        };
        let previous = prev.as_ref().map(|(p, s)| Held {
            id: &p.id,
            fingerprint: &p.fingerprint,
            secret: s,
            issuer: &p.issuer,
            minted_for: &p.minted_for,
        });
        secret::render(self.ak, &current, previous.as_ref())
            .map(Some)
            .map_err(Error::InvalidSpec)
    }

    pub(super) async fn rollout_state(&self) -> Result<Rollout, Error> {
        let all = self.consumers().await?;
        let missing = all.iter().any(|w| w.missing);
        let consumers: Vec<_> = all.into_iter().filter(|w| !w.missing).collect();
        if consumers.iter().any(|w| !w.carries) {
            return Ok(Rollout::NotStarted);
        }
        // A named consumer that does not exist never counts as rolled out.
        if missing {
            return Ok(Rollout::Blocked);
        }
        if consumers.iter().all(|w| w.done) {
            return Ok(Rollout::Done);
        }
        if consumers.iter().any(|w| !w.done && w.blocked.is_some()) {
            return Ok(Rollout::Blocked);
        }
        let timeout = self
            .ak
            .spec
            .rollout_timeout
            .to_std()
            .map_err(Error::InvalidSpec)?;
        let started = self.status.rollout_started_at.as_deref().and_then(parse_ts);
        Ok(match started {
            Some(t) if self.now() >= after(t, timeout) => Rollout::TimedOut,
            _ => Rollout::InProgress,
        })
    }
}
