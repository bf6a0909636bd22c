//! Stores keep key material durable before any step depends on it. One small trait, one
//! module per backend; the built-in one keeps it in Kubernetes (the default: no
//! `storeRef`). External backends (`KeyStore` objects) register in `open`, beside this
//! trait, as issuers do in `issuer::PROVIDERS`.

pub mod aws;
pub mod kubernetes;
pub mod location;
pub mod vault;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;

use crate::api::apikey::SecretTemplate;
use crate::api::store::StoreConfig;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The store object the ApiKey names does not exist (or does not serve it).
    #[error("{0}")]
    NotFound(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store refused the operator's credentials or permissions.
    #[error("the store refused access: {0}")]
    Denied(String),
    /// Someone else changed the entry concurrently; retry.
    #[error("the store changed concurrently: {0}")]
    Changed(String),
    /// The entry belongs to someone else: it is never written.
    #[error("{0}")]
    Foreign(String),
}

impl StoreError {
    /// The message without the kind of failure in front.
    pub fn detail(&self) -> &str {
        match self {
            StoreError::NotFound(m)
            | StoreError::Unavailable(m)
            | StoreError::Denied(m)
            | StoreError::Changed(m)
            | StoreError::Foreign(m) => m,
        }
    }
}

/// Where a key sits in its ApiKey's entry, which is what readers of the store see: the
/// current key, the one it replaced (valid until revoked), and a minted key not yet
/// distributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Pending,
    Current,
    Previous,
}

pub trait KeyStore: Send + Sync {
    /// Keeps `secret` as key `id` in `slot`; writing what is there already is a no-op.
    fn put<'a>(
        &'a self,
        id: &'a str,
        secret: &'a SecretString,
        slot: Slot,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Step 5: the pending key `id` becomes current, the current key previous. A no-op
    /// when `id` is current already.
    fn promote<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>>;
    /// Removes key `id` (revoked or abandoned), with any history that held it.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The ids of every key stored for this ApiKey.
    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// The keys in each slot, for a store that keeps slots (`None` for one that keeps
    /// keys by id only): what an ApiKey without status continues with.
    fn held(&self) -> BoxFuture<'_, Result<Option<Held>, StoreError>> {
        async { Ok(None) }.boxed()
    }
    /// The ApiKey is deleted with `deletionPolicy: Retain`: the entry stays, its keys valid.
    fn release(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The ApiKey is deleted with `deletionPolicy: Revoke` and its keys are gone: the entry
    /// goes too, history included.
    fn purge(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Where the entry is in the backend (a KV path, a secret name), for status.
    fn location(&self) -> String;
}

/// A key and its id.
pub type StoredKey = (String, SecretString);

/// The keys an entry holds, by slot.
#[derive(Default)]
pub struct Held {
    pub current: Option<StoredKey>,
    pub previous: Option<StoredKey>,
    pub pending: Option<StoredKey>,
}

/// The ApiKey an entry belongs to, written into the entry and checked before each write.
#[derive(Clone, Debug)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    /// `<namespace>/<name>`: what an entry records, so a re-created ApiKey finds its own.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The entry field names: the ApiKey's Secret field names, so the store reads as the
/// Secret does; the pending key adds `-pending` to the current key's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    pub current_key: String,
    pub current_id: String,
    pub previous_key: String,
    pub previous_id: String,
    pub pending_key: String,
    pub pending_id: String,
}

impl Fields {
    pub fn of(t: &SecretTemplate) -> Fields {
        Fields {
            current_key: t.current_key_field.clone(),
            current_id: t.key_id_field.clone(),
            previous_key: t.previous_key_field.clone(),
            previous_id: t.previous_key_id_field.clone(),
            pending_key: format!("{}-pending", t.current_key_field),
            pending_id: format!("{}-pending", t.key_id_field),
        }
    }
}

/// How to reach a store object's backend.
pub struct Access<'a> {
    pub client: &'a kube::Client,
    /// The store object's kind and name, for status.
    pub kind: &'static str,
    pub name: String,
    /// Where the store's credentials are read and its ServiceAccounts live: the
    /// KeyStore's namespace, or the operator's for a ClusterKeyStore.
    pub credentials_namespace: &'a str,
    /// The ServiceAccount Kubernetes auth uses when the store names none.
    pub default_service_account: &'a str,
    /// Identifies the store's settings (`<uid>@<generation>`), so connections are reused
    /// until they change.
    pub version: String,
}

/// One ApiKey's entry in a store.
pub struct EntryRef {
    /// The entry's path below the store's prefix (see `location`).
    pub path: String,
    pub owner: Owner,
    pub fields: Fields,
}

/// Connections kept between reconciles, per store (logins are not free, and a token
/// per reconcile would pile up at the server).
#[derive(Default)]
pub struct Connections {
    vault: vault::Sessions,
    aws: aws::Sessions,
}

/// Opens `entry` in the backend `config` selects: the one place a
/// backend is registered.
pub async fn open(
    config: &StoreConfig,
    access: Access<'_>,
    entry: EntryRef,
    connections: &Connections,
) -> Result<Box<dyn KeyStore>, StoreError> {
    match (&config.vault, &config.aws_secrets_manager) {
        (Some(v), _) => Ok(Box::new(vault::open(v, access, entry, &connections.vault)?)),
        (None, Some(a)) => Ok(Box::new(
            aws::open(a, access, entry, &connections.aws).await?,
        )),
        (None, None) => Err(no_backend()),
    }
}

/// Checks that the operator can reach and log in to the store (the KeyStore's Ready).
pub async fn check(
    config: &StoreConfig,
    access: Access<'_>,
    connections: &Connections,
) -> Result<(), StoreError> {
    match (&config.vault, &config.aws_secrets_manager) {
        (Some(v), _) => vault::check(v, access, &connections.vault).await,
        (None, Some(a)) => aws::check(a, access, &connections.aws).await,
        (None, None) => Err(no_backend()),
    }
}

/// The schema requires one backend; an object written before that rule gets this.
fn no_backend() -> StoreError {
    StoreError::NotFound(
        "the store sets no backend: set spec.vault or spec.awsSecretsManager".into(),
    )
}

/// One field of a credentials Secret, read at each login so a rotated credential is
/// picked up without a restart.
pub(crate) async fn credential(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<SecretString, StoreError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), namespace);
    let missing = |what: String| StoreError::Denied(format!("{what} in namespace {namespace:?}"));
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| StoreError::Unavailable(format!("reading Secret {name:?}: {e}")))?
        .ok_or_else(|| missing(format!("Secret {name:?} not found")))?;
    let value = secret
        .data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| missing(format!("Secret {name:?} has no field {key:?}")))?;
    let text = String::from_utf8(value.0)
        .map_err(|_| missing(format!("field {key:?} of Secret {name:?} is not UTF-8")))?;
    Ok(SecretString::from(text.trim().to_string()))
}
