//! The imperative shell: gather what `rotation::decide` needs, perform the one step it
//! returns, record it in status (guarded by resourceVersion), and come back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use secrecy::SecretString;
use serde_json::json;

use super::clock::Clock;
use super::error::{Error, backoff};
use super::rotation::{self, HeldKey, Observed, Pending, Previous, Rollout, Step, Trigger};
use super::schedule::Cadence;
use super::secret::{self, Held};
use crate::api::apikey::{
    ApiKey, ApiKeyStatus, ConsumerKind, ConsumerStatus, DeletionPolicy, HistoryEntry, IssuerKind,
    IssuerRecord, KeyStatus, PendingKey, Phase, annotations,
};
use crate::api::issuer::{ClusterKeyIssuer, IssuerConfig, KeyIssuer};
use crate::issuer::{self, Issuer, MintRequest};
use crate::store::KeyStore;
use crate::store::kubernetes::KubernetesStore;

pub const FINALIZER: &str = "apikey.dev/cleanup";
pub const MANAGER: &str = "apikey-operator";
const HISTORY_LIMIT: usize = 10;

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// At most this many ApiKeys roll their consumers at once (restart storms hurt).
    max_rollouts: usize,
    /// The ApiKeys whose consumers are rolling now.
    rolling: Mutex<std::collections::HashSet<String>>,
    clock: Arc<Clock>,
    /// Our last status write per ApiKey: a cached object older than that is a stale view,
    /// and acting on it could repeat a step.
    last_written: Mutex<HashMap<String, ApiKey>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, max_rollouts: usize, clock: Arc<Clock>) -> Self {
        Context {
            client,
            recorder,
            max_rollouts: max_rollouts.max(1),
            rolling: Mutex::default(),
            clock,
            last_written: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    fn is_stale(&self, ak: &ApiKey) -> bool {
        self.last_written
            .lock()
            .expect("lock")
            .get(&uid(ak))
            .is_some_and(|w| version(ak) < version(w))
    }

    /// `ak`, or our own later write of it (a reconcile that failed after writing status
    /// reports on top of what it wrote, not the older object it read).
    fn freshest(&self, ak: &ApiKey) -> ApiKey {
        match self.last_written.lock().expect("lock").get(&uid(ak)) {
            Some(w) if version(ak) < version(w) => w.clone(),
            _ => ak.clone(),
        }
    }

    fn wrote(&self, ak: &ApiKey) {
        self.last_written
            .lock()
            .expect("lock")
            .insert(uid(ak), ak.clone());
    }
}

fn version(ak: &ApiKey) -> u64 {
    ak.resource_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn uid(ak: &ApiKey) -> String {
    ak.uid().unwrap_or_default()
}

fn ts(t: Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

fn parse_ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

pub async fn reconcile(ak: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.is_stale(&ak) {
        // Our own last write has not reached the cache yet: wait for it.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let result = run(&ak, &ctx).await;
    match &result {
        Ok(_) => {
            ctx.failures.lock().expect("lock").remove(&uid(&ak));
        }
        Err(e) if e.is_conflict() => {}
        Err(e) => {
            // A failing ApiKey must not keep a rollout slot others wait for.
            ctx.rolling.lock().expect("lock").remove(&uid(&ak));
            report_failure(&ctx.freshest(&ak), &ctx, e).await
        }
    }
    result
}

pub fn error_policy(ak: Arc<ApiKey>, e: &Error, ctx: Arc<Context>) -> Action {
    if e.is_conflict() {
        // Another write won; the watch brings the newer object. Do not hammer the issuer.
        return Action::requeue(Duration::from_secs(1));
    }
    if e.waits_for_change() {
        // Watches on issuers and Secrets wake the ApiKey; this is only a safety net.
        return Action::requeue(Duration::from_secs(300));
    }
    let mut failures = ctx.failures.lock().expect("lock");
    let n = failures.entry(uid(&ak)).or_default();
    *n += 1;
    Action::requeue(backoff(*n - 1))
}

async fn run(ak: &ApiKey, ctx: &Context) -> Result<Action, Error> {
    let deleting = ak.meta().deletion_timestamp.is_some();
    if !deleting && !ak.finalizers().iter().any(|f| f == FINALIZER) {
        add_finalizer(ak, ctx).await?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    if deleting && !ak.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if deleting {
        // Deletion needs only what status recorded: it must never wait on observing a
        // world (a conflicting Secret, an invalid spec) the user is deleting it to escape.
        ctx.rolling.lock().expect("lock").remove(&uid(ak));
        return Shell::load(ak, ctx, true).await?.finalize().await;
    }
    let mut shell = Shell::load(ak, ctx, false).await?;
    let observed = shell.observe().await?;
    if observed.rollout != Rollout::NotStarted && observed.rollout != Rollout::InProgress {
        // Done, stuck or blocked: this ApiKey no longer holds a rollout slot.
        ctx.rolling.lock().expect("lock").remove(&uid(ak));
    }
    let step = rotation::decide(&observed);
    tracing::debug!(apikey = %ak.name_any(), ?step, "next step");
    shell.act(step, &observed).await
}

async fn add_finalizer(ak: &ApiKey, ctx: &Context) -> Result<(), Error> {
    let api: Api<ApiKey> = Api::namespaced(ctx.client.clone(), &ak.namespace().unwrap_or_default());
    // The same guarded patch kube::runtime::finalizer sends.
    let patch: json_patch::Patch = serde_json::from_value(if ak.finalizers().is_empty() {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    } else {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": ak.finalizers()},
               {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    })
    .expect("static patch");
    let written = api
        .patch(
            &ak.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    ctx.wrote(&written);
    Ok(())
}

struct Shell<'a> {
    ak: &'a ApiKey,
    ctx: &'a Context,
    ns: String,
    status: ApiKeyStatus,
    store: KubernetesStore,
    secrets: Api<Secret>,
    cadence: Cadence,
    /// Keys found in a Secret left by a deleted predecessor (for `Step::Adopt`).
    found: Option<secret::Found>,
    overlap: Duration,
    key_spec: String,
    /// The resourceVersion the next status write is guarded by: the one read, then each
    /// of this reconcile's own writes (a step may write status more than once).
    resource_version: Option<String>,
    /// The resourceVersion of the consumer Secret when it was checked to be ours: the
    /// apply is conditional on it, so a Secret replaced since is never taken over.
    secret_version: Option<String>,
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

impl<'a> Shell<'a> {
    fn now(&self) -> Timestamp {
        self.ctx.clock.now()
    }

    /// `deleting`: the spec's rotation and store settings are not needed, so invalid ones
    /// must not block finalization.
    async fn load(ak: &'a ApiKey, ctx: &'a Context, deleting: bool) -> Result<Shell<'a>, Error> {
        let ns = ak.namespace().unwrap_or_default();
        let rotation = &ak.spec.rotation;
        let cadence = match Cadence::from_spec(rotation) {
            Ok(c) => c,
            Err(_) if deleting => Cadence::Every(Duration::from_secs(3600)),
            Err(e) => return Err(Error::InvalidSpec(e)),
        };
        let overlap = match rotation.overlap.as_ref().map(|o| o.to_std()) {
            Some(Ok(o)) => o,
            Some(Err(e)) if !deleting => return Err(Error::InvalidSpec(e)),
            _ => rotation::default_overlap(cadence.every()),
        };
        if ak.spec.store_ref.is_some() && !deleting {
            return Err(Error::InvalidSpec(
                "storeRef (Vault, AWS Secrets Manager) is not supported by this release yet; remove it to keep keys in Kubernetes".into(),
            ));
        }
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
        let owner = ak.controller_owner_ref(&()).expect("ApiKeys have uids");
        Ok(Shell {
            ak,
            ctx,
            store: KubernetesStore::new(ctx.client.clone(), &ns, &ak.name_any(), owner),
            secrets: Api::namespaced(ctx.client.clone(), &ns),
            ns,
            status: ak.status.clone().unwrap_or_default(),
            cadence,
            overlap,
            key_spec,
            found: None,
            resource_version: ak.resource_version(),
            secret_version: None,
        })
    }

    async fn issuer_config(
        &self,
        kind: IssuerKind,
        name: &str,
    ) -> Result<(IssuerConfig, String, Option<LabelSelector>), Error> {
        let client = self.ctx.client.clone();
        match kind {
            IssuerKind::KeyIssuer => {
                let i = Api::<KeyIssuer>::namespaced(client, &self.ns)
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| Error::IssuerNotFound {
                        kind: "KeyIssuer",
                        name: name.into(),
                    })?;
                Ok((i.spec.config.clone(), uid_of(&i), None))
            }
            IssuerKind::ClusterKeyIssuer => {
                let i = Api::<ClusterKeyIssuer>::all(client)
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| Error::IssuerNotFound {
                        kind: "ClusterKeyIssuer",
                        name: name.into(),
                    })?;
                Ok((
                    i.spec.config.clone(),
                    uid_of(&i),
                    i.spec.namespace_selector.clone(),
                ))
            }
        }
    }

    /// The issuer the spec names, checked against what it allows.
    async fn spec_issuer(&self) -> Result<IssuerRecord, Error> {
        let r = &self.ak.spec.issuer_ref;
        let (config, uid, namespace_selector) = self.issuer_config(r.kind, &r.name).await?;
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
        Ok(IssuerRecord {
            kind: r.kind,
            name: r.name.clone(),
            uid,
        })
    }

    /// The issuer a key was minted by (revocation goes where the key came from).
    async fn issuer_for(&self, record: &IssuerRecord) -> Result<Box<dyn Issuer>, Error> {
        let (config, _, _) = self.issuer_config(record.kind, &record.name).await?;
        issuer::for_spec(&config).map_err(Error::InvalidSpec)
    }

    /// The keys status says are issued and distributed: current and, in an overlap,
    /// previous.
    fn issued_keys(&self) -> impl Iterator<Item = &KeyStatus> {
        [
            self.status.current_key.as_ref(),
            self.status.previous_key.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    fn held(k: &KeyStatus) -> HeldKey {
        HeldKey {
            id: k.id.clone(),
            rotation: k.rotation,
            minted_for: k.minted_for.clone(),
            // Status timestamps are ours; an unreadable one counts as long ago.
            issued_at: parse_ts(&k.issued_at).unwrap_or(Timestamp::UNIX_EPOCH),
            expires_at: k.expires_at.as_deref().and_then(parse_ts),
        }
    }

    /// The store lost keys the Secret still holds (its state was deleted, say): put them
    /// back rather than strand working keys. The fingerprint in status vouches for each.
    async fn recover_material(&self, actual: Option<&Secret>) -> Result<(), Error> {
        let Some(found) = actual.and_then(|a| secret::held_keys(self.ak, a)) else {
            return Ok(());
        };
        for (id, material) in [Some(found.current), found.previous].into_iter().flatten() {
            let fingerprint = issuer::fingerprint(&material);
            let vouched = self
                .issued_keys()
                .any(|k| k.id == id && k.fingerprint == fingerprint);
            if vouched && self.store.get(&id).await?.is_none() {
                self.store.put(&id, &material).await?;
                self.event(
                    EventType::Warning,
                    "MaterialRecovered",
                    format!(
                        "key {id} ({fingerprint}) was missing from the store; restored it from Secret {:?}",
                        secret::secret_name(self.ak)
                    ),
                )
                .await;
            }
        }
        Ok(())
    }

    /// A request annotation's value as status records it: status bounds the field, so a
    /// longer value is recorded (and compared) by its digest.
    fn annotation(&self, key: &str) -> Option<String> {
        let value = self.ak.annotations().get(key)?;
        if value.len() <= crate::api::limits::KEY_ID as usize {
            return Some(value.clone());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("sha256:{hex}"))
    }

    fn requested(&self, key: &str, handled: Option<&String>) -> bool {
        self.annotation(key).is_some_and(|v| Some(&v) != handled)
    }

    async fn desired_secret(&self) -> Result<Option<Secret>, Error> {
        let Some(cur) = &self.status.current_key else {
            return Ok(None);
        };
        let cur_secret = self.store.get(&cur.id).await?.ok_or(Error::MaterialLost)?;
        // A previous key without material stays valid until revoked but is no longer
        // offered: pods that hold it keep working, new ones get the current key.
        let prev = match &self.status.previous_key {
            Some(p) => self.store.get(&p.id).await?.map(|s| (p, s)),
            None => None,
        };
        let current = Held {
            id: &cur.id,
            fingerprint: &cur.fingerprint,
            secret: &cur_secret,
        };
        let previous = prev.as_ref().map(|(p, s)| Held {
            id: &p.id,
            fingerprint: &p.fingerprint,
            secret: s,
        });
        Ok(Some(secret::render(self.ak, &current, previous.as_ref())))
    }

    async fn observe(&mut self) -> Result<Observed, Error> {
        let s = &self.status;
        let pending = match &s.pending_key {
            Some(p) => Some(Pending {
                rotation: p.rotation,
                attempt: p.attempt,
                minted_for: p.minted_for.clone(),
                trigger: parse_trigger(&p.reason),
                id: p.id.clone(),
                stored: match &p.id {
                    Some(id) => self.store.get(id).await?.is_some(),
                    None => false,
                },
            }),
            None => None,
        };
        let current = s.current_key.as_ref().map(Self::held);
        let secret_name = secret::secret_name(self.ak);
        let actual = self.secrets.get_opt(&secret_name).await?;
        if let Some(a) = &actual
            && !secret::may_manage(self.ak, a)
        {
            return Err(Error::SecretConflict(secret_name));
        }
        self.secret_version = actual.as_ref().and_then(|a| a.resource_version());
        let desired = match self.desired_secret().await {
            Err(Error::MaterialLost) => {
                self.recover_material(actual.as_ref()).await?;
                self.desired_secret().await
            }
            other => other,
        };
        let current_material_lost = matches!(desired, Err(Error::MaterialLost));
        let secret_in_sync = match (&actual, desired) {
            (_, Err(Error::MaterialLost)) => true, // nothing to restore it from
            (_, Err(e)) => return Err(e),
            (Some(actual), Ok(Some(desired))) => secret::in_sync(self.ak, &desired, actual),
            (None, Ok(Some(_))) => false,
            (_, Ok(None)) => true,
        };
        if s.current_key.is_none() && s.pending_key.is_none() {
            let gone = |id: &str| s.history.iter().any(|h| h.id == id);
            self.found = actual
                .as_ref()
                .and_then(|a| secret::held_keys(self.ak, a))
                .filter(|f| !gone(&f.current.0));
        }
        let rollout = self.rollout_state().await?;
        let handled = s.handled_requests.clone().unwrap_or_default();
        let scheduled_at = current
            .as_ref()
            .and_then(|c| self.cadence.next_after(c.issued_at, &uid(self.ak)));
        Ok(Observed {
            now: self.now(),
            key_spec: self.key_spec.clone(),
            suspended: self.ak.spec.suspend,
            previous: s.previous_key.as_ref().map(|p| Previous {
                key: Self::held(p),
                revoke_after: p.revoke_after.as_deref().and_then(parse_ts),
                emergency: p.emergency,
            }),
            current,
            pending,
            rotation_count: s.rotation_count,
            abandoned_attempts: s
                .last_abandoned
                .as_ref()
                .filter(|a| a.rotation == s.rotation_count + 1)
                .map_or(0, |a| a.attempt),
            scheduled_at,
            rotate_requested: self.requested(annotations::ROTATE, handled.rotate.as_ref()),
            emergency_requested: self.requested(
                annotations::EMERGENCY_ROTATE,
                handled.emergency_rotate.as_ref(),
            ),
            revoke_previous_requested: self.requested(
                annotations::REVOKE_PREVIOUS,
                handled.revoke_previous.as_ref(),
            ),
            secret_in_sync,
            current_material_lost,
            adoptable: self.found.is_some(),
            rollout,
            overlap: self.overlap,
        })
    }

    fn rollout_annotation(&self) -> String {
        format!("apikey.dev/{}", self.ak.name_any())
    }

    /// Every consumer workload and where its rollout of the current key stands.
    async fn consumers(&self) -> Result<Vec<Workload>, Error> {
        let Some(fp) = self
            .status
            .current_key
            .as_ref()
            .map(|k| k.fingerprint.clone())
        else {
            return Ok(Vec::new());
        };
        let key = self.rollout_annotation();
        let client = self.ctx.client.clone();
        let mut out = Vec::new();
        for c in &self.ak.spec.consumers {
            let lp = match (&c.name, &c.selector) {
                (Some(n), _) => ListParams::default().fields(&format!("metadata.name={n}")),
                (None, Some(sel)) => ListParams::default().labels(&selector_string(sel)?),
                (None, None) => continue,
            };
            macro_rules! collect {
                ($k:ty, $done:expr, $blocked:expr) => {{
                    for w in Api::<$k>::namespaced(client.clone(), &self.ns)
                        .list(&lp)
                        .await?
                        .items
                    {
                        let template = w.spec.as_ref().map(|s| &s.template);
                        let carries = template
                            .and_then(|t| t.metadata.as_ref())
                            .and_then(|m| m.annotations.as_ref())
                            .and_then(|a| a.get(&key))
                            == Some(&fp);
                        let grace = template
                            .and_then(|t| t.spec.as_ref())
                            .and_then(|s| s.termination_grace_period_seconds)
                            .unwrap_or(30);
                        let done = carries && $done(&w);
                        out.push(Workload {
                            kind: c.kind,
                            name: w.name_any(),
                            carries,
                            done,
                            blocked: if carries && !done { $blocked(&w) } else { None },
                            grace_seconds: grace,
                        });
                    }
                }};
            }
            match c.kind {
                ConsumerKind::Deployment => {
                    collect!(Deployment, deployment_done, deployment_blocked)
                }
                ConsumerKind::StatefulSet => {
                    collect!(StatefulSet, statefulset_done, statefulset_blocked)
                }
                ConsumerKind::DaemonSet => collect!(DaemonSet, daemonset_done, daemonset_blocked),
            }
        }
        Ok(out)
    }

    async fn rollout_state(&self) -> Result<Rollout, Error> {
        let consumers = self.consumers().await?;
        if consumers.iter().any(|w| !w.carries) {
            return Ok(Rollout::NotStarted);
        }
        if consumers.iter().all(|w| w.done) {
            return Ok(Rollout::Done);
        }
        if consumers.iter().any(|w| w.blocked.is_some()) {
            return Ok(Rollout::Blocked);
        }
        let timeout = self
            .ak
            .spec
            .rollout_timeout
            .to_std()
            .map_err(Error::InvalidSpec)?;
        let started = self.status.rollout_started_at.as_deref().and_then(parse_ts);
        Ok(match started {
            Some(t) if self.now() >= after(t, timeout) => Rollout::TimedOut,
            _ => Rollout::InProgress,
        })
    }

    async fn write_status(&mut self, phase: Phase) -> Result<(), Error> {
        self.status.phase = Some(phase);
        self.status.observed_generation = self.ak.meta().generation;
        let rotating = !matches!(phase, Phase::Ready | Phase::Suspended | Phase::Failed);
        let generation = self.ak.meta().generation;
        let (reason, message) = if rotating {
            (
                format!("{phase:?}"),
                format!(
                    "rotation {} in progress",
                    self.status.rotation_count + u64::from(self.status.pending_key.is_some())
                ),
            )
        } else {
            ("Idle".into(), "no rotation in progress".into())
        };
        set_condition(
            &mut self.status.conditions,
            "Rotating",
            rotating,
            &reason,
            &message,
            generation,
            self.ctx.clock.now(),
        );
        // While Distributing, status names a key the Secret may not hold yet.
        if let Some(k) = self
            .status
            .current_key
            .as_ref()
            .filter(|_| phase != Phase::Distributing)
        {
            let msg = format!("key {} ({}) is distributed", k.id, k.fingerprint);
            set_condition(
                &mut self.status.conditions,
                "Ready",
                true,
                "KeyDistributed",
                &msg,
                generation,
                self.ctx.clock.now(),
            );
        }
        self.put_status().await
    }

    /// Replaces status with `self.status`, guarded by the resourceVersion this reconcile
    /// last saw (a concurrent write makes it a 409 and the reconcile starts over).
    async fn put_status(&mut self) -> Result<(), Error> {
        let mut obj = self.ak.clone();
        obj.status = Some(self.status.clone());
        obj.metadata.managed_fields = None;
        obj.metadata.resource_version = self.resource_version.clone();
        let api: Api<ApiKey> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let written = api
            .replace_status(&self.ak.name_any(), &PostParams::default(), &obj)
            .await?;
        self.ctx.wrote(&written);
        self.resource_version = written.resource_version();
        Ok(())
    }

    /// A new current key is in status: record its rotation, then write status, the
    /// Secret, and status again.
    async fn distribute(&mut self, rotation: u64, issued: Timestamp) -> Result<(), Error> {
        self.status.rotation_count = rotation;
        self.status.last_rotation_time = Some(ts(issued));
        self.status.next_rotation_time = self.cadence.next_after(issued, &uid(self.ak)).map(ts);
        self.status.rollout_started_at = None;
        let phase = if self.status.previous_key.is_some() {
            Phase::RollingOut
        } else {
            Phase::Ready
        };
        // Status first: once it names the new key nothing can abandon (revoke) that key,
        // and a failure before the Secret is written is repaired by RestoreSecret. Ready
        // only moves to the new key once the Secret holds it.
        self.write_status(Phase::Distributing).await?;
        self.apply_secret().await?;
        self.write_status(phase).await
    }

    /// Removes store entries status no longer references (left by a failure between a
    /// status write and the store cleanup that follows it).
    async fn sweep_store(&mut self) -> Result<(), Error> {
        let referenced: Vec<String> = self
            .issued_keys()
            .map(|k| k.id.clone())
            .chain(self.status.pending_key.as_ref().and_then(|p| p.id.clone()))
            .collect();
        for id in self.store.ids().await? {
            if !referenced.contains(&id) {
                self.store.delete(&id).await?;
            }
        }
        Ok(())
    }

    fn record_history(&mut self, entry: HistoryEntry) {
        self.status.history.insert(0, entry);
        self.status.history.truncate(HISTORY_LIMIT);
    }

    /// Publishes an event. kube's Recorder folds repeats of (type, reason, action) into a
    /// series that keeps the first note, so events about a particular rotation carry its
    /// number in the action and stay distinct; repeated failures still aggregate.
    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let rotation = self
            .status
            .pending_key
            .as_ref()
            .map(|p| p.rotation)
            .unwrap_or(self.status.rotation_count);
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: format!("{reason}/{rotation}"),
            secondary: None,
        };
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&ev, &self.ak.object_ref(&()))
            .await
        {
            tracing::warn!(error = %e, "cannot publish event");
        }
    }

    async fn apply_secret(&mut self) -> Result<(), Error> {
        let Some(desired) = self.desired_secret().await? else {
            return Ok(());
        };
        let mut body = serde_json::to_value(&desired).expect("Secrets serialize");
        body["apiVersion"] = json!("v1");
        body["kind"] = json!("Secret");
        if let Some(rv) = &self.secret_version {
            body["metadata"]["resourceVersion"] = json!(rv);
        }
        let written = self
            .secrets
            .patch(
                &secret::secret_name(self.ak),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(body),
            )
            .await?;
        self.secret_version = written.resource_version();
        Ok(())
    }

    async fn act(&mut self, step: Step, o: &Observed) -> Result<Action, Error> {
        let soon = Action::requeue(Duration::from_secs(30));
        match step {
            Step::Adopt => {
                let found = self.found.take().expect("decide adopts only found keys");
                let issuer = self.spec_issuer().await?;
                let issued = found.created.unwrap_or_else(|| self.now());
                let adopt = |id: String, material: &SecretString, rotation: u64| KeyStatus {
                    fingerprint: issuer::fingerprint(material),
                    id,
                    issued_at: ts(issued),
                    expires_at: None,
                    rotation,
                    issuer: issuer.clone(),
                    store: None,
                    revoke_after: None,
                    last_used_at: None,
                    minted_for: self.key_spec.clone(),
                    emergency: false,
                };
                self.store.put(&found.current.0, &found.current.1).await?;
                let mut previous = None;
                if let Some((id, material)) = &found.previous {
                    // The predecessor was mid-overlap: finish it (roll out, overlap, revoke).
                    self.store.put(id, material).await?;
                    previous = Some(adopt(id.clone(), material, 1));
                }
                let rotation = if previous.is_some() { 2 } else { 1 };
                let current = adopt(found.current.0.clone(), &found.current.1, rotation);
                let id = current.id.clone();
                self.status.current_key = Some(current);
                self.status.previous_key = previous;
                self.distribute(rotation, issued).await?;
                self.event(
                    EventType::Normal,
                    "Adopted",
                    format!(
                        "continuing with key {id} found in Secret {:?}",
                        secret::secret_name(self.ak)
                    ),
                )
                .await;
                Ok(Action::requeue(Duration::ZERO))
            }
            Step::AcknowledgeRevokePrevious => {
                self.status
                    .handled_requests
                    .get_or_insert_with(Default::default)
                    .revoke_previous = self.annotation(annotations::REVOKE_PREVIOUS);
                let phase = self.status.phase.unwrap_or(Phase::Ready);
                self.write_status(phase).await?;
                self.event(
                    EventType::Normal,
                    "RequestIgnored",
                    "revoke-previous requested, but there is no previous key".into(),
                )
                .await;
                Ok(soon)
            }
            Step::BeginRotation {
                rotation,
                attempt,
                trigger,
            } => {
                let issuer = self.spec_issuer().await?;
                let (rotate, emergency) = (
                    self.annotation(annotations::ROTATE),
                    self.annotation(annotations::EMERGENCY_ROTATE),
                );
                let handled = self
                    .status
                    .handled_requests
                    .get_or_insert_with(Default::default);
                match trigger {
                    Trigger::Requested => handled.rotate = rotate,
                    Trigger::Emergency => handled.emergency_rotate = emergency,
                    _ => {}
                }
                self.status.pending_key = Some(PendingKey {
                    rotation,
                    attempt,
                    started_at: ts(self.now()),
                    id: None,
                    fingerprint: None,
                    issuer,
                    store: None,
                    minted_for: self.key_spec.clone(),
                    reason: format!("{trigger:?}"),
                    expires_at: None,
                });
                self.write_status(Phase::Issuing).await?;
                let (kind, verb) = if trigger == Trigger::Emergency {
                    (
                        EventType::Warning,
                        "emergency rotation: the current key will be revoked as soon as its successor is in the Secret",
                    )
                } else {
                    (EventType::Normal, "rotation started")
                };
                self.event(
                    kind,
                    "RotationStarted",
                    format!("{verb} (rotation {rotation}, reason {trigger:?})"),
                )
                .await;
                Ok(soon)
            }
            Step::Mint | Step::Persist => {
                let pending = self
                    .status
                    .pending_key
                    .clone()
                    .expect("decide mints only with a pending key");
                // The spec's issuer must still allow the key; the pending key was recorded for it.
                self.spec_issuer().await?;
                let issuer = self.issuer_for(&pending.issuer).await?;
                let req = self.mint_request(&pending)?;
                let minted = issuer.mint(&req).await?;
                if let Some(recorded) = pending.id.as_ref().filter(|id| **id != minted.id) {
                    // The issuer answered the same idempotency key with another key: the one
                    // recorded (never distributed) must not outlive this rotation.
                    issuer.revoke(recorded).await?;
                    self.store.delete(recorded).await?;
                }
                let fingerprint = issuer::fingerprint(&minted.secret);
                let p = self.status.pending_key.as_mut().expect("pending");
                p.id = Some(minted.id.clone());
                p.fingerprint = Some(fingerprint.clone());
                p.expires_at = minted.expires_at.map(ts);
                // The id is in status before the store is tried, so a store failure shows
                // which key waits for it (and Persist re-mints it by idempotency key); so is
                // the fingerprint of exactly the material stored.
                if pending.id.as_ref() != Some(&minted.id)
                    || pending.fingerprint.as_ref() != Some(&fingerprint)
                {
                    self.write_status(Phase::Storing).await?;
                }
                self.store.put(&minted.id, &minted.secret).await?;
                self.write_status(Phase::Distributing).await?;
                self.event(
                    EventType::Normal,
                    "Minted",
                    format!("minted key {} ({fingerprint})", minted.id),
                )
                .await;
                Ok(soon)
            }
            Step::Promote => {
                let p = self
                    .status
                    .pending_key
                    .take()
                    .expect("decide promotes only a pending key");
                let id = p.id.clone().expect("a stored pending key has an id");
                let issued = self.now();
                let new = KeyStatus {
                    id: id.clone(),
                    fingerprint: p.fingerprint.clone().unwrap_or_default(),
                    issued_at: ts(issued),
                    expires_at: p.expires_at.clone(),
                    rotation: p.rotation,
                    issuer: p.issuer.clone(),
                    store: None,
                    revoke_after: None,
                    last_used_at: None,
                    minted_for: p.minted_for.clone(),
                    emergency: false,
                };
                let emergency = parse_trigger(&p.reason) == Trigger::Emergency;
                self.status.previous_key = self.status.current_key.take().map(|mut old| {
                    old.emergency = emergency;
                    old
                });
                self.status.current_key = Some(new);
                self.distribute(p.rotation, issued).await?;
                self.event(
                    EventType::Normal,
                    "Distributed",
                    format!(
                        "key {id} is now current in Secret {:?}",
                        secret::secret_name(self.ak)
                    ),
                )
                .await;
                Ok(soon)
            }
            Step::Abandon => {
                let p = self
                    .status
                    .pending_key
                    .take()
                    .expect("decide abandons only a pending key");
                self.drop_pending(&p).await?;
                // The attempt's idempotency key is spent, id or not.
                self.status.last_abandoned = Some(crate::api::apikey::AttemptRef {
                    rotation: p.rotation,
                    attempt: p.attempt,
                });
                self.record_history(HistoryEntry {
                    rotation: p.rotation,
                    id: p.id.clone().unwrap_or_default(),
                    fingerprint: p.fingerprint.clone().unwrap_or_default(),
                    issued_at: p.started_at.clone(),
                    revoked_at: Some(ts(self.now())),
                    reason: "Abandoned".into(),
                });
                self.write_status(Phase::Ready).await?;
                self.event(
                    EventType::Normal,
                    "Abandoned",
                    format!(
                        "pending rotation {} dropped: the key's spec changed",
                        p.rotation
                    ),
                )
                .await;
                Ok(Action::requeue(Duration::ZERO))
            }
            Step::RestoreSecret => {
                self.apply_secret().await?;
                self.event(
                    EventType::Warning,
                    "SecretRestored",
                    format!(
                        "Secret {:?} was missing or edited; restored",
                        secret::secret_name(self.ak)
                    ),
                )
                .await;
                Ok(soon)
            }
            Step::RollOut => {
                let admitted = {
                    let mut rolling = self.ctx.rolling.lock().expect("lock");
                    let me = uid(self.ak);
                    if rolling.contains(&me) || rolling.len() < self.ctx.max_rollouts {
                        rolling.insert(me);
                        true
                    } else {
                        false
                    }
                };
                if !admitted {
                    let msg = format!(
                        "waiting for a rollout slot (at most {} at once)",
                        self.ctx.max_rollouts
                    );
                    if !self
                        .status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Rotating" && c.reason == "RolloutQueued")
                    {
                        set_condition(
                            &mut self.status.conditions,
                            "Rotating",
                            true,
                            "RolloutQueued",
                            &msg,
                            self.ak.meta().generation,
                            self.ctx.clock.now(),
                        );
                        self.put_status().await?;
                    }
                    return Ok(Action::requeue(Duration::from_secs(2)));
                }
                let fp = self
                    .status
                    .current_key
                    .as_ref()
                    .map(|k| k.fingerprint.clone())
                    .unwrap_or_default();
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {self.rollout_annotation(): fp}}}}});
                for Workload {
                    kind,
                    name,
                    carries,
                    ..
                } in self.consumers().await?
                {
                    if carries {
                        continue;
                    }
                    let pp = PatchParams::default();
                    let client = self.ctx.client.clone();
                    match kind {
                        ConsumerKind::Deployment => Api::<Deployment>::namespaced(client, &self.ns)
                            .patch(&name, &pp, &Patch::Merge(&patch))
                            .await
                            .map(|_| ()),
                        ConsumerKind::StatefulSet => {
                            Api::<StatefulSet>::namespaced(client, &self.ns)
                                .patch(&name, &pp, &Patch::Merge(&patch))
                                .await
                                .map(|_| ())
                        }
                        ConsumerKind::DaemonSet => Api::<DaemonSet>::namespaced(client, &self.ns)
                            .patch(&name, &pp, &Patch::Merge(&patch))
                            .await
                            .map(|_| ()),
                    }?;
                }
                self.status.rollout_started_at = Some(ts(self.now()));
                self.record_consumers().await?;
                self.write_status(Phase::RollingOut).await?;
                Ok(Action::requeue(Duration::from_secs(10)))
            }
            Step::WaitForRollout { recheck_at } => {
                if self.status.rollout_started_at.is_none() {
                    // Patched earlier without the start recorded: the timeout counts from now.
                    self.status.rollout_started_at = Some(ts(self.now()));
                    self.write_status(Phase::RollingOut).await?;
                }
                if self.record_consumers().await? {
                    self.write_status(Phase::RollingOut).await?;
                }
                Ok(Action::requeue(until(recheck_at, self.now())))
            }
            Step::MaterialLostDuringOverlap => Err(Error::MaterialLost),
            Step::RolloutStuck => {
                self.record_consumers().await?;
                let blocked = self.status.consumers.iter().any(|c| {
                    c.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("paused") || m.starts_with("updateStrategy"))
                });
                let waiting: Vec<String> = self
                    .status
                    .consumers
                    .iter()
                    .filter(|c| !c.rolled_out)
                    .map(|c| {
                        format!(
                            "{:?}/{} ({})",
                            c.kind,
                            c.name,
                            c.message.as_deref().unwrap_or("rolling")
                        )
                    })
                    .collect();
                let (reason, msg) = if blocked {
                    (
                        "ConsumerBlocked",
                        format!(
                            "consumers will not roll out by themselves: {}; both keys stay valid",
                            waiting.join(", ")
                        ),
                    )
                } else {
                    (
                        "RolloutTimeout",
                        format!(
                            "rollout not complete after {}: {}; both keys stay valid",
                            self.ak.spec.rollout_timeout.0,
                            waiting.join(", ")
                        ),
                    )
                };
                let changed = !self
                    .status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Rotating" && c.reason == reason && c.message == msg);
                if changed {
                    set_condition(
                        &mut self.status.conditions,
                        "Rotating",
                        false,
                        reason,
                        &msg,
                        self.ak.meta().generation,
                        self.ctx.clock.now(),
                    );
                    self.put_status().await?;
                    self.event(EventType::Warning, reason, msg).await;
                }
                Ok(Action::requeue(Duration::from_secs(30)))
            }
            Step::StartOverlap { revoke_after } => {
                if let Some(p) = self.status.previous_key.as_mut() {
                    p.revoke_after = Some(ts(revoke_after));
                }
                // Terminating pods keep the old key until their grace period ends.
                let grace = self
                    .consumers()
                    .await?
                    .iter()
                    .map(|w| w.grace_seconds)
                    .max()
                    .unwrap_or(0);
                if (grace as u64) > self.overlap.as_secs() {
                    let note = format!(
                        "overlap {:?} is shorter than the consumers' terminationGracePeriodSeconds ({grace}s): terminating pods may still use the previous key when it is revoked",
                        self.overlap
                    );
                    self.event(EventType::Warning, "OverlapShorterThanGracePeriod", note)
                        .await;
                }
                self.record_consumers().await?;
                self.write_status(Phase::Overlapping).await?;
                Ok(Action::requeue(until(revoke_after, self.now())))
            }
            Step::RevokePrevious => {
                let prev = self
                    .status
                    .previous_key
                    .clone()
                    .expect("decide revokes only a previous key");
                self.issuer_for(&prev.issuer)
                    .await?
                    .revoke(&prev.id)
                    .await?;
                self.status.previous_key = None;
                let reason = if prev.emergency {
                    "Compromised"
                } else if o.revoke_previous_requested {
                    "RevokePreviousRequested"
                } else {
                    "Superseded"
                };
                if o.revoke_previous_requested {
                    self.status
                        .handled_requests
                        .get_or_insert_with(Default::default)
                        .revoke_previous = self.annotation(annotations::REVOKE_PREVIOUS);
                }
                self.record_history(HistoryEntry {
                    rotation: prev.rotation,
                    id: prev.id.clone(),
                    fingerprint: prev.fingerprint.clone(),
                    issued_at: prev.issued_at.clone(),
                    revoked_at: Some(ts(self.now())),
                    reason: reason.into(),
                });
                // Status first: a failure after it leaves a Secret that RestoreSecret repairs
                // and a store entry the idle sweep removes - never a status naming a key
                // whose material is gone. The phase stays Revoking until the next (idle)
                // pass, so Ready means the Secret no longer holds the revoked key.
                self.write_status(Phase::Revoking).await?;
                self.apply_secret().await?;
                self.store.delete(&prev.id).await?;
                self.event(
                    EventType::Normal,
                    "Revoked",
                    format!("revoked previous key {} ({reason})", prev.id),
                )
                .await;
                Ok(Action::requeue(Duration::ZERO))
            }
            Step::Idle { wake_at } => {
                let phase = if self.status.previous_key.is_some() {
                    Phase::Overlapping
                } else if self.ak.spec.suspend {
                    Phase::Suspended
                } else {
                    Phase::Ready
                };
                // A failure reported earlier is cleared once things work again.
                let failure_shown = self.status.conditions.iter().any(|c| {
                    (c.type_ == "Ready" && c.status != "True")
                        || (c.type_ == "Rotating" && c.status == "False" && c.reason != "Idle")
                });
                let stale = self.status.phase != Some(phase)
                    || self.status.observed_generation != self.ak.meta().generation
                    || failure_shown;
                self.sweep_store().await?;
                let consumers_changed = self.record_consumers().await?;
                if stale || consumers_changed {
                    self.write_status(phase).await?;
                }
                Ok(wake_at.map_or(Action::await_change(), |t| {
                    Action::requeue(until(t, self.now()))
                }))
            }
        }
    }

    /// Refreshes `status.consumers`; true when it changed.
    async fn record_consumers(&mut self) -> Result<bool, Error> {
        let mut now_state: Vec<ConsumerStatus> = self
            .consumers()
            .await?
            .into_iter()
            .map(|w| ConsumerStatus {
                kind: w.kind,
                name: w.name,
                rolled_out: w.done,
                message: match (w.done, w.blocked) {
                    (true, _) => None,
                    (false, Some(why)) => Some(why.to_string()),
                    (false, None) => Some("rolling out the current key".to_string()),
                },
            })
            .collect();
        // Status lists a bounded number of consumers; a selector may match more.
        now_state.truncate(crate::api::limits::CONSUMER_STATUSES as usize);
        let changed = now_state != self.status.consumers;
        self.status.consumers = now_state;
        Ok(changed)
    }

    /// What the issuer is asked for a pending rotation (the same every time: idempotent).
    fn mint_request(&self, p: &PendingKey) -> Result<MintRequest, Error> {
        let expires_after = self
            .ak
            .spec
            .expires_after
            .as_ref()
            .map(|d| d.to_std())
            .transpose()
            .map_err(Error::InvalidSpec)?;
        Ok(MintRequest {
            idempotency_key: format!("{}-{}-{}", uid(self.ak), p.rotation, p.attempt),
            display_name: self
                .ak
                .spec
                .display_name
                .clone()
                .unwrap_or_else(|| format!("{}/{}", self.ns, self.ak.name_any())),
            scopes: self.ak.spec.scopes.clone(),
            key_type: self.ak.spec.key_type,
            expires_after,
            now: self.now(),
        })
    }

    /// Revokes a pending key; one whose id was never recorded is minted again with its
    /// idempotency key (the issuer returns the same key, if it minted one) and revoked.
    async fn drop_pending(&mut self, p: &PendingKey) -> Result<(), Error> {
        let found: Result<_, Error> = async {
            let issuer = self.issuer_for(&p.issuer).await?;
            let id = match &p.id {
                Some(id) => id.clone(),
                None => issuer.mint(&self.mint_request(p)?).await?.id,
            };
            Ok((issuer, id))
        }
        .await;
        match found {
            Ok((issuer, id)) => {
                issuer.revoke(&id).await?;
                self.store.delete(&id).await?;
            }
            // Dropping must not wedge on an issuer that is gone or a spec no longer
            // valid: say what may be left at the issuer and go on.
            Err(e @ (Error::IssuerNotFound { .. } | Error::InvalidSpec(_))) => {
                let id = p.id.as_deref().unwrap_or("(id not recorded)");
                self.event(
                    EventType::Warning,
                    "PendingKeyNotRevoked",
                    format!(
                        "could not revoke the key of unfinished rotation {} ({id}): {e}; revoke it at {:?} {:?} if it was minted",
                        p.rotation, p.issuer.kind, p.issuer.name
                    ),
                )
                .await;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn finalize(&mut self) -> Result<Action, Error> {
        let name = self.ak.name_any();
        // A pending key will never be promoted: it goes under either policy.
        if let Some(p) = self.status.pending_key.clone() {
            self.drop_pending(&p).await?;
        }
        if self.ak.spec.deletion_policy == DeletionPolicy::Revoke {
            let held: Vec<(IssuerRecord, String)> = self
                .issued_keys()
                .map(|k| (k.issuer.clone(), k.id.clone()))
                .collect();
            for (record, id) in held {
                self.issuer_for(&record).await?.revoke(&id).await?;
                self.store.delete(&id).await?;
                self.event(
                    EventType::Normal,
                    "Revoked",
                    format!("revoked key {id} (ApiKey deleted with deletionPolicy Revoke)"),
                )
                .await;
            }
        } else {
            // Retain: the Secrets outlive the ApiKey (their keys stay valid) — but only the
            // ones it manages are released; a foreign Secret of that name is left alone.
            let release = json!({"metadata": {"ownerReferences": null}});
            let consumer = secret::secret_name(self.ak);
            if let Some(s) = self.secrets.get_opt(&consumer).await?
                && secret::may_manage(self.ak, &s)
            {
                self.secret_version = s.resource_version();
                // Bring it up to date first: a key status names but the Secret lacks (a
                // distribute cut short) would otherwise be left valid and unreferenced.
                match self.apply_secret().await {
                    Ok(()) | Err(Error::MaterialLost) => {}
                    Err(e) => return Err(e),
                }
                self.secrets
                    .patch(&consumer, &PatchParams::default(), &Patch::Merge(&release))
                    .await?;
            }
            self.store.release().await?;
        }
        let api: Api<ApiKey> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let remaining: Vec<String> = self
            .ak
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": self.ak.finalizers()},
            {"op": "replace", "path": "/metadata/finalizers", "value": remaining}
        ]))
        .expect("static patch");
        api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await?;
        Ok(Action::await_change())
    }
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    let secs = (t.as_millisecond() - now.as_millisecond()).max(0) as u64;
    Duration::from_millis(secs).max(Duration::from_millis(50))
}

fn uid_of<K: Resource>(k: &K) -> String {
    k.meta().uid.clone().unwrap_or_default()
}

fn parse_trigger(reason: &str) -> Trigger {
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

fn deployment_done(d: &Deployment) -> bool {
    let (Some(spec), Some(s)) = (&d.spec, &d.status) else {
        return false;
    };
    let replicas = spec.replicas.unwrap_or(1);
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas.unwrap_or(0) == replicas
        && s.replicas.unwrap_or(0) == replicas
        && s.available_replicas.unwrap_or(0) == replicas
}

fn statefulset_done(s: &StatefulSet) -> bool {
    let Some(st) = &s.status else {
        return false;
    };
    st.observed_generation >= s.metadata.generation
        && st.update_revision.is_some()
        && st.update_revision == st.current_revision
}

fn daemonset_done(d: &DaemonSet) -> bool {
    let Some(s) = &d.status else {
        return false;
    };
    s.observed_generation >= d.metadata.generation
        && s.updated_number_scheduled.unwrap_or(0) == s.desired_number_scheduled
        && s.number_available.unwrap_or(0) == s.desired_number_scheduled
}

/// A consumer workload as the rollout sees it.
struct Workload {
    kind: ConsumerKind,
    name: String,
    /// Its pod template carries the current key's fingerprint.
    carries: bool,
    done: bool,
    /// Why it will not roll by itself (paused, OnDelete), if so.
    blocked: Option<&'static str>,
    grace_seconds: i64,
}

fn deployment_blocked(d: &Deployment) -> Option<&'static str> {
    d.spec
        .as_ref()
        .and_then(|s| s.paused)
        .unwrap_or(false)
        .then_some("paused: resume it (kubectl rollout resume) to roll out the new key")
}

const ON_DELETE: &str = "updateStrategy OnDelete: delete its pods to pick up the new key";

fn statefulset_blocked(s: &StatefulSet) -> Option<&'static str> {
    let strategy = s
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref());
    (strategy == Some("OnDelete")).then_some(ON_DELETE)
}

fn daemonset_blocked(d: &DaemonSet) -> Option<&'static str> {
    let strategy = d
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref());
    (strategy == Some("OnDelete")).then_some(ON_DELETE)
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: transition,
    });
}

/// Records a failure where users look: conditions and an event (never secrets), on top
/// of the freshest status we know, guarded by its resourceVersion (a concurrent writer
/// wins; the retry reports).
async fn report_failure(ak: &ApiKey, ctx: &Context, e: &Error) {
    let mut status = ak.status.clone().unwrap_or_default();
    let distributed = status.current_key.is_some();
    let message = e.to_string();
    let (type_, phase) = if distributed {
        ("Rotating", status.phase)
    } else {
        ("Ready", Some(Phase::Failed))
    };
    set_condition(
        &mut status.conditions,
        type_,
        false,
        e.reason(),
        &message,
        ak.meta().generation,
        ctx.clock.now(),
    );
    status.phase = phase;
    status.observed_generation = ak.meta().generation;
    if ak.status.as_ref() != Some(&status) {
        let mut obj = ak.clone();
        obj.status = Some(status);
        let api: Api<ApiKey> =
            Api::namespaced(ctx.client.clone(), &ak.namespace().unwrap_or_default());
        match api
            .replace_status(&ak.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(written) => ctx.wrote(&written),
            Err(err) => tracing::debug!(error = %err, "cannot record the failure in status"),
        }
        let ev = Event {
            type_: EventType::Warning,
            reason: e.reason().into(),
            note: Some(message),
            action: "Reconcile".into(),
            secondary: None,
        };
        let _ = ctx.recorder.publish(&ev, &ak.object_ref(&())).await;
    }
    tracing::warn!(apikey = %ak.name_any(), namespace = ?ak.namespace(), reason = e.reason(), error = %e, "reconcile failed");
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
