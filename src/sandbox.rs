//! `apikey-operator dev`: the local sandbox. The dev cluster (an in-memory Kubernetes API
//! server) on loopback, with the CRDs installed and the operator running against it.

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
        tokio::spawn(crate::controller::run(client, Default::default()));
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
