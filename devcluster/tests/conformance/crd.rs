//! CRDs: served resources, conditions, structural schema (pruning, defaults, validation,
//! fieldValidation) and cleanup on deletion.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use serde_json::json;

use crate::support::*;

fn dynamic(t: &TestCluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("example.apikey.dev", "v1", "Widget");
    Api::default_namespaced_with(
        t.client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    )
}

fn raw_widget(spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": "example.apikey.dev/v1", "kind": "Widget",
        "metadata": {"name": "raw"}, "spec": spec}),
    )
    .unwrap()
}

#[tokio::test]
async fn crd_is_established_and_served() {
    let t = cluster().await;
    t.install_widgets().await;
    let crd = Api::<CustomResourceDefinition>::all(t.client.clone())
        .get("widgets.example.apikey.dev")
        .await
        .unwrap();
    let status = crd.status.unwrap();
    let conds = status.conditions.unwrap();
    for c in ["Established", "NamesAccepted"] {
        assert!(
            conds.iter().any(|x| x.type_ == c && x.status == "True"),
            "{c}"
        );
    }
    assert_eq!(status.stored_versions.unwrap(), ["v1"]);
    assert_eq!(status.accepted_names.unwrap().kind, "Widget");
}

#[tokio::test]
async fn unknown_fields_are_pruned_or_rejected_by_field_validation() {
    let t = cluster().await;
    t.install_widgets().await;
    let api = dynamic(&t);
    let strict = PostParams {
        field_manager: None,
        dry_run: false,
    };
    let with_unknown = raw_widget(json!({"size": 2, "bogus": true, "extra": {"kept": [1]}}));
    // No fieldValidation parameter: kube-apiserver's default (Warn) prunes and warns.
    let created = api.create(&strict, &with_unknown).await.unwrap();
    assert!(created.data["spec"].get("bogus").is_none(), "pruned");
    assert_eq!(
        created.data["spec"]["extra"]["kept"],
        json!([1]),
        "preserve-unknown-fields keeps it"
    );
    assert_eq!(created.data["spec"]["color"], "red", "default applied");
    let patched = api
        .patch(
            "raw",
            &PatchParams {
                field_validation: Some(kube::api::ValidationDirective::Strict),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"other": 1}})),
        )
        .await;
    let status = api_error(patched);
    assert_eq!(status.code, 400);
    assert_eq!(
        status.message,
        "strict decoding error: unknown field \"spec.other\""
    );
    let ignored = api
        .patch(
            "raw",
            &PatchParams {
                field_validation: Some(kube::api::ValidationDirective::Ignore),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"other": 1, "size": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(ignored.data["spec"]["size"], 3);
    assert!(ignored.data["spec"].get("other").is_none());
}

#[tokio::test]
async fn schema_violations_are_422_with_field_causes() {
    let t = cluster().await;
    t.install_widgets().await;
    let api = dynamic(&t);
    let bad = raw_widget(
        json!({"size": 0, "color": "pink", "every": "30d", "tags": ["", "b", "c", "d"]}),
    );
    let status = api_error(api.create(&PostParams::default(), &bad).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .starts_with("Widget.example.apikey.dev \"raw\" is invalid: ["),
        "{}",
        status.message
    );
    let causes = status.details.unwrap().causes;
    let mut fields: Vec<(String, String)> = causes
        .iter()
        .map(|c| (c.field.clone(), c.reason.clone()))
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            (
                "spec.color".to_string(),
                "FieldValueNotSupported".to_string()
            ),
            ("spec.every".into(), "FieldValueInvalid".into()),
            ("spec.size".into(), "FieldValueInvalid".into()),
            ("spec.tags".into(), "FieldValueTooMany".into()),
            ("spec.tags[0]".into(), "FieldValueInvalid".into()),
        ]
    );
    let size = causes.iter().find(|c| c.field == "spec.size").unwrap();
    assert_eq!(
        size.message,
        "Invalid value: 0: spec.size in body should be greater than or equal to 1"
    );
    let missing = api_error(
        api.create(&PostParams::default(), &raw_widget(json!({"color": "red"})))
            .await,
    );
    assert_eq!(
        missing.message,
        "Widget.example.apikey.dev \"raw\" is invalid: spec.size: Required value"
    );
    let wrong_type = api_error(
        api.create(&PostParams::default(), &raw_widget(json!({"size": "big"})))
            .await,
    );
    assert!(
        wrong_type
            .message
            .contains("spec.size in body must be of type integer: \"string\""),
        "{}",
        wrong_type.message
    );
}

#[tokio::test]
async fn cel_validation_rules_and_transition_rules() {
    let t = cluster().await;
    t.install_widgets().await;
    let api = dynamic(&t);
    let fast = api_error(
        api.create(
            &PostParams::default(),
            &raw_widget(json!({"size": 1, "every": "500ms"})),
        )
        .await,
    );
    assert_eq!(fast.code, 422);
    assert_eq!(
        fast.message,
        "Widget.example.apikey.dev \"raw\" is invalid: spec.every: Invalid value: \"string\": every must be at least 1s, got 500ms"
    );
    api.create(
        &PostParams::default(),
        &raw_widget(json!({"size": 1, "every": "1m30s"})),
    )
    .await
    .unwrap();
    let recolor = api_error(
        api.patch(
            "raw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "blue"}})),
        )
        .await,
    );
    assert_eq!(recolor.code, 422);
    let cause = &recolor.details.unwrap().causes[0];
    assert_eq!(
        (cause.field.as_str(), cause.reason.as_str()),
        ("spec.color", "FieldValueForbidden")
    );
    assert_eq!(cause.message, "Forbidden: color is immutable");
    api.patch(
        "raw",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .expect("other changes pass the transition rule");
    let mut crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD).unwrap();
    crd.metadata.name = Some("gadgets.example.apikey.dev".into());
    crd.spec.names.plural = "gadgets".into();
    crd.spec.names.kind = "Gadget".into();
    crd.spec.names.short_names = None;
    crd.spec.versions[0]
        .schema
        .as_mut()
        .unwrap()
        .open_api_v3_schema
        .as_mut()
        .unwrap()
        .x_kubernetes_validations = Some(vec![
        serde_json::from_value(json!({"rule": "self.spec.size >", "message": "broken"})).unwrap(),
    ]);
    let broken = api_error(
        Api::<CustomResourceDefinition>::all(t.client.clone())
            .create(&PostParams::default(), &crd)
            .await,
    );
    assert_eq!(broken.code, 422);
    assert!(
        broken.message.contains("compilation failed"),
        "{}",
        broken.message
    );
}

#[tokio::test]
async fn invalid_crds_are_rejected() {
    let t = cluster().await;
    let mut crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD).unwrap();
    crd.metadata.name = Some("wrong.example.apikey.dev".into());
    crd.spec.versions[0].storage = false;
    let status = api_error(
        Api::<CustomResourceDefinition>::all(t.client.clone())
            .create(&PostParams::default(), &crd)
            .await,
    );
    assert_eq!(status.code, 422);
    let fields: Vec<String> = status
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, ["metadata.name", "spec.versions"]);
}

#[tokio::test]
async fn deleting_a_crd_deletes_its_objects_then_stops_serving() {
    let t = cluster().await;
    let widgets = t.install_widgets().await;
    widgets
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
    crds.delete("widgets.example.apikey.dev", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(crds, "widgets.example.apikey.dev").await;
    let gone = api_error(widgets.get("a").await);
    assert_eq!(gone.code, 404);
    assert_eq!(
        gone.message,
        "the server could not find the requested resource"
    );
}
