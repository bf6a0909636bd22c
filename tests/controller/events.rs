//! Events as users read them: `kubectl get events --sort-by=.lastTimestamp`.

use apikey_operator::api::apikey::ApiKey;
use kube::api::Api;
use serde_json::json;

use super::harness::*;
use crate::support::*;

/// User surface, item 11: events carry lastTimestamp and count, so sorting by
/// lastTimestamp orders them (events.k8s.io/v1 refuses those fields on create).
#[tokio::test]
async fn events_sort_by_last_timestamp() {
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    create::<ApiKey>(c, apikey("sorted", json!({"every": "1h"}), json!({}))).await;
    wait(
        Api::<ApiKey>::default_namespaced(c.clone()),
        "sorted",
        ready,
    )
    .await;
    wait_event(c, "sorted", "Distributed").await;
    let k = Kubectl::new(&op.t.cluster.kubeconfig());
    let out = k
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=sorted",
            "--sort-by=.lastTimestamp",
            "-o",
            r#"jsonpath={range .items[*]}{.reason} {.lastTimestamp} {.count}{"\n"}{end}"#,
        ])
        .await;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
    assert!(
        rows.iter().any(|r| r[0] == "Distributed"),
        "the ApiKey's events are listed: {out}"
    );
    for row in &rows {
        assert_eq!(row.len(), 3, "reason, lastTimestamp and count: {out}");
        assert!(!row[1].is_empty(), "{} has a lastTimestamp: {out}", row[0]);
        assert!(row[2].parse::<u32>().is_ok_and(|n| n >= 1), "{out}");
    }
    let times: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert!(times.is_sorted(), "ordered by lastTimestamp: {out}");
}

/// An identical repeat counts on the first event instead of adding another.
#[tokio::test]
async fn an_identical_repeat_counts_on_the_first_event() {
    use apikey_operator::controller::events::EventRecorder;
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType};

    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    let ak = create::<ApiKey>(c, apikey("again", json!({"every": "1h"}), json!({}))).await;
    let metrics = std::sync::Arc::new(apikey_operator::telemetry::Metrics::new(Default::default()));
    let (recorder, writing) = EventRecorder::new(c.clone(), "apikey.dev/test", None, metrics);
    tokio::spawn(writing);
    let ev = |note: &str| Event {
        type_: EventType::Warning,
        reason: "Tested".into(),
        note: Some(note.into()),
        action: "Test".into(),
        secondary: None,
    };
    for note in ["same", "same", "different"] {
        recorder.publish(ev(note), ak.object_ref(&()));
    }
    recorder.flush().await;
    let events: Vec<CoreEvent> = Api::<CoreEvent>::default_namespaced(c.clone())
        .list(&kube::api::ListParams::default().fields("reason=Tested"))
        .await
        .unwrap()
        .items;
    let count = |note: &str| {
        events
            .iter()
            .filter(|e| e.message.as_deref() == Some(note))
            .map(|e| e.count)
            .collect::<Vec<_>>()
    };
    assert_eq!(count("same"), [Some(2)]);
    assert_eq!(count("different"), [Some(1)]);
}

/// Events are written beside the steps, as client-go's recorder writes them: an events
/// API that hangs (large clusters keep Events in an etcd of their own, which lags under
/// load) holds up no rotation. A reconcile that waited for its Events would wait here
/// for the client's timeout (minutes) at each one.
#[tokio::test]
async fn an_events_api_that_hangs_holds_up_no_key() {
    use kube_devcluster::Fault;
    let op = operator().await;
    let c = &op.t.client;
    issuer(c).await;
    let mut fired = op.t.cluster.faults_fired();
    op.t.cluster
        .inject(Fault::on("create", "events").delay(std::time::Duration::from_secs(3600)));
    create::<ApiKey>(c, apikey("unhurried", json!({"every": "1h"}), json!({}))).await;
    let apikeys = Api::<ApiKey>::default_namespaced(c.clone());
    let first = current_id(&wait(apikeys.clone(), "unhurried", ready).await);
    // The first key's event hangs; the rotation's come after it, on the same lane.
    fired.wait_for(|n| *n >= 1).await.unwrap();
    request(&apikeys, "unhurried", "apikey.dev/rotate", "1").await;
    // Its new key is current and distributed: the rotation is in its overlap.
    wait(apikeys, "unhurried", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .and_then(|s| s.current_key.as_ref())
            .is_some_and(|k| k.rotation == 2 && k.id != first)
    })
    .await;
}
