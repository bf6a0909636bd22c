//! What the controller's tests share: an operator on a fresh dev cluster, and the
//! manifests and conditions they create and wait for.

use apikey_operator::api::apikey::{ApiKey, Phase};
use apikey_operator::api::issuer::KeyIssuer;
use apikey_operator::api::{self};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::wait::conditions;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::*;

pub struct Operator {
    pub t: TestCluster,
    /// The client the operator runs with: the one `apikey-operator run` builds.
    client: Client,
    task: JoinHandle<()>,
}

impl Operator {
    /// Stops the operator as a crash would (it is gone once this returns).
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Starts a fresh operator process against the same cluster.
    pub fn start(&mut self) {
        self.task = tokio::spawn(apikey_operator::controller::run(
            self.client.clone(),
            Default::default(),
        ));
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn operator() -> Operator {
    operator_with(Default::default()).await
}

/// An operator whose clock the test moves (`clock.advance`).
pub async fn operator_on_test_clock() -> (
    Operator,
    std::sync::Arc<apikey_operator::controller::clock::Clock>,
) {
    let clock = std::sync::Arc::new(apikey_operator::controller::clock::Clock::default());
    let op = operator_with(apikey_operator::controller::Settings {
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    (op, clock)
}

pub async fn operator_with(settings: apikey_operator::controller::Settings) -> Operator {
    operator_on(cluster().await, settings).await
}

/// An operator on a dev cluster the test configured.
pub async fn operator_on(
    t: TestCluster,
    settings: apikey_operator::controller::Settings,
) -> Operator {
    let client = apikey_operator::run::client::for_dev_cluster(&t.cluster.kubeconfig())
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(t.client.clone());
    for crd in api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
        wait(crds.clone(), &name, conditions::is_crd_established()).await;
    }
    let task = tokio::spawn(apikey_operator::controller::run(client.clone(), settings));
    Operator { t, client, task }
}

pub async fn create<K>(client: &Client, obj: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    <K as kube::Resource>::DynamicType: Default,
{
    create_in(client, "default", obj).await
}

pub async fn create_in<K>(client: &Client, namespace: &str, obj: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    <K as kube::Resource>::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(obj).unwrap(),
        )
        .await
        .unwrap()
}

/// Generate issuers of these names that allow the `widgets:*` scopes.
pub async fn issuers(client: &Client, names: &[&str]) {
    for name in names {
        create::<KeyIssuer>(
            client,
            json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
                "metadata": {"name": name}, "spec": {"generate": {}, "allowedScopes": ["widgets:*"]}}),
        )
        .await;
    }
}

pub async fn issuer(client: &Client) {
    create::<KeyIssuer>(
        client,
        json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
        "metadata": {"name": "gen"}, "spec": {"generate": {"prefix": "sk_test_", "length": 32},
        "allowedScopes": ["widgets:*"]}}),
    )
    .await;
}

pub fn apikey(name: &str, rotation: Value, extra: Value) -> Value {
    let mut spec =
        json!({"issuerRef": {"name": "gen"}, "scopes": ["widgets:read"], "rotation": rotation});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "ApiKey", "metadata": {"name": name}, "spec": spec})
}

/// A wait condition: the ApiKey's condition `type_` has reason `reason`.
pub fn reason_is(type_: &'static str, reason: &'static str) -> impl Fn(Option<&ApiKey>) -> bool {
    move |a| {
        a.and_then(|a| condition(a, type_))
            .is_some_and(|(_, r)| r == reason)
    }
}

/// Sets a request annotation (`apikey.dev/rotate`, …) on an ApiKey, as
/// `kubectl annotate --overwrite` does.
pub async fn request(apikeys: &Api<ApiKey>, name: &str, annotation: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {annotation: value}}});
    apikeys
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .unwrap();
}

/// Waits until the ApiKey's condition `type_` has `reason`, and returns its message.
pub async fn wait_reason(
    apikeys: &Api<ApiKey>,
    name: &str,
    type_: &'static str,
    reason: &'static str,
) -> String {
    let ak = wait(apikeys.clone(), name, reason_is(type_, reason)).await;
    message(&ak, type_)
}

/// The message of the ApiKey's condition `type_` (which must be there).
pub fn message(ak: &ApiKey, type_: &str) -> String {
    let conditions = &ak.status.as_ref().expect("status").conditions;
    let found = conditions.iter().find(|c| c.type_ == type_);
    found.expect("the condition").message.clone()
}

pub fn condition(ak: &ApiKey, type_: &str) -> Option<(String, String)> {
    ak.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

pub fn ready(ak: Option<&ApiKey>) -> bool {
    ak.and_then(|a| condition(a, "Ready"))
        .is_some_and(|(s, _)| s == "True")
        && ak.and_then(|a| a.status.as_ref()).and_then(|s| s.phase) == Some(Phase::Ready)
}

pub fn data(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

pub async fn deployment(client: &Client, name: &str) {
    create::<Deployment>(client, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}}})).await;
}
/// An issuer `gen`, a Deployment `app`, and ApiKey `name` with `rotation` consuming it,
/// once its first key is distributed and the Deployment rolled out with it.
pub async fn apikey_with_consumer(client: &Client, name: &str, rotation: Value) -> ApiKey {
    issuer(client).await;
    deployment(client, "app").await;
    create::<ApiKey>(
        client,
        apikey(
            name,
            rotation,
            json!({"consumers": [{"kind": "Deployment", "name": "app"}]}),
        ),
    )
    .await;
    wait(
        Api::default_namespaced(client.clone()),
        name,
        |a: Option<&ApiKey>| {
            a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                s.phase == Some(Phase::Ready)
                    && !s.consumers.is_empty()
                    && s.consumers.iter().all(|c| c.rolled_out)
            })
        },
    )
    .await
}

/// The reasons and notes of the events about one object.
pub async fn events(c: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(c.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Waits (by watching) for an event with this reason about an object in `default`, and
/// returns its events then.
pub async fn wait_event(c: &Client, name: &str, reason: &str) -> Vec<(String, String)> {
    wait_events(c, name, |events| events.iter().any(|(r, _)| r == reason)).await
}

/// Waits (by watching) until the events about an object in `default` (as `events` lists
/// them) are `done`, and returns them. The operator writes its events beside its
/// reconciles, each object's in order: a test that asserts one is absent waits for one
/// published after it first.
pub async fn wait_events(
    c: &Client,
    name: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    use futures::TryStreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api = Api::<k8s_openapi::api::events::v1::Event>::default_namespaced(c.clone());
    let mut changes = std::pin::pin!(watcher(api, watcher::Config::default()).touched_objects());
    let settled = async {
        loop {
            let now = events(c, "default", name).await;
            if done(&now) {
                return now;
            }
            changes.try_next().await.expect("watch works");
        }
    };
    tokio::time::timeout(PATIENCE, settled)
        .await
        .unwrap_or_else(|_| panic!("the events about {name} never were as expected"))
}

/// Watches the ApiKey `name`; once the watch has begun, returns the task that gives the
/// reasons of every condition it shows until it is deleted.
pub async fn condition_reasons_until_deleted(
    apikeys: Api<ApiKey>,
    name: &str,
) -> tokio::task::JoinHandle<Vec<String>> {
    use futures::TryStreamExt;
    use kube::runtime::watcher::{self, Event};
    let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let (watching, watched) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(apikeys, by_name));
        let mut watching = Some(watching);
        let mut reasons = Vec::new();
        while let Some(event) = stream.try_next().await.expect("watch works") {
            match event {
                Event::Apply(ak) | Event::InitApply(ak) => reasons.extend(
                    ak.status
                        .into_iter()
                        .flat_map(|s| s.conditions)
                        .map(|c| c.reason),
                ),
                Event::InitDone => {
                    watching.take().map(|w| w.send(()));
                }
                Event::Delete(_) => break,
                Event::Init => {}
            }
        }
        reasons
    });
    watched.await.expect("the watch begins");
    task
}

/// The ApiKey's current key, as status shows it (which must be there).
pub fn current_key(ak: &ApiKey) -> &apikey_operator::api::apikey::KeyStatus {
    ak.status
        .as_ref()
        .and_then(|s| s.current_key.as_ref())
        .expect("a current key")
}

pub fn current_id(ak: &ApiKey) -> String {
    current_key(ak).id.clone()
}
