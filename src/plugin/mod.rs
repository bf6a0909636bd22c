//! `kubectl apikey`: the kubectl plugin (binary `kubectl-apikey`). Status of keys and
//! their rotations, and the requests the operator acts on (rotate, emergency rotate,
//! revoke the previous key, suspend), as annotations and spec changes any user with
//! `patch` on ApiKeys could make by hand.

mod actions;
mod show;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::api::apikey::ApiKey;

#[derive(Parser)]
#[command(
    name = "kubectl apikey",
    bin_name = "kubectl apikey",
    version,
    about = "Inspect and rotate the API keys apikey-operator manages"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Keys, their ages, phase, next rotation, consumers, store and issuer.
    Status {
        /// One ApiKey in detail (without: a table of all in the namespace).
        name: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Rotate now (the `apikey.dev/rotate` annotation); the old key stays valid for the
    /// overlap. With --emergency, the current key is treated as compromised: it is revoked
    /// as soon as its successor is distributed (`apikey.dev/emergency-rotate`).
    Rotate {
        name: String,
        /// Revoke the current key as soon as the new one is distributed, without overlap.
        #[arg(long)]
        emergency: bool,
        /// Do not ask for confirmation of an emergency rotation.
        #[arg(short, long)]
        yes: bool,
        /// Wait for the rotation to finish, printing each step.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (e.g. 90s, 10m).
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// End the overlap now: revoke the previous key (`apikey.dev/revoke-previous`).
    RevokePrevious { name: String },
    /// The keys this ApiKey held, and the events of its rotations.
    History { name: String },
    /// Stop scheduled rotations (an emergency rotation still runs).
    Suspend { name: String },
    /// Resume scheduled rotations.
    Resume { name: String },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::api::duration::parse(s)
}

/// Runs the plugin; the error is what the user reads after `error: `.
pub async fn run(cli: Cli) -> Result<(), String> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| format!("no usable kubeconfig: {e}"))?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    // A pace none of its commands comes near; the bounded retries are what matter here.
    let client = crate::run::client::with_config(config, 50, 300)?;
    let apikeys: Api<ApiKey> = Api::namespaced(client.clone(), &namespace);
    let mut out = std::io::stdout();
    match cli.command {
        Command::Status {
            name: None,
            all_namespaces,
        } => {
            let api = if all_namespaces {
                Api::all(client)
            } else {
                apikeys
            };
            show::table(&api, all_namespaces, &mut out).await
        }
        Command::Status {
            name: Some(name), ..
        } => show::detail(&apikeys, &name, &mut out).await,
        Command::History { name } => show::history(&client, &apikeys, &name, &mut out).await,
        Command::Rotate {
            name,
            emergency,
            yes,
            wait,
            timeout,
        } => {
            let rotate = actions::Rotate {
                emergency,
                confirmed: yes,
                wait: wait.then_some(timeout),
            };
            actions::rotate(&apikeys, &name, rotate, &mut out).await
        }
        Command::RevokePrevious { name } => {
            actions::revoke_previous(&apikeys, &name, &mut out).await
        }
        Command::Suspend { name } => actions::suspend(&apikeys, &name, true, &mut out).await,
        Command::Resume { name } => actions::suspend(&apikeys, &name, false, &mut out).await,
    }
}

/// The ApiKey, or an error that names it as kubectl would.
async fn get(apikeys: &Api<ApiKey>, name: &str) -> Result<ApiKey, String> {
    apikeys
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "apikeys.apikey.dev {name:?} not found in namespace {:?}",
                apikeys.namespace().unwrap_or_default()
            )
        })
}
