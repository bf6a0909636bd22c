//! What kube-apiserver serves from its first second: the objects it bootstraps, the
//! built-in kinds' subresources, ClusterIP allocation, and requests without credentials.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ComponentStatus, ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::*;

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture")
}

#[tokio::test]
async fn the_bootstrap_objects_exist_as_on_a_fresh_cluster() {
    let t = cluster().await;
    let kubernetes = t.api::<Service>("default").get("kubernetes").await.unwrap();
    let spec = kubernetes.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    assert_eq!(spec.ports.unwrap()[0].port, 443);
    let admin = Api::<ClusterRole>::all(t.client.clone())
        .get("cluster-admin")
        .await
        .unwrap();
    assert_eq!(admin.rules.unwrap()[0].verbs, ["*"]);
    let apps = Api::<APIService>::all(t.client.clone())
        .get("v1.apps")
        .await
        .unwrap();
    let available = &apps.status.unwrap().conditions.unwrap()[0];
    assert_eq!(
        (available.type_.as_str(), available.status.as_str()),
        ("Available", "True")
    );
    // Component statuses are computed: readable, never writable.
    let statuses: Api<ComponentStatus> = Api::all(t.client.clone());
    assert!(statuses.get("scheduler").await.is_ok());
    let refused = api_error(statuses.delete("scheduler", &DeleteParams::default()).await);
    assert_eq!(refused.code, 405);
}

#[tokio::test]
async fn services_get_a_cluster_ip_for_life() {
    let t = cluster().await;
    let services = t.api::<Service>("default");
    let svc = |ip: Option<&str>| {
        from::<Service>(json!({"metadata": {"name": "web"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
    };
    let created = services
        .create(&PostParams::default(), &svc(None))
        .await
        .unwrap();
    let ip = created.spec.clone().unwrap().cluster_ip.unwrap();
    assert!(ip.starts_with("10.9") && ip != "10.96.0.1", "{ip}");
    let port = &created.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    // An apply that leaves the IP out keeps it; one that changes it is refused.
    let pp = PatchParams::apply("test").force();
    let kept = services
        .patch("web", &pp, &Patch::Apply(svc(None)))
        .await
        .unwrap();
    assert_eq!(kept.spec.unwrap().cluster_ip.as_deref(), Some(ip.as_str()));
    let moved = api_error(
        services
            .patch("web", &pp, &Patch::Apply(svc(Some("10.96.0.99"))))
            .await,
    );
    assert_eq!(moved.code, 422, "{}", moved.message);
    // Asking for an address in use is refused.
    let mut taken = svc(Some("10.96.0.1"));
    taken.metadata.name = Some("other".into());
    let clash = api_error(services.create(&PostParams::default(), &taken).await);
    assert!(
        clash.message.contains("already allocated"),
        "{}",
        clash.message
    );
}

#[tokio::test]
async fn requests_without_credentials_are_system_anonymous() {
    let t = cluster().await;
    let anonymous = t.anonymous_client().await;
    let status = api_error(
        Api::<ConfigMap>::default_namespaced(anonymous.clone())
            .list(&Default::default())
            .await,
    );
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains("system:anonymous"),
        "{}",
        status.message
    );
    // The bootstrap policy lets anyone read the version.
    anonymous.apiserver_version().await.unwrap();
    // The admin's client certificate alone is a credential, as kind's kubeconfig is.
    let certificate_only = t.client_with(|c| c.auth_info.token = None).await;
    Api::<ConfigMap>::default_namespaced(certificate_only)
        .list(&Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn scale_changes_only_the_replicas() {
    let t = cluster().await;
    let deployments = t.api::<Deployment>("default");
    let d = from::<Deployment>(json!({"metadata": {"name": "web"}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}));
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    let patch = json!({"spec": {"replicas": 3}});
    let scaled = deployments
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(3));
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    let negative = json!({"spec": {"replicas": -1}});
    let refused = api_error(
        deployments
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(&negative))
            .await,
    );
    assert_eq!(refused.code, 422);
}

fn pod(name: &str) -> Pod {
    from(json!({"metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]}}))
}

#[tokio::test]
async fn eviction_respects_disruption_budgets_of_running_pods() {
    let t = cluster().await;
    let pods = t.api::<Pod>("default");
    for name in ["pending", "running"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    let running = json!({"status": {"phase": "Running"}});
    pods.patch_status("running", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .unwrap();
    let pdb = from::<PodDisruptionBudget>(json!({"metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}));
    t.api::<PodDisruptionBudget>("default")
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    // A pod that is not running is evicted whatever the budget says.
    pods.evict("pending", &EvictParams::default())
        .await
        .unwrap();
    assert!(pods.get_opt("pending").await.unwrap().is_none());
    // 429 is what a budget answers; kube's client would retry it, so this one does not.
    let no_retry = t.client_with(|c| c.default_retry = false).await;
    let pods_once = Api::<Pod>::namespaced(no_retry, "default");
    let refused = api_error(pods_once.evict("running", &EvictParams::default()).await);
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (429, "TooManyRequests")
    );
    assert!(pods.get_opt("running").await.unwrap().is_some());
}

#[tokio::test]
async fn approval_changes_only_the_conditions() {
    let t = cluster().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(t.client.clone());
    let csr = from::<CertificateSigningRequest>(json!({"metadata": {"name": "me"},
        "spec": {"request": "LS0tLQ==", "signerName": "example.com/me", "usages": ["client auth"]}}));
    csrs.create(&PostParams::default(), &csr).await.unwrap();
    let mut approved = csrs.get("me").await.unwrap();
    approved.spec.signer_name = "example.com/someone-else".into();
    approved.status = Some(from(
        json!({"conditions": [{"type": "Approved", "status": "True",
        "reason": "Test", "message": "approved by the test"}]}),
    ));
    csrs.patch_approval("me", &PatchParams::default(), &Patch::Merge(&approved))
        .await
        .unwrap();
    let stored = csrs.get("me").await.unwrap();
    assert_eq!(stored.spec.signer_name, "example.com/me");
    assert_eq!(
        stored.status.unwrap().conditions.unwrap()[0].type_,
        "Approved"
    );
}

#[tokio::test]
async fn built_in_objects_start_with_kind_as_kube_apiserver_writes_them() {
    let t = cluster().await;
    let request = http::Request::get("/api/v1/namespaces/default/services/kubernetes")
        .body(Vec::new())
        .unwrap();
    let body = t.client.request_text(request).await.unwrap();
    assert!(
        body.starts_with(r#"{"kind":"Service","apiVersion":"v1","#),
        "{body}"
    );
}
