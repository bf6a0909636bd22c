//! The rollout simulator: Deployment, StatefulSet and DaemonSet status after template
//! changes, held (stuck) rollouts, and workloads that never roll by themselves.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_devcluster::WorkloadKind;
use serde_json::json;

use crate::support::*;

fn workload<K: serde::de::DeserializeOwned>(
    kind: &str,
    name: &str,
    spec_extra: serde_json::Value,
) -> K {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(
        json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

fn template_change(fingerprint: &str) -> Patch<serde_json::Value> {
    Patch::Merge(
        json!({"spec": {"template": {"metadata": {"annotations": {"apikey.dev/test": fingerprint}}}}}),
    )
}

fn deployment_done(d: Option<&Deployment>) -> bool {
    let Some(d) = d else { return false };
    let s = d.status.clone().unwrap_or_default();
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    s.observed_generation == d.metadata.generation
        && s.updated_replicas.unwrap_or(0) == replicas
        && s.replicas.unwrap_or(0) == replicas
        && s.available_replicas.unwrap_or(0) == replicas
}

#[tokio::test]
async fn deployment_rollouts_progress_then_complete() {
    let t = cluster().await;
    let deployments: Api<Deployment> = t.api("default");
    deployments
        .create(
            &PostParams::default(),
            &workload("Deployment", "web", json!({"replicas": 2})),
        )
        .await
        .unwrap();
    wait(deployments.clone(), "web", deployment_done).await;

    t.cluster
        .hold_rollout(WorkloadKind::Deployment, "default", "web");
    let patched = deployments
        .patch("web", &PatchParams::default(), &template_change("sha256:1"))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    let progressing = wait(deployments.clone(), "web", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.observed_generation)
            == Some(2)
    })
    .await;
    assert!(
        !deployment_done(Some(&progressing)),
        "a held rollout is observed but not complete: {:?}",
        progressing.status
    );
    t.cluster
        .release_rollout(WorkloadKind::Deployment, "default", "web");
    wait(deployments, "web", deployment_done).await;
}

#[tokio::test]
async fn paused_and_zero_replica_deployments() {
    let t = cluster().await;
    let deployments: Api<Deployment> = t.api("default");
    deployments
        .create(
            &PostParams::default(),
            &workload("Deployment", "zero", json!({"replicas": 0})),
        )
        .await
        .unwrap();
    wait(deployments.clone(), "zero", deployment_done).await;
    deployments
        .create(
            &PostParams::default(),
            &workload("Deployment", "paused", json!({"replicas": 1})),
        )
        .await
        .unwrap();
    wait(deployments.clone(), "paused", deployment_done).await;
    deployments
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    deployments
        .patch(
            "paused",
            &PatchParams::default(),
            &template_change("sha256:2"),
        )
        .await
        .unwrap();
    let d = wait(deployments.clone(), "paused", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.observed_generation)
            == Some(3)
    })
    .await;
    let status = d.status.unwrap();
    assert_eq!(status.updated_replicas, Some(0));
    let progressing = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));
    t.cluster
        .release_rollout(WorkloadKind::Deployment, "default", "paused");
    assert_eq!(
        deployments
            .get("paused")
            .await
            .unwrap()
            .status
            .unwrap()
            .updated_replicas,
        Some(0),
        "paused never rolls"
    );
}

#[tokio::test]
async fn statefulset_revisions_converge() {
    let t = cluster().await;
    let sts: Api<StatefulSet> = t.api("default");
    sts.create(
        &PostParams::default(),
        &workload(
            "StatefulSet",
            "db",
            json!({"replicas": 2, "serviceName": "db"}),
        ),
    )
    .await
    .unwrap();
    let converged = |s: Option<&StatefulSet>| {
        s.and_then(|s| {
            s.status
                .as_ref()
                .map(|st| (s.metadata.generation, st.clone()))
        })
        .is_some_and(|(g, st)| {
            st.observed_generation == g
                && st.current_revision.is_some()
                && st.current_revision == st.update_revision
                && st.updated_replicas == Some(2)
        })
    };
    let first = wait(sts.clone(), "db", converged).await;
    t.cluster
        .hold_rollout(WorkloadKind::StatefulSet, "default", "db");
    sts.patch("db", &PatchParams::default(), &template_change("sha256:3"))
        .await
        .unwrap();
    let rolling = wait(sts.clone(), "db", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|s| s.observed_generation)
            == Some(2)
    })
    .await
    .status
    .unwrap();
    assert_eq!(
        rolling.current_revision,
        first.status.unwrap().current_revision
    );
    assert_ne!(rolling.current_revision, rolling.update_revision);
    t.cluster
        .release_rollout(WorkloadKind::StatefulSet, "default", "db");
    wait(sts, "db", converged).await;
}

#[tokio::test]
async fn on_delete_statefulsets_do_not_roll_by_themselves() {
    let t = cluster().await;
    let sts: Api<StatefulSet> = t.api("default");
    sts.create(
        &PostParams::default(),
        &workload(
            "StatefulSet",
            "od",
            json!({"serviceName": "od", "updateStrategy": {"type": "OnDelete"}}),
        ),
    )
    .await
    .unwrap();
    // The first pods are created even with OnDelete.
    wait(sts.clone(), "od", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
            st.updated_replicas == Some(1) && st.current_revision == st.update_revision
        })
    })
    .await;
    sts.patch("od", &PatchParams::default(), &template_change("sha256:4"))
        .await
        .unwrap();
    let s = wait(sts.clone(), "od", |s: Option<&StatefulSet>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|s| s.observed_generation)
            == Some(2)
    })
    .await;
    t.cluster
        .release_rollout(WorkloadKind::StatefulSet, "default", "od");
    let after = sts.get("od").await.unwrap().status.unwrap();
    assert_ne!(
        after.current_revision, after.update_revision,
        "{:?}",
        s.status
    );
}

#[tokio::test]
async fn daemonset_rollouts_complete_on_every_node() {
    let t = cluster_with(kube_devcluster::Config {
        daemonset_nodes: 3,
        ..test_config()
    })
    .await;
    let ds: Api<DaemonSet> = t.api("default");
    ds.create(
        &PostParams::default(),
        &workload("DaemonSet", "agent", json!({})),
    )
    .await
    .unwrap();
    let done = |d: Option<&DaemonSet>| {
        d.and_then(|d| {
            d.status
                .as_ref()
                .map(|s| (d.metadata.generation, s.clone()))
        })
        .is_some_and(|(g, s)| {
            s.observed_generation == g
                && s.desired_number_scheduled == 3
                && s.updated_number_scheduled == Some(3)
                && s.number_available == Some(3)
        })
    };
    wait(ds.clone(), "agent", done).await;
    ds.patch(
        "agent",
        &PatchParams::default(),
        &template_change("sha256:5"),
    )
    .await
    .unwrap();
    let d = wait(ds, "agent", done).await;
    assert_eq!(d.metadata.generation, Some(2));
}
