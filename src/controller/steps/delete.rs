//! Deletion: `Retain` releases the Secrets with their keys valid, `Revoke` revokes every
//! key the ApiKey holds; a pending key goes under either policy, unless the Secret a
//! `Retain` releases already offers it.

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::apikey::{ApiKey, DeletionPolicy, IssuerRecord};
use crate::controller::clock::parse_ts;
use crate::controller::error::Error;
use crate::controller::finalizers;
use crate::controller::reconcile::FINALIZER;
use crate::controller::secret;
use crate::controller::shell::Shell;

impl Shell<'_> {
    pub(in crate::controller) async fn finalize(&mut self) -> Result<Action, Error> {
        let retain = self.ak.spec.deletion_policy == DeletionPolicy::Retain;
        let consumer = secret::secret_name(self.ak);
        // Under Retain, the consumer Secret this ApiKey manages (read once) decides a
        // pending key's fate, and is released.
        let managed = match retain {
            true => {
                (self.secrets.get_opt(&consumer).await?).filter(|s| secret::may_manage(self.ak, s))
            }
            false => None,
        };
        if let Some(p) = self.status.pending_key.clone() {
            let offered = (managed.as_ref().zip(p.id.as_ref()))
                .is_some_and(|(s, id)| secret::offers(self.ak, s, id));
            if offered {
                // A promotion cut short after the Secret write: pods may use the key, and
                // the released Secret keeps offering it, so it stays valid as current.
                self.promote_pending().await?;
            } else {
                // Never promoted now: it goes under either policy.
                self.drop_pending(&p).await?;
            }
        }
        if !retain {
            let held: Vec<(IssuerRecord, String)> = self
                .issued_keys()
                .map(|k| (k.issuer.clone(), k.id.clone()))
                .collect();
            for (record, id) in held {
                if self.revoke_at_issuer(&record, &id).await? {
                    self.event(
                        EventType::Normal,
                        "Revoked",
                        format!("revoked key {id} (ApiKey deleted with deletionPolicy Revoke)"),
                    );
                }
                self.store.delete(&id).await?;
            }
            self.store.purge().await?;
            // The Secret goes too, before the finalizer does: left to the garbage
            // collector (which an orphaning delete skips) it could outlive this ApiKey and
            // offer its revoked key to a successor of the same name.
            if let Some(s) = self.secrets.get_opt(&consumer).await?
                && secret::may_manage(self.ak, &s)
            {
                let exactly_that = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: s.uid(),
                        resource_version: s.resource_version(),
                    }),
                    ..Default::default()
                };
                match self.secrets.delete(&consumer, &exactly_that).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        } else {
            // Retain: the Secrets outlive the ApiKey (their keys stay valid) — but only the
            // ones it manages are released; a foreign Secret of that name is left alone.
            let release = secret::release_patch(self.ak);
            if let Some(s) = managed {
                self.secret_version = s.resource_version();
                self.revoke_previous_if_due().await?;
                // Bring it up to date first: a key status names but the Secret lacks (a
                // distribute cut short) would otherwise be left valid and unreferenced.
                match self.apply_secret().await {
                    Ok(()) | Err(Error::MaterialLost) => {}
                    Err(e) => return Err(e),
                }
                self.secrets
                    .patch(&consumer, &crate::writes::patch(), &Patch::Merge(&release))
                    .await?;
            }
            self.store.release().await?;
        }
        let api: Api<ApiKey> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        finalizers::remove(&api, self.ak, FINALIZER).await?;
        self.ctx.forget(self.ak);
        Ok(Action::await_change())
    }
}

impl Shell<'_> {
    /// A previous key whose overlap is over (or that an emergency replaced) was due to be
    /// revoked — perhaps already was, by a step whose status write never landed. Finish
    /// that before a Retain release, so the released Secret offers only keys that stay
    /// valid.
    async fn revoke_previous_if_due(&mut self) -> Result<(), Error> {
        let Some(prev) = self.status.previous_key.clone() else {
            return Ok(());
        };
        let overlap_over = prev
            .revoke_after
            .as_deref()
            .and_then(parse_ts)
            .is_some_and(|t| t <= self.now());
        if !(prev.emergency || overlap_over) {
            return Ok(());
        }
        if self.revoke_at_issuer(&prev.issuer, &prev.id).await? {
            self.event(
                EventType::Normal,
                "Revoked",
                format!(
                    "revoked previous key {} (its overlap was over; the Secret is released with the current key only)",
                    prev.id
                ),
            );
        }
        self.status.previous_key = None;
        self.store.delete(&prev.id).await?;
        Ok(())
    }
}
