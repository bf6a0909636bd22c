//! Sharding: installs with different label selectors share a cluster, each acting only on
//! the ApiKeys it selects.

use apikey_operator::api::apikey::ApiKey;
use apikey_operator::controller::{Scope, Settings};
use kube::api::Api;
use serde_json::json;

use super::harness::*;
use crate::support::*;

/// An operator's settings for one shard (each has metrics of its own).
fn shard(selector: &str) -> Settings {
    Settings {
        scope: Scope {
            namespaces: vec![],
            selector: Some(selector.into()),
        },
        ..Settings::default()
    }
}

#[tokio::test]
async fn each_shard_acts_only_on_the_apikeys_its_selector_picks() {
    let a = shard("shard=a");
    let a_metrics = a.metrics.clone();
    let op = operator_with(a).await;
    let b = shard("shard=b");
    let b_metrics = b.metrics.clone();
    let shard_b = tokio::spawn(apikey_operator::controller::run(op.t.client.clone(), b));
    let c = &op.t.client;
    issuer(c).await;
    for (name, shard) in [("for-a", "a"), ("for-b", "b")] {
        let mut ak = apikey(name, json!({"every": "1h"}), json!({}));
        ak["metadata"]["labels"] = json!({"shard": shard});
        create::<ApiKey>(c, ak).await;
    }
    let apikeys: Api<ApiKey> = op.t.api("default");
    wait(apikeys.clone(), "for-a", ready).await;
    wait(apikeys.clone(), "for-b", ready).await;
    let (seen_by_a, seen_by_b) = (a_metrics.encode(), b_metrics.encode());
    assert!(seen_by_a.contains(r#"name="for-a""#), "{seen_by_a}");
    assert!(!seen_by_a.contains(r#"name="for-b""#), "{seen_by_a}");
    assert!(seen_by_b.contains(r#"name="for-b""#), "{seen_by_b}");
    assert!(!seen_by_b.contains(r#"name="for-a""#), "{seen_by_b}");
    shard_b.abort();
}
