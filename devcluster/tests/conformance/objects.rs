//! Object semantics: metadata, generation, status subresource, conflicts, patches,
//! server-side apply, events' two views, discovery and authentication.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn metadata_is_filled_in_and_resource_versions_are_global() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    let a = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    generate_name: Some("cfg-".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        a.name_any().starts_with("cfg-") && a.name_any().len() == 9,
        "{}",
        a.name_any()
    );
    assert!(a.uid().is_some() && a.creation_timestamp().is_some());
    assert!(
        a.metadata.generation.is_none(),
        "ConfigMaps have no generation"
    );
    let secrets: Api<Secret> = t.api("default");
    let s = secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s".into()),
                    ..Default::default()
                },
                string_data: Some([("k".to_string(), "v".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let rv = |o: &dyn Fn() -> Option<String>| o().unwrap().parse::<u64>().unwrap();
    assert!(
        rv(&|| s.resource_version()) > rv(&|| a.resource_version()),
        "one counter across kinds"
    );
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(s.data.unwrap()["k"].0, b"v", "stringData folds into data");
    assert!(s.string_data.is_none());
    let unnamed = cms
        .create(&PostParams::default(), &ConfigMap::default())
        .await;
    let status = api_error(unnamed);
    assert_eq!(status.code, 422);
    assert!(status.message.contains("name or generateName is required"));
}

#[tokio::test]
async fn generation_tracks_spec_changes_only() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let w = widgets
        .create(&PostParams::default(), &widget("g", 1))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let w = widgets
        .patch(
            "g",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        w.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );
    let w = widgets
        .patch_status("g", &pp, &Patch::Merge(json!({"status": {"observed": 1}})))
        .await
        .unwrap();
    assert_eq!(
        w.metadata.generation,
        Some(1),
        "status changes do not bump generation"
    );
    let w = widgets
        .patch("g", &pp, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    let unchanged = widgets
        .patch("g", &pp, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .unwrap();
    assert_eq!(
        unchanged.resource_version(),
        w.resource_version(),
        "no-op writes are not persisted"
    );
}

#[tokio::test]
async fn status_subresource_splits_spec_and_status_writes() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let mut w = widget("s", 1);
    w.status = Some(WidgetStatus { observed: Some(9) });
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.status, None, "status is dropped on create");
    let mut edit = created.clone();
    edit.spec.size = 5;
    edit.status = Some(WidgetStatus { observed: Some(7) });
    let replaced = widgets
        .replace("s", &PostParams::default(), &edit)
        .await
        .unwrap();
    assert_eq!(replaced.spec.size, 5);
    assert_eq!(replaced.status, None, "the main endpoint ignores status");
    let mut edit = replaced.clone();
    edit.spec.size = 50;
    edit.status = Some(WidgetStatus { observed: Some(7) });
    let status_written = widgets
        .replace_status("s", &PostParams::default(), &edit)
        .await
        .unwrap();
    assert_eq!(
        status_written.spec.size, 5,
        "/status ignores everything but status"
    );
    assert_eq!(
        status_written.status,
        Some(WidgetStatus { observed: Some(7) })
    );
}

#[tokio::test]
async fn conflicts_and_errors_are_metav1_status() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let w = widgets
        .create(&PostParams::default(), &widget("c", 1))
        .await
        .unwrap();
    let dup = api_error(
        widgets
            .create(&PostParams::default(), &widget("c", 1))
            .await,
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(
        dup.message,
        "widgets.example.apikey.dev \"c\" already exists"
    );
    widgets
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    let mut stale = w.clone();
    stale.spec.size = 3;
    let conflict = api_error(widgets.replace("c", &PostParams::default(), &stale).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(conflict.message.contains("the object has been modified"));
    let missing = api_error(widgets.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        missing.message,
        "widgets.example.apikey.dev \"nope\" not found"
    );
    let strategic = api_error(
        widgets
            .patch(
                "c",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 4}})),
            )
            .await,
    );
    assert_eq!(strategic.code, 415);
    let other_ns = api_error(
        t.api::<Widget>("missing-ns")
            .create(&PostParams::default(), &widget("x", 1))
            .await,
    );
    assert_eq!(
        (other_ns.code, other_ns.message.as_str()),
        (404, "namespaces \"missing-ns\" not found")
    );
}

#[tokio::test]
async fn merge_json_and_apply_patches() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    widgets
        .create(&PostParams::default(), &widget("p", 1))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let w = widgets
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"tags": ["a", "b"]}})),
        )
        .await
        .unwrap();
    assert_eq!(w.spec.tags, ["a", "b"]);
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/spec/tags/-", "value": "c"},
        {"op": "replace", "path": "/spec/size", "value": 3}
    ]))
    .unwrap();
    let w = widgets
        .patch("p", &pp, &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!((w.spec.size, w.spec.tags.len()), (3, 3));
    let failed_test: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/size", "value": 99}])).unwrap();
    assert_eq!(
        api_error(
            widgets
                .patch("p", &pp, &Patch::Json::<()>(failed_test))
                .await
        )
        .code,
        422
    );

    // Server-side apply creates, then merges, and records the manager.
    let apply = PatchParams::apply("tester");
    let applied = json!({"apiVersion": "example.apikey.dev/v1", "kind": "Widget",
        "metadata": {"name": "sa", "labels": {"team": "a"}}, "spec": {"size": 4}});
    let created = widgets
        .patch("sa", &apply, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.spec.size, 4);
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("tester"), Some("Apply"))
    );
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    assert!(fields["f:spec"].get("f:size").is_some(), "{fields}");
    let again = json!({"apiVersion": "example.apikey.dev/v1", "kind": "Widget",
        "metadata": {"name": "sa", "labels": {"tier": "b"}}, "spec": {"size": 5}});
    let merged = widgets
        .patch("sa", &apply, &Patch::Apply(&again))
        .await
        .unwrap();
    assert_eq!(merged.spec.size, 5);
    assert_eq!(
        merged.labels().get("team"),
        None,
        "a field the manager stopped applying is removed"
    );
    assert_eq!(merged.labels().get("tier").map(String::as_str), Some("b"));

    // Another manager: equal values are shared, different ones conflict unless forced.
    let other = PatchParams::apply("other");
    let shared = json!({"apiVersion": "example.apikey.dev/v1", "kind": "Widget",
        "metadata": {"name": "sa"}, "spec": {"size": 5, "color": "red"}});
    widgets
        .patch("sa", &other, &Patch::Apply(&shared))
        .await
        .expect("same value: no conflict");
    let contested = json!({"apiVersion": "example.apikey.dev/v1", "kind": "Widget",
        "metadata": {"name": "sa"}, "spec": {"size": 6}});
    let conflict = api_error(widgets.patch("sa", &other, &Patch::Apply(&contested)).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Apply failed with 1 conflict: conflict with \"tester\" using example.apikey.dev/v1: .spec.size"
    );
    let cause = &conflict.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".spec.size")
    );
    let forced = widgets
        .patch("sa", &other.clone().force(), &Patch::Apply(&contested))
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 6);
    let tester_fields = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("tester"))
        .map(|e| serde_json::to_value(e.fields_v1).unwrap())
        .unwrap();
    assert!(
        tester_fields["f:spec"].get("f:size").is_none(),
        "force took .spec.size: {tester_fields}"
    );
    let no_manager = api_error(
        widgets
            .patch("sa", &PatchParams::default(), &Patch::Apply(&again))
            .await,
    );
    assert_eq!(no_manager.code, 400);
    assert!(no_manager.message.contains("require fieldManager"));
    let cm_updates = t.api::<ConfigMap>("default");
    let cm = cm_updates
        .create(
            &PostParams {
                field_manager: Some("creator".into()),
                ..Default::default()
            },
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("m".into()),
                    ..Default::default()
                },
                data: Some([("a".to_string(), "1".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let entry = &cm.metadata.managed_fields.unwrap()[0];
    assert_eq!(
        (entry.manager.as_deref(), entry.operation.as_deref()),
        (Some("creator"), Some("Update"))
    );
}

#[tokio::test]
async fn events_are_one_store_with_two_views() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let w = widgets
        .create(&PostParams::default(), &widget("e", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(
        t.client.clone(),
        Reporter {
            controller: "apikey.dev/test".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Minted".into(),
        note: Some("minted key wj_123".into()),
        action: "Mint".into(),
        secondary: None,
    };
    recorder.publish(&ev, &w.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &w.object_ref(&())).await.unwrap();
    let v1: Vec<EventV1> = t
        .api::<EventV1>("default")
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(v1.len(), 1, "the repeat is a series on the same event");
    assert_eq!(v1[0].series.as_ref().map(|s| s.count), Some(2));
    let selector = format!(
        "involvedObject.kind=Widget,involvedObject.name=e,involvedObject.namespace=default,involvedObject.uid={}",
        w.uid().unwrap()
    );
    let core: Vec<k8s_openapi::api::core::v1::Event> = t
        .api::<k8s_openapi::api::core::v1::Event>("default")
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items;
    assert_eq!(core.len(), 1);
    assert_eq!(core[0].message.as_deref(), Some("minted key wj_123"));
    assert_eq!(core[0].reason.as_deref(), Some("Minted"));
    assert_eq!(
        core[0].reporting_component.as_deref(),
        Some("apikey.dev/test")
    );
    let unsupported = api_error(
        t.api::<Secret>("default")
            .list(&kube::api::ListParams::default().fields("involvedObject.name=e"))
            .await,
    );
    assert_eq!(unsupported.code, 400);
    assert_eq!(
        unsupported.message,
        "field label not supported: involvedObject.name"
    );
}

/// events.k8s.io/v1 creates are strict, as kube-apiserver's: the deprecated core/v1
/// fields must be unset and eventTime given; core/v1 takes them. Either way an event
/// lives in its object's namespace.
#[tokio::test]
async fn events_are_validated_as_kube_apiserver_does() {
    let t = cluster().await;
    let ev = |extra: serde_json::Value| {
        let mut ev = serde_json::json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1"},
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Tested", "action": "Test", "type": "Normal",
            "reportingController": "apikey.dev/test", "reportingInstance": "t",
            "eventTime": "2026-01-01T00:00:00.000000Z",
        });
        ev.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<EventV1>(ev).unwrap()
    };
    let events = t.api::<EventV1>("default");
    let refused = api_error(
        events
            .create(
                &PostParams::default(),
                &ev(serde_json::json!({
                    "deprecatedLastTimestamp": "2026-01-01T00:00:00Z",
                    "deprecatedCount": 2,
                })),
            )
            .await,
    );
    assert_eq!(refused.code, 422);
    assert!(
        refused
            .message
            .contains("deprecatedLastTimestamp: Invalid value: \"\": needs to be unset"),
        "{}",
        refused.message
    );
    assert!(refused.message.contains("deprecatedCount"));
    let refused = api_error(
        events
            .create(
                &PostParams::default(),
                &ev(serde_json::json!({"eventTime": null})),
            )
            .await,
    );
    assert!(refused.message.contains("eventTime: Required value"));
    events
        .create(&PostParams::default(), &ev(serde_json::json!({})))
        .await
        .unwrap();
    let core: k8s_openapi::api::core::v1::Event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "e2"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Tested", "message": "m", "type": "Normal", "count": 3,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
    }))
    .unwrap();
    t.api::<k8s_openapi::api::core::v1::Event>("default")
        .create(&PostParams::default(), &core)
        .await
        .unwrap();
    let seen = events.get("e2").await.unwrap();
    assert_eq!(seen.deprecated_count, Some(3));
    assert!(seen.deprecated_last_timestamp.is_some());
    // An event lives in the namespace of the object it is about.
    let mut elsewhere = core.clone();
    elsewhere.metadata.name = Some("e3".into());
    elsewhere.involved_object.namespace = Some("other".into());
    let refused = api_error(
        t.api::<k8s_openapi::api::core::v1::Event>("default")
            .create(&PostParams::default(), &elsewhere)
            .await,
    );
    assert_eq!(refused.code, 422);
    assert!(
        refused.message.contains(
            "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
        ),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn discovery_serves_builtins_and_crds() {
    let t = cluster().await;
    t.install_widgets().await;
    let discovery = kube::discovery::Discovery::new(t.client.clone())
        .run()
        .await
        .unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "apps",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
        "rbac.authorization.k8s.io",
        "example.apikey.dev",
    ] {
        assert!(
            groups.iter().any(|x| x == g),
            "group {g:?} missing from {groups:?}"
        );
    }
    let req = http::Request::get("/apis/example.apikey.dev/v1")
        .body(vec![])
        .unwrap();
    let list: APIResourceList = t.client.request(req).await.unwrap();
    let widgets = list.resources.iter().find(|r| r.name == "widgets").unwrap();
    assert_eq!(
        widgets.short_names.as_deref(),
        Some(&["wdg".to_string()][..])
    );
    assert_eq!(
        widgets.categories.as_deref(),
        Some(&["gadgets".to_string()][..])
    );
    assert!(list.resources.iter().any(|r| r.name == "widgets/status"));
    let core = http::Request::get("/api/v1").body(vec![]).unwrap();
    let core: APIResourceList = t.client.request(core).await.unwrap();
    for r in [
        "namespaces",
        "secrets",
        "configmaps",
        "serviceaccounts",
        "services",
        "events",
    ] {
        assert!(core.resources.iter().any(|x| x.name == r), "{r}");
    }
    let version = t.client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let t = cluster_with(kube_devcluster::Config {
        token: Some("s3cret-token".into()),
        ..test_config()
    })
    .await;
    let ok: Api<ConfigMap> = t.api("default");
    ok.list(&Default::default())
        .await
        .expect("the kubeconfig carries the token");
    // Without a credential the request is system:anonymous's (see bootstrap.rs).
    let anonymous = t.anonymous_client().await;
    let status = api_error(
        Api::<ConfigMap>::default_namespaced(anonymous)
            .list(&Default::default())
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    let wrong = t
        .client_with(|c| c.auth_info.token = Some("nope".to_string().into()))
        .await;
    assert_eq!(
        api_error(
            Api::<ConfigMap>::default_namespaced(wrong)
                .list(&Default::default())
                .await
        )
        .code,
        401
    );
}

#[tokio::test]
async fn kube_runtime_finalizer_patch_works_on_objects_without_finalizers() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    widgets
        .create(&PostParams::default(), &widget("fin", 1))
        .await
        .unwrap();
    // The exact patch kube::runtime::finalizer sends to add the first finalizer.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["apikey.dev/cleanup"]}
    ]))
    .unwrap();
    let w = widgets
        .patch("fin", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(w.finalizers(), ["apikey.dev/cleanup"]);
}

#[tokio::test]
async fn secret_string_data_is_folded_into_data_on_every_write() {
    let t = cluster().await;
    let secrets: Api<Secret> = t.api("default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
            "metadata": {"name": "k"}, "stringData": {"api-key": "old", "id": "1"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let patched = secrets
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"api-key": "new"}})),
        )
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!(
        (data["api-key"].0.as_slice(), data["id"].0.as_slice()),
        (&b"new"[..], &b"1"[..])
    );
    assert!(patched.string_data.is_none());
    let applied = secrets
        .patch(
            "k",
            &PatchParams::apply("rotator"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "k"}, "stringData": {"api-key": "newer"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["api-key"].0, b"newer");
}

#[tokio::test]
async fn immutable_secrets_keep_their_data() {
    let t = cluster().await;
    let secrets: Api<Secret> = t.api("default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
            "metadata": {"name": "frozen"}, "immutable": true, "stringData": {"a": "1"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let changed = api_error(
        secrets
            .patch(
                "frozen",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"a": "2"}})),
            )
            .await,
    );
    assert_eq!(changed.code, 422);
    assert!(
        changed
            .message
            .contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{}",
        changed.message
    );
    secrets
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"ok": "yes"}}})),
        )
        .await
        .expect("metadata stays mutable");
}

#[tokio::test]
async fn custom_resource_updates_need_a_resource_version_and_the_right_uid() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let w = widgets
        .create(&PostParams::default(), &widget("u", 1))
        .await
        .unwrap();
    let mut unconditional = widget("u", 2);
    unconditional.metadata.resource_version = None;
    let status = api_error(
        widgets
            .replace("u", &PostParams::default(), &unconditional)
            .await,
    );
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "Widget.example.apikey.dev \"u\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    );
    let mut wrong_uid = w.clone();
    wrong_uid.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let status = api_error(
        widgets
            .replace("u", &PostParams::default(), &wrong_uid)
            .await,
    );
    assert_eq!(status.code, 409);
    assert!(
        status
            .message
            .contains("Precondition failed: UID in precondition"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn metadata_is_typed_and_checked_for_every_kind() {
    let t = cluster().await;
    t.install_widgets().await;
    let cms: Api<ConfigMap> = t.api("default");
    let typo = api_error(
        cms.patch(
            "m",
            &PatchParams::apply("t").validation_strict(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "m", "lables": {"a": "b"}}})),
        )
        .await,
    );
    assert_eq!(typo.code, 400);
    assert_eq!(
        typo.message,
        "strict decoding error: unknown field \"metadata.lables\""
    );
    // kube cannot even express this object; send it raw.
    let bad_labels = json!({"apiVersion": "example.apikey.dev/v1",
        "kind": "Widget", "metadata": {"name": "b", "labels": {"v": 1}}, "spec": {"size": 1}});
    let req = http::Request::post("/apis/example.apikey.dev/v1/namespaces/default/widgets")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&bad_labels).unwrap())
        .unwrap();
    let status = api_error(t.client.request_text(req).await);
    assert_eq!(status.code, 400);
    assert!(
        status
            .message
            .starts_with("Widget in version \"v1\" cannot be handled as a Widget: metadata:"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn apply_to_the_status_of_a_missing_object_is_not_found() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    let status = api_error(
        widgets
            .patch_status(
                "ghost",
                &PatchParams::apply("t"),
                &Patch::Apply(json!({"apiVersion": "example.apikey.dev/v1",
                "kind": "Widget", "status": {"observed": 1}})),
            )
            .await,
    );
    assert_eq!(status.code, 404);
}

#[tokio::test]
async fn apply_records_ownership_even_when_values_do_not_change() {
    let t = cluster().await;
    let k = crate::support::Kubectl::new(&t.cluster.kubeconfig());
    k.ok(&["create", "configmap", "co", "--from-literal=mode=fast"])
        .await;
    let cms: Api<ConfigMap> = t.api("default");
    let applied = cms
        .patch(
            "co",
            &PatchParams::apply("ssa"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "co"}, "data": {"mode": "fast"}})),
        )
        .await
        .unwrap();
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert!(
        managers.contains(&"ssa".to_string()) && managers.len() == 2,
        "co-owned: {managers:?}"
    );
}

#[tokio::test]
async fn status_apply_keeps_and_drops_its_own_fields() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    widgets
        .create(&PostParams::default(), &widget("st", 1))
        .await
        .unwrap();
    let apply = PatchParams::apply("status-writer");
    let with =
        json!({"apiVersion": "example.apikey.dev/v1", "kind": "Widget", "status": {"observed": 3}});
    let w = widgets
        .patch_status("st", &apply, &Patch::Apply(&with))
        .await
        .unwrap();
    assert_eq!(w.status.unwrap().observed, Some(3));
    let without = json!({"apiVersion": "example.apikey.dev/v1", "kind": "Widget", "status": {}});
    let w = widgets
        .patch_status("st", &apply, &Patch::Apply(&without))
        .await
        .unwrap();
    assert_eq!(
        w.status.and_then(|s| s.observed),
        None,
        "a status field the manager stopped applying is removed"
    );
}

#[tokio::test]
async fn finalizers_of_custom_resources_merge_across_appliers() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    widgets
        .create(&PostParams::default(), &widget("fz", 1))
        .await
        .unwrap();
    for (manager, finalizer) in [("a", "example.com/a"), ("b", "example.com/b")] {
        widgets
            .patch(
                "fz",
                &PatchParams::apply(manager),
                &Patch::Apply(json!({"apiVersion": "example.apikey.dev/v1",
                "kind": "Widget", "metadata": {"name": "fz", "finalizers": [finalizer]}})),
            )
            .await
            .unwrap_or_else(|e| panic!("{manager}: {e}"));
    }
    let w = widgets.get("fz").await.unwrap();
    assert_eq!(w.finalizers(), ["example.com/a", "example.com/b"]);
}
