//! Test hooks: injected failures and delays, request counting.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube_devcluster::Fault;

use crate::support::*;

fn secret(name: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn injected_status_codes_apply_to_matching_requests_only() {
    let t = cluster().await;
    let secrets: Api<Secret> = t.api("default");
    t.cluster
        .inject(Fault::on("create", "secrets").status(500).times(2));
    for _ in 0..2 {
        let e = api_error(secrets.create(&PostParams::default(), &secret("s")).await);
        assert_eq!(e.code, 500);
    }
    secrets
        .create(&PostParams::default(), &secret("s"))
        .await
        .expect("the fault was used up");
    secrets.get("s").await.expect("other verbs are untouched");
    t.cluster.inject(Fault::on("get", "*").status(409));
    assert_eq!(api_error(secrets.get("s").await).code, 409);
    t.cluster.clear_faults();
    secrets.get("s").await.unwrap();
}

/// A write whose answer is lost after it took effect (a timeout past etcd): the error is
/// answered, the object is there, and creating it again meets AlreadyExists.
#[tokio::test]
async fn an_injected_status_after_applying_leaves_the_write_done() {
    let t = cluster().await;
    let secrets: Api<Secret> = t.api("default");
    t.cluster.inject(
        Fault::on("create", "secrets")
            .status(500)
            .applied()
            .times(1),
    );
    let e = api_error(secrets.create(&PostParams::default(), &secret("s")).await);
    assert_eq!(e.code, 500);
    secrets.get("s").await.expect("created all the same");
    let again = api_error(secrets.create(&PostParams::default(), &secret("s")).await);
    assert_eq!(again.reason, "AlreadyExists");
}

#[tokio::test]
async fn injected_delays_slow_requests_down() {
    let t = cluster().await;
    let secrets: Api<Secret> = t.api("default");
    t.cluster.inject(
        Fault::on("list", "secrets")
            .delay(Duration::from_millis(300))
            .times(1),
    );
    let start = Instant::now();
    secrets.list(&Default::default()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn requests_are_counted_by_verb_resource_and_user_agent() {
    let t = cluster().await;
    let secrets: Api<Secret> = t.api("default");
    secrets
        .create(&PostParams::default(), &secret("a"))
        .await
        .unwrap();
    secrets.get("a").await.unwrap();
    secrets.get("a").await.unwrap();
    secrets.list(&Default::default()).await.unwrap();
    assert_eq!(t.cluster.requests("create", "secrets"), 1);
    assert_eq!(t.cluster.requests("get", "secrets"), 2);
    assert_eq!(t.cluster.requests("list", "secrets"), 1);
    let req = http::Request::get("/api/v1/namespaces/default/secrets/a")
        .header("User-Agent", "devcluster/test")
        .body(vec![])
        .unwrap();
    t.client.request_text(req).await.unwrap();
    let by_agent = t.cluster.request_counts();
    let agent_gets: Vec<(&str, u64)> = by_agent
        .iter()
        .filter(|(k, _)| k.verb == "get" && k.resource == "secrets")
        .map(|(k, n)| (k.user_agent.as_str(), *n))
        .collect();
    assert_eq!(agent_gets, [("devcluster/test", 1), ("unknown", 2)]);
    // The same counts as a separate process reads them: kube-apiserver's metric.
    let metrics = t
        .client
        .request_text(http::Request::get("/metrics").body(vec![]).unwrap())
        .await
        .unwrap();
    for line in [
        r#"apiserver_request_total{resource="secrets",verb="POST"} 1"#,
        r#"apiserver_request_total{resource="secrets",verb="GET"} 3"#,
        r#"apiserver_request_total{resource="secrets",verb="LIST"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}
