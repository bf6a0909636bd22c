//! Putting keys where pods read them: the consumer Secret (and the store behind it),
//! restored when it drifts; a predecessor's keys adopted instead of minted again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use secrecy::SecretString;
use serde_json::json;

use crate::api::apikey::{DeletionPolicy, KeyStatus, Phase};
use crate::controller::clock::ts;
use crate::controller::error::Error;
use crate::controller::issuers::Read;
use crate::controller::secret;
use crate::controller::shell::Shell;
use crate::issuer;
use crate::store::Slot;

impl Shell<'_> {
    /// Takes over the keys a deleted predecessor left in the Secret, with the issuer and
    /// key-defining spec the Secret records for each: revocation goes where a key came
    /// from, and a key minted for another spec is rotated at once. A key without that
    /// record counts as minted for no known spec (rotated at once).
    pub(super) async fn adopt(&mut self) -> Result<Action, Error> {
        let found = self.found.take().expect("decide adopts only found keys");
        let spec_issuer = self.spec_issuer(Read::Live).await?;
        let issued = found.created.unwrap_or_else(|| self.now());
        let store = self.store_record.clone();
        let adopt = |id: String, material: &SecretString, rotation: u64| {
            let (issuer, minted_for) = match found.provenance.get(&id) {
                Some(p) => (p.issuer.clone(), p.minted_for.clone()),
                None => (spec_issuer.clone(), String::new()),
            };
            KeyStatus {
                fingerprint: issuer::fingerprint(material),
                id,
                issued_at: ts(issued),
                expires_at: None,
                rotation,
                issuer,
                store: store.clone(),
                revoke_after: None,
                last_used_at: None,
                minted_for,
                emergency: false,
            }
        };
        self.store
            .put(&found.current.0, &found.current.1, Slot::Current)
            .await?;
        let mut previous = None;
        if let Some((id, material)) = &found.previous {
            // The predecessor was mid-overlap: finish it (roll out, overlap, revoke).
            self.store.put(id, material, Slot::Previous).await?;
            previous = Some(adopt(id.clone(), material, 1));
        }
        let rotation = if previous.is_some() { 2 } else { 1 };
        let current = adopt(found.current.0.clone(), &found.current.1, rotation);
        let (id, found_in) = (current.id.clone(), found.found_in.clone());
        self.status.current_key = Some(current);
        self.status.previous_key = previous;
        self.distribute(rotation, issued).await?;
        self.event(
            EventType::Normal,
            "Adopted",
            format!("continuing with key {id} found in {found_in}"),
        );
        Ok(Action::requeue(Duration::ZERO))
    }

    /// Rewrites a consumer Secret that was deleted or edited.
    pub(super) async fn restore_secret(&mut self) -> Result<Action, Error> {
        let name = secret::secret_name(self.ak);
        let recorded = self.status.secret_name.clone();
        let moved_from = recorded.clone().filter(|old| *old != name);
        self.apply_secret().await?;
        match moved_from {
            // Renamed: the keys are in the new Secret; the old one goes as deletion would
            // take it (its keys are this ApiKey's and may be revoked, so it must not stay
            // owned by it, offering them).
            Some(old) => {
                self.clean_up_secret(&old).await?;
                let policy = self.ak.spec.deletion_policy;
                let fate = if policy == DeletionPolicy::Revoke {
                    "deleted"
                } else {
                    "released (kept, no longer managed)"
                };
                self.event(
                    EventType::Normal,
                    "SecretMoved",
                    format!("keys moved from Secret {old:?} to {name:?}; {old:?} {fate}"),
                );
            }
            None => self.event(
                EventType::Warning,
                "SecretRestored",
                format!("Secret {name:?} was missing or edited; restored"),
            ),
        }
        if recorded.as_deref() != Some(name.as_str()) {
            self.put_status().await?;
        }
        Ok(Action::requeue(Duration::ZERO))
    }

    /// A consumer Secret this ApiKey no longer writes: released under Retain, deleted under
    /// Revoke (and left alone if it is not this ApiKey's).
    async fn clean_up_secret(&mut self, name: &str) -> Result<(), Error> {
        let Some(s) = self.secrets.get_opt(name).await? else {
            return Ok(());
        };
        if !secret::may_manage(self.ak, &s) {
            return Ok(());
        }
        if self.ak.spec.deletion_policy == DeletionPolicy::Revoke {
            let exactly_that = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: s.uid(),
                    resource_version: s.resource_version(),
                }),
                ..Default::default()
            };
            self.secrets.delete(name, &exactly_that).await?;
        } else {
            let release = secret::release_patch(self.ak);
            self.secrets
                .patch(name, &crate::writes::patch(), &Patch::Merge(&release))
                .await?;
        }
        Ok(())
    }

    /// A new current key is in status (not yet written): record its rotation, then write
    /// the Secret, and status.
    pub(super) async fn distribute(
        &mut self,
        rotation: u64,
        issued: Timestamp,
    ) -> Result<(), Error> {
        self.status.rotation_count = rotation;
        self.status.last_rotation_time = Some(ts(issued));
        self.status.rollout_started_at = None;
        let phase = if self.status.previous_key.is_some() {
            Phase::RollingOut
        } else {
            Phase::Ready
        };
        // The Secret first, so status (and Ready) moves to the new key only once the
        // Secret holds it. A crash in between leaves status as it was: a pending key the
        // Secret offers is promoted again, never abandoned (`rotation::decide`), and keys
        // adopted are found again.
        self.apply_secret().await?;
        self.write_status(phase).await
    }

    pub(super) async fn apply_secret(&mut self) -> Result<(), Error> {
        let Some(desired) = self.desired_secret().await? else {
            return Ok(());
        };
        let name = secret::secret_name(self.ak);
        if self.secret_version.is_none() {
            // Created whole: an apply on top would change nothing. Later applies take over
            // the fields they set, and what the create alone still owns is a stray.
            let created = self.create_secret(&desired).await?;
            self.secret_version = created.resource_version();
            self.consumer_secret = Some(Some(created));
            self.status.secret_name = Some(name);
            return Ok(());
        }
        let mut body = serde_json::to_value(&desired).expect("Secrets serialize");
        body["apiVersion"] = json!("v1");
        body["kind"] = json!("Secret");
        body["metadata"]["resourceVersion"] = json!(self.secret_version);
        let mut written = self
            .secrets
            .patch(&name, &crate::writes::apply(), &Patch::Apply(body))
            .await?;
        // An apply removes only fields no other manager owns: one another writer (or our
        // own create) co-owns stays. Remove those at the version just written, so a
        // restore converges instead of repeating.
        if let Some(patch) = secret::stray_patch(self.ak, &desired, &written) {
            written = self
                .secrets
                .patch(&name, &crate::writes::patch(), &Patch::Merge(patch))
                .await?;
        }
        self.ctx.own_writes.record(&written.metadata);
        self.secret_version = written.resource_version();
        self.consumer_secret = Some(Some(written));
        self.status.secret_name = Some(name);
        Ok(())
    }

    /// Creates the consumer Secret that was absent when this reconcile looked: a create,
    /// unlike an apply, fails when someone else's Secret took the name meanwhile (then
    /// the next look reports SecretConflict). It is created whole, so no reader ever sees
    /// it without its key.
    async fn create_secret(&self, desired: &Secret) -> Result<Secret, Error> {
        match self.secrets.create(&crate::writes::post(), desired).await {
            Ok(created) => {
                self.ctx.own_writes.record(&created.metadata);
                Ok(created)
            }
            // Taken meanwhile: look again (it is someone else's, or ours from a retry).
            Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Changed),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes store entries status no longer references (left by a failure between a
    /// status write and the store cleanup that follows it).
    pub(super) async fn sweep_store(&mut self) -> Result<(), Error> {
        let referenced: Vec<String> = self
            .issued_keys()
            .map(|k| k.id.clone())
            .chain(self.status.pending_key.as_ref().and_then(|p| p.id.clone()))
            .collect();
        for id in self.store.ids().await? {
            if !referenced.contains(&id) {
                self.store.delete(&id).await?;
            }
        }
        Ok(())
    }
}
