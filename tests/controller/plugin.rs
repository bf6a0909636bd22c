//! `kubectl apikey` as users run it: the real kubectl finds `kubectl-apikey` on PATH.

use std::path::Path;
use std::process::Stdio;

use apikey_operator::api::apikey::ApiKey;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::harness::*;
use crate::support::*;

/// Runs `kubectl apikey <args>` with `stdin` as its input; (succeeded, stdout, stderr).
async fn kubectl_apikey(kubeconfig: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-apikey"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap()
    );
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut child = tokio::process::Command::new(kubectl)
        .arg("apikey")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("kubectl apikey finishes")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_apikey_shows_rotates_ends_overlaps_and_suspends() {
    let op = operator().await;
    let t = &op.t;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    t.cluster.write_kubeconfig(&kubeconfig).unwrap();
    let run = |args: &'static [&'static str]| kubectl_apikey(&kubeconfig, args, "");
    let first = apikey_with_consumer(
        &t.client,
        "billing",
        json!({"every": "2h", "overlap": "1h"}),
    )
    .await;
    let apikeys: Api<ApiKey> = t.api("default");
    let first_id = current_id(&first);

    let (ok, table, _) = run(&["status"]).await;
    assert!(ok);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("ROLLED-OUT"),
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["billing", "Ready", first_id.as_str()], "{table}");
    let (_, all, _) = run(&["status", "-A"]).await;
    assert!(all.lines().nth(1).unwrap().starts_with("default"), "{all}");

    // A rotation, followed step by step until its consumer runs the new key.
    let (ok, progress, err) = run(&["rotate", "billing", "--wait", "--timeout", "20s"]).await;
    assert!(ok, "{progress}{err}");
    assert!(progress.contains("RollingOut"), "{progress}");
    let rotated = apikeys.get("billing").await.unwrap();
    let second_id = current_id(&rotated);
    assert_ne!(second_id, first_id);
    assert!(
        progress.ends_with(&format!("rotated: billing now uses key {second_id}\n")),
        "{progress}"
    );
    let (_, detail, _) = run(&["status", "billing"]).await;
    for expected in [
        format!("Current:   {second_id}"),
        format!("Previous:  {first_id}"),
        "Deployment/app: rolled out".into(),
        "Ready=True KeyDistributed".into(),
    ] {
        assert!(detail.contains(&expected), "{expected:?} in\n{detail}");
    }

    // Ending the overlap revokes the first key; history tells it.
    let (ok, said, _) = run(&["revoke-previous", "billing"]).await;
    assert!(ok, "{said}");
    wait(apikeys.clone(), "billing", |a: Option<&ApiKey>| {
        a.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.previous_key.is_none() && !s.history.is_empty())
    })
    .await;
    let (_, history, _) = run(&["history", "billing"]).await;
    let revoked = history
        .lines()
        .find(|l| l.contains(&first_id))
        .unwrap_or_else(|| panic!("{history}"));
    assert!(revoked.ends_with("RevokePreviousRequested"), "{history}");
    assert!(
        history.contains("RotationStarted"),
        "events follow: {history}"
    );
    let (ok, _, err) = run(&["revoke-previous", "billing"]).await;
    assert!(!ok && err.contains("no previous key"), "{err}");

    // An emergency rotation is confirmed by typing the name; anything else changes nothing.
    let (ok, _, err) =
        kubectl_apikey(&kubeconfig, &["rotate", "billing", "--emergency"], "bill\n").await;
    assert!(!ok && err.contains("not confirmed"), "{err}");
    let unchanged = apikeys.get("billing").await.unwrap();
    assert!(
        !unchanged
            .annotations()
            .contains_key("apikey.dev/emergency-rotate")
    );
    let (ok, out, err) = kubectl_apikey(
        &kubeconfig,
        &["rotate", "billing", "--emergency"],
        "billing\n",
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        apikeys
            .get("billing")
            .await
            .unwrap()
            .annotations()
            .contains_key("apikey.dev/emergency-rotate")
    );

    // Suspended, a key rotates only in an emergency; the plugin says so.
    assert!(run(&["suspend", "billing"]).await.0);
    assert!(apikeys.get("billing").await.unwrap().spec.suspend);
    let (ok, _, err) = run(&["rotate", "billing"]).await;
    assert!(!ok && err.contains("is suspended"), "{err}");
    assert!(run(&["resume", "billing"]).await.0);
    assert!(!apikeys.get("billing").await.unwrap().spec.suspend);

    let (ok, _, err) = run(&["status", "biling"]).await;
    assert!(!ok, "a typo fails");
    assert!(
        err.contains(r#""biling" not found in namespace "default""#),
        "{err}"
    );
}

/// The plugin uses the operator's client: an API server refusing briefly (503) costs a
/// retry, not the command; one that keeps refusing is reported within seconds, after
/// the same few retries, not after kube-rs's minutes of them.
#[tokio::test]
async fn kubectl_apikey_retries_a_brief_503_and_reports_a_lasting_one() {
    use apikey_operator::run::client::RETRIES;
    use kube_devcluster::Fault;
    let op = operator().await;
    let t = &op.t;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    t.cluster.write_kubeconfig(&kubeconfig).unwrap();
    issuer(&t.client).await;
    create::<ApiKey>(&t.client, apikey("busy", json!({"every": "1h"}), json!({}))).await;
    let apikeys: Api<ApiKey> = t.api("default");
    wait(apikeys.clone(), "busy", ready).await;
    let fired = t.cluster.faults_fired();

    t.cluster
        .inject(Fault::on("patch", "apikeys").status(503).times(2));
    let (ok, said, err) = kubectl_apikey(&kubeconfig, &["rotate", "busy"], "").await;
    assert!(ok, "{said}{err}");
    assert_eq!(*fired.borrow(), 2, "both refusals were met");
    let requested = apikeys.get("busy").await.unwrap();
    assert!(
        requested
            .annotations()
            .contains_key(apikey_operator::api::apikey::annotations::ROTATE),
        "the request went through"
    );

    t.cluster.inject(Fault::on("patch", "apikeys").status(503));
    let (ok, _, err) = kubectl_apikey(&kubeconfig, &["suspend", "busy"], "").await;
    assert!(!ok);
    assert!(err.contains("503"), "{err}");
    assert_eq!(
        *fired.borrow(),
        2 + 1 + u64::from(RETRIES),
        "the first attempt and {RETRIES} retries"
    );
    t.cluster.clear_faults();
    assert!(!apikeys.get("busy").await.unwrap().spec.suspend);
}
