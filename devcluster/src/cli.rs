//! The command line of the `kube-devcluster` binary, shared by programs that embed the dev
//! cluster (flatten `Options` into their own clap command).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::{Config, DEFAULT_KUBERNETES_MINOR, DevCluster, OLDEST_KUBERNETES_MINOR};

#[derive(Args, Clone, Debug)]
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "dev.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// The admin's bearer token (default: a random one, written to the kubeconfig).
    #[arg(long, env = "APIKEY_DEV_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Enforce RBAC for ServiceAccount tokens and impersonated users (the admin token is
    /// always allowed).
    #[arg(long)]
    pub rbac: bool,
    /// Seconds a simulated Deployment/StatefulSet/DaemonSet rollout takes.
    #[arg(long, default_value_t = 2.0)]
    pub rollout_seconds: f64,
    /// The Kubernetes release to report and whose CRD registration checks (CEL type
    /// checking and cost estimation) to apply, 1.24 to 1.33.
    #[arg(long, default_value = "1.33", value_parser = parse_kubernetes_minor)]
    pub kubernetes_version: u32,
}

impl Options {
    /// Starts the dev cluster, writes its kubeconfig and says where it serves on stdout.
    pub async fn start(&self) -> Result<DevCluster, String> {
        let config = Config {
            port: self.port,
            token: self.token.clone(),
            rbac: self.rbac,
            rollout_delay: Duration::from_secs_f64(self.rollout_seconds.max(0.0)),
            kubernetes_minor: self.kubernetes_version,
            ..Default::default()
        };
        let cluster = DevCluster::start(config)
            .await
            .map_err(|e| format!("cannot start the dev cluster: {e}"))?;
        cluster
            .write_kubeconfig(&self.kubeconfig)
            .map_err(|e| format!("cannot write {}: {e}", self.kubeconfig.display()))?;
        // A closed stdout (the launcher stopped reading) must not take the server down.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "dev cluster serving at {}", cluster.url());
        let _ = writeln!(out, "kubeconfig: {}", self.kubeconfig.display());
        let _ = writeln!(out, "  export KUBECONFIG={}", self.kubeconfig.display());
        let _ = out.flush();
        Ok(cluster)
    }
}

/// `1.N` → N, within the releases the dev cluster emulates.
fn parse_kubernetes_minor(v: &str) -> Result<u32, String> {
    let supported = format!("1.{OLDEST_KUBERNETES_MINOR} to 1.{DEFAULT_KUBERNETES_MINOR}");
    let minor = v
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("expected a release such as 1.29 ({supported})"))?;
    if (OLDEST_KUBERNETES_MINOR..=DEFAULT_KUBERNETES_MINOR).contains(&minor) {
        Ok(minor)
    } else {
        Err(format!("the dev cluster emulates Kubernetes {supported}"))
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
