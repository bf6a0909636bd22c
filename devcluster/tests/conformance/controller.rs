//! A kube-runtime Controller against the dev cluster: reconciling, owned objects, and
//! recovery from cut watches and expired resourceVersions.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

use kube_devcluster::Fault;

use crate::support::*;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

/// Mirrors each Widget's size into status and into an owned ConfigMap.
async fn reconcile(w: Arc<Widget>, client: Arc<kube::Client>) -> Result<Action, ReconcileError> {
    let ns = w.namespace().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), &ns);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(w.name_any()),
            owner_references: Some(vec![w.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        data: Some([("size".to_string(), w.spec.size.to_string())].into()),
        ..Default::default()
    };
    cms.patch(
        &w.name_any(),
        &PatchParams::apply("widget-controller").force(),
        &Patch::Apply(&cm),
    )
    .await?;
    let widgets: Api<Widget> = Api::namespaced((*client).clone(), &ns);
    widgets
        .patch_status(
            &w.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observed": w.spec.size}})),
        )
        .await?;
    Ok(Action::await_change())
}

const AGENT: &str = "widget-controller";

async fn start(t: &TestCluster, config: watcher::Config) -> JoinHandle<()> {
    let client = t.client_as(AGENT).await;
    let widgets: Api<Widget> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let controller = Controller::new(widgets, config.clone())
        .owns(cms, config)
        .run(
            reconcile,
            |_, _, _| Action::requeue(std::time::Duration::from_millis(200)),
            Arc::new(client),
        )
        .for_each(|_| async {});
    tokio::spawn(controller)
}

/// Requests the controller made for widgets with this verb.
fn controller_requests(t: &TestCluster, verb: &str) -> u64 {
    t.cluster
        .request_counts()
        .iter()
        .filter(|(k, _)| k.verb == verb && k.resource == "widgets" && k.user_agent == AGENT)
        .map(|(_, n)| n)
        .sum()
}

async fn observed(widgets: &Api<Widget>, name: &str, size: i64) {
    wait(widgets.clone(), name, move |w: Option<&Widget>| {
        w.and_then(|w| w.status.as_ref()).and_then(|s| s.observed) == Some(size)
    })
    .await;
}

#[tokio::test]
async fn controller_reconciles_and_recovers_from_cut_watches() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let handle = start(&t, watcher::Config::default()).await;
    widgets
        .create(&PostParams::default(), &widget("one", 3))
        .await
        .unwrap();
    observed(&widgets, "one", 3).await;
    let cms: Api<ConfigMap> = t.api("default");
    assert_eq!(cms.get("one").await.unwrap().data.unwrap()["size"], "3");

    let watches_before = controller_requests(&t, "watch");
    t.cluster.cut_watches();
    widgets
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 4}})),
        )
        .await
        .unwrap();
    observed(&widgets, "one", 4).await;
    assert!(
        controller_requests(&t, "watch") > watches_before,
        "the watch was re-established"
    );

    // Deleting the owned ConfigMap triggers its owner's reconcile, which restores it.
    cms.delete("one", &Default::default()).await.unwrap();
    wait(cms, "one", |c: Option<&ConfigMap>| c.is_some()).await;
    handle.abort();
}

#[tokio::test]
async fn controller_recovers_from_an_expired_resource_version() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let handle = start(&t, watcher::Config::default()).await;
    widgets
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    observed(&widgets, "a", 1).await;
    let lists_before = controller_requests(&t, "list");
    // The controller's watch is down while the cluster moves on and compacts its history:
    // resuming from its old resourceVersion gets an in-stream 410, and it must relist.
    t.cluster.inject(Fault::on("watch", "widgets").status(500));
    t.cluster.cut_watches();
    widgets
        .create(&PostParams::default(), &widget("b", 2))
        .await
        .unwrap();
    t.cluster.compact();
    t.cluster.clear_faults();
    observed(&widgets, "b", 2).await;
    assert!(
        controller_requests(&t, "list") > lists_before,
        "the watcher relisted"
    );
    handle.abort();
}

#[tokio::test]
async fn controller_works_with_streaming_lists() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    widgets
        .create(&PostParams::default(), &widget("pre", 5))
        .await
        .unwrap();
    let handle = start(&t, watcher::Config::default().streaming_lists()).await;
    observed(&widgets, "pre", 5).await;
    assert_eq!(
        controller_requests(&t, "list"),
        0,
        "initial state came from the watch"
    );
    t.cluster.cut_watches();
    widgets
        .create(&PostParams::default(), &widget("post", 6))
        .await
        .unwrap();
    observed(&widgets, "post", 6).await;
    handle.abort();
}
