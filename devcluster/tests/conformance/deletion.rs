//! Deletion: finalizers and deletionTimestamp, ownerReference garbage collection in all
//! three propagation modes, and namespace termination.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::support::*;

fn owned_secret(name: &str, owner: &Widget) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: Some(vec![owner.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn finalizers_hold_an_object_until_removed() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let mut w = widget("f", 1);
    w.metadata.finalizers = Some(vec!["example.apikey.dev/hold".into()]);
    widgets.create(&PostParams::default(), &w).await.unwrap();
    let deleted = widgets.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = deleted
        .left()
        .expect("the object is returned while finalizers remain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(
        pending.metadata.generation,
        Some(2),
        "setting deletionTimestamp bumps generation"
    );
    let still = widgets.get("f").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    let added = widgets
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["example.apikey.dev/hold", "other/x"]}}),
            ),
        )
        .await;
    assert_eq!(
        api_error(added).code,
        422,
        "no new finalizers during deletion"
    );
    widgets
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_deleted(widgets, "f").await;
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let owner = widgets
        .create(&PostParams::default(), &widget("owner", 1))
        .await
        .unwrap();
    let secrets: Api<Secret> = t.api("default");
    secrets
        .create(&PostParams::default(), &owned_secret("dep", &owner))
        .await
        .unwrap();
    widgets
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_deleted(secrets, "dep").await;
}

#[tokio::test]
async fn dependents_of_missing_owners_are_collected() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let owner = widgets
        .create(&PostParams::default(), &widget("gone", 1))
        .await
        .unwrap();
    let mut stale = owner.clone();
    stale.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let secrets: Api<Secret> = t.api("default");
    secrets
        .create(&PostParams::default(), &owned_secret("dangling", &stale))
        .await
        .unwrap();
    wait_deleted(secrets.clone(), "dangling").await;
    secrets
        .create(&PostParams::default(), &owned_secret("kept", &owner))
        .await
        .unwrap();
    // A second, unrelated write proves the GC has looked at "kept" and left it alone.
    secrets
        .create(&PostParams::default(), &owned_secret("dangling2", &stale))
        .await
        .unwrap();
    wait_deleted(secrets.clone(), "dangling2").await;
    assert!(secrets.get("kept").await.is_ok());
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let owner = widgets
        .create(&PostParams::default(), &widget("fg", 1))
        .await
        .unwrap();
    let secrets: Api<Secret> = t.api("default");
    let mut dep = owned_secret("blocker", &owner);
    dep.metadata.finalizers = Some(vec!["example.apikey.dev/hold".into()]);
    // Only dependents with blockOwnerDeletion hold their owner's foreground deletion.
    dep.metadata.owner_references.as_mut().unwrap()[0].block_owner_deletion = Some(true);
    secrets.create(&PostParams::default(), &dep).await.unwrap();
    widgets
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    let dep = wait(secrets.clone(), "blocker", |s: Option<&Secret>| {
        s.is_some_and(|s| s.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(
        dep.finalizers()
            .contains(&"example.apikey.dev/hold".to_string())
    );
    let held = widgets.get("fg").await.unwrap();
    assert!(
        held.finalizers()
            .contains(&"foregroundDeletion".to_string()),
        "owner waits"
    );
    secrets
        .patch(
            "blocker",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_deleted(widgets, "fg").await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_drops_the_reference() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let owner = widgets
        .create(&PostParams::default(), &widget("or", 1))
        .await
        .unwrap();
    let secrets: Api<Secret> = t.api("default");
    secrets
        .create(&PostParams::default(), &owned_secret("orphan", &owner))
        .await
        .unwrap();
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    widgets.delete("or", &dp).await.unwrap();
    wait_deleted(widgets, "or").await;
    let s = wait(secrets, "orphan", |s: Option<&Secret>| {
        s.is_some_and(|s| s.owner_references().is_empty())
    })
    .await;
    assert!(s.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn owners_elsewhere_keep_a_dependent_alive() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let a = widgets
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    let b = widgets
        .create(&PostParams::default(), &widget("b", 1))
        .await
        .unwrap();
    let mut refs: Vec<OwnerReference> = vec![a.controller_owner_ref(&()).unwrap()];
    refs.push(OwnerReference {
        controller: None,
        ..b.controller_owner_ref(&()).unwrap()
    });
    let cms: Api<ConfigMap> = t.api("default");
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("shared".into()),
                owner_references: Some(refs),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    widgets.delete("a", &DeleteParams::default()).await.unwrap();
    let cm = wait(cms, "shared", |c: Option<&ConfigMap>| {
        c.is_some_and(|c| c.owner_references().len() == 1)
    })
    .await;
    assert_eq!(cm.owner_references()[0].name, "b");
}

#[tokio::test]
async fn namespace_deletion_terminates_then_removes_everything() {
    let t = cluster().await;
    let widgets_default = t.install_widgets().await;
    drop(widgets_default);
    let namespaces: Api<Namespace> = Api::all(t.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("doomed".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let widgets: Api<Widget> = t.api("doomed");
    let mut held = widget("held", 1);
    held.metadata.finalizers = Some(vec!["example.apikey.dev/hold".into()]);
    widgets.create(&PostParams::default(), &held).await.unwrap();
    let secrets: Api<Secret> = t.api("doomed");
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("plain".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = namespaces.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let refused = api_error(
        secrets
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some("late".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(refused.code, 403);
    assert!(
        refused.message.contains("because it is being terminated"),
        "{}",
        refused.message
    );
    wait_deleted(secrets, "plain").await;
    let w = wait(widgets.clone(), "held", |w: Option<&Widget>| {
        w.is_some_and(|w| w.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert_eq!(w.name_any(), "held");
    assert!(
        namespaces.get("doomed").await.is_ok(),
        "the namespace waits for finalizers"
    );
    widgets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_deleted(namespaces, "doomed").await;
}

#[tokio::test]
async fn foreground_deletion_dereferences_dependents_kept_by_other_owners() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let a = widgets
        .create(&PostParams::default(), &widget("fa", 1))
        .await
        .unwrap();
    let b = widgets
        .create(&PostParams::default(), &widget("fb", 1))
        .await
        .unwrap();
    let refs = vec![
        a.controller_owner_ref(&()).unwrap(),
        OwnerReference {
            controller: None,
            ..b.controller_owner_ref(&()).unwrap()
        },
    ];
    let cms: Api<ConfigMap> = t.api("default");
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("kept".into()),
                owner_references: Some(refs),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    widgets
        .delete("fa", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_deleted(widgets, "fa").await;
    let kept = cms.get("kept").await.expect("the other owner keeps it");
    assert_eq!(kept.owner_references().len(), 1);
    assert_eq!(kept.owner_references()[0].name, "fb");
}

#[tokio::test]
async fn system_namespaces_cannot_be_deleted_and_terminating_ones_conflict() {
    let t = cluster().await;
    let namespaces: Api<Namespace> = Api::all(t.client.clone());
    for ns in ["default", "kube-system", "kube-public"] {
        let status = api_error(namespaces.delete(ns, &DeleteParams::default()).await);
        assert_eq!(status.code, 403, "{ns}");
    }
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("twice".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = t.api("twice");
    let mut held = Secret {
        metadata: ObjectMeta {
            name: Some("held".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    held.metadata.finalizers = Some(vec!["example.apikey.dev/hold".into()]);
    secrets.create(&PostParams::default(), &held).await.unwrap();
    namespaces
        .delete("twice", &DeleteParams::default())
        .await
        .unwrap();
    let again = api_error(namespaces.delete("twice", &DeleteParams::default()).await);
    assert_eq!(again.code, 409);
    secrets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_deleted(namespaces, "twice").await;
}
