//! Secrets Manager clients, one per store generation (configured by `crate::aws`). A
//! client whose credentials were refused is dropped, so the next attempt reads the
//! Secret again.

use crate::generations::PerGeneration;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_secretsmanager::Client;

use crate::api::store::AwsSecretsManagerStore;
use crate::store::{Access, StoreError};

#[derive(Default)]
pub struct Sessions(PerGeneration<Session>);

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
        if let Some(s) = self.0.get(&access.version)
            && !s.refused.load(Ordering::Relaxed)
        {
            return Ok(s);
        }
        let session = Arc::new(Session {
            client: connect(store, access).await?,
            refused: AtomicBool::new(false),
        });
        Ok(self.0.insert(&access.version, session))
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
