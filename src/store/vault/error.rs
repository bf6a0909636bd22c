//! Vault client errors as store errors: bounded, and never carrying a request body.

use vaultrs::error::ClientError;

use crate::messages::{bounded, chain};
use crate::store::StoreError;

pub fn of_client(e: ClientError) -> StoreError {
    match e {
        ClientError::APIError { code, errors } => {
            let said = bounded(&errors.join("; "));
            match code {
                401 | 403 => StoreError::Denied(format!(
                    "Vault answered {code}: {said} (check the store's credentials and that their policy allows the entry's data, metadata and destroy paths, as examples/vault/policy.hcl does)"
                )),
                400 if is_cas_mismatch(&errors) => StoreError::Changed(said),
                _ => StoreError::Unavailable(format!("Vault answered {code}: {said}")),
            }
        }
        other => StoreError::Unavailable(bounded(&chain(&other))),
    }
}

/// KV v2 answers a failed check-and-set with 400 and this text.
pub fn is_cas_mismatch(errors: &[String]) -> bool {
    errors.iter().any(|e| e.contains("check-and-set"))
}
