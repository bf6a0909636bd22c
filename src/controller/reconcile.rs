//! The imperative shell's entry: a reconcile reads the ApiKey (never a stale view of our
//! own last write), gathers what `rotation::decide` needs, performs the one step it
//! returns, and comes back. The shell's parts: `shell` (its state), `observe`,
//! `consumers`, `steps/` (one function per protocol step), `status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::clock::Clock;
use super::error::{Error, backoff};
use super::rotation::{self, Rollout};
use super::shell::Shell;
use super::status::report_failure;
use crate::api::apikey::ApiKey;

pub const FINALIZER: &str = "apikey.dev/cleanup";

pub const MANAGER: &str = "apikey-operator";

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// At most this many ApiKeys roll their consumers at once (restart storms hurt).
    pub(super) max_rollouts: usize,
    /// The ApiKeys whose consumers are rolling now.
    pub(super) rolling: Mutex<std::collections::HashSet<String>>,
    pub(super) clock: Arc<Clock>,
    /// Our last status write per ApiKey: a cached object older than that is a stale view,
    /// and acting on it could repeat a step.
    pub(super) last_written: Mutex<HashMap<String, ApiKey>>,
    pub(super) failures: Mutex<HashMap<String, u32>>,
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

    pub(super) fn wrote(&self, ak: &ApiKey) {
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

pub(super) fn uid(ak: &ApiKey) -> String {
    ak.uid().unwrap_or_default()
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
        return Shell::load(ak, ctx).await?.finalize().await;
    }
    let mut shell = Shell::load(ak, ctx).await?;
    let observed = shell.observe().await?;
    if observed.rollout != Rollout::NotStarted && observed.rollout != Rollout::InProgress {
        // Done, stuck or blocked: this ApiKey no longer holds a rollout slot.
        ctx.rolling.lock().expect("lock").remove(&uid(ak));
    }
    let step = rotation::decide(&observed);
    tracing::debug!(apikey = %ak.name_any(), ?step, "next step");
    // A spec that cannot be acted on blocks only what depends on it: restoring the Secret
    // and finishing a rollout need nothing but status and the store.
    if let Some(e) = shell.spec_error.take()
        && !step.needs_only_status()
    {
        return Err(e);
    }
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
