//! Several replicas, one leader: two operator processes share a Lease; the leader is
//! killed (SIGKILL: no release) while a rotation waits on its consumer's rollout, and the
//! follower takes over when the Lease expires and finishes that rotation.

use apikey_operator::api::apikey::{ApiKey, Phase};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_devcluster::WorkloadKind;
use serde_json::json;

use super::harness::*;
use crate::support::*;

const LEASE_SECONDS: &str = "3";

#[tokio::test]
async fn a_follower_takes_over_from_a_leader_killed_mid_rotation_and_finishes_it() {
    let t = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    t.cluster.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl::new(&t.cluster.kubeconfig());
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    k.ok(&["apply", "-f", crds.to_str().unwrap()]).await;
    let replica = |name: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
            .args(["run", "--leader-elect", "--lease-namespace", "default"])
            .args(["--lease-duration", LEASE_SECONDS])
            .args(["--metrics-addr", "off", "--health-addr", "off"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("POD_NAME", name)
            .stderr(std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut replicas = [
        ("replica-a", replica("replica-a")),
        ("replica-b", replica("replica-b")),
    ];
    let leases: Api<Lease> = t.api("default");
    let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
    let lease = wait(leases.clone(), "apikey-operator", |l: Option<&Lease>| {
        l.and_then(holder).is_some()
    })
    .await;
    let leader = holder(&lease).unwrap();

    let first = apikey_with_consumer(
        &t.client,
        "billing",
        json!({"every": "1h", "overlap": "1s"}),
    )
    .await;
    let apikeys: Api<ApiKey> = t.api("default");
    let first_key = current_id(&first);

    // A rotation the leader takes as far as the consumer's rollout, which is held.
    t.cluster
        .hold_rollout(WorkloadKind::Deployment, "default", "app");
    request(&apikeys, "billing", "apikey.dev/rotate", "1").await;
    wait(apikeys.clone(), "billing", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.phase == Some(Phase::RollingOut) && s.rotation_count == 2)
    })
    .await;
    let (_, process) = replicas
        .iter_mut()
        .find(|(name, _)| *name == leader)
        .unwrap();
    process.kill().await.unwrap();
    t.cluster
        .release_rollout(WorkloadKind::Deployment, "default", "app");

    // The other replica leads once the Lease expires, and revokes the old key after the
    // rollout and the overlap: the rotation the dead leader started is finished.
    let lease = wait(leases.clone(), "apikey-operator", |l: Option<&Lease>| {
        l.and_then(holder).is_some_and(|h| h != leader)
    })
    .await;
    let follower = holder(&lease).unwrap();
    let done = wait(apikeys, "billing", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref()).is_some_and(|s| {
            s.previous_key.is_none()
                && s.history
                    .iter()
                    .any(|h| h.id == first_key && h.reason == "Superseded")
        })
    })
    .await;
    assert_eq!(done.status.as_ref().unwrap().rotation_count, 2);
    assert_ne!(current_id(&done), first_key);
    // SIGTERM: the leader finishes its steps and releases the Lease at once, so a
    // successor need not wait for it to expire.
    let (_, process) = replicas
        .iter_mut()
        .find(|(name, _)| *name == follower)
        .unwrap();
    let pid = process.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(term.unwrap().success());
    let exited = tokio::time::timeout(PATIENCE, process.wait()).await;
    assert!(exited.expect("it stops").unwrap().success(), "a clean exit");
    wait(leases, "apikey-operator", |l: Option<&Lease>| {
        l.is_some_and(|l| holder(l).is_none())
    })
    .await;
    let log = std::fs::read_to_string(dir.path().join(format!("{follower}.log"))).unwrap();
    assert!(log.contains("released the leader lease"), "{log}");
    assert!(log.contains("leading"), "{log}");
    assert!(
        log.contains("RevokePrevious"),
        "the follower finished it: {log}"
    );
}
