//! Reconcile errors, and the one place they map to condition reasons users see.

use std::time::Duration;

use crate::issuer::IssuerError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{}", issuer_not_found(kind, name, namespace.as_deref()))]
    IssuerNotFound {
        kind: &'static str,
        name: String,
        /// Where a namespaced KeyIssuer was looked for.
        namespace: Option<String>,
    },
    /// The issuer that minted a key was deleted and created again under its name: the new
    /// one may be another account, so it is never asked to revoke the old one's keys.
    #[error(
        "{kind} {name:?} was deleted and created again since the key was minted (it may now be another account or workspace); the key was not revoked there"
    )]
    IssuerReplaced { kind: &'static str, name: String },
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "Secret {0:?} exists and is not managed by this ApiKey; rename spec.secret.name or delete that Secret"
    )]
    SecretConflict(String),
    #[error(
        "the current key's material is in neither the store nor the Secret; a new rotation replaces it once no previous key is held (annotate apikey.dev/revoke-previous=$(date +%s) to end the overlap now)"
    )]
    MaterialLost,
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A guarded JSON patch found the object changed since it was read (its `test`
    /// failed, which kube-apiserver answers with 422): another writer won.
    #[error("the object changed while being written")]
    Changed,
}

/// Says where the issuer was looked for, and the other kind, which is the usual mix-up.
fn issuer_not_found(kind: &str, name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!(
            "{kind} {name:?} not found in namespace {ns:?} (an issuer for every namespace is a ClusterKeyIssuer: set issuerRef.kind: ClusterKeyIssuer)"
        ),
        None => format!(
            "{kind} {name:?} not found (a KeyIssuer in this namespace needs issuerRef.kind: KeyIssuer)"
        ),
    }
}

impl Error {
    /// The error of a JSON patch guarded by a `test` op: 422 means the test failed.
    pub fn of_guarded_patch(e: kube::Error) -> Error {
        match e {
            kube::Error::Api(s) if s.code == 422 => Error::Changed,
            other => Error::Kube(other),
        }
    }
}

impl Error {
    /// The condition reason (and metric label) of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::IssuerNotFound { .. } => "IssuerNotFound",
            Error::IssuerReplaced { .. } => "IssuerReplaced",
            Error::NotAllowed(_) => "NotAllowed",
            Error::Issuer(IssuerError::Rejected(_)) => "IssuerRejected",
            Error::Issuer(IssuerError::Unavailable(_)) => "IssuerUnavailable",
            Error::Issuer(IssuerError::Misconfigured(_)) => "IssuerMisconfigured",
            Error::Issuer(IssuerError::NotAllowed(_)) => "NotAllowed",
            Error::Store(StoreError::NotFound(_)) => "StoreNotFound",
            Error::Store(StoreError::Foreign(_)) => "StoreConflict",
            Error::Store(StoreError::Unavailable(_)) => "StoreUnavailable",
            Error::Store(StoreError::Denied(_)) => "StoreAccessDenied",
            Error::Store(StoreError::Changed(_)) => "Conflict",
            Error::MaterialLost => "MaterialLost",
            Error::SecretConflict(_) => "SecretConflict",
            Error::Kube(_) => "KubernetesError",
            Error::Changed => "Conflict",
        }
    }

    /// A failure that retrying can get past (an issuer, store or API that is unavailable
    /// now), as opposed to one that waits for a change a user makes.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Issuer(IssuerError::Unavailable(_))
                | Error::Store(
                    StoreError::Unavailable(_) | StoreError::Denied(_) | StoreError::Changed(_)
                )
                | Error::Kube(_)
                | Error::Changed
        )
    }

    /// A write lost a race with another writer: requeue at once, it is not a failure.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
            || matches!(self, Error::Changed | Error::Store(StoreError::Changed(_)))
    }
}

/// Per-object exponential backoff: 1s doubling to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300))
}
