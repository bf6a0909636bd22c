//! The imperative shell's entry: a reconcile reads the ApiKey (never a stale view of our
//! own last write), gathers what `rotation::decide` needs, performs the one step it
//! returns, and comes back. The shell's parts: `shell` (its state), `observe`,
//! `consumers`, `steps/` (one function per protocol step), `status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};

use tracing::Instrument;

use super::clock::{Clock, after, parse_ts};
use super::error::{Error, backoff};
use super::events::EventRecorder;
use super::finalizers;
use super::rotation::{self, Rollout, Step};
use super::shell::Shell;
use super::status::report_failure;
use crate::api::apikey::ApiKey;
use crate::telemetry::{KeyFacts, Metrics, RotationResult};

pub const FINALIZER: &str = "apikey.dev/cleanup";

pub use crate::writes::MANAGER;

pub struct Context {
    pub client: Client,
    pub recorder: EventRecorder,
    /// At most this many ApiKeys roll their consumers at once (restart storms hurt).
    pub(super) max_rollouts: usize,
    /// The ApiKeys whose consumers are rolling now.
    pub(super) rolling: Mutex<std::collections::HashSet<String>>,
    pub(super) clock: Arc<Clock>,
    /// Our last write per ApiKey, until the cache shows it: a cached object from before
    /// it is a stale view, and acting on it could repeat a step.
    pub(super) fences: Mutex<HashMap<String, Fence>>,
    /// The ApiKeys written by reconciles in progress, as last written: a reconcile that
    /// fails after a write reports on top of it, and the metrics show it.
    latest: Mutex<HashMap<String, ApiKey>>,
    /// Our writes whose watch events need not wake the ApiKey again.
    pub(super) own_writes: Arc<crate::writes::OwnWrites>,
    /// The ApiKeys being reconciled, and the watch events held until they are done.
    pub(super) reconciling: super::held::Reconciling,
    pub(super) failures: Mutex<HashMap<String, u32>>,
    /// Store logins and issuer clients kept between reconciles.
    pub(super) connections: Arc<crate::store::Connections>,
    pub(super) issuers: Arc<crate::issuer::Clients>,
    pub(super) issuer_cache: super::issuers::IssuerCache,
    pub(super) protected: super::credentials::Protected,
    /// Where ClusterKeyStore credentials live, and the operator's ServiceAccount.
    pub(super) namespace: String,
    pub(super) service_account: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) leadership: Arc<crate::telemetry::Leadership>,
    #[cfg(feature = "failpoints")]
    after_step: Option<super::failpoints::AfterStep>,
}

impl Context {
    pub fn new(client: Client, recorder: EventRecorder, settings: &super::Settings) -> Self {
        Context {
            client,
            recorder,
            max_rollouts: settings.max_concurrent_rollouts.max(1),
            rolling: Mutex::default(),
            clock: settings.clock.clone(),
            fences: Mutex::default(),
            latest: Mutex::default(),
            own_writes: Arc::default(),
            reconciling: Default::default(),
            failures: Mutex::default(),
            connections: Arc::default(),
            issuers: Arc::default(),
            issuer_cache: Default::default(),
            protected: super::credentials::Protected::new(
                settings.scope.namespaces.clone(),
                settings.clock.clone(),
            ),
            namespace: settings.namespace.clone(),
            service_account: settings.service_account.clone(),
            metrics: settings.metrics.clone(),
            leadership: settings.leadership.clone(),
            #[cfg(feature = "failpoints")]
            after_step: settings.after_step.clone(),
        }
    }

    /// Whether `ak` predates our last write of it. The fence lifts once the cache shows
    /// our write or a later one. resourceVersions are opaque: ordering them as numbers is
    /// only a hint (etcd revisions), and one an etcd restore moved back would hold the
    /// fence forever, so it also lifts after `FENCE_LIMIT`.
    fn is_stale(&self, ak: &ApiKey) -> bool {
        let mut fences = self.fences.lock().expect("lock");
        let Some(fence) = fences.get(&uid(ak)) else {
            return false;
        };
        let number = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
        let seen = ak.resource_version();
        let caught_up = seen.as_deref() == Some(fence.resource_version.as_str())
            || matches!((number(seen.as_deref()), number(Some(&fence.resource_version))),
                (Some(a), Some(b)) if a > b);
        if caught_up || self.clock.now() > after(fence.at, FENCE_LIMIT) {
            fences.remove(&uid(ak));
            return false;
        }
        true
    }

    /// Whether the watch event `ak` should wake its ApiKey: not when it is the echo of
    /// our own write (the cache shows it now, so its fence lifts too), nor while the
    /// ApiKey is being reconciled (the event waits for its end).
    pub(super) fn wakes(&self, ak: &ApiKey) -> bool {
        if self.own_writes.is_echo(ak.meta()) {
            self.is_stale(ak);
            return false;
        }
        !self.reconciling.hold(&ObjectRef::from_obj(ak), ak.meta())
    }

    /// `ak`, or our own later write of it in this reconcile.
    fn freshest(&self, ak: &ApiKey) -> ApiKey {
        match self.latest.lock().expect("lock").get(&uid(ak)) {
            Some(written) => written.clone(),
            None => ak.clone(),
        }
    }

    /// Drops what is kept per ApiKey, once its finalizer is off (it is gone).
    pub(super) fn forget(&self, ak: &ApiKey) {
        self.fences.lock().expect("lock").remove(&uid(ak));
        self.failures.lock().expect("lock").remove(&uid(ak));
    }

    pub(super) fn wrote(&self, ak: &ApiKey) {
        let fence = Fence {
            resource_version: ak.resource_version().unwrap_or_default(),
            at: self.clock.now(),
        };
        self.fences.lock().expect("lock").insert(uid(ak), fence);
        self.latest
            .lock()
            .expect("lock")
            .insert(uid(ak), ak.clone());
        self.own_writes.record(ak.meta());
    }
}

/// The version of our last write of an ApiKey, and when we made it.
pub(super) struct Fence {
    resource_version: String,
    at: jiff::Timestamp,
}

/// How long a reconcile waits for the cache to show our own last write.
const FENCE_LIMIT: Duration = Duration::from_secs(10);

pub(super) fn uid(ak: &ApiKey) -> String {
    ak.uid().unwrap_or_default()
}

pub async fn reconcile(ak: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Every line logged while reconciling carries which ApiKey, which rotation, what step.
    let span = tracing::info_span!(
        "reconcile",
        namespace = %ak.namespace().unwrap_or_default(),
        apikey = %ak.name_any(),
        // The rotation in flight, else the one that issued the current key.
        rotation = ak.status.as_ref().map_or(0, |s| {
            s.pending_key.as_ref().map_or(s.rotation_count, |p| p.rotation)
        }),
        step = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let apikey = ObjectRef::from_obj(&*ak);
    ctx.reconciling.begin(apikey.clone());
    let result = reconcile_traced(ak, ctx.clone()).instrument(span).await;
    let woken = ctx.reconciling.end(&apikey, &ctx.own_writes);
    ctx.metrics.reconciled(started.elapsed());
    match result {
        // Another writer's change came in meanwhile: look again at once.
        Ok(_) if woken => Ok(Action::requeue(Duration::ZERO)),
        Err(e) if woken => {
            ctx.reconciling.woken_while_failing(apikey);
            Err(e)
        }
        result => result,
    }
}

async fn reconcile_traced(ak: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.is_stale(&ak) {
        // Our own last write has not reached the cache yet: wait for it.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    show_in_metrics(&ctx, &ak);
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
    // The metrics show what this reconcile left too: the echo of its writes wakes no other.
    if let Some(left) = ctx.latest.lock().expect("lock").remove(&uid(&ak)) {
        show_in_metrics(&ctx, &left);
    }
    result
}

/// The ApiKey's series in the metrics, as `ak` has it (none once it is being deleted).
fn show_in_metrics(ctx: &Context, ak: &ApiKey) {
    let deleting = ak.meta().deletion_timestamp.is_some();
    ctx.metrics.key(
        &ak.namespace().unwrap_or_default(),
        &ak.name_any(),
        (!deleting).then(|| key_facts(ak)),
    );
}

pub fn error_policy(ak: Arc<ApiKey>, e: &Error, ctx: Arc<Context>) -> Action {
    if ctx.reconciling.take_woken(&ObjectRef::from_obj(&*ak)) {
        return Action::requeue(Duration::ZERO);
    }
    if e.is_conflict() {
        // Another write won; the watch brings the newer object. Do not hammer the issuer.
        return Action::requeue(Duration::from_secs(1));
    }
    // Watches on issuers, Secrets and consumers wake the ApiKey as soon as what blocks
    // it changes; the backoff is for what no watch sees (an issuer's API, say).
    let mut failures = ctx.failures.lock().expect("lock");
    let n = failures.entry(uid(&ak)).or_default();
    *n += 1;
    Action::requeue(backoff(*n - 1))
}

async fn run(ak: &ApiKey, ctx: &Context) -> Result<Action, Error> {
    let deleting = ak.meta().deletion_timestamp.is_some();
    let with_finalizer;
    let ak = if !deleting && !ak.finalizers().iter().any(|f| f == FINALIZER) {
        // Nothing is minted before the finalizer that revokes it is on the server; once
        // it is, the reconcile goes on from the object written.
        with_finalizer = add_finalizer(ak, ctx).await?;
        &with_finalizer
    } else {
        ak
    };
    if deleting && !ak.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if deleting {
        // Deletion needs only what status recorded: it must never wait on observing a
        // world (a conflicting Secret, an invalid spec) the user is deleting it to escape.
        ctx.rolling.lock().expect("lock").remove(&uid(ak));
        return Shell::load(ak, ctx).await?.finalize().await;
    }
    let mut shell = Shell::load(ak, ctx).await?;
    shell.relocate().await?;
    // A rotation's issuing steps follow one another at once, each on the status the one
    // before wrote (every write is guarded by its resourceVersion, so a change made
    // meanwhile still stops the chain with a conflict).
    for _ in 0..STEPS_PER_RECONCILE {
        let (step_leads_on, action) = one_step(&mut shell).await?;
        if !step_leads_on {
            return Ok(action);
        }
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// At most this many steps in one reconcile: the issuing chain (begin, mint, promote)
/// and the step after it.
const STEPS_PER_RECONCILE: usize = 5;

/// Observes, decides and performs one step; whether the next may follow at once.
async fn one_step(shell: &mut Shell<'_>) -> Result<(bool, Action), Error> {
    let (ak, ctx) = (shell.ak, shell.ctx);
    let (ns, name) = (shell.ns.clone(), ak.name_any());
    let observed = shell.observe().await?;
    if observed.rollout != Rollout::NotStarted && observed.rollout != Rollout::InProgress {
        // Done, stuck or blocked: this ApiKey no longer holds a rollout slot.
        ctx.rolling.lock().expect("lock").remove(&uid(ak));
    }
    let step = rotation::decide(&observed);
    shell.queued = rotation::queued(&observed);
    let step_name = format!("{step:?}");
    let step_name = step_name.split([' ', '{', '(']).next().unwrap_or_default();
    let rotation = match (&observed.pending, &step) {
        (Some(p), _) => p.rotation,
        (None, Step::BeginRotation { rotation, .. }) => *rotation,
        (None, _) => observed.rotation_count,
    };
    tracing::Span::current()
        .record("step", step_name)
        .record("rotation", rotation);
    tracing::debug!(?step, "next step");
    let outcome = match step {
        Step::Promote => Some(RotationResult::Success),
        Step::Abandon => Some(RotationResult::Abandoned),
        _ => None,
    };
    let rotating = observed.pending.is_some() || matches!(step, Step::BeginRotation { .. });
    // A spec that cannot be acted on blocks only what depends on it: restoring the Secret
    // and finishing a rollout need nothing but status and the store.
    if !step.needs_only_status()
        && let Some(e) = shell.spec_error.take()
    {
        return Err(e);
    }
    let leads_on = step.leads_on();
    #[cfg(feature = "failpoints")]
    let waits = matches!(step, Step::WaitForRollout { .. } | Step::Idle { .. });
    let acted = shell.act(step, &observed).await;
    #[cfg(feature = "failpoints")]
    if let (Some(after_step), Ok(_), false) = (&ctx.after_step, &acted, waits) {
        (after_step.0)(&name, step_name).await;
    }
    match &acted {
        Ok(_) => outcome.map(|o| ctx.metrics.rotation(&ns, &name, o)),
        Err(e) if rotating && !e.is_conflict() => {
            ctx.metrics.rotation(&ns, &name, RotationResult::Failure);
            None
        }
        Err(_) => None,
    };
    Ok((leads_on, acted?))
}

/// What the metrics show for `ak`, from its status.
fn key_facts(ak: &ApiKey) -> KeyFacts {
    let status = ak.status.as_ref();
    KeyFacts {
        issued_at: status
            .and_then(|s| s.current_key.as_ref())
            .and_then(|k| parse_ts(&k.issued_at)),
        next_rotation: status
            .and_then(|s| s.next_rotation_time.as_deref())
            .and_then(parse_ts),
        ready: status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        }),
    }
}

async fn add_finalizer(ak: &ApiKey, ctx: &Context) -> Result<ApiKey, Error> {
    let api: Api<ApiKey> = Api::namespaced(ctx.client.clone(), &ak.namespace().unwrap_or_default());
    let written = finalizers::add(&api, ak, FINALIZER).await?;
    ctx.wrote(&written);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fence_on_our_own_write_lifts_even_when_versions_go_back() {
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let settings = crate::controller::Settings::default();
        let clock = settings.clock.clone();
        let (recorder, _) =
            EventRecorder::new(client.clone(), "test", None, settings.metrics.clone());
        let ctx = Context::new(client, recorder, &settings);
        let at = |rv: &str| {
            let mut ak: ApiKey = serde_json::from_value(serde_json::json!({
                "apiVersion": "apikey.dev/v1alpha1", "kind": "ApiKey",
                "metadata": {"name": "a", "uid": "u1", "resourceVersion": rv},
                "spec": {"issuerRef": {"name": "gen"}, "rotation": {"every": "1h"}}}))
            .unwrap();
            ak.metadata.namespace = Some("default".into());
            ak
        };
        ctx.wrote(&at("100"));
        assert!(ctx.is_stale(&at("99")), "an older view waits");
        assert!(!ctx.is_stale(&at("101")), "a later one does not");
        ctx.wrote(&at("200"));
        assert!(!ctx.is_stale(&at("200")), "our own write came back");
        // After an etcd restore every version is lower than the ones we wrote: the fence
        // lifts after its limit instead of holding the ApiKey until a restart.
        ctx.wrote(&at("300"));
        assert!(ctx.is_stale(&at("7")));
        clock.advance(FENCE_LIMIT + Duration::from_secs(1));
        assert!(!ctx.is_stale(&at("7")));
    }
}
