//! GitOps neighbours: the consumer Deployment and the ApiKey live in Git and are applied
//! again and again (Argo CD: client-side `kubectl apply`; Flux: server-side apply with
//! `--force-conflicts`). After a rotation, re-applying them neither removes the operator's
//! pod-template annotation nor starts another rollout, and the ApiKey shows no drift.

use apikey_operator::api::apikey::{ApiKey, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::harness::*;
use crate::support::*;

const MANIFESTS: &str = r#"
apiVersion: apikey.dev/v1alpha1
kind: KeyIssuer
metadata: {name: gen, namespace: default}
spec: {generate: {}, allowedScopes: ["widgets:*"]}
---
apiVersion: apikey.dev/v1alpha1
kind: ApiKey
metadata: {name: billing, namespace: default}
spec:
  issuerRef: {name: gen}
  scopes: [widgets:read]
  rotation: {every: 1h, overlap: 1s}
  consumers: [{kind: Deployment, name: app}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  template:
    metadata:
      labels: {app: app}
      annotations: {team: billing}
    spec:
      containers: [{name: app, image: example/app:1}]
"#;

#[tokio::test]
async fn reapplying_from_git_keeps_the_rollout_annotation_and_shows_no_drift() {
    let op = operator().await;
    let t = &op.t;
    let k = Kubectl::new(&t.cluster.kubeconfig());
    let manifests = k.file("app.yaml", MANIFESTS);
    k.ok(&["apply", "-f", &manifests]).await;
    let apikeys: Api<ApiKey> = t.api("default");
    request(&apikeys, "billing", "apikey.dev/rotate", "1").await;
    let rotated = wait(apikeys.clone(), "billing", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.rotation_count == 2 && s.phase == Some(Phase::Ready))
    })
    .await;
    let deployments: Api<Deployment> = t.api("default");
    let rolled = deployments.get("app").await.unwrap();
    let annotation = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
            .unwrap_or_default()
    };
    let fingerprint = annotation(&rolled)["apikey.dev/billing"].clone();
    assert_eq!(fingerprint, current_key(&rotated).fingerprint);
    // The annotation is the operator's, under its own name, so appliers leave it alone.
    let managers: Vec<(String, String)> = rolled
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            let fields = serde_json::to_string(&m.fields_v1).unwrap();
            (m.manager.clone().unwrap_or_default(), fields)
        })
        .collect();
    assert!(
        managers
            .iter()
            .any(|(m, f)| m == "apikey-operator" && f.contains("f:apikey.dev/billing")),
        "{managers:#?}"
    );

    let rollouts_before = rolled.metadata.generation;
    for apply in [
        vec!["apply", "-f", &manifests],
        vec![
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kustomize-controller",
            "-f",
            &manifests,
        ],
    ] {
        k.ok(&apply).await;
        let after = deployments.get("app").await.unwrap();
        assert_eq!(
            annotation(&after).get("apikey.dev/billing"),
            Some(&fingerprint),
            "{apply:?} kept the operator's annotation"
        );
        assert_eq!(annotation(&after)["team"], "billing");
        assert_eq!(
            after.metadata.generation, rollouts_before,
            "{apply:?} started no rollout"
        );
        // No drift: what Git holds is what the ApiKey is (the operator writes only its
        // status and finalizer).
        let diff = k.run(&["diff", "-f", &manifests]).await;
        assert!(
            diff.ok,
            "{apply:?} then kubectl diff: {}{}",
            diff.stdout, diff.stderr
        );
    }
    let unchanged = apikeys.get("billing").await.unwrap();
    assert_eq!(unchanged.status.as_ref().unwrap().rotation_count, 2);
}
