//! The shell's state for one reconcile, and what it reads of the world besides the
//! ApiKey and its issuer (`issuers.rs`): the keys status holds, and the requests its
//! annotations make.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::Api;

use super::clock::parse_ts;
use super::error::Error;
use super::reconcile::Context;
use super::rotation::{self, HeldKey, Trigger, UnusedRule};
use super::schedule::Cadence;
use super::secret;
use super::stores::Placement;
use crate::api::apikey::{ApiKey, ApiKeyStatus, KeyStatus, StoreRecord};
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
    /// The consumer Secret as this reconcile last read or wrote it (`None`: not read
    /// yet), so the steps it performs back to back see their own writes without a GET.
    pub(super) consumer_secret: Option<Option<Secret>>,
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
            consumer_secret: None,
            spec_error,
            unused_rule,
            queued: None,
        })
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
