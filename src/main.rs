use std::path::PathBuf;

use apikey_operator::telemetry::{LogFormat, init_logging};
use clap::{Parser, Subcommand};

/// The system allocator was a fifth of the dev cluster's CPU at 10,000 ApiKeys (malloc
/// and free of the many small objects a request builds); mimalloc costs less of it. Its
/// transparent huge pages are off (`no_thp`): zeroing them was a tenth of the dev
/// cluster's CPU, and they added 11 to 15 MiB to the operator's peak RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "apikey-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local sandbox: an in-memory Kubernetes API server with the operator running.
    #[cfg(feature = "devcluster")]
    Dev(apikey_operator::sandbox::DevArgs),
    /// Run the operator against the cluster in the kubeconfig (or in-cluster config).
    Run(Box<apikey_operator::run::RunArgs>),
    /// Serve the reference issuer: the Issuer API v1 in memory (docs/issuer-api.md).
    ReferenceIssuer {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The admin token of the `default` workspace (`Authorization: Bearer …`).
        #[arg(long, env = "REFERENCE_ISSUER_ADMIN_TOKEN")]
        admin_token: String,
        /// Another workspace, as NAME=ADMIN_TOKEN (repeatable); each sees only its keys.
        #[arg(long = "workspace", value_name = "NAME=ADMIN_TOKEN")]
        workspaces: Vec<String>,
        /// Limit the API to this many requests per second, `/whoami` included (429
        /// with Retry-After over it), as a SaaS limits an account.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        requests_per_second: Option<u32>,
    },
    /// Print the CRDs of the apikey.dev API as YAML (or write one file per CRD).
    Crds {
        /// Write `<crd name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `run` sets up logging from its flags; the other commands log as text, the sandbox
    // only warnings (its own summary says what happens; RUST_LOG shows more).
    let level = if is_sandbox(&cli.command) {
        "warn"
    } else {
        "info"
    };
    if !matches!(cli.command, Command::Run(_))
        && let Err(e) = init_logging(LogFormat::Text, level)
    {
        eprintln!("error: {e}");
    }
    let result = match cli.command {
        #[cfg(feature = "devcluster")]
        Command::Dev(args) => apikey_operator::sandbox::serve(args).await,
        Command::Crds { dir } => crds(dir),
        Command::ReferenceIssuer {
            port,
            admin_token,
            workspaces,
            requests_per_second,
        } => reference_issuer(port, &admin_token, &workspaces, requests_per_second).await,
        Command::Run(args) => apikey_operator::run::run(*args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn reference_issuer(
    port: u16,
    admin_token: &str,
    workspaces: &[String],
    requests_per_second: Option<u32>,
) -> Result<(), String> {
    let mut issuer = apikey_operator::reference_issuer::ReferenceIssuer::new(admin_token);
    if let Some(limit) = requests_per_second {
        issuer = issuer.with_requests_per_second(limit);
    }
    for w in workspaces {
        let (name, token) = w
            .split_once('=')
            .filter(|(n, t)| !n.is_empty() && !t.is_empty())
            .ok_or_else(|| format!("--workspace {w:?}: expected NAME=ADMIN_TOKEN"))?;
        issuer = issuer.with_workspace(name, token);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("reference issuer serving the Issuer API v1 at http://{addr}");
    issuer.serve(listener).await.map_err(|e| e.to_string())
}

fn is_sandbox(command: &Command) -> bool {
    #[cfg(feature = "devcluster")]
    if matches!(command, Command::Dev(_)) {
        return true;
    }
    let _ = command;
    false
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
