//! The `awsIam` provider: IAM user access keys. One IAM user per ApiKey (IAM allows two
//! keys per user, which is the overlap), created if absent and claimed by its
//! `apikey.dev/owner` tag. A revoked key is deactivated at once and deleted after
//! `deactivateFor`; until then it still counts toward the two, so a rotation waits.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iam::types::{StatusType, Tag};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use futures::FutureExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::{Access, Issuer, IssuerError, MintRequest, MintedKey, Usage};
use crate::api::issuer::AwsIamIssuer as Spec;
use crate::generations::PerGeneration;

const OWNER: &str = "apikey.dev/owner";
/// `apikey.dev/inactive-since/<access key id>`: when a key was deactivated (IAM does not
/// record it), so it is deleted once `deactivateFor` has passed.
const INACTIVE_SINCE: &str = "apikey.dev/inactive-since/";

pub struct AwsIam {
    iam: aws_sdk_iam::Client,
    config: aws_config::SdkConfig,
    template: String,
    deactivate_for: Duration,
}

/// Kept per issuer generation: credentials resolved once (the default chain asks IMDS or
/// STS), not at every reconcile.
pub type Clients = PerGeneration<AwsIam>;

pub async fn open(spec: &Spec, access: &Access<'_>) -> Result<Box<dyn Issuer>, IssuerError> {
    let clients = &access.clients.aws_iam;
    if let Some(c) = clients.get(&access.version) {
        return Ok(Box::new(Shared(c)));
    }
    let config = crate::aws::sdk_config(crate::aws::Target {
        region: &spec.region,
        endpoint_url: spec.endpoint_url.as_deref(),
        credentials: spec.credentials_secret_ref.as_ref(),
        role_arn: spec.role_arn.as_deref(),
        client: access.client,
        namespace: access.credentials_namespace,
    })
    .await
    .map_err(|e| IssuerError::Misconfigured(e.detail().to_string()))?;
    let deactivate_for = spec
        .deactivate_for
        .to_std()
        .map_err(|e| IssuerError::Misconfigured(format!("awsIam.deactivateFor: {e}")))?;
    let iam = Arc::new(AwsIam {
        iam: aws_sdk_iam::Client::new(&config),
        config,
        template: spec.user_name_template.clone(),
        deactivate_for,
    });
    Ok(Box::new(Shared(clients.insert(&access.version, iam))))
}

/// The issuer's kept client, as an `Issuer`.
struct Shared(Arc<AwsIam>);

impl Issuer for Shared {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>> {
        self.0.mint(req)
    }
    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>> {
        self.0.revoke(id)
    }
    fn verify<'a>(&'a self, key: &'a MintedKey) -> BoxFuture<'a, Result<(), IssuerError>> {
        self.0.verify(key)
    }
    fn last_used<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Usage>, IssuerError>> {
        self.0.last_used(id)
    }
    fn check(&self) -> BoxFuture<'_, Result<(), IssuerError>> {
        self.0.check()
    }
}

/// The IAM user of the ApiKey `<namespace>/<name>`: the template filled in, checked
/// against IAM's rules for user names.
pub fn user_name(template: &str, owner: &str) -> Result<String, IssuerError> {
    let (namespace, name) = owner.split_once('/').unwrap_or(("", owner));
    let user = template
        .replace("{namespace}", namespace)
        .replace("{name}", name);
    let valid = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if !valid {
        return Err(IssuerError::Misconfigured(format!(
            "the IAM user name {user:?} for {owner} (awsIam.userNameTemplate, or the annotation apikey.dev/aws-iam-user-name): IAM user names are 1-64 letters, digits or +=,.@_-"
        )));
    }
    Ok(user)
}

fn failed<E, R>(what: &str, e: SdkError<E, R>) -> IssuerError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, said) = crate::aws::said(&e);
    match code.as_deref() {
        Some("AccessDenied" | "InvalidClientTokenId" | "SignatureDoesNotMatch") => {
            IssuerError::Misconfigured(format!("IAM refused {what}: {said}"))
        }
        Some("LimitExceeded" | "EntityAlreadyExists") | None => {
            IssuerError::Unavailable(format!("{what}: {said}"))
        }
        Some(c) if c.starts_with("Throttl") || c.starts_with("ServiceFailure") => {
            IssuerError::Unavailable(format!("{what}: {said}"))
        }
        Some(_) => IssuerError::Rejected(format!("{what}: {said}")),
    }
}

impl AwsIam {
    /// Creates the user if absent; refuses one another ApiKey (or someone else) owns.
    async fn claim(&self, user: &str, owner: &str) -> Result<(), IssuerError> {
        let tags = match self.iam.list_user_tags().user_name(user).send().await {
            Ok(t) => t.tags().to_vec(),
            Err(e) if e.code() == Some("NoSuchEntity") => {
                self.iam
                    .create_user()
                    .user_name(user)
                    .tags(tag(OWNER, owner))
                    .send()
                    .await
                    .map_err(|e| failed("creating the IAM user", e))?;
                return Ok(());
            }
            Err(e) => return Err(failed("reading the IAM user's tags", e)),
        };
        match tags.iter().find(|t| t.key() == OWNER).map(|t| t.value()) {
            Some(o) if o == owner => Ok(()),
            Some(other) => Err(IssuerError::NotAllowed(format!(
                "IAM user {user:?} belongs to ApiKey {other}; set awsIam.userNameTemplate so each ApiKey gets its own"
            ))),
            None => Err(IssuerError::NotAllowed(format!(
                "IAM user {user:?} exists and was not created by the operator (no {OWNER} tag); it is never used"
            ))),
        }
    }

    /// Deletes the user's keys that must go before a new one: deactivated ones whose
    /// `deactivateFor` has passed, and ones created since this rotation started that
    /// status does not know (an earlier attempt's, whose secret was never stored).
    /// Returns how many keys the user keeps.
    async fn make_room(&self, user: &str, req: &MintRequest) -> Result<usize, IssuerError> {
        let keys = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| failed("listing access keys", e))?;
        let tags = self
            .iam
            .list_user_tags()
            .user_name(user)
            .send()
            .await
            .map_err(|e| failed("reading the IAM user's tags", e))?;
        let inactive_since = |id: &str| {
            tags.tags()
                .iter()
                .find(|t| t.key() == format!("{INACTIVE_SINCE}{id}"))
                .and_then(|t| t.value().parse::<Timestamp>().ok())
        };
        let mut kept = 0;
        for key in keys.access_key_metadata() {
            let id = key.access_key_id().unwrap_or_default();
            let created = key
                .create_date()
                .and_then(|d| Timestamp::from_second(d.secs()).ok());
            let expired = key.status() == Some(&StatusType::Inactive)
                && inactive_since(id).is_none_or(|since| {
                    // Real time, as the tag was written with: IAM's own clock runs on it.
                    since + jiff::SignedDuration::try_from(self.deactivate_for).unwrap_or_default()
                        <= Timestamp::now()
                });
            // Both times are whole seconds (IAM's, and status's rounded): one second of
            // slack, on a user only the operator makes keys for.
            let since = req.started_at - jiff::SignedDuration::from_secs(1);
            let orphan = !req.known_ids.iter().any(|k| k == id)
                && key.status() == Some(&StatusType::Active)
                && created.is_some_and(|c| c >= since);
            if expired || orphan {
                self.delete_key(user, id).await?;
            } else {
                kept += 1;
            }
        }
        Ok(kept)
    }

    async fn delete_key(&self, user: &str, id: &str) -> Result<(), IssuerError> {
        match self
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("NoSuchEntity") => {}
            Err(e) => return Err(failed("deleting an access key", e)),
        }
        self.iam
            .untag_user()
            .user_name(user)
            .tag_keys(format!("{INACTIVE_SINCE}{id}"))
            .send()
            .await
            .map_err(|e| failed("untagging the IAM user", e))?;
        Ok(())
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value are set")
}

impl Issuer for AwsIam {
    fn mint<'a>(&'a self, req: &'a MintRequest) -> BoxFuture<'a, Result<MintedKey, IssuerError>> {
        async move {
            // A name the ApiKey chose is checked like a filled-in template, and claimed
            // the same way: another owner's user is refused either way.
            let template = req.account.as_deref().unwrap_or(&self.template);
            let user = user_name(template, &req.owner)?;
            self.claim(&user, &req.owner).await?;
            if self.make_room(&user, req).await? >= 2 {
                return Err(IssuerError::Unavailable(format!(
                    "IAM user {user:?} has two access keys (IAM's limit, inactive ones included); the new key waits until the revoked one is deleted (awsIam.deactivateFor)"
                )));
            }
            let created = self
                .iam
                .create_access_key()
                .user_name(&user)
                .send()
                .await
                .map_err(|e| failed("creating an access key", e))?;
            let key = created
                .access_key()
                .ok_or_else(|| IssuerError::Unavailable("IAM returned no access key".into()))?;
            Ok(MintedKey {
                id: key.access_key_id().to_string(),
                secret: SecretString::from(key.secret_access_key().to_string()),
                expires_at: None,
            })
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), IssuerError>> {
        async move {
            let user = match self
                .iam
                .get_access_key_last_used()
                .access_key_id(id)
                .send()
                .await
            {
                Ok(o) => o.user_name().unwrap_or_default().to_string(),
                // IAM knows no such key: it is gone.
                Err(e) if e.code() == Some("NoSuchEntity") => return Ok(()),
                Err(e) => return Err(failed("looking up the access key", e)),
            };
            if self.deactivate_for.is_zero() {
                return self.delete_key(&user, id).await;
            }
            match self
                .iam
                .update_access_key()
                .user_name(&user)
                .access_key_id(id)
                .status(StatusType::Inactive)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("NoSuchEntity") => return Ok(()),
                Err(e) => return Err(failed("deactivating the access key", e)),
            }
            self.iam
                .tag_user()
                .user_name(&user)
                .tags(tag(
                    &format!("{INACTIVE_SINCE}{id}"),
                    &Timestamp::now().to_string(),
                ))
                .send()
                .await
                .map_err(|e| failed("tagging the IAM user", e))?;
            Ok(())
        }
        .boxed()
    }

    fn verify<'a>(&'a self, key: &'a MintedKey) -> BoxFuture<'a, Result<(), IssuerError>> {
        async move {
            // IAM is eventually consistent: a new key may not be accepted for a while.
            let config = self
                .config
                .to_builder()
                .credentials_provider(
                    aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
                        crate::aws::static_credentials(&key.id, key.secret.expose_secret()),
                    ),
                )
                .build();
            aws_sdk_sts::Client::new(&config)
                .get_caller_identity()
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    IssuerError::Unavailable(format!(
                        "the new access key {} is not accepted by STS yet: {}",
                        key.id,
                        e.code().unwrap_or("no answer")
                    ))
                })
        }
        .boxed()
    }

    fn last_used<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Usage>, IssuerError>> {
        async move {
            let used = self
                .iam
                .get_access_key_last_used()
                .access_key_id(id)
                .send()
                .await
                .map_err(|e| failed("reading the access key's last use", e))?;
            let last_used_at = used
                .access_key_last_used()
                .and_then(|u| u.last_used_date())
                .and_then(|d| Timestamp::from_second(d.secs()).ok());
            Ok(Some(Usage {
                last_used_at,
                // IAM records use hours late: a shorter window would revoke keys in use.
                min_unused_for: Duration::from_secs(4 * 3600),
            }))
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), IssuerError>> {
        async move {
            self.iam
                .list_users()
                .max_items(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failed("listing IAM users", e))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_the_template_and_iam_rules() {
        let t = "apikey-{namespace}-{name}";
        assert_eq!(user_name(t, "shop/billing").unwrap(), "apikey-shop-billing");
        let long = format!("shop/{}", "x".repeat(60));
        assert!(matches!(
            user_name(t, &long),
            Err(IssuerError::Misconfigured(_))
        ));
        assert!(user_name("team a {name}", "shop/billing").is_err());
    }
}
