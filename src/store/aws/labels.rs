//! Moving staging labels: every label but AWSPENDING is moved explicitly, through the
//! operator's own staging label, so no implementation's shortcut (a write labelled
//! AWSCURRENT that leaves the old version labelled too) decides what readers see.

use super::SecretsManager;
use super::versions::{PENDING, STAGING};
use crate::store::StoreError;

impl SecretsManager {
    /// Writes a version (a retry with its token is a no-op) and gives it `label`. Only
    /// AWSPENDING is given by the write itself: any other label is moved onto it
    /// explicitly, from the version that has it (a write labelled AWSCURRENT does not
    /// reliably take the label off the old version on every implementation).
    pub(super) async fn put_version(
        &self,
        token: &str,
        value: String,
        label: &str,
    ) -> Result<(), StoreError> {
        let first = if label == PENDING { PENDING } else { STAGING };
        self.session
            .client
            .put_secret_value()
            .secret_id(&self.name)
            .client_request_token(token)
            .secret_string(value)
            .version_stages(first)
            .send()
            .await
            .map_err(|e| self.fail(e))?;
        if label != PENDING {
            self.settle(token, label).await?;
        }
        Ok(())
    }

    /// Moves `label` onto `version` from whichever version has it, then drops the
    /// operator's staging label from it.
    pub(super) async fn settle(&self, version: &str, label: &str) -> Result<(), StoreError> {
        let described = self
            .session
            .client
            .describe_secret()
            .secret_id(&self.name)
            .send()
            .await
            .map_err(|e| self.fail(e))?;
        let stages = described
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default();
        let has = |v: &str, l: &str| stages.get(v).is_some_and(|s| s.iter().any(|x| x == l));
        if !has(version, label) {
            let from = stages.keys().find(|v| has(v, label)).map(String::as_str);
            self.move_label(label, Some(version), from).await?;
        }
        if has(version, STAGING) {
            self.move_label(STAGING, None, Some(version)).await?;
        }
        Ok(())
    }

    /// Moves `label` to `to` (from whichever version has it), or only takes it off `from`.
    pub(super) async fn move_label(
        &self,
        label: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), StoreError> {
        self.session
            .client
            .update_secret_version_stage()
            .secret_id(&self.name)
            .version_stage(label)
            .set_move_to_version_id(to.map(String::from))
            .set_remove_from_version_id(from.map(String::from))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }
}
