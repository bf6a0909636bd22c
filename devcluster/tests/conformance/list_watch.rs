//! Lists and watches: selectors, pagination, resourceVersion semantics, bookmarks, expiry.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{
    Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, VersionMatch, WatchEvent,
    WatchParams,
};
use serde_json::json;

use crate::support::*;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn names(api: &Api<ConfigMap>, lp: &ListParams) -> Vec<String> {
    api.list(lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect()
}

#[tokio::test]
async fn label_and_field_selectors() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    for (n, labels) in [
        ("a", vec![("app", "shop"), ("tier", "web")]),
        ("b", vec![("app", "bank")]),
        ("c", vec![]),
    ] {
        cms.create(&PostParams::default(), &cm(n, &labels))
            .await
            .unwrap();
    }
    let cases: &[(&str, &[&str])] = &[
        ("app=shop", &["a"]),
        ("app==bank", &["b"]),
        ("app!=shop", &["b", "c"]),
        ("app in (shop,bank)", &["a", "b"]),
        ("app notin (shop)", &["b", "c"]),
        ("tier", &["a"]),
        ("!app", &["c"]),
        ("app,tier=web", &["a"]),
    ];
    for (sel, want) in cases {
        assert_eq!(
            names(&cms, &ListParams::default().labels(sel)).await,
            *want,
            "{sel}"
        );
    }
    assert_eq!(
        names(&cms, &ListParams::default().fields("metadata.name=b")).await,
        ["b"]
    );
    assert_eq!(
        names(&cms, &ListParams::default().fields("metadata.name!=b")).await,
        ["a", "c"]
    );
    let all: Api<ConfigMap> = Api::all(t.client.clone());
    assert_eq!(
        names(
            &all,
            &ListParams::default().fields("metadata.namespace=default")
        )
        .await,
        ["a", "b", "c"]
    );
    assert!(
        names(
            &all,
            &ListParams::default().fields("metadata.namespace=kube-system")
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn pagination_is_consistent_and_expires() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("p{i}"), &[]))
            .await
            .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    let token = first.metadata.continue_.clone().unwrap();
    // Changes after the first page do not show up in later pages: one consistent view.
    cms.create(&PostParams::default(), &cm("p99", &[]))
        .await
        .unwrap();
    let mut seen: Vec<String> = first.items.iter().map(|c| c.name_any()).collect();
    let mut next = Some(token);
    while let Some(c) = next {
        let page = cms
            .list(&ListParams::default().limit(3).continue_token(&c))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        seen.extend(page.items.iter().map(|c| c.name_any()));
        next = page.metadata.continue_.filter(|c| !c.is_empty());
    }
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let stale = cms
        .list(&ListParams::default().limit(3))
        .await
        .unwrap()
        .metadata
        .continue_
        .unwrap();
    t.cluster.compact();
    let expired = api_error(
        cms.list(&ListParams::default().limit(3).continue_token(&stale))
            .await,
    );
    assert_eq!((expired.code, expired.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn list_at_an_exact_resource_version() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    cms.create(&PostParams::default(), &cm("x", &[("v", "1")]))
        .await
        .unwrap();
    let rv = list_rv(&cms).await;
    cms.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
    )
    .await
    .unwrap();
    cms.create(&PostParams::default(), &cm("y", &[]))
        .await
        .unwrap();
    let past = cms
        .list(&ListParams::default().at(&rv).matching(VersionMatch::Exact))
        .await
        .unwrap();
    assert_eq!(past.items.len(), 1);
    assert_eq!(past.items[0].labels()["v"], "1");
    assert_eq!(past.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let now = cms
        .list(
            &ListParams::default()
                .at(&rv)
                .matching(VersionMatch::NotOlderThan),
        )
        .await
        .unwrap();
    assert_eq!(now.items.len(), 2);
    // kube retries 504s by default; this assertion wants to see the first one.
    let ahead = (t.cluster.current_resource_version() + 1000).to_string();
    let no_retry: Api<ConfigMap> =
        Api::namespaced(t.client_with(|c| c.default_retry = false).await, "default");
    let future = api_error(
        no_retry
            .list(
                &ListParams::default()
                    .at(&ahead)
                    .matching(VersionMatch::NotOlderThan),
            )
            .await,
    );
    assert_eq!((future.code, future.reason.as_str()), (504, "Timeout"));
    assert!(
        future
            .message
            .starts_with(&format!("Too large resource version: {ahead}")),
        "{}",
        future.message
    );
}

#[tokio::test]
async fn watch_from_a_resource_version_replays_and_follows() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    cms.create(&PostParams::default(), &cm("before", &[]))
        .await
        .unwrap();
    let rv = list_rv(&cms).await;
    cms.create(&PostParams::default(), &cm("w", &[]))
        .await
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &Default::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match stream.try_next().await.unwrap().expect("stream open") {
            WatchEvent::Added(c) => kinds.push(("ADDED", c.name_any())),
            WatchEvent::Modified(c) => kinds.push(("MODIFIED", c.name_any())),
            WatchEvent::Deleted(c) => kinds.push(("DELETED", c.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    let w = "w".to_string();
    assert_eq!(
        kinds,
        [
            ("ADDED", w.clone()),
            ("MODIFIED", w.clone()),
            ("DELETED", w)
        ],
        "'before' is not replayed"
    );
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    cms.create(&PostParams::default(), &cm("m", &[]))
        .await
        .unwrap();
    let rv = list_rv(&cms).await;
    let mut stream = cms
        .watch(&WatchParams::default().labels("app=shop").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let label = |v: serde_json::Value| Patch::Merge(json!({"metadata": {"labels": {"app": v}}}));
    cms.patch("m", &PatchParams::default(), &label(json!("shop")))
        .await
        .unwrap();
    cms.patch("m", &PatchParams::default(), &label(json!("bank")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => seen.push("ADDED"),
            WatchEvent::Modified(_) => seen.push("MODIFIED"),
            WatchEvent::Deleted(last) => {
                assert_eq!(
                    last.labels()["app"],
                    "shop",
                    "DELETED carries the last matching state"
                );
                seen.push("DELETED");
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn bookmarks_carry_the_latest_resource_version() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    let rv = list_rv(&cms).await;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    // A change elsewhere moves the resourceVersion without producing an event here.
    Api::<ConfigMap>::namespaced(t.client.clone(), "kube-system")
        .create(&PostParams::default(), &cm("elsewhere", &[]))
        .await
        .unwrap();
    let current = t.cluster.current_resource_version();
    loop {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Bookmark(b) => {
                if b.metadata.resource_version.parse::<u64>().unwrap() >= current {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn expired_resource_versions_get_an_in_stream_410() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    let rv = list_rv(&cms).await;
    cms.create(&PostParams::default(), &cm("after", &[]))
        .await
        .unwrap();
    t.cluster.compact();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("HTTP 200")
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message.starts_with("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    assert!(
        stream.try_next().await.unwrap().is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn watches_end_at_their_timeout() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    let rv = list_rv(&cms).await;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let drain = async {
        while let Some(event) = stream.try_next().await.unwrap() {
            assert!(matches!(event, WatchEvent::Bookmark(_)), "{event:?}");
        }
    };
    tokio::time::timeout(PATIENCE, drain)
        .await
        .expect("the watch ends by itself");
}

#[tokio::test]
async fn metadata_only_lists_and_watches() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    let mut big = cm("meta", &[("k", "v")]);
    big.data = Some([("payload".to_string(), "x".repeat(1000))].into());
    cms.create(&PostParams::default(), &big).await.unwrap();
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].labels()["k"], "v");
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch_metadata(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "meta",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"k": "w"}}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(m) => assert_eq!(m.labels()["k"], "w"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn continue_tokens_belong_to_their_list() {
    let t = cluster().await;
    let cms: Api<ConfigMap> = t.api("default");
    for i in 0..3 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), &[]))
            .await
            .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(1)).await.unwrap();
    let token = first.metadata.continue_.unwrap();
    // kube never sends both; kubectl users can.
    let uri = format!(
        "/api/v1/namespaces/default/configmaps?limit=1&continue={token}&resourceVersion={}",
        first.metadata.resource_version.as_deref().unwrap()
    );
    let with_rv = t
        .client
        .request_text(http::Request::get(uri).body(vec![]).unwrap())
        .await;
    assert_eq!(api_error(with_rv).code, 400);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = t.api("default");
    let foreign = api_error(
        secrets
            .list(&ListParams::default().limit(1).continue_token(&token))
            .await,
    );
    assert_eq!(
        foreign.code, 410,
        "a configmaps token does not continue a secrets list"
    );
}

#[tokio::test]
async fn watching_from_the_future_is_a_504() {
    let t = cluster().await;
    let no_retry: Api<ConfigMap> =
        Api::namespaced(t.client_with(|c| c.default_retry = false).await, "default");
    let future = (t.cluster.current_resource_version() + 1000).to_string();
    let status = match no_retry.watch(&WatchParams::default(), &future).await {
        Err(kube::Error::Api(s)) => *s,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a watch from a future resourceVersion must fail"),
    };
    assert_eq!((status.code, status.reason.as_str()), (504, "Timeout"));
}

#[tokio::test]
async fn a_restarted_dev_cluster_expires_the_old_resource_versions() {
    let old = cluster().await;
    let cms: Api<ConfigMap> = old.api("default");
    cms.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    let old_rv = list_rv(&cms).await;
    drop(old);
    let restarted = cluster().await;
    let cms: Api<ConfigMap> = restarted.api("default");
    let mut stream = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(
            e.code, 410,
            "clients relist instead of trusting a stale cache"
        ),
        other => panic!("{other:?}"),
    }
}
