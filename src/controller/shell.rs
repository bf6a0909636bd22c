//! The shell's state for one reconcile, and what it reads of the world besides the
//! ApiKey: the issuer the spec names (checked against what it allows), and the keys
//! status holds.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::Api;

use super::clock::parse_ts;
use super::error::Error;
use super::providers;
use super::reconcile::Context;
use super::rotation::{self, HeldKey, Trigger, UnusedRule};
use super::schedule::Cadence;
use super::secret;
use super::stores::Placement;
use crate::api::apikey::{ApiKey, ApiKeyStatus, IssuerKind, IssuerRecord, KeyStatus, StoreRecord};
use crate::api::issuer::{ClusterKeyIssuer, IssuerConfig, KeyIssuer};
use crate::issuer::{self, Issuer};
use crate::store::KeyStore;

pub(super) struct Shell<'a> {
    pub(super) ak: &'a ApiKey,
    pub(super) ctx: &'a Context,
    pub(super) ns: String,
    pub(super) status: ApiKeyStatus,
    /// Status as the API server has it (read, then as written): a write that would
    /// change nothing is not sent.
    pub(super) status_on_server: ApiKeyStatus,
    pub(super) store: Box<dyn KeyStore>,
    /// What status records of a key in `store` (`None` for the built-in store).
    pub(super) store_record: Option<StoreRecord>,
    /// Whether the spec's store could be opened (keys move only into an open one).
    pub(super) store_opened: bool,
    pub(super) secrets: Api<Secret>,
    pub(super) cadence: Cadence,
    /// Keys found in a Secret left by a deleted predecessor (for `Step::Adopt`).
    pub(super) found: Option<secret::Found>,
    pub(super) overlap: Duration,
    pub(super) key_spec: String,
    /// The resourceVersion the next status write is guarded by: the one read, then each
    /// of this reconcile's own writes (a step may write status more than once).
    pub(super) resource_version: Option<String>,
    /// The resourceVersion of the consumer Secret when it was checked to be ours: the
    /// apply is conditional on it, so a Secret replaced since is never taken over.
    pub(super) secret_version: Option<String>,
    /// Why the spec cannot be acted on, if it cannot: steps that need it fail with this.
    pub(super) spec_error: Option<Error>,
    /// Usage-aware revocation, when the spec asks for it.
    pub(super) unused_rule: Option<UnusedRule>,
    /// A rotation that is due but waits for the previous key to go, and when that is.
    pub(super) queued: Option<(Trigger, Option<Timestamp>)>,
}

impl<'a> Shell<'a> {
    pub(super) fn now(&self) -> Timestamp {
        self.ctx.clock.now()
    }

    /// `deleting`: the spec's rotation and store settings are not needed, so invalid ones
    /// must not block finalization.
    /// A spec that cannot be acted on still loads (with stand-ins for the broken
    /// settings): repairs and deletion need only what status recorded, and the error is
    /// kept in `spec_error` for the steps that need the spec.
    pub(super) async fn load(ak: &'a ApiKey, ctx: &'a Context) -> Result<Shell<'a>, Error> {
        let ns = ak.namespace().unwrap_or_default();
        let rotation = &ak.spec.rotation;
        let mut problems = Vec::new();
        let cadence = Cadence::from_spec(rotation).unwrap_or_else(|e| {
            problems.push(e);
            Cadence::Every(Duration::from_secs(3600))
        });
        let overlap = match rotation.overlap.as_ref().map(|o| o.to_std()) {
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                problems.push(e);
                rotation::default_overlap(cadence.every())
            }
            None => rotation::default_overlap(cadence.every()),
        };
        let unused_rule = match (&rotation.revoke_when_unused_for, &rotation.max_overlap) {
            (None, _) => None,
            (Some(u), cap) => {
                let cap = cap.as_ref().map(|c| c.to_std()).transpose();
                match (u.to_std(), cap) {
                    (Ok(unused_for), Ok(max_overlap)) => Some(UnusedRule {
                        unused_for,
                        max_overlap,
                    }),
                    (Err(e), _) | (_, Err(e)) => {
                        problems.push(e);
                        None
                    }
                }
            }
        };
        if let Some(path) = ak.spec.store_ref.as_ref().and_then(|r| r.path.as_deref())
            && let Err(e) = crate::store::location::check(path)
        {
            problems.push(e);
        }
        if let Err(e) = super::templates::check(&ak.spec.secret.template) {
            problems.push(e);
        }
        let spec_error = (!problems.is_empty()).then(|| Error::InvalidSpec(problems.join("; ")));
        let mut scopes = ak.spec.scopes.clone();
        scopes.sort();
        let key_spec = format!(
            "{:?}/{};{:?};{};{}",
            ak.spec.issuer_ref.kind,
            ak.spec.issuer_ref.name,
            ak.spec.key_type,
            scopes.join(","),
            ak.spec
                .expires_after
                .as_ref()
                .map(|d| d.0.as_str())
                .unwrap_or("")
        );
        let placement = Placement::of_spec(ak);
        let opened = super::stores::open(ak, ctx, &ns, placement.as_ref()).await;
        Ok(Shell {
            ak,
            ctx,
            store: opened.store,
            store_record: opened.record,
            store_opened: opened.opened,
            secrets: Api::namespaced(ctx.client.clone(), &ns),
            ns,
            status: ak.status.clone().unwrap_or_default(),
            status_on_server: ak.status.clone().unwrap_or_default(),
            cadence,
            overlap,
            key_spec,
            found: None,
            resource_version: ak.resource_version(),
            secret_version: None,
            spec_error,
            unused_rule,
            queued: None,
        })
    }

    pub(super) async fn issuer_config(
        &self,
        kind: IssuerKind,
        name: &str,
    ) -> Result<IssuerObject, Error> {
        let client = self.ctx.client.clone();
        match kind {
            IssuerKind::KeyIssuer => {
                let i = Api::<KeyIssuer>::namespaced(client, &self.ns)
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| Error::IssuerNotFound {
                        kind: "KeyIssuer",
                        name: name.into(),
                        namespace: Some(self.ns.clone()),
                    })?;
                Ok(IssuerObject {
                    version: super::stores::version(&i),
                    config: i.spec.config,
                    uid: i.metadata.uid.unwrap_or_default(),
                    namespace_selector: None,
                    credentials_namespace: self.ns.clone(),
                })
            }
            IssuerKind::ClusterKeyIssuer => {
                let i = Api::<ClusterKeyIssuer>::all(client)
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| Error::IssuerNotFound {
                        kind: "ClusterKeyIssuer",
                        name: name.into(),
                        namespace: None,
                    })?;
                Ok(IssuerObject {
                    version: super::stores::version(&i),
                    config: i.spec.config,
                    uid: i.metadata.uid.unwrap_or_default(),
                    namespace_selector: i.spec.namespace_selector,
                    credentials_namespace: self.ctx.namespace.clone(),
                })
            }
        }
    }

    /// The issuer the spec names, checked against what it allows.
    pub(super) async fn spec_issuer(&self) -> Result<IssuerRecord, Error> {
        let r = &self.ak.spec.issuer_ref;
        let IssuerObject {
            config,
            uid,
            namespace_selector,
            ..
        } = self.issuer_config(r.kind, &r.name).await?;
        if let Some(selector) = namespace_selector {
            let ns = Api::<Namespace>::all(self.ctx.client.clone())
                .get(&self.ns)
                .await?;
            if !selector_matches(&selector, ns.labels()) {
                return Err(Error::NotAllowed(format!(
                    "ClusterKeyIssuer {:?} does not allow namespace {:?} (spec.namespaceSelector)",
                    r.name, self.ns
                )));
            }
        }
        if !config.allowed_key_types.is_empty()
            && !config.allowed_key_types.contains(&self.ak.spec.key_type)
        {
            return Err(Error::NotAllowed(format!(
                "issuer {:?} does not allow keyType {:?}",
                r.name, self.ak.spec.key_type
            )));
        }
        if !config.allowed_scopes.is_empty()
            && let Some(s) = self
                .ak
                .spec
                .scopes
                .iter()
                .find(|s| !config.allowed_scopes.iter().any(|p| glob_match(p, s)))
        {
            return Err(Error::NotAllowed(format!(
                "issuer {:?} does not allow scope {s:?} (allowedScopes: {})",
                r.name,
                config.allowed_scopes.join(", ")
            )));
        }
        let record = IssuerRecord {
            kind: r.kind,
            name: r.name.clone(),
            uid,
        };
        // Keys are about to be minted there: keep the issuer while they are held.
        let credentials_namespace = match record.kind {
            IssuerKind::KeyIssuer => &self.ns,
            IssuerKind::ClusterKeyIssuer => &self.ctx.namespace,
        };
        providers::protect(&self.ctx.client, &record, &self.ns, credentials_namespace).await?;
        Ok(record)
    }

    /// The issuer a key was minted by, to revoke it: the very object (by uid), never one
    /// created since under the same name.
    pub(super) async fn issuer_that_minted(
        &self,
        record: &IssuerRecord,
    ) -> Result<Box<dyn Issuer>, Error> {
        let found = self.issuer_config(record.kind, &record.name).await?;
        if !record.uid.is_empty() && found.uid != record.uid {
            return Err(Error::IssuerReplaced {
                kind: match record.kind {
                    IssuerKind::KeyIssuer => "KeyIssuer",
                    IssuerKind::ClusterKeyIssuer => "ClusterKeyIssuer",
                },
                name: record.name.clone(),
            });
        }
        self.issuer_for(record).await
    }

    /// The issuer a key was minted by (revocation goes where the key came from).
    pub(super) async fn issuer_for(&self, record: &IssuerRecord) -> Result<Box<dyn Issuer>, Error> {
        let found = self.issuer_config(record.kind, &record.name).await?;
        let access = issuer::Access {
            client: &self.ctx.client,
            credentials_namespace: &found.credentials_namespace,
            version: found.version,
            clients: &self.ctx.issuers,
        };
        let label = match record.kind {
            IssuerKind::KeyIssuer => format!("KeyIssuer/{}/{}", self.ns, record.name),
            IssuerKind::ClusterKeyIssuer => format!("ClusterKeyIssuer/{}", record.name),
        };
        Ok(super::instrumented::issuer(
            issuer::open(&found.config, &access).await?,
            label,
            &self.ctx.metrics,
            &self.ctx.leadership,
        ))
    }

    /// The keys status says are issued and distributed: current and, in an overlap,
    /// previous.
    pub(super) fn issued_keys(&self) -> impl Iterator<Item = &KeyStatus> {
        [
            self.status.current_key.as_ref(),
            self.status.previous_key.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    pub(super) fn held(k: &KeyStatus) -> HeldKey {
        HeldKey {
            id: k.id.clone(),
            rotation: k.rotation,
            minted_for: k.minted_for.clone(),
            // Status timestamps are ours; an unreadable one counts as long ago.
            issued_at: parse_ts(&k.issued_at).unwrap_or(Timestamp::UNIX_EPOCH),
            expires_at: k.expires_at.as_deref().and_then(parse_ts),
        }
    }

    /// A request annotation's value as status records it: status bounds the field, so a
    /// longer value is recorded (and compared) by its digest.
    pub(super) fn annotation(&self, key: &str) -> Option<String> {
        let value = self.ak.annotations().get(key)?;
        if value.len() <= crate::api::limits::KEY_ID as usize {
            return Some(value.clone());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("sha256:{hex}"))
    }

    pub(super) fn requested(&self, key: &str, handled: Option<&String>) -> bool {
        self.annotation(key).is_some_and(|v| Some(&v) != handled)
    }
}

fn glob_match(pattern: &str, value: &str) -> bool {
    let re = format!("^{}$", regex::escape(pattern).replace(r"\*", ".*"));
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(value))
}

pub(crate) fn selector_matches(
    selector: &LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// An issuer object as a reconcile needs it.
pub(super) struct IssuerObject {
    pub config: IssuerConfig,
    pub uid: String,
    pub namespace_selector: Option<LabelSelector>,
    /// Where its credentials are: its own namespace, or the operator's.
    pub credentials_namespace: String,
    pub version: String,
}

pub(super) fn parse_trigger(reason: &str) -> Trigger {
    match reason {
        "Scheduled" => Trigger::Scheduled,
        "Expiring" => Trigger::Expiring,
        "SpecChanged" => Trigger::SpecChanged,
        "Requested" => Trigger::Requested,
        "Emergency" => Trigger::Emergency,
        "MaterialLost" => Trigger::MaterialLost,
        _ => Trigger::Initial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_globs() {
        assert!(glob_match("widgets:*", "widgets:read"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("widgets:*", "gadgets:read"));
        assert!(!glob_match("widgets:read", "widgets:write"));
    }
}
