//! Logged-in Vault clients, kept per store between reconciles: each login re-reads its
//! credentials, a token is renewed (or the login redone) before it expires, and a 403
//! logs in again once — a token revoked or a secret id rotated heals without a restart.

use crate::generations::PerGeneration;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::error::of_client;
use crate::api::store::{VaultAuth, VaultStore};
use crate::store::{Access, StoreError, credential};

/// Sessions by store identity (uid and generation): a changed spec gets a new session.
#[derive(Default)]
pub struct Sessions(PerGeneration<Session>);

impl Sessions {
    pub fn get(&self, store: &VaultStore, access: &Access<'_>) -> Result<Arc<Session>, StoreError> {
        if let Some(s) = self.0.get(&access.version) {
            return Ok(s);
        }
        let session = Arc::new(Session::new(store, access)?);
        Ok(self.0.insert(&access.version, session))
    }
}

/// How to log in: what `auth` says, resolved to where its credentials are.
#[derive(Clone)]
enum Login {
    Token {
        secret: String,
        key: String,
    },
    Kubernetes {
        mount: String,
        role: String,
        service_account: String,
        audiences: Vec<String>,
    },
    AppRole {
        mount: String,
        secret: String,
        role_id_key: String,
        secret_id_key: String,
    },
}

pub struct Session {
    store: VaultStore,
    /// The logged-in client; a login swaps in a new one, so operations in flight keep
    /// the one they started with.
    client: std::sync::RwLock<Arc<VaultClient>>,
    /// One login at a time.
    logging_in: Mutex<()>,
    login: Login,
    kube: kube::Client,
    namespace: String,
    /// When to renew or log in again (two thirds into the token's lease); `None` before
    /// the first login.
    refresh_at: std::sync::Mutex<Option<Refresh>>,
}

#[derive(Clone, Copy)]
enum Refresh {
    Never,
    At(Instant),
}

impl Session {
    fn new(store: &VaultStore, access: &Access<'_>) -> Result<Session, StoreError> {
        let login = match &store.auth {
            VaultAuth { token: Some(t), .. } => Login::Token {
                secret: t.secret_ref.name.clone(),
                key: t.secret_ref.key.clone(),
            },
            VaultAuth {
                kubernetes: Some(k),
                ..
            } => Login::Kubernetes {
                mount: k.mount_path.clone(),
                role: k.role.clone(),
                service_account: k
                    .service_account_name
                    .clone()
                    .unwrap_or_else(|| access.default_service_account.to_string()),
                audiences: k.audiences.clone(),
            },
            VaultAuth {
                app_role: Some(a), ..
            } => Login::AppRole {
                mount: a.mount_path.clone(),
                secret: a.secret_name.clone(),
                role_id_key: a.role_id_key.clone(),
                secret_id_key: a.secret_id_key.clone(),
            },
            _ => {
                return Err(StoreError::Denied(
                    "set exactly one of auth.token, auth.kubernetes or auth.appRole".into(),
                ));
            }
        };
        Ok(Session {
            store: store.clone(),
            client: std::sync::RwLock::new(Arc::new(client(store)?)),
            logging_in: Mutex::new(()),
            login,
            kube: access.client.clone(),
            namespace: access.credentials_namespace.to_string(),
            refresh_at: std::sync::Mutex::new(None),
        })
    }

    /// Runs `op` with a fresh-enough token; on a 403, logs in again and retries once.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.refresh_if_due().await?;
        match op(self.current()).await {
            Err(ClientError::APIError { code: 403, .. }) => {
                self.log_in().await?;
                op(self.current()).await.map_err(of_client)
            }
            other => other.map_err(of_client),
        }
    }

    fn current(&self) -> Arc<VaultClient> {
        self.client.read().expect("client lock").clone()
    }

    async fn refresh_if_due(&self) -> Result<(), StoreError> {
        let due = match *self.refresh_at.lock().expect("refresh lock") {
            None => true,
            Some(Refresh::Never) => false,
            Some(Refresh::At(at)) => Instant::now() >= at,
        };
        if due { self.log_in().await } else { Ok(()) }
    }

    /// Logs in (or, for a renewable static token, renews it) and records when to do it
    /// again.
    async fn log_in(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.logging_in.lock().await;
        let mut client = client(&self.store)?;
        let lease = match &self.login {
            Login::Token { secret, key } => {
                let token = self.read_secret(secret, key).await?;
                client.set_token(token.expose_secret());
                let info = client.lookup().await.map_err(of_client)?;
                if info.renewable == Some(true) && info.ttl > 0 {
                    client.renew(None).await.map_err(of_client)?.lease_duration
                } else {
                    info.ttl
                }
            }
            Login::Kubernetes {
                mount,
                role,
                service_account,
                audiences,
            } => {
                let jwt = self
                    .service_account_token(service_account, audiences)
                    .await?;
                let auth =
                    vaultrs::auth::kubernetes::login(&client, mount, role, jwt.expose_secret())
                        .await
                        .map_err(of_client)?;
                client.set_token(&auth.client_token);
                auth.lease_duration
            }
            Login::AppRole {
                mount,
                secret,
                role_id_key,
                secret_id_key,
            } => {
                let role_id = self.read_secret(secret, role_id_key).await?;
                let secret_id = self.read_secret(secret, secret_id_key).await?;
                let auth = vaultrs::auth::approle::login(
                    &client,
                    mount,
                    role_id.expose_secret(),
                    secret_id.expose_secret(),
                )
                .await
                .map_err(of_client)?;
                client.set_token(&auth.client_token);
                auth.lease_duration
            }
        };
        *self.client.write().expect("client lock") = Arc::new(client);
        *self.refresh_at.lock().expect("refresh lock") = Some(if lease == 0 {
            Refresh::Never
        } else {
            Refresh::At(Instant::now() + Duration::from_secs(lease * 2 / 3))
        });
        Ok(())
    }

    async fn read_secret(&self, name: &str, key: &str) -> Result<SecretString, StoreError> {
        credential(&self.kube, &self.namespace, name, key).await
    }

    async fn service_account_token(
        &self,
        name: &str,
        audiences: &[String],
    ) -> Result<SecretString, StoreError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.kube.clone(), &self.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audiences.to_vec(),
                // Short-lived: it is only presented once, to log in.
                expiration_seconds: Some(600),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = api
            .create_token_request(name, &crate::writes::post(), &request)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => StoreError::Denied(format!(
                    "ServiceAccount {name:?} not found in namespace {:?} (auth.kubernetes.serviceAccountName)",
                    self.namespace
                )),
                other => StoreError::Unavailable(format!(
                    "requesting a token for ServiceAccount {name:?}: {other}"
                )),
            })?;
        let token = issued.status.map(|s| s.token).unwrap_or_default();
        Ok(SecretString::from(token))
    }
}

/// A client for `store.server`, trusting `caBundle` when one is given.
fn client(store: &VaultStore) -> Result<VaultClient, StoreError> {
    let invalid = |what: &str| StoreError::Unavailable(format!("{what} (spec.vault)"));
    let (http, url) = crate::https::client(
        &store.server,
        store.ca_bundle.as_deref(),
        Duration::from_secs(30),
    )
    .map_err(|e| invalid(&format!("server: {e}")))?;
    let settings = VaultClientSettingsBuilder::default()
        .address(url.as_str())
        .token("")
        .namespace(store.namespace.clone())
        .build()
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(VaultClient {
        http: rustify::clients::reqwest::Client::new(url.as_str(), http),
        middle: EndpointMiddleware {
            token: String::new(),
            version: "v1".into(),
            wrap: None,
            namespace: store.namespace.clone(),
        },
        settings,
    })
}
