//! `apikey-operator dev`: the local sandbox. The dev cluster (an in-memory Kubernetes API
//! server) on loopback, with the CRDs installed, the operator running against it, and the
//! reference issuer ("WidgetJar") behind a ClusterKeyIssuer `widgetjar`.

use std::io::Write;

use clap::Args;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_devcluster::cli::{self, shutdown_signal};

#[derive(Args)]
pub struct DevArgs {
    /// Serve only the Kubernetes API (without: the CRDs are installed and the operator
    /// runs against it too).
    #[arg(long)]
    api_only: bool,
    #[command(flatten)]
    cluster: cli::Options,
}

/// Serves the sandbox until Ctrl-C or SIGTERM.
pub async fn serve(args: DevArgs) -> Result<(), String> {
    let cluster = args.cluster.start().await?;
    let mut out = std::io::stdout();
    if !args.api_only {
        let client = cluster
            .client()
            .await
            .map_err(|e| format!("cannot connect to the dev cluster: {e}"))?;
        install_crds(&client).await?;
        let settings = crate::controller::Settings::default();
        let issuer_url = widgetjar(&client, &settings.namespace).await?;
        tokio::spawn(crate::controller::run(client, settings));
        let _ = writeln!(
            out,
            "reference issuer (WidgetJar) at {issuer_url}: ClusterKeyIssuer widgetjar (see examples/widgetjar)"
        );
        let _ = writeln!(
            out,
            "apikey-operator running; try: kubectl apply -f examples/basic && kubectl get ak -w"
        );
    }
    let _ = out.flush();
    shutdown_signal().await;
    tracing::info!("stopping");
    Ok(())
}

/// Starts the reference issuer with a fresh admin token, and the ClusterKeyIssuer
/// `widgetjar` that uses it (its token in a Secret in the operator's namespace).
async fn widgetjar(client: &kube::Client, namespace: &str) -> Result<String, String> {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    let token = uuid_like();
    let addr = crate::reference_issuer::ReferenceIssuer::new(&token)
        .spawn("127.0.0.1:0".parse().expect("an address"))
        .await
        .map_err(|e| format!("cannot start the reference issuer: {e}"))?;
    let url = format!("http://{addr}");
    let apply = kube::api::PatchParams::apply("apikey-operator-dev").force();
    let failed = |what: &str, e: kube::Error| format!("cannot create {what}: {e}");
    kube::Api::<Namespace>::all(client.clone())
        .patch(
            namespace,
            &apply,
            &kube::api::Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace}})),
        )
        .await
        .map_err(|e| failed("the operator's namespace", e))?;
    kube::Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            "widgetjar-admin",
            &apply,
            &kube::api::Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "widgetjar-admin"}, "stringData": {"token": token}})),
        )
        .await
        .map_err(|e| failed("the reference issuer's admin Secret", e))?;
    kube::Api::<crate::api::issuer::ClusterKeyIssuer>::all(client.clone())
        .patch(
            "widgetjar",
            &apply,
            &kube::api::Patch::Apply(serde_json::json!({
                "apiVersion": "apikey.dev/v1alpha1", "kind": "ClusterKeyIssuer",
                "metadata": {"name": "widgetjar"},
                "spec": {"http": {"url": url, "credentialsSecretRef": {"name": "widgetjar-admin", "key": "token"}},
                    "allowedScopes": ["widgets:*"]}})),
        )
        .await
        .map_err(|e| failed("the ClusterKeyIssuer widgetjar", e))?;
    Ok(url)
}

/// A random token for the sandbox's reference issuer.
fn uuid_like() -> String {
    let rng = ring::rand::SystemRandom::new();
    crate::issuer::generate::random_base62(&rng, 32).unwrap_or_else(|_| "dev-admin-token".into())
}

/// Creates (or updates) the apikey.dev CRDs, as `kubectl apply -f crds/` would.
async fn install_crds(client: &kube::Client) -> Result<(), String> {
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for crd in crate::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &kube::api::PatchParams::apply("apikey-operator").force(),
            &kube::api::Patch::Apply(&crd),
        )
        .await
        .map_err(|e| format!("cannot install CRD {name}: {e}"))?;
    }
    Ok(())
}
