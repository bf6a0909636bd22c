//! `apikey-operator dev`: the local sandbox. The dev cluster (an in-memory Kubernetes API
//! server) on loopback with the CRDs installed, the reference issuer ("WidgetJar") behind
//! a ClusterKeyIssuer `widgetjar`, optionally an OpenBao dev server behind a
//! ClusterKeyStore `vault`, the quickstart example applied, and the operator running,
//! with each rotation shown as it happens.

mod apply;
mod progress;
mod vault;
mod widgetjar;

use std::io::Write;

use clap::Args;
use kube_devcluster::cli::{self, shutdown_signal};

#[derive(Args)]
pub struct DevArgs {
    /// Serve only the Kubernetes API (without: the CRDs are installed and the operator
    /// runs against it too).
    #[arg(long)]
    api_only: bool,
    /// Also start an OpenBao dev server (the `bao` binary on PATH) behind a
    /// ClusterKeyStore `vault`.
    #[arg(long)]
    vault: bool,
    /// Do not apply examples/quickstart.
    #[arg(long)]
    no_quickstart: bool,
    #[command(flatten)]
    cluster: cli::Options,
}

/// Serves the sandbox until Ctrl-C or SIGTERM.
pub async fn serve(args: DevArgs) -> Result<(), String> {
    let cluster = args.cluster.start().await?;
    let mut out = std::io::stdout();
    // Held until the sandbox stops: the OpenBao server dies with it.
    let mut _openbao = None;
    if !args.api_only {
        let client = cluster
            .client()
            .await
            .map_err(|e| format!("cannot connect to the dev cluster: {e}"))?;
        apply::crds(&client).await?;
        let settings = crate::controller::Settings::default();
        let issuer_url = widgetjar::start(&client, &settings.namespace).await?;
        let _ = writeln!(
            out,
            "reference issuer (WidgetJar) at {issuer_url}: ClusterKeyIssuer widgetjar (see examples/widgetjar)"
        );
        if args.vault {
            let bao = vault::start(&client, &settings.namespace).await?;
            let _ = writeln!(
                out,
                "OpenBao dev server at {}: ClusterKeyStore vault (storeRef: {{kind: ClusterKeyStore, name: vault}})",
                bao.url
            );
            _openbao = Some(bao);
        }
        tokio::spawn(progress::report(client.clone()));
        let operator = crate::run::client::for_dev_cluster(&cluster.kubeconfig()).await?;
        tokio::spawn(crate::controller::run(operator, settings));
        if !args.no_quickstart {
            apply::quickstart(&client).await?;
            let _ = writeln!(
                out,
                "applied examples/quickstart: ApiKey default/quickstart, rotated every minute, and its consumer Deployment"
            );
        }
        let kubeconfig = args.cluster.kubeconfig.display();
        let _ = writeln!(
            out,
            "apikey-operator running; try:\n  export KUBECONFIG={kubeconfig}\n  kubectl get ak -w\n  kubectl apikey status quickstart    # the plugin: cargo install --path . --bin kubectl-apikey\n  kubectl apply -f examples/widgetjar"
        );
    }
    let _ = out.flush();
    shutdown_signal().await;
    tracing::info!("stopping");
    Ok(())
}
