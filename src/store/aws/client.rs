//! Secrets Manager clients, one per store generation. Credentials come from the store's
//! Secret, else the SDK's default chain (IRSA / EKS Pod Identity, environment, profile),
//! with `roleArn` assumed on top. A client whose credentials were refused is dropped, so
//! the next attempt reads the Secret again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use secrecy::ExposeSecret;

use crate::api::store::AwsSecretsManagerStore;
use crate::store::{Access, StoreError, credential};

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
    // ring, as kube uses: one crypto stack in the binary.
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(store.region.clone()))
        .http_client(http);
    if let Some(url) = &store.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(r) = &store.credentials_secret_ref {
        let (ns, kube) = (access.credentials_namespace, access.client);
        let key_id = credential(kube, ns, &r.name, &r.access_key_id_key).await?;
        let secret = credential(kube, ns, &r.name, &r.secret_access_key_key).await?;
        loader = loader.credentials_provider(Credentials::new(
            key_id.expose_secret(),
            secret.expose_secret(),
            None,
            None,
            "apikey-operator-secret",
        ));
    }
    let mut config = loader.load().await;
    if let Some(role) = &store.role_arn {
        let assumed = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name("apikey-operator")
            .configure(&config)
            .build()
            .await;
        config = config
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(assumed))
            .build();
    }
    Ok(Client::new(&config))
}
