//! AWS SDK configuration shared by the Secrets Manager store and the IAM issuer:
//! credentials from a Secret, else the SDK's default chain (IRSA / EKS Pod Identity,
//! environment, profile), a role assumed on top, and ring TLS (kube's crypto stack, so
//! the binary carries one).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use secrecy::ExposeSecret;

use crate::api::issuer::AwsCredentialsRef;
use crate::store::{StoreError, credential};

/// Where and as whom to call AWS.
pub struct Target<'a> {
    pub region: &'a str,
    pub endpoint_url: Option<&'a str>,
    pub credentials: Option<&'a AwsCredentialsRef>,
    pub role_arn: Option<&'a str>,
    /// Where the credentials Secret is read.
    pub client: &'a kube::Client,
    pub namespace: &'a str,
}

pub async fn sdk_config(t: Target<'_>) -> Result<SdkConfig, StoreError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(t.region.to_string()))
        .http_client(http);
    if let Some(url) = t.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(r) = t.credentials {
        let key_id = credential(t.client, t.namespace, &r.name, &r.access_key_id_key).await?;
        let secret = credential(t.client, t.namespace, &r.name, &r.secret_access_key_key).await?;
        loader = loader.credentials_provider(static_credentials(
            key_id.expose_secret(),
            secret.expose_secret(),
        ));
    }
    let mut config = loader.load().await;
    if let Some(role) = t.role_arn {
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
    Ok(config)
}

/// What AWS answered to a failed call: its error code, if it answered, and a bounded
/// message (`Code: message`, or the client error and its causes when nothing came back).
pub fn said<E, R>(e: &SdkError<E, R>) -> (Option<String>, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().map(String::from);
    let text = match (&code, e.message()) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        (Some(code), None) => code.clone(),
        (None, _) => crate::messages::chain(e),
    };
    (code, crate::messages::bounded(&text))
}

pub fn static_credentials(key_id: &str, secret: &str) -> Credentials {
    Credentials::new(key_id, secret, None, None, "apikey-operator")
}
