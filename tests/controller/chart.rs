//! The Helm chart as a cluster runs it: its rendered ServiceAccount and RBAC applied to a
//! dev cluster that enforces RBAC, the operator binary started with the Deployment's own
//! args and env under that ServiceAccount's token, and a key's whole life (mint, rollout,
//! rotation, overlap ended, Revoke on delete, issuer deleted) run through it. Any request
//! the chart's rules do not allow is a 403 the dev cluster records: none may happen.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::Value;

use crate::support::*;

const RELEASE_NAMESPACE: &str = "apikey-system";
const ADMIN_TOKEN: &str = "chart-test-admin";

#[tokio::test]
async fn the_charts_cluster_wide_rbac_allows_every_request_the_operator_makes() {
    key_life_under_chart(&[], "default").await;
}

#[tokio::test]
async fn the_charts_namespaced_rbac_allows_every_request_the_operator_makes() {
    key_life_under_chart(&["--set", "watchNamespaces={team-a}"], "team-a").await;
}

async fn key_life_under_chart(helm_flags: &[&str], namespace: &str) {
    let rendered = helm_template(helm_flags);
    let t = cluster_with(Config {
        rbac: true,
        token: Some(ADMIN_TOKEN.into()),
        ..test_config()
    })
    .await;
    let admin = Kubectl::new(&t.cluster.kubeconfig());
    admin.ok(&["create", "namespace", RELEASE_NAMESPACE]).await;
    if namespace != "default" {
        admin.ok(&["create", "namespace", namespace]).await;
    }
    let crds = repo().join("charts/apikey-operator/crds");
    admin.ok(&["apply", "-f", crds.to_str().unwrap()]).await;
    let rbac: Vec<&Value> = rendered
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some(
                    "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            )
        })
        .collect();
    assert!(rbac.len() >= 5, "the chart renders RBAC: {rbac:?}");
    let manifest = admin.file(
        "rbac.yaml",
        &rbac
            .iter()
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect::<Vec<_>>()
            .join("---\n"),
    );
    admin.ok(&["apply", "-f", &manifest]).await;

    let deployment = rendered
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let sa = pod["serviceAccountName"].as_str().unwrap();
    let token = Api::<ServiceAccount>::namespaced(t.client.clone(), RELEASE_NAMESPACE)
        .create_token_request(sa, &PostParams::default(), &TokenRequest::default())
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("sa.kubeconfig");
    std::fs::write(
        &kubeconfig,
        t.cluster.kubeconfig().replace(ADMIN_TOKEN, &token),
    )
    .unwrap();
    let _operator = start_as_deployed(&pod["containers"][0], &kubeconfig, sa, dir.path());

    // A key's whole life, as a user drives it with kubectl.
    let basic = std::fs::read_dir(repo().join("examples/basic")).unwrap();
    for file in basic {
        let yaml = std::fs::read_to_string(file.unwrap().path()).unwrap();
        let yaml = yaml.replace("namespace: default", &format!("namespace: {namespace}"));
        let path = admin.file("example.yaml", &yaml);
        admin.ok(&["apply", "-f", &path]).await;
    }
    let n = ["-n", namespace];
    let wait = |what: &'static str| {
        let admin = &admin;
        async move {
            admin
                .ok(&[
                    "wait",
                    "-n",
                    namespace,
                    what,
                    "apikey/billing",
                    "--timeout=20s",
                ])
                .await
        }
    };
    wait("--for=condition=Ready").await;
    admin
        .ok(&[
            &n[..],
            &["rollout", "status", "deployment/billing", "--timeout=20s"],
        ]
        .concat())
        .await;
    let annotate = |request: &'static str| {
        let admin = &admin;
        async move {
            admin
                .ok(&["annotate", "-n", namespace, "ak", "billing", request])
                .await
        }
    };
    annotate("apikey.dev/rotate=1").await;
    wait("--for=jsonpath={.status.rotationCount}=2").await;
    annotate("apikey.dev/revoke-previous=1").await;
    wait("--for=jsonpath={.status.history[0].reason}=RevokePreviousRequested").await;
    admin
        .ok(&[
            &n[..],
            &[
                "patch",
                "ak",
                "billing",
                "--type=merge",
                "-p",
                r#"{"spec":{"deletionPolicy":"Revoke"}}"#,
            ],
        ]
        .concat())
        .await;
    admin
        .ok(&[&n[..], &["delete", "ak", "billing", "--timeout=20s"]].concat())
        .await;
    admin
        .ok(&[
            &n[..],
            &["delete", "keyissuer", "generated", "--timeout=20s"],
        ]
        .concat())
        .await;

    let lease_name = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--lease-name="))
        .expect("the chart enables leader election");
    let lease = Api::<Lease>::namespaced(t.client.clone(), RELEASE_NAMESPACE)
        .get(lease_name)
        .await
        .unwrap();
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_some(),
        "the operator leads through its Lease"
    );
    let denied = t.cluster.denials();
    assert!(
        denied.is_empty(),
        "requests the chart's RBAC refused: {denied:#?}"
    );
}

/// The operator binary with the container's args and env as the chart renders them; the
/// HTTP endpoints move to free loopback ports (tests run side by side).
fn start_as_deployed(
    container: &Value,
    kubeconfig: &Path,
    service_account: &str,
    dir: &Path,
) -> tokio::process::Child {
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .map(|a| match a.split_once('=') {
            Some(("--metrics-addr" | "--health-addr", _)) => {
                format!("{}=127.0.0.1:{}", a.split_once('=').unwrap().0, free_port())
            }
            _ => a,
        })
        .collect();
    assert_eq!(args[0], "run");
    let log = std::fs::File::create(dir.join("operator.log")).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
        .args(&args)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .env("POD_NAME", "apikey-operator-0")
        .env("POD_NAMESPACE", RELEASE_NAMESPACE)
        .env("SERVICE_ACCOUNT_NAME", service_account)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `helm template` of the chart with the real helm binary, as YAML documents.
fn helm_template(flags: &[&str]) -> Vec<Value> {
    let helm = repo().join(".tools/bin/helm");
    require("helm", &helm);
    let out = std::process::Command::new(&helm)
        .args(["template", "apikey-operator"])
        .arg(repo().join("charts/apikey-operator"))
        .args(["--namespace", RELEASE_NAMESPACE])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
