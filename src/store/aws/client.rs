//! Secrets Manager clients, one per store generation (configured by `crate::aws`). A
//! client whose credentials were refused is dropped, so the next attempt reads the
//! Secret again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::Client;

use crate::api::store::AwsSecretsManagerStore;
use crate::store::{Access, StoreError};

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Arc<Session>>>);

pub struct Session {
    pub client: Client,
    /// Set when AWS refused the credentials: the next open builds a new client.
    refused: AtomicBool,
}

impl Session {
    pub fn refused(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }
}

impl Sessions {
    pub async fn get(
        &self,
        store: &AwsSecretsManagerStore,
        access: &Access<'_>,
    ) -> Result<Arc<Session>, StoreError> {
        if let Some(s) = self.0.lock().expect("sessions lock").get(&access.version)
            && !s.refused.load(Ordering::Relaxed)
        {
            return Ok(s.clone());
        }
        let session = Arc::new(Session {
            client: connect(store, access).await?,
            refused: AtomicBool::new(false),
        });
        let mut sessions = self.0.lock().expect("sessions lock");
        // Only the current generation of each store is kept.
        let uid = access.version.split('@').next().unwrap_or_default();
        sessions.retain(|k, _| !k.starts_with(&format!("{uid}@")));
        sessions.insert(access.version.clone(), session.clone());
        Ok(session)
    }
}

async fn connect(
    store: &AwsSecretsManagerStore,
    access: &Access<'_>,
) -> Result<Client, StoreError> {
    let config = crate::aws::sdk_config(crate::aws::Target {
        region: &store.region,
        endpoint_url: store.endpoint_url.as_deref(),
        credentials: store.credentials_secret_ref.as_ref(),
        role_arn: store.role_arn.as_deref(),
        client: access.client,
        namespace: access.credentials_namespace,
    })
    .await?;
    Ok(Client::new(&config))
}
