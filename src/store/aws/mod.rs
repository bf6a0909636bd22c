//! AWS Secrets Manager. One secret per ApiKey named `<prefix>/<path>`; each key is a
//! version, and the staging labels carry the rotation as native rotation does: a new key
//! is put as `AWSPENDING`, promotion moves `AWSCURRENT` to it (the old version becomes
//! `AWSPREVIOUS`), and a removed key loses its labels. The secret's tags name its owner:
//! another owner's secret, or one with native rotation on, is never touched.

mod client;
mod labels;
mod versions;

use std::sync::Arc;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::Tag;
use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;

use self::client::Session;
pub use self::client::Sessions;
use self::versions::{CURRENT, PENDING, PREVIOUS, STAGING, Version, holding, label, labelled};
use super::{Access, EntryRef, Fields, Held, KeyStore, Owner, Slot, StoreError};
use crate::api::store::AwsSecretsManagerStore;

const OWNER: &str = "apikey.dev/owner";
const OWNER_UID: &str = "apikey.dev/uid";

pub struct SecretsManager {
    session: Arc<Session>,
    name: String,
    owner: Owner,
    fields: Fields,
    spec: AwsSecretsManagerStore,
    location: String,
}

pub async fn open(
    store: &AwsSecretsManagerStore,
    access: Access<'_>,
    entry: EntryRef,
    sessions: &Sessions,
) -> Result<SecretsManager, StoreError> {
    let session = sessions.get(store, &access).await?;
    let name = format!("{}/{}", store.prefix.trim_matches('/'), entry.path);
    Ok(SecretsManager {
        session,
        location: name.clone(),
        name,
        owner: entry.owner,
        fields: entry.fields,
        spec: store.clone(),
    })
}

/// Lists one secret's name: reachable, and the credentials may call Secrets Manager.
pub async fn check(
    store: &AwsSecretsManagerStore,
    access: Access<'_>,
    sessions: &Sessions,
) -> Result<(), StoreError> {
    let session = sessions.get(store, &access).await?;
    session
        .client
        .list_secrets()
        .max_results(1)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| of_sdk(&session, e))
}

impl SecretsManager {
    fn fail<E, R>(&self, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        of_sdk(&self.session, e)
    }

    /// The secret's labelled versions, or `None` when there is no secret. Refuses another
    /// owner's secret, and one a rotation Lambda manages; restores our own secret if it
    /// is scheduled for deletion (the ApiKey came back), and records a new uid.
    async fn read(&self) -> Result<Option<Vec<Version>>, StoreError> {
        let c = &self.session.client;
        let described = match c.describe_secret().secret_id(&self.name).send().await {
            Ok(d) => d,
            Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        let tag = |key: &str| {
            described
                .tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
        };
        match tag(OWNER) {
            Some(o) if o == self.owner.key() => {}
            Some(other) => {
                return Err(StoreError::Foreign(format!(
                    "secret {} belongs to ApiKey {other}; choose another storeRef.path",
                    self.name
                )));
            }
            None => {
                return Err(StoreError::Foreign(format!(
                    "secret {} was not created by the operator; choose another storeRef.path or delete that secret",
                    self.name
                )));
            }
        }
        if described.rotation_enabled() == Some(true) {
            return Err(StoreError::Foreign(format!(
                "secret {} has native rotation enabled: a rotation Lambda would replace the operator's keys; turn it off (aws secretsmanager cancel-rotate-secret)",
                self.name
            )));
        }
        if described.deleted_date().is_some() {
            c.restore_secret()
                .secret_id(&self.name)
                .send()
                .await
                .map_err(|e| self.fail(e))?;
        }
        if tag(OWNER_UID) != Some(self.owner.uid.as_str()) {
            c.tag_resource()
                .secret_id(&self.name)
                .tags(tag_of(OWNER_UID, &self.owner.uid))
                .send()
                .await
                .map_err(|e| self.fail(e))?;
        }
        let mut found = Vec::new();
        for (version_id, labels) in described.version_ids_to_stages().into_iter().flatten() {
            if labels.is_empty() {
                continue;
            }
            let value = c
                .get_secret_value()
                .secret_id(&self.name)
                .version_id(version_id)
                .send()
                .await
                .map_err(|e| self.fail(e))?;
            found.push(Version {
                version_id: version_id.clone(),
                labels: labels.clone(),
                key: value
                    .secret_string()
                    .and_then(|s| versions::parse(&self.fields, s)),
            });
        }
        Ok(Some(found))
    }

    /// `read`, creating the secret (with no version yet, so nothing is `AWSCURRENT` before
    /// a promotion) when there is none.
    async fn read_or_create(&self) -> Result<Vec<Version>, StoreError> {
        if let Some(v) = self.read().await? {
            return Ok(v);
        }
        let mut create = self
            .session
            .client
            .create_secret()
            .name(&self.name)
            .description(format!(
                "API keys of ApiKey {}, managed by apikey-operator",
                self.owner.key()
            ))
            .tags(tag_of(OWNER, &self.owner.key()))
            .tags(tag_of(OWNER_UID, &self.owner.uid));
        for (k, v) in &self.spec.tags {
            create = create.tags(tag_of(k, v));
        }
        if let Some(kms) = &self.spec.kms_key_id {
            create = create.kms_key_id(kms);
        }
        match create.send().await {
            Ok(_) => {}
            // Created concurrently: `read` tells whose it is.
            Err(e) if e.code() == Some("ResourceExistsException") => {}
            Err(e) => return Err(self.fail(e)),
        }
        Ok(self.read().await?.unwrap_or_default())
    }
}

fn tag_of(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// SDK errors as store errors: bounded, the service's code and message only.
fn of_sdk<E, R>(session: &Session, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, said) = crate::aws::said(&e);
    match code.as_deref().unwrap_or_default() {
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId" => {
            session.refused();
            StoreError::Denied(format!("Secrets Manager refused: {said}"))
        }
        _ => StoreError::Unavailable(format!("Secrets Manager: {said}")),
    }
}

impl KeyStore for SecretsManager {
    fn put<'a>(
        &'a self,
        id: &'a str,
        secret: &'a SecretString,
        slot: Slot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let found = self.read_or_create().await?;
            let wanted = label(slot);
            match holding(&found, id) {
                Some(v) if v.has(wanted) && !v.has(STAGING) => Ok(()),
                Some(v) => self.settle(&v.version_id, wanted).await,
                None => {
                    let token = versions::request_token(&self.owner.uid, id);
                    let value = versions::secret_string(&self.fields, id, secret);
                    self.put_version(&token, value, wanted).await
                }
            }
        }
        .boxed()
    }

    fn promote<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let found = self.read().await?.unwrap_or_default();
            let Some(v) = holding(&found, id) else {
                return Err(StoreError::Unavailable(format!(
                    "key {id} is not pending in secret {}",
                    self.name
                )));
            };
            if !v.has(CURRENT) {
                // Secrets Manager labels the version it takes AWSCURRENT from AWSPREVIOUS.
                let from = labelled(&found, CURRENT).map(|o| o.version_id.as_str());
                self.move_label(CURRENT, Some(&v.version_id), from).await?;
            }
            if v.has(PENDING) {
                self.move_label(PENDING, None, Some(&v.version_id)).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>> {
        async move {
            let found = self.read().await?.unwrap_or_default();
            Ok(holding(&found, id)
                .and_then(|v| v.key.as_ref())
                .map(|k| k.1.clone()))
        }
        .boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let found = self.read().await?.unwrap_or_default();
            let Some(v) = holding(&found, id) else {
                return Ok(());
            };
            if v.has(CURRENT) {
                // AWSCURRENT cannot be taken off a version, only moved: onto an empty
                // version, so a removed key is never what readers (or a restored secret)
                // get. The key's version becomes AWSPREVIOUS, dropped below.
                let token = versions::request_token(&self.owner.uid, &format!("removed/{id}"));
                self.put_version(&token, "{}".into(), CURRENT).await?;
            }
            // A version without labels is deprecated, and Secrets Manager deletes it.
            let labels = self.read().await?.unwrap_or_default();
            if let Some(v) = holding(&labels, id) {
                for l in &v.labels {
                    self.move_label(l, None, Some(&v.version_id)).await?;
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        async move {
            let found = self.read().await?.unwrap_or_default();
            Ok(found
                .into_iter()
                .filter_map(|v| v.key)
                .map(|k| k.0)
                .collect())
        }
        .boxed()
    }

    fn held(&self) -> BoxFuture<'_, Result<Option<Held>, StoreError>> {
        async move {
            let found = self.read().await?.unwrap_or_default();
            let pair = |l: &str| labelled(&found, l).and_then(|v| v.key.clone());
            Ok(Some(Held {
                current: pair(CURRENT),
                previous: pair(PREVIOUS),
                pending: pair(PENDING),
            }))
        }
        .boxed()
    }

    fn release(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // The secret stays, tagged with its owner: an ApiKey re-created under the same name
        // continues with it.
        async { Ok(()) }.boxed()
    }

    fn purge(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            match self.read().await {
                Ok(Some(_)) => {}
                // Nothing of ours to delete.
                Ok(None) | Err(StoreError::Foreign(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
            let mut delete = self.session.client.delete_secret().secret_id(&self.name);
            delete = match self.spec.recovery_window_days {
                0 => delete.force_delete_without_recovery(true),
                days => delete.recovery_window_in_days(days),
            };
            delete.send().await.map(|_| ()).map_err(|e| self.fail(e))
        }
        .boxed()
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}
