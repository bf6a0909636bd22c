//! HashiCorp Vault / OpenBao, KV version 2. One entry per ApiKey at
//! `<mount>/<prefix>/<path>`; its latest version is what readers see (the layout is in
//! `entry`). KV v2 has no staging labels, so a pending key rides along in its own fields
//! and the current fields change only at promotion. Every write is check-and-set, and
//! the entry's `custom_metadata` names its owner: another owner's entry is never written.

mod entry;
mod error;
mod session;

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;
use serde_json::{Map, Value};
use vaultrs::api::kv2::requests::{SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::ReadSecretMetadataResponse;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;
use vaultrs::kv2;

use self::entry::Entry;
use self::session::Session;
pub use self::session::Sessions;
use super::{Access, EntryRef, Fields, Held, KeyStore, Owner, Slot, StoreError};
use crate::api::store::VaultStore;

const OWNER: &str = "apikey.dev/owner";
const OWNER_UID: &str = "apikey.dev/uid";

pub struct Vault {
    session: Arc<Session>,
    mount: String,
    path: String,
    owner: Owner,
    fields: Fields,
    location: String,
}

pub fn open(
    store: &VaultStore,
    access: Access<'_>,
    entry: EntryRef,
    sessions: &Sessions,
) -> Result<Vault, StoreError> {
    let session = sessions.get(store, &access)?;
    let path = format!("{}/{}", store.path_prefix.trim_matches('/'), entry.path);
    Ok(Vault {
        session,
        location: format!("{}/{path}", store.mount_path),
        mount: store.mount_path.clone(),
        path,
        owner: entry.owner,
        fields: entry.fields,
    })
}

/// Logs in and looks up the session's own token: reachable, unsealed, credentials good.
pub async fn check(
    store: &VaultStore,
    access: Access<'_>,
    sessions: &Sessions,
) -> Result<(), StoreError> {
    let session = sessions.get(store, &access)?;
    session
        .run(|c: Arc<VaultClient>| async move { vaultrs::token::lookup_self(&*c).await })
        .await
        .map(|_| ())
}

/// What was read of the entry: its metadata (`None`: no entry) and latest version.
struct Read {
    meta: Option<ReadSecretMetadataResponse>,
    entry: Entry,
}

impl Read {
    fn version(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.current_version)
    }

    fn recorded(&self, field: &str) -> Option<&str> {
        let custom = self.meta.as_ref()?.custom_metadata.as_ref()?;
        custom.get(field).map(String::as_str)
    }
}

/// Whose entry it is, as far as this ApiKey is concerned.
enum Ownership {
    /// Ours (possibly recorded with an earlier uid of the same ApiKey name).
    Ours {
        uid_current: bool,
    },
    /// Nobody's yet: nothing written, or only our own first write (see `claimable`).
    Unclaimed,
    Foreign(String),
}

impl Vault {
    async fn read(&self) -> Result<Read, StoreError> {
        let (mount, path) = (&self.mount, &self.path);
        let meta = self
            .session
            .run(|c: Arc<VaultClient>| async move {
                optional(kv2::read_metadata(&*c, mount, path).await)
            })
            .await?;
        let live = meta.as_ref().is_some_and(|m| {
            m.versions
                .get(&m.current_version.to_string())
                .is_some_and(|v| v.deletion_time.is_empty() && !v.destroyed)
        });
        let entry = if live {
            let data: Option<Map<String, Value>> =
                self.session
                    .run(|c: Arc<VaultClient>| async move {
                        optional(kv2::read(&*c, mount, path).await)
                    })
                    .await?;
            data.map(|d| Entry::parse(&d, &self.fields))
                .unwrap_or_default()
        } else {
            Entry::default()
        };
        Ok(Read { meta, entry })
    }

    /// Whose the entry is. An entry without an owner that holds `claimable` is our own
    /// first write, cut short before its owner was recorded.
    fn ownership(&self, read: &Read, claimable: Option<&str>) -> Ownership {
        match read.recorded(OWNER) {
            Some(o) if o == self.owner.key() => Ownership::Ours {
                uid_current: read.recorded(OWNER_UID) == Some(self.owner.uid.as_str()),
            },
            Some(other) => Ownership::Foreign(format!(
                "{} belongs to ApiKey {other}; choose another storeRef.path",
                self.location()
            )),
            None if read.version() == 0
                || claimable.is_some_and(|id| read.entry.get(id).is_some()) =>
            {
                Ownership::Unclaimed
            }
            None => Ownership::Foreign(format!(
                "{} holds data the operator did not write; choose another storeRef.path or move that data",
                self.location()
            )),
        }
    }

    /// Reads the entry for this ApiKey, refusing another owner's.
    async fn read_own(&self, claimable: Option<&str>) -> Result<(Read, Ownership), StoreError> {
        let read = self.read().await?;
        match self.ownership(&read, claimable) {
            Ownership::Foreign(why) => Err(StoreError::Foreign(why)),
            mine => Ok((read, mine)),
        }
    }

    /// Applies `change` to the latest version and writes the result with check-and-set
    /// (`cas=0` creates the entry, so two ApiKeys can never both claim one path), then
    /// records the owner. Returns the read it started from, if it wrote.
    async fn modify(
        &self,
        claimable: Option<&str>,
        change: impl FnOnce(&mut Entry) -> Result<bool, StoreError>,
    ) -> Result<Option<Read>, StoreError> {
        let (read, ownership) = self.read_own(claimable).await?;
        let mut entry = read.entry.clone();
        let changed = change(&mut entry)?;
        if changed {
            let data = &entry.data(&self.fields);
            let cas = u32::try_from(read.version()).unwrap_or(u32::MAX);
            let (mount, path) = (&self.mount, &self.path);
            self.session
                .run(|c: Arc<VaultClient>| async move {
                    kv2::set_with_options(&*c, mount, path, &data, SetSecretRequestOptions { cas })
                        .await
                })
                .await?;
        }
        match ownership {
            Ownership::Ours { uid_current: true } => {}
            // Unclaimed, or ours under an ApiKey of the same name that no longer exists
            // (one name, one object): record who owns it now.
            _ if changed || matches!(ownership, Ownership::Ours { .. }) => self.claim().await?,
            _ => {}
        }
        Ok(changed.then_some(read))
    }

    async fn claim(&self) -> Result<(), StoreError> {
        let custom = HashMap::from([
            (OWNER.to_string(), self.owner.key()),
            (OWNER_UID.to_string(), self.owner.uid.clone()),
        ]);
        let (mount, path, custom) = (&self.mount, &self.path, &custom);
        self.session
            .run(|c: Arc<VaultClient>| async move {
                kv2::set_metadata(
                    &*c,
                    mount,
                    path,
                    Some(SetSecretMetadataRequest::builder().custom_metadata(custom.clone())),
                )
                .await
            })
            .await?;
        // Another writer may have claimed it between our write and this one.
        let read = self.read().await?;
        match self.ownership(&read, None) {
            Ownership::Foreign(why) => Err(StoreError::Foreign(why)),
            _ => Ok(()),
        }
    }

    /// Destroys the versions before `newest` that hold key `id`, so a revoked key's
    /// material does not linger in the entry's history.
    async fn destroy_history(&self, id: &str, newest: u64) -> Result<(), StoreError> {
        let (mount, path) = (&self.mount, &self.path);
        let Some(meta) = self
            .session
            .run(|c: Arc<VaultClient>| async move {
                optional(kv2::read_metadata(&*c, mount, path).await)
            })
            .await?
        else {
            return Ok(());
        };
        let mut holding = Vec::new();
        for (version, v) in &meta.versions {
            let Ok(n) = version.parse::<u64>() else {
                continue;
            };
            if n >= newest || v.destroyed || !v.deletion_time.is_empty() {
                continue;
            }
            let data: Option<Map<String, Value>> = self
                .session
                .run(|c: Arc<VaultClient>| async move {
                    optional(kv2::read_version(&*c, mount, path, n).await)
                })
                .await?;
            if data.is_some_and(|d| Entry::parse(&d, &self.fields).get(id).is_some()) {
                holding.push(n);
            }
        }
        if !holding.is_empty() {
            holding.sort_unstable();
            let holding = &holding;
            self.session
                .run(|c: Arc<VaultClient>| async move {
                    kv2::destroy_versions(&*c, mount, path, holding.to_vec()).await
                })
                .await?;
        }
        Ok(())
    }
}

/// A 404 as `None`: the entry (or version) does not exist.
fn optional<T>(r: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::APIError { code: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl KeyStore for Vault {
    fn put<'a>(
        &'a self,
        id: &'a str,
        secret: &'a SecretString,
        slot: Slot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.modify(Some(id), |e| Ok(e.put(id, secret, slot)))
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn promote<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.modify(Some(id), |e| e.promote(id).map_err(StoreError::Unavailable))
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>> {
        async move {
            let (read, _) = self.read_own(Some(id)).await?;
            Ok(read.entry.get(id).map(|k| k.secret.clone()))
        }
        .boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let before = self.modify(Some(id), |e| Ok(e.remove(id))).await?;
            // Also after a cut-short earlier delete: history may still hold the key.
            let newest = before.map_or(u64::MAX, |r| r.version() + 1);
            self.destroy_history(id, newest).await
        }
        .boxed()
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        async move {
            let (read, _) = self.read_own(None).await?;
            Ok(read.entry.keys().map(|k| k.id.clone()).collect())
        }
        .boxed()
    }

    fn held(&self) -> BoxFuture<'_, Result<Option<Held>, StoreError>> {
        async move {
            let (read, _) = self.read_own(None).await?;
            let pair = |k: Option<entry::Key>| k.map(|k| (k.id, k.secret));
            let e = read.entry;
            Ok(Some(Held {
                current: pair(e.current),
                previous: pair(e.previous),
                pending: pair(e.pending),
            }))
        }
        .boxed()
    }

    fn release(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // The entry and its owner record stay: the keys in it remain valid, and an ApiKey
        // re-created under the same name finds it.
        async { Ok(()) }.boxed()
    }

    fn purge(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let read = self.read().await?;
            if !matches!(self.ownership(&read, None), Ownership::Ours { .. }) {
                return Ok(());
            }
            let (mount, path) = (&self.mount, &self.path);
            self.session
                .run(|c: Arc<VaultClient>| async move {
                    optional(kv2::delete_metadata(&*c, mount, path).await)
                })
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}
