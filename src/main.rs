use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use apikey_operator::devcluster::{self, DevCluster};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "apikey-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local sandbox: an in-memory Kubernetes API server with the operator running.
    Dev(DevArgs),
    /// Run the operator against the cluster in the kubeconfig (or in-cluster config).
    Run {
        /// Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// At most this many ApiKeys roll out their consumers at the same time.
        #[arg(long, default_value_t = 5)]
        max_concurrent_rollouts: usize,
    },
    /// Print the CRDs of the apikey.dev API as YAML (or write one file per CRD).
    Crds {
        /// Write `<crd name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct DevArgs {
    /// Serve only the Kubernetes API (without: the CRDs are installed and the operator
    /// runs against it too).
    #[arg(long)]
    api_only: bool,
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "dev.kubeconfig")]
    kubeconfig: PathBuf,
    /// The admin's bearer token (default: a random one, written to the kubeconfig).
    #[arg(long, env = "APIKEY_DEV_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Enforce RBAC for ServiceAccount tokens and impersonated users (the admin token is
    /// always allowed).
    #[arg(long)]
    rbac: bool,
    /// Seconds a simulated Deployment/StatefulSet/DaemonSet rollout takes.
    #[arg(long, default_value_t = 2.0)]
    rollout_seconds: f64,
    /// The Kubernetes release to report and whose CRD registration checks (CEL type
    /// checking and cost estimation) to apply, 1.24 to 1.33.
    #[arg(long, default_value = "1.33", value_parser = parse_kubernetes_minor)]
    kubernetes_version: u32,
}

/// `1.N` → N, within the releases the dev cluster emulates.
fn parse_kubernetes_minor(v: &str) -> Result<u32, String> {
    let supported = format!(
        "1.{} to 1.{}",
        devcluster::OLDEST_KUBERNETES_MINOR,
        devcluster::DEFAULT_KUBERNETES_MINOR
    );
    let minor = v
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("expected a release such as 1.29 ({supported})"))?;
    if (devcluster::OLDEST_KUBERNETES_MINOR..=devcluster::DEFAULT_KUBERNETES_MINOR).contains(&minor)
    {
        Ok(minor)
    } else {
        Err(format!("the dev cluster emulates Kubernetes {supported}"))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => dev(args).await,
        Command::Crds { dir } => crds(dir),
        Command::Run {
            kubeconfig,
            max_concurrent_rollouts,
        } => {
            run(
                kubeconfig,
                apikey_operator::controller::Settings {
                    max_concurrent_rollouts,
                    ..Default::default()
                },
            )
            .await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dev(args: DevArgs) -> Result<(), String> {
    let config = devcluster::Config {
        port: args.port,
        token: args.token,
        rbac: args.rbac,
        rollout_delay: Duration::from_secs_f64(args.rollout_seconds.max(0.0)),
        kubernetes_minor: args.kubernetes_version,
        ..Default::default()
    };
    let cluster = DevCluster::start(config)
        .await
        .map_err(|e| format!("cannot start the dev cluster: {e}"))?;
    cluster
        .write_kubeconfig(&args.kubeconfig)
        .map_err(|e| format!("cannot write {}: {e}", args.kubeconfig.display()))?;
    // A closed stdout (the launcher stopped reading) must not take the server down.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "dev cluster serving at {}", cluster.url());
    let _ = writeln!(out, "kubeconfig: {}", args.kubeconfig.display());
    let _ = writeln!(out, "  export KUBECONFIG={}", args.kubeconfig.display());
    if !args.api_only {
        let client = cluster
            .client()
            .await
            .map_err(|e| format!("cannot connect to the dev cluster: {e}"))?;
        install_crds(&client).await?;
        tokio::spawn(apikey_operator::controller::run(client, Default::default()));
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
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for crd in apikey_operator::api::crds() {
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

async fn run(
    kubeconfig: Option<PathBuf>,
    settings: apikey_operator::controller::Settings,
) -> Result<(), String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("invalid kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found: {e}"))?,
    };
    let client =
        kube::Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))?;
    tracing::info!("apikey-operator running");
    apikey_operator::controller::run(client, settings).await;
    Ok(())
}

fn crds(dir: Option<PathBuf>) -> Result<(), String> {
    for crd in apikey_operator::api::crds() {
        let yaml = apikey_operator::api::crd_yaml(&crd);
        match &dir {
            Some(dir) => {
                let name = crd.metadata.name.clone().unwrap_or_default();
                let path = dir.join(format!("{name}.yaml"));
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            None => print!("---\n{yaml}"),
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
