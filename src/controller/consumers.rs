//! Consumer workloads: which ones an ApiKey rolls out, whether each carries the current
//! key, and when each kind counts as rolled out or blocked.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams, Patch};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::Error;
use super::shell::Shell;
use crate::api::apikey::{ConsumerKind, ConsumerStatus};

/// A consumer workload as the rollout sees it.
pub(super) struct Workload {
    pub(super) kind: ConsumerKind,
    pub(super) name: String,
    /// Its pod template carries the current key's fingerprint.
    pub(super) carries: bool,
    pub(super) done: bool,
    /// Why it will not roll by itself (paused, OnDelete), if so.
    pub(super) blocked: Option<&'static str>,
    pub(super) grace_seconds: i64,
    /// Named in the spec but not there: pods that would need the new key may exist
    /// elsewhere (a typo), so the previous key is not revoked on its account.
    pub(super) missing: bool,
}

/// How status says a selector matches no workload (which names none that could need the
/// key, so it does not block).
pub(super) const MATCHED_NOTHING: &str = "0 matched: the selector matches no workload";

/// How status says a named consumer does not exist (and why that blocks revocation).
pub(super) const NOT_FOUND: &str = "not found: create it or fix spec.consumers; the previous key stays valid until it has rolled out";

impl Shell<'_> {
    pub(super) fn rollout_annotation(&self) -> String {
        format!("apikey.dev/{}", self.ak.name_any())
    }

    /// Every consumer workload and where its rollout of the current key stands.
    pub(super) async fn consumers(&self) -> Result<Vec<Workload>, Error> {
        let Some(fp) = self
            .status
            .current_key
            .as_ref()
            .map(|k| k.fingerprint.clone())
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in &self.ak.spec.consumers {
            let lp = match (&c.name, &c.selector) {
                (Some(n), _) => ListParams::default().fields(&format!("metadata.name={n}")),
                (None, Some(sel)) => ListParams::default().labels(&selector_string(sel)?),
                (None, None) => continue,
            };
            let found = with_kind!(c.kind, K => self.workloads::<K>(c.kind, &lp, &fp).await?);
            match (&c.name, &c.selector) {
                (Some(name), _) if found.is_empty() => out.push(Workload {
                    kind: c.kind,
                    name: name.clone(),
                    carries: false,
                    done: false,
                    blocked: Some(NOT_FOUND),
                    grace_seconds: 0,
                    missing: true,
                }),
                // Reported, not waited for: no workload it names could need the key.
                (None, Some(selector)) if found.is_empty() => {
                    let mut name = format!("selector {}", selector_string(selector)?);
                    name.truncate(crate::api::limits::OBJECT_NAME as usize);
                    out.push(Workload {
                        kind: c.kind,
                        name,
                        carries: true,
                        done: true,
                        blocked: Some(MATCHED_NOTHING),
                        grace_seconds: 0,
                        missing: false,
                    })
                }
                _ => {}
            }
            out.extend(found);
        }
        Ok(out)
    }

    async fn workloads<K: Consumer>(
        &self,
        kind: ConsumerKind,
        lp: &ListParams,
        fingerprint: &str,
    ) -> Result<Vec<Workload>, Error> {
        let key = self.rollout_annotation();
        let listed = Api::<K>::namespaced(self.ctx.client.clone(), &self.ns)
            .list(lp)
            .await?;
        Ok(listed
            .items
            .iter()
            .map(|w| {
                let template = w.template();
                let carries = template
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.annotations.as_ref())
                    .and_then(|a| a.get(&key))
                    .is_some_and(|v| v == fingerprint);
                let done = carries && w.rolled_out();
                Workload {
                    kind,
                    name: w.name_any(),
                    carries,
                    done,
                    blocked: if carries && !done { w.blocked() } else { None },
                    grace_seconds: template
                        .and_then(|t| t.spec.as_ref())
                        .and_then(|s| s.termination_grace_period_seconds)
                        .unwrap_or(30),
                    missing: false,
                }
            })
            .collect())
    }

    /// Sets the rollout annotation on a consumer's pod template (which rolls it out).
    pub(super) async fn patch_template(
        &self,
        kind: ConsumerKind,
        name: &str,
        fingerprint: &str,
    ) -> Result<(), Error> {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {self.rollout_annotation(): fingerprint}}}}});
        let client = self.ctx.client.clone();
        with_kind!(kind, K => {
            Api::<K>::namespaced(client, &self.ns)
                .patch(name, &crate::writes::patch(), &Patch::Merge(&patch))
                .await?;
        });
        Ok(())
    }

    /// Refreshes `status.consumers`; true when it changed.
    pub(super) async fn record_consumers(&mut self) -> Result<bool, Error> {
        let mut now_state: Vec<ConsumerStatus> = self
            .consumers()
            .await?
            .into_iter()
            .map(|w| ConsumerStatus {
                kind: w.kind,
                name: w.name,
                rolled_out: w.done,
                message: match (w.done, w.blocked) {
                    (true, Some(MATCHED_NOTHING)) => Some(MATCHED_NOTHING.to_string()),
                    (true, _) => None,
                    (false, Some(why)) => Some(why.to_string()),
                    (false, None) => Some("rolling out the current key".to_string()),
                },
            })
            .collect();
        // Status lists a bounded number of consumers; a selector may match more.
        now_state.truncate(crate::api::limits::CONSUMER_STATUSES as usize);
        let changed = now_state != self.status.consumers;
        let newly_empty: Vec<String> = now_state
            .iter()
            .filter(|c| c.message.as_deref() == Some(MATCHED_NOTHING))
            .filter(|c| !self.status.consumers.contains(c))
            .map(|c| format!("{:?} {}", c.kind, c.name))
            .collect();
        self.status.consumers = now_state;
        if !newly_empty.is_empty() {
            let note = format!(
                "{} matches no workload: nothing is rolled out for it (it does not hold the previous key back)",
                newly_empty.join(", ")
            );
            self.event(EventType::Warning, "ConsumerSelectorEmpty", note);
        }
        Ok(changed)
    }
}

fn selector_string(sel: &LabelSelector) -> Result<String, Error> {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => {
                return Err(Error::InvalidSpec(format!(
                    "consumer selector operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                )));
            }
        });
    }
    Ok(parts.join(","))
}

/// What the rollout needs to know of one kind of consumer workload.
trait Consumer:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + serde::Serialize
{
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// Every pod runs the current template.
    fn rolled_out(&self) -> bool;
    /// Why it will not roll by itself, if so.
    fn blocked(&self) -> Option<&'static str>;
}

/// Runs `$body` with `$K` the Kubernetes type of a consumer kind: a new kind of consumer
/// is one arm here and one `Consumer` impl below.
macro_rules! with_kind {
    ($kind:expr, $K:ident => $body:expr) => {
        match $kind {
            ConsumerKind::Deployment => {
                type $K = Deployment;
                $body
            }
            ConsumerKind::StatefulSet => {
                type $K = StatefulSet;
                $body
            }
            ConsumerKind::DaemonSet => {
                type $K = DaemonSet;
                $body
            }
        }
    };
}
use with_kind;

/// StatefulSets and DaemonSets with the `OnDelete` update strategy never roll by
/// themselves.
fn on_delete(strategy: Option<&str>) -> Option<&'static str> {
    (strategy == Some("OnDelete"))
        .then_some("updateStrategy OnDelete: delete its pods to pick up the new key")
}

impl Consumer for Deployment {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }

    fn rolled_out(&self) -> bool {
        let (Some(spec), Some(s)) = (&self.spec, &self.status) else {
            return false;
        };
        let replicas = spec.replicas.unwrap_or(1);
        s.observed_generation >= self.metadata.generation
            && s.updated_replicas.unwrap_or(0) == replicas
            && s.replicas.unwrap_or(0) == replicas
            && s.available_replicas.unwrap_or(0) == replicas
    }

    fn blocked(&self) -> Option<&'static str> {
        self.spec
            .as_ref()
            .and_then(|s| s.paused)
            .unwrap_or(false)
            .then_some("paused: resume it (kubectl rollout resume) to roll out the new key")
    }
}

impl Consumer for StatefulSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }

    fn rolled_out(&self) -> bool {
        let Some(st) = &self.status else {
            return false;
        };
        st.observed_generation >= self.metadata.generation
            && st.update_revision.is_some()
            && st.update_revision == st.current_revision
    }

    fn blocked(&self) -> Option<&'static str> {
        on_delete(
            self.spec
                .as_ref()
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|u| u.type_.as_deref()),
        )
    }
}

impl Consumer for DaemonSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }

    fn rolled_out(&self) -> bool {
        let Some(s) = &self.status else {
            return false;
        };
        s.observed_generation >= self.metadata.generation
            && s.updated_number_scheduled.unwrap_or(0) == s.desired_number_scheduled
            && s.number_available.unwrap_or(0) == s.desired_number_scheduled
    }

    fn blocked(&self) -> Option<&'static str> {
        on_delete(
            self.spec
                .as_ref()
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|u| u.type_.as_deref()),
        )
    }
}
