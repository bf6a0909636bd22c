//! Stores keep key material durable before any step depends on it. One small trait, one
//! module per backend; the built-in one keeps it in Kubernetes (the default: no
//! `storeRef`). External backends (`KeyStore` objects) arrive as a module each, registered
//! in one table beside this trait, as issuers are in `issuer::PROVIDERS`.

pub mod kubernetes;

use futures::future::BoxFuture;
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Someone else changed the store concurrently; retry.
    #[error("the store changed concurrently: {0}")]
    Conflict(String),
}

pub trait KeyStore: Send + Sync {
    fn put<'a>(
        &'a self,
        id: &'a str,
        secret: &'a SecretString,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SecretString>, StoreError>>;
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The ids of every key stored for this ApiKey.
    fn ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
}
