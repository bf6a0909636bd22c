//! `apikey-operator run`: the operator as deployed. Flags (each with an environment
//! variable, for the Helm chart), the Kubernetes client, the health and metrics endpoints,
//! leader election, and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::controller::{Scope, Settings};
use crate::telemetry::LogFormat;
use crate::telemetry::server;

pub mod client;
mod leader;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig to use (default: $KUBECONFIG or ~/.kube/config if there is one, else the
    /// in-cluster config of the pod's ServiceAccount).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces to watch, comma-separated (default: all). The operator then needs
    /// access to these namespaces only (the chart's `watchNamespaces`).
    #[arg(long, env = "APIKEY_OPERATOR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Only ApiKeys matching this label selector (`shard=a`, `team in (x,y)`): several
    /// installs can share a cluster.
    #[arg(long, env = "APIKEY_OPERATOR_SELECTOR")]
    pub selector: Option<String>,
    /// At most this many ApiKeys reconciled at once per watched namespace (0: no limit).
    #[arg(long, env = "APIKEY_OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// At most this many ApiKeys roll out their consumers at the same time.
    #[arg(
        long,
        env = "APIKEY_OPERATOR_MAX_CONCURRENT_ROLLOUTS",
        default_value_t = 5
    )]
    pub max_concurrent_rollouts: usize,
    /// Act only while holding a coordination.k8s.io Lease, so several replicas can run.
    #[arg(long, env = "APIKEY_OPERATOR_LEADER_ELECT", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// The Lease's name.
    #[arg(
        long,
        env = "APIKEY_OPERATOR_LEASE_NAME",
        default_value = "apikey-operator"
    )]
    pub lease_name: String,
    /// The Lease's namespace (default: the operator's namespace).
    #[arg(long, env = "APIKEY_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a leader's Lease is valid without renewal: how soon a replica takes over
    /// from one that died.
    #[arg(long, env = "APIKEY_OPERATOR_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration: u64,
    /// Serve `/metrics` here (`off`: not at all).
    #[arg(
        long,
        env = "APIKEY_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_addr: Endpoint,
    /// Serve `/healthz` and `/readyz` here (`off`: not at all).
    #[arg(
        long,
        env = "APIKEY_OPERATOR_HEALTH_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub health_addr: Endpoint,
    /// `text` (coloured on a terminal only) or `json` (one object per line).
    #[arg(long, env = "APIKEY_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `apikey_operator=debug,kube=info`.
    #[arg(long, env = "APIKEY_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Kubernetes API requests per second, sustained.
    #[arg(long, env = "APIKEY_OPERATOR_KUBE_QPS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_qps: u32,
    /// Kubernetes API requests allowed at once above the sustained rate.
    #[arg(long, env = "APIKEY_OPERATOR_KUBE_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_burst: u32,
    /// The operator's namespace: ClusterKeyStore and ClusterKeyIssuer credentials are read
    /// here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "apikey-operator")]
    pub namespace: String,
    /// The operator's ServiceAccount (a ClusterKeyStore's Vault Kubernetes login presents it).
    #[arg(long, env = "SERVICE_ACCOUNT_NAME", default_value = "apikey-operator")]
    pub service_account: String,
}

/// Where an HTTP endpoint listens, or `off`.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint(Option<SocketAddr>);

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Endpoint(None));
        }
        s.parse()
            .map(|a| Endpoint(Some(a)))
            .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:8080 (or `off`)"))
    }
}

/// Runs the operator until SIGTERM or Ctrl-C (or, with leader election, until the Lease
/// is lost: the process exits so a restart rejoins as a follower).
pub async fn run(args: RunArgs) -> Result<(), String> {
    crate::telemetry::init_logging(args.log_format, &args.log_level)?;
    let client = client::build(args.kubeconfig.as_deref(), args.kube_qps, args.kube_burst).await?;
    let settings = Settings {
        max_concurrent_rollouts: args.max_concurrent_rollouts,
        concurrency: args.concurrency,
        scope: Scope {
            namespaces: args
                .namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            selector: args.selector.clone().filter(|s| !s.is_empty()),
        },
        namespace: args.namespace.clone(),
        service_account: args.service_account.clone(),
        ..Settings::default()
    };
    let readiness = settings.readiness.clone();
    if let Endpoint(Some(addr)) = args.health_addr {
        let bound = server::serve(addr, server::health(readiness.clone())).await?;
        tracing::info!(%bound, "serving /healthz and /readyz");
    }
    if let Endpoint(Some(addr)) = args.metrics_addr {
        let bound = server::serve(addr, server::metrics(settings.metrics.clone())).await?;
        tracing::info!(%bound, "serving /metrics");
    }
    tracing::info!(
        namespaces = ?settings.scope.namespaces,
        selector = settings.scope.selector.as_deref().unwrap_or(""),
        leader_elect = args.leader_elect,
        "apikey-operator running"
    );
    if !args.leader_elect {
        settings.metrics.set_leader(true);
        crate::controller::run_until(client, settings, shutdown_signal()).await;
        return Ok(());
    }
    // A waiting replica is healthy: it is ready as soon as it can take over.
    readiness.set(true);
    let lease = leader::Lease {
        name: args.lease_name.clone(),
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| args.namespace.clone()),
        duration_seconds: args.lease_duration,
    };
    leader::run(client, settings, lease, shutdown_signal()).await
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping: finishing the steps in progress");
}
