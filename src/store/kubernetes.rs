//! The built-in store: an operator-owned state Secret beside the consumer Secret (not
//! meant to be mounted), so a pending key is durable before the consumer Secret changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{KeyStore, Slot, StoreError};
use crate::writes::OwnWrites;

pub const STATE_SECRET_TYPE: &str = "apikey.dev/state";

pub struct KubernetesStore {
    api: Api<Secret>,
    name: String,
    owner: OwnerReference,
    apikey: String,
    /// The state Secret as last read or written through this store, which lives for one
    /// reconcile: an ApiKey's reconciles never overlap and nothing else writes its state,
    /// so reading it again would return the same object (a reconcile read it 2 to 4 times).
    /// Forgotten on any error.
    seen: Mutex<Option<Option<Secret>>>,
    own_writes: Arc<OwnWrites>,
}

/// State Secret data keys are `k-` and the hex of the key id (ids may hold any character).
fn data_key(id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("k-{hex}")
}

pub fn state_secret_name(apikey: &str) -> String {
    format!("{apikey}-apikey-state")
}

fn id_of(data_key: &str) -> Option<String> {
    let hex = data_key.strip_prefix("k-")?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

fn unavailable(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 409 => StoreError::Changed(s.message),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl KubernetesStore {
    /// `own_writes` learns each write, so its echo does not wake the ApiKey again.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        apikey: &str,
        owner: OwnerReference,
        own_writes: Arc<OwnWrites>,
    ) -> Self {
        KubernetesStore {
            api: Api::namespaced(client, namespace),
            name: state_secret_name(apikey),
            owner,
            apikey: apikey.into(),
            seen: Mutex::new(None),
            own_writes,
        }
    }

    fn remember(&self, state: Option<Option<Secret>>) {
        *self.seen.lock().expect("lock") = state;
    }

    fn remember_write(&self, written: &Result<Secret, kube::Error>) {
        if let Ok(w) = written {
            self.own_writes.record(&w.metadata);
        }
        self.remember(written.as_ref().ok().cloned().map(Some));
    }

    async fn read(&self) -> Result<Option<Secret>, StoreError> {
        if let Some(seen) = self.seen.lock().expect("lock").clone() {
            return Ok(seen);
        }
        let read = self.api.get_opt(&self.name).await;
        self.remember(read.as_ref().ok().cloned());
        read.map_err(unavailable)
    }

    async fn merge(&self, patch: serde_json::Value) -> Result<(), StoreError> {
        let patched = self
            .api
            .patch(&self.name, &crate::writes::patch(), &Patch::Merge(patch))
            .await;
        self.remember_write(&patched);
        patched.map(|_| ()).map_err(unavailable)
    }

    /// The state Secret if it exists and is ours: one of that name that is not holds
    /// nothing of ours, so there is nothing in it to delete or release.
    async fn own_state(&self) -> Result<Option<Secret>, StoreError> {
        match self.state().await {
            Err(StoreError::Foreign(_)) => Ok(None),
            other => other,
        }
    }

    /// The state Secret, if it exists - refusing one this ApiKey does not own.
    async fn state(&self) -> Result<Option<Secret>, StoreError> {
        let Some(s) = self.read().await? else {
            return Ok(None);
        };
        let ours = s.type_.as_deref() == Some(STATE_SECRET_TYPE)
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("apikey.dev/state-of"))
                == Some(&self.apikey);
        if !ours {
            return Err(StoreError::Foreign(format!(
                "Secret {:?} exists and is not this ApiKey's state; rename or delete it",
                self.name
            )));
        }
        Ok(Some(s))
    }

    async fn create_with(&self, key: String, value: ByteString) -> Result<(), kube::Error> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(BTreeMap::from([(
                    "apikey.dev/state-of".to_string(),
                    self.apikey.clone(),
                )])),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            type_: Some(STATE_SECRET_TYPE.into()),
            data: Some(BTreeMap::from([(key, value)])),
            ..Default::default()
        };
        let created = self.api.create(&crate::writes::post(), &secret).await;
        self.remember_write(&created);
        created.map(|_| ())
    }
}

impl KeyStore for KubernetesStore {
    /// Keys are kept by id; which one is current is status's to say (the Secret shows it).
    fn put<'a>(
        &'a self,
        id: &'a str,
        secret: &'a SecretString,
        _slot: Slot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let value = ByteString(secret.expose_secret().as_bytes().to_vec());
            if self.seen.lock().expect("lock").is_none() {
                // Unread in this reconcile: a new ApiKey's first key (a rotation reads the
                // state first), where it does not exist yet, so it is created without a
                // 404 read first. Taken (keys adopted, or moved in from another store),
                // it is read and merged into.
                match self.create_with(data_key(id), value.clone()).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    created => return created.map_err(unavailable),
                }
            }
            match self.state().await? {
                None => self
                    .create_with(data_key(id), value)
                    .await
                    .map_err(unavailable),
                Some(s) => {
                    let held = s.data.as_ref().and_then(|d| d.get(&data_key(id))) == Some(&value);
                    // One a predecessor released (Retain) is owned again, so it goes
                    // with this ApiKey.
                    let owned = s.owner_references().iter().any(|o| o.uid == self.owner.uid);
                    let mut patch = json!({"data": {data_key(id): value}});
                    if !owned {
                        patch["metadata"] = json!({"ownerReferences": [self.owner]});
                    }
                    match held && owned {
                        // Held already (the trait's no-op): no write.
                        true => Ok(()),
                        false => self.merge(patch).await,
                    }
                }
            }
        }
        .boxed()
    }

    fn promote<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async { Ok(()) }.boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>> {
        async move {
            let secret = self.state().await?;
            Ok(secret
                .and_then(|s| s.data)
                .and_then(|mut d| d.remove(&data_key(id)))
                .map(|b| SecretString::from(String::from_utf8_lossy(&b.0).into_owned())))
        }
        .boxed()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            if self.own_state().await?.is_none() {
                return Ok(());
            }
            self.merge(json!({"data": {data_key(id): null}})).await
        }
        .boxed()
    }

    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        async move {
            let data = self.state().await?.and_then(|s| s.data).unwrap_or_default();
            Ok(data.keys().filter_map(|k| id_of(k)).collect())
        }
        .boxed()
    }

    /// Detaches the state Secret from the ApiKey so it outlives it (deletionPolicy
    /// Retain); a Secret of that name that is not this ApiKey's state is left alone.
    fn release(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            if self.own_state().await?.is_some() {
                self.merge(json!({"metadata": {"ownerReferences": null}}))
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }

    /// The state Secret is owned by the ApiKey: the garbage collector takes it.
    fn purge(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async { Ok(()) }.boxed()
    }

    fn location(&self) -> String {
        format!("Secret {}", self.name)
    }
}
