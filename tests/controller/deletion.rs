//! Deleting an ApiKey at every step of a rotation: each run fails the n-th status write of
//! a rotation (the step before it has acted, status does not know) and deletes the ApiKey
//! at that moment. Whatever the step, `Revoke` leaves no key valid at the issuer and
//! `Retain` leaves a released Secret whose keys are exactly the valid ones.

use std::collections::BTreeSet;

use apikey_operator::api::apikey::ApiKey;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::json;

use super::harness::*;
use super::http_issuer::{http_client, widget_key, widgetjar};
use crate::support::*;

/// Runs the scenario with `policy` for n = 0, 1, … until a rotation completes before its
/// n-th status write; returns how many steps were covered.
async fn delete_at_every_step(policy: &str) -> usize {
    for n in 0.. {
        let op = operator().await;
        let c = &op.t.client;
        let (issuer, url) = widgetjar(c).await;
        deployment(c, "app").await;
        let mut ak = widget_key("doomed", json!({"every": "1h", "overlap": "1s"}));
        ak["spec"]["deletionPolicy"] = json!(policy);
        ak["spec"]["consumers"] = json!([{"kind": "Deployment", "name": "app"}]);
        create::<ApiKey>(c, ak).await;
        let apikeys: Api<ApiKey> = Api::default_namespaced(c.clone());
        let first = current_id(&wait(apikeys.clone(), "doomed", ready).await);

        let mut fired = op.t.cluster.faults_fired();
        op.t.cluster.inject(
            kube_devcluster::Fault::on("update", "apikeys")
                .after(n)
                .times(1)
                .status(500),
        );
        request(&apikeys, "doomed", "apikey.dev/rotate", "now").await;
        let finished = |a: Option<&ApiKey>| {
            a.is_some_and(|a| {
                current_id(a) != first
                    && a.status.as_ref().is_some_and(|s| s.previous_key.is_none())
            })
        };
        tokio::select! {
            _ = fired.wait_for(|f| *f >= 1) => {}
            _ = wait(apikeys.clone(), "doomed", finished) => return n,
        }
        apikeys
            .delete("doomed", &DeleteParams::default())
            .await
            .unwrap();
        wait_deleted(apikeys, "doomed").await;

        let valid: BTreeSet<String> = issuer.valid_keys().into_iter().map(|k| k.id).collect();
        let secrets: Api<Secret> = Api::default_namespaced(c.clone());
        if policy == "Revoke" {
            assert!(valid.is_empty(), "step {n}: keys left valid: {valid:?}");
            wait_deleted(secrets, "doomed").await;
            continue;
        }
        let released = secrets.get("doomed").await.unwrap();
        assert!(released.owner_references().is_empty(), "step {n}: released");
        let in_secret: BTreeSet<String> = ["api-key-id", "api-key-id-previous"]
            .into_iter()
            .filter_map(|f| data(&released, f))
            .collect();
        assert_eq!(
            valid, in_secret,
            "step {n}: valid keys are the Secret's keys"
        );
        // And the Secret's key material is the valid key of that id.
        let whoami: serde_json::Value = http_client()
            .get(format!("{url}/whoami"))
            .bearer_auth(data(&released, "api-key").unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            whoami["id"].as_str(),
            data(&released, "api-key-id").as_deref(),
            "step {n}: the Secret's key works"
        );
    }
    unreachable!("the loop returns once a rotation outruns the fault")
}

#[tokio::test]
async fn deleting_with_revoke_at_any_step_leaves_no_key_valid() {
    let steps = delete_at_every_step("Revoke").await;
    assert!(steps >= 4, "a rotation has several steps; covered {steps}");
}

#[tokio::test]
async fn deleting_with_retain_at_any_step_leaves_exactly_the_secrets_keys_valid() {
    let steps = delete_at_every_step("Retain").await;
    assert!(steps >= 4, "a rotation has several steps; covered {steps}");
}
